"""Warn (never refuse) when a long source transaction holds a moved table, or none can be seen.

Such a transaction would hold the cutover (look before you lock, blockers.py) until it ends; the
operator hears about it at the start rather than at the cutover. Not a problem that stops the
move: by the time the copy is done the transaction may long be over.
"""

from __future__ import annotations

import logging

from asyncmy.errors import MySQLError

from tablemover.blockers import detection_method, find_blockers, published
from tablemover.db import ACCESS_DENIED, error_code
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check


@check(Phase.TABLES, "long_transactions")
async def long_transactions(ctx: PreflightContext) -> list[str]:
    """Log a warning per long transaction on a moved table; return no problem."""
    move = ctx.config.move
    if ctx.resuming_past_cutover:
        return []
    try:
        method = await detection_method(ctx.source, ctx.source_info.flavor)
        found = await find_blockers(
            ctx.source, method, move.database, move.tables, float(move.cutover_lock_timeout_s)
        )
    except MySQLError as exc:
        if error_code(exc) not in ACCESS_DENIED:
            raise
        event(
            f"{ctx.source_address}: user {ctx.config.source.user!r} lacks the PROCESS privilege, so the "
            "cutover cannot look for transactions that would block its RENAME and relies on "
            "cutover_lock_timeout_s alone. GRANT PROCESS ON *.* to it for a cutover that never "
            "queues the application behind a RENAME.",
            logging.WARNING,
        )
        return []
    for blocker in published(found):  # another session's identity only when it holds a moved table
        event(
            "a long source transaction may hold a moved table; the cutover will wait for it to end",
            logging.WARNING,
            blocker=blocker,
            method=method,
        )
    return []
