"""Speed and separation monitoring (ISO/TS 15066:2016, clause 5.5.4), ROS-free.

The protective separation distance at the time t0 of a measurement is

    S_p = S_h + S_r + S_s + C + Z_d + Z_r

  S_h = v_h (T_r + T_s)   the person's travel while the stack reacts and the arm stops; v_h the
                          measured speed, or ISO 13855's K when it is not measured (1.6 m/s, 2.0
                          m/s for a hand or arm reaching in);
  S_r = v_r T_r           the arm's travel at its current speed during the reaction time;
  S_s                     the arm's stopping distance from its current speed (a stopping table of
                          speed -> (time, distance), or a constant deceleration: v_r^2 / (2 a));
  C                       intrusion distance (ISO 13855): how far a body part reaches past what
                          the sensor detects;
  Z_d, Z_r                position uncertainties of the person (sensor) and of the arm.

The speeds are taken as constant over the intervals: the conservative reading of the standard's
integrals when v_h and v_r are the largest speeds over them. `ssm_decide` turns one measurement
into ok / reduced_speed / stop and fails closed: a missing, stale, future-stamped or non-finite
input, or an arm faster than the stopping data covers, is a stop, never a guess. The parameters
come from config `hri.ssm` (config/hri.yaml, each value's source named there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from safari_ros.config import ConfigError

__all__ = ["SSMDecision", "SSMParams", "Verdict", "protective_distance", "ssm_decide",
           "ssm_params", "stopping"]

# Bisection steps for the reduced speed: the bracket [0, v_r] shrinks to 2^-30 of v_r.
_BISECT_STEPS = 30


class Verdict(StrEnum):
    """What the monitor asks of the arm."""

    OK = "ok"
    REDUCED_SPEED = "reduced_speed"
    STOP = "stop"


@dataclass(frozen=True)
class SSMParams:
    """Typed view of config `hri.ssm` (SI units)."""

    person_speed_default_mps: float  # v_h when not measured (ISO 13855 K, whole body)
    hand_speed_default_mps: float  # v_h when not measured and a hand reaches in
    reaction_time_s: float  # T_r
    intrusion_distance_m: float  # C
    person_uncertainty_m: float  # Z_d
    robot_uncertainty_m: float  # Z_r
    # Stopping data: rows (speed, time, distance), speeds increasing from 0; or, when empty, a
    # constant deceleration (plus a fixed braking delay) for any speed.
    stopping_table: tuple[tuple[float, float, float], ...]
    deceleration_mps2: float | None
    brake_delay_s: float
    warning_band_m: float  # reduced speed while the separation is under S_p + this
    max_duration_scale: float  # a reduced-speed primitive lasts at most this many times longer
    max_tracking_age_s: float  # an older person measurement is stale -> stop
    max_robot_state_age_s: float  # an older arm speed/pose measurement is stale -> stop
    future_tolerance_s: float  # a measurement stamped later than now by more -> stop


def ssm_params(cfg: dict[str, Any]) -> SSMParams:
    """Typed, checked view of cfg['hri']['ssm']; ConfigError on a missing or incoherent value."""
    try:
        s = cfg["hri"]["ssm"]
    except (KeyError, TypeError) as exc:
        raise ConfigError("the config has no hri.ssm section (use config/hri.yaml)") from exc
    stop = s.get("stopping", {})
    table = tuple(tuple(float(v) for v in row) for row in stop.get("table") or ())
    decel = stop.get("deceleration_mps2")
    p = SSMParams(
        person_speed_default_mps=float(s["person_speed_default_mps"]),
        hand_speed_default_mps=float(s["hand_speed_default_mps"]),
        reaction_time_s=float(s["reaction_time_s"]),
        intrusion_distance_m=float(s["intrusion_distance_m"]),
        person_uncertainty_m=float(s["person_uncertainty_m"]),
        robot_uncertainty_m=float(s["robot_uncertainty_m"]),
        stopping_table=table,  # type: ignore[arg-type]
        deceleration_mps2=None if decel is None else float(decel),
        brake_delay_s=float(stop.get("brake_delay_s", 0.0)),
        warning_band_m=float(s["warning_band_m"]),
        max_duration_scale=float(s["max_duration_scale"]),
        max_tracking_age_s=float(s["max_tracking_age_s"]),
        max_robot_state_age_s=float(s["max_robot_state_age_s"]),
        future_tolerance_s=float(s.get("future_tolerance_s", 0.0)),
    )
    _check(p, cfg)
    return p


def _check(p: SSMParams, cfg: dict[str, Any]) -> None:
    values = [v for v in vars(p).values() if isinstance(v, float)]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"hri.ssm: every value must be finite and >= 0: {p}")
    if p.max_duration_scale < 1:
        raise ConfigError("hri.ssm.max_duration_scale must be >= 1 (it stretches a primitive)")
    if p.stopping_table:
        rows = np.asarray(p.stopping_table)
        if rows.shape[1] != 3 or rows[0, 0] != 0 or np.any(np.diff(rows, axis=0) < 0) \
                or np.any(np.diff(rows[:, 0]) <= 0):
            raise ConfigError("hri.ssm.stopping.table: rows [speed, time, distance] from speed 0, "
                              "speeds increasing, times and distances not decreasing")
    elif not p.deceleration_mps2:
        raise ConfigError("hri.ssm.stopping needs a table or a deceleration_mps2 > 0")
    # The reaction time must cover what the stack cannot avoid: waiting for the next tracking
    # frame, the tracker's latency and one servo tick of the controller.
    track = cfg["hri"].get("tracking", {})
    floor = 0.0
    if track:
        floor = 1.0 / float(track["rate_hz"]) + float(track["latency_s"])
        if p.person_uncertainty_m < 3.0 * float(track["noise_std_m"]):
            raise ConfigError("hri.ssm.person_uncertainty_m must cover 3 sigma of "
                              "hri.tracking.noise_std_m")
    floor += 1.0 / float(cfg["sim"]["servo_hz"])
    if p.reaction_time_s < floor - 1e-12:
        raise ConfigError(f"hri.ssm.reaction_time_s {p.reaction_time_s} is under the stack's "
                          f"floor {floor:.4f} s (frame period + tracking latency + servo tick)")


def stopping(p: SSMParams, robot_speed: float) -> tuple[float, float] | None:
    """(T_s, S_s) from the arm's speed; None where the stopping data does not reach that speed
    (the caller must stop: a guess beyond measured data is not a bound)."""
    v = float(robot_speed)
    if p.stopping_table:
        rows = np.asarray(p.stopping_table)
        if v > rows[-1, 0]:
            return None
        # Linear between measured speeds; stopping data grows with speed, so a finer table only
        # tightens this, but the table must be measured densely enough for that to hold.
        return float(np.interp(v, rows[:, 0], rows[:, 1])), float(np.interp(v, rows[:, 0],
                                                                            rows[:, 2]))
    a = float(p.deceleration_mps2)  # type: ignore[arg-type]
    return p.brake_delay_s + v / a, v * p.brake_delay_s + v * v / (2.0 * a)


def protective_distance(p: SSMParams, robot_speed: float, person_speed: float | None = None,
                        reaching: bool = True) -> float:
    """S_p (m) for the arm moving at robot_speed and the person at person_speed (m/s; None: not
    measured, ISO 13855's value for a hand reaching in, or for the body when reaching is False).
    Infinite where the stopping data does not cover robot_speed."""
    stop = stopping(p, robot_speed)
    if stop is None:
        return math.inf
    t_s, s_s = stop
    if person_speed is None:
        person_speed = p.hand_speed_default_mps if reaching else p.person_speed_default_mps
    s_h = person_speed * (p.reaction_time_s + t_s)
    s_r = robot_speed * p.reaction_time_s
    return (s_h + s_r + s_s + p.intrusion_distance_m + p.person_uncertainty_m
            + p.robot_uncertainty_m)


@dataclass(frozen=True)
class SSMDecision:
    """The monitor's answer for one measurement."""

    verdict: Verdict
    # Factor (>= 1) to stretch the running primitive's duration by: 1 for ok, inf for stop.
    duration_scale: float
    reasons: tuple[str, ...]
    protective_distance_m: float  # S_p at the measured speeds (nan where it could not be formed)
    separation_m: float


def _finite_nonneg(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x)) and float(x) >= 0


