"""Reading from a replica (issue #24): rows and the binlog come from ``[replica]``, a replica of
``[source]``; the RENAME, the position read with it, the blocker check and the move's identity stay
on the primary.

Why the copy stays right with the replica in the loop (docs/architecture.md, "Reading from a
replica"): GTIDs are global, so the replica's binlog carries the primary's transactions under the
primary's GTIDs, in the primary's order within each domain (every MariaDB parallel replication mode
commits in order within a domain; MySQL needs ``replica_preserve_commit_order``). Everything the
copy relies on holds on the replica as on the primary: the chunk's locking read holds the replica's
SQL thread off its rows until the target commit, and the stream reads the same server's binlog. The
one new rule is the **barrier**: rows may only be read from a server that has executed everything
the target already holds (the checkpoint's applied position), or a stale row would overwrite a
newer one whose event is never applied again. On the primary that always holds; a replica is
checked (and waited for) at the start of every attempt, which covers a resume, a replica restored
from a backup and a return from the fallback.

:func:`replica_problems` is pure (preflight and the runtime checks share it); :class:`ReadSide`
chooses the server an attempt reads from; :class:`ReadReplicaWatch` samples the replica while the
pipeline runs (its lag and threads for the throttle and status, and the fallback's trigger).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from asyncmy.errors import MySQLError

from tablemover import gtid
from tablemover.config import Config
from tablemover.db import ConnectError, close, connect, current_position, query, query_one
from tablemover.errors import MoveFailed
from tablemover.flavor import Flavor
from tablemover.lag import LagTracker
from tablemover.log import event
from tablemover.replicas import ReplicaLag, fallback_lag, slave_status_row, source_problem, thread_problem

if TYPE_CHECKING:
    from tablemover.status import Board

PROBE_EVERY_S = 1.0  # how often a waiting attempt asks the replica again
WATCH_EVERY_S = 0.2  # how often the running pipeline samples the replica

# The replica's settings the checks read (names of both flavors; SHOW VARIABLES returns the ones
# the server has).
VARIABLES = (
    "server_id",
    "server_uuid",
    "log_bin",
    "log_slave_updates",
    "log_replica_updates",
    "binlog_format",
    "binlog_row_image",
    "gtid_mode",
    "slave_parallel_threads",
    "slave_parallel_mode",
    "replica_parallel_workers",
    "slave_parallel_workers",
    "replica_preserve_commit_order",
    "slave_preserve_commit_order",
)


# SHOW SLAVE STATUS columns of replication filters (MariaDB and MySQL names).
FILTER_COLUMNS = (
    "Replicate_Do_DB",
    "Replicate_Ignore_DB",
    "Replicate_Do_Table",
    "Replicate_Ignore_Table",
    "Replicate_Wild_Do_Table",
    "Replicate_Wild_Ignore_Table",
    "Replicate_Rewrite_DB",
    "Replicate_Do_Domain_Ids",
    "Replicate_Ignore_Domain_Ids",
    "Replicate_Ignore_Server_Ids",
)


def first_line(exc: BaseException) -> str:
    """An error's first line, or its type's name when it has no text."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ReplicaUnusable(MoveFailed):
    """The replica the move reads from stopped being usable mid-attempt and ``replica_fallback``
    says read from the primary: a fresh attempt does, from the last committed position."""

    transient = True


@dataclass(frozen=True)
class Identity:
    """Who a server is: its server_id (and server_uuid on MySQL, "" on MariaDB)."""

    server_id: int
    server_uuid: str = ""


def _on(value: str | None) -> bool:
    return str(value or "").upper() in ("ON", "1", "YES")


def identity_problems(variables: dict[str, str], source: Identity, target: Identity) -> list[str]:
    """Why the server of ``variables`` is [target] or [source] itself rather than a replica. Pure.

    Needs only the server's variables (no privilege), so it is judged even where the user may not
    read the replication status.
    """
    problems: list[str] = []
    server_id = int(variables.get("server_id") or 0)
    if server_id == target.server_id or (
        target.server_uuid and variables.get("server_uuid") == target.server_uuid
    ):
        problems.append(
            f"is the target (server_id {server_id}): [replica] must be a replica of [source], "
            "never the server the tables move to"
        )
    if server_id == source.server_id:
        problems.append(
            f"has the server_id of [source] ({server_id}): it is [source] itself, or a replica "
            "misconfigured with its primary's server_id; set [replica] to a replica of [source]"
        )
    return problems


