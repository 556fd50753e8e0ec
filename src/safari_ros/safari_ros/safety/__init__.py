"""Safety: the shield's decision rule on predicted motion (ROS-free)."""
