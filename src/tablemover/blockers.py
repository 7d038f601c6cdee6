"""Look before you lock: the source sessions that would make the cutover's RENAME wait.

A RENAME waits for every transaction that holds a metadata lock on a moved table, and while it
waits *every* new query on those tables queues behind it. So before each attempt the cutover asks
the source who holds such a lock, and does not issue the RENAME while a transaction older than
``min_age_s`` does (a younger one is ordinary OLTP traffic that ends well within the RENAME's short
lock wait).

Where the answer comes from, by flavour:

* MariaDB with the ``METADATA_LOCK_INFO`` plugin (``INSTALL SONAME 'metadata_lock_info'``): exact,
  the sessions holding a metadata lock on a moved table, with their transaction's age from
  ``INNODB_TRX``.
* MySQL 8: ``performance_schema.metadata_locks`` (instrumented by default), joined with
  ``performance_schema.threads`` and ``information_schema.INNODB_TRX``.
* Neither available (MariaDB without the plugin, its default; MySQL with the MDL instrument
  off): ``INNODB_TRX`` with ``PROCESSLIST``. Neither says which tables a transaction holds:
  MariaDB 10.11's ``INNODB_LOCKS`` lists only locks someone waits for, ``trx_tables_locked`` is a
  count, and ``SHOW ENGINE INNODB STATUS`` names tables only with the lock monitor on (a global
  setting we do not change). What the server does say is the statement a transaction runs now,
  so a long transaction is *attributed* to a moved table when that statement names one (a
  qualified ``db.t``, or a bare ``t`` in a session whose default schema is the move's), and is
  then reported like an exact answer. Every other long transaction (idle in transaction, or
  running a statement on other tables) may still hold a moved table from an earlier statement,
  so the cutover still waits for it, but it is published only as a count and its age: no thread,
  user, host, statement or table of a session that may have nothing to do with the move leaves
  the daemon. Approximate both ways: a transaction that read a moved table and went idle is not
  attributed (it is counted), and one that ran on other tables only delays the cutover too
  (bounded by ``cutover_blocker_wait_s``). The log says how to get exact answers.

All of these need the PROCESS privilege. Without it the check is skipped with a warning and the
RENAME relies on its own bounded lock wait (``cutover_lock_timeout_s``), as before.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from asyncmy.errors import MySQLError

from tablemover.config import MoveSection
from tablemover.db import ACCESS_DENIED, error_code, query, query_one
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.redact import digest
from tablemover.retry import describe_error

if TYPE_CHECKING:
    from tablemover.status import Board

POLL_S = 0.2

METHOD_MDL_PLUGIN = "metadata_lock_info"
METHOD_PERFORMANCE_SCHEMA = "performance_schema.metadata_locks"
METHOD_INNODB_TRX = (
    "innodb_trx (attributed by the running statement; install metadata_lock_info for exact answers)"
)
METHOD_NONE = "none (the source user lacks the PROCESS privilege)"


@dataclass(frozen=True)
class Blocker:
    """A source session whose open transaction would hold up the RENAME."""

    thread_id: int
    user: str
    host: str
    age_s: int
    statement: str
    table: str  # "" when the method cannot tell which table

    def describe(self) -> str:
        """One line for the log and `status`."""
        on = f" on {self.table}" if self.table else ""
        # Published to /status and the log: another session's statement, so its shape only.
        shown = digest(self.statement) or "(idle in transaction)"
        return (
            f"thread {self.thread_id} ({self.user}@{self.host}), transaction open {self.age_s} s{on}: {shown}"
        )


def mdl_plugin_sql(tables: int) -> str:
    """MariaDB: holders of metadata locks on the moved tables, with their transaction's age."""
    names = ", ".join(["%s"] * tables)
    return (
        "SELECT m.THREAD_ID, p.USER, p.HOST, "
        "COALESCE(TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), p.TIME), "
        "COALESCE(p.INFO, ''), m.TABLE_NAME "
        "FROM information_schema.METADATA_LOCK_INFO m "
        "JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID "
        "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = m.THREAD_ID "
        f"WHERE m.TABLE_SCHEMA = %s AND m.TABLE_NAME IN ({names}) AND m.THREAD_ID <> CONNECTION_ID()"
    )


