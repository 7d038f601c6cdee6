"""Events the move cannot reproduce stop it with exit 3 before anything of them is applied.

Each test runs a real move up to the postponed cutover, then has an application session do the
thing (a statement-logged write, a partial row image, DDL on a moved table, a purged binlog) and
checks what the operator sees: the exit code, the message, the persisted FAILED state that
`status` and `check` repeat, and a target that holds nothing of the refused transaction.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pymysql
import pytest

from conftest import MoveEnv
from support import assert_tables_equal, rows

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), t TEXT)"
WAIT_S = 120


def seed(move: MoveEnv, tables: tuple[str, ...] = ("a", "b"), count: int = 300) -> None:
    for name in tables:
        move.src(
            TABLE.format(name=name),
            f"INSERT INTO {name} SELECT seq, seq % 7, CONCAT('seed-', seq), REPEAT('x', seq % 50) "
            f"FROM seq_1_to_{count}",
        )


def wait_for(path: Path, text: str, proc: subprocess.Popen[str] | None = None) -> str:
    """Wait until the daemon log contains ``text`` (or the daemon ended); return the log."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        log = path.read_text() if path.exists() else ""
        if text in log or (proc is not None and proc.poll() is not None):
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the daemon log after {WAIT_S} s:\n{log[-3000:]}")


def start_postponed(move: MoveEnv, tables: list[str]) -> tuple[Path, subprocess.Popen[str]]:
    """A daemon that has copied everything, caught up, and waits for `tablemover cutover`."""
    cfg = move.config(tables, move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    log = wait_for(move.workdir / "daemon.log", "cutover postponed", proc)
    assert proc.poll() is None, log[-3000:]
    return cfg, proc


def session(move: MoveEnv, *statements: str) -> None:
    """Run statements in one application session (its own session settings), committing at the end."""
    conn = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def applied_gtid(move: MoveEnv) -> str:
    found = move.target.execute(
        f"SELECT applied_gtid FROM `{move.state_database}`._tablemover_checkpoint "
        "WHERE kind <> 'owner' ORDER BY id DESC LIMIT 1"
    )
    return str(found[0][0])


def source_seq(move: MoveEnv) -> int:
    pos = str(move.source.execute("SELECT @@global.gtid_binlog_pos")[0][0])
    return int(pos.split("-")[-1])


def assert_stopped_for_operator(move: MoveEnv, cfg: Path, proc: subprocess.Popen[str], *words: str) -> str:
    """Exit 3, the words in the message, FAILED persisted, and `status`/`check` repeat it."""
    assert proc.wait(timeout=WAIT_S) == 3, (move.workdir / "daemon.log").read_text()[-4000:]
    log = (move.workdir / "daemon.log").read_text()
    for word in words:
        assert word in log, f"{word!r} missing from:\n{log[-3000:]}"
    state = move.target.execute(
        f"SELECT state, detail FROM `{move.state_database}`._tablemover_checkpoint "
        "WHERE kind='transition' ORDER BY id DESC LIMIT 1"
    )[0]
    assert state[0] == "FAILED", state
    status = move.cli("status", "-c", str(cfg))
    assert status.returncode == 3 and "FAILED" in status.stdout and words[0] in status.stdout, status
    check = move.cli("check", "-c", str(cfg))
    assert check.returncode == 3 and words[0] in check.stderr, check
    again = move.cli("run", "-c", str(cfg))
    assert again.returncode == 3 and "discard" in again.stderr, again
    return log


@pytest.mark.parametrize("binlog_format", ["STATEMENT", "MIXED"])
def test_statement_logged_writes_stop_the_move_before_anything_is_applied(
    move: MoveEnv, binlog_format: str
) -> None:
    seed(move)
    cfg, proc = start_postponed(move, ["a", "b"])
    before = rows(move.target, move.target_database, "a")
    seq_before = source_seq(move)
    session(
        move,
        f"SET SESSION binlog_format='{binlog_format}'",
        "UPDATE a SET v = 'by statement' WHERE id <= 10",
        "DELETE FROM a WHERE id BETWEEN 11 AND 15",
    )
    log = assert_stopped_for_operator(
        move, cfg, proc, "binlog_format=STATEMENT or MIXED", f"{move.database}.a", "UPDATE a SET v"
    )
    assert f"0-1-{seq_before + 1}" in log, "the message names the transaction's GTID"
    assert "by statement" not in log, "only the statement's digest is published, never a literal"
    assert rows(move.target, move.target_database, "a") == before, "nothing of it may be applied"
    applied = applied_gtid(move)
    assert int(applied.split("-")[-1]) <= seq_before, applied


def test_statement_logged_writes_to_other_tables_do_not_stop_it(move: MoveEnv) -> None:
    seed(move, ("a",))
    move.src("CREATE TABLE other (id INT PRIMARY KEY, v INT)")
    cfg, proc = start_postponed(move, ["a"])
    session(move, "SET SESSION binlog_format='STATEMENT'", "INSERT INTO other VALUES (1, 1)")
    session(move, "UPDATE a SET v = 'row image' WHERE id = 3")
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=WAIT_S) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})


