"""The live checksum gate: key intervals of the moved tables, source vs target, several at once.

:class:`LiveGate` compares the intervals it is given (``add(table, lower, upper)``: the rows with
``lower < key <= upper`` in the key's own order, ``None`` for an open end, key tuples as the copy's
``last_key``) while the apply runs. A cutter cuts each interval into chunks of about
:data:`~tablemover.verify.VERIFY_CHUNK` rows with a boundary query the source evaluates (bounded
by the interval's upper key, compared in the key columns' collation: never in Python); ``workers``
workers each compare chunks on a source and target connection of their own. The intervals may be
added while the gate runs (the copy's committed chunks, trailing it); :meth:`LiveGate.finish`
waits for every one of them.

Each chunk is compared exactly, as :mod:`tablemover.verify` explains for the gate before the
cutover, with the shared lock held only briefly:

1. read the source position without any lock and wait until the target has applied it (while the
   copy runs the apply may lag by seconds; nobody waits on us meanwhile);
2. sum the source chunk under a shared lock (``LOCK IN SHARE MODE``: no source transaction can
   change the chunk until it is released, gap locks included at REPEATABLE READ);
3. read the source position on the same connection and wait until the target has applied it: only
   the changes committed since step 1, a small delta;
4. open a consistent snapshot on the target, then release the source lock: the snapshot holds
   every change to the chunk (they are inside the position) and none after it (there was none
   while the lock was held);
5. sum the target chunk in that snapshot, while the worker's source connection goes on with the
   next chunk's steps 1-3 (the pipelining).

A chunk whose sums differ is compared again row by row, under the same discipline with the lock
held through the target read, to name the keys; :class:`GateDifference` at :meth:`finish` (and the
``on_difference`` callback as soon as a chunk's keys are known) reports them.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import faults, gtid, sql
from tablemover.config import Config
from tablemover.copyplan import Span
from tablemover.db import (
    ER_LOCK_DEADLOCK,
    ER_LOCK_WAIT_TIMEOUT,
    close,
    connect,
    current_position,
    error_code,
    execute,
    query,
    query_one,
)
from tablemover.errors import PreflightError
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.retry import leaves, primary_error
from tablemover.schema import sql_col
from tablemover.verify import (
    LIVE_CHUNK_ATTEMPTS,
    LIVE_LOCK_WAIT_S,
    VERIFY_CHUNK,
    TableReport,
    VerifyReport,
    _Chunk,
    _count,
    _drill_down,
    _repeatable_read,
    _resolve_tables,
)

Key = Sequence[Any]
WaitApplied = Callable[[gtid.GtidPosition], Awaitable[None]]
OnDifference = Callable[[TableReport], None]


class GateDifference(Exception):
    """The gate found rows that differ; ``report`` names them (every interval was compared)."""

    def __init__(self, report: VerifyReport) -> None:
        differing = [t.table for t in report.tables if not t.equal]
        super().__init__(f"source and target differ in {', '.join(differing)}")
        self.report = report


@dataclass
class _Table:
    """A table's statements' ingredients, resolved once on its first interval."""

    name: str  # as configured (the target's name)
    source_db: str
    source_name: str  # the source table: renamed after a cutover
    target_db: str
    columns: list[sql.Col]
    key_cols: list[sql.Col]
    positions: list[int]
    json_checks: tuple[str, ...]


@dataclass
class _Job:
    """One chunk to compare; ``order`` sorts the reports (interval number, chunk number)."""

    order: tuple[int, int]
    chunk: _Chunk  # without connections: the worker supplies its own
    report: TableReport
    src: Any = None  # the source's sums, once read


@dataclass
class _Pair:
    """A worker's connections; ``target_free`` is taken from a snapshot's start to its commit."""

    source: Any
    target: Any
    target_free: anyio.Semaphore = field(default_factory=lambda: anyio.Semaphore(1))
    differing: list[_Job] = field(default_factory=list)  # sums differ: name the keys


class LiveGate:
    """Compare key intervals of the moved tables, source vs target, exactly while the apply runs.

    Use as ``async with LiveGate(...) as gate``: ``gate.add(...)`` any number of times, then
    ``await gate.finish()``. Leaving the block without :meth:`finish` stops the comparison. An
    error in a worker (or raised by ``on_difference``) cancels the block's body and comes out of
    the ``async with``, the error itself rather than a group.

    ``wait_applied(position)`` returns once the target has committed every source transaction in
    ``position``. ``on_difference(report)`` is called with one chunk's report (the differing keys)
    as soon as they are known; it may raise to stop the move at once. ``pace()`` is awaited before
    each chunk (the trailing gate's hold-off while the apply lags).
    """

    def __init__(
        self,
        config: Config,
        flavor: Flavor,
        wait_applied: WaitApplied,
        *,
        workers: int | None = None,
        on_difference: OnDifference | None = None,
        chunk_rows: int = VERIFY_CHUNK,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.flavor = flavor
        self.wait_applied = wait_applied
        self.workers = workers if workers is not None else config.move.checksum_threads
        if not 1 <= self.workers <= 16:
            raise ValueError(f"workers must be 1..16, not {self.workers}")
        self.on_difference = on_difference
        self.chunk_rows = chunk_rows
        # Awaited before each chunk's wait for the apply: a gate that trails the copy holds off
        # while the apply lags (its wait under the lock would last about as long as the lag).
        self.pace = pace
        self._intervals_tx, self._intervals_rx = anyio.create_memory_object_stream[
            tuple[int, str, Key | None, Key | None, Span | None]
        ](math.inf)
        self._added = 0
        # Counts per table as chunks complete, and the reports of the chunks that differ (few):
        # nothing per equal chunk is kept, however long the move.
        self._totals: dict[str, TableReport] = {}
        self._found: list[tuple[tuple[int, int], TableReport]] = []
        self._done = anyio.Event()
        self._tg: TaskGroup | None = None
        # Chunks whose sums differed but that were equal at the second, fully locked look: zero
        # unless something other than the apply writes the target (or the protocol is broken).
        self.vanished = 0
        # The longest a chunk's shared lock was held (from its locking read to the rollback).
        self.lock_held_max_s = 0.0

    async def __aenter__(self) -> LiveGate:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        if not self._done.is_set():
            self._tg.cancel_scope.cancel()  # left without finish(), or the body failed
        self._intervals_tx.close()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # A worker's error, not a group: callers decide on it (UnreproducibleRow, a refusal).
            cancelled = anyio.get_cancelled_exc_class()
            if any(not isinstance(leaf, cancelled) for leaf in leaves(group)):
                raise primary_error(group) from group
            raise

    def add(self, table: str, lower: Key | None, upper: Key | None, span: Span | None = None) -> None:
        """Compare ``table``'s rows with ``lower < key <= upper`` (``None``: open end), and within
        ``span`` of the first key column when given (a parallel copy's range, copyplan.Span).

        Keys are tuples of the key columns' values as the copy reads them (its chunk's
        ``last_key``). Intervals of one table should not overlap: a row in two is counted twice.
        """
        if table not in self.config.move.tables:
            raise ValueError(f"{table!r} is not a moved table")
        self._totals.setdefault(table, TableReport(table, ""))
        self._intervals_tx.send_nowait(
            (
                self._added,
                table,
                tuple(lower) if lower is not None else None,
                tuple(upper) if upper is not None else None,
                None if span is None or span.whole else span,
            )
        )
        self._added += 1

    async def finish(self, *, raise_on_difference: bool = True) -> VerifyReport:
        """Wait until every added interval is compared; the report, or :class:`GateDifference`."""
        self._intervals_tx.close()
        await self._done.wait()
        report = self.report()
        if raise_on_difference and not report.equal:
            raise GateDifference(report)
        return report

    def report(self) -> VerifyReport:
        """What was compared so far, one report per table (in the order first added), the keys
        that differ in key order (in the order the intervals were added)."""
        tables = {
            name: TableReport(name, t.source_table, t.chunks, t.source_rows, t.target_rows)
            for name, t in self._totals.items()
        }
        for _, part in sorted(self._found, key=lambda found: found[0]):
            total = tables[part.table]
            total.missing_on_target.extend(part.missing_on_target)
            total.extra_on_target.extend(part.extra_on_target)
            total.different.extend(part.different)
        return VerifyReport([t for t in tables.values() if t.source_table], self.lock_held_max_s)

    def _done_with(self, job: _Job) -> None:
        """Fold a compared chunk into its table's counts; keep its report if it differs."""
        total, part = self._totals[job.report.table], job.report
        total.source_table = part.source_table
        total.chunks += part.chunks
        total.source_rows += part.source_rows
        total.target_rows += part.target_rows
        if not part.equal:
            self._found.append((job.order, part))

    # ----------------------------------------------------------------------- the work

    async def _run(self) -> None:
        chunks_tx, chunks_rx = anyio.create_memory_object_stream[_Job](self.workers * 2)
        async with anyio.create_task_group() as tg:
            for _ in range(self.workers):
                tg.start_soon(self._worker, chunks_rx.clone())
            chunks_rx.close()
            async with chunks_tx:
                await self._cut(chunks_tx)
        self._done.set()

    async def _cut(self, chunks: MemoryObjectSendStream[_Job]) -> None:
        """Cut each interval into chunks, in the order added, on a connection pair of its own."""
        source = await connect(
            self.config.reader, self.config.reader_role, temporal_as_text=True, connection="checksum"
        )
        target = await connect(self.config.target, "target", temporal_as_text=True, connection="checksum")
        tables: dict[str, _Table] = {}
        try:
            await _repeatable_read(source, target)
            async with self._intervals_rx:
                async for number, name, lower, upper, span in self._intervals_rx:
                    if name not in tables:
                        tables[name] = await self._resolve(source, target, name)
                    await self._cut_interval(source, tables[name], number, lower, upper, span, chunks)
        finally:
            with anyio.CancelScope(shield=True):
                await close(source)
                await close(target)

    async def _resolve(self, source: Any, target: Any, name: str) -> _Table:
        schema, tdb = await _resolve_tables(source, target, self.config, name)
        if schema.chunk_key is None:
            raise PreflightError(
                f"table {schema.qualified_name} has no primary or unique key to compare along."
            )
        columns = [sql_col(c) for c in schema.columns]
        key_cols = [columns[[c.name for c in columns].index(k)] for k in schema.chunk_key]
        return _Table(
            name,
            schema.database,
            schema.name,
            tdb,
            columns,
            key_cols,
            [columns.index(k) for k in key_cols],
            # MySQL JSON columns (only MySQL reports DATA_TYPE 'json'; MariaDB's JSON is LONGTEXT).
            tuple(c.name for c in schema.columns if c.data_type == "json" and not c.generated),
        )

    async def _cut_interval(
        self,
        source: Any,
        table: _Table,
        number: int,
        lower: Key | None,
        end: Key | None,
        span: Span | None,
        chunks: MemoryObjectSendStream[_Job],
    ) -> None:
        bounds = None if span is None else (span.lo, span.hi)
        for seq in itertools.count():
            step = sql.key_boundary(
                table.source_db,
                table.source_name,
                table.key_cols,
                after=lower,
                upper=end,
                step=self.chunk_rows,
                span=bounds,
            )
            rows = await query(source, step.text, step.args or None)
            # Two rows back: the chunk ends at the first, more follow. Fewer: the rest is one chunk.
            upper = tuple(rows[0]) if len(rows) == 2 else end
            job = _Job(
                (number, seq), _chunk(table, lower, upper, bounds), TableReport(table.name, table.source_name)
            )
            await chunks.send(job)
            if len(rows) < 2:
                return
            lower = upper

    async def _worker(self, jobs: MemoryObjectReceiveStream[_Job]) -> None:
        source = await connect(
            self.config.reader,
            self.config.reader_role,
            autocommit=False,
            temporal_as_text=True,
            connection="checksum",
        )
        target = await connect(self.config.target, "target", temporal_as_text=True, connection="checksum")
        pair = _Pair(source, target)
        try:
            await _repeatable_read(source, target)
            await execute(source, f"SET SESSION innodb_lock_wait_timeout = {LIVE_LOCK_WAIT_S}")
            async with jobs, anyio.create_task_group() as target_side:
                async for job in jobs:
                    await self._name_differences(pair)
                    await self._source_side(pair, job, target_side)
            await self._name_differences(pair)
        finally:
            with anyio.CancelScope(shield=True):
                await close(source)
                await close(target)

    async def _settle(self, conn: Any) -> None:
        """Read the source position on ``conn``; return once the target has applied it."""
        await self.wait_applied(gtid.parse_position(self.flavor, await current_position(conn, self.flavor)))

    async def _locked(self, pair: _Pair, body: Callable[[], Awaitable[None]]) -> None:
        """Wait for the apply without a lock, then run ``body`` (which takes the chunk's shared
        lock), then release it; again when the locking read loses a deadlock or a lock wait."""
        for attempt in range(1, LIVE_CHUNK_ATTEMPTS + 1):
            locked_at = 0.0
            try:
                if self.pace is not None:
                    await self.pace()
                await self._settle(pair.source)  # no lock held: the apply's lag costs nobody
                locked_at = time.monotonic()
                await body()
                return
            except MySQLError as exc:
                # Our locking read lost a deadlock or waited too long behind the application:
                # InnoDB rolled it back, so reading the chunk again is safe.
                if (
                    error_code(exc) not in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT)
                    or attempt == LIVE_CHUNK_ATTEMPTS
                ):
                    raise
                await anyio.sleep(min(0.01 * 2**attempt, 1.0))
            finally:
                with anyio.CancelScope(shield=True):
                    await pair.source.rollback()  # releases the chunk's shared locks
                if locked_at:
                    self.lock_held_max_s = max(self.lock_held_max_s, time.monotonic() - locked_at)

    async def _source_side(self, pair: _Pair, job: _Job, target_side: TaskGroup) -> None:
        """Steps 1-4 of the module docstring; step 5 is left running on ``target_side``."""
        chunk = replace(job.chunk, source=pair.source, target=pair.target)

        async def locked() -> None:
            job.src = chunk.source_sum(
                await query_one(pair.source, chunk.src_sum.text, chunk.src_sum.args or None)
            )
            await faults.delay("verify.after_source_sum")  # tests widen the window an append needs
            await self._settle(pair.source)  # only what committed since the unlocked wait
            await pair.target_free.acquire()  # the previous chunk's target sum is done
            try:
                await execute(pair.target, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
            except BaseException:
                pair.target_free.release()
                raise

        await self._locked(pair, locked)
        target_side.start_soon(self._target_side, pair, job, chunk)

    async def _target_side(self, pair: _Pair, job: _Job, chunk: _Chunk) -> None:
        """Step 5: the target's sum in the snapshot step 4 opened."""
        try:
            dst = await query_one(pair.target, chunk.dst_sum.text, chunk.dst_sum.args or None)
            await execute(pair.target, "COMMIT")
        finally:
            pair.target_free.release()
        _count(job.report, job.src, dst)
        faults.hit("gate.after_chunk")  # the crash drill's kill inside the gate
        if job.src != dst:
            pair.differing.append(job)
        else:
            self._done_with(job)

    async def _name_differences(self, pair: _Pair) -> None:
        """Compare each differing chunk again with the lock held through the target's read, row by
        row where the sums differ, so that its counts and keys come from one moment."""
        while pair.differing:
            job = pair.differing.pop(0)
            async with pair.target_free:  # no snapshot of ours is open on the target
                job.report, same = await self._second_look(pair, job)
            if same:
                # Equal at the second look: under this protocol that should not happen (the first
                # look was exact too); something other than the apply wrote the target between.
                self.vanished += 1
                event(
                    "checksum: a chunk that differed is equal at a second look",
                    logging.WARNING,
                    table=job.report.table,
                    keys=job.chunk.bounds,
                )
            self._done_with(job)
            if not same and self.on_difference is not None:
                self.on_difference(job.report)

    async def _second_look(self, pair: _Pair, job: _Job) -> tuple[TableReport, bool]:
        """The chunk's sums (and keys, where they differ) with the lock held through both reads."""
        chunk = replace(job.chunk, source=pair.source, target=pair.target)
        looked: list[tuple[TableReport, bool]] = []  # the attempt that completed

        async def locked() -> None:
            report = TableReport(job.report.table, job.report.source_table)
            src = chunk.source_sum(
                await query_one(pair.source, chunk.src_sum.text, chunk.src_sum.args or None)
            )
            await self._settle(pair.source)
            dst = await query_one(pair.target, chunk.dst_sum.text, chunk.dst_sum.args or None)
            _count(report, src, dst)
            if src != dst:
                await _drill_down(chunk, report, lock=True)
            looked.append((report, src == dst))

        await self._locked(pair, locked)
        return looked[-1]


def _chunk(
    table: _Table, lower: Key | None, upper: Key | None, span: tuple[Any, Any] | None = None
) -> _Chunk:
    """The statements of one chunk, (lower, upper] within ``span`` of the first key column
    (connections filled in by the worker)."""
    src, dst = (table.source_db, table.source_name), (table.target_db, table.name)
    cols, key = table.columns, table.key_cols
    return _Chunk(
        None,
        None,
        # Locked: the gate reads the source sum only under the chunk's shared lock.
        sql.checksum_range(
            *src, cols, key, lower=lower, upper=upper, json_checks=table.json_checks, lock=True, span=span
        ),
        sql.checksum_range(*dst, cols, key, lower=lower, upper=upper, span=span),
        sql.select_range(*src, cols, key, lower=lower, upper=upper, span=span),
        sql.select_range(*dst, cols, key, lower=lower, upper=upper, span=span),
        table.positions,
        key,
        f"{table.source_db}.{table.source_name}",
        table.json_checks,
        (
            f"{lower!r} (exclusive) and {upper!r}"
            if upper is not None
            else f"{lower!r} (exclusive) and the end"
        )
        + ("" if span is None else f", first key column in ({span[0]!r}, {span[1]!r}]"),
    )
