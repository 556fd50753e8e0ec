"""Where the camera is mounted: its pose in the base frame (numpy only).

The simulator places its camera from config `sim.camera` (position, look_at) and publishes the
optical frame as a static transform; perception lifts depth into the base frame with the same
pose (core/features.DepthLifter). On a robot this is the camera's calibrated extrinsics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CameraPose", "camera_pose"]


@dataclass(frozen=True)
class CameraPose:
    """The camera in the base frame: MuJoCo's xyaxes (right, up) and the optical axis."""

    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray

    @property
    def optical_to_base(self) -> np.ndarray:
        """Rotation (3, 3) from the optical frame (x right, y down, z forward; REP-103's
        camera_optical convention) to the base frame."""
        return np.column_stack([self.right, -self.up, self.forward])


def camera_pose(cam_cfg: dict[str, Any]) -> CameraPose:
    """Camera axes from config `sim.camera` (position, look_at), with the horizon level."""
    pos = np.asarray(cam_cfg["position"], float)
    fwd = np.asarray(cam_cfg["look_at"], float) - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return CameraPose(pos, right, np.cross(right, fwd), fwd)
