"""Check: on resume, the source still has every binlog event after the checkpoint's position.

A move stopped for longer than the source keeps its binlogs cannot resume: the changes in between
are gone, and streaming from a later point would silently skip them. That is not a preflight
mistake that a config fix repairs, and not a fault that a restart repairs, so it raises
:class:`BinlogPurged` (exit 3: systemd does not restart it) instead of returning a problem.
"""

from __future__ import annotations

from typing import Any

from tablemover import gtid
from tablemover.db import query, query_one
from tablemover.errors import BinlogPurged
from tablemover.flavor import Flavor
from tablemover.machine import State
from tablemover.preflight import Phase, PreflightContext, check

# The states from which `run` starts the binlog stream at the checkpoint's applied position.
STREAMING_STATES = frozenset(
    {State.PREPARED, State.COPYING, State.CUTOVER_STARTED, State.RENAMED, State.ABORTED}
)


def missing_ranges(applied: gtid.GtidPosition, oldest: gtid.GtidPosition) -> list[str]:
    """What the source no longer has: the parts of ``oldest`` (purged history) not in ``applied``.

    ``oldest`` is MariaDB's GTID list at the start of its oldest binlog, or MySQL's gtid_purged.
    Empty when the applied position covers everything that was purged.
    """
    if gtid.covers(applied, oldest):
        return []
    if isinstance(applied, gtid.MariaDBPosition) and isinstance(oldest, gtid.MariaDBPosition):
        out = []
        for purged in oldest.gtids:
            have = applied.get(purged.domain)
            if have is None or have.seq < purged.seq:
                start = (have.seq if have else 0) + 1
                out.append(f"domain {purged.domain}: seq {start} to {purged.seq}")
        return out
    return [f"{oldest} is purged; the move has applied only {applied or '(nothing)'}"]


async def oldest_retained(conn: Any, flavor: Flavor) -> gtid.GtidPosition:
    """The history the source has purged: its oldest binlog's GTID list, or MySQL's gtid_purged."""
    if flavor is Flavor.MYSQL:
        row = await query_one(conn, "SELECT @@global.gtid_purged")
        return gtid.parse_position(flavor, str(row[0] if row and row[0] else "").replace("\n", ""))
    logs = await query(conn, "SHOW BINARY LOGS")
    if not logs:
        return gtid.parse_position(flavor, "")
    # Each MariaDB binlog starts with a Gtid_list event: the last GTID of every domain written
    # before it, i.e. exactly what is gone once the binlogs before it are purged.
    for row in await query(conn, f"SHOW BINLOG EVENTS IN '{logs[0][0]}' LIMIT 4"):
        if str(row[2]) == "Gtid_list":
            return gtid.parse_position(flavor, str(row[5]).strip("[] "))
    return gtid.parse_position(flavor, "")


@check(Phase.SERVERS, "binlog_retained")
async def binlog_retained(ctx: PreflightContext) -> list[str]:
    """Refuse (exit 3) to resume a move whose applied position the source's binlogs no longer hold."""
    cp = ctx.checkpoint
    if cp is None or cp.state not in STREAMING_STATES:
        return []
    flavor = ctx.source_info.flavor
    applied = gtid.parse_position(flavor, cp.applied_gtid)
    missing = missing_ranges(applied, await oldest_retained(ctx.source, flavor))
    if missing:
        raise BinlogPurged(
            f"move {ctx.config.move.name!r} cannot resume: its checkpoint has applied the source's binlog "
            f"through {cp.applied_gtid or '(nothing)'}, but {ctx.source_address} has purged the binlogs "
            f"after that ({'; '.join(missing)}). Those changes cannot be replayed, so resuming would "
            "silently lose them. Start the move over: `tablemover discard -c FILE --yes`, then "
            "`tablemover run -c FILE`; and keep binlogs longer than a move may be stopped "
            "(binlog_expire_logs_seconds / expire_logs_days)."
        )
    return []