def performance_schema_sql(tables: int) -> str:
    """MySQL: holders of granted metadata locks on the moved tables, with their transaction's age."""
    names = ", ".join(["%s"] * tables)
    return (
        "SELECT th.PROCESSLIST_ID, COALESCE(th.PROCESSLIST_USER, ''), COALESCE(th.PROCESSLIST_HOST, ''), "
        "COALESCE(TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), th.PROCESSLIST_TIME, 0), "
        "COALESCE(th.PROCESSLIST_INFO, ''), m.OBJECT_NAME "
        "FROM performance_schema.metadata_locks m "
        "JOIN performance_schema.threads th ON th.THREAD_ID = m.OWNER_THREAD_ID "
        "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = th.PROCESSLIST_ID "
        "WHERE m.OBJECT_TYPE = 'TABLE' AND m.LOCK_STATUS = 'GRANTED' AND m.OBJECT_SCHEMA = %s "
        f"AND m.OBJECT_NAME IN ({names}) AND th.PROCESSLIST_ID <> CONNECTION_ID()"
    )


INNODB_TRX_SQL = (
    "SELECT t.trx_mysql_thread_id, COALESCE(p.USER, ''), COALESCE(p.HOST, ''), "
    "TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), COALESCE(p.INFO, t.trx_query, ''), "
    "COALESCE(p.DB, '') "
    "FROM information_schema.INNODB_TRX t "
    "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
    "WHERE t.trx_mysql_thread_id <> CONNECTION_ID()"
)

# An identifier, `quoted` or bare, and the dotted chains they form (db.t, t.col, db.t.col). Run
# on a statement's digest, where no literal or comment is left to look like a name.
_NAME = r"(?:`(?:[^`]|``)*`|[A-Za-z_$][\w$]*)"
_CHAIN = re.compile(rf"{_NAME}(?:\s*\.\s*{_NAME})*")
_PART = re.compile(_NAME)


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def named_table(statement: str, session_db: str, database: str, tables: Sequence[str]) -> str:
    """The first moved table ``statement`` names, or "" when it names none.

    ``db.t`` counts when db is the move's schema; a bare ``t`` (or ``t.col``) when the session's
    default schema is. Names compare case-insensitively, keywords are not told from names: both
    only ever count a statement in, never out, which is the safe side for a lock check.
    """
    wanted = {t.casefold(): t for t in tables}
    db = database.casefold()
    bare_counts = session_db.casefold() == db
    for chain in _CHAIN.finditer(digest(statement, limit=len(statement) + 1)):
        parts = [_unquote(p).casefold() for p in _PART.findall(chain.group(0))]
        if len(parts) >= 2 and parts[0] == db and parts[1] in wanted:
            return wanted[parts[1]]
        if bare_counts and parts[0] in wanted:
            return wanted[parts[0]]
    return ""


def attribute(rows: Sequence[Sequence[Any]], database: str, tables: Sequence[str]) -> list[tuple[Any, ...]]:
    """Fallback rows (thread, user, host, age, statement, session db) as blocker rows whose table
    is the moved table the running statement names, "" when it names none (see the docstring)."""
    return [
        (thread, user, host, age, stmt, named_table(str(stmt or ""), str(db or ""), database, tables))
        for thread, user, host, age, stmt, db in rows
    ]


def old_enough(rows: Sequence[Sequence[Any]], min_age_s: float, database: str) -> list[Blocker]:
    """Blockers from query rows (thread, user, host, age, statement, table), one per thread."""
    seen: dict[int, Blocker] = {}
    for thread, user, host, age, statement, table in rows:
        if thread is None or int(thread) in seen or int(age or 0) < min_age_s:
            continue
        seen[int(thread)] = Blocker(
            int(thread),
            str(user or ""),
            str(host or ""),
            int(age or 0),
            str(statement or ""),
            f"{database}.{table}" if table else "",
        )
    return sorted(seen.values(), key=lambda b: -b.age_s)


async def detection_method(conn: Any, flavor: Flavor) -> str:
    """Which source of truth this server offers (see the module docstring)."""
    if flavor is Flavor.MARIADB:
        row = await query_one(
            conn,
            "SELECT COUNT(*) FROM information_schema.PLUGINS "
            "WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'",
        )
        return METHOD_MDL_PLUGIN if row and int(row[0]) else METHOD_INNODB_TRX
    row = await query_one(
        conn,
        "SELECT COUNT(*) FROM performance_schema.setup_instruments "
        "WHERE NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES'",
    )
    return METHOD_PERFORMANCE_SCHEMA if row and int(row[0]) else METHOD_INNODB_TRX


