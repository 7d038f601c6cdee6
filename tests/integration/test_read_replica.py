"""Reading from a replica (issue #24): rows and the binlog come from ``[replica]``, a GTID replica
of the source; the RENAME, the position read with it and the blocker check stay on the primary.

The trio's primary and replica count the rows read per table (userstat): the primary must read no
row of a moved table for the copy, the checksum or the binlog, the replica all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_replica_throttle import caught_up, wait_status

from conftest import MoveEnv, ReadTrio
from support import WriteLoad, assert_tables_equal, transitions, wait_for_log
from tablemover.local.mariadb import LocalMariaDB

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64))"


def rows_read(server: LocalMariaDB, database: str, table: str) -> int:
    """Rows the server has read of ``database.table`` since it started (TABLE_STATISTICS)."""
    found = server.execute(
        "SELECT ROWS_READ FROM information_schema.TABLE_STATISTICS "
        f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = '{table}'"
    )
    return int(found[0][0]) if found else 0


def seed(move: MoveEnv, **counts: int) -> None:
    for name, count in counts.items():
        move.src(
            TABLE.format(name=name), f"INSERT INTO {name} SELECT seq, seq % 97, 'x' FROM seq_1_to_{count}"
        )


def finish(move: MoveEnv, cfg: Path, daemon: Any) -> None:
    """Release the postponed cutover and wait for the daemon to end at HOOK_FIRED or DONE."""
    released = move.cli("cutover", "-c", str(cfg))
    assert released.returncode == 0, released.stdout + released.stderr
    code = daemon.wait(timeout=300)
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-4000:]
    assert transitions(move)[-1] in ("HOOK_FIRED", "DONE")


def test_a_move_under_writes_reads_every_row_from_the_replica(
    read_move: MoveEnv, read_trio: ReadTrio
) -> None:
    move = read_move
    replica = read_trio.replica
    seed(move, a=20_000, b=20_000)
    caught_up(replica, move.source)
    before = {
        t: (rows_read(move.source, move.database, t), rows_read(replica, move.database, t)) for t in "ab"
    }
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "postpone_cutover": True})
    checked = move.cli("check", "-c", str(cfg))
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    load = WriteLoad(move.source, move.database, ["a"], key_space=20_000, seed=24).start()
    daemon = move.popen("run", "-c", str(cfg))
    try:
        doc = wait_status(move, cfg, daemon, lambda d: d.get("state") == "COPYING", "the copy")
        assert doc["reading_from"] == f"replica 127.0.0.1:{replica.port}", doc
        text = move.cli("status", "-c", str(cfg)).stdout
        assert f"  reading from: replica 127.0.0.1:{replica.port}" in text, text
        wait_status(
            move, cfg, daemon, lambda d: (d.get("read_replica") or {}).get("lag_s") is not None, "a lag"
        )
        wait_for_log(move, "cutover postponed", daemon)
    finally:
        ops = load.stop()
    finish(move, cfg, daemon)
    assert ops > 50 and not load.errors, load.errors
    # Everything the application wrote before the RENAME is on the target, byte for byte.
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )
    # The static table b: its 20,000 rows were read on the replica (copy + checksum), none on
    # the primary. (a is written on the primary by the load, whose statements read rows there.)
    primary_b = rows_read(move.source, move.database, "b") - before["b"][0]
    replica_b = rows_read(replica, move.database, "b") - before["b"][1]
    assert primary_b == 0, f"the primary read {primary_b} rows of b"
    assert replica_b >= 2 * 20_000, f"the replica read only {replica_b} rows of b (copy and checksum)"


def test_the_drain_waits_for_a_stopped_replica_sql_thread_and_finishes_when_it_runs(
    read_move: MoveEnv, read_trio: ReadTrio
) -> None:
    """The replica's SQL thread stops with the replica caught up; the cutover goes ahead (nothing is
    behind) and RENAMEs on the primary, but the drain cannot reach the RENAME's position through
    the replica: the move stays RENAMED, status says why, and it drains once the thread runs."""
    move = read_move
    replica = read_trio.replica
    seed(move, a=5_000)
    caught_up(replica, move.source)
    cfg = move.config(["a"], move={"postpone_cutover": True})
    daemon = move.popen("run", "-c", str(cfg))
    stopped = False
    try:
        wait_for_log(move, "cutover postponed", daemon)
        move.src("INSERT INTO a VALUES (900001, 1, 'before the rename')")
        caught_up(replica, move.source)
        replica.execute("STOP SLAVE SQL_THREAD")
        stopped = True
        released = move.cli("cutover", "-c", str(cfg))
        assert released.returncode == 0, released.stdout + released.stderr
        doc = wait_status(move, cfg, daemon, _stopped_replica_status, "the stopped SQL thread read")
        doc = wait_status(move, cfg, daemon, lambda d: d.get("state") == "RENAMED", "the RENAME")
        # Renamed on the primary, not drained: the replica has not executed the RENAME.
        assert move.src("SHOW TABLES LIKE 'a'") == []
        assert transitions(move)[-1] == "RENAMED"
        assert "SQL thread" in str(doc.get("waiting_for") or doc.get("read_replica")), doc
    finally:
        if stopped:
            replica.execute("START SLAVE SQL_THREAD")
    code = daemon.wait(timeout=300)
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-4000:]
    assert "DRAINED" in transitions(move)
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    assert move.tgt("SELECT v FROM a WHERE id = 900001") == [("before the rename",)]


def _stopped_replica_status(doc: dict[str, Any]) -> bool:
    return "SQL thread No" in str((doc.get("read_replica") or {}).get("problem", ""))
