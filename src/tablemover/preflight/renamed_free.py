"""Check: the names the cutover renames the source tables to are free.

Otherwise the cutover's RENAME TABLE fails at the worst moment, after the whole copy, and a resume
would find both names present and have to stop for an operator.
"""

from __future__ import annotations

from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.source_tables import table_type


@check(Phase.TABLES, "renamed_free")
async def renamed_names_free(ctx: PreflightContext) -> list[str]:
    """Refuse when a table already carries the renamed name of a moved table (before the cutover)."""
    if ctx.resuming_past_cutover:
        return []  # the renamed tables may be ours now
    move = ctx.config.move
    problems: list[str] = []
    for table in ctx.schemas:
        renamed = move.renamed(table)
        if await table_type(ctx.source, move.database, renamed) is not None:
            problems.append(
                f"{move.database}.{renamed} already exists on {ctx.source_address}; the cutover renames "
                f"{move.database}.{table} to that name. Drop or rename {move.database}.{renamed} (a leftover "
                "of an earlier move? `tablemover cleanup --drop-source` removes those), or choose another "
                "[move] renamed_table_format."
            )
    return problems