async def find_blockers(
    conn: Any, method: str, database: str, tables: Sequence[str], min_age_s: float
) -> list[Blocker]:
    """Sessions with a transaction older than ``min_age_s`` that would hold up a RENAME of ``tables``."""
    if method == METHOD_MDL_PLUGIN:
        rows = await query(conn, mdl_plugin_sql(len(tables)), (database, *tables))
    elif method == METHOD_PERFORMANCE_SCHEMA:
        rows = await query(conn, performance_schema_sql(len(tables)), (database, *tables))
    else:
        rows = attribute(await query(conn, INNODB_TRX_SQL), database, tables)
    return old_enough(rows, min_age_s, database)


def published(found: Sequence[Blocker]) -> list[str]:
    """What `status`, ``/status`` and the log may show of ``found``.

    A blocker known to hold a moved table is described in full (its statement as a digest); the
    fallback's unattributed ones (``table == ""``) only as a count and the oldest age: they may be
    any session on the server.
    """
    lines = [b.describe() for b in found if b.table]
    others = [b for b in found if not b.table]
    if others:
        lines.append(
            f"{len(others)} other transaction(s), the oldest open {max(b.age_s for b in others)} s, "
            "that may hold a moved table (the server does not say which tables they hold; "
            "install metadata_lock_info for exact answers)"
        )
    return lines


class BlockerWatch:
    """Holds the cutover while a source transaction would block its RENAME (bounded wait).

    A RENAME queued behind a transaction's metadata lock stalls every query on the moved tables
    for as long as it waits; waiting *before* issuing it stalls nothing. Bounded by
    cutover_blocker_wait_s, after which the RENAME is tried anyway (its own lock wait is bounded by
    cutover_lock_timeout_s). What it waits for is shown on the board (`status`).
    """

    def __init__(self, move: MoveSection, flavor: Flavor, board: Board) -> None:
        self.move = move
        self.flavor = flavor
        self.board = board
        self.method = ""

    async def wait(self, conn: Any) -> bool:
        """Return once no old enough transaction holds a moved table, or the wait is used up.

        True when it had to wait (a blocker was found), for the checksum gate to run after it.
        """
        if self.method == METHOD_NONE:
            return False
        if not self.method:
            self.method = await detection_method(conn, self.flavor)
            event("cutover blocker check", method=self.method)
        deadline = time.monotonic() + self.move.cutover_blocker_wait_s
        announced: set[int] = set()
        try:
            while True:
                found = await self._find(conn)
                if found is None:
                    return bool(announced)
                self.board.cutover_blockers = published(found)
                if not found:
                    return bool(announced)
                self.board.cutover_wait = f"cutover waits for {len(found)} source transaction(s) to end"
                if {b.thread_id for b in found} - announced:
                    announced |= {b.thread_id for b in found}
                    event(
                        "cutover waits: a source transaction would block the RENAME",
                        logging.WARNING,
                        blockers=self.board.cutover_blockers,
                        method=self.method,
                        waits_up_to_s=self.move.cutover_blocker_wait_s,
                    )
                if time.monotonic() >= deadline:
                    event(
                        "cutover_blocker_wait_s elapsed: trying the RENAME anyway (its lock wait is bounded)",
                        logging.WARNING,
                        blockers=self.board.cutover_blockers,
                    )
                    return True
                await anyio.sleep(POLL_S)
        finally:
            self.board.cutover_blockers = []
            self.board.cutover_wait = ""

    async def _find(self, conn: Any) -> list[Blocker] | None:
        """The blockers now; None when the source does not let us look (then we stop looking)."""
        try:
            return await find_blockers(
                conn, self.method, self.move.database, self.move.tables, self.move.cutover_blocker_min_age_s
            )
        except MySQLError as exc:
            if error_code(exc) not in ACCESS_DENIED:
                raise
            self.method = METHOD_NONE
            event(
                "cannot see the source's transactions (grant PROCESS to the source user): the "
                "RENAME is tried without looking first, its lock wait bounded by "
                "cutover_lock_timeout_s",
                logging.WARNING,
                error=describe_error(exc),
            )
            return None
