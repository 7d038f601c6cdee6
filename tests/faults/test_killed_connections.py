"""Connections of a running daemon killed or blocked on the server side: it retries and finishes.

KILL CONNECTION of each of its connections (writer, copiers, lag tracker, samplers, move lock,
binlog stream), the Binlog Dump thread killed again and again with healthy periods in between,
and a target row lock that makes the writer hit a lock wait timeout and a deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pymysql
import pytest
from faultkit import (
    Conn,
    ReconnectingWriteLoad,
    daemon_connections,
    finish,
    kill_connection,
    log_count,
    log_text,
    renamed,
    retries_logged,
    seed,
    status,
    wait_copied,
    wait_logged,
    wait_until,
)

from conftest import MoveEnv
from support import assert_tables_equal, transitions

RESUMED = "resuming move from checkpoint"
STREAM_LOST = "binlog connection lost; reconnecting"


def find(move: MoveEnv, pid: int, server: str, role: str, timeout: float = 30) -> Conn:
    srv = move.source if server == "source" else move.target

    def probe() -> Conn | None:
        return next((c for c in daemon_connections(srv, server, pid) if c.role == role), None)

    return wait_until(f"the daemon's {server} {role} connection", probe, timeout)


def kill_role(move: MoveEnv, pid: int, server: str, role: str, tries: int = 5) -> Conn:
    """KILL the daemon's ``role`` connection; returns the one killed.

    A connection can end between being listed and being killed (the stream reconnecting after the
    previous kill replaces its control connection): then the new one is found and killed.
    """
    srv = move.source if server == "source" else move.target
    for _ in range(tries):
        conn = find(move, pid, server, role)
        if kill_connection(srv, conn.id):
            return conn
    raise AssertionError(f"the daemon's {server} {role} connection kept ending before it could be killed")


@pytest.mark.slow
def test_kill_each_daemon_connection(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=30_000)
    # postpone_cutover keeps the daemon (and all its connections) up after the copy; the copy is
    # slowed down so that the copiers are still there for the first kill.
    cfg = move.config(
        ["a", "b"], move={"chunk_size": 500, "adaptive_chunk_size": False, "postpone_cutover": True}
    )
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=30_000, pause_s=0.002)
    load.start()
    killed: list[Conn] = []
    try:
        proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "copy.after_read:0.03"})
        wait_copied(move, 1000)
        # Killed in this order, each once its connection exists again after the previous retry.
        # (server, role, what the daemon must log before the next kill)
        plan = [
            ("source", "copier", RESUMED),
            ("target", "writer", RESUMED),
            ("source", "lag", RESUMED),
            ("source", "sampler", RESUMED),
            ("target", "sampler", RESUMED),
            ("target", "lock", RESUMED),
            ("source", "stream", STREAM_LOST),
            # Idle until a reconnect or the cutover needs them: killing them must do no harm.
            ("source", "stream-ctl", None),
            ("source", "control", None),
        ]
        for server, role, expect in plan:
            before = log_count(move, expect) if expect else 0
            killed.append(kill_role(move, proc.pid, server, role))
            if expect:
                wait_logged(move, expect, before + 1, timeout=30)
        assert proc.poll() is None, log_text(move)[-3000:]
        # Work flows again after the last kill: the copy completes and the daemon answers.
        wait_until("copy complete", lambda: "copy complete and caught up" in log_text(move), 60)
        assert status(move, cfg)["source"] == "daemon"
        released = move.cli("cutover", "-c", str(cfg))
        assert released.returncode == 0, released.stdout + released.stderr
        finish(proc, move)
    finally:
        load.stop()
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())
    retries = retries_logged(move)
    # One retry per killed connection that was in use (the last six kinds before the stream).
    assert len(retries) >= 6, [r.get("error") for r in retries]
    errors = " | ".join(str(r.get("error")) for r in retries)
    assert "2013" in errors or "1927" in errors or "2006" in errors, errors
    assert {c.role for c in killed} >= {"copier", "writer", "lag", "sampler", "lock", "stream"}
    # Only the killed lock connection made it take the lock again; other faults kept it.
    assert log_count(move, "move lock taken") == 2, log_text(move)[-3000:]


@pytest.mark.slow
def test_binlog_dump_killed_again_and_again_with_healthy_periods(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=2000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=2000, pause_s=0.005)
    load.start()
    kills = 0
    try:
        proc = move.popen("run", "-c", str(cfg))
        wait_logged(move, "copy complete and caught up")
        last_dump = 0
        for _ in range(13):
            dump = find(move, proc.pid, "source", "stream")
            assert dump.id != last_dump, "the killed dump thread came back with the same id"
            # Healthy period: the stream applies what the source committed after the last kill.
            source_pos = str(move.source.execute("SELECT @@global.gtid_binlog_pos")[0][0])
            wait_until(
                f"the apply to reach {source_pos}",
                lambda: _covers(status(move, cfg).get("applied_gtid", ""), source_pos),  # noqa: B023
                timeout=30,
                every=0.1,
            )
            before = log_count(move, STREAM_LOST)
            assert kill_connection(move.source, dump.id)
            kills += 1
            last_dump = dump.id
            wait_logged(move, STREAM_LOST, before + 1, timeout=30)
        assert proc.poll() is None, log_text(move)[-3000:]
        released = move.cli("cutover", "-c", str(cfg))
        assert released.returncode == 0, released.stdout + released.stderr
        finish(proc, move)
    finally:
        load.stop()
    assert kills == 13
    assert log_count(move, STREAM_LOST) >= 13
    assert "failed" not in "".join(line for line in log_text(move).splitlines() if "binlog" in line)
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def _covers(applied: str, wanted: str) -> bool:
    """MariaDB single-domain positions ``0-1-N``: applied sequence number >= wanted's."""
    if not applied or not wanted:
        return False
    return int(applied.rsplit("-", 1)[-1]) >= int(wanted.rsplit("-", 1)[-1])


