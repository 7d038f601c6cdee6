"""The copy never lags the target's replicas (issue #27): a real GTID replica of the target.

A third mariadbd replicates from the pair's target with MASTER_USE_GTID; the move watches it
through ``[throttle] target_replicas``. Its SQL thread stopped holds the copy (the reason names the
replica and the thread); started again, the copy resumes and the move finishes equal row for row,
and the replica ends identical to the target.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import MoveEnv
from support import assert_tables_equal, transitions, wait_for_log, write_hook
from tablemover.local.mariadb import MOVER_USER, LocalMariaDB, LocalPair, replicate

TABLE = "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64))"


@pytest.fixture(scope="module")
def target_replica(pair: LocalPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMariaDB]:
    """A replica of the pair's target, replicating with GTID from the target's position now."""
    replica = LocalMariaDB(
        tmp_path_factory.mktemp("target-replica"),
        server_id=3,
        extra_args=("--skip-slave-start", "--report-host=127.0.0.1"),
    )
    replica.install()
    replica.start()
    try:
        replicate(replica, pair.target)
        yield replica
    finally:
        replica.stop()


def status_json(move: MoveEnv, cfg: Path) -> dict[str, Any]:
    """The running daemon's `status --json` ({} while it does not answer yet)."""
    out = move.cli("status", "-c", str(cfg), "--json")
    try:
        doc = json.loads(out.stdout)
    except json.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def wait_status(
    move: MoveEnv, cfg: Path, proc: Any, ok: Any, what: str, timeout: float = 120
) -> dict[str, Any]:
    """Poll `status --json` until ``ok(doc)``; fail if the daemon ends or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        doc = status_json(move, cfg)
        if doc and ok(doc):
            return doc
        log = (move.workdir / "daemon.log").read_text() if (move.workdir / "daemon.log").exists() else ""
        assert proc.poll() is None, f"the daemon ended before {what}:\n{log[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s; last status {doc}\n{log[-3000:]}"
        time.sleep(0.2)


def caught_up(replica: LocalMariaDB, master: LocalMariaDB) -> None:
    """Wait until the replica has applied everything the master has binlogged (MASTER_GTID_WAIT)."""
    pos = master.execute("SELECT @@gtid_binlog_pos")[0][0]
    assert replica.execute(f"SELECT MASTER_GTID_WAIT('{pos}', 120)")[0][0] == 0, "replica did not catch up"


@pytest.mark.parametrize("thread", ["SQL", "IO"])
def test_stopped_replica_thread_holds_the_copy_until_it_runs(
    move: MoveEnv, target_replica: LocalMariaDB, thread: str
) -> None:
    # A stopped SQL thread applies nothing; a stopped IO thread receives nothing: either way the
    # replica falls behind, and it counts as lagging at once (not after its heartbeat ages).
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_20000")
    name = f"127.0.0.1:{target_replica.port}"
    cfg = move.config(
        ["a"],
        move={"chunk_size": 200, "adaptive_chunk_size": False},
        throttle={"target_replicas": [name], "max_replica_lag_s": 1.5},
    )
    target_replica.execute(f"STOP SLAVE {thread}_THREAD")
    proc = move.popen("run", "-c", str(cfg))
    try:
        doc = wait_status(
            move,
            cfg,
            proc,
            lambda d: f"{thread} thread No" in d.get("throttle_reason", ""),
            f"a throttle reason naming the stopped {thread} thread",
        )
        assert doc["throttle_reason"] == f"target replica {name}: {thread} thread No"
        assert doc["waiting_kind"] == "replica_lag"
        assert doc["target_replicas"][name]["holds_copy"] is True
        assert doc["target_replicas"][name]["problem"] == f"{thread} thread No"
        held_at = doc["rows_copied"]
        assert held_at < 20000, "the copy must be held before it finished"
        # While held, no chunk starts: the copied count stays where it was across status reads
        # (the replica's reason still holding it at the second read proves time passed held).
        again = wait_status(
            move, cfg, proc, lambda d: d.get("throttle_reason", "") != "", "a second held read"
        )
        assert again["rows_copied"] <= held_at + 200, "at most the chunk in flight may land while held"
        assert proc.poll() is None
        target_replica.execute(f"START SLAVE {thread}_THREAD")
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        target_replica.execute(f"START SLAVE {thread}_THREAD")
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert "copy unthrottled" in log
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})
    # The replica holds this move's heartbeat, replicated from the target.
    beats = target_replica.execute(
        f"SELECT side FROM `{move.state_database}`._tablemover_heartbeat WHERE move = 't'"
    )
    assert beats == [("target",)]


def held_before_cutover(move: MoveEnv, replica: LocalMariaDB, **throttle: Any) -> tuple[Path, Path, Any]:
    """A move held before its cutover (postponed) with the replica watched; then the replica's SQL
    thread is stopped, source writes are made that the drain carries, and the cutover is released.
    Returns (config, on-success marker, daemon)."""
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_3000")
    hooks = move.workdir / "hooks"
    marker = move.workdir / "success.log"
    write_hook(hooks, "on-success", f"echo fired >> {marker}\n")
    cfg = move.config(
        ["a"],
        move={"postpone_cutover": True, "hooks_dir": str(hooks)},
        throttle={"target_replicas": [f"127.0.0.1:{replica.port}"], **throttle},
    )
    proc = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", proc)
    replica.execute("STOP SLAVE SQL_THREAD")
    move.src("UPDATE a SET v = 'drained' WHERE id <= 100", "INSERT INTO a VALUES (5000, 1, 'new')")
    released = move.cli("cutover", "-c", str(cfg))
    assert released.returncode == 0, released.stderr[-2000:]
    return cfg, marker, proc


def test_cutover_waits_for_a_replica_behind_the_drain(move: MoveEnv, target_replica: LocalMariaDB) -> None:
    cfg, marker, proc = held_before_cutover(move, target_replica)
    try:
        doc = wait_status(
            move, cfg, proc, lambda d: d.get("waiting_kind") == "replica_wait", "the cutover's replica wait"
        )
        assert doc["state"] == "DRAINED"
        assert f"127.0.0.1:{target_replica.port}" in doc["waiting_for"]
        assert not marker.exists(), "on-success fired before the replica held the drain position"
        target_replica.execute("START SLAVE SQL_THREAD")
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        target_replica.execute("START SLAVE SQL_THREAD")
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert marker.read_text() == "fired\n", "on-success fired once, after the wait"
    assert "target replicas hold the drain position" in log
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})


def test_replica_wait_timeout_stops_in_drained_and_a_rerun_finishes(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    cfg, marker, proc = held_before_cutover(move, target_replica, cutover_replica_wait_s=1)
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (move.workdir / "daemon.log").read_text()
    assert code == 3, log[-3000:]
    assert "did not hold the drain position" in log
    assert transitions(move)[-1] == "DRAINED"
    assert not marker.exists()
    target_replica.execute("START SLAVE SQL_THREAD")
    rerun = move.cli("run", "-c", str(cfg))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert marker.read_text() == "fired\n"
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})
    # cleanup takes the heartbeat away with the checkpoint rows.
    cleaned = move.cli("cleanup", "-c", str(cfg))
    assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    assert f"dropped {move.state_database}._tablemover_heartbeat" in cleaned.stdout + cleaned.stderr
    assert not move.target.execute(
        f"SELECT 1 FROM information_schema.tables WHERE table_schema = '{move.state_database}' "
        "AND table_name = '_tablemover_heartbeat'"
    )


def test_check_lists_the_watched_replicas_and_refuses_one_not_replicating_from_the_target(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    move.src(TABLE)
    good = f"127.0.0.1:{target_replica.port}"
    cfg = move.config(["a"], throttle={"target_replicas": [good]})
    ok = move.cli("check", "-c", str(cfg))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"target replicas watched (max_replica_lag_s 1.5): {good}" in ok.stdout
    assert f"{good}: replicates from the target" in ok.stdout

    # The source is reachable with the same credentials but is nobody's replica; a closed port is
    # not reachable at all. Both refuse (exit 2), each named.
    not_replica = f"127.0.0.1:{move.source.port}"
    # (SLAVE MONITOR there, so that what refuses it is that it replicates from nobody.)
    move.source.execute(f"GRANT SLAVE MONITOR ON *.* TO '{MOVER_USER}'@'%'")
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening: refused
            cfg = move.config(["a"], throttle={"target_replicas": [good, not_replica, closed]})
            bad = move.cli("check", "-c", str(cfg))
    finally:
        move.source.execute(f"REVOKE SLAVE MONITOR ON *.* FROM '{MOVER_USER}'@'%'")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert f"target replica {not_replica}: is not a replica" in bad.stderr
    assert f"target replica {closed}: cannot connect" in bad.stderr
    assert f"target replica {good}" not in bad.stderr


def test_check_names_a_registered_replica_that_is_not_watched(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    move.src(TABLE)
    cfg = move.config(["a"])
    # SHOW SLAVE HOSTS needs REPLICATION MASTER ADMIN on the target (only for this discovery).
    move.target.execute(f"GRANT REPLICATION MASTER ADMIN ON *.* TO '{MOVER_USER}'@'%'")
    try:
        result = move.cli("check", "-c", str(cfg))
    finally:
        move.target.execute(f"REVOKE REPLICATION MASTER ADMIN ON *.* FROM '{MOVER_USER}'@'%'")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "registered with the target but not watched" in result.stdout
    assert f"127.0.0.1:{target_replica.port}" in result.stdout
    assert "target replicas watched: none" in result.stdout


def test_unreachable_replica_holds_the_copy_until_sighup_drops_it(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_5000")
    good = f"127.0.0.1:{target_replica.port}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening: refused
        cfg = move.config(["a"], move={"chunk_size": 200}, throttle={"target_replicas": [good, dead]})
        proc = move.popen("run", "-c", str(cfg))
        try:
            doc = wait_status(
                move,
                cfg,
                proc,
                lambda d: "cannot be read" in d.get("throttle_reason", ""),
                "a throttle reason naming the unreachable replica",
            )
            assert doc["throttle_reason"].startswith(f"target replica {dead}: cannot be read")
            assert doc["target_replicas"][dead]["holds_copy"] is True
            assert doc["rows_copied"] < 5000
            # The operator drops the dead replica from the list and reloads.
            move.config(["a"], move={"chunk_size": 200}, throttle={"target_replicas": [good]})
            proc.send_signal(signal.SIGHUP)
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert "target replica no longer watched" in log
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})


def test_a_delayed_replica_holds_the_copy_by_its_measured_heartbeat_lag(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_5000")
    name = f"127.0.0.1:{target_replica.port}"
    cfg = move.config(
        ["a"], move={"chunk_size": 200}, throttle={"target_replicas": [name], "max_replica_lag_s": 1}
    )
    # Both threads run; the replica only applies each transaction 3 s after the target wrote it.
    target_replica.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 3", "START SLAVE")
    proc = move.popen("run", "-c", str(cfg))
    try:
        doc = wait_status(
            move,
            cfg,
            proc,
            lambda d: "> max_replica_lag_s 1" in d.get("throttle_reason", ""),
            "a throttle reason giving the replica's measured lag",
        )
        lag = doc["target_replicas"][name]["lag_s"]
        assert lag is not None and lag > 1, doc["target_replicas"]
        assert doc["target_replicas"][name]["problem"] == ""
        assert doc["rows_copied"] < 5000
    finally:
        target_replica.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE")
    try:
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})


def test_replica_wait_timeout_proceeds_when_configured(move: MoveEnv, target_replica: LocalMariaDB) -> None:
    _cfg, marker, proc = held_before_cutover(
        move, target_replica, cutover_replica_wait_s=1, replica_wait_timeout_action="proceed"
    )
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        target_replica.execute("START SLAVE SQL_THREAD")
    log = (move.workdir / "daemon.log").read_text()
    assert code == 0, log[-3000:]
    assert "proceeding as configured" in log
    assert marker.read_text() == "fired\n"
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})


def json_log(move: MoveEnv) -> list[dict[str, Any]]:
    """The daemon's JSON log lines, in order (lines that are not JSON, such as a traceback, skipped)."""
    lines = []
    for line in (move.workdir / "daemon.log").read_text().splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            lines.append(doc)
    return lines


