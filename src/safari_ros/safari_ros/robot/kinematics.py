"""Franka Emika Panda kinematics from its published modified (Craig) DH parameters.

Plain numpy, no MuJoCo and no ROS: the simulator builds its MJCF bodies and collision geoms from
this table and LINK_CAPSULES / HAND_BOX_* / FINGER_*, and uses this IK for the action primitives;
the shield places the same volumes along a motion (arm_volumes) and bounds how far and how fast
they can move between samples (reach_bounds, sweep_fractions, tcp_speed_bound), so the arm is
described exactly once. Source: Franka Control Interface documentation, "Robot and interface
specifications" (DH table, joint position and velocity limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from safari_ros.robot.trajectory import Cubic

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

# Collision volumes, each in its own body's frame: sim/scene.py builds the simulator's geoms from
# them and the shield checks the same shapes, so the arm's volume is described once too.
# Capsules (from, to, radius) per link in that link's own DH frame, approximating Panda's shape.
LINK_CAPSULES: dict[int, list[tuple[tuple[float, ...], tuple[float, ...], float]]] = {
    1: [((0, 0, -0.19), (0, 0, -0.02), 0.06)],
    2: [((0, 0, -0.06), (0, 0, 0.06), 0.06), ((0, 0, 0), (0, -0.2, 0), 0.06)],
    3: [((0, 0, -0.1), (0, 0, 0), 0.055), ((0, 0, 0), (0.0825, 0, 0), 0.055)],
    4: [((0, 0, -0.05), (0, 0, 0.05), 0.055), ((0, 0, 0), (-0.0825, 0.1, 0), 0.05)],
    5: [((0, 0, -0.26), (0, 0, -0.04), 0.045)],
    6: [((0, 0, -0.04), (0, 0, 0.03), 0.05), ((0, 0, 0), (0.088, 0, 0), 0.04)],
    7: [((0, 0, 0.0), (0, 0, 0.07), 0.04)],
}
# The hand's box in the hand frame: centre and half sizes (its long side spans the fingers).
HAND_BOX_CENTER = (0.0, 0.0, 0.032)
HAND_BOX_HALF = (0.025, 0.09, 0.027)
# The finger bodies sit on the hand's z axis here and slide apart along +y / -y by the finger
# joint's position. Finger half sizes: x (pad width), y (thickness), z (length); tips reach 12 mm
# past the TCP so a push at grasp height meets a ball below its equator.
FINGER_BASE_Z = 0.0584
FINGER_HALF = (0.012, 0.008, 0.0285)
# MuJoCo geom names of the volumes, in the order of ArmVolumes' capsules and boxes.
CAPSULE_NAMES: tuple[str, ...] = tuple(
    f"link{i}_{k}" for i, caps in LINK_CAPSULES.items() for k in range(len(caps)))
BOX_NAMES: tuple[str, ...] = ("hand", "finger0", "finger1")


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


def _fixed_transforms() -> np.ndarray:
    """(8, 4, 4) fixed part of each DH row as a homogeneous transform."""
    out = np.tile(np.eye(4), (8, 1, 1))
    for i in range(8):
        out[i, :3, 3], out[i, :3, :3] = dh_link_offset(i)
    return out


_DH_FIXED = _fixed_transforms()
_HAND = np.eye(4)
_HAND[:3, :3] = _rot_z(HAND_YAW)
_TCP = np.eye(4)
_TCP[2, 3] = TCP_OFFSET


def link_frames_batch(q: np.ndarray) -> np.ndarray:
    """(N, 10, 4, 4) poses in the base frame of links 1..7, the flange, the hand and the TCP, for
    N joint vectors at once (the shield checks a motion at many samples)."""
    q = np.atleast_2d(np.asarray(q, float))
    n = len(q)
    turn = np.tile(np.eye(4), (n, 8, 1, 1))  # RotZ(q_i) per row; the flange row does not turn
    c, s = np.cos(q), np.sin(q)
    turn[:, :7, 0, 0], turn[:, :7, 0, 1], turn[:, :7, 1, 0], turn[:, :7, 1, 1] = c, -s, s, c
    steps = _DH_FIXED @ turn
    out = np.empty((n, 10, 4, 4))
    t = steps[:, 0]
    out[:, 0] = t
    for i in range(1, 8):
        t = t @ steps[:, i]
        out[:, i] = t
    out[:, 8] = t @ _HAND
    out[:, 9] = out[:, 8] @ _TCP
    return out


def link_frames(q: np.ndarray) -> list[np.ndarray]:
    """4x4 poses in the base frame of links 1..7, the flange, the hand and the TCP (10 frames)."""
    return list(link_frames_batch(q)[0])


def tcp_pose(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, 3x3 rotation) of the TCP in the base frame."""
    t = link_frames(q)[-1]
    return t[:3, 3], t[:3, :3]


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (3): np.cross without its axis bookkeeping, which costs more than
    the product for the small arrays of the IK loop."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def tcp_velocities(frames: np.ndarray, qd: np.ndarray) -> np.ndarray:
    """(N, 3) TCP velocities for frames (N, 10, 4, 4) and joint velocities qd (N, 7):
    sum_j qd_j z_j x (p - o_j)."""
    z, o = frames[:, :7, :3, 2], frames[:, :7, :3, 3]
    lever = cross(z, frames[:, 9, None, :3, 3] - o)
    return (qd[:, None, :] @ lever)[:, 0]


