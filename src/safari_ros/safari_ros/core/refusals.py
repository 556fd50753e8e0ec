"""What the shield refused in the state the arm is still in, so the policy does not ask again.

A refused proposal is replaced by a stop, which leaves the arm where it was: the policy then sees
the same state and, acting greedily, proposes the same refused action until the episode ends (in
development runs of the main job, a quarter of the pre-trained policy's greedy episodes on the
training instructions ended that way, with 40-47 refusals each). So the policy renormalises
pi(a|s) over the actions the shield has not refused since the arm last moved. The shield still
checks every proposal; this only stops asking it the same question in the same state.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RefusalMemory"]


class RefusalMemory:
    """Actions refused since the arm last moved, for one robot (or one environment)."""

    def __init__(self, n_actions: int) -> None:
        self.refused = np.zeros(n_actions, dtype=bool)

    def reset(self) -> None:
        """A new episode (or a new state that did not come from this robot's last action)."""
        self.refused[:] = False

    def record(self, proposed: int, intervened: bool, executed_stop: bool) -> None:
        """The shield's decision on `proposed`: a proposal replaced by a stop is remembered;
        anything else that ran (the proposal itself, or the home backup) moved the arm, and
        what was refused before no longer applies."""
        if not executed_stop:
            self.refused[:] = False
        elif intervened and 0 <= proposed < len(self.refused):
            self.refused[proposed] = True

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """pi(a|s) renormalised over the actions not refused here; pi itself when it puts no
        mass anywhere else (then the shield answers again, and a stop holds the arm)."""
        p = np.where(self.refused, 0.0, np.asarray(probs, dtype=float))
        total = p.sum()
        return p / total if total > 0 else np.asarray(probs, dtype=float)