def configuration_problems(
    flavor: Flavor,
    variables: dict[str, str],
    slave_status: dict[str, Any] | None,
    source: Identity,
    target: Identity,
) -> list[str]:
    """What makes the replica unfit to read a move from, whatever its current state. Pure.

    ``variables`` are the replica's (:data:`VARIABLES`), ``slave_status`` its ``SHOW SLAVE STATUS``
    row under the MariaDB names (None: not a replica).
    """
    problems = identity_problems(variables, source, target)
    if slave_status is None:
        problems.append(
            "is not a replica (SHOW SLAVE STATUS is empty): make it a GTID replica of [source] "
            "(CHANGE MASTER TO MASTER_HOST=..., MASTER_USE_GTID=slave_pos; START SLAVE), or drop "
            "the [replica] section to read from [source]"
        )
    else:
        wrong_master = source_problem(source.server_id, slave_status, "source")
        if wrong_master:
            problems.append(
                f"{wrong_master}: point it at [source], or set [replica] to a direct replica of [source]"
            )
        filters = {
            name: str(slave_status.get(name) or "")
            for name in FILTER_COLUMNS
            if str(slave_status.get(name) or "").strip()
        }
        if filters:
            said = ", ".join(f"{k} = {v}" for k, v in filters.items())
            problems.append(
                f"replicates with filters ({said}): a filtered replica may not hold what [source] "
                "holds, and the move would copy that silently; read from an unfiltered replica"
            )
        delay = int(slave_status.get("SQL_Delay") or 0)
        if delay:
            problems.append(
                f"is a delayed replica (SQL_Delay = {delay} s): the drain after the RENAME would wait "
                "that long with the tables renamed away; read from a replica without MASTER_DELAY"
            )
        if flavor is Flavor.MARIADB:
            using = str(slave_status.get("Using_Gtid") or "No")
            if using not in ("Slave_Pos", "Current_Pos"):
                problems.append(
                    f"replicates without GTID (Using_Gtid = {using}): the move's positions are GTIDs "
                    "of [source]; STOP SLAVE; CHANGE MASTER TO MASTER_USE_GTID = slave_pos; START SLAVE"
                )
        elif not _on(str(slave_status.get("Auto_Position", ""))):
            problems.append(
                "replicates without GTID auto-positioning (Auto_Position = 0): "
                "CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION = 1"
            )
    if flavor is Flavor.MYSQL and not _on(variables.get("gtid_mode")):
        problems.append(f"has gtid_mode = {variables.get('gtid_mode') or 'OFF'}: set gtid_mode = ON")
    if not _on(variables.get("log_bin")):
        problems.append(
            "has no binary log (log_bin = OFF): the move tails the replica's binlog; enable log_bin"
        )
    updates = variables.get("log_slave_updates", variables.get("log_replica_updates"))
    if not _on(updates):
        name = "log_slave_updates" if flavor is Flavor.MARIADB else "log_replica_updates"
        problems.append(
            f"has {name} = OFF: what it replicates from [source] is not in its binlog, so the move "
            f"would never see the application's writes; set {name} = ON (a restart) "
        )
    fmt = str(variables.get("binlog_format") or "").upper()
    if fmt != "ROW":
        problems.append(f"has binlog_format = {fmt or 'unknown'}: set binlog_format = ROW")
    image = str(variables.get("binlog_row_image") or "").upper()
    if image != "FULL":
        problems.append(f"has binlog_row_image = {image or 'unknown'}: set binlog_row_image = FULL")
    if flavor is Flavor.MYSQL:
        workers = int(variables.get("replica_parallel_workers", variables.get("slave_parallel_workers")) or 0)
        ordered = variables.get("replica_preserve_commit_order", variables.get("slave_preserve_commit_order"))
        if workers > 1 and not _on(ordered):
            problems.append(
                f"applies with {workers} parallel workers without replica_preserve_commit_order: "
                "its binlog may hold [source]'s transactions out of order, and a position read "
                "there would not mean 'everything before it'; set replica_preserve_commit_order = ON"
            )
    # MariaDB: every slave_parallel_mode commits in order within a GTID domain, which is all the
    # move's positions compare (per domain), so no mode is refused.
    return problems


