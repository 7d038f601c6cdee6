"""Check: every moved table has a key to copy by and to match binlog rows on."""

from __future__ import annotations

from tablemover.preflight import Phase, PreflightContext, check
from tablemover.schema import TableSchema


def chunk_key_problems(schema: TableSchema, configured_name: str) -> list[str]:
    """A problem when the table has neither a primary key nor a NOT NULL unique key."""
    if schema.chunk_key is not None:
        return []
    return [
        f"table {schema.database}.{configured_name} has no primary or unique key: add one or remove it "
        "from [move] tables. tablemover copies in key order and finds binlog rows on the target by "
        "that key; a unique key qualifies only when all its columns are NOT NULL and it is not a "
        "prefix index."
    ]


@check(Phase.TABLES, "chunk_key")
async def chunk_keys(ctx: PreflightContext) -> list[str]:
    """Refuse tables without a usable key (checked on resume too: the applier needs it)."""
    return [p for table, schema in ctx.schemas.items() for p in chunk_key_problems(schema, table)]
