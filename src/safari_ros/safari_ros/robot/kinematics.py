"""Franka Emika Panda kinematics from its published modified (Craig) DH parameters.

Plain numpy, no MuJoCo and no ROS: the simulator builds its MJCF bodies from this table and uses
this IK for the action primitives, and the shield can import the same module to predict motions,
so the arm is described exactly once. Source: Franka Control Interface documentation, "Robot and
interface specifications" (DH table, joint position and velocity limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARM_JOINTS: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")

# Modified DH rows (a_{i-1}, d_i, alpha_{i-1}) for joints 1..7, then the flange (fixed).
DH_A = np.array([0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088, 0.0])
DH_D = np.array([0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0, 0.107])
DH_ALPHA = np.array([0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2, 0.0])

JOINT_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
JOINT_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
JOINT_VELOCITY_LIMIT = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
FINGER_RANGE = (0.0, 0.04)  # each finger's travel (m); the gripper opens to 0.08 m

HAND_YAW = -np.pi / 4  # the hand is mounted on the flange rotated by -45 deg about z
TCP_OFFSET = 0.1034  # TCP (between the fingertips) along the hand's z axis


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def dh_link_offset(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed part of link i's transform (row i of the table): RotX(alpha) TransX(a) TransZ(d).

    Returns (position, rotation) of frame i relative to frame i-1 at zero joint angle. Because
    RotZ(theta) and TransZ(d) commute, frame i = Trans(p) Rot(R) RotZ(theta): exactly a MuJoCo body
    at pos p, orientation R with a hinge about its local z axis.
    """
    a, d, alpha = DH_A[i], DH_D[i], DH_ALPHA[i]
    rot = _rot_x(alpha)
    return np.array([a, 0.0, 0.0]) + rot @ np.array([0.0, 0.0, d]), rot


def link_frames(q: np.ndarray) -> list[np.ndarray]:
    """4x4 poses in the base frame of links 1..7, the flange, the hand and the TCP (10 frames)."""
    frames = []
    t = np.eye(4)
    for i in range(8):
        p, r = dh_link_offset(i)
        step = np.eye(4)
        step[:3, :3] = r @ (_rot_z(q[i]) if i < 7 else np.eye(3))
        step[:3, 3] = p
        t = t @ step
        frames.append(t)
    hand = t.copy()
    hand[:3, :3] = t[:3, :3] @ _rot_z(HAND_YAW)
    tcp = hand.copy()
    tcp[:3, 3] = hand[:3, 3] + hand[:3, 2] * TCP_OFFSET
    return [*frames, hand, tcp]


def tcp_pose(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, 3x3 rotation) of the TCP in the base frame."""
    t = link_frames(q)[-1]
    return t[:3, 3], t[:3, :3]


def tcp_jacobian(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric 6x7 Jacobian (linear rows first) of the TCP, with its position and rotation."""
    frames = link_frames(q)
    p_tcp = frames[-1][:3, 3]
    jac = np.zeros((6, 7))
    for i in range(7):
        z, o = frames[i][:3, 2], frames[i][:3, 3]
        jac[:3, i] = np.cross(z, p_tcp - o)
        jac[3:, i] = z
    return jac, p_tcp, frames[-1][:3, :3]


def _rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector taking `current` to `target` (both 3x3, base frame)."""
    return 0.5 * sum(np.cross(current[:, k], target[:, k]) for k in range(3))


@dataclass(frozen=True)
class IKResult:
    """Outcome of an IK solve: joint angles, whether it met tolerance, and the remaining error."""

    q: np.ndarray
    converged: bool
    position_error_m: float
    rotation_error_rad: float


def solve_ik(
    target_pos: np.ndarray,
    target_rot: np.ndarray,
    q_seed: np.ndarray,
    *,
    q_rest: np.ndarray | None = None,
    limit_margin: float = 0.0,
    damping: float = 0.05,
    iterations: int = 60,
    tol_m: float = 5e-4,
) -> IKResult:
    """Damped least squares IK for a full TCP pose, kept `limit_margin` inside the joint limits.

    The null space pulls towards q_rest (the home posture) so repeated small steps do not drift
    the redundant elbow towards a limit.
    """
    lo, hi = JOINT_LOWER + limit_margin, JOINT_UPPER - limit_margin
    q = np.clip(np.asarray(q_seed, float).copy(), lo, hi)
    rest = q.copy() if q_rest is None else np.asarray(q_rest, float)
    err_p = err_r = np.inf
    for _ in range(iterations):
        jac, p, r = tcp_jacobian(q)
        e = np.concatenate([target_pos - p, _rotation_error(r, target_rot)])
        err_p, err_r = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
        if err_p < tol_m and err_r < 10 * tol_m:
            return IKResult(q, True, err_p, err_r)
        j_pinv = jac.T @ np.linalg.inv(jac @ jac.T + damping**2 * np.eye(6))
        # Exact projector (undamped pinv): the damped one would leak the posture pull into the task.
        null = (np.eye(7) - np.linalg.pinv(jac) @ jac) @ (0.1 * (rest - q))
        # Cap the step: far targets otherwise make DLS jump across the workspace.
        dq = j_pinv @ np.concatenate([np.clip(e[:3], -0.05, 0.05), e[3:]]) + null
        q = np.clip(q + dq, lo, hi)
    return IKResult(q, False, err_p, err_r)
