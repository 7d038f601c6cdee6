"""The exact, least set of privileges a move needs, per server, as GRANT statements.

Pure functions on the config, no I/O. Every entry names a statement tablemover actually sends and
why; :func:`minimal_needs` is the single list that the preflight privilege check requires, that its
"Fix:" hints grant, and that ``tablemover check`` prints. Privileges are table-level wherever the
server allows it, including on names that do not exist yet (the cutover's renamed source tables, the
target tables before PREPARED creates them): a table grant on a missing table is accepted when it
includes CREATE, which is why those grants always carry it.

Database-level grants are left where no table-level form exists:

* ``LOCK TABLES`` (MySQL 8.0.22+ locking reads) exists only per database; it lets the user lock
  only the tables it can already SELECT;
* the state schema (``[move] state_database``, default ``_tablemover``): the daemon creates it and
  its checkpoint table, prunes rows and drops the table at cleanup;
* ``CREATE`` on the target schema, only while that schema does not exist: ``CREATE DATABASE`` needs
  it, and once the schema exists the daemon does not issue it.

What the statements do, by server:

* source: the binlog dump (REPLICATION SLAVE), binlog positions and ``SHOW BINARY LOGS`` /
  ``SHOW BINLOG EVENTS`` (REPLICATION CLIENT, called BINLOG MONITOR on MariaDB 10.5+), the copy's
  ``SELECT ... LOCK IN SHARE MODE`` and the checksums (SELECT), the cutover's ``RENAME TABLE t TO
  _t_moved`` (ALTER and DROP on ``t``, CREATE and INSERT on ``_t_moved``), ``verify`` after the
  cutover (SELECT on ``_t_moved``) and ``cleanup --drop-source`` (DROP on ``_t_moved``);
* target: ``CREATE TABLE`` (CREATE), the copy and the binlog apply (INSERT, UPDATE, DELETE; REPLACE
  is INSERT and DELETE), the checksums (SELECT), the cutover's ``ALTER TABLE ... AUTO_INCREMENT``
  (ALTER), ``discard`` (DROP; TRUNCATE needs DROP);
* the rollback window adds, on the source, the reverse feed's writes into ``_t_moved`` and the
  restoring ``RENAME TABLE _t_moved TO t`` with its AUTO_INCREMENT carry-back, and its feed
  checkpoint in the state schema; on the target, the reverse binlog stream and the rollback's
  ``RENAME TABLE t TO _t_rolledback``.

Optional, never required: PROCESS on the source lets the cutover see the transactions that would
block its RENAME (without it the RENAME relies on its bounded lock wait).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tablemover.checkpoint import TABLE as CHECKPOINT_TABLE
from tablemover.config import MoveSection
from tablemover.flavor import Flavor, ServerVersion
from tablemover.preflight.grant_fix import grant_database_name
from tablemover.preflight.grant_lines import TABLE_PRIVILEGES, display_privilege
from tablemover.preflight.grant_match import DEFAULT_NAME_RULES, NameRules, Requirement
from tablemover.sql import qualified

ACCOUNT_PLACEHOLDER = "<account>"
"""What the printed statements name instead of the account: the operator puts ``'user'@'host'``."""

STATE_PRIVILEGES = ("SELECT", "INSERT", "DELETE", "CREATE", "DROP")
"""On the state schema: read and write checkpoint rows, prune them, create and drop its table."""

# The order privileges are printed in, so one config always prints the same statements.
_ORDER = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "LOCK TABLES",
    "REPLICATION SLAVE",
    "REPLICATION CLIENT",
    "PROCESS",
)


class Side(enum.Enum):
    """Which server a grant is for."""

    SOURCE = "source"
    TARGET = "target"


@dataclass(frozen=True)
class Need:
    """One privilege on one object, why, and where a fix grants it.

    ``privileges`` are alternatives (any one will do; the first is granted). ``table`` None means
    the whole database, ``database`` None the whole server. ``grant_table`` is where the grant goes:
    the table, or None where the first privilege exists only per database (LOCK TABLES).
    """

    side: Side
    privileges: tuple[str, ...]
    database: str | None
    table: str | None
    reason: str
    optional: bool = False

    @property
    def grant_table(self) -> str | None:
        """The table the fix grants on, None for a database or global grant."""
        return self.table if self.privileges[0] in TABLE_PRIVILEGES else None

    @property
    def requirement(self) -> Requirement:
        """The same need as the privilege check matches it against ``SHOW GRANTS``."""
        return Requirement(self.privileges, self.database, self.table, self.reason)


_STREAM = "the binlog stream (binlog dump)"
_POSITION = "binlog positions, SHOW BINARY LOGS and SHOW BINLOG EVENTS"
_BLOCKERS = "optional: lets the cutover see the transactions that would block its RENAME"
_COPY = "the copy's locking reads and the checksums"
_REPLICA_STATUS = "SHOW SLAVE STATUS: the replica's threads, lag and source"
_LOCKING_READ = "locking reads (LOCK IN SHARE MODE) need one of them on MySQL 8.0.22+"
_RENAME_FROM = "the cutover's RENAME TABLE moves the table away"
_RENAME_TO = "the cutover's RENAME TABLE creates this name"
_VERIFY_RENAMED = "`verify` after the cutover reads the renamed source table"
_CLEANUP_RENAMED = "`cleanup --drop-source` drops the renamed source table"
_STATE = "the move's own state, its checkpoint: the daemon creates the schema and its table, prunes rows"
_LEGACY = "this move's checkpoint, begun by an earlier version, stays in the target schema until it ends"
_TARGET_SCHEMA = "the daemon creates the target schema (not needed once it exists)"
_TARGET_CREATE = "PREPARED creates the target table"
_TARGET_ROWS = "the copy and the binlog apply write rows, the checksums read them"
_TARGET_COUNTER = "the cutover raises the AUTO_INCREMENT counter to the source's with ALTER TABLE"
_TARGET_DISCARD = "`discard` drops or empties the target table"
_WINDOW_ROWS = "the rollback window writes the target's changes into the renamed source table"
_WINDOW_RESTORE_FROM = "a rollback's RENAME TABLE gives the source table its name back, and its counter"
_WINDOW_RESTORE_TO = "a rollback's RENAME TABLE gives the source table its name back"
_WINDOW_STREAM = "the rollback window streams the target's binlog back"
_ROLLBACK_FROM = "a rollback's RENAME TABLE moves the target table away"
_ROLLBACK_TO = "a rollback's RENAME TABLE creates this name"


def _locking_read_needs_more(version: ServerVersion | None) -> bool:
    # MySQL 8.0.22 started to require more than SELECT for FOR SHARE; MariaDB never did.
    return (
        version is not None
        and version.flavor is Flavor.MYSQL
        and (version.major, version.minor, version.patch) >= (8, 0, 22)
    )


def minimal_needs(
    move: MoveSection,
    source_version: ServerVersion | None = None,
    *,
    target_schema_exists: bool = False,
    checkpoint_database: str = "",
) -> list[Need]:
    """Every privilege a move of ``move`` needs on both servers, in a stable order.

    ``move`` should carry the names as the servers store them (``Config.resolve_names``).
    ``source_version`` None (not known) leaves out MySQL 8.0.22+'s LOCK TABLES.
    ``checkpoint_database`` is where preflight found the move's checkpoint on the target
    (``checkpoint.locate_move``): empty or the state schema for every move but one an earlier
    version started, whose rows stay in the target schema until it finishes.
    """
    src, dst = Side.SOURCE, Side.TARGET
    db, target_db, state = move.database, move.effective_target_database, move.state_database
    window = move.rollback_window_s > 0
    needs = [
        Need(src, ("REPLICATION SLAVE",), None, None, _STREAM),
        Need(src, ("REPLICATION CLIENT",), None, None, _POSITION),
        Need(src, ("PROCESS",), None, None, _BLOCKERS, optional=True),
    ]
    for table in move.tables:
        renamed = move.renamed(table)
        needs += [
            Need(src, ("SELECT",), db, table, _COPY),
            Need(src, ("ALTER",), db, table, _RENAME_FROM),
            Need(src, ("DROP",), db, table, _RENAME_FROM),
        ]
        if _locking_read_needs_more(source_version):
            needs.append(Need(src, ("LOCK TABLES", "UPDATE", "DELETE"), db, table, _LOCKING_READ))
        if window:
            needs += [Need(src, (p,), db, table, _WINDOW_RESTORE_TO) for p in ("CREATE", "INSERT")]
        needs += [
            Need(src, ("CREATE",), db, renamed, _RENAME_TO),
            Need(src, ("INSERT",), db, renamed, _RENAME_TO),
            Need(src, ("SELECT",), db, renamed, _VERIFY_RENAMED),
            Need(src, ("DROP",), db, renamed, _CLEANUP_RENAMED),
        ]
        if window:
            needs += [Need(src, (p,), db, renamed, _WINDOW_ROWS) for p in ("UPDATE", "DELETE")]
            needs.append(Need(src, ("ALTER",), db, renamed, _WINDOW_RESTORE_FROM))
    if window:
        needs += [Need(src, (p,), state, None, _STATE) for p in STATE_PRIVILEGES]
        needs += [
            Need(dst, ("REPLICATION SLAVE",), None, None, _WINDOW_STREAM),
            Need(dst, ("REPLICATION CLIENT",), None, None, _WINDOW_STREAM),
        ]
    if not target_schema_exists:
        needs.append(Need(dst, ("CREATE",), target_db, None, _TARGET_SCHEMA))
    for table in move.tables:
        needs += [
            Need(dst, (p,), target_db, table, _TARGET_ROWS) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
        ]
        needs += [
            Need(dst, ("CREATE",), target_db, table, _TARGET_CREATE),
            Need(dst, ("DROP",), target_db, table, _TARGET_DISCARD),
            Need(dst, ("ALTER",), target_db, table, _TARGET_COUNTER),
        ]
        if window:
            needs.append(Need(dst, ("DROP",), target_db, table, _ROLLBACK_FROM))
            needs.append(Need(dst, ("ALTER",), target_db, table, _ROLLBACK_FROM))
            rolledback = move.rolledback(table)
            needs += [Need(dst, (p,), target_db, rolledback, _ROLLBACK_TO) for p in ("CREATE", "INSERT")]
    needs += [Need(dst, (p,), state, None, _STATE) for p in STATE_PRIVILEGES]
    if checkpoint_database and checkpoint_database != state:
        # The earlier layout: the checkpoint table in the target schema, read, written, pruned,
        # upgraded (ALTER ... ADD seq) and dropped at cleanup there; the table exists already.
        legacy = [*STATE_PRIVILEGES, "ALTER"]
        needs += [Need(dst, (p,), checkpoint_database, CHECKPOINT_TABLE, _LEGACY) for p in legacy]
    return needs


def replica_needs(move: MoveSection, version: ServerVersion | None = None) -> list[Need]:
    """What the ``[replica]`` user needs: the source's reads, nothing that writes (the RENAME and
    its position stay on the primary), and the replication status the barrier and the watch read.

    The needs are on :attr:`Side.SOURCE`: the replica is a server of the source's cluster, holding
    the source's schema names, and the same matching applies."""
    rep = Side.SOURCE
    needs = [
        Need(rep, ("REPLICATION SLAVE",), None, None, _STREAM),
        Need(rep, ("REPLICATION CLIENT",), None, None, _POSITION),
    ]
    if version is None or version.flavor is Flavor.MARIADB:
        # MariaDB 10.5.9 split SHOW SLAVE STATUS off REPLICATION CLIENT (MySQL keeps it there).
        needs.append(Need(rep, ("SLAVE MONITOR", "SUPER"), None, None, _REPLICA_STATUS))
    for table in move.tables:
        needs.append(Need(rep, ("SELECT",), move.database, table, _COPY))
        if _locking_read_needs_more(version):
            needs.append(Need(rep, ("LOCK TABLES", "UPDATE", "DELETE"), move.database, table, _LOCKING_READ))
    return needs


