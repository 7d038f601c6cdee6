"""Check: the binlog client's server_id is not used by the source, the target or another replica.

Two binlog clients registered with one server_id make the source drop the older connection each
time the other connects, so two moves (or a move and a real replica) would keep kicking each other
off. Our client reports ``tablemover:<move>`` as its host, so its own registration from a killed
run (which lingers until the source notices) is told apart from somebody else's.
"""

from __future__ import annotations

import logging

from asyncmy.errors import MySQLError

from tablemover.db import query
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check


def clashes(server_id: int, own_host: str, registered: list[tuple[int, str]]) -> list[str]:
    """Hosts of other registrations with ``server_id`` in SHOW REPLICA HOSTS rows (id, host)."""
    return [host or "(no host reported)" for sid, host in registered if sid == server_id and host != own_host]


@check(Phase.SERVERS, "server_id")
async def server_id_free(ctx: PreflightContext) -> list[str]:
    """Refuse a binlog client server_id that something else already uses."""
    move = ctx.config.move
    ours = move.effective_replica_server_id
    fix = (
        f"Set [move] replica_server_id to an id that no server and no replica of the source uses "
        f"(now {ours}{'' if move.replica_server_id else ', derived from the move'})."
    )
    problems = []
    for info, where in ((ctx.source_info, ctx.source_address), (ctx.target_info, ctx.target_address)):
        if info.server_id == ours:
            problems.append(f"{where} has server_id {ours}, the id our binlog client would use. {fix}")
    try:
        rows = await query(ctx.source, "SHOW SLAVE HOSTS")
    except MySQLError as exc:
        # Needs REPLICATION MASTER ADMIN on MariaDB; without it the clash is not visible to us.
        event("cannot list the source's replicas; server_id clash not checked", logging.DEBUG, error=str(exc))
        return problems
    others = clashes(ours, move.replica_host_tag, [(int(r[0]), str(r[1] or "")) for r in rows])
    if others:
        problems.append(
            f"{ctx.source_address}: a replica or another binlog client ({', '.join(others)}) is registered "
            f"with server_id {ours}, which this move's binlog client would use; each would keep "
            f"disconnecting the other. {fix}"
        )
    return problems
