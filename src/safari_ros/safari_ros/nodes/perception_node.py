"""perception_node: RGB-D + joint states -> safari_msgs/Observation (the frozen CLIP prefix).

Colour (rgb8, bgr8, mono8) and depth (32FC1 metres, 16UC1 millimetres) are subscribed with sensor
QoS and paired with the joint state by approximate time (tolerance parameter). The frozen prefix
(layers 0..k-1) runs once per frame and its tokens are published, so the policy and the learner
never run those layers again. A frame with an unsupported encoding or mismatched sizes is dropped
with one log line per cause; the node never crashes on input. The depth image is lifted into
the base frame per patch of the backbone's view (core/features.lift_depth) with the intrinsics of
the latest depth CameraInfo and the camera's mounting (config `sim.camera`: position, look_at);
frames before the first CameraInfo are dropped. Serves SetInstruction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

from safari_msgs.msg import Observation
from safari_msgs.srv import SetInstruction
from safari_ros.bags import ImageError, image_to_numpy
from safari_ros.core import build_model
from safari_ros.core.features import pinhole_intrinsics
from safari_ros.core.model import depth_lifter
from safari_ros.nodes.common import (
    LATCHED_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    declare,
    model_parameters,
    node_config,
    pack_tokens,
    run_node,
    stamp_ns,
)
from safari_ros.robot import kinematics as kin
from safari_ros.streams import ApproximateTimeSync


class PerceptionNode(Node):
    """Synchronises the sensors and publishes the layer-k tokens of every frame."""

    def __init__(self) -> None:
        super().__init__("perception_node")
        self.cfg = node_config(self)
        t = self.cfg["topics"]
        tolerance = declare(self, "sync_tolerance_s", 0.03, "max stamp difference of a frame set")
        self.use_cv_bridge = declare(self, "use_cv_bridge", True,
                                     "convert images with cv_bridge when it is installed")
        self.model, self.device = model_parameters(self, self.cfg, build_model)
        self.model.eval()
        self.lift = depth_lifter(self.model.hp)
        self.depth_k: np.ndarray | None = None  # intrinsics of the depth camera, from CameraInfo
        self.instruction = ""
        self.instruction_id = 0
        self.logged: set[str] = set()
        self.bridge = self._cv_bridge() if self.use_cv_bridge else None
        self.sync = ApproximateTimeSync("color", ["depth", "joints"], int(tolerance * 1e9),
                                        on_match=self.on_frame)
        self.publisher = self.create_publisher(Observation, t["observation"], RELIABLE_QOS)
        self.instruction_pub = self.create_publisher(String, t["instruction"], LATCHED_QOS)
        self.create_subscription(Image, t["color_image"], self._stream("color"), SENSOR_QOS)
        self.create_subscription(Image, t["depth_image"], self._stream("depth"), SENSOR_QOS)
        self.create_subscription(JointState, t["joint_states"], self._stream("joints"), SENSOR_QOS)
        self.create_subscription(CameraInfo, t["depth_info"], self.on_depth_info, SENSOR_QOS)
        self.create_subscription(String, t["instruction"], self.on_instruction, LATCHED_QOS)
        self.create_service(SetInstruction, "/safari/set_instruction", self.on_set_instruction)

    def _cv_bridge(self) -> Any:
        try:
            from cv_bridge import CvBridge  # a ROS 2 distribution has it; the wheels do not
        except ImportError:
            return None
        return CvBridge()

    def _stream(self, name: str) -> Any:
        def callback(msg: Any) -> None:
            self.sync.add(name, stamp_ns(msg.header.stamp), msg)
        return callback

    def log_once(self, cause: str, text: str) -> None:
        """One warning per distinct cause (a bad stream would otherwise flood the log)."""
        if cause not in self.logged:
            self.logged.add(cause)
            self.get_logger().warning(f"{text} (further frames with this problem dropped quietly)")

    def on_depth_info(self, msg: CameraInfo) -> None:
        """Keep the depth camera's intrinsics (a K that is no pinhole model is refused)."""
        try:
            self.depth_k = pinhole_intrinsics(msg.k)
        except ValueError as exc:
            self.log_once("camera_info", f"ignoring depth CameraInfo: {exc}")

    def on_instruction(self, msg: String) -> None:
        """A new task instruction (from the simulator, the operator or another node)."""
        if msg.data != self.instruction:
            self.instruction = msg.data
            self.instruction_id += 1

    def on_set_instruction(self, request: SetInstruction.Request,
                           response: SetInstruction.Response) -> Any:
        """Set the instruction and announce it on the instruction topic."""
        if not request.instruction.strip():
            response.success, response.message = False, "empty instruction"
            return response
        self.on_instruction(String(data=request.instruction))
        self.instruction_pub.publish(String(data=request.instruction))
        response.success, response.instruction_id = True, self.instruction_id
        return response

    def to_rgb(self, msg: Image) -> np.ndarray:
        """Image -> RGB uint8 (cv_bridge when present, else the project's own conversion)."""
        if self.bridge is not None and msg.encoding in ("rgb8", "bgr8", "mono8"):
            return np.asarray(self.bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        return image_to_numpy(msg)

    def on_frame(self, stamp: int, group: dict[str, Any]) -> None:
        """Convert, check and encode one synchronised frame set; drop it on any input problem."""
        color, depth_msg, joints = group["color"], group["depth"], group["joints"]
        try:
            rgb = self.to_rgb(color)
            depth = image_to_numpy(depth_msg)
        except ImageError as exc:
            self.log_once(exc.cause,
                          f"dropping frame: {exc}")
            return
        if rgb.ndim != 3 or depth.shape != rgb.shape[:2]:
            self.log_once("size", f"dropping frame: colour {rgb.shape} and depth {depth.shape} "
                                  "differ in size")
            return
        if self.depth_k is None:
            self.log_once("no_camera_info", "dropping frame: no depth CameraInfo yet")
            return
        positions = dict(zip(joints.name, joints.position, strict=False))
        try:
            q = np.array([positions[j] for j in kin.ARM_JOINTS], float)
        except KeyError as exc:
            self.log_once("joints", f"dropping frame: joint state lacks {exc}")
            return
        if not np.all(np.isfinite(q)) or len(joints.velocity) != len(joints.name):
            self.log_once("joint_values", "dropping frame: joint state with NaN or no velocities")
            return
        with torch.no_grad():
            image = self.model.backbone.preprocess(rgb).to(self.device)
            tokens = self.model.prefix(image)[0].cpu().numpy()
        obs = Observation()
        obs.header.stamp = color.header.stamp
        obs.header.frame_id = color.header.frame_id
        obs.backbone_id = self.model.backbone_id
        obs.prefix_layer = self.model.split_layer_k
        pack_tokens(obs, tokens, use_float16=self.model.hp.replay.store_float16)
        try:
            obs.depth_features = self.lift(depth, self.depth_k)
        except ValueError as exc:  # a depth image smaller than the backbone's grid
            self.log_once("depth_size", f"dropping frame: {exc}")
            return
        obs.depth_grid = [int(g) for g in self.lift.grid]
        obs.joint_state = joints
        ee = kin.tcp_pose(q)[0]
        obs.ee_position.x, obs.ee_position.y, obs.ee_position.z = (float(v) for v in ee)
        obs.instruction = self.instruction
        obs.instruction_id = self.instruction_id
        self.publisher.publish(obs)


def main(args: list[str] | None = None) -> None:
    """Run the perception node."""
    run_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