def requirements(needs: Iterable[Need], side: Side) -> list[Requirement]:
    """What the privilege check requires on ``side``: every need but the optional ones."""
    return [n.requirement for n in needs if n.side is side and not n.optional]


@dataclass(frozen=True)
class GrantStatement:
    """One GRANT: privileges on one object (``database`` None: ``*.*``; ``table`` None: ``db.*``)."""

    privileges: tuple[str, ...]
    database: str | None
    table: str | None
    optional: bool = False

    def object_sql(self, rules: NameRules = DEFAULT_NAME_RULES) -> str:
        """``*.*``, ```db`.*`` (wildcards escaped: it means exactly that schema) or ```db`.`t```."""
        if self.database is None:
            return "*.*"
        if self.table is None:
            return f"{grant_database_name(self.database, rules)}.*"
        # A table-level grant names the schema literally; only database-level ones are patterns.
        return qualified(self.database, self.table)

    def sql(self, account: str, flavor: Flavor | None, rules: NameRules = DEFAULT_NAME_RULES) -> str:
        """``GRANT ... ON ... TO account;`` with the privilege names ``flavor`` prints."""
        names = ", ".join(_display(p, flavor) for p in self.privileges)
        return f"GRANT {names} ON {self.object_sql(rules)} TO {account};"


