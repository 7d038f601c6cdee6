"""Check: no foreign key points into or out of a moved table.

A foreign key cannot be kept across two clusters: after the cutover one end of it lives on the
target and no server enforces it any more. During the copy the target would also reject rows whose
parents have not arrived yet, since chunks and binlog events come in key order, not parents first.
"""

from __future__ import annotations

from dataclasses import dataclass

from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.sql import qualified, quote_ident


@dataclass(frozen=True)
class ForeignKey:
    """One foreign key constraint, child side first."""

    database: str
    table: str
    name: str
    columns: str  # comma list, for the message
    referenced_database: str
    referenced_table: str

    def describe(self) -> str:
        """``db.child.fk_name (col) -> db.parent``."""
        return (
            f"{self.database}.{self.table}.{self.name} ({self.columns}) -> "
            f"{self.referenced_database}.{self.referenced_table}"
        )

    def drop_sql(self) -> str:
        """The statement that removes it."""
        # Quoted with escaping: a crafted constraint name must not turn this into another statement.
        table = qualified(self.database, self.table)
        return f"ALTER TABLE {table} DROP FOREIGN KEY {quote_ident(self.name)};"


def foreign_key_problems(database: str, table: str, keys: list[ForeignKey]) -> list[str]:
    """A problem naming every foreign key of the moved table ``database.table`` and how to drop it."""
    if not keys:
        return []
    return [
        f"table {database}.{table} has foreign keys: {'; '.join(k.describe() for k in keys)}. tablemover "
        "refuses tables with foreign keys into or out of them: a foreign key cannot be kept across two "
        "clusters (after the cutover one end lives on the target and nothing enforces it), and the copy "
        "does not write parents before children. Drop them ("
        + " ".join(k.drop_sql() for k in keys)
        + ") or remove the table from [move] tables."
    ]


_FOREIGN_KEYS_SQL = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, "
    "GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR ', '), "
    "REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME "
    "FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND "
    "((TABLE_SCHEMA=%s AND TABLE_NAME=%s) OR (REFERENCED_TABLE_SCHEMA=%s AND REFERENCED_TABLE_NAME=%s)) "
    "GROUP BY TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME "
    "ORDER BY TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME"
)


@check(Phase.TABLES, "foreign_keys")
async def no_foreign_keys(ctx: PreflightContext) -> list[str]:
    """Refuse moved tables that are the child or the parent of a foreign key."""
    if ctx.resuming_past_cutover:
        return []  # the copy is over; refusing now would only leave the source renamed away
    problems: list[str] = []
    for table, schema in ctx.schemas.items():
        if not schema.foreign_keys:
            continue
        db, name = schema.database, schema.name
        rows = await query(ctx.source, _FOREIGN_KEYS_SQL, (db, name, db, name))
        keys = [ForeignKey(*(str(v) for v in r)) for r in rows]
        problems.extend(foreign_key_problems(db, table, keys))
    return problems
