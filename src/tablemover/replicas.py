"""The target's replicas (issue #27): a heartbeat the daemon writes on the target, the lag each
watched replica shows against it, and the throttle reason that holds the copy while one lags.

Lag is measured, not guessed: the daemon writes ``UTC_TIMESTAMP(6)`` of the target into
``<state_database>._tablemover_heartbeat`` every ``heartbeat_interval_ms``; a replica's lag is the
target's clock *now* (read from the target itself) minus the newest heartbeat the replica holds.
Both times come from the target's clock, so a skew between the replica's clock and the target's
cancels (gh-ost's heartbeat). A replica that cannot be read, or whose IO or SQL thread is stopped,
counts as lagging (fail closed) and says why.

:func:`replica_reason` and :func:`replica_server` are pure; the two loops do the I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from asyncmy.errors import MySQLError

from tablemover import gtid
from tablemover.config import Config, ServerSection, ThrottleSection
from tablemover.db import close, connect, current_position, error_code, execute, query, query_one
from tablemover.errors import PreflightError, SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.log import event

if TYPE_CHECKING:
    from tablemover.status import Board

TABLE = "_tablemover_heartbeat"
SIDE = "target"
Side = Literal["target", "source"]
WAIT_POLL_S = 0.1  # how often the cutover's wait reads the replicas' positions
ER_BAD_DB, ER_NO_SUCH_TABLE = 1049, 1146


@dataclass(frozen=True)
class ReplicaLag:
    """What one watched replica shows: its lag in seconds, or None with why it could not be read."""

    lag_s: float | None
    problem: str = ""  # "" when lag_s is a measured lag
    # "" for the heartbeat; "Seconds_Behind_Master" when the heartbeat could not be read yet and
    # the replica's own figure stands in for it (labelled as such in the reason and status).
    fallback: str = ""

    def over(self, limit_s: float) -> bool:
        """Whether this replica must hold the copy (unmeasurable counts as over: fail closed)."""
        return self.lag_s is None or bool(self.problem) or self.lag_s > limit_s


def replica_server(target: ServerSection, address: str) -> ServerSection:
    """The connection settings of replica ``address`` ("host:port"): its side's credentials and TLS."""
    host, _, port = address.rpartition(":")
    return target.model_copy(update={"host": host, "port": int(port), "socket": ""})


def watched(limits: ThrottleSection, side: Side) -> list[str]:
    """The replicas ``[throttle]`` watches on ``side``."""
    return list(limits.target_replicas if side == "target" else limits.source_replicas)


def side_server(config: Config, side: Side) -> ServerSection:
    """The server whose replicas ``side`` names (and whose clock the heartbeat uses)."""
    return config.target if side == "target" else config.source


def replica_reason(limit_s: float, lags: dict[str, ReplicaLag], side: Side = "target") -> str:
    """Why the copy must wait for a replica, "" when none holds it. Pure.

    Names the worst replica (an unreadable one first, then the most behind) and its lag or problem.
    """
    holding = {name: lag for name, lag in lags.items() if lag.over(limit_s)}
    if not holding:
        return ""
    name, worst = max(holding.items(), key=lambda kv: float("inf") if kv[1].lag_s is None else kv[1].lag_s)
    if worst.problem:
        return f"{side} replica {name}: {worst.problem}"
    assert worst.lag_s is not None
    by = f" ({worst.fallback}, fallback: no heartbeat yet)" if worst.fallback else ""
    return f"{side} replica {name} lag {worst.lag_s:.2f} s{by} > max_replica_lag_s {limit_s}"


def heartbeat_ddl(state_db: str) -> str:
    """The heartbeat table: one row per move and side, the writer's UTC clock at its last beat."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{state_db}`.`{TABLE}` ("
        " move VARCHAR(64) NOT NULL, side VARCHAR(16) NOT NULL, beat DATETIME(6) NOT NULL,"
        " PRIMARY KEY (move, side)) ENGINE=InnoDB"
    )


def heartbeat_write_sql(state_db: str) -> str:
    """This move's beat: one row per move and side, replaced (a primary-key write)."""
    return f"REPLACE INTO `{state_db}`.`{TABLE}` (move, side, beat) VALUES (%s, %s, UTC_TIMESTAMP(6))"