@pytest.mark.parametrize("threads", [1, 4])
def test_the_copy_stops_starting_chunks_once_the_heartbeat_lag_passes_the_limit(
    move: MoveEnv, target_replica: LocalMariaDB, threads: int
) -> None:
    """The acceptance timing, read from the daemon's own JSON log rather than from wall-clock sleeps
    (a loaded 2-core machine stretches every interval): the replica's SQL thread is held behind a
    row lock on the heartbeat row (both threads still run, so only the measured lag can hold the
    copy); from the first reading over ``max_replica_lag_s`` no chunk is let start, only the
    chunks already in flight commit (at most one per stream), and the copy resumes only after a
    reading under the limit once the lock goes."""
    rows = 200000
    move.src(TABLE, f"INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_{rows}")
    name = f"127.0.0.1:{target_replica.port}"
    limit = 1.0
    hold = move.workdir / "hold"
    hold.touch()  # the copy waits on the flag file until the replica's heartbeat row can be locked
    cfg = move.config(
        ["a"],
        move={"chunk_size": 200, "adaptive_chunk_size": False, "copy_threads": threads},
        throttle={
            "target_replicas": [name],
            "max_replica_lag_s": limit,
            "heartbeat_interval_ms": 100,
            "flag_file": str(hold),
        },
    )
    proc = move.popen("--log-level", "DEBUG", "--log-format", "json", "run", "-c", str(cfg))
    holder = target_replica.admin()
    try:
        beat = (
            f"SELECT beat FROM `{move.state_database}`._tablemover_heartbeat "
            "WHERE move = 't' AND side = 'target'"
        )
        wait_status(
            move,
            cfg,
            proc,
            lambda d: (
                d.get("waiting_kind") == "flag_file"
                and bool(
                    target_replica.execute(
                        "SELECT COUNT(*) FROM information_schema.tables "
                        f"WHERE table_schema = '{move.state_database}' "
                        "AND table_name = '_tablemover_heartbeat'"
                    )[0][0]
                )
                and bool(target_replica.execute(beat))
            ),
            "the copy held on the flag file and the replica holding the heartbeat",
        )
        with holder.cursor() as cur:
            # The replica's SQL thread now waits behind this lock at the next beat it replays.
            cur.execute("BEGIN")
            cur.execute(beat + " FOR UPDATE")
            assert cur.fetchall()
        locked_at = time.time()
        hold.unlink()
        held = wait_status(
            move,
            cfg,
            proc,
            lambda d: f"> max_replica_lag_s {limit:g}" in d.get("throttle_reason", ""),
            "the throttle on the replica's measured lag",
        )
        assert held["target_replicas"][name]["problem"] == "", held["target_replicas"]
        assert held["rows_copied"] < rows, "the copy must be held before it finished"
        # Held for a few more readings, each over the limit, then the lock goes.
        wait_status(
            move,
            cfg,
            proc,
            lambda d: (d["target_replicas"][name]["lag_s"] or 0) > limit + 1,
            "the lag growing while held",
        )
        holder.rollback()
        code = proc.wait(timeout=300)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = json_log(move)
    assert code == 0, (move.workdir / "daemon.log").read_text()[-3000:]

    # The readings and the copy's chunks after the lock, in the daemon's own order.
    after = [line for line in log if line.get("ts", 0) >= locked_at]
    samples = [i for i, line in enumerate(after) if line["msg"] == "target replica sampled"]
    over = [i for i in samples if after[i]["problem"] == "" and (after[i]["lag_s"] or 0) > limit]
    assert over, "no reading over the limit in the log"
    first_over = over[0]
    under_again = next(
        i for i in samples if i > first_over and after[i]["problem"] == "" and after[i]["lag_s"] <= limit
    )
    resumed = next(i for i, line in enumerate(after) if i > first_over and line["msg"] == "copy unthrottled")
    throttled = next(i for i, line in enumerate(after) if i > first_over and line["msg"] == "copy throttled")

    def count(msg: str, lo: int, hi: int) -> int:
        return sum(1 for line in after[lo:hi] if line["msg"] == msg)

    # From the first reading over the limit to the reading back under it, no chunk started.
    assert count("copy chunk allowed", first_over, under_again) == 0
    assert count("copy chunk allowed", first_over, resumed) == 0
    # The throttle says so, naming the replica and its lag, before the copy resumes.
    assert throttled < resumed
    assert after[throttled]["reason"].startswith(f"target replica {name} lag ")
    # What committed while held is what was in flight when the reading came: at most one chunk
    # per stream (two with the serial copy's read-ahead).
    in_flight = count("copy chunk allowed", 0, first_over) - count("copy chunk committed", 0, first_over)
    before = [line for line in log if line.get("ts", 0) < locked_at]
    in_flight += sum(line["msg"] == "copy chunk allowed" for line in before) - sum(
        line["msg"] == "copy chunk committed" for line in before
    )
    streams = threads if threads > 1 else 2
    assert 0 <= in_flight <= streams, in_flight
    assert count("copy chunk committed", first_over, resumed) <= in_flight
    # The reading that held the copy is the first after the lag passed the limit: the previous
    # reading was under it, so the copy stopped within one heartbeat interval of the crossing.
    previous = [i for i in samples if i < first_over]
    if previous:
        last = after[previous[-1]]
        assert last["problem"] != "" or last["lag_s"] <= limit
    # It resumed after the reading under the limit, and the copy went on to the end.
    assert under_again < resumed
    assert count("copy chunk allowed", resumed, len(after)) > 0
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    caught_up(target_replica, move.target)
    assert_tables_equal(move.target, move.target_database, target_replica, move.target_database, {"a": "a"})


