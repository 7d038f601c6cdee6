"""Which checkpoint histories the state machine could have written."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tablemover.checkpoint import KIND_OWNER, KIND_TRANSITION, Checkpoint
from tablemover.claims import EDGES, check_history, feed_problem, foreign_row, impossible_step
from tablemover.config import parse_config
from tablemover.errors import SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.machine import TRANSITIONS, State
from tablemover.window import Window


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


def written(*rows: tuple[int, str, str]) -> tuple[list[Checkpoint], list[Checkpoint]]:
    """(history, owners) from (id, kind or state, writer) triples, in any order."""
    history = [
        Checkpoint("m", State(k), "0-1-1", id=i, writer=w, kind=KIND_TRANSITION)
        for i, k, w in rows
        if k != "owner"
    ]
    owners = [
        Checkpoint("m", State.COPYING, "0-1-1", id=i, writer=w, kind=KIND_OWNER)
        for i, k, w in rows
        if k == "owner"
    ]
    return history, owners


def test_each_row_carries_the_writer_of_the_newest_owner_before_it() -> None:
    history, owners = written(
        (1, "PREPARED", "d1"),  # the first run's rows before its owner row: accepted
        (2, "owner", "d1"),
        (3, "COPYING", "d1"),
        (4, "owner", "d1"),  # the same daemon took the lock again after a fault
        (5, "COPYING", "d1"),
        (6, "owner", "abort-cli"),  # an offline abort writes its own owner row first
        (7, "ABORTED", "abort-cli"),
        (8, "owner", "d2"),
        (9, "COPYING", "d2"),
    )
    assert foreign_row(history, owners) is None
    assert foreign_row(history, []) is None, "a history without owner rows (earlier layout) is accepted"


def test_a_row_by_anyone_else_is_found_with_its_owner() -> None:
    history, owners = written(
        (1, "PREPARED", "d1"), (2, "owner", "d1"), (3, "COPYING", "d1"), (4, "COPYING", "app")
    )
    found = foreign_row(history, owners)
    assert found is not None and (found[0].id, found[0].writer, found[1].id) == (4, "app", 2)
    # The owner that counts is the newest one before the row, not the newest overall.
    history, owners = written(
        (2, "owner", "d1"), (3, "COPYING", "d2"), (4, "owner", "d2"), (5, "COPYING", "d2")
    )
    found = foreign_row(history, owners)
    assert found is not None and found[0].id == 3 and found[1].writer == "d1"
    # Rows arrive ordered by seq, which need not be id order; the rule goes by id.
    history, owners = written(
        (5, "COPYING", "d2"), (3, "COPYING", "d1"), (4, "owner", "d2"), (2, "owner", "d1")
    )
    assert foreign_row(history, owners) is None


def test_check_history_refuses_a_foreign_writer_with_exit_3() -> None:
    config = parse_config('[move]\nname = "m"\ndatabase = "app"\ntables = ["t"]\n', env={})
    history, owners = written((1, "PREPARED", "d1"), (2, "owner", "d1"), (3, "COPYING", "mallory@app"))
    with pytest.raises(SafetyRefusal) as refused:
        check_history(config, history, owners)
    assert refused.value.exit_code == 3
    message = str(refused.value)
    for part in ("row 3", "'mallory@app'", "'d1'", "owner row 2", "remove the rows", "Nothing was done"):
        assert part in message, (part, message)
    check_history(config, history[:1], owners)  # the genuine part passes


def feed_rows(*rows: tuple[int, str, str, str]) -> list[Checkpoint]:
    """Feed checkpoint rows from (seq, state, applied position, writer)."""
    return [Checkpoint("m~rev1", State(st), pos, id=seq, seq=seq, writer=w) for seq, st, pos, w in rows]


WINDOW = Window("0-1-100", 0.0, "m~rev1")


def test_a_feed_the_daemons_wrote_passes() -> None:
    rows = feed_rows((1, "WINDOW_OPEN", "0-1-100", "d1"), (2, "WINDOW_OPEN", "0-1-140", "d2"))
    assert feed_problem(rows, WINDOW, {"d1", "d2"}, "0-1-150", Flavor.MARIADB) == ""
    assert feed_problem(rows, WINDOW, {"d1", "d2"}, "0-1-140", Flavor.MARIADB) == "", "caught up exactly"


def test_forged_feed_rows_are_named() -> None:
    ok = (1, "WINDOW_OPEN", "0-1-100", "d1")
    cases = {
        "has no rows": [],
        "row 2 in state ROLLBACK_RENAMED": [ok, (2, "ROLLBACK_RENAMED", "0-1-120", "d1")],
        "row 2 written by 'app'": [ok, (2, "WINDOW_OPEN", "0-1-120", "app")],
        "before the window's start": [ok, (2, "WINDOW_OPEN", "0-1-90", "d1")],
        "beyond what the target has written": [ok, (2, "WINDOW_OPEN", "0-1-9000", "d1")],
        "cannot be read": [ok, (2, "WINDOW_OPEN", "not a position", "d1")],
    }
    for expected, rows in cases.items():
        problem = feed_problem(feed_rows(*rows), WINDOW, {"d1"}, "0-1-150", Flavor.MARIADB)
        assert expected in problem, (expected, problem)
