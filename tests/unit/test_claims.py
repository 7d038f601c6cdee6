"""Which checkpoint histories the state machine could have written."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from tablemover.checkpoint import Checkpoint
from tablemover.claims import EDGES, impossible_step
from tablemover.machine import TRANSITIONS, State


def rows(*states: State) -> list[Checkpoint]:
    return [Checkpoint("m", s, "0-1-1", id=i) for i, s in enumerate(states, 1)]


def test_a_real_history_passes() -> None:
    s = State
    lifecycle = rows(
        s.PREPARED, s.COPYING, s.COPYING, s.CUTOVER_STARTED, s.COPYING, s.CUTOVER_STARTED, s.RENAMED,
        s.DRAINED, s.DRAINED, s.HOOK_FIRED, s.WINDOW_OPEN, s.ROLLBACK_STARTED, s.WINDOW_OPEN, s.DONE,
    )  # fmt: skip
    assert impossible_step(lifecycle) is None
    assert impossible_step(rows(s.PREPARED, s.COPYING, s.ABORTED, s.COPYING, s.FAILED)) is None
    assert impossible_step([]) is None


def test_forged_steps_are_found() -> None:
    found = impossible_step(rows(State.PREPARED, State.COPYING, State.RENAMED, State.DRAINED))
    assert found is not None and (found[0].state, found[1].state) == (State.COPYING, State.RENAMED)
    found = impossible_step(rows(State.HOOK_FIRED, State.DONE, State.COPYING))
    assert found is not None and found[1].id == 3


@given(st.lists(st.sampled_from(list(State)), min_size=2, max_size=12))
def test_a_history_passes_exactly_when_every_step_is_a_transition(states: list[State]) -> None:
    allowed = {(a, b) for _, sources, b in TRANSITIONS for a in sources}
    legal = all(a is b or (a, b) in allowed for a, b in itertools.pairwise(states))
    assert (impossible_step(rows(*states)) is None) == legal
    assert allowed == EDGES
