"""The AUTO_INCREMENT counter, carried over at the cutover (and back at a rollback).

The target's tables are created without the source's ``AUTO_INCREMENT=`` option and filled with the
copied rows, so their counter ends at the highest id copied plus one. The source's counter can be
higher: rows with the top ids were deleted (or inserts rolled back) before or during the move. After
the switch the application would then be handed ids the source had already handed out, which
whatever kept them (logs, caches, other systems, a rollback back to the source) would take for the
old rows. gh-ost carries the counter over for this reason.

So once the last source write is on the target (DRAINED) and before the application hears of the
switch (the on-success hook), each target table's counter is raised to at least the renamed source
table's; in the rollback direction, after ROLLBACK_DRAINED and before the source tables get their
names back, each source table's counter is raised to at least the rolled-back target table's.

A moved table found under none of its names at that point (on either server) is refused, exit 3,
before any hook: the move's own RENAMEs put each table where it looks, so a missing one was renamed
or dropped by someone else, and the operator must decide before the application is switched.

Crash safety comes from reading, not from recording: both counters are read every time, and the
``ALTER TABLE ... AUTO_INCREMENT`` is issued only where the counter is lower, because on InnoDB it
sets the counter to the given value (or the column's maximum plus one), which may *lower* it. A
restart in DRAINED or ROLLBACK_DRAINED therefore does it again, or finds nothing to do.

The target's ALTER is DDL in the target's binlog, which a rollback window's reverse feed reads and
refuses DDL on a moved table in. It happens before the reverse feed's start position is read (the
first success-hook attempt records it), so the feed never reads it; and it carries the reverse
feed's own-statement tag, so even a re-issued one (after an upgrade mid-move) is recognised as ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tablemover import faults
from tablemover.config import Config, ServerSection
from tablemover.db import close, connect, execute, query
from tablemover.errors import SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.schema import table_exists
from tablemover.sql import qualified
from tablemover.window import rollback_comment


@dataclass(frozen=True)
class Carry:
    """One table's counters: ``value`` is what the destination's counter is raised to, None if nothing."""

    table: str
    from_counter: int | None  # None: the table has no AUTO_INCREMENT column
    to_counter: int | None

    @property
    def value(self) -> int | None:
        """The counter to set on the destination, or None when it is already at least the origin's."""
        return raise_to(self.from_counter, self.to_counter)


def raise_to(origin: int | None, destination: int | None) -> int | None:
    """The value to raise the destination's counter to, or None: never lowers it, never invents one.

    None when either table has no AUTO_INCREMENT column (information_schema says NULL) or when the
    destination's counter is already at least the origin's.
    """
    if origin is None or destination is None or destination >= origin:
        return None
    return origin


def alter_statement(database: str, table: str, value: int, tag: str) -> str:
    """``ALTER TABLE db.t AUTO_INCREMENT = n``, tagged with a comment that names the move."""
    safe_tag = tag.replace("*/", "* /")
    return f"ALTER /* {safe_tag} */ TABLE {qualified(database, table)} AUTO_INCREMENT = {int(value)}"


def forward_tag(move_name: str) -> str:
    """The target ALTER's comment: contains the reverse feed's own-statement tag (``window.py``)."""
    return rollback_comment(move_name, nonce="") + "auto-increment"


def back_tag(move_name: str) -> str:
    """The source ALTER's comment in the rollback direction (no feed reads the source by then)."""
    return f"tablemover auto-increment move={move_name}"


async def read_counter(conn: Any, flavor: Flavor, database: str, table: str) -> int | None:
    """The table's next AUTO_INCREMENT value, None when it has no such column.

    information_schema.TABLES.AUTO_INCREMENT asks the engine on MariaDB. MySQL 8 answers from cached
    statistics (information_schema_stats_expiry, a day by default) unless the session asks for
    fresh ones, which :func:`_session` does.
    """
    rows = await query(
        conn,
        "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, table),
    )
    if not rows or rows[0][0] is None:
        return None
    return int(rows[0][0])


async def _session(server: ServerSection, role: str, flavor: Flavor, lock_timeout_s: int) -> Any:
    conn = await connect(server, role, connection="autoinc")
    try:
        if flavor is Flavor.MYSQL:
            await execute(conn, "SET SESSION information_schema_stats_expiry = 0")
        # The ALTER's metadata lock: a bounded wait, like the RENAME's, so a long transaction on the
        # table cannot stall every query behind it (a timeout is a transient error: retried).
        await execute(conn, f"SET SESSION lock_wait_timeout = {int(lock_timeout_s)}")
    except BaseException:
        await close(conn)
        raise
    return conn


