"""Check: report how each server connection is protected; warn about plain text over a network.

The refusals happen earlier, when preflight connects (tablemover.tls): an unverifiable or
mismatched certificate, an unreadable key file or a server without TLS under a mode that requires
it never gets this far. What is left to say is what the connections ended up with: encrypted or
not, the TLS version and cipher, and whether the certificate was verified, per server, and a
warning where ``tls_mode = "preferred"`` fell back to plain text to a host that is not this one.
"""

from __future__ import annotations

import logging

from tablemover import tls
from tablemover.config import ServerSection
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check


def plain_text_warning(server: ServerSection, role: str, state: tls.TlsState) -> str | None:
    """The warning for a TCP connection to another host that ended up unencrypted, if any."""
    if state.encrypted or state.transport != "tcp" or tls.is_loopback(server.host):
        return None
    if server.tls_mode == "disabled":
        cause = 'tls_mode = "disabled"'
    else:
        cause = f'the server does not offer TLS and tls_mode = "{server.tls_mode}" allowed plain text'
    return (
        f"{role} {server.address}: the connection is NOT encrypted ({cause}); rows, binlog events and "
        f"the password cross the network in clear text. Enable TLS on the server and set tls_mode = "
        f'"verify_identity" (or at least "required") in [{role}].'
    )


@check(Phase.SERVERS, "tls")
async def tls_report(ctx: PreflightContext) -> list[str]:
    """Log each server's TLS state; never a problem by itself (the modes refuse at connect)."""
    for role, server, conn in (
        ("source", ctx.config.source, ctx.source),
        ("target", ctx.config.target, ctx.target),
    ):
        state = tls.asyncmy_state(server, conn)
        event(
            f"preflight: {role} connection {state.describe()}",
            server=server.address,
            tls_mode=state.mode,
            encrypted=state.encrypted,
            tls_version=state.version,
            cipher=state.cipher,
            verified=state.verified,
        )
        warning = plain_text_warning(server, role, state)
        if warning is not None:
            event(warning, logging.WARNING, server=server.address)
    return []
