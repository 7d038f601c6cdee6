"""Crash drills for the rollback window: SIGKILL in every window and rollback state and at the
instants between each RENAME and its checkpoint, with the application writing to the target; the
restarted daemon must finish the rollback, and the source must then hold exactly what the target
held, every write the target acknowledged included."""

from __future__ import annotations

import threading
from pathlib import Path

import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, transitions, wait_for_log, write_hook

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
ROLLED_BACK = {"a": "_a_rolledback", "b": "_b_rolledback"}

POINTS = [
    "state.WINDOW_OPEN",  # window recorded, reverse feed not started
    "state.ROLLBACK_STARTED",  # intent written, target not renamed
    "rollback.after_rename",  # target RENAME committed, ROLLBACK_RENAMED not written
    "state.ROLLBACK_RENAMED",
    "state.ROLLBACK_DRAINED",  # source tables not yet given their names back
    "restore.after_rename",  # source RENAME back committed, hook not run
    "hook.before_rollback",  # hook attempt 1 recorded, hook not started
    "state.ROLLED_BACK",
]


def setup(move: MoveEnv) -> tuple[Path, Path]:
    for t in ("a", "b"):
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_2000",
        )
    hooks, log = move.workdir / "hooks", move.workdir / "hooks.log"
    write_hook(hooks, "on-rollback", f'echo "rollback $TABLEMOVER_HOOK_ATTEMPT" >> {log}\n')
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "hooks_dir": str(hooks), "rollback_window_s": 600})
    return cfg, log


def renames_on(server: object, database: str, table: str, to: str) -> int:
    """How many RENAMEs of ``database.table`` to ``to`` a server's binlog holds."""
    count = 0
    for name, *_rest in server.execute("SHOW BINARY LOGS"):  # type: ignore[attr-defined]
        for ev in server.execute(f"SHOW BINLOG EVENTS IN '{name}'"):  # type: ignore[attr-defined]
            info = str(ev[-1])
            if "RENAME" in info and f"`{database}`.`{table}` TO `{database}`.`{to}`" in info:
                count += 1
    return count


def acknowledged_inserts(move: MoveEnv, stop: threading.Event, acked: list[int]) -> None:
    """Unique inserts into the target's table b; each committed id is a write the target acknowledged."""
    n = 100_000
    while not stop.is_set():
        try:
            conn = pymysql.connect(unix_socket=move.target.socket, user="root", database=move.target_database)
        except pymysql.err.MySQLError:
            continue
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    n += 1
                    cur.execute("INSERT INTO b VALUES (%s, 1, 'acked')", (n,))
                    conn.commit()
                    acked.append(n)
        except pymysql.err.MySQLError as exc:
            if exc.args[0] == 1146:  # renamed away by the rollback: the application is cut off
                return
        finally:
            conn.close()


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_in_the_rollback_then_restart_completes(window_move: MoveEnv, point: str) -> None:
    move = window_move
    cfg, log = setup(move)
    first = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": point})
    if point == "state.WINDOW_OPEN":
        # Killed as the window opens; the application already writes to the target, and the
        # restarted daemon's reverse feed must pick up what it wrote meanwhile.
        assert first.wait(timeout=300) == -9, (move.workdir / "daemon.log").read_text()[-3000:]
    else:
        wait_for_log(move, "rollback window open", first)
    load = WriteLoad(move.target, move.target_database, ["a"], key_space=2000, pause_s=0.002)
    stop, acked = threading.Event(), []  # type: ignore[var-annotated]
    inserter = threading.Thread(target=acknowledged_inserts, args=(move, stop, acked), daemon=True)
    load.start()
    inserter.start()
    try:
        if point != "state.WINDOW_OPEN":
            asked = move.cli("rollback", "-c", str(cfg), "--no-wait")
            assert asked.returncode == 0, asked.stdout + asked.stderr[-2000:]
        assert first.wait(timeout=300) == -9, (move.workdir / "daemon.log").read_text()[-3000:]
        second = move.popen("run", "-c", str(cfg))
        if point == "state.WINDOW_OPEN":
            wait_for_log(move, "resuming move from checkpoint", second)
            rollback = move.cli("rollback", "-c", str(cfg), timeout=300)
            assert rollback.returncode == 0, rollback.stdout + rollback.stderr[-2000:]
        assert second.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    finally:
        stop.set()
        load.stop()
        inserter.join(timeout=30)

    states = transitions(move)
    assert states[-1] == "ROLLED_BACK", states
    assert states.count("ROLLBACK_RENAMED") == 1, states
    assert renames_on(move.target, move.target_database, "a", "_a_rolledback") == 1
    assert renames_on(move.source, move.database, "_a_moved", "a") == 1
    assert_tables_equal(move.source, move.database, move.target, move.target_database, ROLLED_BACK)
    assert acked, "the target acknowledged no write during the drill"
    present = {r[0] for r in move.src("SELECT id FROM b WHERE id > 100000")}
    lost = [n for n in acked if n not in present]
    assert not lost, f"{len(lost)} writes the target acknowledged are not on the source: {lost[:5]}"
    lines = log.read_text().splitlines() if log.exists() else []
    assert lines == (["rollback 2"] if point == "hook.before_rollback" else ["rollback 1"]), lines
