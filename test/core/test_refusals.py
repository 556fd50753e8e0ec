"""RefusalMemory (core/refusals.py): what the shield refused in the current state is not
proposed again until the arm moves."""

from __future__ import annotations

import numpy as np

from safari_ros.core.refusals import RefusalMemory

PI = np.array([0.6, 0.3, 0.1, 0.0])


def test_a_refusal_answered_with_a_stop_moves_pi_to_the_next_choice() -> None:
    memory = RefusalMemory(4)
    np.testing.assert_allclose(memory.apply(PI), PI)
    memory.record(0, intervened=True, executed_stop=True)
    np.testing.assert_allclose(memory.apply(PI), [0.0, 0.75, 0.25, 0.0])
    memory.record(1, intervened=True, executed_stop=True)
    np.testing.assert_allclose(memory.apply(PI), [0.0, 0.0, 1.0, 0.0])


def test_any_motion_forgets_the_refusals_and_so_does_a_new_episode() -> None:
    memory = RefusalMemory(4)
    memory.record(0, intervened=True, executed_stop=True)
    memory.record(1, intervened=False, executed_stop=False)  # the proposal ran: a new state
    np.testing.assert_allclose(memory.apply(PI), PI)
    memory.record(0, intervened=True, executed_stop=True)
    memory.record(1, intervened=True, executed_stop=False)  # the home backup ran: it moved
    np.testing.assert_allclose(memory.apply(PI), PI)
    memory.record(0, intervened=True, executed_stop=True)
    memory.reset()
    np.testing.assert_allclose(memory.apply(PI), PI)


def test_when_everything_pi_wants_was_refused_it_asks_again() -> None:
    memory = RefusalMemory(4)
    for a in (0, 1, 2):
        memory.record(a, intervened=True, executed_stop=True)
    np.testing.assert_allclose(memory.apply(PI), PI)  # the shield answers (stop) again
    memory.record(9, intervened=True, executed_stop=True)  # an index it does not know: ignored
    assert not memory.refused[3]
