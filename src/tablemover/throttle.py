"""When copying must wait. Throttling holds the copier only; the binlog apply never waits, because
holding it back would only grow the lag the throttle is trying to reduce."""

from __future__ import annotations

from dataclasses import dataclass

from tablemover.config import ThrottleSection


@dataclass(frozen=True)
class Readings:
    """What the throttle looks at, gathered by the daemon."""

    lag_s: float
    source_threads_running: int
    target_threads_running: int
    flag_file_exists: bool
    paused: bool


def throttle_reason(limits: ThrottleSection, now: Readings) -> str:
    """Why copying must wait right now, or "" when it may go on. Pure."""
    if now.paused:
        return "paused by the operator"
    if now.flag_file_exists:
        return f"flag file {limits.flag_file} exists"
    if now.lag_s > limits.max_lag_s:
        return f"apply lag {now.lag_s:.1f} s > max_lag_s {limits.max_lag_s}"
    if now.source_threads_running > limits.max_threads_running:
        return f"source Threads_running {now.source_threads_running} > {limits.max_threads_running}"
    if now.target_threads_running > limits.max_threads_running:
        return f"target Threads_running {now.target_threads_running} > {limits.max_threads_running}"
    return ""