def state_problem(slave_status: dict[str, Any] | None, max_lag_s: float) -> str:
    """Why the replica cannot be read from right now (a thread stopped, too far behind), "". Pure."""
    stopped = thread_problem(slave_status)
    if stopped:
        return stopped
    behind = fallback_lag(slave_status)
    if behind is not None and behind > max_lag_s:
        return f"lags {behind:.0f} s (Seconds_Behind_Master) > replica_max_lag_s {max_lag_s:g}"
    return ""


def barrier_problem(flavor: Flavor, replica_position: str, applied: str) -> str:
    """ "" when the replica has executed everything the target holds (``applied``), else why not.

    Pure. Rows read from a replica behind ``applied`` could overwrite newer rows on the target whose
    events the stream (which resumes at ``applied``) never applies again.
    """
    if not applied:
        return ""
    try:
        held = gtid.covers(
            gtid.parse_position(flavor, replica_position), gtid.parse_position(flavor, applied)
        )
    except ValueError:
        held = False
    if held:
        return ""
    return (
        f"has not executed everything the target already holds (replica at {replica_position or 'nothing'}, "
        f"applied {applied}); waiting for it to catch up before reading rows there"
    )


async def read_variables(conn: Any) -> dict[str, str]:
    """The replica's :data:`VARIABLES` (readable without any privilege)."""
    names = ", ".join(f"'{name}'" for name in VARIABLES)
    rows = await query(conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    return {str(r[0]).lower(): str(r[1]) for r in rows}


async def read_facts(conn: Any) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The replica's :data:`VARIABLES` and its replication status row (MariaDB column names)."""
    variables = await read_variables(conn)
    return variables, await slave_status_row(conn)


async def identity(conn: Any, flavor: Flavor) -> Identity:
    """The server_id (and MySQL's server_uuid) of the server behind ``conn``."""
    if flavor is Flavor.MYSQL:
        row = await query_one(conn, "SELECT @@global.server_id, @@global.server_uuid")
        return Identity(int(row[0]), str(row[1])) if row else Identity(0)
    row = await query_one(conn, "SELECT @@global.server_id")
    return Identity(int(row[0]) if row else 0)


@dataclass
class Probe:
    """One look at the replica: why it cannot be read from now ("" when it can)."""

    problem: str
    configuration: bool = False  # the problem is its configuration, not its current state


async def probe(config: Config, flavor: Flavor, source: Identity, target: Identity, applied: str) -> Probe:
    """Connect to ``[replica]`` and judge it: configuration, state, and the barrier at ``applied``."""
    assert config.replica is not None
    conn: Any = None
    try:
        conn = await connect(config.replica, "replica", connection="replica probe")
        variables, status = await read_facts(conn)
        wrong = configuration_problems(flavor, variables, status, source, target)
        if wrong:
            return Probe("; ".join(wrong), configuration=True)
        now = state_problem(status, config.move.replica_max_lag_s)
        if now:
            return Probe(now)
        return Probe(barrier_problem(flavor, await current_position(conn, flavor), applied))
    except (ConnectError, MySQLError, OSError) as exc:
        return Probe(f"cannot be reached: {first_line(exc)}")
    finally:
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await close(conn)


class ReadSide:
    """Which server this run's attempts read rows and the binlog from.

    With no ``[replica]`` it is always ``[source]``. With one, each attempt starts by asking the
    replica (:func:`probe`): usable and caught up with the applied position, it is read from;
    otherwise the attempt waits (a reason in status, kind ``read_replica``), or, with
    ``replica_fallback = "source"`` and the problem older than ``replica_fallback_after_s``, it
    reads from the primary, as does the rest of this run.
    """

    def __init__(self, config: Config, board: Board) -> None:
        self.config = config
        self.board = board
        self.flavor = Flavor.MARIADB
        self.target_flavor = Flavor.MARIADB
        self.fallen_back = False  # this run reads from the primary since the replica failed
        self.problem_since: float | None = None  # when the current replica problem was first seen
        self.reading: Config = config  # the attempt's config: `reader` is where it reads

    @property
    def on_replica(self) -> bool:
        """Whether the running attempt reads from ``[replica]``."""
        return self.reading.replica is not None

    def fall_back(self, why: str) -> None:
        """From now on this run reads from the primary (``replica_fallback = "source"``)."""
        if not self.fallen_back:
            event(
                "reading from the primary: the replica cannot be read from (replica_fallback = source)",
                logging.WARNING,
                replica=self.config.replica.address if self.config.replica else "",
                problem=why,
            )
        self.fallen_back = True
        self.board.reading_from = f"source {self.config.source.address} (replica fallback: {why})"

    async def choose(self, source_conn: Any, target_conn: Any, applied: str) -> Config:
        """The config this attempt reads with (its ``reader``), waiting for the replica as configured.

        ``applied`` is the checkpoint's applied position ("" for a new move).
        """
        self.reading = self.config
        if self.config.replica is None:
            self.board.reading_from = f"source {self.config.source.address}"
            return self.config
        if self.fallen_back:
            self.reading = self.config.reading_from_source()
            return self.reading
        source = await identity(source_conn, self.flavor)
        target = await identity(target_conn, self.target_flavor)
        while True:
            seen = await probe(self.config, self.flavor, source, target, applied)
            if not seen.problem:
                if self.problem_since is not None:
                    event("the replica can be read from again", replica=self.config.replica.address)
                self.problem_since = None
                self.board.read_wait = ""
                self.board.reading_from = f"replica {self.config.replica.address}"
                return self.config
            now = time.monotonic()
            if self.problem_since is None:
                self.problem_since = now
                event("the replica cannot be read from", logging.WARNING, problem=seen.problem)
            if self.config.move.replica_fallback == "source" and (
                now - self.problem_since >= self.config.move.replica_fallback_after_s
            ):
                self.board.read_wait = ""
                self.fall_back(seen.problem)
                self.reading = self.config.reading_from_source()
                return self.reading
            self.board.read_wait = f"read replica {self.config.replica.address}: {seen.problem}"
            await anyio.sleep(PROBE_EVERY_S)


class ReadReplicaWatch:
    """While a pipeline reads from the replica: its lag behind the primary (GTID-measured: the age
    of the newest primary position the replica has executed, :class:`LagTracker`) and its threads,
    on the board for status and the throttle; and the fallback's trigger mid-attempt."""

    def __init__(self, side: ReadSide, flavor: Flavor) -> None:
        self.side = side
        self.flavor = flavor
        self.tracker = LagTracker()

    def reason(self, max_lag_s: float) -> str:
        """The throttle reason of the latest reading ("" when the replica does not hold the copy)."""
        reading = self.side.board.read_replica
        if reading is None or not reading.over(max_lag_s):
            return ""
        name = self.side.config.replica.address if self.side.config.replica else "?"
        if reading.problem:
            return f"read replica {name}: {reading.problem}"
        return f"read replica {name} lag {reading.lag_s:.2f} s > max_replica_lag_s {max_lag_s:g}"

    async def run(self) -> None:
        """Sample until cancelled; raise :class:`ReplicaUnusable` when the fallback is due."""
        config = self.side.config
        assert config.replica is not None
        board = self.side.board
        primary: Any = None
        replica: Any = None
        try:
            primary = await connect(config.source, "source", connection="read replica lag")
            while True:
                problem = ""
                try:
                    if replica is None:
                        replica = await connect(config.replica, "replica", connection="read replica watch")
                    sampled_at = time.monotonic()
                    self.tracker.sample(
                        sampled_at,
                        gtid.parse_position(self.flavor, await current_position(primary, self.flavor)),
                    )
                    status = await slave_status_row(replica)
                    held = gtid.parse_position(self.flavor, await current_position(replica, self.flavor))
                    lag = self.tracker.update(time.monotonic(), held)
                    problem = thread_problem(status)
                    board.read_replica = ReplicaLag(lag, problem)
                except (ConnectError, MySQLError, OSError) as exc:
                    if replica is not None:
                        with anyio.CancelScope(shield=True):
                            await close(replica)
                        replica = None
                    problem = (
                        f"cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                    )
                    board.read_replica = ReplicaLag(None, problem)
                self._judge(problem)
                await anyio.sleep(WATCH_EVERY_S)
        finally:
            with anyio.CancelScope(shield=True):
                for conn in (primary, replica):
                    if conn is not None:
                        await close(conn)

    def _judge(self, problem: str) -> None:
        side = self.side
        if not problem:
            side.problem_since = None
            return
        now = time.monotonic()
        if side.problem_since is None:
            side.problem_since = now
            event("the replica the move reads from has a problem", logging.WARNING, problem=problem)
        move = side.config.move
        if move.replica_fallback == "source" and now - side.problem_since >= move.replica_fallback_after_s:
            side.fall_back(problem)
            raise ReplicaUnusable(
                f"the replica {side.config.replica.address if side.config.replica else ''} cannot be read "
                f"from ({problem}); replica_fallback = source: reading from the primary from the last "
                "committed position"
            )
