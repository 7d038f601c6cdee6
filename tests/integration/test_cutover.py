"""The cooperative cutover end to end: copy, catch up, RENAME, drain, on-success hook, DONE."""

from __future__ import annotations

import threading
import time

import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, renames_in_binlog, transitions, write_hook

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
STATES = ["PREPARED", "COPYING", "CUTOVER_STARTED", "RENAMED", "DRAINED", "HOOK_FIRED", "DONE"]


def test_full_move_of_three_tables_under_live_writes(move: MoveEnv) -> None:
    for t in ("a", "b"):
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_5000",
        )
    move.src(
        "CREATE TABLE c (x INT NOT NULL, y VARCHAR(10) NOT NULL, n INT, PRIMARY KEY (x, y))",
        "INSERT INTO c SELECT seq % 50, CONCAT('k', seq), seq FROM seq_1_to_3000",
    )
    hooks = move.workdir / "hooks"
    log = move.workdir / "hooks.log"
    write_hook(hooks, "on-before-cutover", f'echo "before $TABLEMOVER_STATE" >> {log}\n')
    write_hook(
        hooks,
        "on-success",
        'echo "success $TABLEMOVER_HOOK_ATTEMPT $TABLEMOVER_DRAIN_GTID $TABLEMOVER_RENAMED_TABLES"'
        f" >> {log}\n",
    )
    cfg = move.config(["a", "b", "c"], move={"chunk_size": 500, "hooks_dir": str(hooks)})
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.002).start()
    try:
        run = move.cli("run", "-c", str(cfg))
    finally:
        load.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    # The writers lost their tables at the RENAME: that is the cutover, not an error of the test.
    assert all("doesn't exist" in e for e in load.errors), load.errors[:3]

    renamed = {"_a_moved": "a", "_b_moved": "b", "_c_moved": "c"}
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed)
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == sorted(renamed)
    with pytest.raises(pymysql.err.ProgrammingError):
        move.src("INSERT INTO a (id, k, v) VALUES (999999, 1, 'late')")
    assert transitions(move) == STATES
    lines = log.read_text().splitlines()
    assert lines[0] == "before CUTOVER_STARTED"
    assert lines[1].startswith("success 1 0-1-") and lines[1].endswith("_a_moved,_b_moved,_c_moved")
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout
    again = move.cli("run", "-c", str(cfg))
    assert again.returncode == 0 and len(log.read_text().splitlines()) == 2, "DONE must not re-run hooks"


def seed(move: MoveEnv, tables: tuple[str, ...] = ("a", "b"), rows: int = 2000) -> None:
    for t in tables:
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{rows}",
        )


def test_rename_blocked_by_a_long_transaction_times_out_then_succeeds(move: MoveEnv) -> None:
    seed(move)
    # No look-before-lock wait: this test is about the RENAME's own bounded lock wait.
    cfg = move.config(["a", "b"], move={"cutover_lock_timeout_s": 1, "cutover_blocker_wait_s": 0})
    # An open transaction that read `a` holds its metadata lock until it ends: RENAME must wait.
    blocker = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    blocker.cursor().execute("BEGIN")
    blocker.cursor().execute("SELECT COUNT(*) FROM a")
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        # Writes to another moved table queue behind the pending RENAME: never for longer than
        # the lock wait timeout.
        conn = pymysql.connect(
            unix_socket=move.source.socket, user="root", database=move.database, autocommit=True
        )
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                conn.cursor().execute("UPDATE b SET k = k + 1 WHERE id = %s", (n % 2000 + 1,))
            except pymysql.err.ProgrammingError:
                break  # renamed away: the cutover happened
            latencies.append(time.monotonic() - started)
            n += 1
            time.sleep(0.01)
        conn.close()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    proc = move.popen("run", "-c", str(cfg))
    log = move.workdir / "daemon.log"
    deadline = time.monotonic() + 60
    while "RENAME timed out" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "RENAME timed out" in log.read_text(), log.read_text()[-3000:]
    assert move.src("SHOW TABLES LIKE '_a_moved'") == [], "nothing may be renamed after a timeout"
    blocker.commit()
    blocker.close()
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    stop.set()
    prober.join(timeout=10)
    states = transitions(move)
    assert states[:4] == ["PREPARED", "COPYING", "CUTOVER_STARTED", "COPYING"], states
    assert states[-1] == "DONE" and renames_in_binlog(move) == 1
    assert latencies and max(latencies) < 1.0 + 0.5, f"a write waited {max(latencies):.2f} s"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


@pytest.mark.parametrize(
    ("point", "expect_cancel"),
    [("cutover.after_rename!fail", False), ("cutover.before_rename!fail", True)],
)
def test_rename_outcome_unknown_is_resolved_by_inspecting_the_source(
    move: MoveEnv, point: str, expect_cancel: bool
) -> None:
    seed(move)
    cfg = move.config(["a", "b"])
    run = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": point})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RENAME outcome unknown" in run.stderr
    states = transitions(move)
    # Not renamed -> back to COPYING and a second attempt; renamed -> straight on to RENAMED.
    assert (states[3] == "COPYING") is expect_cancel, states
    assert states[-1] == "DONE" and renames_in_binlog(move) == 1
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


