"""The checkpoint table on the target: its DDL and every read and write of it.

Rows are appended, never updated: a transition row is the audit trail of the move, a progress row
says how far copying and applying got. Progress rows are written inside the same target transaction
as the data they describe (the caller owns the transaction), so data and checkpoint cannot disagree.

Which row is the newest. Each row of a move carries ``seq``, a number its writer chooses: the seq
of the row it continues (the one it read or last wrote) plus one, under a unique key
``(move_name, seq)``. The newest row is the one with the highest seq. Not the AUTO_INCREMENT
``id``: that is handed out when a row is inserted, not when it commits, so of two transactions the
one that commits last can hold the lower id. The unique key also makes every write a
compare-and-set: a writer whose view of the move is stale (another daemon wrote a row since it
read its own) inserts a seq that exists, and its whole transaction fails (:class:`MoveTakenOver`)
instead of committing data after the other daemon's. Rows of the earlier layout (no ``seq``
column) are kept with seq NULL, ordered by id among themselves and before every row with a seq;
:func:`upgrade_table` adds the column to such a table, so a move started by an older version
resumes.

Where the table lives. In the move's own schema (``[move] state_database``, default
``_tablemover``), not beside the application's tables: the application's accounts have DML on the
application schema, and a row they insert there would be read as the move's state. The data and
its checkpoint are still written in one transaction (two schemas, one server). A move started by
an earlier version, which kept the table in the target schema, is found there by :func:`locate` and
finishes there.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tablemover import __version__
from tablemover.db import error_code, execute, query
from tablemover.errors import MoveTakenOver, PreflightError
from tablemover.keycodec import KeyValue, decode_key, encode_key
from tablemover.machine import State
from tablemover.sql import qualified, quote_ident

if TYPE_CHECKING:
    from tablemover.config import MoveSection

TABLE = "_tablemover_checkpoint"
KIND_TRANSITION = "transition"
KIND_PROGRESS = "progress"
KIND_OWNER = "owner"  # which daemon took the move's lock, and when; not a state of the move
ER_DUP_ENTRY = 1062


def create_table_sql(database: str) -> str:
    """DDL of the checkpoint table."""
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, TABLE)} (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  seq BIGINT UNSIGNED NULL,
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
  KEY move_id (move_name, id),
  UNIQUE KEY move_seq (move_name, seq)
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
    seq: int = 0  # this row's place in the move's order (0: not written yet, or an earlier layout)
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
    """Create the state schema and its checkpoint table if missing; upgrade an earlier layout."""
    await execute(conn, f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}")
    await execute(conn, create_table_sql(database))
    await upgrade_table(conn, database)


async def layout(conn: Any, database: str) -> tuple[bool, bool]:
    """(the checkpoint table exists, it has the ``seq`` column), in one look."""
    rows = await query(
        conn,
        "SELECT COUNT(*), COALESCE(SUM(COLUMN_NAME = 'seq'), 0) FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, TABLE),
    )
    return bool(rows and int(rows[0][0])), bool(rows and int(rows[0][1]))


async def table_present(conn: Any, database: str) -> bool:
    """Whether the checkpoint table exists."""
    return (await layout(conn, database))[0]


async def has_rows(conn: Any, database: str, move_name: str) -> bool:
    """Whether ``database`` holds a checkpoint table with a row of this move."""
    if not await table_present(conn, database):
        return False
    return bool(await query(conn, has_rows_sql(database), (move_name,)))


def has_rows_sql(database: str) -> str:
    """The look of :func:`has_rows` (on the move_id key)."""
    return f"SELECT 1 FROM {qualified(database, TABLE)} WHERE move_name=%s LIMIT 1"


def choose_location(state_db: str, legacy_db: str, in_state: bool, in_legacy: bool) -> str:
    """Which schema holds a move's checkpoint: pure, the rule of :func:`locate`.

    The state schema whenever it has a row of the move (or neither has one: a new move starts
    there); the earlier layout's schema only for a move that has rows there and none in the
    state schema, so that a move begun by an earlier version resumes where its rows are.
    """
    if in_legacy and not in_state:
        return legacy_db
    return state_db


async def locate(conn: Any, state_db: str, legacy_db: str, move_name: str) -> str:
    """The schema holding a move's checkpoint rows on this server (see :func:`choose_location`).

    ``legacy_db`` is where earlier versions kept the table: the target schema (the move's
    checkpoint) or the source schema (the rollback window's feed). A row forged there for a move
    that has none is not trusted for being found: every state it claims is checked against the
    servers and its own history before the daemon acts on it (:mod:`tablemover.claims`).
    """
    if state_db == legacy_db:
        return state_db
    in_state = await has_rows(conn, state_db, move_name)
    in_legacy = not in_state and await has_rows(conn, legacy_db, move_name)
    return choose_location(state_db, legacy_db, in_state, in_legacy)


async def locate_move(conn: Any, move: MoveSection) -> str:
    """:func:`locate` for a move's own checkpoint on the target (the earlier layout: the target schema)."""
    return await locate(conn, move.state_database, move.effective_target_database, move.name)


def grant_hint(database: str) -> str:
    """What the move's user needs on the state schema (for refusals that name it)."""
    return f"SELECT, INSERT, DELETE, CREATE and DROP on {quote_ident(database)}.*"


def upgrade_sql(database: str) -> str:
    """The ALTER that gives a checkpoint table of the earlier layout its ``seq`` column."""
    return (
        f"ALTER TABLE {qualified(database, TABLE)} ADD COLUMN seq BIGINT UNSIGNED NULL AFTER id, "
        "ADD UNIQUE KEY move_seq (move_name, seq)"
    )


async def upgrade_table(conn: Any, database: str) -> bool:
    """Add ``seq`` to a checkpoint table written by an earlier version; True when it did.

    Called by whoever holds a move's lock before it writes (the daemon after preflight, an
    offline abort), so two upgrades do not race for one move; an upgrade by another move's daemon
    in between is harmless (the second ALTER finds the column and is not sent). Existing rows keep
    seq NULL: they stay readable and order before every new row.
    """
    present, has_seq = await layout(conn, database)
    if not present or has_seq:
        return False
    try:
        await execute(conn, upgrade_sql(database))
    except Exception as exc:
        code = error_code(exc)
        if code == 1142:  # ALTER denied: the daemon's target user needs none for anything else
            raise PreflightError(
                f"{database}.{TABLE} was created by an earlier tablemover version and needs a column "
                f"to order its rows (seq); the target user may not ALTER it. Run as an administrator: "
                f"`{upgrade_sql(database)}`, then run again. Nothing was changed."
            ) from exc
        if code != 1060:  # duplicate column: another move's daemon upgraded it just now
            raise
    return True


def insert_sql(database: str) -> str:
    """The INSERT of one checkpoint row (values from :func:`insert_args`)."""
    return (
        f"INSERT INTO {qualified(database, TABLE)} (seq, move_name, state, kind, applied_gtid, "
        "drain_gtid, progress, rows_copied, events_applied, hook_attempts, detail, writer) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )


def next_row(cp: Checkpoint) -> Checkpoint:
    """The row that continues ``cp``: the same content one seq further (owner rows take none).

    Pure: the seq rule of the module docstring, unit-tested.
    """
    if cp.kind == KIND_OWNER:
        return cp.evolve(seq=0)
    return cp.evolve(seq=cp.seq + 1)


def insert_args(cp: Checkpoint) -> tuple[Any, ...]:
    """Arguments for :func:`insert_sql`; ``cp`` as stored (its seq already chosen, 0 for NULL)."""
    return (
        cp.seq or None,
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


async def write(conn: Any, database: str, cp: Checkpoint) -> Checkpoint:
    """Insert the row that continues ``cp`` (:func:`next_row`) and return it as stored.

    The caller decides when the transaction commits, and keeps the returned row as the base of its
    next write. ``cp`` must be the newest row this writer knows of (read, or returned here): when
    another writer has stored a row since, the insert hits the unique (move_name, seq) and this
    raises :class:`MoveTakenOver`; the caller rolls its transaction back.
    """
    row = next_row(cp)
    try:
        await execute(conn, insert_sql(database), insert_args(row))
    except Exception as exc:
        if error_code(exc) != ER_DUP_ENTRY:
            raise
        raise MoveTakenOver(
            f"another daemon wrote checkpoint row {row.seq} of move {cp.move_name!r} after this daemon "
            "read the move's state: it runs the move now. This daemon rolled back its open "
            "transaction (nothing of it was committed) and stopped. Only one daemon may run a move; "
            "see `tablemover status -c FILE` for the one that does."
        ) from exc
    return row


_SELECT = (
    "SELECT id, move_name, state, kind, applied_gtid, drain_gtid, progress, events_applied, "
    "hook_attempts, detail, created_at, writer, {seq} FROM {table} WHERE move_name=%s"
)
# Newest first: the highest seq, read backwards on the (move_name, seq) key without a sort. NULL
# sorts lowest, so rows of the earlier layout come last; only when they are all a move has does
# :func:`latest` ask again by id (EARLIER_NEWEST_FIRST), their order before the upgrade.
NEWEST_FIRST = " ORDER BY seq DESC"
EARLIER_NEWEST_FIRST = " ORDER BY id DESC"
OLDEST_FIRST = " ORDER BY seq, id"


def _select(database: str, has_seq: bool) -> str:
    # A table of the earlier layout is read as it is (seq NULL): `status` or `check` by a newer
    # version must not need the ALTER that only the move's owner runs.
    return _SELECT.format(table=qualified(database, TABLE), seq="seq" if has_seq else "NULL AS seq")


def _order(has_seq: bool, newest_first: bool) -> str:
    if not has_seq:
        return EARLIER_NEWEST_FIRST if newest_first else " ORDER BY id"
    return NEWEST_FIRST if newest_first else OLDEST_FIRST


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
        seq=int(r[12]) if r[12] is not None else 0,
    )


async def latest(conn: Any, database: str, move_name: str) -> Checkpoint | None:
    """The newest checkpoint row of a move (highest seq), or None when the move never started here."""
    present, has_seq = await layout(conn, database)
    if not present:
        return None
    select = _select(database, has_seq) + f" AND kind <> '{KIND_OWNER}'"
    rows = await query(conn, select + _order(has_seq, True) + " LIMIT 1", (move_name,))
    if rows and has_seq and rows[0][12] is None:  # only rows of the earlier layout: newest by id
        rows = await query(conn, select + EARLIER_NEWEST_FIRST + " LIMIT 1", (move_name,))
    return _from_row(rows[0]) if rows else None


async def latest_owner(conn: Any, database: str, move_name: str) -> Checkpoint | None:
    """The newest owner row of a move (written by each daemon that took the move's lock).

    Ordered by id: owner rows take no seq (they are not states of the move), and callers only use
    the row when its connection id is the lock holder's, so the order is a courtesy.
    """
    present, has_seq = await layout(conn, database)
    if not present:
        return None
    sql = _select(database, has_seq) + f" AND kind = '{KIND_OWNER}' ORDER BY id DESC LIMIT 1"
    rows = await query(conn, sql, (move_name,))
    return _from_row(rows[0]) if rows else None


async def history(conn: Any, database: str, move_name: str) -> list[Checkpoint]:
    """Every remaining row of a move, oldest first (transitions plus unpruned progress)."""
    present, has_seq = await layout(conn, database)
    if not present:
        return []
    sql = _select(database, has_seq) + f" AND kind <> '{KIND_OWNER}'" + _order(has_seq, False)
    return [_from_row(r) for r in await query(conn, sql, (move_name,))]


async def owners(conn: Any, database: str, move_name: str) -> list[Checkpoint]:
    """Every owner row of a move, oldest first (by id: they take no seq), for the writer rule of
    :mod:`tablemover.claims`."""
    present, has_seq = await layout(conn, database)
    if not present:
        return []
    sql = _select(database, has_seq) + f" AND kind = '{KIND_OWNER}' ORDER BY id"
    return [_from_row(r) for r in await query(conn, sql, (move_name,))]


def prune_sql(database: str) -> str:
    """The DELETE of :func:`prune_progress`."""
    return (
        f"DELETE FROM {qualified(database, TABLE)} WHERE move_name=%s AND kind=%s "
        "AND (seq < %s OR seq IS NULL)"
    )


async def prune_progress(conn: Any, database: str, move_name: str, newest_seq: int) -> int:
    """Delete progress rows older than ``newest_seq`` (the caller's newest row, written in the same
    transaction); transition rows stay as the audit trail, rows of the earlier layout go too."""
    return await execute(conn, prune_sql(database), (move_name, KIND_PROGRESS, newest_seq))
