"""SAFARI: safety-guided adapters for robotic intelligence.

Subpackages without ROS imports (usable from notebooks, benchmarks and torchrun): ``core`` (model,
losses, SCAPO, replay, checkpoints), ``sim`` (MuJoCo tabletop), ``safety`` (shield rules),
``bags`` (rosbag2 I/O). ``nodes`` holds the thin rclpy nodes.
"""

__version__ = "0.3.2"