def _display(privilege: str, flavor: Flavor | None) -> str:
    # REPLICATION CLIENT is accepted by MariaDB 10.5+ as an alias of BINLOG MONITOR, so it is the
    # name to print when the flavour is not known.
    return display_privilege(privilege, flavor) if flavor is not None else privilege


def _sorted(privileges: Iterable[str]) -> tuple[str, ...]:
    unique = set(privileges)
    return tuple(sorted(unique, key=lambda p: (_ORDER.index(p) if p in _ORDER else len(_ORDER), p)))


def group_statements(needs: Sequence[Need]) -> list[GrantStatement]:
    """The needs as one GRANT per object, in first-need order; optional ones in statements of their own."""
    grouped: dict[tuple[bool, str | None, str | None], list[str]] = {}
    for need in needs:
        grouped.setdefault((need.optional, need.database, need.grant_table), []).append(need.privileges[0])
    return [
        GrantStatement(_sorted(privs), database, table, optional)
        for (optional, database, table), privs in grouped.items()
    ]


def grant_script(
    needs: Sequence[Need],
    source_flavor: Flavor | None,
    target_flavor: Flavor | None,
    *,
    source_address: str = "",
    target_address: str = "",
    account: str = ACCOUNT_PLACEHOLDER,
    source_rules: NameRules = DEFAULT_NAME_RULES,
    target_rules: NameRules = DEFAULT_NAME_RULES,
) -> str:
    """The minimal grants as a ready-to-run SQL script per server; optional grants commented out.

    The rules say how each server reads a database grant's name (MySQL with partial_revokes=ON
    reads ``_`` literally, so it is not escaped there).
    """
    lines = ["-- The least privileges this move needs, per server (table-level where the server allows)."]
    if account == ACCOUNT_PLACEHOLDER:
        lines.append(f"-- Replace {account} with the move user, e.g. 'mover'@'%'.")
    for side, flavor, address, rules in (
        (Side.SOURCE, source_flavor, source_address, source_rules),
        (Side.TARGET, target_flavor, target_address, target_rules),
    ):
        lines.append(f"-- on the {side.value}{' ' + address if address else ''}:")
        side_needs = [n for n in needs if n.side is side]
        for statement in group_statements(side_needs):
            text = statement.sql(account, flavor, rules)
            if statement.optional:
                why = "; ".join(dict.fromkeys(n.reason for n in side_needs if n.optional))
                text = f"-- {text}  -- {why}"
            lines.append(text)
    return "\n".join(lines)