async def _first_present(conn: Any, database: str, names: Sequence[str]) -> str | None:
    for name in names:
        if await table_exists(conn, database, name):
            return name
    return None


Side = tuple[str, str, Sequence[str], str | None]  # role, schema, names looked for, name found


def missing_message(config: Config, when: str, table: str, origin: Side, destination: Side) -> str:
    """The refusal when a moved table is under none of its names at the carry-over (pure)."""
    missing = [
        f"the {role} has none of {', '.join(f'{db}.{n}' for n in names)}"
        for role, db, names, found in (origin, destination)
        if found is None
    ]
    return (
        f"refusing to go on with move {config.move.name!r} in {when}: the AUTO_INCREMENT counter of "
        f"{table} cannot be carried over because {' and '.join(missing)}. The move renamed nothing "
        "there since; someone renamed or dropped the table. Check the tables on both servers (SHOW "
        "TABLES, the server's general or audit log for a RENAME or DROP), put the table back under "
        "the name the move gave it, and run again. Nothing was switched."
    )


async def _carry(
    config: Config,
    origin: tuple[ServerSection, str, Flavor, str],
    destination: tuple[ServerSection, str, Flavor, str],
    pairs: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    tag: str,
    when: str,
) -> list[Carry]:
    """For each (table, origin names, destination names): raise the destination's counter.

    A table found under none of its names on either side is refused (exit 3) before any hook:
    the move's own RENAMEs put every one of them there, so a missing one was renamed or dropped
    by someone else, and switching the application over regardless would hand out ids the
    other side already used, or point it at a table that is not there.
    """
    lock_timeout_s = config.move.cutover_lock_timeout_s
    o_server, o_role, o_flavor, o_db = origin
    d_server, d_role, d_flavor, d_db = destination
    o_conn = await _session(o_server, o_role, o_flavor, lock_timeout_s)
    try:
        d_conn = await _session(d_server, d_role, d_flavor, lock_timeout_s)
        try:
            done: list[Carry] = []
            for table, o_names, d_names in pairs:
                o_name = await _first_present(o_conn, o_db, o_names)
                d_name = await _first_present(d_conn, d_db, d_names)
                if o_name is None or d_name is None:
                    raise SafetyRefusal(
                        missing_message(
                            config,
                            when,
                            table,
                            (o_role, o_db, o_names, o_name),
                            (d_role, d_db, d_names, d_name),
                        )
                    )
                carry = Carry(
                    table,
                    await read_counter(o_conn, o_flavor, o_db, o_name),
                    await read_counter(d_conn, d_flavor, d_db, d_name),
                )
                if carry.value is not None:
                    await execute(d_conn, alter_statement(d_db, d_name, carry.value, tag))
                    faults.hit("autoinc.after_alter")
                    event(
                        "AUTO_INCREMENT carried over",
                        table=f"{d_db}.{d_name}",
                        origin=f"{o_db}.{o_name}",
                        before=carry.to_counter,
                        after=carry.value,
                    )
                done.append(carry)
            return done
        finally:
            await close(d_conn)
    finally:
        await close(o_conn)


async def carry_forward(config: Config, source_flavor: Flavor, target_flavor: Flavor) -> list[Carry]:
    """DRAINED, before the on-success hook: each target table's counter >= its renamed source table's."""
    move = config.move
    return await _carry(
        config,
        (config.source, "source", source_flavor, move.database),
        (config.target, "target", target_flavor, move.effective_target_database),
        # The source table is renamed by now; its original name only if a resume finds it so.
        [(t, (move.renamed(t), t), (t,)) for t in move.tables],
        forward_tag(move.name),
        "DRAINED, before the on-success hook (the application has not been switched to the target)",
    )


async def carry_back(config: Config, source_flavor: Flavor, target_flavor: Flavor) -> list[Carry]:
    """ROLLBACK_DRAINED, before the source tables get their names back: each source table's counter
    >= its rolled-back target table's (the source's original name if a resume finds it restored)."""
    move = config.move
    return await _carry(
        config,
        (config.target, "target", target_flavor, move.effective_target_database),
        (config.source, "source", source_flavor, move.database),
        [(t, (move.rolledback(t),), (move.renamed(t), t)) for t in move.tables],
        back_tag(move.name),
        "ROLLBACK_DRAINED, before the source tables get their names back (the application has not "
        "been switched back to the source)",
    )
