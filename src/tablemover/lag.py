"""Apply lag: how far the target's committed position trails the source, in seconds.

The source's GTID position is sampled periodically; the lag is the age of the newest sample the
writer's committed position covers (everything the source had committed at that instant is on
the target), or 0 once every sample is covered. It is an upper bound within one sampling period,
so a writer that keeps up reads as ~0 and one that falls behind grows by a second per second.

:class:`LagTracker` is the arithmetic (pure); :class:`LagMonitor` samples the source and keeps the
board's ``lag_s`` current, and says when the move has caught up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from tablemover import gtid
from tablemover.config import ServerSection
from tablemover.db import close, connect, current_position
from tablemover.flavor import Flavor

if TYPE_CHECKING:
    from tablemover.apply import TargetWriter
    from tablemover.status import Board

CAUGHT_UP_LAG_S = 1.0
SAMPLE_EVERY_S = 0.1  # how often the source position is read for the lag


class LagTracker:
    """Source position samples not yet covered by the target, and the lag they imply."""

    def __init__(self) -> None:
        self._pending: deque[tuple[float, gtid.GtidPosition]] = deque()
        self._started: float | None = None
        self.covered_at: float | None = None  # when the newest covered sample was taken
        self.lag_s = 0.0

    def sample(self, now: float, source: gtid.GtidPosition) -> None:
        """Record the source's position as read at ``now``."""
        if self._started is None:
            self._started = now
        self._pending.append((now, source))

    def update(self, now: float, committed: gtid.GtidPosition) -> float:
        """Drop the samples ``committed`` covers and return the lag at ``now``."""
        while self._pending and gtid.covers(committed, self._pending[0][1]):
            self.covered_at = self._pending.popleft()[0]
        if not self._pending:
            self.lag_s = 0.0
        elif self.covered_at is not None:
            self.lag_s = now - self.covered_at
        else:  # nothing covered yet: at least as old as the first sample
            self.lag_s = now - (self._started if self._started is not None else now)
        return self.lag_s

    def caught_up_since(self, since: float, max_lag_s: float) -> bool:
        """True when a sample taken at or after ``since`` is covered and the lag is under ``max_lag_s``."""
        return self.covered_at is not None and self.covered_at >= since and self.lag_s < max_lag_s


class LagMonitor:
    """Samples a server's position and publishes how far the writer trails it (``board.lag_s``
    for the move; the rollback window's reverse feed publishes its own)."""

    def __init__(
        self,
        source: ServerSection,
        flavor: Flavor,
        board: Board,
        publish: Callable[[float], None] | None = None,
        role: str = "source",
    ) -> None:
        self.source = source
        self.flavor = flavor
        self.board = board
        self.role = role
        self.publish = publish or self._publish_lag
        self.tracker = LagTracker()

    def _publish_lag(self, lag_s: float) -> None:
        self.board.lag_s = lag_s

    async def track(self, writer: TargetWriter) -> None:
        """For the whole run: sample the source, re-read the lag at every writer commit."""
        conn = await connect(self.source, self.role, connection="lag")
        try:
            while True:
                position = await current_position(conn, self.flavor)
                self.tracker.sample(time.monotonic(), gtid.parse_position(self.flavor, position))
                next_sample = time.monotonic() + SAMPLE_EVERY_S
                while True:
                    self.publish(self.tracker.update(time.monotonic(), writer.committed_position))
                    remaining = next_sample - time.monotonic()
                    if remaining <= 0:
                        break
                    with anyio.move_on_after(remaining):
                        await writer.committed.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await close(conn)

    async def wait_caught_up(self, writer: TargetWriter, tables: list[str]) -> None:
        """Return once every table's copy is committed and the apply lag is under a second.

        The tracker must also have seen the writer cover a source position sampled after this
        call began: a busy but keeping-up writer passes, and a stale reading from before does not.
        """
        since = time.monotonic()
        while True:
            progress = writer.checkpoint.progress
            copied = all(progress[t].done if t in progress else False for t in tables)
            if copied and self.tracker.caught_up_since(since, CAUGHT_UP_LAG_S):
                return
            with anyio.move_on_after(SAMPLE_EVERY_S):
                await writer.committed.wait()
