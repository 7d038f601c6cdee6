"""When copying must wait. Throttling holds the copier only; the binlog apply never waits, because
holding it back would only grow the lag the throttle is trying to reduce.

:func:`throttle_reason` decides (pure); :class:`Throttle` gathers its readings and holds the copier.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from tablemover.config import ServerSection, ThrottleSection
from tablemover.db import close, connect, query_one
from tablemover.log import event

if TYPE_CHECKING:
    from tablemover.controls import Controls
    from tablemover.readreplica import ReadReplicaWatch
    from tablemover.replicas import ReplicaMonitor
    from tablemover.status import Board

MAX_BACKLOG_FOR_CHUNK = 4  # chunks wait for the writer to drain, keeping their shared locks short


@dataclass(frozen=True)
class Readings:
    """What the throttle looks at, gathered by the daemon."""

    lag_s: float
    source_threads_running: int
    target_threads_running: int
    flag_file_exists: bool
    paused: bool
    replica_reason: str = ""  # a watched target replica's hold (tablemover.replicas), "" when none


# What a throttle reason is about, without its figures: what the log keys its "once per change"
# on, and the label /metrics uses (a label with the lag in it would make a new series per value).
KINDS = {
    "paused": "paused",
    "flag file": "flag_file",
    "apply lag": "lag",
    "source Threads_running": "source_threads_running",
    "target Threads_running": "target_threads_running",
    "target replica": "replica_lag",
    "source replica": "replica_lag",
    "read replica": "read_replica",
    "apply backlog": "backlog",
    "cutover postponed": "postponed",
    "cutover waits for target replicas": "replica_wait",
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
    return now.replica_reason


class Throttle:
    """Holds the copier while a throttle condition holds, and samples what the conditions read.

    The reason is published on the board (status, progress bar) and logged once per kind.
    """

    def __init__(self, controls: Controls, board: Board) -> None:
        self.controls = controls
        self.board = board
        self.threads_running = (0, 0)
        self.replicas: ReplicaMonitor | None = None  # set while target replicas are watched
        self.read_replica: ReadReplicaWatch | None = None  # set while the move reads from a replica

    async def sample_threads_running(self, source: Any, target: ServerSection) -> None:
        """Threads_running of both servers, once a second (the throttle reads the latest sample)."""
        sql = "SHOW GLOBAL STATUS LIKE 'Threads_running'"
        conn = await connect(target, "target", connection="throttle")
        try:
            while True:
                src = await query_one(source, sql) if source is not None else None
                dst = await query_one(conn, sql)
                self.threads_running = (int(src[1]) if src else 0, int(dst[1]) if dst else 0)
                await anyio.sleep(1.0)
        finally:
            with anyio.CancelScope(shield=True):
                await close(conn)

    async def wait_unthrottled(self) -> None:
        """Hold the copier while a throttle condition holds."""
        while True:
            limits = self.controls.throttle_limits  # re-read every pass: SIGHUP may have replaced it
            flag = bool(limits.flag_file) and await anyio.Path(limits.flag_file).exists()
            replica = self.replicas.reason(limits.max_replica_lag_s) if self.replicas is not None else ""
            if not replica and self.read_replica is not None:
                replica = self.read_replica.reason(limits.max_replica_lag_s)
            readings = Readings(
                self.board.lag_s,
                self.threads_running[0],
                self.threads_running[1],
                flag,
                self.controls.paused,
                replica,
            )
            self.set_waiting(throttle_reason(limits, readings))
            if not self.board.throttle_reason:
                return
            with anyio.move_on_after(0.25):
                if self.controls.paused:
                    await self.controls.wait_unpaused()
                else:
                    await anyio.sleep(1.0)

    async def chunk_allowed(
        self, backlog: Callable[[], int], writer_committed: Callable[[], Awaitable[Any]]
    ) -> None:
        """Before each chunk: unthrottled, and the writer's backlog small (the binlog apply goes first)."""
        await self.wait_unthrottled()
        # Logged with no await since the readings were judged: a chunk is let start on exactly
        # the readings logged before this line (the replica timing test relies on that order).
        event("copy chunk allowed", logging.DEBUG)
        while (queued := backlog()) > MAX_BACKLOG_FOR_CHUNK:
            self.set_waiting(f"apply backlog: {queued} batches queued for the writer")
            with anyio.move_on_after(0.05):
                await writer_committed()
        self.set_waiting("")

    def set_waiting(self, reason: str) -> None:
        """Record why the copy waits ("" = it does not); log it when the kind of reason changes.

        The text keeps its figures current (status, progress bar); the log hears of a wait once
        per kind of reason, not on every tick where the lag changed by a few milliseconds.
        """
        if reason_kind(reason) != reason_kind(self.board.throttle_reason):
            if reason:
                event("copy throttled", reason=reason)
            else:
                event("copy unthrottled", reason=self.board.throttle_reason)
        self.board.throttle_reason = reason
