"""The rollback window on real servers: the target's writes stream back into the renamed source
tables; `tablemover rollback` returns to the source with nothing lost; the window elapsing ends the
move at DONE; a declined rollback leaves the move on the target with the window open."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

from conftest import MoveEnv
from support import (
    WriteLoad,
    assert_tables_equal,
    checkpoint_table,
    forge_row,
    rows,
    transitions,
    wait_for_log,
    write_hook,
)

SIMPLE = "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
# A table as users have them: a composite key of ENUM, DATE, DECIMAL and a case-insensitive utf8mb4
# string, a secondary unique key, JSON, a nullable BLOB.
COMPOSITE = (
    "CREATE TABLE c (region ENUM('eu','us','ap') NOT NULL, day DATE NOT NULL, price DECIMAL(10,2) NOT NULL, "
    "name VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, "
    "serial INT NOT NULL, doc JSON, note BLOB NULL, "
    "PRIMARY KEY (region, day, price, name), UNIQUE KEY (serial)) DEFAULT CHARSET=utf8mb4"
)
TABLES = {"_a_moved": "a", "_c_moved": "c"}
ROLLED_BACK = {"a": "_a_rolledback", "c": "_c_rolledback"}


def setup(move: MoveEnv, window_s: float, hooks: dict[str, str] | None = None, **move_keys: Any) -> Path:
    move.src(
        SIMPLE,
        "INSERT INTO a SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_2000",
        COMPOSITE,
        "INSERT INTO c SELECT ELT(1 + seq % 3, 'eu', 'us', 'ap'), '2024-01-01' + INTERVAL seq DAY, "
        "seq / 4, CONCAT('Zoë-', seq), seq, JSON_OBJECT('n', seq), IF(seq % 5, NULL, x'00ff') "
        "FROM seq_1_to_500",
    )
    hooks_dir = move.workdir / "hooks"
    log = move.workdir / "hooks.log"
    for name in ("success", "before-rollback", "rollback"):
        body = (hooks or {}).get(name, "")
        write_hook(hooks_dir, f"on-{name}", f'echo "{name} $TABLEMOVER_STATE" >> {log}\n{body}')
    return move.config(
        ["a", "c"],
        move={"chunk_size": 300, "hooks_dir": str(hooks_dir), "rollback_window_s": window_s, **move_keys},
    )


def hook_lines(move: MoveEnv) -> list[str]:
    log = move.workdir / "hooks.log"
    return log.read_text().splitlines() if log.exists() else []


def status(move: MoveEnv, cfg: Path) -> dict[str, Any]:
    result = move.cli("status", "-c", str(cfg), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def composite_writes(move: MoveEnv, stop: threading.Event, done: list[int]) -> None:
    """Inserts, updates of key columns, deletes on the composite table of the target."""
    conn = pymysql.connect(unix_socket=move.target.socket, user="root", database=move.target_database)
    n = 10_000
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                n += 1
                try:
                    cur.execute(
                        "INSERT INTO c VALUES (ELT(1 + %s %% 3, 'eu','us','ap'), "
                        "'2030-01-01' + INTERVAL %s DAY,"
                        " %s / 8, CONCAT('Åsa-', %s), %s, JSON_ARRAY(%s, 'x'), NULL)",
                        (n, n % 700, n, n, n, n),
                    )
                    cur.execute("UPDATE c SET price = price + 1, note = x'0102' WHERE serial = %s", (n - 5,))
                    cur.execute("UPDATE c SET region = 'ap', name = UPPER(name) WHERE serial = %s", (n - 7,))
                    cur.execute("DELETE FROM c WHERE serial = %s", (n - 11,))
                    conn.commit()
                    done.append(n)
                except pymysql.err.MySQLError as exc:
                    conn.rollback()
                    if exc.args[0] == 1146:  # the rollback renamed the table away: writes stop here
                        return
                    if exc.args[0] not in (1062, 1213, 1205):
                        raise
    finally:
        conn.close()


class TargetTraffic:
    """The application after the cutover: writes to both moved tables on the target."""

    def __init__(self, move: MoveEnv) -> None:
        self.load = WriteLoad(move.target, move.target_database, ["a"], key_space=2000, pause_s=0.002)
        self.stop_event = threading.Event()
        self.composite_done: list[int] = []
        self.thread = threading.Thread(
            target=composite_writes, args=(move, self.stop_event, self.composite_done), daemon=True
        )

    def start(self) -> TargetTraffic:
        self.load.start()
        self.thread.start()
        return self

    def wait_for_writes(self, ops: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.load.ops < ops or len(self.composite_done) < ops // 10:
            assert time.monotonic() < deadline, f"target writes stalled: {self.load.ops} ops"
            time.sleep(0.05)

    def stop(self) -> None:
        self.stop_event.set()
        self.load.stop()
        self.thread.join(timeout=30)


def wait_until(predicate: Any, what: str, timeout: float = 120, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the daemon ended while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.1)


def assert_rolled_back(move: MoveEnv) -> None:
    """The source's tables, back under their names, hold exactly what the target's had."""
    assert_tables_equal(move.source, move.database, move.target, move.target_database, ROLLED_BACK)


def source_holds_target(move: MoveEnv) -> bool:
    return all(
        rows(move.source, move.database, renamed) == rows(move.target, move.target_database, table)
        for renamed, table in TABLES.items()
    )


def test_rollback_after_writes_on_the_target_loses_nothing(window_move: MoveEnv) -> None:
    move = window_move
    cfg = setup(move, window_s=600)
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    assert status(move, cfg)["state"] == "WINDOW_OPEN"
    traffic = TargetTraffic(move).start()
    try:
        traffic.wait_for_writes(300)
        doc = status(move, cfg)
        assert (
            doc["window_closes_in_s"] > 500 and "reverse_lag_s" in doc and doc["rollback_requested"] is False
        )
        # The rollback runs while the application still writes to the target: every write the
        # target acknowledged before its RENAME must reach the source, later ones fail (no table).
        result = move.cli("rollback", "-c", str(cfg), timeout=300)
    finally:
        traffic.stop()
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "rolled back" in result.stdout
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]

    states = transitions(move)
    assert states[-6:] == [
        "HOOK_FIRED",
        "WINDOW_OPEN",
        "ROLLBACK_STARTED",
        "ROLLBACK_RENAMED",
        "ROLLBACK_DRAINED",
        "ROLLED_BACK",
    ], states
    # The source has its tables back under their names, holding exactly what the target had.
    assert_rolled_back(move)
    source_tables = {r[0] for r in move.src("SHOW TABLES")}
    target_tables = {r[0] for r in move.tgt("SHOW TABLES")}
    assert {"a", "c"} <= source_tables and not {"_a_moved", "_c_moved"} & source_tables
    assert {"_a_rolledback", "_c_rolledback"} <= target_tables and not {"a", "c"} & target_tables
    assert traffic.load.ops >= 300
    assert all("1146" in e for e in traffic.load.errors), traffic.load.errors[:3]
    lines = hook_lines(move)
    assert lines == ["success DRAINED", "before-rollback ROLLBACK_STARTED", "rollback ROLLBACK_DRAINED"], (
        lines
    )
    assert status(move, cfg)["state"] == "ROLLED_BACK"


def test_window_elapses_and_the_move_ends_done(window_move: MoveEnv) -> None:
    move = window_move
    cfg = setup(move, window_s=12)
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    traffic = TargetTraffic(move).start()
    try:
        traffic.wait_for_writes(200)
    finally:
        traffic.stop()
    # While the window is open the source's renamed tables catch up with everything the target took.
    wait_until(lambda: source_holds_target(move), "the reverse feed catching up", timeout=60, proc=daemon)
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert transitions(move)[-3:] == ["HOOK_FIRED", "WINDOW_OPEN", "DONE"]
    assert "rollback window elapsed" in (move.workdir / "daemon.log").read_text()
    # A rollback after the window is refused: nobody serves it and the state is final.
    late = move.cli("rollback", "-c", str(cfg))
    assert late.returncode == 2 and "no daemon" in late.stderr, late.stderr[-2000:]


def test_declined_rollback_keeps_the_window_open(window_move: MoveEnv) -> None:
    move = window_move
    flag = move.workdir / "decline"
    flag.touch()
    cfg = setup(move, window_s=600, hooks={"before-rollback": f"test ! -e {flag}\n"})
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    declined = move.cli("rollback", "-c", str(cfg), timeout=120)
    assert declined.returncode == 3, declined.stdout + declined.stderr[-2000:]
    assert "declined" in declined.stdout
    assert status(move, cfg)["state"] == "WINDOW_OPEN"
    assert {r[0] for r in move.tgt("SHOW TABLES")} >= {"a", "c"}, "a declined rollback renamed something"
    traffic = TargetTraffic(move).start()
    try:
        traffic.wait_for_writes(100)
    finally:
        traffic.stop()
    flag.unlink()
    accepted = move.cli("rollback", "-c", str(cfg), timeout=300)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr[-2000:]
    assert daemon.wait(timeout=120) == 0
    assert transitions(move)[-7:] == [
        "WINDOW_OPEN",
        "ROLLBACK_STARTED",
        "WINDOW_OPEN",
        "ROLLBACK_STARTED",
        "ROLLBACK_RENAMED",
        "ROLLBACK_DRAINED",
        "ROLLED_BACK",
    ]
    assert_rolled_back(move)


def test_a_rollback_before_the_window_is_refused(window_move: MoveEnv) -> None:
    move = window_move
    cfg = setup(move, window_s=600, postpone_cutover=True)
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", daemon)
    early = move.cli("rollback", "-c", str(cfg))
    assert early.returncode == 2, early.stdout + early.stderr[-2000:]
    assert "refused: the move is in COPYING" in early.stdout
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    wait_for_log(move, "rollback window open", daemon)
    # Past the cutover abort stays refused; the way back is the rollback.
    assert move.cli("abort", "-c", str(cfg)).returncode == 3
    assert move.cli("rollback", "-c", str(cfg), timeout=300).returncode == 0
    assert daemon.wait(timeout=120) == 0
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert_rolled_back(move)


def test_a_window_that_cannot_continue_closes_forward_loudly(window_move: MoveEnv) -> None:
    move = window_move
    cfg = setup(move, window_s=600)
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    move.tgt("INSERT INTO a VALUES (900001, 1, 'before the DDL')")
    wait_until(lambda: source_holds_target(move), "the reverse feed catching up", proc=daemon)
    # DDL on a moved table of the target: the reverse feed cannot reproduce it on the source.
    move.tgt("ALTER TABLE a ADD COLUMN extra INT NULL")
    move.tgt("INSERT INTO a VALUES (900002, 1, 'after the DDL', 7)")
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    log = (move.workdir / "daemon.log").read_text()
    assert "the rollback window closes early" in log and "ALTER TABLE" in log
    assert transitions(move)[-2:] == ["WINDOW_OPEN", "DONE"]
    # Never half-way: nothing after the DDL reached the source, the tables stay where the move put them.
    assert move.src("SELECT COUNT(*) FROM _a_moved WHERE id = 900001") == [(1,)]
    assert move.src("SELECT COUNT(*) FROM _a_moved WHERE id = 900002") == [(0,)]
    assert {"a", "c"} <= {r[0] for r in move.tgt("SHOW TABLES")}


def test_a_forged_window_checkpoint_is_refused_and_nothing_moves(window_move: MoveEnv) -> None:
    """The window's feed checkpoint lives on the source, the move's state on the target: a row
    forged on either is refused (exit 3) before anything fires or is renamed; once the forged rows
    are gone the window resumes and a rollback loses nothing."""
    move = window_move
    cfg = setup(move, window_s=600)
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    move.tgt("INSERT INTO a VALUES (900001, 1, 'in the window')")
    wait_until(lambda: source_holds_target(move), "the reverse feed catching up", proc=daemon)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0, (move.workdir / "daemon.log").read_text()[-3000:]

    feed, state = checkpoint_table(move, feed=True), checkpoint_table(move)
    history = transitions(move)
    assert history[-1] == "WINDOW_OPEN", history

    def tables() -> tuple[set[str], set[str]]:
        return {r[0] for r in move.src("SHOW TABLES")}, {r[0] for r in move.tgt("SHOW TABLES")}

    intact = tables()
    assert {"_a_moved", "_c_moved"} <= intact[0] and {"a", "c"} <= intact[1], intact

    def refused(*expected: str) -> None:
        run = move.cli("run", "-c", str(cfg))
        assert run.returncode == 3, run.stdout + run.stderr[-3000:]
        for text in expected:
            assert text in run.stderr, (text, run.stderr[-3000:])
        assert hook_lines(move) == ["success DRAINED"], "a hook fired on a forged row"
        assert tables() == intact, "a table was renamed or dropped on a forged row"

    # 1. A feed row that claims a state: the feed's rows are only ever WINDOW_OPEN.
    genuine_feed = move.source.execute(f"SELECT MAX(id) FROM {feed}")[0][0]
    forge_row(move.source, feed, state="'ROLLBACK_RENAMED'")
    refused("feed checkpoint on the source", "in state ROLLBACK_RENAMED", "Nothing was done")
    move.source.execute(f"DELETE FROM {feed} WHERE id > {genuine_feed}")

    # 2. A feed row that would make the reverse feed skip the application's writes: a position
    # beyond anything the target has written.
    domain, server_id, seq_no = move.target.execute("SELECT @@global.gtid_binlog_pos")[0][0].split("-")
    forge_row(move.source, feed, applied_gtid=f"'{domain}-{server_id}-{int(seq_no) + 1000}'")
    refused("feed checkpoint on the source", "beyond what the target has written")
    move.source.execute(f"DELETE FROM {feed} WHERE id > {genuine_feed}")

    # 3. The move's own rows, a history the machine could write (WINDOW_OPEN -> ROLLBACK_STARTED ->
    # ROLLBACK_RENAMED), while the target was never renamed: giving the source its tables back on
    # that word would leave both sides writable.
    genuine_state = move.tgt(f"SELECT MAX(id) FROM {state}")[0][0]
    forge_row(move.target, state, "kind <> 'owner'", state="'ROLLBACK_STARTED'", kind="'transition'")
    forge_row(
        move.target,
        state,
        "kind <> 'owner'",
        state="'ROLLBACK_RENAMED'",
        drain_gtid="applied_gtid",
        kind="'transition'",
    )
    refused("in ROLLBACK_RENAMED", "the target shows otherwise")
    move.tgt(f"DELETE FROM {state} WHERE id > {genuine_state}")
    assert transitions(move) == history

    # The genuine checkpoint resumes: the window is open again and a rollback returns everything.
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "resuming move from checkpoint", daemon)
    move.tgt("INSERT INTO a VALUES (900002, 1, 'after the resume')")
    rollback = move.cli("rollback", "-c", str(cfg), timeout=300)
    while rollback.returncode == 2 and "no daemon" in rollback.stderr:  # its control socket not up yet
        assert daemon.poll() is None, (move.workdir / "daemon.log").read_text()[-3000:]
        time.sleep(0.2)
        rollback = move.cli("rollback", "-c", str(cfg), timeout=300)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr[-3000:]
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert_rolled_back(move)
    assert move.src("SELECT COUNT(*) FROM a WHERE id IN (900001, 900002)") == [(2,)]
