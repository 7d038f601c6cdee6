"""The parallel copy's progress table on the target: one row per range and commit, appended.

Each stream of the parallel copy (:mod:`tablemover.parallel`) commits a chunk's rows and a row here
in one target transaction, so a range's newest row says exactly what of the range the target
holds (what the move's checkpoint row says for the serial copy). Like the checkpoint, rows are
appended, never updated (the state schema's grants have no UPDATE), and each continues the one
before it: ``seq`` is the previous row's plus one under the primary key
``(move_name, table_name, range_no, seq)``, so a stream whose view of its range is stale fails its
whole transaction instead of committing over another daemon's rows (:class:`MoveTakenOver`).
Older rows of a range are deleted as the stream goes (:func:`prune_sql`).

The table lives beside the checkpoint, in ``[move] state_database``; cleanup and discard delete a
move's rows with its checkpoint rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tablemover.checkpoint import Checkpoint
from tablemover.copyplan import RangeProgress, Span, decode_last_key
from tablemover.db import error_code, execute, query
from tablemover.errors import MoveTakenOver, SafetyRefusal
from tablemover.sql import qualified

TABLE = "_tablemover_copy_ranges"
ER_DUP_ENTRY = 1062
PRUNE_EVERY = 32  # a stream deletes its range's older rows every this many commits


def create_table_sql(database: str) -> str:
    """DDL of the ranges table."""
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, TABLE)} (
  move_name VARCHAR(64) NOT NULL,
  table_name VARCHAR(64) NOT NULL,
  range_no INT UNSIGNED NOT NULL,
  seq BIGINT UNSIGNED NOT NULL,
  span JSON NOT NULL,
  last_key JSON NULL,
  rows_copied BIGINT UNSIGNED NOT NULL,
  done TINYINT(1) NOT NULL,
  writer VARCHAR(255) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (move_name, table_name, range_no, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def select_sql(database: str) -> str:
    """Every row of one move, in range and seq order (the primary key's prefix)."""
    return (
        f"SELECT table_name, range_no, seq, span, last_key, rows_copied, done, writer "
        f"FROM {qualified(database, TABLE)} WHERE move_name=%s ORDER BY table_name, range_no, seq"
    )


def insert_sql(database: str) -> str:
    """One range row (its seq chosen by the caller: the previous row's plus one)."""
    return (
        f"INSERT INTO {qualified(database, TABLE)} "
        "(move_name, table_name, range_no, seq, span, last_key, rows_copied, done, writer) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )


def prune_sql(database: str) -> str:
    """Delete a range's rows older than its newest (by primary key)."""
    return (
        f"DELETE FROM {qualified(database, TABLE)} "
        "WHERE move_name=%s AND table_name=%s AND range_no=%s AND seq < %s"
    )


def delete_move_sql(database: str) -> str:
    """Delete every row of a move (discard and cleanup)."""
    return f"DELETE FROM {qualified(database, TABLE)} WHERE move_name=%s"


def newest(rows: Sequence[Sequence[Any]]) -> dict[str, list[tuple[RangeProgress, str]]]:
    """Per table, each range's newest row (with its writer), in range order; pure."""
    latest: dict[tuple[str, int], tuple[RangeProgress, str]] = {}
    for table, number, seq, span, last_key, copied, done, writer in rows:
        progress = RangeProgress(
            str(table),
            int(number),
            Span.from_json(json.loads(span)),
            decode_last_key(last_key),
            int(copied),
            bool(done),
            int(seq),
        )
        current = latest.get((progress.table, progress.number))
        if current is None or current[0].seq < progress.seq:
            latest[(progress.table, progress.number)] = (progress, str(writer))
    tables: dict[str, list[tuple[RangeProgress, str]]] = {}
    for (table, _), item in sorted(latest.items()):
        tables.setdefault(table, []).append(item)
    return tables


async def load(conn: Any, database: str, move_name: str) -> dict[str, list[tuple[RangeProgress, str]]]:
    """The newest row of every range of the move (none when the table does not exist)."""
    exists = await query(
        conn,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, TABLE),
    )
    if not exists:
        return {}
    return newest(await query(conn, select_sql(database), (move_name,)))


async def write(conn: Any, database: str, move_name: str, progress: RangeProgress, writer: str) -> None:
    """Append ``progress`` (whose seq is the previous row's plus one) inside the caller's
    transaction; a seq that exists means another writer continued this range: MoveTakenOver."""
    args = (
        move_name,
        progress.table,
        progress.number,
        progress.seq,
        json.dumps(progress.span.to_json()),
        progress.key_json(),
        progress.rows_copied,
        int(progress.done),
        writer,
    )
    try:
        await execute(conn, insert_sql(database), args)
    except Exception as exc:
        if error_code(exc) == ER_DUP_ENTRY:
            raise MoveTakenOver(
                f"range {progress.number} of table {progress.table} of move {move_name} was continued by "
                "another writer: another daemon copies this move. This one stops without committing."
            ) from exc
        raise
    if progress.seq and progress.seq % PRUNE_EVERY == 0:
        await execute(conn, prune_sql(database), (move_name, progress.table, progress.number, progress.seq))


def check_writers(
    move_name: str, stored: Mapping[str, Sequence[tuple[RangeProgress, str]]], owners: Sequence[Checkpoint]
) -> None:
    """Refuse (exit 3) a parallel copy's range row that no owner of the move wrote: a range marked
    further (or done) by someone else would leave its rows uncopied, silently."""
    writers = {o.writer for o in owners}
    if not writers:
        return  # a move without owner rows (an earlier version's) has nothing to check against
    for table, ranges in stored.items():
        for progress, writer in ranges:
            if writer not in writers:
                raise SafetyRefusal(
                    f"refusing to resume move {move_name!r}: the copy progress of range "
                    f"{progress.number} of table {table} (row seq {progress.seq}) was written by "
                    f"{writer!r}, which never owned the move (owners: {', '.join(sorted(writers))}). "
                    "Someone else wrote to the copy ranges table: find out who (the server's general "
                    "or audit log), remove the rows that are not the move's, and run again. Nothing "
                    "was done."
                )