def tcp_jacobian(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric 6x7 Jacobian (linear rows first) of the TCP, with its position and rotation."""
    frames = link_frames_batch(q)[0]
    p_tcp = frames[9, :3, 3]
    z, o = frames[:7, :3, 2], frames[:7, :3, 3]
    jac = np.concatenate([cross(z, p_tcp - o).T, z.T])
    return jac, p_tcp, frames[9, :3, :3]


def _rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Small-angle rotation vector taking `current` to `target` (both 3x3, base frame)."""
    return 0.5 * cross(current.T, target.T).sum(axis=0)


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


@dataclass(frozen=True)
class ArmVolumes:
    """The arm's collision volumes (LINK_CAPSULES, the hand's and the fingers' boxes) at N
    configurations, in the base frame."""

    seg_a: np.ndarray  # (N, K, 3) capsule axis starts, in CAPSULE_NAMES order
    seg_b: np.ndarray  # (N, K, 3) capsule axis ends
    radius: np.ndarray  # (K,) capsule radii
    box_center: np.ndarray  # (N, 3, 3) hand, left finger, right finger (BOX_NAMES)
    box_rot: np.ndarray  # (N, 3, 3, 3) rotation matrices (columns: the box axes)
    box_half: np.ndarray  # (3, 3) half sizes


_CAPSULE_LINK = np.array([i for i, caps in LINK_CAPSULES.items() for _ in caps])
_CAPSULE_A = np.array([a for caps in LINK_CAPSULES.values() for a, _, _ in caps], float)
_CAPSULE_B = np.array([b for caps in LINK_CAPSULES.values() for _, b, _ in caps], float)
_CAPSULE_R = np.array([r for caps in LINK_CAPSULES.values() for _, _, r in caps], float)
_BOX_HALF = np.array([HAND_BOX_HALF, FINGER_HALF, FINGER_HALF], float)


def _box_centers_in_hand(finger: np.ndarray) -> np.ndarray:
    """(N, 3, 3) centres of the hand box and the two finger boxes in the hand frame, for each
    finger opening (the left finger slides along +y, the right one along -y)."""
    n = len(finger)
    out = np.zeros((n, 3, 3))
    out[:, 0] = HAND_BOX_CENTER
    y = finger + FINGER_HALF[1]
    out[:, 1, 1], out[:, 2, 1] = y, -y
    out[:, 1:, 2] = FINGER_BASE_Z + FINGER_HALF[2]
    return out


def arm_volumes(frames: np.ndarray, finger: np.ndarray | float) -> ArmVolumes:
    """The collision volumes for frames from link_frames_batch (N, 10, 4, 4) and per-finger
    openings (N,) or one for all."""
    n = len(frames)
    finger = np.broadcast_to(np.asarray(finger, float), (n,))
    link = frames[:, _CAPSULE_LINK - 1]  # (N, K, 4, 4): capsule k lives in its link's frame
    rot, pos = link[..., :3, :3], link[..., :3, 3]
    seg_a = pos + (rot @ _CAPSULE_A[:, :, None])[..., 0]
    seg_b = pos + (rot @ _CAPSULE_B[:, :, None])[..., 0]
    hand_rot, hand_pos = frames[:, 8, :3, :3], frames[:, 8, :3, 3]
    centers = hand_pos[:, None] + _box_centers_in_hand(finger) @ np.swapaxes(hand_rot, 1, 2)
    rots = np.broadcast_to(hand_rot[:, None], (n, 3, 3, 3))
    return ArmVolumes(seg_a, seg_b, _CAPSULE_R, centers, rots, _BOX_HALF)


def reach_bounds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds, over every configuration, of the distance from joint j's frame origin (on
    its axis) to any point of each capsule's axis (K, 7), of each box (3, 7) and to the TCP (7,);
    0 where joint j does not move the volume.

    Why: a point p moved by joints 1..7 has velocity sum_j qdot_j z_j x (p - o_j), so its speed
    is at most sum_j |qdot_j| * R_j with R_j >= |p - o_j|. Chained along the DH frames,
    |p - o_j| <= sum of the fixed offsets from frame j to p's body + p's offset in that body,
    whatever the joint angles: the bound needs no configuration.
    """
    offsets = np.array([np.linalg.norm(dh_link_offset(i)[0]) for i in range(8)])
    # chain[j, b]: largest |o_b - o_j| for joint frames j (0-based 0..6) and body frames b
    # (0-based 0..7, 7 = the flange, whose origin the hand shares).
    chain = np.zeros((7, 8))
    for j in range(7):
        for b in range(j, 8):
            chain[j, b] = offsets[j + 1:b + 1].sum()
    capsules = np.zeros((len(_CAPSULE_R), 7))
    extent = np.maximum(np.linalg.norm(_CAPSULE_A, axis=1), np.linalg.norm(_CAPSULE_B, axis=1))
    for k, link in enumerate(_CAPSULE_LINK):
        capsules[k, :link] = chain[:link, link - 1] + extent[k]
    # Box corners in the hand frame, fingers at their widest opening.
    corners = np.abs(_box_centers_in_hand(np.array([FINGER_RANGE[1]]))[0]) + _BOX_HALF
    boxes = chain[:, 7][None] + np.linalg.norm(corners, axis=1)[:, None]
    tcp = chain[:, 7] + TCP_OFFSET
    return capsules, boxes, tcp


REACH_CAPSULES, REACH_BOXES, REACH_TCP = reach_bounds()
# Per joint, the bound for the arm point farthest from its axis (capsule axes and boxes alike).
REACH_ARM = np.maximum(REACH_CAPSULES.max(axis=0), REACH_BOXES.max(axis=0))
MIN_SWEEP_INTERVALS = 8
# Beyond this many samples a motion's bounds stay valid but loosen (a long, fast motion).
MAX_SWEEP_INTERVALS = 1000


def sweep_fractions(cubic: Cubic, finger_change: float, resolution_m: float,
                    max_intervals: int = MAX_SWEEP_INTERVALS) -> np.ndarray:
    """Equally spaced fractions 0 = s_0 < ... < s_n = 1 of a motion at which it is checked, n
    chosen so that no point of the arm moves more than resolution_m between neighbours.

    Bound: a point's speed is at most sum_j |qdot_j| REACH_ARM_j (see reach_bounds), and a finger
    box adds the finger's speed, at most 1.5 |finger_change| / duration on a rest-to-rest cubic.
    Over one interval of duration / n the travel is then at most
    duration / n * (sum_j peak|qdot_j| REACH_ARM_j + 1.5 |finger_change| / duration), and n is
    the smallest count that keeps this under resolution_m (capped at max_intervals; beyond it the
    per-interval bounds stay valid, only looser).
    """
    speed = float(cubic.peak_speed() @ REACH_ARM) + 1.5 * abs(finger_change) / cubic.duration
    n = int(np.clip(np.ceil(speed * cubic.duration / resolution_m), MIN_SWEEP_INTERVALS,
                    max_intervals))
    return np.linspace(0.0, 1.0, n + 1)


def interval_travel(cubic: Cubic, s: np.ndarray) -> np.ndarray:
    """(n, 7) bound on how far each joint turns within each interval [s_k, s_k+1] (rad): its
    exact largest speed there times the interval's duration."""
    return cubic.speed_max(s[:-1], s[1:]) * (np.diff(s)[:, None] * cubic.duration)