def test_target_row_lock_makes_the_writer_time_out_and_deadlock(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=6000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    # The writer's sessions take the global default: short, so a held row lock times it out soon.
    move.target.execute("SET GLOBAL innodb_lock_wait_timeout = 2")
    proc = move.popen("run", "-c", str(cfg))
    wait_logged(move, "copy complete and caught up")
    blocker = pymysql.connect(
        unix_socket=move.target.socket, user="root", database=move.target_database, autocommit=False
    )
    try:
        # 1205: a target transaction holds row a.1, the source changes it: the writer times out.
        blocker.cursor().execute("SELECT * FROM a WHERE id = 1 FOR UPDATE")
        before = len(retries_logged(move))
        move.src("UPDATE a SET v = 'after-lock-wait' WHERE id = 1")
        wait_until("a lock wait timeout retry", lambda: _retry_with(move, "1205", before), 30)
        blocker.rollback()

        # 1213: one source transaction deletes b.5001 and updates b.1. The writer applies deletes
        # before upserts, so it locks b.5001, then waits for b.1, which the blocker holds; the
        # blocker then asks for b.5001. The blocker changed 3000 rows, the writer one: InnoDB
        # rolls back the smaller transaction, the writer's.
        blocker.cursor().execute("UPDATE b SET k = k + 1 WHERE id <= 3000")
        before = len(retries_logged(move))
        move.src(
            "BEGIN", "DELETE FROM b WHERE id = 5001", "UPDATE b SET v = 'deadlock' WHERE id = 1", "COMMIT"
        )
        wait_until("the writer to wait for b.1", lambda: _writer_waits(move), 15, every=0.01)
        closing = threading.Thread(
            target=_lock_row, args=(blocker, "SELECT * FROM b WHERE id = 5001 FOR UPDATE"), daemon=True
        )
        closing.start()
        wait_until("a deadlock retry", lambda: _retry_with(move, "1213", before), 30)
        closing.join(timeout=10)
        blocker.rollback()
    finally:
        blocker.close()
        move.target.execute("SET GLOBAL innodb_lock_wait_timeout = DEFAULT")

    assert proc.poll() is None, log_text(move)[-3000:]
    # A deadlock or lock wait breaks no connection: the daemon kept its move lock throughout.
    assert log_count(move, "move lock taken") == 1, log_text(move)[-3000:]
    released = move.cli("cutover", "-c", str(cfg))
    assert released.returncode == 0, released.stdout + released.stderr
    finish(proc, move)
    assert transitions(move)[-1] == "DONE"
    assert move.tgt("SELECT v FROM a WHERE id = 1") == [("after-lock-wait",)]
    assert move.tgt("SELECT id, v FROM b WHERE id IN (1, 5001)") == [(1, "deadlock")]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def _retry_with(move: MoveEnv, code: str, after: int) -> bool:
    return any(f"error {code}" in str(r.get("error")) for r in retries_logged(move)[after:])


def _writer_waits(move: MoveEnv) -> bool:
    """The writer has been in a REPLACE into b for a while: it waits for the blocker's b.1."""
    sql = (
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'mover' "
        f"AND INFO LIKE 'REPLACE INTO `{move.target_database}`.`b`%'"
    )
    first = move.target.execute(sql)
    time.sleep(0.1)
    return bool(first) and first == move.target.execute(sql)


def _lock_row(conn: Any, statement: str) -> None:
    # If InnoDB picked the blocker as the victim after all, the wait for the writer's 1213 fails.
    with contextlib.suppress(pymysql.err.MySQLError):
        conn.cursor().execute(statement)
