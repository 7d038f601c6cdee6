"""Deferred secondary indexes (``[move] defer_secondary_indexes``, issue #23 point 3).

With the option on, PREPARED creates each target table with its primary key and unique keys only:
the chunk key and the binlog apply identify rows by them, and a unique key also decides which rows
collide, so they must be there from the first row. Every other index (plain, FULLTEXT, SPATIAL)
costs the copy a B-tree insert per row and index; built once over the copied table it is cheaper.
They are added after the copy is complete and caught up, before the checksum gate and the cutover,
in one ``ALTER TABLE ... ADD KEY ..., ADD KEY ...`` per table.

Crash safety, in two records that need no transaction between them:

- *which* indexes were deferred is in the PREPARED checkpoint row's detail (``deferred_indexes``:
  table -> index names), written after the tables were created and before the first row is copied.
  It names the source indexes the target table lacks at that moment, so a daemon killed between its
  CREATE TABLE and that row (the next run finds the table, already reduced, and keeps it) still
  records them. A move started without the option records nothing and is never altered, whatever
  a later run's config says;
- *which of them exist* is the target table itself: every run that reaches the step reads the
  target's ``SHOW CREATE TABLE`` and adds only the recorded names it lacks. An ALTER is atomic, so
  after a SIGKILL it added all of them or none; but the server may still be running the killed
  daemon's ALTER and finish it after the next daemon looked, whose own ALTER then fails on the
  names (1061): it looks again. An index of a recorded name must be defined exactly as on the
  source (the same ``SHOW CREATE TABLE`` line: columns in order, prefix lengths, DESC, comment,
  IGNORED/INVISIBLE, parser), else the step refuses, before and after its ALTER, rather than cut
  over to a table that is read differently from the source.

The definitions are the source's own ``SHOW CREATE TABLE`` lines, so whatever the server can print
it can add back. :func:`split_create` and :func:`add_indexes_statement` are pure (unit-tested);
:func:`prepared_detail` and :func:`add_deferred_indexes` are the I/O around them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults
from tablemover.config import Config
from tablemover.db import close, connect, error_code, execute, query
from tablemover.errors import MoveFailed
from tablemover.log import event
from tablemover.machine import State
from tablemover.schema import TableSchema
from tablemover.sql import qualified
from tablemover.status import Board

DETAIL_KEY = "deferred_indexes"
"""The PREPARED checkpoint detail's key: ``{table: [index name, ...]}``."""

# A key line of SHOW CREATE TABLE: "  KEY `name` (...)", "  UNIQUE KEY ...", "  FULLTEXT KEY ...",
# "  SPATIAL KEY ...", "  PRIMARY KEY (...)". MariaDB and MySQL print every definition on one line
# (comments and defaults escape their newlines), two spaces in, each but the last ending in ",".
_KEY_LINE = re.compile(r"^  (?:(?P<kind>UNIQUE|FULLTEXT|SPATIAL|PRIMARY) )?KEY (?P<name>`(?:[^`]|``)+`)?")
_DEFERRABLE_KINDS = frozenset({None, "FULLTEXT", "SPATIAL"})

# Tried in order until the server accepts one (it refuses an impossible ALGORITHM/LOCK up front,
# before any work, with 1845/1846). The writer keeps applying binlog events during the ALTER:
# - INPLACE, LOCK=NONE: InnoDB builds plain indexes online; concurrent DML goes to the online log
#   and is applied at the end, under a short exclusive metadata lock that waits for the writer's
#   open transaction (it commits every 0.2 s or when idle);
# - LOCK=NONE with the server's choice of algorithm: MariaDB 11.2+ copies online too;
# - LOCK=SHARED: a FULLTEXT or SPATIAL index cannot be built with concurrent DML, nor two FULLTEXT
#   indexes at once in place (then the table is copied). The writer's statements on that table wait
#   for the ALTER; the stream and the writer's inbox go on (bounded), and the lag is caught up after
#   it, before the gate. Also the way on when the online log outgrew
#   innodb_online_alter_log_max_size (1799): the writes were too many to log, so they wait instead;
# - the server's default, should it refuse even that.
ALTER_LOCKS = ("ALGORITHM=INPLACE, LOCK=NONE", "LOCK=NONE", "LOCK=SHARED", "")
_NOT_SUPPORTED = frozenset({1845, 1846})  # ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON)
ER_INNODB_ONLINE_LOG_TOO_BIG = 1799
ER_DUP_KEYNAME = 1061
_LOOKS = 4  # reads of the target's indexes per table: each ALTER is followed by one


