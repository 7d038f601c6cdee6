"""Check: the source and the target are two different servers."""

from __future__ import annotations

from tablemover.db import ServerInfo
from tablemover.preflight import Phase, PreflightContext, check


def same_server_problems(source: ServerInfo, target: ServerInfo, source_at: str, target_at: str) -> list[str]:
    """A problem when ``source`` and ``target`` describe one server reached by two addresses."""
    if not source.same_server_as(target):
        return []
    if source.server_uuid:
        identity = f"server_uuid {source.server_uuid}"
    else:
        identity = (
            f"server_id {source.server_id}, hostname {source.hostname}, port {source.port}, "
            f"datadir {source.datadir}"
        )
    return [
        f"{source_at} and {target_at} are the same server ({identity}). A move copies tables to "
        "another cluster and renames the originals away; on one server it would rename the tables "
        "it is copying into. Point [target] host/port at the target cluster's primary."
    ]


@check(Phase.SERVERS, "same_server")
async def distinct_servers(ctx: PreflightContext) -> list[str]:
    """Refuse a target that is the source under another address."""
    return same_server_problems(ctx.source_info, ctx.target_info, ctx.source_address, ctx.target_address)
