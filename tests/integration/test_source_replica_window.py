"""The rollback window never lags the source's replicas (issue #27): a real GTID replica of the source.

During the window the reverse feed writes the target's changes back into the source's renamed
tables, and those writes reach the source's replicas. ``[throttle] source_replicas`` watches them
the way ``target_replicas`` watches the target's during the copy: a heartbeat the daemon writes on
the source (side "source"), read back on each replica; a replica over ``max_replica_lag_s``, or one
whose thread is stopped, holds the reverse writes (fail closed) until it catches up.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_replica_throttle import caught_up, status_json, wait_status

from conftest import MoveEnv
from support import assert_tables_equal, rows, transitions, wait_for_log, write_hook
from tablemover.local.mariadb import LocalMariaDB, LocalPair, replicate

TABLE = "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64))"


@pytest.fixture(scope="module")
def source_replica(
    window_pair: LocalPair, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalMariaDB]:
    """A replica of the window pair's source, replicating with GTID from the source's position now."""
    replica = LocalMariaDB(
        tmp_path_factory.mktemp("source-replica"),
        server_id=4,
        extra_args=("--skip-slave-start", "--report-host=127.0.0.1"),
    )
    replica.install()
    replica.start()
    try:
        replicate(replica, window_pair.source)
        yield replica
    finally:
        replica.stop()


def test_a_stopped_source_replica_holds_the_reverse_writes_until_it_runs(
    window_move: MoveEnv, source_replica: LocalMariaDB
) -> None:
    move = window_move
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_2000")
    name = f"127.0.0.1:{source_replica.port}"
    hooks = move.workdir / "hooks"
    for hook in ("success", "before-rollback", "rollback"):
        write_hook(hooks, f"on-{hook}", "true\n")
    cfg = move.config(
        ["a"],
        move={"hooks_dir": str(hooks), "rollback_window_s": 600},
        throttle={"source_replicas": [name], "max_replica_lag_s": 1.5},
    )
    checked = move.cli("check", "-c", str(cfg))
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert f"source replicas watched (max_replica_lag_s 1.5): {name}" in checked.stdout
    assert f"{name}: replicates from the source" in checked.stdout

    daemon = move.popen("run", "-c", str(cfg))
    try:
        wait_for_log(move, "rollback window open", daemon)
        # The replica reads the source's heartbeat and holds nothing back.
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: name in d.get("source_replicas", {}) and not d["source_replicas"][name]["holds_copy"],
            "the source replica read under the limit",
        )
        source_replica.execute("STOP SLAVE SQL_THREAD")
        # The target's writes come once the daemon has read the stopped thread (its next reading),
        # so that what holds them is the replica, not a race with the reading.
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: d["source_replicas"][name]["problem"] == "SQL thread No",
            "the daemon reading the stopped SQL thread",
        )
        move.tgt("INSERT INTO a VALUES (900001, 1, 'window')", "UPDATE a SET v = 'changed' WHERE id <= 10")
        doc = wait_status(
            move,
            cfg,
            daemon,
            lambda d: d.get("throttle_reason", "") == f"source replica {name}: SQL thread No",
            "the reverse writes held on the stopped source replica",
        )
        assert doc["source_replicas"][name]["problem"] == "SQL thread No"
        assert doc["waiting_kind"] == "replica_lag"
        # Held: the source's renamed table has not taken the target's writes.
        assert not move.src("SELECT 1 FROM _a_moved WHERE id = 900001")
        again = status_json(move, cfg)
        assert again.get("throttle_reason", "").startswith(f"source replica {name}")
        assert not move.src("SELECT 1 FROM _a_moved WHERE id = 900001")
        source_replica.execute("START SLAVE SQL_THREAD")
        deadline_rows = rows(move.target, move.target_database, "a")
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: rows(move.source, move.database, "_a_moved") == deadline_rows,
            "the reverse feed catching up once the replica runs",
        )
        # Held again; then a rollback is asked for: the reverse feed is now the rollback's drain,
        # inside its outage, and goes on without waiting for the replica (like the forward drain).
        source_replica.execute("STOP SLAVE SQL_THREAD")
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: d["source_replicas"][name]["problem"] == "SQL thread No",
            "the daemon reading the stopped SQL thread again",
        )
        move.tgt("INSERT INTO a VALUES (900002, 2, 'held at the rollback')")
        wait_status(
            move,
            cfg,
            daemon,
            lambda d: d.get("throttle_reason", "").startswith(f"source replica {name}"),
            "the reverse writes held again",
        )
        result = move.cli("rollback", "-c", str(cfg), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        code = daemon.wait(timeout=120)
        assert move.src("SELECT v FROM a WHERE id = 900002") == [("held at the rollback",)]
    finally:
        source_replica.execute("START SLAVE SQL_THREAD")
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert "reverse feed throttled" in log and "reverse feed unthrottled" in log
    assert '"rollback_requested": true' in log, "the rollback released the held reverse writes"
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"a": "_a_rolledback"})
    # The source's replica ends identical to the source.
    caught_up(source_replica, move.source)
    assert_tables_equal(move.source, move.database, source_replica, move.database, {"a": "a"})
    # The heartbeat the window wrote on the source (side "source") reached the replica, and
    # cleanup takes it away with the reverse feed's checkpoint rows.
    where = "FROM information_schema.tables WHERE table_name = '_tablemover_heartbeat'"
    schemas = [r[0] for r in move.source.execute(f"SELECT table_schema {where}")]
    assert schemas, "no heartbeat table on the source"
    sides = source_replica.execute(f"SELECT side FROM `{schemas[0]}`._tablemover_heartbeat WHERE move = 't'")
    assert sides == [("source",)]
    cleaned = move.cli("cleanup", "-c", str(cfg))
    assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    for schema in schemas:
        assert not move.source.execute(
            f"SELECT 1 {where} AND table_schema = '{schema}'"
        ) or not move.source.execute(f"SELECT 1 FROM `{schema}`._tablemover_heartbeat WHERE move = 't'")
