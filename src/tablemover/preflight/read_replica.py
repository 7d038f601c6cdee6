"""Check: ``[replica]``, when configured, is a replica the move can read rows and the binlog from.

The judgements are :mod:`tablemover.readreplica`'s, shared with the probe every attempt makes:
the replica replicates from ``[source]`` with GTID, unfiltered and undelayed, is not the target,
writes what it replicates to a ROW/FULL binlog (``log_slave_updates``) and commits in order. A
configuration problem is exit 2 on a new move and on a resume alike: no attempt could read there.

Its *state* (a thread stopped, lag past ``replica_max_lag_s``, unreachable) differs by moment. A
new move refuses to start on a replica that cannot be read now, so the operator learns it before
anything is created. A resumed move only warns: the move is under way (its source tables may be
renamed away), and every attempt waits for the replica with the reason in status, or falls back to
the primary with ``replica_fallback = "source"``; refusing to start would only stall it harder.

The replica's user must hold what reading there needs (:func:`~.grant_plan.replica_needs`: the
binlog stream and positions, SHOW SLAVE STATUS, SELECT on the moved tables), checked as the source's
and target's users are, with the GRANTs that fix it.

The moved tables' definitions on the replica are compared in :mod:`.replica_definition`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from asyncmy.errors import MySQLError

from tablemover.db import ConnectError, close, connect, server_info
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.grant_plan import Side, replica_needs
from tablemover.preflight.privileges import server_privilege_problems
from tablemover.readreplica import (
    Identity,
    configuration_problems,
    first_line,
    identity_problems,
    read_variables,
    state_problem,
)
from tablemover.replicas import slave_status_row
from tablemover.tls import TlsSetupError

__all__ = ["close_replica", "open_replica", "replica_at", "replica_fitness"]


def replica_at(ctx: PreflightContext) -> str:
    """``replica HOST:PORT`` for messages."""
    assert ctx.config.replica is not None
    return f"replica {ctx.config.replica.address}"


async def open_replica(ctx: PreflightContext) -> tuple[Any, str]:
    """A connection to ``[replica]``, or None and why not."""
    assert ctx.config.replica is not None
    try:
        return await connect(ctx.config.replica, "replica", connection="preflight"), ""
    except (ConnectError, TlsSetupError, OSError) as exc:
        return None, first_line(exc)


async def close_replica(conn: Any) -> None:
    """Close a connection :func:`open_replica` opened, even while cancelled."""
    with anyio.CancelScope(shield=True):
        await close(conn)


@check(Phase.SERVERS, "read_replica")
async def replica_fitness(ctx: PreflightContext) -> list[str]:
    """Refuse a ``[replica]`` unfit to read from (a new move: also one that cannot be read now)."""
    if ctx.config.replica is None:
        return []
    at = replica_at(ctx)
    new_move = ctx.checkpoint is None
    conn, unreachable = await open_replica(ctx)
    if conn is None:
        return _state(ctx, new_move, f"{at} cannot be reached: {unreachable}")
    source = Identity(ctx.source_info.server_id, ctx.source_info.server_uuid or "")
    target = Identity(ctx.target_info.server_id, ctx.target_info.server_uuid or "")
    try:
        variables = await read_variables(conn)
        who = identity_problems(variables, source, target)
        if who:
            # Not a replica at all: that is the answer, whatever the user may read there.
            return [f"{at} {problem}." for problem in who]
        info = await server_info(conn)
        needs = replica_needs(ctx.config.move, info.version)
        missing = await server_privilege_problems(
            conn, info, at, needs, Side.SOURCE, [ctx.config.move.database]
        )
        if missing:
            return missing
        try:
            slave_status = await slave_status_row(conn)
        except MySQLError as exc:
            return [
                f"{at}: user {ctx.config.replica.user!r} cannot read the replication status "
                f"({first_line(exc)}); GRANT SLAVE MONITOR ON *.* TO it (MySQL: REPLICATION CLIENT)"
            ]
    finally:
        await close_replica(conn)
    wrong = configuration_problems(ctx.source_info.flavor, variables, slave_status, source, target)
    if wrong:
        return [f"{at} {problem}." for problem in wrong]
    now = state_problem(slave_status, ctx.config.move.replica_max_lag_s)
    if now:
        return _state(
            ctx,
            new_move,
            f"{at} cannot be read from now: {now}. Start its replication (START SLAVE) and let it "
            "catch up, or drop the [replica] section to read from [source]",
        )
    return []


def _state(ctx: PreflightContext, new_move: bool, problem: str) -> list[str]:
    """A problem of the replica's current state: refuse a new move; warn and go on for a resume."""
    if new_move:
        return [problem + "."]
    action = (
        "reads from [source] after replica_fallback_after_s"
        if ctx.config.move.replica_fallback == "source"
        else "waits for it, with the reason in status"
    )
    event(f"{problem}; the move resumes and {action}", logging.WARNING, check="read_replica")
    return []
