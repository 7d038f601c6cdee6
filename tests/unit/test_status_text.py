"""The text `status` and the copy figures behind it (pure)."""

from __future__ import annotations

from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.cli import status_text
from tablemover.machine import State
from tablemover.status import copy_figures


def cp(**progress: TableProgress) -> Checkpoint:
    return Checkpoint("orders", State.COPYING, "0-1-5", progress=dict(progress))


def test_copy_figures_percent_rate_and_eta() -> None:
    figures = copy_figures(
        cp(a=TableProgress(rows_copied=250), b=TableProgress(rows_copied=0)),
        {"a": 1000, "b": 1000},
        50.0,
        waiting=False,
    )
    assert figures == {"rows_total": 2000, "percent_copied": 12.5, "rows_per_s": 50, "eta_s": 35}


def test_no_eta_while_waiting_or_standing_still() -> None:
    progress = cp(a=TableProgress(rows_copied=250))
    assert copy_figures(progress, {"a": 1000}, 50.0, waiting=True)["eta_s"] is None
    assert copy_figures(progress, {"a": 1000}, 0.0, waiting=False)["eta_s"] is None


def test_done_tables_count_exactly_and_an_estimate_below_the_copied_rows_is_ignored() -> None:
    done = cp(a=TableProgress(rows_copied=1200, done=True), b=TableProgress(rows_copied=10))
    figures = copy_figures(done, {"a": 1000, "b": 5}, 10.0, waiting=False)
    assert figures["rows_total"] == 1210 and figures["percent_copied"] == 100.0


def test_status_text_headline_and_tables() -> None:
    status = {
        "state": "COPYING",
        "rows_copied": 1500,
        "rows_total": 3000,
        "percent_copied": 50.0,
        "rows_per_s": 100,
        "eta_s": 15,
        "lag_s": 0.25,
        "backlog": 3,
        "waiting_for": "",
        "applied_gtid": "0-1-9",
        "origin": "daemon",
        "tables": {
            "z": {"rows_copied": 1000, "rows_total": 1000, "done": True},
            "a": {"rows_copied": 500, "rows_total": 2000, "done": False},
        },
    }
    lines = status_text(status, "orders")
    assert lines[0] == (
        "move orders: COPYING, 50.0% copied (1,500 of ~3,000 rows), 100 rows/s, ETA 15s, lag 0.2 s, backlog 3"
    )
    assert lines[1:3] == ["  z: 1,000 rows copied (done)", "  a: 500 of ~2,000 rows copied"]
    waiting = status_text(
        {**status, "waiting_for": "cutover postponed: waiting for `tablemover cutover`"}, "o"
    )
    assert "  waiting: cutover postponed: waiting for `tablemover cutover`" in waiting


def test_status_text_when_not_started_cleaned_up_or_failed() -> None:
    assert status_text({"state": None}, "o") == ["move o: not started (no checkpoint on the target)"]
    assert "finished and cleaned up" in status_text({"state": None, "cleaned_up": True}, "o")[0]
    failed = status_text(
        {"state": "FAILED", "applied_gtid": "0-1-2", "failure": "move 'o' is FAILED: x"}, "o"
    )
    assert failed == ["move o: FAILED  applied_gtid=0-1-2", "  move 'o' is FAILED: x"]


def test_status_text_shows_an_open_rollback_window() -> None:
    status = {
        "state": "WINDOW_OPEN",
        "rows_copied": 10,
        "tables": {},
        "applied_gtid": "0-1-9",
        "window_closes_in_s": 3725,
        "reverse_lag_s": 0.25,
        "rollback_requested": True,
    }
    lines = status_text(status, "orders")
    window = [line for line in lines if "rollback window" in line]
    assert window == [
        "  rollback window open: closes in 1h02m, reverse lag 0.2 s; rollback requested "
        "(`tablemover rollback` goes back)"
    ]
    closed = {k: v for k, v in status.items() if k not in ("window_closes_in_s", "reverse_lag_s")}
    assert not [line for line in status_text(closed, "orders") if "rollback window" in line]


def test_status_text_shows_how_long_the_deferred_indexes_took() -> None:
    status = {
        "state": "COPYING",
        "rows_copied": 10,
        "applied_gtid": "0-1-9",
        "tables": {"a": {"rows_copied": 10, "rows_total": 10, "done": True, "indexes_added_s": 12.345}},
    }
    assert "  a: 10 rows copied (done), deferred indexes added in 12.3 s" in status_text(status, "o")
