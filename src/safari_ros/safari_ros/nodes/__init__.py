"""Thin rclpy nodes: parameters, QoS, timers and message conversion around the core."""
