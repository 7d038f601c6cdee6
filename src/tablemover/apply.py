"""The one ordered writer: applies copy chunks and binlog changes to the target, in arrival order.

Everything that touches the target's moved tables goes through here, on one connection, so a chunk
and a binlog change of the same row can never race (spec rule 2). Every target transaction ends by
inserting a checkpoint row that describes exactly what the transaction contains, so after a crash
the data and the checkpoint agree (spec section 3). A target transaction is only committed at a
source commit boundary: the applied position never names a half-applied source transaction
(spec rule 6), and the target never exposes one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults, gtid, sql
from tablemover.bulk import DEFAULT_BATCH_BYTES, RowWriter, WarningsCursor, WriteWarnings
from tablemover.changes import Commit, CopyChunk, Op, Row, RowChange, StreamBatch, WorkItem
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.db import error_code, execute, query_one
from tablemover.decode import RowDecoder
from tablemover.errors import TablemoverError, TargetRejectedWrite
from tablemover.flavor import Flavor
from tablemover.machine import State
from tablemover.schema import TableSchema, sql_col

MAX_TXN_ROWS = 5000  # rows written per target transaction before we commit at the next boundary
MAX_TXN_AGE_S = 0.2  # ...or this old
PRUNE_EVERY_S = 10.0
DELETE_BATCH = 500

# Errors with which the target refuses a row as the source has it, in strict mode: a value out of
# range, too long, truncated or invalid for the column, a NULL for a NOT NULL column, a column it
# lacks or one without a default that the source lacks, a CHECK or foreign key it added. The
# source stored these rows, so the target table's definition differs from the source's.
REJECTED_WRITE_ERRORS = frozenset({1048, 1054, 1264, 1265, 1292, 1364, 1366, 1406, 1452, 4025})


class Fence(Protocol):
    """Proof, inside a writer transaction, that this daemon still owns the move (the move lock)."""

    async def prove(self, conn: Any) -> None:
        """Raise (a :class:`TablemoverError`) unless the move is still ours; ``conn`` is the writer's."""


@dataclass
class Transition:
    """A state change to record, in order with the data before it, at a source commit boundary."""

    state: State
    drain_gtid: str | None = None
    hook_attempts: int | None = None
    detail: dict[str, Any] | None = None
    written: anyio.Event = field(default_factory=anyio.Event)


class NetPlan:
    """The net effect of a run of row changes, per row key, ready to be written in few statements.

    Within one target transaction only the final state of each key matters: a later change to a
    key supersedes earlier ones. Rows are identified by the chunk key and foreign keys are refused,
    so for a table whose only unique index is that key, net changes on different keys commute and
    each table needs one DELETE (of the deleted keys) and one REPLACE (of the final images) per batch.

    A table with further unique keys also takes two statements per batch (each split only by
    size), not one per change: DELETE *every* key the batch touched, then insert the final images.
    Why that is right: after the DELETE, the table holds only rows the batch did not touch, which
    are the same on the source, and the final images are the source's rows of the touched keys.
    The source's final state satisfies every unique key, so no final image can collide with an
    untouched row or with another final image, whatever order the changes came in (a secondary
    key value may well move from one row to another inside the batch).
    """

    def __init__(self, decoders: dict[str, RowDecoder], commutative: frozenset[str]) -> None:
        self._decoders = decoders
        self._commutative = commutative
        self._net: dict[tuple[str, tuple[Any, ...]], tuple[str, Row]] = {}

    def __len__(self) -> int:
        return len(self._net)

    def add(self, change: RowChange) -> None:
        """Fold one change into the plan."""
        decoder = self._decoders[change.table]
        if change.op is Op.INSERT:
            assert change.after is not None
            self._put(change.table, decoder.key(change.after), "upsert", change.after)
        elif change.op is Op.DELETE:
            assert change.before is not None
            key = decoder.key(change.before)
            self._put(change.table, key, "delete", key)
        else:
            assert change.before is not None and change.after is not None
            old_key, new_key = decoder.key(change.before), decoder.key(change.after)
            if old_key != new_key:
                self._put(change.table, old_key, "delete", old_key)
            self._put(change.table, new_key, "upsert", change.after)

    def _put(self, table: str, key: tuple[Any, ...], kind: str, payload: Row) -> None:
        # pop + insert moves the key to the end: dict order is the order of last changes.
        self._net.pop((table, key), None)
        self._net[(table, key)] = (kind, payload)

    def groups(self) -> Iterable[tuple[str, str, list[Row]]]:
        """(kind, table, rows-or-keys) statements to run, in a correct order: per table, the
        DELETE of keys first, then the REPLACE of final images (see the class docstring)."""
        deletes: dict[str, list[Row]] = {}
        upserts: dict[str, list[Row]] = {}
        for (table, key), (kind, payload) in self._net.items():
            if kind == "delete":
                deletes.setdefault(table, []).append(payload)
            else:
                if table not in self._commutative:
                    deletes.setdefault(table, []).append(key)  # cleared first: no collision left
                upserts.setdefault(table, []).append(payload)
        for table, keys in deletes.items():
            yield "delete", table, keys
        for table, rows in upserts.items():
            yield "upsert", table, rows


