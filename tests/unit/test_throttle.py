"""The throttle decision: which condition holds the copier, in priority order."""

from __future__ import annotations

import pytest

from tablemover.config import ThrottleSection
from tablemover.throttle import Readings, reason_kind, throttle_reason

LIMITS = ThrottleSection(max_lag_s=2.0, max_threads_running=50, flag_file="/tmp/hold")
CALM = Readings(
    lag_s=0.1, source_threads_running=3, target_threads_running=4, flag_file_exists=False, paused=False
)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, ""),
        ({"paused": True}, "paused by the operator"),
        ({"flag_file_exists": True}, "flag file /tmp/hold exists"),
        ({"lag_s": 2.5}, "apply lag 2.5 s > max_lag_s 2.0"),
        ({"lag_s": 2.0}, ""),  # at the limit is still fine
        ({"source_threads_running": 51}, "source Threads_running 51 > 50"),
        ({"target_threads_running": 80}, "target Threads_running 80 > 50"),
        ({"paused": True, "lag_s": 9.0}, "paused by the operator"),  # the operator's word comes first
    ],
)
def test_throttle_reason(changes: dict[str, object], reason: str) -> None:
    readings = Readings(**{**CALM.__dict__, **changes})  # type: ignore[arg-type]
    assert throttle_reason(LIMITS, readings) == reason


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("", ""),
        ("paused by the operator", "paused"),
        ("flag file /tmp/hold exists", "flag_file"),
        ("apply lag 2.5 s > max_lag_s 2.0", "lag"),
        ("apply lag 9.9 s > max_lag_s 2.0", "lag"),
        ("source Threads_running 51 > 50", "source_threads_running"),
        ("target Threads_running 80 > 50", "target_threads_running"),
        ("apply backlog: 7 batches queued for the writer", "backlog"),
        ("cutover postponed: waiting for `tablemover cutover`", "postponed"),
        ("cutover waits for 2 source transaction(s) to end", "cutover_blocked"),
        ("something new", "other"),
    ],
)
def test_reason_kind_is_stable_while_the_figures_change(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_every_throttle_reason_has_a_kind() -> None:
    for changes in (
        {"paused": True},
        {"flag_file_exists": True},
        {"lag_s": 3.0},
        {"source_threads_running": 99},
    ):
        readings = Readings(**{**CALM.__dict__, **changes})  # type: ignore[arg-type]
        assert reason_kind(throttle_reason(LIMITS, readings)) not in ("", "other")
