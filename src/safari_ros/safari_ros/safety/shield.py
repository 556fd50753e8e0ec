"""The safety shield: the whole decision for one proposal, as a pure function of the proposal,
the arm's state and the ages of the inputs. This is its one entry point (`Shield.decide`);
shield_node and the evaluation harness both act through it.

1. input: a known action, a C(s, .) row of the action set's length in [0, 1], 7 finite joint
   positions and 7 finite joint velocities. An unknown velocity is not assumed zero: its worst
   case is the joint's full speed, which alone breaks the joint speed limit, so no motion from it
   can be certified and the answer is stop.
2. watchdog: observation and proposal no older than watchdog_s, not from the future beyond
   future_stamp_tolerance_s (a clock that jumped), and a joint state no older than the observation
   by more than joint_state_max_lag_s; NaN counts as stale.
3. the proposal is planned (robot.primitives) and its motion checked against the hard limits
   (safety.motion: the arm's volumes swept along the controller's cubic, speeds bounded), then
   the learned check C(s, a) < tau_safe.
4. anything that fails is replaced by its configured backup; a backup motion (home) is planned and
   checked exactly like a proposal, and where it fails too, the arm stops. Stop holds the measured
   pose and is the safe state itself.
Fails closed: a check that cannot run counts as a violation; malformed input is refused, never
raised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safari_ros.config import ActionSpec, action_specs, safety_limits
from safari_ros.robot import kinematics as kin
from safari_ros.robot.primitives import PlannedMotion, PrimitivePlanner
from safari_ros.safety.motion import HARD_LIMITS, Check, MotionChecker, MotionReport

__all__ = ["CHECKS", "HARD_LIMITS", "Ages", "ArmState", "Check", "Shield", "ShieldResult",
           "ShieldVerdict", "shield_action", "violates_hard_limit"]

# Order of checks; the first failing one names the reason and picks the backup action.
CHECKS = ("input_valid", "watchdog", "workspace", "keep_out", "ee_speed", "joint_limits", "learned")
# Reasons after which nothing can be planned: the backup is stop whatever the config says.
NO_MOTION_REASONS = ("input_valid", "watchdog")
ARM_DOF = 7
# A measured joint beyond its mechanical limit by more than this is a sensor fault, not a pose.
JOINT_LIMIT_TOLERANCE_RAD = 0.01


@dataclass(frozen=True)
class ShieldResult:
    """The shield's learned-constraint decision for one proposal."""

    action: int  # the action to execute
    intervened: bool
    reason: str  # "" when the proposal passes


def shield_action(
    proposed: int, constraint: Sequence[float], tau_safe: float, backup: int
) -> ShieldResult:
    """The learned check alone: execute `proposed` only if C(s, proposed) < tau_safe; otherwise
    the backup action.

    Fails closed: an out-of-range index or a non-finite / out-of-[0,1] C also yields the backup.
    """
    if not 0 <= proposed < len(constraint):
        return ShieldResult(backup, True, f"invalid_action_index:{proposed}")
    c = float(constraint[proposed])
    if not (math.isfinite(c) and 0.0 <= c <= 1.0):
        return ShieldResult(backup, True, f"invalid_constraint_value:{c}")
    if c < tau_safe:
        return ShieldResult(proposed, False, "")
    return ShieldResult(backup, backup != proposed, f"learned:C={c:.3f}>={tau_safe:.3f}")


@dataclass(frozen=True)
class ArmState:
    """What the arm is doing, as measured: 7 joint positions (rad), 7 joint velocities (rad/s;
    None when the robot did not report them), and the per-finger opening last commanded (m)."""

    position: Any
    velocity: Any
    finger: float


@dataclass(frozen=True)
class Ages:
    """How old the inputs are (s). joint_state_lag_s: how much older the joint state is than the
    observation the proposal answers (inf: no joint state); joint_state_age_s: its age now.
    Negative ages are stamps from the future."""

    observation_s: float = 0.0
    proposal_s: float = 0.0
    joint_state_lag_s: float = 0.0
    joint_state_age_s: float = 0.0


@dataclass
class ShieldVerdict:
    """The decision for one proposal: what runs, why, and the motion to command (None: stop)."""

    proposed: ActionSpec
    executed: ActionSpec
    codes: dict[str, Check] = field(default_factory=dict)
    reason: str = ""
    plan: PlannedMotion | None = None
    # Backups tried, in order, with "" when one passed or why it was refused.
    backups: list[tuple[str, str]] = field(default_factory=list)

    @property
    def intervened(self) -> bool:
        """True when the shield replaced the proposed action."""
        return self.executed.index != self.proposed.index

    @property
    def hard_limit_refusal(self) -> bool:
        """True when the proposal was replaced because its motion breaks a hard limit."""
        return self.intervened and violates_hard_limit(self.codes)


