"""Chunked copy of one table along its chunk key, with locking reads (spec rules 3 and 4).

Each chunk is read with ``LOCK IN SHARE MODE`` inside a source transaction that stays open until the
writer has committed the chunk on the target. A source write to those rows therefore commits either
before our read (we copy its result, and its binlog event is replayed idempotently) or after our
target commit (its binlog event overwrites our copy). No interleaving leaves a stale or resurrected
row behind, which is the window a plain consistent read would leave open.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_CHUNK",
    "MIN_CHUNK",
    "TARGET_CHUNK_S",
    "ChunkPlan",
    "ChunkReader",
    "TableCopier",
    "next_chunk_size",
]

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import faults, sql
from tablemover.changes import CopyChunk, WorkItem
from tablemover.checkpoint import TableProgress
from tablemover.copyplan import MAX_CHUNK, MIN_CHUNK, TARGET_CHUNK_S, ChunkPlan, Span, next_chunk_size
from tablemover.db import ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, error_code, execute, query
from tablemover.errors import UnreproducibleRow
from tablemover.log import event
from tablemover.schema import TableSchema, sql_col

LOCK_WAIT_S = 10
MAX_CHUNK_ATTEMPTS = 20


class ChunkReader:
    """Reads one table's chunks: a locking read in key order, retried on lock conflicts, with the
    MySQL JSON check; the serial copier and the parallel copy's streams share it.

    A read opens a transaction on its connection and leaves it open: the shared locks are what
    makes the copy right (module docstring) and the caller releases them (ROLLBACK) once the chunk
    is committed on the target, or at once when the read fails.
    """

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        columns = [c.name for c in schema.writable_columns]
        key = schema.chunk_key
        assert key is not None, "preflight refuses tables without a chunk key"
        self.key = key
        self.key_positions = [columns.index(k) for k in key]
        self.columns = columns
        # How each column reads exactly and each key column compares in index order (sql.py).
        self._read = [sql_col(c) for c in schema.writable_columns]
        self._key = [self._read[p] for p in self.key_positions]
        # MySQL JSON columns: the chunk's read also asks the server which of them hold a value JSON
        # text cannot carry (sql.json_non_text_types). Only MySQL reports DATA_TYPE 'json'; MariaDB's
        # JSON is LONGTEXT, read and written as text exactly, so nothing is checked there.
        self.json_checks = [c.name for c in schema.writable_columns if c.data_type == "json"]

    async def read(self, conn: Any, plan: ChunkPlan, span: Span | None = None) -> CopyChunk:
        """The chunk after ``plan.after`` (within ``span`` of the first key column), locked."""
        for attempt in range(1, MAX_CHUNK_ATTEMPTS + 1):
            try:
                return await self._read_once(conn, plan, span)
            except MySQLError as exc:
                # A locking read can be picked as a deadlock victim or time out behind a long
                # application transaction; InnoDB rolled our read back, so retrying is safe.
                if (
                    error_code(exc) not in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT)
                    or attempt == MAX_CHUNK_ATTEMPTS
                ):
                    raise
                event(
                    "chunk read hit a lock conflict; retrying",
                    table=self.schema.qualified_name,
                    error=str(exc.args[1] if len(exc.args) > 1 else exc),
                    attempt=attempt,
                )
                await anyio.sleep(min(0.01 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    async def _read_once(self, conn: Any, plan: ChunkPlan, span: Span | None) -> CopyChunk:
        await conn.begin()
        try:
            statement = sql.select_chunk(
                self.schema.database,
                self.schema.name,
                self._read,
                self._key,
                after=plan.after,
                limit=plan.size,
                lock=True,  # spec rule 3: never copy without the shared lock
                json_checks=self.json_checks,
                span=None if span is None or span.whole else (span.lo, span.hi),
            )
            rows = await query(conn, statement.text, statement.args or None)
            if self.json_checks:
                rows = self.checked_rows(rows)  # before the writer sees any row of the chunk
            last = tuple(rows[-1][p] for p in self.key_positions) if rows else plan.after
            return CopyChunk(self.schema.name, rows, last, done=len(rows) < plan.size)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.rollback()
            raise

    def checked_rows(self, rows: list[Any]) -> list[Any]:
        """The chunk's rows without the trailing JSON checks, or :class:`UnreproducibleRow` for the
        first row whose JSON document holds a value JSON text cannot carry.

        The copy reads a MySQL JSON column as text and the writer stores that text: a DATETIME
        inside a document would arrive as a string, a DECIMAL as a DOUBLE, silently different.
        """
        width = len(self.columns)
        for row in rows:
            for name, found in zip(self.json_checks, row[width:], strict=True):
                if found is None:
                    continue
                types = found.decode() if isinstance(found, bytes | bytearray) else str(found)
                key = ", ".join(f"{k}={row[p]!r}" for k, p in zip(self.key, self.key_positions, strict=True))
                table = self.schema.qualified_name
                raise UnreproducibleRow(
                    f"the row of {table} with key ({key}) holds, inside its JSON document in column "
                    f"{name}, a value of JSON type {types} that tablemover cannot write exactly: "
                    "JSON text has no such type, so the target would store it as a string or a "
                    "DOUBLE. Nothing of the chunk holding that row was written to the target. Store "
                    "such values in the documents as JSON strings or numbers instead (for example "
                    f"UPDATE ... SET {name} = CAST(CAST({name} AS CHAR) AS JSON), which turns every "
                    "such value into the string or number it prints as; check the application reads "
                    "them back as it expects), or move the table another way; then start the move "
                    "over: `tablemover discard -c FILE --yes`, then `tablemover run -c FILE`.",
                    table=table,
                    column=name,
                    key=key,
                )
        return [tuple(row[:width]) for row in rows]


class TableCopier:
    """Copies one table from where its progress says, chunk by chunk, through the ordered writer.

    With two source connections the copy is pipelined: chunk N+1 is read on one connection while
    the writer writes chunk N that the other connection still holds locked, so source reads and
    target writes overlap. Each chunk keeps its own shared lock until its own target commit, so
    rule 3 holds per chunk exactly as in the serial copy; chunks still reach the one ordered
    writer in key order, so the committed progress only ever moves forward.
    """

    def __init__(
        self,
        conns: Sequence[Any],
        schema: TableSchema,
        progress: TableProgress,
        chunk_size: int,
        send: MemoryObjectSendStream[WorkItem],
        wait_allowed: Callable[[], Awaitable[None]],
        adaptive: bool = True,
        size_override: Callable[[], int] | None = None,
        on_copied: Callable[[CopyChunk, tuple[Any, ...] | None], None] | None = None,
    ) -> None:
        assert conns, "a copier needs at least one source connection"
        self.conns = list(conns)
        self.schema = schema
        self.reader = ChunkReader(schema)
        self.progress = progress
        self.chunk_size = chunk_size
        self.send = send
        self.wait_allowed = wait_allowed
        self.adaptive = adaptive
        self.size_override = size_override  # the operator's `chunk-size N`, 0 when unset
        self.on_copied = on_copied  # (chunk, the key it started after), once committed
        self._last_timing: tuple[int, float, int] | None = None  # (size, seconds, rows) of a chunk

    async def run(self) -> None:
        """Copy until the table's last chunk is committed on the target."""
        if self.progress.done:
            return
        for conn in self.conns:
            # Our locking read must wait for an application transaction rather than kill it, but
            # not for long: while it waits it already holds locks on the rows it has scanned.
            await execute(conn, f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_S}")
        busy: dict[int, _InFlight] = {}  # connection index -> its chunk awaiting the target commit
        plan = ChunkPlan(self.progress.last_key, self.chunk_size)
        async with anyio.create_task_group() as releasers:
            for turn in itertools.count():
                index = turn % len(self.conns)
                if index in busy:  # this connection still holds an earlier chunk's locks
                    await busy.pop(index).released.wait()
                    plan = self._resize(plan)
                await self.wait_allowed()
                flight = await self._read_chunk(self.conns[index], plan)
                busy[index] = flight
                # Released by a task of its own, so that a pause or throttle of the *next* read
                # never keeps this chunk's rows locked after the writer has committed them.
                releasers.start_soon(self._release_when_committed, flight)
                if flight.chunk.done:
                    return  # the task group waits for the last releases
                plan = ChunkPlan(flight.chunk.last_key, plan.size)

    def _resize(self, plan: ChunkPlan) -> ChunkPlan:
        """The next plan's size, from the operator's override or the last released chunk's timing."""
        new_size = plan.size
        if self.size_override is not None and self.size_override():
            new_size = self.size_override()
        elif self.adaptive and self._last_timing is not None:
            new_size = next_chunk_size(*self._last_timing)
        self.chunk_size = new_size
        return ChunkPlan(plan.after, new_size)

    async def _release_when_committed(self, flight: _InFlight) -> None:
        committed = False
        try:
            await flight.chunk.committed.wait()
            committed = True
        finally:
            # Releases the shared locks: after the target commit, or because the move stops (a
            # chunk that never committed is simply read again on resume).
            with anyio.CancelScope(shield=True):
                await flight.conn.rollback()
            if committed:
                elapsed = time.monotonic() - flight.started
                self._last_timing = (flight.size, elapsed, len(flight.chunk.rows))
                if self.on_copied is not None:
                    self.on_copied(flight.chunk, flight.after)
            flight.released.set()

    async def _read_chunk(self, conn: Any, plan: ChunkPlan) -> _InFlight:
        """Read one chunk under a shared lock and hand it to the writer; the lock stays held."""
        started = time.monotonic()
        chunk = await self.reader.read(conn, plan)
        try:
            await faults.delay("copy.after_read")
            await self.send.send(chunk)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.rollback()
            raise
        return _InFlight(conn, chunk, started, plan.size, plan.after)


@dataclass
class _InFlight:
    """A chunk handed to the writer whose source transaction (and shared lock) is still open."""

    conn: Any
    chunk: CopyChunk
    started: float
    size: int
    after: tuple[Any, ...] | None  # the key the chunk was read after
    released: anyio.Event = field(default_factory=anyio.Event)
