"""Check: the checkpoint a run would resume from is one the move wrote, and the source agrees.

Runs first among the checks that read the checkpoint's word (before the table checks, which accept
renamed source tables when the checkpoint says the RENAME may have happened). A history the state
machine could not have written, a row not written by the move's owner of its time, or a "renamed"
state the source contradicts (in the rollback window: a state the target contradicts, or a feed
checkpoint on the source the move did not write), is refused with exit 3 (``claims``): no later
check or phase acts on it.
"""

from __future__ import annotations

from tablemover.claims import check_feed, check_recorded, check_source_matches, check_target_matches
from tablemover.preflight import Phase, PreflightContext, check


@check(Phase.SERVERS, "checkpoint_claims")
async def checkpoint_claims(ctx: PreflightContext) -> list[str]:
    """Raise SafetyRefusal for a forged or contradicted checkpoint; no problem otherwise."""
    if ctx.checkpoint is None:
        return []
    await check_recorded(ctx.config, ctx.target, ctx.checkpoint_database)
    await check_source_matches(ctx.config, ctx.checkpoint.state)
    await check_target_matches(ctx.config, ctx.checkpoint.state)
    await check_feed(ctx.config, ctx.checkpoint, ctx.target, ctx.target_info.flavor)
    return []
