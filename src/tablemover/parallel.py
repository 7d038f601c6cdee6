"""The parallel copy: N streams, each a source reader with a target writer of its own.

``[move] copy_threads`` streams copy the moved tables' ranges (:mod:`tablemover.copyplan`) at once,
across tables and within a table. A stream reads a chunk with the same locking read as the serial
copy (:class:`tablemover.copy.ChunkReader`), writes it on its own target connection with the
range's progress row (:mod:`tablemover.rangestore`) in one transaction, proves it still owns the
move (the fence), commits, and only then releases the chunk's shared locks on the source.

Why the rows stay right although the binlog's changes are applied by another connection (the
ordered writer of :mod:`tablemover.apply`) at the same time: while a chunk is locked, no source
transaction can change its rows, so every change to them either committed before the read (the
chunk holds its result; its binlog event, applied before or after the chunk, is an older image that
a later event or the chunk already supersedes: the insert keeps a row the apply wrote, and the
apply replays every event after its checkpoint) or commits after the chunk's target commit (its
event comes later and overwrites the copy). That is the argument of the serial copy (spec rule 3);
it never needed the chunk and the event to share a connection, only the lock to be held until the
target commit. The two connections can deadlock on the target (a chunk and an apply batch touching
the same rows in other orders); the stream retries its chunk, with the source lock still held.

Resume: a range's newest progress row was committed with the rows it counts, so a restarted move
copies each range from its last committed key: what a SIGKILL costs is the chunk each stream had
in flight. A table whose ranges are all done is finished in the move's checkpoint by the ordered
writer (an empty last chunk), which is what the catch-up and the cutover wait for.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults, rangestore, sql
from tablemover.apply import Fence, TargetWriter, guarded_write, rollback_quietly
from tablemover.bulk import DEFAULT_BATCH_BYTES, RowWriter
from tablemover.changes import CopyChunk, WorkItem
from tablemover.checkpoint import TableProgress, writer_identity
from tablemover.config import Config
from tablemover.copy import LOCK_WAIT_S, ChunkReader
from tablemover.copyplan import (
    ChunkPlan,
    RangeProgress,
    Span,
    next_chunk_size,
    pending,
    plan_spans,
    rows_copied,
    table_done,
    throttled_chunk_size,
)
from tablemover.db import (
    ER_LOCK_DEADLOCK,
    ER_LOCK_WAIT_TIMEOUT,
    WRITER_SQL_MODE,
    close,
    connect,
    error_code,
    execute,
    query_one,
)
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.schema import TableSchema

MAX_WRITE_ATTEMPTS = 20
THROTTLED_S = 0.05  # a wait for the throttle longer than this shrinks the next chunk


@dataclass(frozen=True)
class CopiedChunk:
    """What a committed chunk covers: ``(after, last_key]`` within ``span`` (for a checksum that
    trails the copy); ``done`` chunks reach to the end of the span."""

    table: str
    span: Span
    after: tuple[Any, ...] | None
    last_key: tuple[Any, ...] | None
    done: bool


class ParallelCopy:
    """Copies the tables' ranges with ``threads`` streams; tables a serial copy had started go on
    serially through the ordered writer (``serial``), so a resumed move never copies a range twice."""

    def __init__(
        self,
        config: Config,
        flavor: Flavor,
        schemas: dict[str, TableSchema],
        writer: TargetWriter,
        send: MemoryObjectSendStream[WorkItem],
        *,
        threads: int,
        wait_allowed: Callable[[], Awaitable[None]],
        size_override: Callable[[], int],
        fence: Fence | None,
        serial: Callable[[str], Coroutine[Any, Any, None]],
        on_copied: Callable[[CopiedChunk], None] | None = None,
    ) -> None:
        self.config = config
        self.flavor = flavor
        self.schemas = schemas
        self.writer = writer
        self.send = send
        self.threads = threads
        self.wait_allowed = wait_allowed
        self.size_override = size_override
        self.fence = fence
        self.serial = serial
        self.on_copied = on_copied
        self.state_db = writer.state_db
        self.identity = writer_identity()
        self.ranges: dict[str, list[RangeProgress]] = {}
        self._queue: list[RangeProgress] = []

    async def run(self) -> None:
        """Copy every table that is not done; return once each is finished in the checkpoint."""
        move = self.config.move
        todo = [t for t in move.tables if not self.writer.progress.get(t, TableProgress()).done]
        # A table the serial copy had started has its progress in the checkpoint's last key, not in
        # ranges: it goes on as it began.
        serial = [t for t in todo if self.writer.progress.get(t, TableProgress()).last_key is not None]
        parallel = [t for t in todo if t not in serial]
        if parallel:
            await self._plan(parallel)
        async with anyio.create_task_group() as tg:
            for table in serial:
                tg.start_soon(self.serial, table)
            for table in parallel:
                if table_done(self.ranges[table]):
                    await self._finish_table(table)  # a crash came between its last range and this
            for table in parallel:
                for progress in self.ranges[table]:
                    self._copied_before(progress)
            self._queue = [r for t in parallel for r in pending(self.ranges[t])]
            for number in range(min(self.threads, len(self._queue))):
                tg.start_soon(self._stream, number)

    def _copied_before(self, progress: RangeProgress) -> None:
        """Tell ``on_copied`` what of a range an earlier run committed (a resumed move)."""
        if self.on_copied is None or not (progress.done or progress.last_key is not None):
            return
        last = None if progress.done else progress.last_key
        self.on_copied(CopiedChunk(progress.table, progress.span, None, last, progress.done))

    # --- the plan ---------------------------------------------------------------------------------

    async def _plan(self, tables: list[str]) -> None:
        """Load each table's ranges, planning (and committing) those of a table copied for the first time."""
        target = await connect(self.config.target, "target", autocommit=False, connection="copy planner")
        source = await connect(self.config.reader, self.config.reader_role, connection="copy planner")
        try:
            await execute(target, rangestore.create_table_sql(self.state_db))
            stored = await rangestore.load(target, self.state_db, self.config.move.name)
            # The rows are claims like the checkpoint's: only an owner of the move writes them.
            owners = await cpstore.owners(target, self.state_db, self.config.move.name)
            rangestore.check_writers(self.config.move.name, stored, owners)
            for table in tables:
                if table in stored:
                    self.ranges[table] = [progress for progress, _ in stored[table]]
                    continue
                spans = await self._spans(source, self.schemas[table])
                ranges = [RangeProgress(table, i, span) for i, span in enumerate(spans)]
                await target.begin()
                try:
                    for progress in ranges:
                        await rangestore.write(
                            target, self.state_db, self.config.move.name, progress, self.identity
                        )
                    if self.fence is not None:
                        await self.fence.prove(target)
                except BaseException:
                    await rollback_quietly(target)
                    raise
                await target.commit()
                self.ranges[table] = ranges
                event("copy planned", table=table, ranges=len(ranges), streams=self.threads)
            for table in tables:
                self.writer.progress[table] = TableProgress(None, rows_copied(self.ranges[table]), False)
        finally:
            await close(target)
            await close(source)

    async def _spans(self, source: Any, schema: TableSchema) -> list[Span]:
        key = schema.chunk_key
        assert key is not None, "preflight refuses tables without a chunk key"
        first = schema.column(key[0])
        if self.threads <= 1:
            return [Span()]
        column = sql.quote_ident(first.name)
        # MIN and MAX of the first key column: two reads at the ends of the index.
        row = await query_one(
            source, f"SELECT MIN({column}), MAX({column}) FROM {sql.qualified(schema.database, schema.name)}"
        )
        estimate = await query_one(
            source,
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (schema.database, schema.name),
        )
        rows = int(estimate[0] or 0) if estimate else 0
        low, high = (row[0], row[1]) if row else (None, None)
        return plan_spans(first.data_type, low, high, rows, self.threads, self.config.move.chunk_size * 2)

    # --- the streams ------------------------------------------------------------------------------

    async def _stream(self, number: int) -> None:
        source = await connect(
            self.config.reader,
            self.config.reader_role,
            autocommit=False,
            temporal_as_text=True,
            connection="copy",
        )
        target: Any = None
        try:
            # The same session as the ordered writer's: strict SQL mode (a value the target cannot
            # hold is an error, not a silent conversion) and bytes sent as _binary literals.
            target = await connect(
                self.config.target,
                "target",
                autocommit=False,
                sql_mode=WRITER_SQL_MODE,
                binary_prefix=True,
                connection="copy writer",
            )
            # As the serial copy: wait for an application transaction rather than kill it, briefly.
            await execute(source, f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_S}")
            # Conversions the server reports as notes are refused like errors (as the ordered writer).
            await execute(target, "SET SESSION sql_notes = 1")
            packet = await query_one(target, "SELECT @@max_allowed_packet")
            batch_bytes = max(64 * 1024, min(DEFAULT_BATCH_BYTES, int(packet[0]) // 2 if packet else 0))
            writers: dict[str, RowWriter] = {}
            while self._queue:
                progress = self._queue.pop(0)
                if progress.table not in writers:
                    writers[progress.table] = self._row_writer(target, progress.table, batch_bytes)
                await self._copy_range(source, target, writers[progress.table], progress)
            event("copy stream finished", logging.DEBUG, stream=number)
        finally:
            with anyio.CancelScope(shield=True):
                await close(source)
                if target is not None:
                    await close(target)

    def _row_writer(self, conn: Any, table: str, batch_bytes: int) -> RowWriter:
        schema = self.schemas[table]
        key = schema.chunk_key
        assert key is not None
        writer = RowWriter(
            conn,
            self.writer.target_db,
            self.writer.table_names[table],
            schema.writable_columns,
            verb="INSERT",
            # Rows the binlog apply already wrote are kept (see the module docstring).
            keep_existing_on=key[0],
            bulk=self.flavor is Flavor.MARIADB,
        )
        writer.max_bytes = batch_bytes
        return writer

    async def _copy_range(self, source: Any, target: Any, rows: RowWriter, progress: RangeProgress) -> None:
        reader = ChunkReader(self.schemas[progress.table])
        size = self.config.move.chunk_size
        while True:
            waited = time.monotonic()
            await self.wait_allowed()
            throttled = time.monotonic() - waited > THROTTLED_S
            if self.size_override():
                size = self.size_override()
            elif throttled:
                size = throttled_chunk_size(size)
            started = time.monotonic()
            chunk = await reader.read(source, ChunkPlan(progress.last_key, size), progress.span)
            try:
                await faults.delay("copy.after_read")
                after = progress.last_key
                progress = progress.advanced(chunk.last_key, len(chunk.rows), chunk.done)
                await self._commit(target, rows, chunk, progress)
            finally:
                # The shared locks go after the target commit, or because the move stops (a chunk
                # that never committed is read again on resume).
                with anyio.CancelScope(shield=True), contextlib.suppress(MySQLError, OSError):
                    await source.rollback()
            if self._committed(progress, len(chunk.rows)):
                await self._finish_table(progress.table)
            if self.on_copied is not None:
                self.on_copied(CopiedChunk(progress.table, progress.span, after, chunk.last_key, chunk.done))
            if chunk.done:
                return
            if self.config.move.adaptive_chunk_size and not self.size_override():
                size = next_chunk_size(size, time.monotonic() - started, len(chunk.rows))

    async def _commit(self, target: Any, rows: RowWriter, chunk: CopyChunk, progress: RangeProgress) -> None:
        """The chunk's rows and its range's progress row, in one target transaction (retried on a
        deadlock with the ordered writer: the source lock is still held, the rows are in hand)."""
        table = sql.qualified(self.writer.target_db, self.writer.table_names[chunk.table])
        for attempt in range(1, MAX_WRITE_ATTEMPTS + 1):
            await target.begin()
            try:
                await guarded_write(target, table, rows.write(chunk.rows))
                await rangestore.write(target, self.state_db, self.config.move.name, progress, self.identity)
                faults.hit("parallel.before_commit")
                if self.fence is not None:
                    await self.fence.prove(target)
                await target.commit()
                faults.hit("parallel.after_commit")
                return
            except MySQLError as exc:
                await rollback_quietly(target)
                if (
                    error_code(exc) not in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT)
                    or attempt == MAX_WRITE_ATTEMPTS
                ):
                    raise
                event(
                    "copy chunk write hit a lock conflict on the target; retrying",
                    table=table,
                    attempt=attempt,
                )
                await anyio.sleep(min(0.01 * 2**attempt, 1.0))
            except BaseException:
                await rollback_quietly(target)
                raise

    def _committed(self, progress: RangeProgress, rows: int) -> bool:
        """Keep the table's ranges and the writer's running count (status, progress bars) current;
        True for the commit that completed the table's last range (one stream sees it)."""
        ranges = self.ranges[progress.table]
        index = next(i for i, r in enumerate(ranges) if r.number == progress.number)
        ranges[index] = progress
        current = self.writer.progress.get(progress.table, TableProgress())
        self.writer.progress[progress.table] = replace(current, rows_copied=current.rows_copied + rows)
        return progress.done and table_done(ranges)

    async def _finish_table(self, table: str) -> None:
        """The table's every range is committed: the ordered writer records it done (an empty last
        chunk), in order with the apply, and the catch-up and the cutover wait for that."""
        chunk = CopyChunk(table, [], None, done=True)
        await self.send.send(chunk)
        await chunk.committed.wait()
        event("table copied", table=table, rows=self.writer.progress[table].rows_copied)