def heartbeat_read_sql(state_db: str) -> str:
    """The newest beat a replica holds of this move (a primary-key lookup)."""
    return f"SELECT beat FROM `{state_db}`.`{TABLE}` WHERE move = %s AND side = %s"


def lag_seconds(writer_now: dt.datetime, beat: dt.datetime) -> float:
    """The writer's clock now minus the newest beat the replica holds (never negative). Pure."""
    return max((writer_now - beat).total_seconds(), 0.0)


# MySQL 8.4 removed SHOW SLAVE STATUS; SHOW REPLICA STATUS names the same columns after the
# source/replica wording (8.0.22+). Everything here reads the MariaDB/older names.
REPLICA_COLUMNS = {
    "Source_Host": "Master_Host",
    "Source_Port": "Master_Port",
    "Source_Server_Id": "Master_Server_Id",
    "Replica_IO_Running": "Slave_IO_Running",
    "Replica_SQL_Running": "Slave_SQL_Running",
    "Seconds_Behind_Source": "Seconds_Behind_Master",
}
ER_PARSE = 1064  # SHOW SLAVE STATUS on MySQL 8.4 (removed there)
MAX_CHAIN = 8  # hops `check` follows from a watched replica up to its side


def status_columns(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``SHOW SLAVE STATUS`` / ``SHOW REPLICA STATUS`` row under the MariaDB column names. Pure."""
    if row is None:
        return None
    return {REPLICA_COLUMNS.get(name, name): value for name, value in row.items()}


def fallback_lag(slave_status: dict[str, Any] | None) -> float | None:
    """``Seconds_Behind_Master`` (or ``_Source``) when the replica reports one, else None. Pure.

    Only a fallback while the heartbeat cannot be read on the replica yet: it is whole seconds, and
    it measures the SQL thread against the relay log, not against the side's clock."""
    status = status_columns(slave_status) or {}
    if int(status.get("SQL_Delay") or 0):
        # A delayed replica (MASTER_DELAY) reports a small figure while it holds back whole
        # seconds of changes: its own figure is no fallback, only the heartbeat measures it.
        return None
    value = status.get("Seconds_Behind_Master")
    return None if value is None else float(value)


def thread_problem(slave_status: dict[str, Any] | None) -> str:
    """Why a replica's ``SHOW SLAVE STATUS`` row says it does not replicate, "" when it does. Pure."""
    if slave_status is None:
        return "not a replica (SHOW SLAVE STATUS is empty)"
    slave_status = status_columns(slave_status) or {}
    for thread in ("Slave_IO_Running", "Slave_SQL_Running"):
        state = str(slave_status.get(thread, ""))
        if state != "Yes":
            error = slave_status.get("Last_IO_Error" if "IO" in thread else "Last_SQL_Error") or ""
            return f"{thread.removeprefix('Slave_').replace('_Running', '')} thread {state or 'unknown'}" + (
                f" ({error})" if error else ""
            )
    return ""


async def write_heartbeats(
    config: Config,
    limits: Callable[[], ThrottleSection] | None = None,
    side: Side = "target",
    state_db: str = "",
) -> None:
    """Write this move's heartbeat on ``side`` until cancelled, while that side's replicas are watched.

    ``limits`` gives the current ``[throttle]`` (SIGHUP replaces it): with no replica watched
    nothing is written, so a move without replicas adds no transactions to the side's binlog. The
    heartbeat lives in ``state_db`` (the move's state schema unless given: on the source, the
    schema the reverse feed keeps its checkpoint in).
    """
    current = limits or (lambda: config.throttle)
    state_db = state_db or config.move.state_database
    sql = heartbeat_write_sql(state_db)
    conn: Any = None
    try:
        while True:
            if watched(current(), side):
                if conn is None:
                    conn = await connect(side_server(config, side), side, connection="heartbeat")
                    await execute(conn, f"CREATE DATABASE IF NOT EXISTS `{state_db}`")
                    await execute(conn, heartbeat_ddl(state_db))
                await execute(conn, sql, (config.move.name, side))
            await anyio.sleep(current().heartbeat_interval_ms / 1000)
    finally:
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await close(conn)


async def _read_one(
    config: Config, target_conn: Any, conn: Any, side: Side = "target", state_db: str = ""
) -> ReplicaLag:
    """One replica's lag through its open connection (``target_conn``: the side's own server)."""
    status = await slave_status_row(conn)
    problem = thread_problem(status)
    try:
        row = await query_one(
            conn,
            heartbeat_read_sql(state_db or config.move.state_database),
            (config.move.name, side),
        )
    except MySQLError as exc:
        # The table not there yet means the replica has not replayed the heartbeat's creation.
        if error_code(exc) not in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            raise
        row = None
    now = await query_one(target_conn, "SELECT UTC_TIMESTAMP(6)")
    if row is None or now is None:
        behind = fallback_lag(status)
        if behind is not None and not problem:
            # The heartbeat table has not reached this replica yet: its own figure stands in.
            return ReplicaLag(behind, "", "Seconds_Behind_Master")
        return ReplicaLag(None, problem or "holds no heartbeat of this move yet")
    lag = lag_seconds(now[0], row[0])
    return ReplicaLag(lag, problem)


class ReplicaMonitor:
    """Reads each watched replica's lag every heartbeat interval; keeps the latest readings.

    ``side`` "target" holds the copy; "source" (the rollback window) holds the reverse writes,
    reading the heartbeat the daemon writes into ``state_db`` on the source.
    """

    def __init__(
        self,
        config: Config,
        lags: dict[str, ReplicaLag] | None = None,
        limits: Callable[[], ThrottleSection] | None = None,
        side: Side = "target",
        state_db: str = "",
    ) -> None:
        self.config = config
        self.side: Side = side
        self.state_db = state_db
        # Shared with the status board when given, so `status` shows the same readings.
        self.lags: dict[str, ReplicaLag] = lags if lags is not None else {}
        # The current [throttle]: SIGHUP replaces it, and the watched list with it.
        self.limits = limits or (lambda: config.throttle)

    def reason(self, limit_s: float) -> str:
        """The throttle reason of the latest readings ("" when no replica holds the copy)."""
        return replica_reason(limit_s, self.lags, self.side)

    async def run(self) -> None:
        """Sample until cancelled, the replicas ``[throttle]`` names for this side at each pass."""
        self.lags.clear()
        target_conn: Any = None
        conns: dict[str, Any] = {}
        try:
            while True:
                names = watched(self.limits(), self.side)
                for gone in [name for name in self.lags if name not in names]:
                    # Dropped from the list (SIGHUP): it no longer holds the copy.
                    del self.lags[gone]
                    event(f"{self.side} replica no longer watched", replica=gone)
                    conn = conns.pop(gone, None)
                    if conn is not None:
                        await close(conn)
                for name in names:
                    # Before its first reading a replica is unmeasured, and unmeasured holds the copy.
                    self.lags.setdefault(name, ReplicaLag(None, "not read yet"))
                if names and target_conn is None:
                    server = side_server(self.config, self.side)
                    target_conn = await connect(server, self.side, connection="heartbeat")
                for name in names:
                    self.lags[name] = lag = await self._sample(target_conn, conns, name)
                    # Each reading, at DEBUG: what the throttle decided on, in order with the
                    # copy's chunks (the timing test reads this sequence from the JSON log).
                    event(
                        f"{self.side} replica sampled",
                        logging.DEBUG,
                        replica=name,
                        lag_s=lag.lag_s,
                        problem=lag.problem,
                    )
                await anyio.sleep(self.limits().heartbeat_interval_ms / 1000)
        finally:
            with anyio.CancelScope(shield=True):
                if target_conn is not None:
                    await close(target_conn)
                for conn in conns.values():
                    await close(conn)

    async def _sample(self, target_conn: Any, conns: dict[str, Any], name: str) -> ReplicaLag:
        try:
            if name not in conns:
                server = replica_server(side_server(self.config, self.side), name)
                conns[name] = await connect(server, f"{self.side} replica")
            return await _read_one(self.config, target_conn, conns[name], self.side, self.state_db)
        except Exception as exc:  # any failure to read a replica holds the copy (fail closed)
            conn = conns.pop(name, None)
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await close(conn)
            previous = self.lags.get(name)
            problem = f"cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            if previous is None or previous.problem != problem:
                event(f"{self.side} replica unreadable", replica=name, error=problem)
            return ReplicaLag(None, problem)


async def hold_reverse_writes(
    monitor: ReplicaMonitor,
    limits: Callable[[], ThrottleSection],
    board: Board,
    rollback_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Before each batch the rollback window's reverse feed writes into the source: wait while a
    watched source replica is over ``max_replica_lag_s`` or cannot be read (fail closed).

    The reverse writes are the only writes the move makes on the source then; holding them lets
    the source's replicas catch up, and the target's binlog keeps the changes meanwhile. Once a
    rollback is asked for nothing is held: the reverse feed is then the rollback's drain, inside
    its outage, and like the forward drain it never waits for a replica.
    """

    def reason() -> str:
        return "" if rollback_requested() else monitor.reason(limits().max_replica_lag_s)

    now = reason()
    if not now:
        return
    event("reverse feed throttled", reason=now)
    while now:
        board.throttle_reason = now
        await anyio.sleep(limits().heartbeat_interval_ms / 1000)
        now = reason()
    board.throttle_reason = ""
    event("reverse feed unthrottled", rollback_requested=rollback_requested())


class ReplicaWaitTimeout(SafetyRefusal):
    """The watched replicas did not hold the drain position within ``cutover_replica_wait_s`` and
    the configuration says stop: the move stays DRAINED, and `tablemover run` waits again."""


def replica_position_sql(flavor: Flavor) -> str:
    """What a replica has applied: MariaDB's replicated position, MySQL's executed set."""
    return "SELECT @@global.gtid_slave_pos" if flavor is Flavor.MARIADB else "SELECT @@global.gtid_executed"


def replicas_behind(flavor: Flavor, target_position: str, positions: dict[str, str | None]) -> list[str]:
    """The replicas whose position does not cover ``target_position``; None (unreadable) is behind.

    Pure. A position that does not parse counts as behind too (fail closed).
    """
    wanted = gtid.parse_position(flavor, target_position)
    behind = []
    for name, text in positions.items():
        try:
            held = text is not None and gtid.covers(gtid.parse_position(flavor, text), wanted)
        except ValueError:
            held = False
        if not held:
            behind.append(name)
    return behind


async def _replica_position(config: Config, flavor: Flavor, conns: dict[str, Any], name: str) -> str | None:
    """A replica's applied position, None when it cannot be read (its connection is dropped)."""
    try:
        if name not in conns:
            conns[name] = await connect(replica_server(config.target, name), "target replica")
        row = await query_one(conns[name], replica_position_sql(flavor))
        return str(row[0] or "").replace("\n", "") if row else ""
    except Exception:  # unreadable is behind (fail closed); the next poll reconnects
        conn = conns.pop(name, None)
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await close(conn)
        return None


async def wait_for_replicas(
    config: Config,
    flavor: Flavor,
    target: Any,
    board: Board,
    limits: Callable[[], ThrottleSection] | None = None,
) -> None:
    """Before on-success: wait until every watched target replica holds the target's position.

    The position is read from the target when the wait starts, after the drain, so it covers every
    drained row. Bounded by ``cutover_replica_wait_s``; then ``replica_wait_timeout_action``
    decides: "stop" raises :class:`ReplicaWaitTimeout` (exit 3, the state stays DRAINED), "proceed"
    goes on to on-success with a warning naming the replicas still behind.
    """
    current = limits or (lambda: config.throttle)
    if not current().target_replicas:
        return
    wanted = await current_position(target, flavor)
    deadline = anyio.current_time() + current().cutover_replica_wait_s
    conns: dict[str, Any] = {}
    event("cutover waits for target replicas", position=wanted, replicas=current().target_replicas)
    try:
        while True:
            limits_now = current()  # SIGHUP may drop a dead replica from the list mid-wait
            positions = {
                name: await _replica_position(config, flavor, conns, name)
                for name in limits_now.target_replicas
            }
            behind = replicas_behind(flavor, wanted, positions)
            if not behind:
                board.cutover_wait = ""
                event("target replicas hold the drain position", position=wanted)
                return
            board.cutover_wait = f"cutover waits for target replicas to hold {wanted}: {', '.join(behind)}"
            if anyio.current_time() >= deadline:
                board.cutover_wait = ""
                said = ", ".join(
                    f"{n} at {positions[n] if positions[n] is not None else 'unreadable'}" for n in behind
                )
                if limits_now.replica_wait_timeout_action == "proceed":
                    event(
                        "target replicas still behind after cutover_replica_wait_s; proceeding as configured",
                        logging.WARNING,
                        position=wanted,
                        behind=said,
                    )
                    return
                raise ReplicaWaitTimeout(
                    f"target replicas did not hold the drain position {wanted} within cutover_replica_wait_s "
                    f"= {limits_now.cutover_replica_wait_s:g}: {said}. The move stays DRAINED and "
                    "on-success has not run; fix the replicas (or drop them from [throttle] "
                    "target_replicas) and run `tablemover run` again to resume the wait."
                )
            await anyio.sleep(WAIT_POLL_S)
    finally:
        with anyio.CancelScope(shield=True):
            for conn in conns.values():
                await close(conn)


def source_problem(target_server_id: int, slave_status: dict[str, Any] | None, side: Side = "target") -> str:
    """Why a replica's ``SHOW SLAVE STATUS`` row says it does not replicate directly from ``side``
    ("" when it does). Pure. Direct replication is recognised by the side's server_id; `check`
    follows a chain (a replica of a replica, :func:`upstream`) from there."""
    slave_status = status_columns(slave_status)
    if slave_status is None:
        return "is not a replica (SHOW SLAVE STATUS is empty)"
    master_id = slave_status.get("Master_Server_Id")
    host = f"{slave_status.get('Master_Host')}:{slave_status.get('Master_Port')}"
    if master_id is None or int(master_id) == 0:
        return f"replicates from {host}, whose server_id it has not learned yet (IO thread never connected?)"
    if int(master_id) != target_server_id:
        return (
            f"replicates from {host} (server_id {master_id}), not from the {side} (server_id "
            f"{target_server_id})"
        )
    return ""


def upstream(side_id: int, slave_status: dict[str, Any] | None) -> str:
    """The "host:port" a replica replicates from when that is another server than the side (a
    chain to follow), else "". Pure."""
    status = status_columns(slave_status)
    if status is None:
        return ""
    master_id = int(status.get("Master_Server_Id") or 0)
    if master_id in (0, side_id) or not status.get("Master_Host"):
        return ""
    return f"{status['Master_Host']}:{status['Master_Port']}"


async def _follow_chain(
    config: Config, side: Side, side_id: int, status: dict[str, Any] | None
) -> tuple[list[str], str]:
    """Follow a watched replica's upstream replicas until one replicates from the side.

    Returns (the intermediate replicas, "") or (what was walked, why it is refused). Each hop is
    reached with the side's credentials, like the watched replicas.
    """
    via: list[str] = []
    while (hop := upstream(side_id, status)) and len(via) < MAX_CHAIN:
        if hop in via:
            return via, f"replicates in a circle through {' -> '.join([*via, hop])}, never from the {side}"
        via.append(hop)
        try:
            conn = await connect(replica_server(side_server(config, side), hop), f"{side} replica chain")
        except Exception as exc:  # refused, not raised: check names every replica's problem
            return via, f"replicates through {hop}, which cannot be reached: {str(exc).splitlines()[0]}"
        try:
            status = await slave_status_row(conn)
        except MySQLError as exc:
            return via, f"replicates through {hop}, whose SHOW SLAVE STATUS cannot be read ({exc})"
        finally:
            await close(conn)
        problem = source_problem(side_id, status, side)
        if not problem:
            return via, ""
        if not upstream(side_id, status):
            return via, f"replicates through {' -> '.join(via)}, which {problem}"
    return (
        via,
        f"replicates through {' -> '.join(via)}, more than {MAX_CHAIN} hops without reaching the {side}",
    )


async def slave_status_row(conn: Any) -> dict[str, Any] | None:
    """The replica's status row under the MariaDB column names (MySQL 8.4: SHOW REPLICA STATUS)."""
    async with conn.cursor() as cur:
        try:
            await cur.execute("SHOW SLAVE STATUS")
        except MySQLError as exc:
            if error_code(exc) != ER_PARSE:
                raise
            await cur.execute("SHOW REPLICA STATUS")
        row = await cur.fetchone()
        if row is None:
            return None
        return status_columns(dict(zip([d[0] for d in cur.description], row, strict=True)))


async def check_replicas(config: Config, unreachable_ok: bool = False) -> tuple[list[str], list[str]]:
    """What `tablemover check` says about the watched replicas of both sides: (lines, problems).

    ``unreachable_ok`` (`tablemover run`'s preflight): a replica that cannot be connected to now is
    a line, not a problem: it holds the copy until it can be read (fail closed), and a SIGHUP can
    drop it, while a replica that answers and does not replicate from its side refuses the run.
    """
    lines, problems = await _check_side(config, "target", unreachable_ok)
    if config.throttle.source_replicas:
        more, wrong = await _check_side(config, "source", unreachable_ok)
        lines += more
        problems += wrong
    return lines, problems


async def _check_side(
    config: Config, side: Side, unreachable_ok: bool = False
) -> tuple[list[str], list[str]]:
    """What `tablemover check` says about one side's watched replicas: (lines, problems).

    Each replica must be reachable with the target's credentials and replicate directly from the
    target; a problem refuses the check (exit 2). The target's registered replicas (SHOW SLAVE
    HOSTS, where replicas report a host) that are not watched are listed, so that none is forgotten.
    """
    names = watched(config.throttle, side)
    lines: list[str] = []
    problems: list[str] = []
    target = await connect(side_server(config, side), side)
    try:
        target_id = int((await query_one(target, "SELECT @@server_id") or (0,))[0])
        try:
            hosts = await query(target, "SHOW SLAVE HOSTS")
            registered = [f"{h[1]}:{h[2]}" for h in hosts if h[1]]
            unwatched = [r for r in registered if r not in names]
            if unwatched:
                lines.append(
                    f"{side} replicas registered with the {side} but not watched (add them to "
                    f"[throttle] {side}_replicas to hold the move's writes on them): {', '.join(unwatched)}"
                )
        except MySQLError as exc:
            # Discovery is a convenience: without the privilege, say so only where replicas matter.
            if names:
                lines.append(f"cannot list the {side}'s replicas (SHOW SLAVE HOSTS: {exc}); only the watched")
    finally:
        await close(target)
    if not names:
        lines.append(f"{side} replicas watched: none ([throttle] {side}_replicas is empty)")
        return lines, problems
    lines.append(
        f"{side} replicas watched (max_replica_lag_s {config.throttle.max_replica_lag_s:g}): "
        + ", ".join(names)
    )
    for name in names:
        try:
            conn = await connect(replica_server(side_server(config, side), name), f"{side} replica")
        except Exception as exc:  # reported, not raised: check lists every replica's problem
            said = f"{side} replica {name}: cannot connect: {str(exc).splitlines()[0]}"
            if unreachable_ok:
                lines.append(f"  {said} (it holds the move's writes until it can be read)")
            else:
                problems.append(said)
            continue
        try:
            status = await slave_status_row(conn)
        except MySQLError as exc:
            problems.append(
                f"{side} replica {name}: cannot read SHOW SLAVE STATUS ({exc}); the mover user needs "
                "SLAVE MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) and SELECT on the state schema there"
            )
            continue
        finally:
            await close(conn)
        problem = source_problem(target_id, status, side)
        via: list[str] = []
        if problem and upstream(target_id, status):
            # Not a direct replica: follow Master_Host:Master_Port up to the side (a chain).
            via, problem = await _follow_chain(config, side, target_id, status)
        if problem:
            problems.append(f"{side} replica {name}: {problem}")
            continue
        threads = thread_problem(status)
        held = "the copy" if side == "target" else "the rollback window's reverse writes"
        note = f"; {threads}: it will hold {held} until it runs" if threads else ""
        through = f" through {' -> '.join(via)}" if via else ""
        lines.append(f"  {name}: replicates from the {side} (server_id {target_id}){through}{note}")
    return lines, problems


async def preflight_replicas(config: Config) -> None:
    """`tablemover run`'s check of the watched replicas: refuse (exit 2) one that answers and does
    not replicate from its side, directly or through a chain; log what `check` would print."""
    if not (config.throttle.target_replicas or config.throttle.source_replicas):
        return
    lines, problems = await check_replicas(config, unreachable_ok=True)
    for line in lines:
        event("replica preflight", detail=line.strip())
    if problems:
        raise PreflightError("\n".join(["the watched replicas cannot be used:", *problems]))
