"""Operator commands against a running daemon and without one: status, pause/unpause, chunk-size,
abort (allowed before the cutover, refused after RENAMED), cleanup."""

from __future__ import annotations

import json
import time

from conftest import MoveEnv
from support import assert_tables_equal, transitions


def seed(move: MoveEnv, rows: int = 30_000) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))",
        f"INSERT INTO a SELECT seq, 'x' FROM seq_1_to_{rows}",
    )


def wait_for(path, text: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, path.read_text()[-3000:]
        time.sleep(0.05)


def status(move: MoveEnv, cfg: str) -> dict[str, object]:
    result = move.cli("status", "--json", "-c", cfg)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_status_pause_chunk_size_and_abort_against_a_running_daemon(move: MoveEnv) -> None:
    seed(move, 80_000)
    # Small chunks keep the copy going for several seconds (a chunk costs a round trip or two).
    cfg = str(move.config(["a"], move={"chunk_size": 10, "adaptive_chunk_size": False}))
    proc = move.popen("run", "-c", cfg)
    wait_for(move.workdir / "daemon.log", "control socket listening")
    wait_for(move.workdir / "daemon.log", "state changed")
    assert move.cli("pause", "-c", cfg).returncode == 0
    time.sleep(0.5)
    first = status(move, cfg)
    time.sleep(1.0)
    second = status(move, cfg)
    assert first["source"] == "daemon" and second["paused"] is True
    assert first["rows_copied"] == second["rows_copied"], "copying went on while paused"
    assert move.cli("unpause", "-c", cfg).returncode == 0
    assert move.cli("chunk-size", "-c", cfg, "5").returncode == 2, "out-of-range chunk size accepted"
    assert move.cli("chunk-size", "-c", cfg, "20").returncode == 0
    time.sleep(0.5)
    third = status(move, cfg)
    assert int(third["rows_copied"]) > int(second["rows_copied"]), "copying did not resume"  # type: ignore[call-overload]
    aborted = move.cli("abort", "-c", cfg)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert proc.wait(timeout=15) == 0
    assert transitions(move)[-1] == "ABORTED"
    offline = status(move, cfg)
    assert offline["source"] == "checkpoint" and offline["state"] == "ABORTED"
    # `run` resumes an aborted move and finishes it.
    done = move.cli("run", "-c", cfg)
    assert done.returncode == 0, done.stderr[-2000:]
    assert transitions(move)[-4:] == ["RENAMED", "DRAINED", "HOOK_FIRED", "DONE"]
    assert "COPYING" in transitions(move)[transitions(move).index("ABORTED") :]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})


def test_abort_refused_after_renamed_and_cleanup_after_done(move: MoveEnv) -> None:
    seed(move, 2000)
    cfg = str(move.config(["a"]))
    killed = move.cli("run", "-c", cfg, env={"TABLEMOVER_FAULTS": "state.RENAMED"})
    assert killed.returncode == -9
    refused = move.cli("abort", "-c", cfg)
    assert refused.returncode == 3 and "can only go forward" in refused.stderr, refused.stderr
    assert transitions(move)[-1] == "RENAMED"
    early = move.cli("cleanup", "-c", cfg, "--yes")
    assert early.returncode == 3, "cleanup before DONE must be refused"
    assert move.cli("run", "-c", cfg).returncode == 0
    cleaned = move.cli("cleanup", "-c", cfg, "--drop-source", "--yes")
    assert cleaned.returncode == 0, cleaned.stderr
    assert move.target.execute(f"SHOW TABLES FROM `{move.state_database}`") == []  # the checkpoint too
    assert move.src("SHOW TABLES") == [], "the renamed source table was not dropped"
    assert move.tgt("SELECT COUNT(*) FROM a")[0][0] == 2000, "cleanup touched the moved data"


def test_flag_file_throttles_copying_until_removed_and_sighup_reloads_it(move: MoveEnv) -> None:
    import signal

    seed(move, 80_000)
    flag = move.workdir / "hold-copy"
    other_flag = move.workdir / "other-flag"
    flag.touch()
    cfg_path = move.config(
        ["a"], move={"chunk_size": 50, "adaptive_chunk_size": False}, throttle={"flag_file": str(flag)}
    )
    cfg = str(cfg_path)
    proc = move.popen("run", "-c", cfg)
    wait_for(move.workdir / "daemon.log", "copy throttled")
    before = status(move, cfg)
    time.sleep(1.0)
    after = status(move, cfg)
    assert after["throttled"] is True and "flag file" in str(after["throttle_reason"])
    assert before["rows_copied"] == after["rows_copied"] == 0
    # SIGHUP picks up a changed [throttle] section: the flag now points at a file that is absent.
    cfg_path.write_text(cfg_path.read_text().replace(str(flag), str(other_flag)))
    proc.send_signal(signal.SIGHUP)
    wait_for(move.workdir / "daemon.log", "copy unthrottled")
    assert proc.wait(timeout=120) == 0
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
