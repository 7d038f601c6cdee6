"""Apply lag: how far the target's committed position trails the source, in seconds; pure.

The source's GTID position is sampled periodically; the lag is the age of the newest sample the
writer's committed position covers (everything the source had committed at that instant is on
the target), or 0 once every sample is covered. It is an upper bound within one sampling period,
so a writer that keeps up reads as ~0 and one that falls behind grows by a second per second.
"""

from __future__ import annotations

from collections import deque

from tablemover import gtid


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