def violates_hard_limit(codes: Mapping[str, int]) -> bool:
    """Whether any hard-limit check (HARD_LIMITS) of a decision's codes is a violation."""
    return any(codes.get(c) == Check.VIOLATION for c in HARD_LIMITS)


def _vector(value: Any, size: int, name: str) -> tuple[np.ndarray | None, str]:
    """value as `size` finite floats, or (None, what is wrong with it)."""
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None, f"{name} is not numeric"
    if arr.size != size:
        return None, f"{name} has {arr.size} values, not {size}"
    if not np.all(np.isfinite(arr)):
        return None, f"{name} is not finite"
    return arr, ""


def _stale(age: float, limit: float, future_tolerance: float) -> bool:
    """Over the limit, from the future beyond the tolerance, or NaN (every comparison with NaN
    is False, so `fresh` is False too)."""
    fresh = -future_tolerance <= age <= limit
    return not fresh


class Shield:
    """Hard limits on the predicted motion + learned check + watchdog, over the configured
    action set, with checked backups."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        """From the loaded config: config['safety'], the action set, and the primitives'
        settings for the planner it owns (callers with several arms pass their own planners)."""
        self.limits = safety_limits(cfg)
        safety = cfg["safety"]
        self.future_tolerance_s = float(safety["future_stamp_tolerance_s"])
        self.actions = action_specs(cfg)
        self.by_name = {a.name: a for a in self.actions}
        self.stop = self.by_name["stop"]
        self.planner = PrimitivePlanner(cfg)
        self.motion = MotionChecker(self.limits, float(safety["sweep_resolution_m"]))
        for reason in CHECKS:
            backup = self.limits.backup_for_reason.get(reason, "stop")
            if backup not in self.by_name or not self.by_name[backup].backup:
                raise ValueError(f"backup_for_reason.{reason} = {backup!r} is not a backup action")
            if reason in NO_MOTION_REASONS and backup != "stop":
                raise ValueError(f"backup_for_reason.{reason} must be stop: no motion can be "
                                 f"certified from {reason.replace('_', ' ')} failures")

    def backup_for(self, reason: str) -> ActionSpec:
        """The configured backup action for a failed check."""
        return self.by_name[self.limits.backup_for_reason.get(reason, "stop")]

    # ------------------------------------------------------------------ the decision
    def decide(self, action_index: Any, constraint: Any, state: ArmState, ages: Ages = Ages(),
               planner: PrimitivePlanner | None = None) -> ShieldVerdict:
        """What to execute for proposal `action_index` with C(s, .) row `constraint`, from the
        measured `state`; planned with `planner` (default: the shield's own). Never raises on
        malformed input: it is refused with input_valid = VIOLATION and stop."""
        planner = planner or self.planner
        codes = dict.fromkeys(CHECKS, Check.NOT_CHECKED)
        index, row, q, qd, problem = self._parse(action_index, constraint, state)
        if problem:
            planner.reset()
            codes["input_valid"] = Check.VIOLATION
            proposed = self.actions[index] if index is not None else self.stop
            return ShieldVerdict(proposed, self.stop, codes, f"input_valid:{problem}")
        codes["input_valid"] = Check.OK
        proposed = self.actions[index]
        if proposed.name == "stop":
            # Holding still is the safe state itself; nothing to plan or check.
            planner.reset()
            return ShieldVerdict(proposed, proposed, codes)
        stale = self._staleness(ages)
        codes["watchdog"] = Check.VIOLATION if stale else Check.OK
        if stale:
            planner.reset()
            return ShieldVerdict(proposed, self.stop, codes, f"watchdog:{stale}")
        plan, report = self._plan_and_check(planner, proposed, q, qd, state.finger)
        codes.update(report.codes)
        learned = shield_action(index, row, self.limits.tau_safe, self.stop.index)
        codes["learned"] = Check.OK if learned.action == index else Check.VIOLATION
        failed = [c for c in CHECKS if codes[c] != Check.OK]
        if not failed:
            return ShieldVerdict(proposed, proposed, codes, plan=plan)
        first = failed[0]
        detail = report.details.get(first, "")
        reason = ";".join([first + (f":{detail}" if detail else ""), *failed[1:]])
        verdict = ShieldVerdict(proposed, self.stop, codes, reason)
        backup = self.backup_for(first)
        if backup.name != "stop" and backup.index != index:
            self._try_backup(verdict, planner, backup, row, q, qd, state.finger)
        if verdict.plan is None:
            planner.reset()
        return verdict

    def _try_backup(self, verdict: ShieldVerdict, planner: PrimitivePlanner, backup: ActionSpec,
                    row: np.ndarray, q: np.ndarray, qd: np.ndarray, finger: float) -> None:
        """Plan and check a backup motion like any proposal; it runs only if it passes all."""
        plan, report = self._plan_and_check(planner, backup, q, qd, finger)
        failed = [c for c in HARD_LIMITS if report.codes[c] != Check.OK]
        if not failed and not row[backup.index] < self.limits.tau_safe:
            failed = ["learned"]
        if failed:
            why = failed[0] + (f":{report.details[failed[0]]}" if failed[0] in report.details
                               else "")
            verdict.backups.append((backup.name, why))
            verdict.reason += f";{backup.name} refused ({why}): stop"
            return
        verdict.backups.append((backup.name, ""))
        verdict.executed, verdict.plan = backup, plan

    def _plan_and_check(self, planner: PrimitivePlanner, spec: ActionSpec, q: np.ndarray,
                        qd: np.ndarray, finger: float) -> tuple[PlannedMotion | None,
                                                                MotionReport]:
        try:
            plan = planner.plan(spec, q, finger, qd)
            report = self.motion.check(plan)
        except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
            # A plan or check that cannot run counts as a violation (fails closed).
            return None, MotionReport(codes=dict.fromkeys(HARD_LIMITS, Check.NOT_CHECKED),
                                      details=dict.fromkeys(HARD_LIMITS, f"not checked: {exc!r}"))
        if not plan.ik_converged:
            # The motion is checked, but it is not the one proposed: refuse it like before.
            report.codes["joint_limits"] = Check.NOT_CHECKED
            report.details.setdefault("joint_limits", "IK did not converge")
        return plan, report

    def check_motion(self, plan: PlannedMotion) -> MotionReport:
        """The hard-limit checks of one planned motion (what decide applies to every motion)."""
        return self.motion.check(plan)

    # ------------------------------------------------------------------ inputs
    def _parse(self, action_index: Any, constraint: Any, state: ArmState) -> tuple[
            int | None, np.ndarray, np.ndarray, np.ndarray, str]:
        """(index, C row, q, qd, problem); problem is "" for well-formed input."""
        empty = np.zeros(0)
        try:
            index = int(action_index)
            if index != action_index:  # 2.5, NaN (int() raises), True is 1 and fine
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            return None, empty, empty, empty, f"action index {action_index!r} is not an integer"
        if not 0 <= index < len(self.actions):
            return None, empty, empty, empty, f"unknown action index {index}"
        row, problem = _vector(constraint, len(self.actions), "C(s, .)")
        if row is not None and not np.all((row >= 0) & (row <= 1)):
            row, problem = None, "C(s, .) outside [0, 1]"
        q, q_problem = _vector(state.position, ARM_DOF, "joint positions")
        if q is not None and not np.all((q >= kin.JOINT_LOWER - JOINT_LIMIT_TOLERANCE_RAD)
                                        & (q <= kin.JOINT_UPPER + JOINT_LIMIT_TOLERANCE_RAD)):
            q, q_problem = None, "joint positions beyond the arm's limits"
        if state.velocity is None:
            qd, qd_problem = None, "joint velocities unknown"
        else:
            qd, qd_problem = _vector(state.velocity, ARM_DOF, "joint velocities")
        finger, finger_problem = _vector(state.finger, 1, "finger opening")
        problem = problem or q_problem or qd_problem or finger_problem
        if problem or row is None or q is None or qd is None or finger is None:
            return index, empty, empty, empty, problem
        return index, row, q, qd, ""

    def _staleness(self, ages: Ages) -> str:
        """Why the inputs are stale ("" when fresh)."""
        lim, tol = self.limits, self.future_tolerance_s
        for name, age in (("observation", ages.observation_s), ("proposal", ages.proposal_s)):
            if _stale(age, lim.watchdog_s, tol):
                if age < 0:  # a clock that jumped back, or a sender's clock ahead of ours
                    return f"{name} stamped {-age:.3f} s in the future"
                return f"{name} stale: {age:.3f} s old (limit {lim.watchdog_s} s)"
        if _stale(ages.joint_state_lag_s, lim.joint_state_max_lag_s, math.inf):
            return f"joint_state {ages.joint_state_lag_s:.3f} s older than the observation"
        if _stale(ages.joint_state_age_s, math.inf, tol):
            return f"joint_state stamped {-ages.joint_state_age_s:.3f} s in the future"
        return ""
