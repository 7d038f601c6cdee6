"""Copy + apply, the heart of COPYING: the binlog stream, the chunk copier and the ordered target
writer, wired by one bounded inbox, plus the tasks that watch them (lag, throttle samples, progress).

The writer is the only task that writes the target; the stream and the copier feed its inbox
(spec rule 7: the writer consumes before the stream produces). Transitions go through the same
inbox, so a state's checkpoint row commits in order with the data before it. The phases that need
the pipeline running (catch-up, checksum gate, cutover, drain) run inside it as its *driver*; a stop
cancels the driver, and the writer then applies what is queued and commits at a source boundary.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import gtid, progress, rangestore
from tablemover.apply import Fence, TargetWriter, Transition
from tablemover.changes import WorkItem
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config, ThrottleSection
from tablemover.controls import Controls
from tablemover.copy import TableCopier
from tablemover.copyplan import Span
from tablemover.cutover import rename_comment
from tablemover.db import close, connect
from tablemover.decode import RowDecoder
from tablemover.errors import TablemoverError
from tablemover.flavor import Flavor
from tablemover.gate import LiveGate
from tablemover.hooks import run_hooks
from tablemover.lag import LagMonitor
from tablemover.log import event
from tablemover.machine import State
from tablemover.parallel import CopiedChunk, ParallelCopy
from tablemover.readreplica import ReadReplicaWatch, ReadSide
from tablemover.replicas import ReplicaMonitor, hold_reverse_writes, write_heartbeats
from tablemover.retry import primary_error
from tablemover.schema import TableSchema
from tablemover.status import Board, hook_env
from tablemover.stream import BinlogStream, StreamSettings
from tablemover.throttle import Throttle
from tablemover.verify import TableReport, VerifyReport, applied_waiter, difference_refusal

INBOX_SIZE = 64
TRAILING_MAX_LAG_S = 1.0  # the trailing gate compares chunks while the apply lags less than this
STOP_GRACE_S = 7.0  # systemd's default stop timeout is longer; the spec asks for exit within 10 s
PROGRESS_EVERY_S = 5.0

Driver = Callable[[TargetWriter], Awaitable[None]]


@dataclass(frozen=True)
class Feed:
    """Which way a pipeline runs: where its stream reads and where its writer writes."""

    stream: StreamSettings
    writer_database: str
    table_names: dict[str, str]  # moved table -> the table its rows are written to
    # Forward (the move): chunks are copied beside the stream, transitions are committed by the
    # writer with the data, and its checkpoint is the move's. Reverse (the rollback window): the
    # stream alone, into the source's renamed tables, with a checkpoint of its own.
    forward: bool
    # The schema of the writer's checkpoint on the same server (committed with the rows).
    state_database: str


def forward_feed(config: Config, flavor: Flavor, state_database: str) -> Feed:
    """Source binlog -> target tables of the same names, with the chunk copy.

    ``state_database`` is where the move's checkpoint is (:func:`tablemover.checkpoint.locate`).
    The binlog is the reader's: ``[replica]``'s when the move reads from one (its binlog carries
    the primary's transactions under the primary's GTIDs, tablemover.readreplica).
    """
    move = config.move
    settings = StreamSettings(
        server=config.reader,
        role=config.reader_role,
        flavor=flavor,
        server_id=move.effective_replica_server_id,
        database=move.database,
        own_rename_tag=rename_comment(move.name, nonce=""),
        report_host=move.replica_host_tag,
        fold_names=move.source_folds_names,
    )
    tables = {t: t for t in move.tables}
    return Feed(settings, move.effective_target_database, tables, forward=True, state_database=state_database)


_TRAILING: contextvars.ContextVar[LiveGate | None] = contextvars.ContextVar("trailing_gate", default=None)


def trailing_gate() -> LiveGate | None:
    """The gate trailing the copy of the pipeline whose driver calls this (None: no such gate, the
    checksum before the cutover compares every table then)."""
    return _TRAILING.get()


class Pipeline:
    """One attempt's stream, copier and writer, running around a driver."""

    def __init__(
        self,
        config: Config,
        schemas: dict[str, TableSchema],
        feed: Feed,
        *,
        source_monitor: Any,
        writer_conn: Any,
        controls: Controls,
        board: Board,
        lag: LagMonitor,
        fence: Fence | None = None,
        reads: ReadSide | None = None,
    ) -> None:
        self.config = config
        # Set when this pipeline reads from [replica]: its watch holds the copy while the replica
        # lags or stops, and falls back to the primary when so configured (tablemover.readreplica).
        self.reads = reads
        self.fence = fence  # the writer proves ownership with it before each commit
        self.flavor = feed.stream.flavor
        self.schemas = schemas
        self.feed = feed
        self.source_monitor = source_monitor
        self.writer_conn = writer_conn
        self.controls = controls
        self.board = board
        self.lag = lag
        self.throttle = Throttle(controls, board)
        self.commits = 0  # target commits of this pipeline's writer (the retry budget refills on them)
        self.writer: TargetWriter | None = None  # while running
        self._inbox: MemoryObjectSendStream[WorkItem | Transition] | None = None
        self._driver_scope: anyio.CancelScope | None = None
        # The checksum gate that trails the copy (checksum_during_copy), while the pipeline runs.
        self.trailing: LiveGate | None = None
        self._copy_done = False

    @property
    def running(self) -> bool:
        """True while the writer takes transitions (a forward pipeline's only)."""
        return self._inbox is not None and self.feed.forward

    async def transition(self, dest: State, kwargs: dict[str, Any]) -> Checkpoint:
        """Commit a transition's checkpoint row through the writer, in order with the data."""
        assert self._inbox is not None
        tr = Transition(dest, **kwargs)
        await self._inbox.send(tr)
        await tr.written.wait()
        checkpoint = self.board.committed.checkpoint
        assert checkpoint is not None
        return checkpoint

    def cancel_driver(self) -> bool:
        """Stop the driver (the writer goes on to a clean commit); False when no driver runs yet."""
        if self._driver_scope is None:
            return False
        self._driver_scope.cancel()
        return True

    async def run(self, checkpoint: Checkpoint, drive: Driver) -> Checkpoint:
        """Run the stream, the copier and the writer from ``checkpoint`` until ``drive`` returns.

        Returns the newest committed checkpoint. The stream and the writer stay up through the
        cutover: the drain is the same apply loop running until it covers the drain position.
        """
        writer_done = anyio.Event()
        send, recv = anyio.create_memory_object_stream[WorkItem | Transition](max_buffer_size=INBOX_SIZE)
        decoders = {t: RowDecoder(s) for t, s in self.schemas.items()}
        feed = self.feed
        writer = TargetWriter(
            self.writer_conn,
            feed.writer_database,
            feed.state_database,
            self.schemas,
            decoders,
            checkpoint,
            self.flavor,
            feed.table_names,
            fence=self.fence,
        )
        self.writer = writer
        self._inbox = send
        if feed.forward:
            self.board.committed.follow(
                lambda: writer.checkpoint, lambda: writer.progress, lambda: writer.events_applied
            )
        start = gtid.parse_position(self.flavor, checkpoint.applied_gtid)
        stream = BinlogStream(feed.stream, decoders, start, send.clone())
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_writer, writer, recv, writer_done)
                tg.start_soon(self._run_stream, stream)
                reporter_done = anyio.Event()
                tg.start_soon(self._report_progress, writer, send, reporter_done)
                samplers = anyio.CancelScope()
                tg.start_soon(self._run_samplers, samplers, writer)
                self._show_progress_bars(tg, writer, reporter_done)
                with anyio.CancelScope() as self._driver_scope:
                    if self.controls.stop_requested:
                        self._driver_scope.cancel()
                    try:
                        async with contextlib.AsyncExitStack() as stack:
                            self.trailing = self._trailing_gate(writer, checkpoint)
                            if self.trailing is not None:
                                await stack.enter_async_context(self.trailing)
                                # For the driver (it runs in this context): the cutover finishes it.
                                token = _TRAILING.set(self.trailing)
                                stack.callback(_TRAILING.reset, token)
                            driver = await stack.enter_async_context(anyio.create_task_group())
                            if feed.forward:
                                driver.start_soon(self._copy_tables, writer, send.clone())
                            await drive(writer)
                    except (Exception, BaseExceptionGroup) as exc:
                        # A stop cancels the driver mid-query, and asyncmy reports that as an error
                        # ("Cancelled during execution"); what the abandoned driver (and the gate
                        # trailing it, which reports one error of its group as itself) raises then
                        # is part of stopping, unless it is one of ours. The state is unchanged and
                        # resumable either way.
                        if not self.controls.stop_requested or isinstance(
                            primary_error(exc), TablemoverError
                        ):
                            raise
                        event("driver stopped", logging.DEBUG, detail=repr(exc)[:500])
                reporter_done.set()
                samplers.cancel()
                stream.stop()
                send.close()
                with anyio.move_on_after(STOP_GRACE_S) as grace:
                    await writer_done.wait()
                if grace.cancelled_caught:
                    event(
                        "writer did not finish in time; its open transaction is rolled back", logging.WARNING
                    )
                    tg.cancel_scope.cancel()
        finally:
            self._driver_scope = None
            self._inbox = None
            self.trailing = None
            if feed.forward:
                self.board.committed.unfollow(writer.checkpoint)
            self.commits += writer.commits
        return writer.checkpoint

    async def _run_writer(
        self, writer: TargetWriter, recv: MemoryObjectReceiveStream[WorkItem | Transition], done: anyio.Event
    ) -> None:
        try:
            async with recv:
                await writer.run(recv)
        finally:
            done.set()

    async def _run_stream(self, stream: BinlogStream) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(stream.forward)
                try:
                    await anyio.to_thread.run_sync(stream.run, abandon_on_cancel=True)
                finally:
                    stream.finish()
        finally:
            stream.stop()
            await stream.close_sender()

    async def _copy_tables(self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]) -> None:
        """The copy: streams of their own with ``copy_threads`` > 1 (or ranges a parallel copy
        stored earlier), else one copier after the other through the ordered writer."""
        move = self.config.move
        async with send:
            threads = move.effective_copy_threads
            if threads > 1 or await self._ranges_stored(writer):
                await ParallelCopy(
                    self.config,
                    self.flavor,
                    self.schemas,
                    writer,
                    send,
                    threads=threads,
                    wait_allowed=self._chunk_allowed(writer, send),
                    size_override=lambda: self.controls.chunk_size_override,
                    fence=self.fence,
                    serial=lambda table: self._copy_serially(writer, send, [table]),
                    on_copied=self._trail,
                ).run()
            else:
                await self._copy_serially(writer, send, move.tables)
        self._copy_done = True

    async def _ranges_stored(self, writer: TargetWriter) -> bool:
        """Whether a parallel copy of this move committed ranges (then it goes on in parallel,
        whatever ``copy_threads`` says now, so that no range is copied twice)."""
        conn = await connect(self.config.target, "target", connection="copy planner")
        try:
            return bool(await rangestore.load(conn, writer.state_db, self.config.move.name))
        finally:
            await close(conn)

    def _chunk_allowed(
        self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]
    ) -> Callable[[], Awaitable[None]]:
        """Before each chunk: the throttle, and the writer's backlog small (the apply goes first)."""
        return lambda: self.throttle.chunk_allowed(
            lambda: send.statistics().current_buffer_used, writer.committed.wait
        )

    async def _copy_serially(
        self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem], tables: list[str]
    ) -> None:
        move = self.config.move
        readers = 2 if move.copy_read_ahead else 1
        conns: list[Any] = []
        try:
            for _ in range(readers):
                conns.append(
                    await connect(
                        self.config.reader,  # [replica] when the move reads from one
                        self.config.reader_role,
                        autocommit=False,
                        temporal_as_text=True,
                        connection="copy",
                    )
                )
            for table in tables:
                progress = writer.progress.get(table, TableProgress())
                if progress.last_key is not None and not progress.done:
                    # What an earlier run committed: the gate compares it too.
                    self._trail(CopiedChunk(table, Span(), None, progress.last_key, False))
                copier = TableCopier(
                    conns,
                    self.schemas[table],
                    writer.progress.get(table, TableProgress()),
                    move.chunk_size,
                    send,
                    self._chunk_allowed(writer, send),
                    adaptive=move.adaptive_chunk_size,
                    size_override=lambda: self.controls.chunk_size_override,
                    on_copied=lambda chunk, after: self._trail(
                        CopiedChunk(chunk.table, Span(), after, chunk.last_key, chunk.done)
                    ),
                )
                await copier.run()
                event("table copied", table=table, rows=writer.progress[table].rows_copied)
        finally:
            for conn in conns:
                await close(conn)

    # --- the checksum that trails the copy ---------------------------------------------------------

    def _trailing_gate(self, writer: TargetWriter, checkpoint: Checkpoint) -> LiveGate | None:
        """A :class:`LiveGate` for a forward pipeline that copies (state COPYING) with the gate on
        and ``checksum_during_copy``; tables copied before this pipeline are compared whole."""
        move = self.config.move
        copying = checkpoint.state is State.COPYING and not checkpoint.copy_done
        if not (self.feed.forward and copying and move.verify_before_cutover and move.checksum_during_copy):
            return None
        gate = LiveGate(
            self.config,
            self.flavor,
            applied_waiter(writer),
            on_difference=lambda report: self._gate_difference(writer, report),
            pace=self._gate_pace,
        )
        for table in move.tables:
            if writer.progress.get(table, TableProgress()).done:
                gate.add(table, None, None)
        return gate

    def _trail(self, chunk: CopiedChunk) -> None:
        """A chunk committed on the target: the trailing gate compares it (the last chunk of a table
        or range to its end, so rows appended after the copy are compared too)."""
        event("copy chunk committed", logging.DEBUG, table=chunk.table)
        if self.trailing is None:
            return
        try:
            self.trailing.add(chunk.table, chunk.after, None if chunk.done else chunk.last_key, chunk.span)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The gate has stopped (a stop or abort cancelled it while a stream still finished its
            # chunk): nothing will be compared any more in this run, and the next run compares
            # what this one copied (a resumed move's copied part, whole). An error that stopped
            # the gate comes out of the gate itself.
            return

    async def _gate_pace(self) -> None:
        """While the copy runs, the trailing gate waits for the apply to be under
        :data:`TRAILING_MAX_LAG_S` behind: its wait under a chunk's shared lock lasts about the lag."""
        writer = self.writer
        while writer is not None and not self._copy_done and self.board.lag_s > TRAILING_MAX_LAG_S:
            with anyio.move_on_after(0.1):
                await writer.committed.wait()  # the lag only falls when the writer commits

    def _gate_difference(self, writer: TargetWriter, report: TableReport) -> None:
        """A chunk differs: while the move copies, stop it now (exit 3) rather than after the copy;
        from the cutover on, the gate's end reports it (and cancels the cutover)."""
        if writer.checkpoint.state is State.COPYING:
            raise difference_refusal(VerifyReport([report]))

    async def _run_samplers(self, scope: anyio.CancelScope, writer: TargetWriter) -> None:
        with scope:
            try:
                async with anyio.create_task_group() as samplers:
                    samplers.start_soon(
                        self.throttle.sample_threads_running, self.source_monitor, self.config.target
                    )
                    samplers.start_soon(self.lag.track, writer)
                    if self.feed.forward:
                        # The heartbeat runs on the target while this pipeline copies and applies;
                        # the monitor reads it back on each watched replica (tablemover.replicas).
                        # Both follow [throttle] as SIGHUP reloads it, and idle while no replica
                        # is watched.
                        def limits() -> ThrottleSection:
                            return self.controls.throttle_limits

                        monitor = ReplicaMonitor(self.config, self.board.replica_lags, limits)
                        self.throttle.replicas = monitor
                        if self.reads is not None and self.config.replica is not None:
                            read_watch = ReadReplicaWatch(self.reads, self.flavor)
                            self.throttle.read_replica = read_watch
                            samplers.start_soon(read_watch.run)
                        samplers.start_soon(write_heartbeats, self.config, limits)
                        samplers.start_soon(monitor.run)
                    else:
                        # The rollback window: the reverse writes into the source hold while a
                        # watched source replica lags; the heartbeat beats on the source, in the
                        # schema that holds the reverse feed's checkpoint.
                        def source_limits() -> ThrottleSection:
                            return self.controls.throttle_limits

                        state_db = self.feed.state_database
                        watch = ReplicaMonitor(
                            self.config, self.board.source_replica_lags, source_limits, "source", state_db
                        )
                        writer.before_batch = lambda: hold_reverse_writes(
                            watch, source_limits, self.board, self._rollback_under_way
                        )
                        samplers.start_soon(write_heartbeats, self.config, source_limits, "source", state_db)
                        samplers.start_soon(watch.run)
            except (MySQLError, BaseExceptionGroup):
                # Cancelling a sampler mid-query surfaces as a driver error, not as a cancellation.
                if not scope.cancel_called:
                    raise

    def _rollback_under_way(self) -> bool:
        """A rollback is asked for, or the move is past WINDOW_OPEN (a daemon resumed in the middle
        of a rollback): the reverse feed is then the rollback's drain and never waits for a replica."""
        cp = self.board.committed.checkpoint
        return self.controls.rollback_requested or cp is None or cp.state is not State.WINDOW_OPEN

    def _show_progress_bars(self, tg: anyio.abc.TaskGroup, writer: TargetWriter, done: anyio.Event) -> None:
        """On a terminal: one bar per table (the log goes on beside it)."""
        if not progress.wanted() or not self.feed.forward:
            return
        totals = {t: self.board.rows_estimate.get(t, 0) for t in self.config.move.tables}
        tg.start_soon(
            progress.show,
            totals,
            lambda: {t: (p.rows_copied, p.done) for t, p in writer.progress.items()},
            done,
            lambda: self.board.waiting_for,
        )

    async def _report_progress(
        self, writer: TargetWriter, send: MemoryObjectSendStream[Any], done: anyio.Event
    ) -> None:
        """Log throughput every few seconds, keep the board's rate current, run on-status periodically."""
        interval = self.config.move.status_hook_interval_s
        last = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
        last_copied = sum(p.rows_copied for p in writer.progress.values())
        next_status_hook = time.monotonic() + interval
        while not done.is_set():
            with anyio.move_on_after(min(PROGRESS_EVERY_S, interval)):
                await done.wait()
            now = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
            elapsed = now[0] - last[0]
            if not self.feed.forward:
                self._report_reverse(writer, (now[2] - last[2]) / elapsed if elapsed > 0 else 0.0)
                last = now
                continue
            copied = sum(p.rows_copied for p in writer.progress.values())
            backlog = send.statistics().current_buffer_used
            event(
                "progress",
                rows_copied=copied,
                rows_written_per_s=round((now[1] - last[1]) / elapsed),
                events_per_s=round((now[2] - last[2]) / elapsed),
                commits_per_s=round((now[3] - last[3]) / elapsed),
                backlog=backlog,
                lag_s=round(self.board.lag_s, 3),
                applied_gtid=str(writer.committed_position),
            )
            self.board.copy_rate = (copied - last_copied) / elapsed if elapsed > 0 else 0.0
            self.board.backlog = backlog
            last, last_copied = now, copied
            self.board.announce(
                f"{writer.checkpoint.state.value}: {copied} rows copied, "
                f"{writer.events_applied} events applied, lag {self.board.lag_s:.1f} s"
            )
            if now[0] >= next_status_hook and not done.is_set():
                next_status_hook = now[0] + interval
                state = writer.checkpoint.state.value
                env = {**hook_env(self.board), "TABLEMOVER_LAG_S": str(self.board.lag_s)}
                await run_hooks(self.config, "status", state, env)

    def _report_reverse(self, writer: TargetWriter, events_per_s: float) -> None:
        self.board.reverse_applied_gtid = str(writer.committed_position)
        event(
            "reverse feed",
            events_per_s=round(events_per_s),
            reverse_lag_s=round(self.board.reverse_lag_s, 3),
            applied_target_gtid=str(writer.committed_position),
        )
        self.board.announce(
            f"{writer.checkpoint.state.value}: {writer.events_applied} target events applied back to the "
            f"source, reverse lag {self.board.reverse_lag_s:.1f} s"
        )
