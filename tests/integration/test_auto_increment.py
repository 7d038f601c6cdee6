"""The AUTO_INCREMENT counter at the cutover and at a rollback, on real servers.

A table whose top ids were deleted before the move: the copy leaves the target's counter at the
highest id copied plus one, below the source's. After the cutover the application's first insert
on the target must not get an id the source already handed out; after a rollback, the first insert
on the source must not get one the target handed out.
"""

from __future__ import annotations

import pymysql

from conftest import MoveEnv
from support import transitions, wait_for_log, write_hook
from tablemover.local.mariadb import LocalMariaDB

TABLE = "CREATE TABLE a (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32) NOT NULL)"
# A table without an AUTO_INCREMENT column moves beside it: nothing to carry there.
PLAIN = "CREATE TABLE p (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL)"


def counter(server: LocalMariaDB, database: str, table: str) -> int | None:
    """The table's AUTO_INCREMENT counter as the engine has it (None: no such column)."""
    found = server.execute(
        "SELECT AUTO_INCREMENT FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA='{database}' AND TABLE_NAME='{table}'"
    )
    return None if not found or found[0][0] is None else int(found[0][0])


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[str, str]]:
    """Every row, byte for byte."""
    return [
        (str(r[0]), str(r[1]))
        for r in server.execute(f"SELECT HEX(id), HEX(v) FROM `{database}`.`{table}` ORDER BY id")
    ]


def seed(move: MoveEnv) -> None:
    move.src(
        TABLE,
        # A plain multi-row INSERT allocates exactly its rows' ids (INSERT ... SELECT reserves more).
        "INSERT INTO a (v) VALUES " + ", ".join(f"('row-{i}')" for i in range(1, 101)),
        "DELETE FROM a WHERE id > 90",  # the top ids, handed out and gone before the move
        PLAIN,
        "INSERT INTO p SELECT seq, 'p' FROM seq_1_to_50",
    )
    assert counter(move.source, move.database, "a") == 101


def insert_id(server: LocalMariaDB, database: str, table: str) -> int:
    """The id the application's next insert gets."""
    conn = pymysql.connect(unix_socket=server.socket, user="root", database=database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{table}` (v) VALUES ('after')")
            return int(cur.lastrowid)
    finally:
        conn.close()


def test_the_cutover_carries_the_counter_over(move: MoveEnv) -> None:
    seed(move)
    hooks = move.workdir / "hooks"
    log = move.workdir / "hooks.log"
    # The hook is where the application starts writing: by then the counter must be carried.
    write_hook(
        hooks,
        "on-success",
        f"mariadb -uroot -S {move.target.socket} -N -e "
        f"\"SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA='{move.target_database}' "
        f"AND TABLE_NAME='a'\" >> {log}\n",
    )
    cfg = move.config(["a", "p"], move={"chunk_size": 30, "hooks_dir": str(hooks)})
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert transitions(move)[-3:] == ["DRAINED", "HOOK_FIRED", "DONE"]
    assert log.read_text().split() == ["101"], "the on-success hook saw the counter already carried"
    assert hex_rows(move.source, move.database, "_a_moved") == hex_rows(
        move.target, move.target_database, "a"
    )
    assert counter(move.target, move.target_database, "p") is None
    assert insert_id(move.target, move.target_database, "a") == 101
    # DONE does nothing again; the counter only ever rises.
    again = move.cli("run", "-c", str(cfg))
    assert again.returncode == 0, again.stderr[-3000:]
    assert counter(move.target, move.target_database, "a") == 102


def test_a_restart_in_drained_carries_the_counter_before_the_hook(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["a", "p"], move={"chunk_size": 30})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "state.DRAINED"})
    assert killed.returncode != 0
    assert transitions(move)[-1] == "DRAINED"
    assert counter(move.target, move.target_database, "a") == 91, "killed before the carry-over"
    # Killed again right after the ALTER: the next run finds the counter carried and does not lower it.
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "autoinc.after_alter"})
    assert killed.returncode != 0
    assert transitions(move)[-1] == "DRAINED"
    assert counter(move.target, move.target_database, "a") == 101
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert "AUTO_INCREMENT carried over" not in run.stderr + run.stdout
    assert insert_id(move.target, move.target_database, "a") == 101


def test_the_rollback_carries_the_counter_back(window_move: MoveEnv) -> None:
    move = window_move
    seed(move)
    cfg = move.config(["a", "p"], move={"chunk_size": 30, "rollback_window_s": 600})
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    # Our ALTER on the target came before the reverse feed's start: it did not stop the window.
    assert counter(move.target, move.target_database, "a") == 101
    conn = pymysql.connect(unix_socket=move.target.socket, user="root", database=move.target_database)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO a (id, v) VALUES (5000, 'high')")
            conn.commit()
            # An insert the application rolled back: its id is handed out on the target (InnoDB
            # does not give ids back), and no binlog event carries it to the source.
            cur.execute("INSERT INTO a (id, v) VALUES (9000, 'rolled back')")
            conn.rollback()
    finally:
        conn.close()
    assert counter(move.target, move.target_database, "a") == 9001
    result = move.cli("rollback", "-c", str(cfg), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert hex_rows(move.source, move.database, "a") == hex_rows(
        move.target, move.target_database, "_a_rolledback"
    )
    assert counter(move.source, move.database, "a") == 9001
    assert insert_id(move.source, move.database, "a") == 9001


def test_a_moved_table_missing_at_drained_is_refused_before_the_hook(move: MoveEnv) -> None:
    seed(move)
    hooks = move.workdir / "hooks"
    marker = move.workdir / "on-success-ran"
    write_hook(hooks, "on-success", f"touch {marker}\n")
    cfg = move.config(["a", "p"], move={"chunk_size": 30, "hooks_dir": str(hooks)})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "state.DRAINED"})
    assert killed.returncode != 0
    assert transitions(move)[-1] == "DRAINED"
    # Someone renames a moved table away on the target before the move resumes.
    move.tgt("RENAME TABLE a TO a_elsewhere")

    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 3, run.stdout + run.stderr[-3000:]
    assert "AUTO_INCREMENT counter of a cannot be carried over" in run.stderr, run.stderr[-3000:]
    assert f"the target has none of {move.target_database}.a" in run.stderr, run.stderr[-3000:]
    assert "put the table back" in run.stderr and "Nothing was switched" in run.stderr
    assert not marker.exists(), "on-success fired with a moved table missing"
    assert transitions(move)[-1] == "DRAINED"
    assert counter(move.target, move.target_database, "a_elsewhere") == 91, "nothing altered"

    # Put back, the move resumes: the counter is carried before the hook, and it finishes.
    move.tgt("RENAME TABLE a_elsewhere TO a")
    done = move.cli("run", "-c", str(cfg))
    assert done.returncode == 0, done.stderr[-3000:]
    assert transitions(move)[-3:] == ["DRAINED", "HOOK_FIRED", "DONE"]
    assert marker.exists()
    assert insert_id(move.target, move.target_database, "a") == 101
