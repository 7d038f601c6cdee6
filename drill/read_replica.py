"""The drill's read replica (issue #24): one GTID replica of the pair's *source*, which the
read-replica rounds' moves read rows and the binlog from (``[replica]``), started the first time
such a round runs and stopped with the pair (not to be confused with :mod:`drill.replica`, a replica
of the target that the replica rounds watch).

Like the target replica it replicates its master's whole binlog from the first event (an empty
``gtid_slave_pos``): every schema the source holds, the rounds before the first read-replica round
included, so no row event can name a table it never saw. Its own accounts are created with
``sql_log_bin = 0`` before replication starts (:func:`~tablemover.local.mariadb.replicate`,
:func:`~tablemover.local.mariadb.grant_reader`).

Both the replica and the source count what each user reads (``userstat``: the replica from its
start, the source from then on), so a round can tell on which server the move user read its rows.

It is the drill's ``read_replica``; :func:`stop_read_replica` stops it (``drill/run.py``, beside
the target's replica).
"""

from __future__ import annotations

from dataclasses import dataclass

from drill.common import Drill, DrillError
from tablemover.local.mariadb import MOVER_USER, LocalMariaDB, grant_reader, replicate

SERVER_ID = 5  # source 1, target 2, the target's replica 3
# How long the first read-replica round waits for the replica to replay the source's history (the
# rounds before it: on 2 loaded cores some 10,000 transactions/s).
CATCH_UP_S = 300.0


@dataclass
class ReadReplica:
    """The running replica of the source and what a read-replica round asks of it."""

    server: LocalMariaDB

    @property
    def address(self) -> str:
        """``HOST:PORT`` as the daemon names it (``reading_from = "replica HOST:PORT"``, the copy's
        throttle reason ``read replica HOST:PORT: ...``)."""
        return f"127.0.0.1:{self.server.port}"

    def section(self) -> dict[str, object]:
        """The config's ``[replica]`` keys beyond the move user's credentials."""
        return {"host": "127.0.0.1", "port": self.server.port}

    def stop_sql_thread(self) -> None:
        """Stop applying what it receives (its IO thread keeps receiving). Never while its SQL
        thread may wait on a metadata lock (a RENAME): the statement then hangs."""
        self.server.execute("STOP SLAVE SQL_THREAD")

    def start_sql_thread(self) -> None:
        """Apply again (a no-op while it runs)."""
        self.server.execute("START SLAVE SQL_THREAD")

    def threads(self) -> tuple[str, str]:
        """(Slave_IO_Running, Slave_SQL_Running)."""
        conn = self.server.admin()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW SLAVE STATUS")
                row = cur.fetchone()
                if row is None:
                    return "", ""
                names = [d[0] for d in cur.description or ()]
                status = dict(zip(names, row, strict=False))
        finally:
            conn.close()
        return str(status.get("Slave_IO_Running", "")), str(status.get("Slave_SQL_Running", ""))

    def catch_up(self, master: LocalMariaDB, timeout_s: float) -> str:
        """Wait until its ``gtid_slave_pos`` covers ``master``'s ``gtid_binlog_pos`` now; "" once it
        does, else why not."""
        position = str(master.execute("SELECT @@global.gtid_binlog_pos")[0][0])
        waited = self.server.execute(f"SELECT MASTER_GTID_WAIT('{position}', {timeout_s:g})")[0][0]
        if waited == 0:
            return ""
        held = self.server.execute("SELECT @@global.gtid_slave_pos")[0][0]
        io, sql = self.threads()
        return (
            f"the read replica did not reach the source's position {position} within {timeout_s:g} s "
            f"(it holds {held}; IO thread {io or '?'}, SQL thread {sql or '?'})"
        )

    def stop(self) -> None:
        """Stop the server (its files go with the pair's directory)."""
        self.server.stop()


def read_replica_of(drill: Drill) -> ReadReplica | None:
    """The drill's read replica, None while no read-replica round started it."""
    return drill.read_replica


def start_read_replica(drill: Drill) -> ReadReplica:
    """The drill's read replica, started now if it is not running yet (under the pair's directory),
    caught up with the source's whole history."""
    running = read_replica_of(drill)
    if running is not None:
        return running
    source = drill.pair.source
    if source.extra_args:
        # As for the target replica: under --tls the replica's connection to the source and the
        # daemon's to the replica would need certificates of their own (not done yet).
        raise DrillError("read-replica rounds do not run with --tls yet")
    server = LocalMariaDB(
        drill.pair.root / "read-replica",
        server_id=SERVER_ID,
        row_metadata=source.row_metadata,
        extra_args=("--skip-slave-start", "--report-host=127.0.0.1", "--userstat=ON"),
    )
    server.install()
    server.start()
    replica = ReadReplica(server)
    drill.read_replica = replica  # from here on the drill's end stops it, even if the rest fails
    source.execute("SET GLOBAL userstat = ON")  # what the move user reads there, from now on
    replicate(server, source, start="")  # from the source's first binlog event
    grant_reader(server)
    problem = replica.catch_up(source, CATCH_UP_S)
    if problem:
        raise DrillError(f"the read replica did not catch up with the source's history: {problem}")
    return replica


def stop_read_replica(drill: Drill) -> None:
    """Stop the drill's read replica, if it started one."""
    replica, drill.read_replica = drill.read_replica, None
    if replica is not None:
        replica.stop()


def rows_read(server: LocalMariaDB, user: str = MOVER_USER) -> int:
    """Rows ``user`` has read on ``server`` since its ``userstat`` counting began
    (``information_schema.USER_STATISTICS``)."""
    found = server.execute(f"SELECT ROWS_READ FROM information_schema.USER_STATISTICS WHERE USER = '{user}'")
    return int(str(found[0][0])) if found else 0