def test_check_follows_a_replication_chain_up_to_the_target(
    move: MoveEnv, target_replica: LocalMariaDB, tmp_path: Path
) -> None:
    """A watched replica of the target's replica (a chain) is accepted, naming the hop; its lag is
    the heartbeat's, which the chain carries like any other write."""
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_3000")
    chained = LocalMariaDB(tmp_path / "chained", server_id=5, extra_args=("--skip-slave-start",))
    chained.install()
    chained.start()
    try:
        replicate(chained, target_replica)
        # The chain's server_ids are learnt once each IO thread has connected.
        deadline = time.monotonic() + 60
        while not chained.execute("SELECT 1 FROM information_schema.processlist WHERE command = 'Slave_IO'"):
            assert time.monotonic() < deadline, "the chained replica's IO thread never connected"
            time.sleep(0.2)
        mid, end = f"127.0.0.1:{target_replica.port}", f"127.0.0.1:{chained.port}"
        cfg = move.config(["a"], throttle={"target_replicas": [end]})
        ok = move.cli("check", "-c", str(cfg))
        assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
        assert f"{end}: replicates from the target (server_id 2) through {mid}" in ok.stdout

        # The move runs throttled on the chained replica and ends with it identical to the target.
        done = move.cli("run", "-c", str(cfg))
        assert done.returncode == 0, done.stderr[-3000:]
        caught_up(chained, move.target)
        assert_tables_equal(move.target, move.target_database, chained, move.target_database, {"a": "a"})
        beats = chained.execute(
            f"SELECT side FROM `{move.state_database}`._tablemover_heartbeat WHERE move = 't'"
        )
        assert beats == [("target",)]

        # A chain that does not reach the target refuses: the chained replica now replicates from
        # the source (reachable, but not the target, and nobody's replica).
        chained.execute(
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {move.source.port}",
        )
        move.source.execute(f"GRANT SLAVE MONITOR ON *.* TO '{MOVER_USER}'@'%'")
        try:
            bad = move.cli("check", "-c", str(cfg))
        finally:
            move.source.execute(f"REVOKE SLAVE MONITOR ON *.* FROM '{MOVER_USER}'@'%'")
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert (
            f"target replica {end}: replicates through 127.0.0.1:{move.source.port}, which is not a replica"
            in (bad.stderr)
        )
    finally:
        chained.stop()


