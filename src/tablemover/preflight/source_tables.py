"""Check: every moved table exists on the source as a base table; inspect it for the later checks.

When the checkpoint says the cutover may have renamed the tables already, a table may be found under
its renamed name instead. Then either name is accepted and neither missing is an error here: the
cutover's resume logic inspects the source itself and decides (or refuses with exit code 3).
"""

from __future__ import annotations

from typing import Any

from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.names import case_hint, same_but_case
from tablemover.schema import inspect_table

BASE_TABLE = "BASE TABLE"


async def table_type(conn: Any, database: str, table: str) -> str | None:
    """``BASE TABLE``, ``VIEW``, ``SEQUENCE``... or None when nothing of that name exists."""
    rows = await query(
        conn,
        "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, table),
    )
    return str(rows[0][0]) if rows else None


async def schema_exists(conn: Any, database: str) -> bool:
    """Whether the schema exists (and is visible to the user)."""
    rows = await query(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (database,))
    return bool(rows)


@check(Phase.TABLES, "source_tables")
async def source_tables(ctx: PreflightContext) -> list[str]:
    """Find and inspect each moved table; fills ``ctx.schemas``."""
    move = ctx.config.move
    db = move.database
    if not await schema_exists(ctx.source, db):
        return [
            f"{ctx.source_address}: database {db} does not exist (or the user {ctx.config.source.user!r} "
            "has no privilege on it). Fix [move] database." + case_hint(await same_but_case(ctx.source, db))
        ]
    problems: list[str] = []
    for table in move.tables:
        name = table
        kind = await table_type(ctx.source, db, table)
        if ctx.resuming_past_cutover and kind != BASE_TABLE:
            renamed_kind = await table_type(ctx.source, db, move.renamed(table))
            if renamed_kind == BASE_TABLE:
                name, kind = move.renamed(table), renamed_kind
            elif kind is None:
                continue
        if kind is None:
            problems.append(
                f"table {db}.{table} does not exist on {ctx.source_address}. "
                "Create it, fix its name, or remove it from [move] tables."
                + case_hint(await same_but_case(ctx.source, db, table))
            )
        elif kind != BASE_TABLE:
            problems.append(
                f"{db}.{table} on {ctx.source_address} is a {kind.lower()}, not a table; only base tables "
                "can be moved. Remove it from [move] tables (and recreate it on the target yourself)."
            )
        else:
            ctx.schemas[table] = await inspect_table(ctx.source, db, name)
    return problems
