"""Check: with a rollback window, the target's binlog streams back to the source, so it must be
one tablemover can stream (the same rules as the source's)."""

from __future__ import annotations

from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.binlog import binlog_problems


@check(Phase.SERVERS, "target_binlog")
async def target_binlog(ctx: PreflightContext) -> list[str]:
    """Refuse a rollback window on a target whose binlog is off, not ROW/FULL, or without GTIDs."""
    if ctx.config.move.rollback_window_s <= 0:
        return []
    where = f"{ctx.target_address} (rollback_window_s is set: its binlog streams back to the source)"
    return binlog_problems(ctx.target_info, where)
