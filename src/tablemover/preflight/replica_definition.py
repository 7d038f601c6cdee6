"""Check: the moved tables are defined on ``[replica]`` as on ``[source]``.

Rows are read on the replica and the target tables are created from the primary's definition, so a
replica whose table differs (a column added there only, a drift left by a failed migration, a table
a filter kept away) would copy values that do not fit, or none. Past the RENAME the copy is over and
the check stands down. Reachability and fitness are :mod:`.read_replica`'s.
"""

from __future__ import annotations

import logging

from asyncmy.errors import MySQLError

from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.read_replica import close_replica, open_replica, replica_at
from tablemover.preflight.target_definition import MAX_DIFFERENCES, definition_differences, read_definition
from tablemover.readreplica import first_line
from tablemover.schema import table_exists

__all__ = ["replica_definition"]


@check(Phase.TABLES, "read_replica_definition")
async def replica_definition(ctx: PreflightContext) -> list[str]:
    """Refuse moved tables whose definition on ``[replica]`` differs from ``[source]``'s."""
    if ctx.config.replica is None or ctx.resuming_past_cutover:
        return []
    at = replica_at(ctx)
    conn, unreachable = await open_replica(ctx)
    if conn is None:
        # SERVERS has judged reachability (refused a new move, warned on a resume).
        event(f"{at}: definitions not compared, it cannot be reached: {unreachable}", logging.WARNING)
        return []
    problems: list[str] = []
    try:
        for table in ctx.config.move.tables:
            schema = ctx.schemas.get(table)
            if schema is None:
                continue  # missing or not a table on the source: source_tables has said so
            if not await table_exists(conn, schema.database, schema.name):
                problems.append(
                    f"table {schema.qualified_name} does not exist on {at}: the replica does not hold "
                    "what [source] holds (a filter, a broken or lagging replica); read from a replica "
                    "that does, or drop the [replica] section"
                )
                continue
            primary = await read_definition(ctx.source, schema.database, schema.name)
            replica = await read_definition(conn, schema.database, schema.name)
            differences = definition_differences(primary, replica, names=("primary", "replica"))
            if differences:
                problems.append(
                    f"table {schema.qualified_name} is defined differently on {at} than on "
                    f"{ctx.source_address}: {'; '.join(differences[:MAX_DIFFERENCES])}. Rows are read on the "
                    "replica and the target is created from [source]'s definition, so values could "
                    "change; bring the replica's table in line with [source], or drop [replica]"
                )
    except MySQLError as exc:
        problems.append(f"{at}: cannot read the moved tables' definitions ({first_line(exc)})")
    finally:
        await close_replica(conn)
    return problems
