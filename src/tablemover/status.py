"""What a running move shows the outside: the live figures its phases keep, and the status and
metrics documents built from them.

The phases write a :class:`Board`; the service shell (control socket, HTTP, systemd) only reads
it, through :func:`status_document` and :func:`metrics_snapshot`, which are pure. That is the
whole interface between the move and whoever asks about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tablemover import hooks, tls
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config
from tablemover.http import MetricsSnapshot
from tablemover.machine import State
from tablemover.replicas import ReplicaLag
from tablemover.throttle import reason_kind

if TYPE_CHECKING:
    from tablemover.controls import Controls


class Committed:
    """Where the newest committed checkpoint is read: the writer's while a pipeline runs."""

    def __init__(self) -> None:
        self._stored: Checkpoint | None = None
        self._live: Callable[[], Checkpoint] | None = None
        self._progress: Callable[[], dict[str, TableProgress]] | None = None
        self._events: Callable[[], int] | None = None

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint this process knows of (None before the first)."""
        return self._live() if self._live is not None else self._stored

    def store(self, cp: Checkpoint) -> None:
        """A checkpoint committed outside the pipeline (or the pipeline's last one, at its end)."""
        self._stored = cp

    def follow(
        self,
        checkpoint: Callable[[], Checkpoint],
        progress: Callable[[], dict[str, TableProgress]],
        events_applied: Callable[[], int],
    ) -> None:
        """Read from the running pipeline's writer until :meth:`unfollow`."""
        self._live, self._progress, self._events = checkpoint, progress, events_applied

    def unfollow(self, last: Checkpoint) -> None:
        """The pipeline ended; ``last`` is its newest committed checkpoint."""
        self._live = self._progress = self._events = None
        self._stored = last

    @property
    def progress(self) -> dict[str, TableProgress]:
        """Per-table copy progress, including the writer's uncommitted-yet-counted rows."""
        if self._progress is not None:
            return self._progress()
        cp = self.checkpoint
        return dict(cp.progress) if cp is not None else {}

    @property
    def events_applied(self) -> int:
        """Binlog events applied so far."""
        if self._events is not None:
            return self._events()
        cp = self.checkpoint
        return cp.events_applied if cp is not None else 0


@dataclass
class Board:
    """The live figures of a running move beyond its checkpoint; written by the phases."""

    committed: Committed = field(default_factory=Committed)
    started: float = field(default_factory=time.monotonic)
    lag_s: float = 0.0
    throttle_reason: str = ""  # why the copy waits, "" when it does not
    cutover_wait: str = ""  # why the cutover waits (postponed, blocked), "" when it does not
    cutover_blockers: list[str] = field(default_factory=list)
    replica_lags: dict[str, ReplicaLag] = field(default_factory=dict)  # per watched target replica
    # Per watched source replica, read while the rollback window's reverse feed writes the source.
    source_replica_lags: dict[str, ReplicaLag] = field(default_factory=dict)
    # Reading from a replica (issue #24): where this attempt reads rows and the binlog, why it
    # waits for the replica ("" when it does not), and the replica's latest reading (its lag
    # behind the primary, or why it cannot be read).
    reading_from: str = ""
    read_wait: str = ""
    read_replica: ReplicaLag | None = None
    copy_rate: float = 0.0  # rows/s copied over the last progress interval
    backlog: int = 0  # items queued for the writer at the last progress report
    rows_estimate: dict[str, int] = field(default_factory=dict)
    index_build_s: dict[str, float] = field(default_factory=dict)  # per table: its deferred-index ALTER
    outage_ms: int | None = None
    outage_lock_wait_ms: int | None = None  # the part of the outage the RENAME waited
    # The rollback window.
    window_closes_at: float | None = None  # wall clock (time.time()), None while no window is open
    reverse_lag_s: float = 0.0
    reverse_applied_gtid: str = ""  # the target position the source's renamed tables hold
    rollback_outage_ms: int | None = None
    on_announce: Callable[[str], None] = field(default=lambda _text: None)

    @property
    def waiting_for(self) -> str:
        """The one reason the move waits right now, "" when it does not."""
        return self.cutover_wait or self.read_wait or self.throttle_reason

    def announce(self, text: str) -> None:
        """A one-line status for whoever listens (systemd's STATUS=)."""
        self.on_announce(text)


def hook_env(board: Board) -> dict[str, str]:
    """The progress variables every hook gets."""
    elapsed = str(round(time.monotonic() - board.started))
    cp = board.committed.checkpoint
    if cp is None:
        return {"TABLEMOVER_ELAPSED_S": elapsed}
    return {
        "TABLEMOVER_ROWS_COPIED": str(cp.rows_copied),
        "TABLEMOVER_ELAPSED_S": elapsed,
        "TABLEMOVER_PROGRESS": "100" if cp.copy_done else "0",
        "TABLEMOVER_ETA_S": "0",
    }


def copy_figures(cp: Checkpoint, estimates: dict[str, int], rate: float, *, waiting: bool) -> dict[str, Any]:
    """Totals, percent, rate and ETA of the copy; no ETA while it waits or nothing moves."""
    copied = cp.rows_copied
    total = sum(
        p.rows_copied if p.done else max(p.rows_copied, estimates.get(t, 0)) for t, p in cp.progress.items()
    )
    percent = 100.0 if cp.copy_done else (100.0 * copied / total if total else 0.0)
    remaining = max(total - copied, 0)
    eta = None if waiting or cp.copy_done or rate <= 0 else round(remaining / rate)
    return {
        "rows_total": total,
        "percent_copied": round(min(percent, 100.0), 1),
        "rows_per_s": round(rate) if not cp.copy_done else 0,
        "eta_s": 0 if cp.copy_done else eta,
    }


def status_document(config: Config, board: Board, controls: Controls) -> dict[str, Any]:
    """What `status --json` prints and /status serves, for a running daemon."""
    cp = board.committed.checkpoint
    if cp is None:
        # A new move before its first checkpoint (preparing the target): say so, not crash.
        return {
            "move": config.move.name,
            "state": None,
            "origin": "daemon",
            "source": "daemon",
            "waiting_for": "preparing the move (no checkpoint yet)",
            "tables": {},
        }
    return {
        "move": config.move.name,
        "state": cp.state.value,
        "applied_gtid": cp.applied_gtid,
        "lag_s": round(board.lag_s, 3),
        "postponed": config.move.postpone_cutover and not controls.cutover_released.is_set(),
        "paused": controls.paused,
        "throttled": bool(board.throttle_reason),
        "throttle_reason": board.throttle_reason,
        "waiting_for": board.waiting_for,
        "waiting_kind": reason_kind(board.waiting_for),
        "rows_copied": cp.rows_copied,
        "events_applied": cp.events_applied,
        "origin": "daemon",  # where the answer came from
        "source": "daemon",  # the old name of "origin", kept for one release
        "tables": {
            t: {
                "rows_copied": cp.progress[t].rows_copied,
                "rows_total": board.rows_estimate.get(t, 0),
                "done": cp.progress[t].done,
                # Seconds the ALTER adding the table's deferred indexes took, once this run did it.
                **({"indexes_added_s": board.index_build_s[t]} if t in board.index_build_s else {}),
            }
            for t in config.move.tables  # config order, as the operator listed them
            if t in cp.progress
        },
        "cutover_blocked_by": list(board.cutover_blockers),
        **copy_figures(cp, board.rows_estimate, board.copy_rate, waiting=bool(board.throttle_reason)),
        "backlog": board.backlog,
        "target_replicas": replica_figures(board, controls.throttle_limits.max_replica_lag_s),
        "reading_from": board.reading_from,
        "read_replica": read_replica_figures(board, controls.throttle_limits.max_replica_lag_s),
        "source_replicas": replica_figures(
            board, controls.throttle_limits.max_replica_lag_s, board.source_replica_lags
        ),
        # Per server: whether every connection this daemon opened is encrypted, and each one's
        # TLS version, cipher and whether the certificate was verified.
        "tls": tls.status_fields(tls.observed()),
        **window_figures(board, controls),
    }


def read_replica_figures(board: Board, limit_s: float) -> dict[str, Any] | None:
    """The replica the move reads from (issue #24): its lag behind the primary (GTID-measured),
    its problem, and whether it holds the copy; None when the move reads no replica."""
    reading = board.read_replica
    if reading is None:
        return None
    return {
        "lag_s": None if reading.lag_s is None else round(reading.lag_s, 3),
        "problem": reading.problem,
        # After a fallback to the primary the replica's problem no longer holds anything back.
        "holds_copy": reading.over(limit_s) and board.reading_from.startswith("replica"),
    }


def replica_figures(
    board: Board, limit_s: float, lags: dict[str, ReplicaLag] | None = None
) -> dict[str, dict[str, Any]]:
    """Per watched replica (the target's unless ``lags`` are given): its heartbeat lag (None when
    unreadable), why, and whether it holds the copy (or, for the source's, the reverse writes)."""
    return {
        name: {
            "lag_s": None if lag.lag_s is None else round(lag.lag_s, 3),
            "problem": lag.problem,
            # "heartbeat", or "Seconds_Behind_Master" while the heartbeat cannot be read there yet.
            "measured_by": lag.fallback or "heartbeat",
            "holds_copy": lag.over(limit_s),
        }
        for name, lag in (board.replica_lags if lags is None else lags).items()
    }


def window_figures(board: Board, controls: Controls) -> dict[str, Any]:
    """The rollback window's part of `status` (nothing while no window is open)."""
    if board.window_closes_at is None:
        return {}
    return {
        "window_closes_in_s": max(0, round(board.window_closes_at - time.time())),
        "reverse_lag_s": round(board.reverse_lag_s, 3),
        "reverse_applied_gtid": board.reverse_applied_gtid,
        "rollback_requested": controls.rollback_requested,
    }


def metrics_snapshot(config: Config, board: Board, controls: Controls) -> MetricsSnapshot:
    """The figures /metrics exposes, taken at scrape time."""
    cp = board.committed.checkpoint
    return MetricsSnapshot(
        move=config.move.name,
        state=cp.state.value if cp else State.PREPARED.value,
        rows_copied={t: p.rows_copied for t, p in board.committed.progress.items()},
        rows_total=dict(board.rows_estimate),
        events_applied=board.committed.events_applied,
        lag_seconds=board.lag_s,
        throttled=bool(board.throttle_reason),
        throttle_reason=reason_kind(board.throttle_reason),
        chunk_size=controls.chunk_size_override or config.move.chunk_size,
        cutover_outage_ms=board.outage_ms,
        cutover_lock_wait_ms=board.outage_lock_wait_ms,
        hook_runs=dict(hooks.RUNS),
        applied_gtid=cp.applied_gtid if cp else "",
        reverse_lag_seconds=board.reverse_lag_s if board.window_closes_at is not None else None,
        rollback_outage_ms=board.rollback_outage_ms,
        tls_encrypted={key: state.encrypted for key, state in tls.observed().items()},
        replica_lag_seconds={name: lag.lag_s for name, lag in board.replica_lags.items()},
        replica_holds_copy={
            name: lag.over(controls.throttle_limits.max_replica_lag_s)
            for name, lag in board.replica_lags.items()
        },
        source_replica_lag_seconds={name: lag.lag_s for name, lag in board.source_replica_lags.items()},
        source_replica_holds_writes={
            name: lag.over(controls.throttle_limits.max_replica_lag_s)
            for name, lag in board.source_replica_lags.items()
        },
    )
