"""Runs one move: preflight, prepare, copy + apply, (cutover), as a list of phases.

The phases are driven by the persisted state: ``run`` reads the newest checkpoint and enters the
machine there, which is all "resume" means.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import gtid, log
from tablemover.apply import TargetWriter, Transition
from tablemover.changes import WorkItem
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config
from tablemover.copy import TableCopier
from tablemover.db import WRITER_SQL_MODE, close, connect, execute, query_one
from tablemover.decode import RowDecoder
from tablemover.errors import MoveFailed, TablemoverError
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.preflight import PreflightReport, preflight
from tablemover.schema import TableSchema, table_exists
from tablemover.sql import quote_ident, target_create_statement
from tablemover.stream import BinlogStream, StreamSettings, start_position_sql

INBOX_SIZE = 64
PROGRESS_EVERY_S = 5.0
CAUGHT_UP_LAG_S = 1.0
MAX_BACKLOG_FOR_CHUNK = 4  # chunks wait for the writer to drain, keeping their shared locks short


@dataclass
class MoveResult:
    """How a run ended."""

    state: State
    rows_copied: int
    events_applied: int
    message: str


class Move:
    """One move's lifecycle in this process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target_db = config.move.effective_target_database
        self.flavor = Flavor.MARIADB
        self.schemas: dict[str, TableSchema] = {}
        self.target: Any = None
        self.source: Any = None
        self.writer: TargetWriter | None = None
        self._inbox: MemoryObjectSendStream[WorkItem | Transition] | None = None
        self.started = time.monotonic()
        self.lag_s = 0.0

    # --- entry point ----------------------------------------------------------------------------

    async def run(self) -> MoveResult:
        """Run (or resume) the move as far as this version goes."""
        report = await preflight(self.config)
        self.flavor = report.source_info.flavor
        self.schemas = report.schemas
        self.source = await connect(self.config.source, "source")
        self.target = await connect(
            self.config.target, "target", autocommit=False, sql_mode=WRITER_SQL_MODE, binary_prefix=True
        )
        try:
            return await self._run(report)
        except BaseExceptionGroup as group:
            log.logger.debug("move failed", exc_info=True)
            raise _first_error(group) from group
        except MySQLError as exc:
            log.logger.debug("database error", exc_info=True)
            raise _runtime_failure(exc) from exc
        finally:
            await close(self.source)
            await close(self.target)

    async def _run(self, report: PreflightReport) -> MoveResult:
        cp = report.checkpoint
        if cp is None:
            cp = await self._prepare()
        else:
            event(
                "resuming move from checkpoint",
                state=cp.state.value,
                applied_gtid=cp.applied_gtid,
                progress={t: [p.rows_copied, p.done] for t, p in cp.progress.items()},
            )
        self.checkpoint = cp
        machine = MoveMachine(cp.state, self._persist)
        if machine.current is State.PREPARED:
            await machine.fire("start_copy")
        if machine.current is State.ABORTED:
            await machine.fire("resume_aborted")
        if machine.current is State.COPYING:
            await self._copy_phase()
            return MoveResult(
                State.COPYING,
                self.checkpoint.rows_copied,
                self.checkpoint.events_applied,
                "copy complete and caught up with the source; this version stops before the cutover",
            )
        return MoveResult(machine.current, cp.rows_copied, cp.events_applied, f"move is in state {cp.state}")

    # --- PREPARED -------------------------------------------------------------------------------

    async def _prepare(self) -> Checkpoint:
        """Create the target schema, tables and checkpoint table, capture the start position."""
        await execute(self.target, f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.target_db)}")
        await cpstore.ensure_table(self.target, self.target_db)
        for table, schema in self.schemas.items():
            if not await table_exists(self.target, self.target_db, table):
                await execute(self.target, target_create_statement(schema.create_statement, self.target_db))
                event("created target table", table=f"{self.target_db}.{table}")
        # Rule 1: the stream starts at a position captured before the first chunk is read.
        start = _one_line(await query_one(self.source, start_position_sql(self.flavor)))
        cp = Checkpoint(
            move_name=self.config.move.name,
            state=State.PREPARED,
            kind=cpstore.KIND_TRANSITION,
            applied_gtid=start,
            progress={t: TableProgress() for t in self.config.move.tables},
            detail={"flavor": self.flavor.value},
        )
        await cpstore.write(self.target, self.target_db, cp)
        await self.target.commit()
        event("prepared move", start_gtid=start, tables=",".join(self.config.move.tables))
        return cp

    async def _persist(self, source: State, dest: State, kwargs: dict[str, Any]) -> None:
        """Commit the checkpoint row of a transition (the machine's ``before`` callback)."""
        if self._inbox is not None and self.writer is not None:
            tr = Transition(dest, **kwargs)
            await self._inbox.send(tr)
            await tr.written.wait()
            self.checkpoint = self.writer.checkpoint
            return
        cp = self.checkpoint.evolve(state=dest, kind=cpstore.KIND_TRANSITION, **kwargs)
        await cpstore.write(self.target, self.target_db, cp)
        await self.target.commit()
        self.checkpoint = cp
        event("state changed", source=source.value, state=dest.value)

    # --- COPYING --------------------------------------------------------------------------------

    async def _copy_phase(self) -> None:
        """Stream + copy + apply until every table is copied and the apply lag is under a second."""
        send, recv = anyio.create_memory_object_stream[WorkItem | Transition](max_buffer_size=INBOX_SIZE)
        decoders = {t: RowDecoder(s) for t, s in self.schemas.items()}
        writer = TargetWriter(
            self.target, self.target_db, self.schemas, decoders, self.checkpoint, self.flavor
        )
        self.writer, self._inbox = writer, send
        settings = StreamSettings(
            server=self.config.source,
            flavor=self.flavor,
            server_id=self.config.move.effective_replica_server_id,
            database=self.config.move.database,
            own_rename_tag=self.rename_tag,
        )
        start = gtid.parse_position(self.flavor, self.checkpoint.applied_gtid)
        stream = BinlogStream(settings, decoders, start, send.clone())
        try:
            async with anyio.create_task_group() as tg:
                # Rule 7: the writer consumes before the stream produces.
                tg.start_soon(self._run_writer, writer, recv)
                tg.start_soon(self._run_stream, stream)
                tg.start_soon(self._copy_tables, writer, send.clone())
                reporter_done = anyio.Event()
                tg.start_soon(self._report_progress, writer, send, reporter_done)
                await self._wait_caught_up(writer)
                reporter_done.set()
                stream.stop()
                send.close()
        finally:
            self.writer, self._inbox = None, None
            self.checkpoint = writer.checkpoint
        event(
            "copy complete and caught up",
            rows_copied=self.checkpoint.rows_copied,
            events_applied=self.checkpoint.events_applied,
        )

    async def _report_progress(
        self, writer: TargetWriter, send: MemoryObjectSendStream[Any], done: anyio.Event
    ) -> None:
        """Log throughput every few seconds: what an operator tailing the journal wants to see."""
        last = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
        while not done.is_set():
            with anyio.move_on_after(PROGRESS_EVERY_S):
                await done.wait()
            now = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
            elapsed = now[0] - last[0]
            event(
                "progress",
                rows_copied=sum(p.rows_copied for p in writer.progress.values()),
                rows_written_per_s=round((now[1] - last[1]) / elapsed),
                events_per_s=round((now[2] - last[2]) / elapsed),
                commits_per_s=round((now[3] - last[3]) / elapsed),
                backlog=send.statistics().current_buffer_used,
                applied_gtid=str(writer.committed_position),
            )
            last = now

    async def _run_writer(
        self, writer: TargetWriter, recv: MemoryObjectReceiveStream[WorkItem | Transition]
    ) -> None:
        async with recv:
            await writer.run(recv)

    async def _run_stream(self, stream: BinlogStream) -> None:
        try:
            await anyio.to_thread.run_sync(stream.run, abandon_on_cancel=True)
        finally:
            stream.stop()
            await stream.close_sender()

    async def _copy_tables(self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]) -> None:
        async with send:
            conn = await connect(self.config.source, "source", autocommit=False, temporal_as_text=True)
            try:
                for table in self.config.move.tables:
                    copier = TableCopier(
                        conn,
                        self.schemas[table],
                        writer.progress.get(table, TableProgress()),
                        self.config.move.chunk_size,
                        send,
                        lambda: self._chunk_allowed(writer, send),
                        adaptive=self.config.move.adaptive_chunk_size,
                    )
                    await copier.run()
                    event("table copied", table=table, rows=writer.progress[table].rows_copied)
            finally:
                await close(conn)

    async def _chunk_allowed(self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]) -> None:
        while send.statistics().current_buffer_used > MAX_BACKLOG_FOR_CHUNK:
            with anyio.move_on_after(0.05):
                await writer.committed.wait()

    async def _wait_caught_up(self, writer: TargetWriter) -> None:
        """Return once every table's copy is committed and the apply lag is under a second.

        Lag is measured against the source's own position, sampled every 100 ms: it is the age of
        the newest sample the committed position covers. So a busy but keeping-up writer passes,
        and one that only ever catches up to a moving target within exactly a second does not.
        """
        samples: deque[tuple[float, gtid.GtidPosition]] = deque()
        while True:
            row = await query_one(self.source, start_position_sql(self.flavor))
            samples.append((time.monotonic(), gtid.parse_position(self.flavor, _one_line(row))))
            covered_at: float | None = None
            while samples and gtid.covers(writer.committed_position, samples[0][1]):
                covered_at = samples.popleft()[0]
            if covered_at is not None:
                self.lag_s = 0.0 if not samples else time.monotonic() - covered_at
            copied = all(
                writer.checkpoint.progress.get(t, TableProgress()).done for t in self.config.move.tables
            )
            if copied and covered_at is not None and self.lag_s < CAUGHT_UP_LAG_S:
                return
            with anyio.move_on_after(0.1):
                await writer.committed.wait()

    @property
    def rename_tag(self) -> str:
        """The comment our cutover RENAME carries, so the stream can tell it from foreign DDL."""
        return f"tablemover move={self.config.move.name}"


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group: ours first, then a database error, then anything."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, TablemoverError):
            return exc
    for exc in leaves:
        if isinstance(exc, MySQLError):
            return _runtime_failure(exc)
    return leaves[0] if leaves else group


def _runtime_failure(exc: MySQLError) -> MoveFailed:
    return MoveFailed(
        f"database error during the move: {exc}. The checkpoint is intact; run the same command "
        "again to resume once the cause is fixed."
    )


def _one_line(row: tuple[Any, ...] | None) -> str:
    # MySQL's gtid_executed contains newlines after commas.
    return str(row[0] if row and row[0] is not None else "").replace("\n", "")