def test_run_refuses_a_watched_replica_that_does_not_replicate_from_the_target_before_anything_changes(
    move: MoveEnv, target_replica: LocalMariaDB
) -> None:
    move.src(TABLE, "INSERT INTO a SELECT seq, seq % 97, 'x' FROM seq_1_to_100")
    good = f"127.0.0.1:{target_replica.port}"
    not_replica = f"127.0.0.1:{move.source.port}"
    cfg = move.config(["a"], throttle={"target_replicas": [good, not_replica]})
    move.source.execute(f"GRANT SLAVE MONITOR ON *.* TO '{MOVER_USER}'@'%'")
    try:
        refused = move.cli("run", "-c", str(cfg))
    finally:
        move.source.execute(f"REVOKE SLAVE MONITOR ON *.* FROM '{MOVER_USER}'@'%'")
    assert refused.returncode == 2, refused.stdout + refused.stderr[-2000:]
    assert f"target replica {not_replica}: is not a replica" in refused.stderr
    # Nothing changed: no target table, no checkpoint, the source table where it was.
    assert not move.target.execute(
        f"SELECT 1 FROM information_schema.tables WHERE table_schema = '{move.target_database}'"
    )
    assert not move.target.execute(
        f"SELECT 1 FROM information_schema.tables WHERE table_schema = '{move.state_database}' "
        "AND table_name = '_tablemover_checkpoint'"
    )
    assert move.src("SELECT COUNT(*) FROM a") == [(100,)]
