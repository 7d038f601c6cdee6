"""Faults with ``[replica]`` in the loop (issue #24), on real servers, under writes.

- The replica's server is SIGKILLed mid-copy. With ``replica_fallback = "wait"`` the move waits,
  saying why (kind ``read_replica``), and reads from the replica again once it is back; with
  ``replica_fallback = "source"`` it goes on from the primary at the committed GTID position.
- The daemon is SIGKILLed in each state while it reads from the replica, and restarted until done.
- The replica applies with parallel replication (slave_parallel_threads = 4, optimistic).
- A table shaped as users have them (composite key with ENUM, DECIMAL, DATETIME, BINARY and a
  case-insensitive string, a second unique key, JSON, NULLs, a latin1 key) moves through a replica.

Every test ends with the moved tables equal to the target byte for byte.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest
from test_read_replica import finish, rows_read, seed
from test_replica_throttle import caught_up, status_json, wait_status

from conftest import MoveEnv, ReadTrio
from support import WriteLoad, assert_tables_equal, renames_in_binlog, transitions, wait_for_log
from tablemover.local.mariadb import LocalMariaDB

SLOW_COPY = {"TABLEMOVER_DELAYS": "copy.after_read:0.05"}  # the copy lasts long enough to be hit


def copied(doc: dict[str, Any]) -> int:
    return int(doc.get("rows_copied") or 0)


def test_replica_killed_mid_copy_the_move_waits_and_resumes_on_it(
    read_move: MoveEnv, read_trio: ReadTrio
) -> None:
    move = read_move
    replica = read_trio.replica
    seed(move, a=20_000, b=10_000)
    caught_up(replica, move.source)
    cfg = move.config(
        ["a", "b"], move={"chunk_size": 200, "postpone_cutover": True, "replica_fallback": "wait"}
    )
    load = WriteLoad(move.source, move.database, ["a"], key_space=20_000, seed=41, pause_s=0.005).start()
    daemon = move.popen("run", "-c", str(cfg), env=SLOW_COPY)
    try:
        wait_status(move, cfg, daemon, lambda d: copied(d) > 2_000, "the copy under way", timeout=180)
        replica.crash()
        doc = wait_status(
            move,
            cfg,
            daemon,
            lambda d: d.get("waiting_kind") == "read_replica" and "cannot be reached" in d["waiting_for"],
            "the wait for the replica",
        )
        assert doc["state"] == "COPYING", doc
        # Waiting, not reading from the primary: the static table b is not read there meanwhile.
        b_on_primary = rows_read(move.source, move.database, "b")
        held = copied(doc)
        time.sleep(1.5)  # a window in which a fallback (not configured) would have read
        assert copied(status_json(move, cfg)) == held
        assert rows_read(move.source, move.database, "b") == b_on_primary
        replica.restart()
        replica.execute("START SLAVE")
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: copied(d) > held and d.get("reading_from", "").startswith("replica"),
            "the copy going on from the replica",
            timeout=180,
        )
        wait_for_log(move, "cutover postponed", daemon, timeout=300)
    finally:
        ops = load.stop()
    finish(move, cfg, daemon)
    assert ops > 50 and not load.errors, load.errors
    assert rows_read(move.source, move.database, "b") == b_on_primary  # b was never read on the primary
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


def test_replica_killed_mid_copy_with_fallback_the_move_goes_on_from_the_primary(
    read_move: MoveEnv, read_trio: ReadTrio
) -> None:
    move = read_move
    replica = read_trio.replica
    seed(move, a=20_000)
    caught_up(replica, move.source)
    cfg = move.config(
        ["a"],
        move={
            "chunk_size": 200,
            "postpone_cutover": True,
            "replica_fallback": "source",
            "replica_fallback_after_s": 1,
        },
    )
    load = WriteLoad(move.source, move.database, ["a"], key_space=20_000, seed=42, pause_s=0.005).start()
    daemon = move.popen("run", "-c", str(cfg), env=SLOW_COPY)
    try:
        wait_status(move, cfg, daemon, lambda d: copied(d) > 2_000, "the copy under way", timeout=180)
        replica.crash()
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: d.get("reading_from", "").startswith(f"source 127.0.0.1:{move.source.port}"),
            "the fallback to the primary",
        )
        # The rest of the copy, and the binlog since the last committed position, from the primary.
        wait_for_log(move, "cutover postponed", daemon, timeout=300)
        doc = status_json(move, cfg)
        assert doc["percent_copied"] == 100.0 and "replica fallback" in doc["reading_from"], doc
        assert doc["read_replica"]["holds_copy"] is False, doc
        assert replica.running is False  # all of it without the replica
    finally:
        ops = load.stop()
    finish(move, cfg, daemon)
    assert ops > 50 and not load.errors, load.errors
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})


# One move, SIGKILLed once in every state (and mid-copy, mid-apply, between the RENAME and its
# checkpoint) while rows and the binlog come from the replica: each restart resumes it and dies at
# the next point, so every kill lands by construction (a point not reached fails the test).
KILL_POINTS = [
    "state.COPYING",
    "writer.after_commit:5",
    "state.CUTOVER_STARTED",
    "cutover.after_rename",
    "state.RENAMED",
    "state.DRAINED",
    "state.HOOK_FIRED",
]


def test_sigkill_in_every_state_with_a_replica_ends_equal(read_move: MoveEnv, read_trio: ReadTrio) -> None:
    move = read_move
    replica = read_trio.replica
    seed(move, a=5_000)
    caught_up(replica, move.source)
    cfg = move.config(["a"], move={"chunk_size": 250})
    load = WriteLoad(move.source, move.database, ["a"], key_space=5_000, seed=43, pause_s=0.01).start()
    try:
        for point in KILL_POINTS:
            killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": point}, timeout=300)
            assert killed.returncode == -9, (point, killed.returncode, killed.stderr[-3000:])
    finally:
        ops = load.stop()
    done = move.cli("run", "-c", str(cfg), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Past the RENAME the application's table is gone (1146): the writes the cutover turns away.
    assert ops > 10 and all(e.startswith("(1146,") for e in load.errors), load.errors
    states = transitions(move)
    assert states.count("RENAMED") == 1 and states.count("HOOK_FIRED") == 1, states
    assert renames_in_binlog(move) == 1
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})


@contextmanager
def parallel_replication(replica: LocalMariaDB, threads: int) -> Iterator[None]:
    replica.execute(
        "STOP SLAVE",
        f"SET GLOBAL slave_parallel_threads = {threads}",
        "SET GLOBAL slave_parallel_mode = 'optimistic'",
        "START SLAVE",
    )
    try:
        yield
    finally:
        replica.execute("STOP SLAVE", "SET GLOBAL slave_parallel_threads = 0", "START SLAVE")


def test_a_replica_with_parallel_replication(read_move: MoveEnv, read_trio: ReadTrio) -> None:
    move = read_move
    replica = read_trio.replica
    seed(move, a=10_000, b=10_000)
    caught_up(replica, move.source)
    with parallel_replication(replica, 4):
        assert replica.execute("SELECT @@slave_parallel_threads")[0][0] == 4
        cfg = move.config(["a", "b"], move={"chunk_size": 300, "postpone_cutover": True})
        # Two writers on two tables: transactions the replica's workers can apply side by side.
        loads = [
            WriteLoad(move.source, move.database, [t], key_space=10_000, seed=44 + i).start()
            for i, t in enumerate("ab")
        ]
        daemon = move.popen("run", "-c", str(cfg))
        try:
            doc = wait_status(move, cfg, daemon, lambda d: d.get("state") == "COPYING", "the copy")
            wait_for_log(move, "cutover postponed", daemon, timeout=300)
            doc = status_json(move, cfg)
            assert doc.get("reading_from", "").startswith("replica"), doc
        finally:
            ops = [load.stop() for load in loads]
        finish(move, cfg, daemon)
    assert min(ops) > 20 and not any(load.errors for load in loads)
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


USER_TABLES = {
    "comp": (
        "CREATE TABLE comp (a INT NOT NULL, s VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL, "
        "e ENUM('red','green','blue') NOT NULL, d DECIMAL(20,6) NOT NULL, t DATETIME(6) NOT NULL, "
        "b BINARY(4) NOT NULL, j JSON NULL, n INT NULL, note TEXT CHARACTER SET latin1 NULL, "
        "PRIMARY KEY (a, s, e, d, t, b), UNIQUE KEY uk_s_a (s, a))",
        "INSERT INTO comp SELECT seq DIV 3, CONCAT(IF(seq % 2, 'K', 'k'), seq), "
        "ELT(1 + seq % 3, 'red', 'green', 'blue'), seq / 7, '2026-01-01' + INTERVAL seq SECOND, "
        "UNHEX(LPAD(HEX(seq), 8, '0')), IF(seq % 5, JSON_OBJECT('n', seq), NULL), "
        "IF(seq % 4, seq, NULL), IF(seq % 3, CONCAT('caf', CHAR(233 USING latin1), seq), NULL) "
        "FROM seq_1_to_3000",
    ),
    "named": (
        "CREATE TABLE named (k VARCHAR(12) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL "
        "PRIMARY KEY, v TEXT, u INT NULL, UNIQUE KEY (u))",
        "INSERT INTO named SELECT CONCAT(CHAR(65 + seq % 26), seq), REPEAT('x', seq % 50), "
        "IF(seq % 2, seq, NULL) FROM seq_1_to_3000",
    ),
}


class UserShapedWrites:
    """Writes the user-shaped tables while the move runs: key changes, JSON, NULLs, latin1."""

    def __init__(self, server: LocalMariaDB, database: str) -> None:
        self.server, self.database = server, database
        self.ops, self.errors = 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> UserShapedWrites:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.ops

    def _run(self) -> None:
        rnd = random.Random(45)
        conn = pymysql.connect(unix_socket=self.server.socket, user="root", database=self.database)
        statements = [
            "UPDATE comp SET j = JSON_SET(COALESCE(j, '{}'), '$.w', %(n)s), n = NULL WHERE a = %(a)s",
            "UPDATE comp SET d = d + 0.000001 WHERE a = %(a)s AND e = 'red'",  # a primary key change
            "UPDATE comp SET note = CONCAT('na', CHAR(239 USING latin1), 've') WHERE a = %(a)s",
            "DELETE FROM comp WHERE a = %(a)s AND e = 'green'",
            "INSERT IGNORE INTO comp VALUES (%(n)s, CONCAT('New', %(n)s), 'blue', 1.5, NOW(6), "
            "UNHEX('00ff00ff'), NULL, NULL, NULL)",
            "UPDATE named SET k = CONCAT('z', k) WHERE k = CONCAT(CHAR(65 + %(a)s %% 26), %(a)s)",
            "UPDATE named SET u = IF(u IS NULL, %(n)s + 100000, NULL) WHERE k LIKE CONCAT(CHAR(66), %(a)s)",
            "DELETE FROM named WHERE k = CONCAT(CHAR(65 + %(n)s %% 26), %(n)s)",
        ]
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    params = {"a": rnd.randint(1, 1000), "n": rnd.randint(1, 1_000_000)}
                    try:
                        cur.execute(rnd.choice(statements), params)
                        conn.commit()
                        self.ops += 1
                    except pymysql.err.MySQLError as exc:
                        conn.rollback()
                        if exc.args[0] not in (1062, 1213, 1205):
                            self.errors.append(str(exc))
                    time.sleep(0.002)
        finally:
            conn.close()


def test_user_shaped_tables_move_through_a_replica(read_move: MoveEnv, read_trio: ReadTrio) -> None:
    move = read_move
    replica = read_trio.replica
    for ddl, rows in USER_TABLES.values():
        move.src(ddl, rows)
    caught_up(replica, move.source)
    cfg = move.config(list(USER_TABLES), move={"chunk_size": 100, "postpone_cutover": True})
    writes = UserShapedWrites(move.source, move.database).start()
    daemon = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "copy.after_read:0.02"})
    try:
        doc = wait_status(move, cfg, daemon, lambda d: d.get("state") == "COPYING", "the copy")
        assert doc.get("reading_from", "").startswith("replica"), doc
        wait_for_log(move, "cutover postponed", daemon, timeout=300)
        # Postponed, the move still applies what the replica relays: write until there is plenty
        # (however fast the copy was), so the comparison below covers applied changes.
        deadline = time.monotonic() + 120
        while writes.ops <= 100 and time.monotonic() < deadline and not writes.errors:
            time.sleep(0.05)
    finally:
        ops = writes.stop()
    finish(move, cfg, daemon)
    assert ops > 100 and not writes.errors, writes.errors[:5]
    assert_tables_equal(
        move.source,
        move.database,
        move.target,
        move.target_database,
        {f"_{t}_moved": t for t in USER_TABLES},
    )


@pytest.mark.parametrize("fallback", ["wait", "source"])
def test_replica_lost_mid_drain(read_move: MoveEnv, read_trio: ReadTrio, fallback: str) -> None:
    """The RENAME is done on the primary but the replica has not executed it (its SQL thread was
    stopped, caught up, before the cutover). ``wait``: the replica's server is then SIGKILLed too;
    the move stays RENAMED, and drains through the replica once it is back and replicating.
    ``source``: the move drains from the primary and finishes with the replica still stopped."""
    move = read_move
    replica = read_trio.replica
    seed(move, a=3_000)
    caught_up(replica, move.source)
    cfg = move.config(
        ["a"],
        move={"postpone_cutover": True, "replica_fallback": fallback, "replica_fallback_after_s": 1},
    )
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", daemon)
    move.src("INSERT INTO a VALUES (900002, 2, 'written before the rename')")
    caught_up(replica, move.source)
    replica.execute("STOP SLAVE SQL_THREAD")
    released = move.cli("cutover", "-c", str(cfg))
    assert released.returncode == 0, released.stdout + released.stderr
    if fallback == "wait":
        wait_status(move, cfg, daemon, lambda d: d.get("state") == "RENAMED", "the RENAME")
        replica.crash()
        doc = wait_status(
            move,
            cfg,
            daemon,
            lambda d: "cannot be reached" in str(d.get("waiting_for")),
            "the wait for the killed replica",
        )
        assert doc["state"] == "RENAMED", doc
        replica.restart()
        replica.execute("START SLAVE")
    code = daemon.wait(timeout=300)
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-4000:]
    if fallback == "source":
        assert "reading from the primary" in log, log[-4000:]
        # Finished while the replica has not executed the RENAME: a still exists there.
        assert replica.execute(f"SHOW TABLES FROM `{move.database}` LIKE 'a'") == [("a",)]
        replica.execute("START SLAVE SQL_THREAD")
    assert transitions(move).count("RENAMED") == 1 and "DRAINED" in transitions(move)
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    assert move.tgt("SELECT v FROM a WHERE id = 900002") == [("written before the rename",)]