@dataclass(frozen=True)
class DeferredIndex:
    """A secondary index left out of the target's CREATE TABLE, as the source defines it."""

    name: str
    definition: str  # the SHOW CREATE TABLE line without its indent and comma: "KEY `k` (`a`,`b`(10))"


@dataclass(frozen=True)
class SplitTable:
    """A table's CREATE TABLE without its secondary indexes, and those indexes in source order."""

    create_statement: str
    deferred: tuple[DeferredIndex, ...]


def _unquote(ident: str) -> str:
    return ident[1:-1].replace("``", "`")


def key_lines(show_create: str) -> dict[str, str]:
    """Every named key of a ``SHOW CREATE TABLE`` text: name -> its line (no indent, no comma)."""
    found: dict[str, str] = {}
    for line in show_create.split("\n"):
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        name = "PRIMARY" if match.group("kind") == "PRIMARY" else match.group("name")
        if name is None:
            continue
        found[name if name == "PRIMARY" else _unquote(name)] = line.strip().removesuffix(",")
    return found


def split_create(show_create: str) -> SplitTable:
    """Take the plain, FULLTEXT and SPATIAL keys out of ``show_create`` (pure).

    Primary and unique keys stay. A table with a foreign key keeps everything (a foreign key needs
    its index from the start; preflight refuses them anyway), and so does a text this function does
    not recognise as one definition per line: deferring is an optimisation, never a guess.
    """
    lines = show_create.split("\n")
    closing = max((i for i, line in enumerate(lines) if line.startswith(")")), default=-1)
    if closing < 2 or not lines[0].startswith("CREATE TABLE ") or not lines[0].endswith("("):
        return SplitTable(show_create, ())
    body = lines[1:closing]
    if any(" FOREIGN KEY " in line for line in body):
        return SplitTable(show_create, ())
    kept: list[str] = []
    deferred: list[DeferredIndex] = []
    for line in body:
        match = _KEY_LINE.match(line)
        if match is not None and match.group("kind") in _DEFERRABLE_KINDS and match.group("name"):
            deferred.append(DeferredIndex(_unquote(match.group("name")), line.strip().removesuffix(",")))
        else:
            kept.append(line)
    if not deferred:
        return SplitTable(show_create, ())
    # Each definition but the last ends with a comma: the new last one must not.
    kept[-1] = kept[-1].removesuffix(",")
    return SplitTable("\n".join([lines[0], *kept, *lines[closing:]]), tuple(deferred))


def plan_table(schema: TableSchema) -> SplitTable:
    """:func:`split_create` of a source table, checked against information_schema's index list.

    The names taken out must be exactly the source's non-unique indexes; otherwise (a definition
    the text parse misread) the table is created whole and nothing of it is deferred.
    """
    split = split_create(schema.create_statement)
    secondary = {i.name for i in schema.indexes if not i.unique}
    if {d.name for d in split.deferred} != secondary:
        if secondary:
            event(
                "secondary indexes not deferred: the table's definition was not understood",
                logging.WARNING,
                table=schema.qualified_name,
            )
        return SplitTable(schema.create_statement, ())
    return split


def add_indexes_statement(
    database: str, table: str, indexes: Sequence[DeferredIndex], lock: str, tag: str
) -> str:
    """The one ``ALTER TABLE`` that adds ``indexes`` (pure); ``lock`` is one of :data:`ALTER_LOCKS`."""
    if not indexes:
        raise ValueError("no index to add")
    safe_tag = tag.replace("*/", "* /")
    parts = [f"ADD {index.definition}" for index in indexes]
    if lock:
        parts.append(lock)
    return f"ALTER /* {safe_tag} */ TABLE {qualified(database, table)} " + ", ".join(parts)


def alter_tag(move_name: str) -> str:
    """The ALTER's comment, for whoever reads the processlist or the target's binlog."""
    return f"tablemover move={move_name} deferred indexes"


