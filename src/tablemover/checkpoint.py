"""The checkpoint table on the target: its DDL and every read and write of it.

Rows are appended, never updated: a transition row is the audit trail of the move, a progress row
says how far copying and applying got. Progress rows are written inside the same target transaction
as the data they describe (the caller owns the transaction), so data and checkpoint cannot disagree.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tablemover import __version__
from tablemover.db import execute, query
from tablemover.keycodec import KeyValue, decode_key, encode_key
from tablemover.machine import State
from tablemover.sql import qualified

TABLE = "_tablemover_checkpoint"
KIND_TRANSITION = "transition"
KIND_PROGRESS = "progress"
KIND_OWNER = "owner"  # which daemon took the move's lock, and when; not a state of the move


def create_table_sql(database: str) -> str:
    """DDL of the checkpoint table."""
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, TABLE)} (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  move_name VARCHAR(64) NOT NULL,
  state VARCHAR(32) NOT NULL,
  kind VARCHAR(16) NOT NULL,
  applied_gtid TEXT NOT NULL,
  drain_gtid TEXT NULL,
  progress JSON NOT NULL,
  rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  events_applied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  hook_attempts INT UNSIGNED NOT NULL DEFAULT 0,
  detail JSON NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  writer VARCHAR(255) NOT NULL,
  KEY move_id (move_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def writer_identity() -> str:
    """host, pid and version of this daemon, for the ``writer`` column."""
    return f"{socket.gethostname()} pid={os.getpid()} tablemover/{__version__}"


@dataclass(frozen=True)
class TableProgress:
    """How far one table's copy got."""

    last_key: tuple[KeyValue, ...] | None = None
    rows_copied: int = 0
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form stored in the ``progress`` column."""
        return {"last_key": encode_key(self.last_key), "rows": self.rows_copied, "done": self.done}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TableProgress:
        """Inverse of :meth:`to_json`."""
        return cls(decode_key(obj.get("last_key")), int(obj.get("rows", 0)), bool(obj.get("done", False)))


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint row."""

    move_name: str
    state: State
    applied_gtid: str
    progress: dict[str, TableProgress] = field(default_factory=dict)
    drain_gtid: str | None = None
    events_applied: int = 0
    hook_attempts: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    kind: str = KIND_PROGRESS
    id: int = 0
    created_at: datetime | None = None
    writer: str = ""

    @property
    def rows_copied(self) -> int:
        """Rows copied over all tables."""
        return sum(p.rows_copied for p in self.progress.values())

    @property
    def copy_done(self) -> bool:
        """Every table's copy has finished."""
        return bool(self.progress) and all(p.done for p in self.progress.values())

    def evolve(self, **changes: Any) -> Checkpoint:
        """A copy with some fields changed."""
        return replace(self, **changes)


def failed_message(cp: Checkpoint) -> str:
    """What `run`, `check` and `status` say about a move persisted as FAILED."""
    reason = str(cp.detail.get("reason") or "(no reason recorded)")
    return (
        f"move {cp.move_name!r} is FAILED and must start over. Reason: {reason} To start over: "
        "`tablemover discard -c FILE --yes` (drops the target tables this move created and its "
        "checkpoint rows), then `tablemover run -c FILE`."
    )


async def ensure_table(conn: Any, database: str) -> None:
    """Create the target schema's checkpoint table if it is missing."""
    await execute(conn, create_table_sql(database))


async def table_present(conn: Any, database: str) -> bool:
    """Whether the checkpoint table exists."""
    rows = await query(
        conn,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, TABLE),
    )
    return bool(rows)


def insert_sql(database: str) -> str:
    """The INSERT of one checkpoint row (values from :func:`insert_args`)."""
    return (
        f"INSERT INTO {qualified(database, TABLE)} (move_name, state, kind, applied_gtid, drain_gtid, "
        "progress, rows_copied, events_applied, hook_attempts, detail, writer) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )


def insert_args(cp: Checkpoint) -> tuple[Any, ...]:
    """Arguments for :func:`insert_sql`."""
    return (
        cp.move_name,
        cp.state.value,
        cp.kind,
        cp.applied_gtid,
        cp.drain_gtid,
        json.dumps({t: p.to_json() for t, p in cp.progress.items()}, sort_keys=True),
        cp.rows_copied,
        cp.events_applied,
        cp.hook_attempts,
        json.dumps(cp.detail, sort_keys=True),
        writer_identity(),
    )


async def write(conn: Any, database: str, cp: Checkpoint) -> None:
    """Insert a checkpoint row on ``conn``; the caller decides when the transaction commits."""
    await execute(conn, insert_sql(database), insert_args(cp))


_SELECT = (
    "SELECT id, move_name, state, kind, applied_gtid, drain_gtid, progress, events_applied, "
    "hook_attempts, detail, created_at, writer FROM {table} WHERE move_name=%s"
)


def _from_row(r: tuple[Any, ...]) -> Checkpoint:
    progress = {t: TableProgress.from_json(p) for t, p in json.loads(r[6]).items()}
    return Checkpoint(
        id=int(r[0]),
        move_name=str(r[1]),
        state=State(str(r[2])),
        kind=str(r[3]),
        applied_gtid=str(r[4]),
        drain_gtid=str(r[5]) if r[5] is not None else None,
        progress=progress,
        events_applied=int(r[7]),
        hook_attempts=int(r[8]),
        detail=json.loads(r[9]) if r[9] else {},
        created_at=r[10],
        writer=str(r[11]),
    )


async def latest(conn: Any, database: str, move_name: str) -> Checkpoint | None:
    """The newest checkpoint row of a move, or None when the move never started here."""
    if not await table_present(conn, database):
        return None
    sql = (
        _SELECT.format(table=qualified(database, TABLE))
        + f" AND kind <> '{KIND_OWNER}' ORDER BY id DESC LIMIT 1"
    )
    rows = await query(conn, sql, (move_name,))
    return _from_row(rows[0]) if rows else None


async def latest_owner(conn: Any, database: str, move_name: str) -> Checkpoint | None:
    """The newest owner row of a move (written by each daemon that took the move's lock)."""
    if not await table_present(conn, database):
        return None
    sql = (
        _SELECT.format(table=qualified(database, TABLE))
        + f" AND kind = '{KIND_OWNER}' ORDER BY id DESC LIMIT 1"
    )
    rows = await query(conn, sql, (move_name,))
    return _from_row(rows[0]) if rows else None


async def history(conn: Any, database: str, move_name: str) -> list[Checkpoint]:
    """Every remaining row of a move, oldest first (transitions plus unpruned progress)."""
    if not await table_present(conn, database):
        return []
    sql = _SELECT.format(table=qualified(database, TABLE)) + f" AND kind <> '{KIND_OWNER}' ORDER BY id"
    return [_from_row(r) for r in await query(conn, sql, (move_name,))]


async def prune_progress(conn: Any, database: str, move_name: str) -> int:
    """Delete progress rows older than the newest row; transition rows stay as the audit trail."""
    table = qualified(database, TABLE)
    # The derived table is needed because MySQL refuses a subquery on the table being deleted from.
    sql = (
        f"DELETE FROM {table} WHERE move_name=%s AND kind=%s AND id < "
        f"(SELECT m FROM (SELECT MAX(id) AS m FROM {table} WHERE move_name=%s) AS newest)"
    )
    return await execute(conn, sql, (move_name, KIND_PROGRESS, move_name))
