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


# What a throttle reason is about, without its figures: what the log keys its "once per change"
# on, and the label /metrics uses (a label with the lag in it would make a new series per value).
KINDS = {
    "paused": "paused",
    "flag file": "flag_file",
    "apply lag": "lag",
    "source Threads_running": "source_threads_running",
    "target Threads_running": "target_threads_running",
    "apply backlog": "backlog",
    "cutover postponed": "postponed",
    "cutover waits": "cutover_blocked",
}


def reason_kind(reason: str) -> str:
    """The stable kind of a reason text ("lag" for "apply lag 2.5 s > ..."), "" for none."""
    for prefix, kind in KINDS.items():
        if reason.startswith(prefix):
            return kind
    return "other" if reason else ""


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