def test_failing_before_cutover_hook_renames_nothing_and_stays_resumable(move: MoveEnv) -> None:
    seed(move)
    hooks = move.workdir / "hooks"
    write_hook(hooks, "on-before-cutover", "echo 'feature flag service down' >&2; exit 1\n")
    failure_log = move.workdir / "failure.log"
    write_hook(hooks, "on-failure", f'echo "$TABLEMOVER_STATE $TABLEMOVER_ERROR" > {failure_log}\n')
    cfg = move.config(["a", "b"], move={"hooks_dir": str(hooks), "cutover_max_attempts": 2})
    failed = move.cli("run", "-c", str(cfg))
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "feature flag service down" in failed.stderr and "Traceback" not in failed.stderr
    assert failure_log.read_text().startswith("COPYING the cutover did not succeed in 2 attempts")
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == ["a", "b"], "nothing may be renamed"
    assert transitions(move)[-1] == "COPYING"
    write_hook(hooks, "on-before-cutover", "exit 0\n")
    done = move.cli("run", "-c", str(cfg))
    assert done.returncode == 0, done.stderr[-2000:]
    assert transitions(move)[-1] == "DONE" and renames_in_binlog(move) == 1


def test_failing_success_hook_is_retried_and_never_renames_again(move: MoveEnv) -> None:
    seed(move)
    hooks, log = move.workdir / "hooks", move.workdir / "hooks.log"
    write_hook(
        hooks,
        "on-success",
        f'echo "$TABLEMOVER_HOOK_ATTEMPT" >> {log}\n[ "$TABLEMOVER_HOOK_ATTEMPT" -ge 3 ] || exit 1\n',
    )
    cfg = move.config(["a", "b"], move={"hooks_dir": str(hooks)})
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-2000:]
    assert log.read_text().split() == ["1", "2", "3"]
    states = transitions(move)
    assert states.count("DRAINED") == 1 and states[-2:] == ["HOOK_FIRED", "DONE"]
    assert renames_in_binlog(move) == 1


def test_gh_ost_move_tables_hook_script_runs_unchanged(move: MoveEnv) -> None:
    seed(move, ("orders", "order_items"), 100)
    hooks, log = move.workdir / "hooks", move.workdir / "ghost.log"
    write_hook(
        hooks,
        "gh-ost-on-success",
        f'echo "$GH_OST_DATABASE_NAME|$GH_OST_TABLE_NAME|$GH_OST_OLD_TABLE_NAME|$GH_OST_MOVE_TABLES|'
        f'$GH_OST_TARGET_DATABASE_NAME|$GH_OST_DRY_RUN|$GH_OST_DRAIN_GTID" > {log}\n',
    )
    cfg = move.config(["orders", "order_items"], move={"hooks_dir": str(hooks)})
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-2000:]
    fields = log.read_text().strip().split("|")
    assert fields[:6] == [
        move.database,
        "orders,order_items",
        "_orders_moved,_order_items_moved",
        "true",
        move.target_database,
        "false",
    ]
    assert fields[6].startswith("0-1-")


def test_postponed_cutover_waits_for_the_cutover_command(move: MoveEnv) -> None:
    seed(move)
    hooks, log = move.workdir / "hooks", move.workdir / "hooks.log"
    for name in ("on-startup", "on-row-copy-complete", "on-begin-postponed", "on-success"):
        write_hook(hooks, name, f'echo "{name} $TABLEMOVER_STATE" >> {log}\n')
    status_log = move.workdir / "status.log"
    write_hook(hooks, "on-status", f'echo "$TABLEMOVER_STATE $TABLEMOVER_ROWS_COPIED" >> {status_log}\n')
    cfg = move.config(
        ["a", "b"], move={"postpone_cutover": True, "hooks_dir": str(hooks), "status_hook_interval_s": 0.5}
    )
    proc = move.popen("run", "-c", str(cfg))
    daemon_log = move.workdir / "daemon.log"
    deadline = time.monotonic() + 60
    while "cutover postponed" not in daemon_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    assert proc.poll() is None, daemon_log.read_text()[-2000:]
    assert "COPYING 4000" in status_log.read_text().splitlines(), "on-status did not run periodically"
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == ["a", "b"], "renamed while postponed"
    socket_path = move.workdir / "t.sock"
    # Owner and group (operators join the service's group), nobody else.
    assert socket_path.stat().st_mode & 0o777 == 0o660
    release = move.cli("cutover", "-c", str(cfg))
    assert release.returncode == 0 and "cutover released" in release.stdout, release.stderr
    assert proc.wait(timeout=60) == 0, daemon_log.read_text()[-2000:]
    assert transitions(move)[-1] == "DONE"
    assert log.read_text().splitlines() == [
        "on-startup PREPARED",
        "on-row-copy-complete COPYING",
        "on-begin-postponed COPYING",
        "on-success DRAINED",
    ]
    assert not socket_path.exists(), "the daemon left its socket behind"


def test_cutover_command_without_a_daemon_says_so(move: MoveEnv) -> None:
    cfg = move.config(["a"])
    result = move.cli("cutover", "-c", str(cfg))
    assert result.returncode == 2  # "no daemon" is bad input, not a failure a re-run fixes
    assert "no tablemover daemon is listening" in result.stderr and "Traceback" not in result.stderr