def tcp_speed_bound(cubic: Cubic, s: np.ndarray, frames: np.ndarray | None = None) -> float:
    """An upper bound (m/s) on the TCP's speed along the whole cubic, not a sample of it.

    At the samples s_k the speed |v_k| is exact (frames: link_frames_batch at the cubic's
    positions, computed here when not given). Between two samples it can grow by at most A_k per
    second, A_k a bound on the TCP's acceleration over the interval: differentiating
    v = sum_j qdot_j z_j x (p - o_j) gives
        |a| <= sum_j |qddot_j| R_j + 3 * (sum_i |qdot_i|) * sum_j |qdot_j| R_j
    (z_j turns at most at sum_{i<j} |qdot_i|; p - o_j changes at most at
    sum_{i<j} |qdot_i| R_j + sum_{i>=j} |qdot_i| R_i), with each |qdot_j|, |qddot_j| the exact
    largest value on the interval and R_j = REACH_TCP. So on [t_k, t_k+1]
        |v(t)| <= min(|v_k| + A_k (t - t_k), |v_k+1| + A_k (t_k+1 - t))
               <= (|v_k| + |v_k+1| + A_k dt) / 2.
    """
    if frames is None:
        frames = link_frames_batch(cubic.positions(s))
    speed = np.linalg.norm(tcp_velocities(frames, cubic.velocities(s)), axis=1)
    rate = cubic.speed_max(s[:-1], s[1:])
    acc = cubic.acceleration_max(s[:-1], s[1:])
    growth = acc @ REACH_TCP + 3.0 * rate.sum(axis=1) * (rate @ REACH_TCP)
    dt = np.diff(s) * cubic.duration
    between = 0.5 * (speed[:-1] + speed[1:] + growth * dt)
    return float(max(speed.max(), between.max()))
