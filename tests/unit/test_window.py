"""The rollback window's pure parts: its states and transitions, what its checkpoint rows carry,
the two RENAMEs of a rollback, the operator's request, and what status and /metrics show."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from tablemover.checkpoint import Checkpoint
from tablemover.config import parse_config
from tablemover.controls import Controls
from tablemover.flavor import Flavor
from tablemover.http import build_registry
from tablemover.machine import (
    PAST_POINT_OF_NO_RETURN,
    REVERSE_FEED,
    TERMINAL,
    IllegalTransition,
    MoveMachine,
    State,
)
from tablemover.pipeline import forward_feed
from tablemover.rollback import restore_renaming, rollback_renaming
from tablemover.status import Board, metrics_snapshot, status_document
from tablemover.window import Window, reverse_feed, rollback_comment

CONFIG = parse_config(
    '[move]\nname = "orders"\ndatabase = "app"\ntarget_database = "app2"\ntables = ["a", "b"]\n'
    "rollback_window_s = 60\n[target]\nport = 3307\n",
    env={},
)


async def walk(start: State, *triggers: str) -> list[State]:
    persisted: list[State] = []

    async def persist(_previous: State, state: State, _kwargs: dict[str, Any]) -> None:
        persisted.append(state)

    machine = MoveMachine(start, persist)
    for trigger in triggers:
        await machine.fire(trigger)
    return persisted


async def test_the_window_and_a_rollback_walk_through_their_states() -> None:
    assert await walk(
        State.HOOK_FIRED,
        "open_window",
        "begin_rollback",
        "cancel_rollback",
        "begin_rollback",
        "mark_rollback_renamed",
        "mark_rollback_drained",
        "mark_rolled_back",
    ) == [
        State.WINDOW_OPEN,
        State.ROLLBACK_STARTED,
        State.WINDOW_OPEN,
        State.ROLLBACK_STARTED,
        State.ROLLBACK_RENAMED,
        State.ROLLBACK_DRAINED,
        State.ROLLED_BACK,
    ]
    assert await walk(State.HOOK_FIRED, "open_window", "close_window") == [State.WINDOW_OPEN, State.DONE]
    assert await walk(State.HOOK_FIRED, "finish") == [State.DONE]


@pytest.mark.parametrize(
    ("start", "trigger"),
    [
        (State.ROLLBACK_STARTED, "close_window"),  # a rollback under way cannot just stop
        (State.ROLLBACK_RENAMED, "cancel_rollback"),  # past the target's RENAME: only forward
        (State.DONE, "begin_rollback"),
        (State.COPYING, "begin_rollback"),
        (State.WINDOW_OPEN, "abort"),
        (State.ROLLED_BACK, "open_window"),
    ],
)
async def test_what_the_window_does_not_allow(start: State, trigger: str) -> None:
    with pytest.raises(IllegalTransition):
        await walk(start, trigger)


def test_state_sets() -> None:
    assert State.ROLLED_BACK in TERMINAL and State.WINDOW_OPEN not in TERMINAL
    assert {State.WINDOW_OPEN, State.ROLLBACK_STARTED, State.ROLLBACK_RENAMED} == REVERSE_FEED
    assert {State.WINDOW_OPEN, State.ROLLBACK_DRAINED, State.ROLLED_BACK} <= PAST_POINT_OF_NO_RETURN


def checkpoint(detail: dict[str, Any], state: State = State.WINDOW_OPEN) -> Checkpoint:
    return Checkpoint(move_name="orders", state=state, kind="transition", applied_gtid="0-1-5", detail=detail)


def test_every_window_row_carries_the_window() -> None:
    window = Window.open("orders", "0-2-40", 60)
    assert 59 < window.remaining_s <= 60
    assert window.feed_name.startswith("orders~rev") and len(window.feed_name) <= 64
    assert Window.open("orders", "0-2-40", 60).feed_name != window.feed_name, "a window reuses a feed name"
    detail = window.detail(nonce="abc")
    assert detail["nonce"] == "abc"
    assert Window.from_checkpoint(checkpoint(detail)) == window


@pytest.mark.parametrize(
    "detail",
    [{}, {"reverse_from": "0-2-40"}, {"reverse_from": "0-2-40", "closes_at": "soon", "feed": "x"}],
)
def test_a_row_without_the_window_is_not_taken_for_one(detail: dict[str, Any]) -> None:
    assert Window.from_checkpoint(checkpoint(detail)) is None


def test_the_rollbacks_two_renames() -> None:
    away = rollback_renaming(CONFIG, "n1")
    assert away.server.port == 3307 and away.role == "target"
    assert away.statement() == (
        f"RENAME /* {rollback_comment('orders', 'n1')} */ TABLE `app2`.`a` TO `app2`.`_a_rolledback`, "
        "`app2`.`b` TO `app2`.`_b_rolledback`"
    )
    back = restore_renaming(CONFIG)
    assert back.role == "source"
    assert back.statement().endswith("TABLE `app`.`_a_moved` TO `app`.`a`, `app`.`_b_moved` TO `app`.`b`")
    # The reverse feed skips the rollback's own RENAME by its tag, and only that one.
    tag = reverse_feed(CONFIG, Flavor.MARIADB, "_tablemover").stream.own_rename_tag
    assert (
        tag in away.statement()
        and tag not in forward_feed(CONFIG, Flavor.MARIADB, "_tablemover").stream.own_rename_tag
    )


def test_the_reverse_feed_reads_the_target_and_writes_the_renamed_source_tables() -> None:
    forward, reverse = (
        forward_feed(CONFIG, Flavor.MARIADB, "_tablemover"),
        reverse_feed(CONFIG, Flavor.MARIADB, "_tablemover"),
    )
    assert reverse.stream.server.port == 3307 and reverse.stream.database == "app2"
    assert reverse.writer_database == "app" and reverse.table_names == {"a": "_a_moved", "b": "_b_moved"}
    assert reverse.state_database == forward.state_database == "_tablemover"
    assert reverse.stream.server_id != forward.stream.server_id
    assert forward.forward and not reverse.forward


@pytest.mark.parametrize("state", [State.COPYING, State.HOOK_FIRED, State.DONE, State.ROLLED_BACK])
def test_a_rollback_is_refused_outside_the_window(state: State) -> None:
    controls = Controls(CONFIG.throttle)
    assert "refused" in controls.request_rollback(state)
    assert not controls.rollback_requested and not controls.rollback_asked.is_set()


def test_a_rollback_request_and_its_decline() -> None:
    controls = Controls(CONFIG.throttle)
    assert controls.request_rollback(State.WINDOW_OPEN) == ""
    assert controls.rollback_requested and controls.rollback_asked.is_set()
    assert controls.request_rollback(State.ROLLBACK_RENAMED) == ""  # asking again changes nothing
    controls.rollback_declined()
    assert not controls.rollback_requested and not controls.rollback_asked.is_set()


def test_status_and_metrics_show_the_window_only_while_it_is_open() -> None:
    controls, board = Controls(CONFIG.throttle), Board()
    board.committed.store(checkpoint({}, State.HOOK_FIRED))
    closed = status_document(CONFIG, board, controls)
    assert "window_closes_in_s" not in closed and "reverse_lag_s" not in closed
    scrape = generate_latest(build_registry(lambda: metrics_snapshot(CONFIG, board, controls))).decode()
    assert "tablemover_reverse_lag_seconds{" not in scrape

    board.committed.store(checkpoint({}, State.WINDOW_OPEN))
    board.window_closes_at, board.reverse_lag_s = time.time() + 30, 0.25
    opened = status_document(CONFIG, board, controls)
    assert 28 <= opened["window_closes_in_s"] <= 30 and opened["reverse_lag_s"] == 0.25
    assert opened["rollback_requested"] is False and opened["state"] == "WINDOW_OPEN"
    board.rollback_outage_ms = 42
    scrape = generate_latest(build_registry(lambda: metrics_snapshot(CONFIG, board, controls))).decode()
    assert 'tablemover_reverse_lag_seconds{move="orders"} 0.25' in scrape
    assert 'tablemover_rollback_outage_milliseconds{move="orders"} 42.0' in scrape
    assert 'tablemover_state{move="orders",state="WINDOW_OPEN"} 1.0' in scrape
