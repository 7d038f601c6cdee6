"""Check: every moved table is InnoDB.

The read/apply race is closed by locking reads held until the chunk commits on the target (spec
rule 3), and the checkpoint commits with the data it describes; both need row locks and
transactions, which MyISAM, Aria, MEMORY and friends do not give.
"""

from __future__ import annotations

from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.sql import qualified

TRANSACTIONAL_ENGINES = frozenset({"INNODB"})


def engine_problems(database: str, table: str, engine: str | None, where: str) -> list[str]:
    """A problem when ``engine`` is not transactional."""
    if engine is not None and engine.upper() in TRANSACTIONAL_ENGINES:
        return []
    return [
        f"table {database}.{table} on {where} uses the {engine or 'unknown'} engine; tablemover needs "
        "InnoDB, because its locking chunk reads and its checkpoints rely on transactions and row locks. "
        f"Convert it (ALTER TABLE {qualified(database, table)} ENGINE=InnoDB) or remove it from "
        "[move] tables."
    ]


@check(Phase.TABLES, "engine")
async def transactional_engine(ctx: PreflightContext) -> list[str]:
    """Refuse non-InnoDB tables before the copy (after the cutover the copy is over)."""
    if ctx.resuming_past_cutover:
        return []
    problems: list[str] = []
    for table, schema in ctx.schemas.items():
        rows = await query(
            ctx.source,
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (schema.database, schema.name),
        )
        engine = str(rows[0][0]) if rows and rows[0][0] is not None else None
        problems.extend(engine_problems(schema.database, table, engine, ctx.source_address))
    return problems
