"""Check: no moved table has triggers.

The target tables are created without them, so they would not fire there: neither for the rows the
copy and the binlog apply write, nor for the application's writes after the cutover, and whatever
they maintain would silently diverge.
"""

from __future__ import annotations

from tablemover.preflight import Phase, PreflightContext, check
from tablemover.sql import qualified


def trigger_problems(database: str, table: str, triggers: tuple[str, ...]) -> list[str]:
    """A problem naming the triggers of ``database.table`` and how to drop them."""
    if not triggers:
        return []
    # Quoted with escaping: a crafted trigger name must not turn the suggested statement into another.
    drops = " ".join(f"DROP TRIGGER {qualified(database, t)};" for t in triggers)
    return [
        f"table {database}.{table} has triggers ({', '.join(triggers)}); tablemover refuses tables with "
        "triggers: they are not created on the target and would not fire there, neither for the rows the "
        "copy and the binlog apply write nor for the application's writes after the cutover, so what they "
        f"maintain would silently diverge. Drop them ({drops}) and move their logic into the application, "
        "or remove the table from [move] tables."
    ]


@check(Phase.TABLES, "triggers")
async def no_triggers(ctx: PreflightContext) -> list[str]:
    """Refuse moved tables that have triggers."""
    if ctx.resuming_past_cutover:
        return []  # the copy is over; refusing now would only leave the source renamed away
    problems: list[str] = []
    for table, schema in ctx.schemas.items():
        problems.extend(trigger_problems(schema.database, table, schema.triggers))
    return problems
