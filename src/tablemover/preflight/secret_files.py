"""Check: the password files are not writable by others (refused) nor readable beyond the service."""

from __future__ import annotations

import logging

from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.secretfiles import exposure


@check(Phase.SERVERS, "secret_files")
async def secret_files(ctx: PreflightContext) -> list[str]:
    """Refuse password files others may write; warn about those others may read."""
    problems: list[str] = []
    for role, server in (("source", ctx.config.source), ("target", ctx.config.target)):
        if not server.password_file:
            continue
        found = exposure(server.password_file, f"[{role}] password_file")
        for warning in found.warnings:
            event(warning, logging.WARNING)
        problems.extend(found.refusals)
    return problems
