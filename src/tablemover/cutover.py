"""The source side of the cutover: the atomic RENAME with its drain position, and the inspection
that tells, after a crash or an unanswered RENAME, whether the rename happened.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any

import asyncmy.constants.CLIENT as CLIENT

from tablemover import faults, sql
from tablemover.config import Config
from tablemover.db import ER_LOCK_WAIT_TIMEOUT, close, connect, error_code, query_one
from tablemover.flavor import Flavor
from tablemover.schema import table_exists


class RenameOutcome(enum.Enum):
    """What a RENAME attempt did."""

    RENAMED = "renamed"
    LOCK_TIMEOUT = "lock_timeout"  # nothing renamed; try again later
    UNKNOWN = "unknown"  # the round trip failed: inspect the source


@dataclass(frozen=True)
class RenameResult:
    """Outcome plus, when renamed, the source position read right after it."""

    outcome: RenameOutcome
    drain_gtid: str = ""
    error: str = ""


def rename_comment(move_name: str, nonce: str) -> str:
    """The comment tagging our RENAME in the binlog (the stream skips it as foreign DDL by this)."""
    return f"tablemover move={move_name} nonce={nonce}"


def new_nonce() -> str:
    """A random tag for one cutover attempt."""
    return secrets.token_hex(6)


def position_sql(flavor: Flavor) -> str:
    """Reads the source's position; after our RENAME on the same connection it covers the RENAME."""
    return "SELECT @@global.gtid_binlog_pos" if flavor is Flavor.MARIADB else "SELECT @@global.gtid_executed"


async def rename_and_capture(config: Config, flavor: Flavor, nonce: str) -> RenameResult:
    """One round trip on one connection: the multi-table RENAME, then the GTID position.

    The RENAME runs with a bounded lock_wait_timeout so a long transaction on a moved table cannot
    stall it, and every query queued behind its metadata lock, for longer than that.
    """
    move = config.move
    statement = sql.rename_tables(
        move.database, [(t, move.renamed(t)) for t in move.tables], rename_comment(move.name, nonce)
    )
    conn = await connect(config.source, "source", client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SET SESSION lock_wait_timeout = {int(move.cutover_lock_timeout_s)}")
            try:
                faults.fail("cutover.before_rename")
                await cur.execute(f"{statement}; {position_sql(flavor)}")
                faults.hit("cutover.after_rename")
                faults.fail("cutover.after_rename")
                await cur.nextset()
                row = await cur.fetchone()
            except Exception as exc:
                if error_code(exc) == ER_LOCK_WAIT_TIMEOUT:
                    return RenameResult(RenameOutcome.LOCK_TIMEOUT, error=str(exc))
                return RenameResult(RenameOutcome.UNKNOWN, error=f"{type(exc).__name__}: {exc}")
        return RenameResult(RenameOutcome.RENAMED, str(row[0] if row else "").replace("\n", ""))
    finally:
        await close(conn)


class SourceTables(enum.Enum):
    """What an inspection of the source found."""

    ORIGINAL = "original"  # every original present, no renamed table: the rename did not happen
    RENAMED = "renamed"  # every renamed present, no original: the rename happened
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Inspection:
    """Per table: (original exists, renamed exists), and the verdict."""

    found: dict[str, tuple[bool, bool]]
    verdict: SourceTables

    def describe(self, config: Config) -> str:
        """For the operator: what exists under which name."""
        db = config.move.database
        parts = []
        for table, (original, renamed) in self.found.items():
            parts.append(
                f"{db}.{table} {'exists' if original else 'is absent'}, "
                f"{db}.{config.move.renamed(table)} {'exists' if renamed else 'is absent'}"
            )
        return "; ".join(parts)


def judge(found: dict[str, tuple[bool, bool]]) -> SourceTables:
    """Pure verdict over what exists: all-original, all-renamed, or anything else."""
    if all(o and not r for o, r in found.values()):
        return SourceTables.ORIGINAL
    if all(r and not o for o, r in found.values()):
        return SourceTables.RENAMED
    return SourceTables.AMBIGUOUS


async def inspect_source(config: Config) -> Inspection:
    """Which of the original and renamed tables exist on the source."""
    conn = await connect(config.source, "source")
    try:
        found = {}
        for table in config.move.tables:
            original = await table_exists(conn, config.move.database, table)
            renamed = await table_exists(conn, config.move.database, config.move.renamed(table))
            found[table] = (original, renamed)
        return Inspection(found, judge(found))
    finally:
        await close(conn)


async def current_position(conn: Any, flavor: Flavor) -> str:
    """The source's position now (after a rename we did not see answered: a safe over-estimate)."""
    row = await query_one(conn, position_sql(flavor))
    return str(row[0] if row else "").replace("\n", "")