def missing(deferred: Sequence[DeferredIndex], target_keys: Mapping[str, str]) -> list[DeferredIndex]:
    """The deferred indexes the target table has no key of that name for (pure).

    Names compare case-insensitively, as the servers compare index names.
    """
    present = {name.lower() for name in target_keys}
    return [d for d in deferred if d.name.lower() not in present]


_VERSIONED_COMMENT = re.compile(r"/\*M?!\d{5,6}\s*(.*?)\s*\*/", re.DOTALL)


def _comparable(line: str) -> str:
    # Versioned comments unwrapped: "KEY `k` (`a`) /*!80000 INVISIBLE */" is what a MySQL 8 server
    # prints for the INVISIBLE that another server may print bare. Nothing else is forgiven.
    return _VERSIONED_COMMENT.sub(r"\1", line).strip()


def mismatched(deferred: Sequence[DeferredIndex], target_keys: Mapping[str, str]) -> list[str]:
    """Descriptions of deferred indexes the target defines otherwise than the source (pure)."""
    by_name = {name.lower(): line for name, line in target_keys.items()}
    problems = []
    for index in deferred:
        line = by_name.get(index.name.lower())
        if line is not None and _comparable(line) != _comparable(index.definition):
            problems.append(f"source {index.definition!r}, target {line!r}")
    return problems


def remaining_locks(lock: str, code: int | None) -> tuple[str, ...] | None:
    """The :data:`ALTER_LOCKS` still worth trying after ``lock`` failed with error ``code`` (pure).

    None: the error is not about locking; the ALTER fails with it. After 1799 (the online log
    overflowed, the index was built in vain) no other LOCK=NONE form is tried: it would overflow too.
    """
    later = ALTER_LOCKS[ALTER_LOCKS.index(lock) + 1 :]
    if code in _NOT_SUPPORTED and later:
        return later
    if code == ER_INNODB_ONLINE_LOG_TOO_BIG and "LOCK=NONE" in lock:
        return tuple(option for option in later if "LOCK=NONE" not in option)
    return None


# --- I/O ------------------------------------------------------------------------------------------


async def _show_create(conn: Any, database: str, table: str) -> str:
    rows = await query(conn, f"SHOW CREATE TABLE {qualified(database, table)}")
    return str(rows[0][1])


def create_statement(config: Config, schema: TableSchema) -> str:
    """The source's CREATE TABLE text PREPARED creates the target table from (reduced when deferring)."""
    if not config.move.defer_secondary_indexes:
        return schema.create_statement
    return plan_table(schema).create_statement


async def prepared_detail(config: Config, schemas: Mapping[str, TableSchema], target: Any) -> dict[str, Any]:
    """The PREPARED row's record of what is deferred: ``{DETAIL_KEY: {table: [names]}}``, or ``{}``.

    Called after the tables exist: records the deferrable source indexes each target table lacks
    now, which for a table this run created is all of them.
    """
    if not config.move.defer_secondary_indexes:
        return {}
    target_db = config.move.effective_target_database
    record: dict[str, list[str]] = {}
    for table, schema in schemas.items():
        deferrable = plan_table(schema).deferred
        if not deferrable:
            continue
        lacking = missing(deferrable, key_lines(await _show_create(target, target_db, table)))
        if lacking:
            record[table] = [d.name for d in lacking]
    return {DETAIL_KEY: record}


async def _recorded(conn: Any, state_db: str, move_name: str) -> dict[str, list[str]]:
    """The deferred index names the move's PREPARED row records (a transition row: never pruned)."""
    for row in await cpstore.history(conn, state_db, move_name):
        if row.state is State.PREPARED and row.kind == cpstore.KIND_TRANSITION:
            record = row.detail.get(DETAIL_KEY) or {}
            return {str(t): [str(n) for n in names] for t, names in record.items()}
    return {}


async def add_deferred_indexes(
    config: Config, schemas: Mapping[str, TableSchema], state_db: str, board: Board
) -> None:
    """Give every target table the secondary indexes its move deferred (those it lacks yet).

    Runs after the copy is complete and caught up, beside the running pipeline, on a connection of
    its own (an ALTER commits implicitly, so never on the writer's). Idempotent: a run that finds
    them all in place only reads.
    """
    target_db = config.move.effective_target_database
    conn = await connect(config.target, "target", connection="indexes")
    try:
        recorded = await _recorded(conn, state_db, config.move.name)
        for table, names in recorded.items():
            if names and table in schemas:
                await _complete_table(config, conn, target_db, table, schemas[table], names, board)
    finally:
        await close(conn)