def ssm_decide(
    p: SSMParams,
    separation: float | None,
    person_speed: float | None,
    robot_speed: float | None,
    tracking_age_s: float | None,
    robot_state_age_s: float | None,
    person_tracked: bool = True,
    reaching: bool = True,
) -> SSMDecision:
    """One SSM decision.

    separation: the smallest distance between the arm's and the person's volumes (m);
    person_speed: the person's measured speed towards the arm (m/s) or None when the tracker gives
    no speed (then ISO 13855's value); robot_speed: the arm's fastest point (m/s);
    tracking_age_s / robot_state_age_s: now minus the measurements' stamps (None: never received);
    person_tracked: False when the tracker reports it lost the person. Any failed input -> stop.
    """
    reasons: list[str] = []
    if not person_tracked:
        reasons.append("tracking_lost")
    for name, age, limit in (("tracking", tracking_age_s, p.max_tracking_age_s),
                             ("robot_state", robot_state_age_s, p.max_robot_state_age_s)):
        if age is None:
            reasons.append(f"{name}_missing")
        elif not math.isfinite(float(age)):
            reasons.append(f"{name}_age_invalid")
        elif age > limit:
            reasons.append(f"{name}_stale:{age:.3f}s>{limit:.3f}s")
        elif age < -p.future_tolerance_s:
            reasons.append(f"{name}_from_future:{-age:.3f}s")
    for name, value in (("separation", separation), ("robot_speed", robot_speed)):
        if not _finite_nonneg(value):
            reasons.append(f"{name}_invalid:{value}")
    if person_speed is not None and not _finite_nonneg(person_speed):
        reasons.append(f"person_speed_invalid:{person_speed}")
    sep = float("nan") if separation is None else float(separation)
    if reasons:
        return SSMDecision(Verdict.STOP, math.inf, tuple(reasons), float("nan"), sep)
    v_r = float(robot_speed)  # type: ignore[arg-type]
    s_p = protective_distance(p, v_r, person_speed, reaching)
    if not math.isfinite(s_p):
        return SSMDecision(Verdict.STOP, math.inf, (f"robot_speed_beyond_stopping_data:{v_r:.3f}",),
                           s_p, sep)
    if sep < s_p:
        return SSMDecision(Verdict.STOP, math.inf, (f"separation:{sep:.3f}<S_p:{s_p:.3f}",), s_p,
                           sep)
    if sep >= s_p + p.warning_band_m:
        return SSMDecision(Verdict.OK, 1.0, (), s_p, sep)
    # Inside the warning band: slow to the speed that would put the separation a full band above
    # its S_p (S_p grows with the arm's speed, so bisection finds it), never below the configured
    # floor on speed (max_duration_scale); the next measurement stops the arm if S_p is breached.
    lo, hi = 0.0, v_r
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if protective_distance(p, mid, person_speed, reaching) + p.warning_band_m <= sep:
            lo = mid
        else:
            hi = mid
    scale = p.max_duration_scale if lo <= v_r / p.max_duration_scale else v_r / lo
    return SSMDecision(Verdict.REDUCED_SPEED, float(scale),
                       (f"warning_band:{sep:.3f}<S_p+band:{s_p + p.warning_band_m:.3f}",), s_p,
                       sep)
