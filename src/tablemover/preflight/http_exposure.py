"""Warn (never refuse) when [control] http listens beyond loopback.

/status and /metrics have no authentication: on a non-loopback address whoever reaches the port
reads the move's state. Some operators want exactly that (a Prometheus on another host), so it is a
warning in `check` and at start, not a refusal.
"""

from __future__ import annotations

import logging

from tablemover.http import is_loopback, parse_address
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check


def exposed_http(address: str) -> str | None:
    """The warning for ``address`` ("host:port"), or None when it is off or loopback only."""
    if not address:
        return None
    host, _ = parse_address(address)
    if host is not None and is_loopback(host):
        return None
    return (
        f"[control] http = {address!r} listens on {host or 'every interface'}, not only loopback: "
        "/status and /metrics have no authentication, so whoever reaches that port reads the move's "
        'state. Use "127.0.0.1:PORT" unless a firewall keeps others out.'
    )


@check(Phase.SERVERS, "http_exposure")
async def http_exposure(ctx: PreflightContext) -> list[str]:
    """Log the warning; return no problem."""
    warning = exposed_http(ctx.config.control.http)
    if warning:
        event(warning, logging.WARNING)
    return []