async def _complete_table(
    config: Config,
    conn: Any,
    target_db: str,
    table: str,
    schema: TableSchema,
    names: list[str],
    board: Board,
) -> None:
    by_name = {d.name.lower(): d for d in split_create(schema.create_statement).deferred}
    present = {name.lower() for name in key_lines(await _show_create(conn, target_db, table))}
    # The source lost a recorded index since PREPARED (someone altered it): its definition is gone,
    # so it can only be accepted where the target already has it.
    lost = [n for n in names if n.lower() not in by_name and n.lower() not in present]
    if lost:
        raise MoveFailed(
            f"the move deferred the indexes {', '.join(lost)} of {schema.qualified_name}, but the "
            "source table has no such secondary index now, so they cannot be added to "
            f"{target_db}.{table} as the source defines them. Nothing was cut over. Restore the "
            "source's indexes, or add them to the target table by hand, and run again."
        )
    deferred = [by_name[n.lower()] for n in names if n.lower() in by_name]
    for _ in range(_LOOKS):
        target_keys = key_lines(await _show_create(conn, target_db, table))
        # Checked before the ALTER too: an index of a deferred name that someone defined otherwise
        # is refused before anything is added, not after; and after it, what the server made.
        _refuse_mismatched(schema, f"{target_db}.{table}", deferred, target_keys)
        lacking = missing(deferred, target_keys)
        if not lacking:
            return
        board.cutover_wait = f"cutover waits for {len(lacking)} deferred index(es) on {target_db}.{table}"
        try:
            seconds, lock = await _alter(conn, config.move.name, target_db, table, lacking)
        except MySQLError as exc:
            if error_code(exc) != ER_DUP_KEYNAME:
                raise
            # A daemon killed during its ALTER leaves the statement running on the server; if it
            # finished after this run looked, the names exist now. Look again, add what is left.
            event("a deferred index appeared meanwhile; looking again", table=f"{target_db}.{table}")
            continue
        finally:
            board.cutover_wait = ""
        board.index_build_s[table] = round(seconds, 3)
        event(
            "deferred indexes added",
            table=f"{target_db}.{table}",
            indexes=",".join(d.name for d in lacking),
            seconds=round(seconds, 3),
            lock=lock or "server default",
        )
    raise MoveFailed(
        f"the deferred indexes of {target_db}.{table} were not all there after {_LOOKS} looks (last "
        f"seen missing: {', '.join(d.name for d in missing(deferred, target_keys))}); nothing was cut "
        "over. Someone else is altering that table: let them finish, then run again."
    )


def _refuse_mismatched(
    schema: TableSchema,
    target: str,
    deferred: Sequence[DeferredIndex],
    target_keys: Mapping[str, str],
) -> None:
    problems = mismatched(deferred, target_keys)
    if problems:
        raise MoveFailed(
            f"target table {target} has an index of a name the move deferred but "
            f"defined otherwise than on {schema.qualified_name}: {'; '.join(problems)}. Nothing was "
            "cut over. Someone changed it by hand: drop that index on the target and run again (the "
            "move adds it as the source defines it)."
        )


async def _alter(
    conn: Any, move_name: str, database: str, table: str, indexes: Sequence[DeferredIndex]
) -> tuple[float, str]:
    """Run the ALTER with the least locking the server accepts: (seconds it took, lock clause)."""
    faults.hit("indexes.before_alter")
    locks: tuple[str, ...] = ALTER_LOCKS
    while True:
        lock = locks[0]
        started = time.monotonic()
        try:
            await execute(conn, add_indexes_statement(database, table, indexes, lock, alter_tag(move_name)))
        except MySQLError as exc:
            later = remaining_locks(lock, error_code(exc))
            if not later:
                raise
            level = logging.WARNING if error_code(exc) == ER_INNODB_ONLINE_LOG_TOO_BIG else logging.DEBUG
            event("ALTER refused with this lock; trying the next", level, lock=lock, error=str(exc))
            locks = later
            continue
        faults.hit("indexes.after_alter")
        return time.monotonic() - started, lock
