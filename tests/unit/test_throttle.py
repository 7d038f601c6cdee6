"""The throttle decision: which condition holds the copier, in priority order."""

from __future__ import annotations

import pytest

from tablemover.config import ThrottleSection
from tablemover.throttle import Readings, throttle_reason

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
