"""What the operator sees: why a move waits, a status worth reading, clean-up paths, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import MoveEnv


def wait_for_log(move: MoveEnv, text: str, timeout: float = 60) -> None:
    path = move.workdir / "daemon.log"
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, path.read_text()[-3000:]
        time.sleep(0.05)


def status_json(move: MoveEnv, cfg: str) -> dict[str, object]:
    result = move.cli("status", "--json", "-c", cfg)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_a_paused_copy_says_why_it_waits_and_shows_no_eta(move: MoveEnv) -> None:
    for t in ("b", "a"):
        move.src(
            f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))",
            f"INSERT INTO {t} SELECT seq, 'x' FROM seq_1_to_40000",
        )
    cfg = str(move.config(["b", "a"], move={"chunk_size": 10, "adaptive_chunk_size": False}))
    proc = move.popen("run", "-c", cfg)
    try:
        wait_for_log(move, "state changed")
        assert move.cli("pause", "-c", cfg).returncode == 0
        wait_for_log(move, "copy throttled")
        status = status_json(move, cfg)
        assert status["waiting_for"] == "paused by the operator" and status["waiting_kind"] == "paused"
        assert status["eta_s"] is None, "no ETA while nothing moves"
        assert set(status["tables"]) == {"a", "b"}  # type: ignore[call-overload]
        text = move.cli("status", "-c", cfg)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith("move t: COPYING, ") and "% copied" in lines[0] and "lag " in lines[0]
        assert "ETA" not in lines[0]
        assert "  waiting: paused by the operator" in lines
        table_lines = [
            line.strip().split(":")[0] for line in lines if line.startswith("  ") and " rows copied" in line
        ]
        assert table_lines == ["b", "a"], lines
        metrics_log = (move.workdir / "daemon.log").read_text()
        assert metrics_log.count('"copy throttled"') == 1, "a wait is logged once per kind, not per tick"
        assert move.cli("unpause", "-c", cfg).returncode == 0
        wait_for_log(move, "copy unthrottled")
        assert move.cli("abort", "-c", cfg).returncode == 0
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cleanup_paths_and_status_after_cleanup(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_500")
    cfg = str(move.config(["a"]))
    assert move.cli("run", "-c", cfg).returncode == 0
    plain = move.cli("cleanup", "-c", cfg)
    assert plain.returncode == 0 and "kept the renamed source tables" in plain.stdout, plain
    after = move.cli("status", "-c", cfg)
    assert after.returncode == 0 and "finished and cleaned up" in after.stdout, after
    # A confirmation prompt without a terminal is bad input, never an EOFError traceback.
    no_tty = subprocess.run(
        [sys.executable, "-m", "tablemover", "cleanup", "--drop-source", "-c", cfg],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr and "Traceback" not in no_tty.stderr, no_tty
    assert move.src("SHOW TABLES LIKE '_a_moved'"), "nothing may be dropped without confirmation"
    dropped = move.cli("cleanup", "--drop-source", "--yes", "-c", cfg)
    assert dropped.returncode == 0 and f"dropped source table {move.database}._a_moved" in dropped.stdout, (
        dropped
    )
    assert move.src("SHOW TABLES") == []


def test_exit_codes_of_operator_mistakes(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY)")
    cfg = str(move.config(["a"]))
    for command in (["pause"], ["unpause"], ["cutover"], ["chunk-size", "100"]):
        result = move.cli(*command, "-c", cfg)
        assert result.returncode == 2, (command, result)
        assert "no tablemover daemon is listening" in result.stderr and "Traceback" not in result.stderr
    for bad in ("0", "abc", "1000000"):
        result = move.cli("chunk-size", "-c", cfg, bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (bad, result)
    assert move.cli("status", "-c", cfg).stdout.startswith("move t: not started")