async def guarded_write(conn: Any, table: str, write: Awaitable[None]) -> None:
    """Run one write of ``table``'s rows on ``conn``; when the target refuses a row as the source
    has it (an error or a warning, strict mode), roll the transaction back and raise
    :class:`TargetRejectedWrite`: the target table's definition differs from the source's."""
    try:
        await write
    except WriteWarnings as exc:
        level, code, message = exc.first
        await rollback_quietly(conn)
        raise TargetRejectedWrite(table, code, message, level=level.lower()) from exc
    except MySQLError as exc:
        number = error_code(exc)
        if number is None or number not in REJECTED_WRITE_ERRORS:
            raise
        await rollback_quietly(conn)
        detail = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        raise TargetRejectedWrite(table, number, detail) from exc


async def rollback_quietly(conn: Any) -> None:
    """Roll back, shielded from cancellation; a broken connection rolls back on the server anyway.

    Nothing of a refused transaction may reach the target: whoever handles the refusal next may use
    this connection (and commit), and closing it is not the only way the daemon ends.
    """
    with anyio.CancelScope(shield=True), contextlib.suppress(MySQLError, OSError):
        await conn.rollback()


class TargetWriter:
    """Owns the target connection while the move copies and applies."""

    def __init__(
        self,
        conn: Any,
        target_db: str,
        state_db: str,
        schemas: dict[str, TableSchema],
        decoders: dict[str, RowDecoder],
        resume_from: Checkpoint,
        flavor: Flavor,
        table_names: dict[str, str] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.conn = conn
        # Checked before every COMMIT (the forward writer, whose connection is on the lock's
        # server); the checkpoint row's seq is the compare-and-set for every writer.
        self.fence = fence
        self.target_db = target_db
        self.state_db = state_db  # the checkpoint's schema, on the same server: one transaction
        self.schemas = schemas
        # Where each moved table's rows go: the same name forward; the source's renamed table for
        # the rollback window's reverse feed.
        self.table_names = {t: (table_names or {}).get(t, t) for t in schemas}
        self.decoders = decoders
        self.checkpoint = resume_from  # the last committed checkpoint
        self.position = gtid.parse_position(flavor, resume_from.applied_gtid)
        self.committed_position = self.position  # what the last committed checkpoint names
        self.progress = dict(resume_from.progress)
        self.events_applied = resume_from.events_applied
        self.rows_written = 0
        self.commits = 0
        self.committed = anyio.Event()  # replaced after every commit; wait on it for progress
        # Copy chunks may overlap rows the binlog already wrote: the INSERT keeps those (ON
        # DUPLICATE KEY UPDATE k = k, a no-op) and, unlike INSERT IGNORE, still fails on a value the
        # column cannot hold. Binlog changes carry a row's final image (REPLACE).
        bulk = flavor is Flavor.MARIADB
        self._inserters = {t: self._row_writer(t, "INSERT", bulk, keep_existing=True) for t in schemas}
        self._replacers = {t: self._row_writer(t, "REPLACE", bulk) for t in schemas}
        self._last_prune = time.monotonic()
        self._commutative = frozenset(
            t for t, schema in schemas.items() if sum(1 for i in schema.indexes if i.unique) == 1
        )
        # Awaited before each binlog batch outside a source transaction: the rollback window's reverse
        # writer holds there while a watched source replica lags (tablemover.replicas).
        self.before_batch: Callable[[], Awaitable[None]] | None = None

    def _row_writer(self, table: str, verb: str, bulk: bool, *, keep_existing: bool = False) -> RowWriter:
        key = self.schemas[table].chunk_key
        assert key is not None, "preflight refuses tables without a chunk key"
        return RowWriter(
            self.conn,
            self.target_db,
            self.table_names[table],
            self.schemas[table].writable_columns,
            verb=verb,
            keep_existing_on=key[0] if keep_existing else None,
            bulk=bulk,
        )

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, inbox: MemoryObjectReceiveStream[WorkItem | Transition]) -> None:
        """Apply items until the inbox closes; commits at boundaries as described above."""
        txn_rows = 0
        txn_started = 0.0
        in_source_txn = False  # a source transaction's rows are applied but its Commit is not
        dirty = False
        waiting_chunks: list[CopyChunk] = []
        deferred: list[Transition] = []
        await self._fit_batches_to_packet_limit()
        # Conversions the server reports as notes (DECIMAL rounding, trailing spaces cut, a
        # DATETIME cut to a DATE) are refused like errors; a session must not hide them.
        await execute(self.conn, "SET SESSION sql_notes = 1")
        await self._begin()
        async for item in inbox:
            if isinstance(item, StreamBatch):
                if self.before_batch is not None and not in_source_txn:
                    await self.before_batch()
                in_source_txn = await self._apply_batch(item, in_source_txn)
                dirty = True
                txn_rows += len(item.items)
            elif isinstance(item, CopyChunk):
                await self._apply_chunk(item)
                waiting_chunks.append(item)
                dirty = True
                txn_rows += len(item.rows)
            else:
                deferred.append(item)
                dirty = True
            if not txn_started and dirty:
                txn_started = time.monotonic()
            if in_source_txn:
                continue  # never commit inside a source transaction
            backlog = inbox.statistics().current_buffer_used
            if (
                backlog == 0
                or waiting_chunks
                or deferred
                or txn_rows >= MAX_TXN_ROWS
                or time.monotonic() - txn_started >= MAX_TXN_AGE_S
            ):
                await self._commit(deferred)
                for chunk in waiting_chunks:
                    chunk.committed.set()
                for tr in deferred:
                    tr.written.set()
                waiting_chunks, deferred = [], []
                txn_rows, txn_started, dirty = 0, 0.0, False
        if dirty and not in_source_txn:
            await self._commit(deferred)
            for chunk in waiting_chunks:
                chunk.committed.set()
            for tr in deferred:
                tr.written.set()
        else:
            await self.conn.rollback()

    def batch_counts(self) -> dict[str, int]:
        """How many row batches went through the bulk protocol and how many as text, so far."""
        writers = self._row_writers()
        return {
            "bulk_batches": sum(w.bulk_batches for w in writers),
            "text_batches": sum(w.text_batches for w in writers),
        }

    def _row_writers(self) -> tuple[RowWriter, ...]:
        return (*self._inserters.values(), *self._replacers.values())

    async def _fit_batches_to_packet_limit(self) -> None:
        # A request over max_allowed_packet makes the server drop the connection; stay well under.
        row = await query_one(self.conn, "SELECT @@max_allowed_packet")
        limit = int(row[0]) // 2 if row else DEFAULT_BATCH_BYTES
        for writer in self._row_writers():
            writer.max_bytes = max(64 * 1024, min(DEFAULT_BATCH_BYTES, limit))

    # --- applying -------------------------------------------------------------------------------

    async def _apply_batch(self, batch: StreamBatch, in_source_txn: bool) -> bool:
        # One plan for the whole batch: the target commits only at the batch's end anyway, so
        # only the net effect at that point has to be right.
        plan = NetPlan(self.decoders, self._commutative)
        for item in batch.items:
            if isinstance(item, Commit):
                self.position = gtid.advance(self.position, item.gtid)
                in_source_txn = False
            else:
                plan.add(item)
                in_source_txn = True
        await self._execute_plan(plan)
        self.events_applied += batch.events
        return in_source_txn

    async def _execute_plan(self, plan: NetPlan) -> None:
        for kind, table, rows in plan.groups():
            if kind == "upsert":
                await self._guarded(table, self._replacers[table].write(rows))
            else:
                await self._guarded(table, self._delete(table, rows))
            self.rows_written += len(rows)

    async def _delete(self, table: str, keys: list[Row]) -> None:
        # Character key columns compare their bytes in the column's collation (sql.Col.marker).
        names = self.schemas[table].chunk_key or ()
        key = [sql_col(self.schemas[table].column(k)) for k in names]
        async with self.conn.cursor(WarningsCursor) as cur:
            for start in range(0, len(keys), DELETE_BATCH):
                part = keys[start : start + DELETE_BATCH]
                args = [v for k in part for v in k]
                await cur.execute(
                    sql.delete_keys(self.target_db, self.table_names[table], key, len(part)), args
                )
                # A warning here means a key value did not compare as the column's own type.
                cur.raise_warnings()

    async def _guarded(self, table: str, write: Awaitable[None]) -> None:
        """Run one write; a refusal of the row as the source has it rolls back and stops the move."""
        await guarded_write(self.conn, sql.qualified(self.target_db, self.table_names[table]), write)

    async def _apply_chunk(self, chunk: CopyChunk) -> None:
        await self._guarded(chunk.table, self._inserters[chunk.table].write(chunk.rows))
        previous = self.progress.get(chunk.table, TableProgress())
        self.progress[chunk.table] = TableProgress(
            last_key=chunk.last_key if chunk.last_key is not None else previous.last_key,
            rows_copied=previous.rows_copied + len(chunk.rows),
            done=chunk.done,
        )
        self.rows_written += len(chunk.rows)

    # --- transactions and checkpoints -----------------------------------------------------------

    async def _begin(self) -> None:
        await self.conn.begin()

    async def _commit(self, transitions: list[Transition]) -> None:
        base = self.checkpoint.evolve(
            applied_gtid=str(self.position),
            progress=dict(self.progress),
            events_applied=self.events_applied,
            kind=cpstore.KIND_PROGRESS,
            detail={},
        )
        rows = [base]
        for tr in transitions:
            base = base.evolve(
                state=tr.state,
                kind=cpstore.KIND_TRANSITION,
                drain_gtid=tr.drain_gtid if tr.drain_gtid is not None else base.drain_gtid,
                hook_attempts=tr.hook_attempts if tr.hook_attempts is not None else base.hook_attempts,
                detail=tr.detail or {},
            )
            rows.append(base)
        if transitions:
            rows = rows[1:]  # the transition row carries the same progress; no need for both
        try:
            # Each row continues the one before it (seq + 1), the first the last committed one:
            # a seq another daemon stored meanwhile fails the insert (MoveTakenOver).
            seq = self.checkpoint.seq
            for row in rows:
                base = await cpstore.write(self.conn, self.state_db, row.evolve(seq=seq))
                seq = base.seq
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                await cpstore.prune_progress(self.conn, self.state_db, base.move_name, base.seq)
                self._last_prune = time.monotonic()
            faults.hit("writer.before_commit")
            if self.fence is not None:
                await self.fence.prove(self.conn)
        except TablemoverError:
            # Not ours any more (or the lock dropped): nothing of this transaction may commit.
            await rollback_quietly(self.conn)
            raise
        await self.conn.commit()
        faults.hit("writer.after_commit")
        self.checkpoint = base
        self.commits += 1
        self.committed_position = self.position
        done, self.committed = self.committed, anyio.Event()
        done.set()
        await self._begin()
