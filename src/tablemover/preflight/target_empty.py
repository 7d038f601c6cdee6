"""Check: tablemover does not copy into target tables it did not create.

A target table that already has rows and no checkpoint of this move belongs to someone else (or to an
earlier attempt whose checkpoint is gone): copying into it would mix its rows with ours. An existing
empty table is accepted. With a checkpoint, the target tables are ours and resume continues there.
"""

from __future__ import annotations

from tablemover.checkpoint import TABLE as CHECKPOINT_TABLE
from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.source_tables import BASE_TABLE, table_type
from tablemover.sql import qualified


@check(Phase.TABLES, "target_empty")
async def target_tables_unused(ctx: PreflightContext) -> list[str]:
    """Refuse target tables that exist with rows when this move has no checkpoint."""
    if ctx.checkpoint is not None:
        return []
    move = ctx.config.move
    db = move.effective_target_database
    problems: list[str] = []
    for table in move.tables:
        kind = await table_type(ctx.target, db, table)
        if kind is None:
            continue
        if kind != BASE_TABLE:
            problems.append(
                f"{db}.{table} on {ctx.target_address} is a {kind.lower()}; tablemover must create the table "
                f"there. Drop the {kind.lower()} or choose another [move] target_database."
            )
            continue
        if await query(ctx.target, f"SELECT 1 FROM {qualified(db, table)} LIMIT 1"):
            problems.append(
                f"table {db}.{table} already exists on {ctx.target_address} and has rows, and move "
                f"{move.name!r} has no checkpoint in {ctx.checkpoint_database}.{CHECKPOINT_TABLE}; "
                "tablemover will not copy into a table it did not fill. If it is left over from an "
                "earlier attempt, drop or empty it; "
                "otherwise choose another [move] target_database (or check [move] name, if this move "
                "started under another name)."
            )
    return problems
