"""The drill's target replica (issue #27): one GTID replica of the pair's target, started the first
time a replica round runs and stopped with the pair.

It replicates the target's whole binlog from its first event (an empty ``gtid_slave_pos``), so a
replica started after twenty rounds still holds every schema the target has, the moves' state
schema and its heartbeat table included: a row event for a table it never saw would stop its SQL
thread. Its own accounts are created with ``sql_log_bin = 0`` and before replication starts, so that
it holds no GTID of its own in the target's domain (``gtid_strict_mode`` would then refuse what it
replicates).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from drill.common import Drill, DrillError
from drill.db import connect
from tablemover.local.mariadb import LocalMariaDB, replicate

SERVER_ID = 3
CATCH_UP_S = 120  # how long a round waits for the replica to hold the target's position


@dataclass
class TargetReplica:
    """The running replica and what a replica round asks of it."""

    server: LocalMariaDB

    @property
    def name(self) -> str:
        """Its address as ``[throttle] target_replicas`` lists it (and as the daemon's reasons name
        it)."""
        return f"127.0.0.1:{self.server.port}"

    def stop_sql_thread(self) -> None:
        """Stop applying what it has received (its IO thread keeps receiving)."""
        self.server.execute("STOP SLAVE SQL_THREAD")

    def start_sql_thread(self) -> None:
        """Apply again (a no-op while it runs)."""
        self.server.execute("START SLAVE SQL_THREAD")

    def catch_up(self, target: LocalMariaDB, timeout_s: float = CATCH_UP_S) -> str:
        """Wait until its ``gtid_slave_pos`` covers the target's ``gtid_binlog_pos`` now
        (``MASTER_GTID_WAIT``); "" once it does, else why not."""
        position = str(target.execute("SELECT @@global.gtid_binlog_pos")[0][0])
        waited = self.server.execute(f"SELECT MASTER_GTID_WAIT('{position}', {timeout_s:g})")[0][0]
        if waited == 0:
            return ""
        status = self.server.execute("SHOW SLAVE STATUS")
        held = self.server.execute("SELECT @@global.gtid_slave_pos")[0][0]
        return (
            f"the replica did not reach the target's position {position} within {timeout_s:g} s "
            f"(it holds {held}; SHOW SLAVE STATUS {'empty' if not status else 'has a row'})"
        )

    def stop(self) -> None:
        """Stop the server (its files go with the pair's directory)."""
        self.server.stop()


def start_replica(drill: Drill) -> TargetReplica:
    """The drill's replica, started now if it is not running yet (under the pair's directory)."""
    if drill.replica is not None:
        return drill.replica
    target = drill.pair.target
    if target.extra_args:
        # The --tls servers require TLS of every client; the replica's connection to the target and
        # the daemon's to the replica would need certificates of their own (not done yet).
        raise DrillError("replica rounds do not run with --tls yet")
    server = LocalMariaDB(
        drill.pair.root / "replica",
        server_id=SERVER_ID,
        extra_args=("--skip-slave-start", "--report-host=127.0.0.1"),
    )
    server.install()
    server.start()
    replica = TargetReplica(server)
    drill.replica = replica  # from here on the drill's end stops it, even if the rest fails
    replicate(server, target, start="")  # from the target's first binlog event
    problem = replica.catch_up(target)
    if problem:
        raise DrillError(f"the target replica did not catch up with the target's history: {problem}")
    return replica


def table_digest(socket_path: str, database: str, table: str) -> tuple[int, str]:
    """(rows, SHA-256 of every row in key order) of one table: plain PyMySQL, no tablemover code."""
    conn = connect(socket_path, streaming=True)
    digest, rows = hashlib.sha256(), 0
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM `{database}`.`{table}` ORDER BY id")
            for row in cur:
                digest.update(repr(row).encode())
                rows += 1
    finally:
        conn.close()
    return rows, digest.hexdigest()
