"""A move's attempts: each one on fresh connections, retried from the last committed checkpoint.

The daemon rides through transient faults (which ones, and for how long: ``retry``) by starting
the walk again from the newest committed checkpoint on new connections. Between two attempts it
may not hold the move's lock (its connection may be what broke), so an operator's offline abort or
discard can land there, and an abort asked of the daemon itself finds no pipeline to record it:
both are honoured here. The walk each attempt runs is the runner's (:meth:`tablemover.move.Move._walk`);
the forward pipeline it starts runs on the attempt's connections here (its commits refill the
budget), and what the walk returns is a :class:`MoveResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from tablemover import checkpoint as cpstore
from tablemover import maintenance
from tablemover.apply import TargetWriter
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.controls import Controls
from tablemover.db import WRITER_SQL_MODE, close, connect
from tablemover.errors import MoveFailed, TablemoverError
from tablemover.flavor import Flavor
from tablemover.lag import LagMonitor
from tablemover.log import event
from tablemover.machine import State, log_state_change
from tablemover.pipeline import Pipeline, forward_feed
from tablemover.readreplica import ReadSide
from tablemover.record import Recorder
from tablemover.retry import RetryBudget, describe_error, is_transient, primary_error
from tablemover.schema import TableSchema, count_rows_estimate
from tablemover.status import Board


@dataclass
class MoveResult:
    """How a run ended."""

    state: State
    rows_copied: int
    events_applied: int
    message: str


class Attempts:
    """Runs attempts of the walk until one ends, each on fresh :class:`~tablemover.record.Connections`.

    ``walk(cp)`` is one attempt's walk on ``record.conns`` from checkpoint ``cp`` (None: a new move).
    """

    def __init__(
        self,
        config: Config,
        controls: Controls,
        board: Board,
        record: Recorder,
        walk: Callable[[Checkpoint | None], Awaitable[MoveResult]],
        reads: ReadSide | None = None,
    ) -> None:
        self.config = config
        # Where each attempt reads rows and the binlog ([replica] or [source], tablemover.readreplica).
        self.reads = reads or ReadSide(config, board)
        self.controls = controls
        self.board = board
        self.record = record
        self.lock = record.lock
        self.conns = record.conns
        self.walk = walk
        self.schemas: dict[str, TableSchema] = {}
        self.commits_total = 0  # target commits over every attempt (the retry budget refills on them)

    async def run(self, cp: Checkpoint | None, schemas: dict[str, TableSchema]) -> MoveResult:
        """Run attempts until one ends; a transient error restarts from the last committed checkpoint.

        ``schemas`` are the moved tables' as preflight read them.

        The budget is per outage: an attempt that committed work on the target (or ran for a whole
        budget) refills it, so a daemon rides through any number of separate faults but gives up
        (exit 1) on one that lasts. Reading the checkpoint again is part of the next attempt: a
        target that is still down fails it, and the same budget decides.
        """
        self.schemas = schemas
        budget = RetryBudget(self.config.move.retry_budget_s)
        retrying = False
        while True:
            commits_before = self.commits_total
            started = time.monotonic()
            try:
                if retrying:
                    previous, cp = cp, await self._reload_checkpoint()
                    ended = self._ended_while_waiting(previous, cp)
                    if ended is not None:
                        return ended
                return await self._attempt(cp)
            except BaseException as exc:
                error = primary_error(exc)
                if self.controls.stop_requested or not is_transient(error):
                    raise
                budget.attempt_failed(
                    committed=self.commits_total > commits_before, lasted_s=time.monotonic() - started
                )
                delay = budget.next_delay()
                if delay is None:
                    last = describe_error(error).rstrip(".")
                    raise MoveFailed(
                        f"gave up after {budget.attempts} retries over {budget.elapsed_s:.0f} s "
                        f"(retry_budget_s = {budget.limit_s:g}); last error: {last}. "
                        "The checkpoint is intact; run the same command again to resume once the "
                        "cause is fixed."
                    ) from exc
                event(
                    "transient error; retrying from the last committed checkpoint",
                    logging.WARNING,
                    error=describe_error(error),
                    attempt=budget.attempts,
                    retry_in_s=round(delay, 2),
                    outage_s=round(budget.elapsed_s, 1),
                )
                await anyio.sleep(delay)
                retrying = True

    async def abort_between_attempts(self) -> MoveResult:
        """The abort came while no pipeline ran (start-up, or waiting to retry after a fault), so
        nothing recorded it: every task has ended, record ABORTED here."""
        if not self.lock.held:
            await self.lock.acquire()  # we dropped it after the fault; never write unowned
        aborted, previous = await maintenance.record_abort(self.config)
        if aborted is None:
            return MoveResult(
                State.PREPARED, 0, 0, "aborted before the move started; `tablemover run` starts it"
            )
        self.board.committed.store(aborted)
        log_state_change(previous, aborted.state)
        return MoveResult(
            aborted.state,
            aborted.rows_copied,
            aborted.events_applied,
            "aborted by the operator; `tablemover run` resumes the move",
        )

    async def run_forward(
        self, flavor: Flavor, lag: LagMonitor, driver: Callable[[TargetWriter], Awaitable[None]]
    ) -> None:
        """Run ``driver`` as the driver of the forward pipeline on this attempt's connections."""
        assert self.board.committed.checkpoint is not None
        reading = self.reads.reading  # this attempt's: [replica] or, after a fallback, [source]
        pipeline = Pipeline(
            reading,
            self.schemas,
            forward_feed(reading, flavor, self.record.state_db),
            source_monitor=self.conns.source_monitor,
            writer_conn=self.conns.target,
            controls=self.controls,
            board=self.board,
            lag=lag,
            fence=self.lock,
            reads=self.reads,
        )
        self.record.track(pipeline)
        try:
            await pipeline.run(self.board.committed.checkpoint, driver)
        except Exception as exc:
            # A stop cancels queries in flight, which asyncmy reports as errors ("Cancelled during
            # execution"); after a stop that is part of stopping, unless it is ours.
            if not self.controls.stop_requested or isinstance(primary_error(exc), TablemoverError):
                raise
            event("pipeline stopped", logging.DEBUG, detail=repr(exc)[:500])
            logging.getLogger("tablemover").debug("pipeline stopped", exc_info=True)
        finally:
            self.commits_total += pipeline.commits
            self.record.track(None)

    def result(self, state: State, message: str) -> MoveResult:
        """How the walk ended, in ``state``, with the newest checkpoint's figures."""
        cp = self.board.committed.checkpoint
        assert cp is not None
        return MoveResult(state, cp.rows_copied, cp.events_applied, message)

    def stopped(self) -> MoveResult:
        """The result of a run that a stop (signal or command) ended, in the newest checkpoint's state."""
        cp = self.board.committed.checkpoint
        state = cp.state if cp is not None else State.PREPARED
        return MoveResult(
            state,
            cp.rows_copied if cp else 0,
            cp.events_applied if cp else 0,
            f"stopped by {self.controls.stop_requested} in state {state.value}; run again to resume",
        )

    def _ended_while_waiting(self, previous: Checkpoint | None, cp: Checkpoint | None) -> MoveResult | None:
        """Between attempts this daemon may not hold the move's lock (its connection broke), so an
        operator's offline abort or discard can land: honour it."""
        if previous is not None and cp is None:
            raise MoveFailed(
                f"the checkpoint of move {self.config.move.name!r} disappeared from the target "
                "while this daemon waited to retry (discarded?); it stopped without changing "
                "anything. `tablemover run` starts the move from scratch."
            )
        newly_aborted = previous is not None and previous.state is not State.ABORTED
        if cp is not None and cp.state is State.ABORTED and newly_aborted:
            self.board.committed.store(cp)
            return MoveResult(cp.state, cp.rows_copied, cp.events_applied, "aborted by the operator")
        return None

    async def _reload_checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint, read again after a fault (raises while the target is down)."""
        conn: Any = None
        try:
            conn = await connect(self.config.target, "target")
            database = await cpstore.locate_move(conn, self.config.move)
            self.record.located(database)
            return await cpstore.latest(conn, database, self.config.move.name)
        finally:
            if conn is not None:
                await close(conn)

    async def _attempt(self, cp: Checkpoint | None) -> MoveResult:
        """One try at the move on fresh connections, from checkpoint ``cp`` (None: a new move)."""
        conns = self.conns
        if not self.lock.held:
            await self.lock.acquire()
        try:
            conns.source = await connect(self.config.source, "source", connection="main")
            conns.source_monitor = await connect(self.config.source, "source", connection="monitor")
            conns.target = await connect(
                self.config.target,
                "target",
                autocommit=False,
                sql_mode=WRITER_SQL_MODE,
                binary_prefix=True,
                connection="writer",
            )
            # The replica (when configured) is read from only once it holds everything the
            # target does: waited for here, or the fallback (tablemover.readreplica).
            reading = await self.reads.choose(
                conns.source, conns.target, cp.applied_gtid if cp is not None else ""
            )
            if reading.replica is not None:
                conns.reader = await connect(reading.replica, "replica", connection="main")
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.lock.keep)
                for table in self.config.move.tables:
                    if table in self.schemas:
                        self.board.rows_estimate[table] = await count_rows_estimate(
                            conns.source, self.config.move.database, self.schemas[table].name
                        )
                result = await self.walk(cp)
                tg.cancel_scope.cancel()
            return result
        except BaseException:
            # The lock's connection may be what broke: then it is taken again before the next
            # attempt; a healthy one is kept, so that nobody can take the move in between.
            if not self.controls.stop_requested:
                await self.lock.keep_or_drop()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                for conn in (conns.source, conns.source_monitor, conns.target, conns.reader):
                    if conn is not None:
                        await close(conn)
            conns.source = conns.source_monitor = conns.target = conns.reader = None