@pytest.mark.parametrize(
    ("row_image", "statement"),
    [
        ("MINIMAL", "UPDATE a SET v = 'minimal' WHERE id = 3"),
        ("NOBLOB", "UPDATE a SET v = 'nb' WHERE id = 4"),
    ],
)
def test_partial_row_images_stop_the_move(move: MoveEnv, row_image: str, statement: str) -> None:
    seed(move)
    cfg, proc = start_postponed(move, ["a", "b"])
    before = rows(move.target, move.target_database, "a")
    session(move, f"SET SESSION binlog_row_image='{row_image}'", statement)
    assert_stopped_for_operator(move, cfg, proc, "binlog_row_image=MINIMAL or NOBLOB", f"{move.database}.a")
    assert rows(move.target, move.target_database, "a") == before


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE a_backup LIKE a",
        "CREATE TABLE a_copy AS SELECT * FROM a WHERE id < 50",
        "CREATE VIEW a_view AS SELECT id, v FROM a",
        "ALTER TABLE b_unrelated ADD COLUMN note VARCHAR(10) /* ALTER TABLE a */",
        "CREATE TABLE IF NOT EXISTS a (id INT PRIMARY KEY)",
    ],
)
def test_harmless_statements_on_moved_tables_let_the_move_finish(move: MoveEnv, statement: str) -> None:
    seed(move, ("a",))
    move.src("CREATE TABLE b_unrelated (id INT PRIMARY KEY)")
    cfg, proc = start_postponed(move, ["a"])
    move.src(statement)
    move.src("UPDATE a SET v = 'after the statement' WHERE id = 7")
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=WAIT_S) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("ALTER TABLE a ADD COLUMN extra INT", "DDL on moved table"),
        ("DROP TABLE b", "DDL on moved table"),
        ("RENAME TABLE a TO a_old", "DDL on moved table"),
        ("TRUNCATE TABLE a", "TRUNCATE"),
    ],
)
def test_ddl_on_a_moved_table_stops_the_move(move: MoveEnv, statement: str, words: str) -> None:
    seed(move)
    cfg, proc = start_postponed(move, ["a", "b"])
    before = {t: rows(move.target, move.target_database, t) for t in ("a", "b")}
    move.src(statement)
    assert_stopped_for_operator(move, cfg, proc, words, statement.split()[0])
    assert {t: rows(move.target, move.target_database, t) for t in ("a", "b")} == before
    columns = move.tgt("SHOW COLUMNS FROM a")
    assert [c[0] for c in columns] == ["id", "k", "v", "t"], "nothing of the DDL reached the target"


def test_a_purged_binlog_is_an_operator_decision(move: MoveEnv) -> None:
    seed(move, ("a",))
    cfg = move.config(["a"])
    stopped = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    move.src("UPDATE a SET v = 'while stopped' WHERE id = 1")
    move.source.execute("FLUSH BINARY LOGS")
    newest = move.source.execute("SHOW BINARY LOGS")[-1][0]
    # MariaDB keeps a binlog until InnoDB's binlog checkpoint has passed it (crash recovery), and
    # a dump thread may still read it: purge until only the newest is left.
    deadline = time.monotonic() + 60
    while len(move.source.execute("SHOW BINARY LOGS")) > 1 and time.monotonic() < deadline:
        move.source.execute(f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.2)
    assert move.source.execute("SHOW BINARY LOGS")[0][0] == newest, "the test could not purge"
    check = move.cli("check", "-c", str(cfg))
    assert check.returncode == 3 and "purged" in check.stderr and "domain 0" in check.stderr, check
    run = move.cli("run", "-c", str(cfg), timeout=60)
    assert run.returncode == 3 and "purged" in run.stderr and "discard" in run.stderr, run.stderr[-2000:]
    assert "reconnecting" not in run.stderr
