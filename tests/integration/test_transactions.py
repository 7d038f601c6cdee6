"""Transactions as the server commits them: XA, savepoints and ROLLBACK on real servers.

Each case runs after the copy (the daemon waits at a postponed cutover, streaming), then the
cutover is released and the target must equal the source row for row (HEX of every column):
rolled-back rows never reach the target, committed ones do, once.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pymysql

from conftest import MoveEnv

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARBINARY(64), t TEXT)"
WAIT_S = 120


def seed(move: MoveEnv) -> None:
    for name in ("a", "b"):
        move.src(
            TABLE.format(name=name),
            f"INSERT INTO {name} SELECT seq, seq % 7, CONCAT('seed-', seq), REPEAT('x', seq % 50) "
            "FROM seq_1_to_300",
        )
    move.src("CREATE TABLE m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM")


def wait_for(path: Path, text: str, proc: subprocess.Popen[str], after: int = 0) -> None:
    """Wait until ``text`` is in the daemon log past its first ``after`` characters."""
    deadline = time.monotonic() + WAIT_S
    while text not in (path.read_text()[after:] if path.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, path.read_text()[-3000:]
        time.sleep(0.1)


def start(move: MoveEnv) -> tuple[Path, subprocess.Popen[str]]:
    """A daemon that has copied a and b, caught up, and waits for `tablemover cutover`."""
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    wait_for(move.workdir / "daemon.log", "cutover postponed", proc)
    return cfg, proc


def connect(move: MoveEnv) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(
        unix_socket=move.source.socket, user="root", database=move.database, autocommit=True
    )


def run(move: MoveEnv, *statements: str) -> None:
    conn = connect(move)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def hexed(server: object, database: str, table: str) -> list[tuple[object, ...]]:
    return list(
        server.execute(  # type: ignore[attr-defined]
            f"SELECT id, k, HEX(v), HEX(t) FROM `{database}`.`{table}` ORDER BY id"
        )
    )


def finish_and_compare(move: MoveEnv, cfg: Path, proc: subprocess.Popen[str]) -> None:
    """Release the cutover, wait for DONE, compare the renamed source with the target."""
    marker_seq = str(move.source.execute("SELECT @@global.gtid_binlog_pos")[0][0])
    assert marker_seq
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=WAIT_S) == 0, (move.workdir / "daemon.log").read_text()[-4000:]
    for table in ("a", "b"):
        source = hexed(move.source, move.database, f"_{table}_moved")
        assert source == hexed(move.target, move.target_database, table), table


def test_rollback_to_savepoint_with_a_myisam_write(move: MoveEnv) -> None:
    seed(move)
    cfg, proc = start(move)
    run(
        move,
        "BEGIN",
        "INSERT INTO a VALUES (1001, 1, 'kept', 'kept')",
        "SAVEPOINT s1",
        "UPDATE a SET v = 'rolled back' WHERE id <= 20",
        "DELETE FROM b WHERE id BETWEEN 30 AND 40",
        "INSERT INTO a VALUES (1002, 1, 'gone', 'gone')",
        "SAVEPOINT s2",
        "UPDATE b SET k = 99 WHERE id = 7",
        "INSERT INTO m VALUES (1, 1)",  # non-transactional: the savepoints reach the binlog
        "ROLLBACK TO SAVEPOINT s2",
        "UPDATE b SET k = 55 WHERE id = 8",
        "ROLLBACK TO SAVEPOINT s1",
        "UPDATE a SET k = 42 WHERE id = 5",
        "COMMIT",
    )
    assert move.src("SELECT v FROM a WHERE id = 1") == [(b"seed-1",)]
    finish_and_compare(move, cfg, proc)


def test_a_logged_rollback_applies_nothing_of_its_rows(move: MoveEnv) -> None:
    seed(move)
    cfg, proc = start(move)
    run(
        move,
        "BEGIN",
        "SAVEPOINT s0",
        "INSERT INTO m VALUES (2, 2)",
        "UPDATE a SET v = 'never' WHERE id <= 50",
        "ROLLBACK TO SAVEPOINT s0",
        "UPDATE a SET k = 43 WHERE id = 6",
        "COMMIT",
    )
    run(move, "UPDATE b SET v = 'after' WHERE id = 1")
    finish_and_compare(move, cfg, proc)


def test_xa_commit_and_rollback_in_the_same_session(move: MoveEnv) -> None:
    seed(move)
    cfg, proc = start(move)
    run(
        move,
        "XA START 'committed'",
        "UPDATE a SET v = 'xa commit' WHERE id <= 10",
        "INSERT INTO b VALUES (2001, 1, 'xa', 'xa')",
        "XA END 'committed'",
        "XA PREPARE 'committed'",
        "XA COMMIT 'committed'",
    )
    run(
        move,
        "XA START 'undone'",
        "UPDATE a SET v = 'xa rollback' WHERE id BETWEEN 11 AND 20",
        "DELETE FROM b WHERE id <= 5",
        "XA END 'undone'",
        "XA PREPARE 'undone'",
        "XA ROLLBACK 'undone'",
    )
    run(
        move,
        "XA START 'one'",
        "UPDATE b SET k = 77 WHERE id = 9",
        "XA END 'one'",
        "XA COMMIT 'one' ONE PHASE",
    )
    run(move, "XA START 'other'", "INSERT INTO m VALUES (3, 3)", "XA END 'other'", "XA PREPARE 'other'")
    run(move, "XA COMMIT 'other'")
    finish_and_compare(move, cfg, proc)


def test_a_prepared_xa_survives_a_disconnect_and_a_daemon_kill(move: MoveEnv) -> None:
    seed(move)
    cfg, proc = start(move)
    run(
        move,
        "XA START 'left'",
        "UPDATE a SET v = 'prepared then rolled back' WHERE id <= 10",
        "XA END 'left'",
        "XA PREPARE 'left'",
    )  # the session ends with the XA prepared
    run(
        move,
        "XA START 'kept'",
        "UPDATE a SET v = 'prepared then committed' WHERE id BETWEEN 21 AND 30",
        "XA END 'kept'",
        "XA PREPARE 'kept'",
    )
    run(move, "UPDATE b SET v = 'meanwhile' WHERE id = 3")  # committed while both are pending
    assert len(move.src("XA RECOVER")) == 2
    # Held back while prepared (and what committed after them with them): none of it is on the target.
    assert move.tgt("SELECT COUNT(*) FROM a WHERE v LIKE 'prepared%'") == [(0,)]
    proc.kill()
    proc.wait(timeout=30)
    run(move, "XA ROLLBACK 'left'")
    log = move.workdir / "daemon.log"
    seen = len(log.read_text())
    proc = move.popen("run", "-c", str(cfg))
    try:
        # The restarted stream reads both prepares again (its position is before them); it can
        # catch up only once 'kept' has its outcome too.
        run(move, "XA COMMIT 'kept'")
        wait_for(log, "cutover postponed", proc, after=seen)
        finish_and_compare(move, cfg, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        for _fmt, _g, _b, xid in move.src("XA RECOVER"):
            run(move, f"XA ROLLBACK '{xid.decode() if isinstance(xid, bytes) else xid}'")
    assert move.tgt("SELECT COUNT(*) FROM a WHERE v = 'prepared then committed'") == [(10,)]
    assert move.tgt("SELECT COUNT(*) FROM a WHERE v = 'prepared then rolled back'") == [(0,)]
