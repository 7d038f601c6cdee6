"""Runs one move: preflight, prepare, copy + apply, (cutover), as a list of phases.

The phases are driven by the persisted state: ``run`` reads the newest checkpoint and enters the
machine there, which is all "resume" means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tablemover import checkpoint as cpstore
from tablemover import gtid
from tablemover.apply import TargetWriter, Transition
from tablemover.changes import WorkItem
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config
from tablemover.copy import TableCopier
from tablemover.db import WRITER_SQL_MODE, close, connect, execute, query_one
from tablemover.decode import RowDecoder
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.preflight import PreflightReport, preflight
from tablemover.schema import TableSchema, table_exists
from tablemover.sql import quote_ident, target_create_statement
from tablemover.stream import BinlogStream, StreamSettings, start_position_sql

INBOX_SIZE = 64
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
        finally:
            await close(self.source)
            await close(self.target)

    async def _run(self, report: PreflightReport) -> MoveResult:
        cp = report.checkpoint
        if cp is None:
            cp = await self._prepare()
        else:
            event("resuming move from checkpoint", state=cp.state.value, applied_gtid=cp.applied_gtid)
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
        row = await query_one(self.source, start_position_sql(self.flavor))
        start = str(row[0] if row else "").replace("\n", "")
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
                await self._wait_caught_up(writer)
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
            conn = await connect(self.config.source, "source", autocommit=False)
            try:
                for table in self.config.move.tables:
                    copier = TableCopier(
                        conn,
                        self.schemas[table],
                        writer.progress.get(table, TableProgress()),
                        self.config.move.chunk_size,
                        send,
                        lambda: self._chunk_allowed(writer, send),
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
        """Return once all copies are committed and the writer covers a source position < 1 s old."""
        while True:
            if all(writer.checkpoint.progress.get(t, TableProgress()).done for t in self.config.move.tables):
                row = await query_one(self.source, start_position_sql(self.flavor))
                wanted = gtid.parse_position(self.flavor, str(row[0] if row else "").replace("\n", ""))
                deadline = time.monotonic() + CAUGHT_UP_LAG_S
                while not gtid.covers(writer.committed_position, wanted) and time.monotonic() < deadline:
                    with anyio.move_on_after(0.05):
                        await writer.committed.wait()
                if gtid.covers(writer.committed_position, wanted):
                    return
            else:
                with anyio.move_on_after(0.2):
                    await writer.committed.wait()

    @property
    def rename_tag(self) -> str:
        """The comment our cutover RENAME carries, so the stream can tell it from foreign DDL."""
        return f"tablemover move={self.config.move.name}"
