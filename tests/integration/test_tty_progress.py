"""On a terminal the daemon draws a progress bar per table; in a pipe it writes JSON lines."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from conftest import MoveEnv


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tablemover", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bars_on_a_terminal(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO a SELECT seq, 'x' FROM seq_1_to_60000",
    )
    move.src("ANALYZE TABLE a")
    cfg = move.config(["a"], move={"chunk_size": 500, "adaptive_chunk_size": False})
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("JOURNAL_STREAM", None)
    code, screen = run_on_a_terminal(["run", "-c", str(cfg)], env)
    assert code == 0, screen[-3000:]
    assert "rows/s" in screen and "60000/60000" in screen, screen[-3000:]
    assert "state changed" in screen and '"msg"' not in screen, "text logs expected on a terminal"


def test_json_lines_in_a_pipe(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY)", "INSERT INTO a SELECT seq FROM seq_1_to_100")
    result = move.cli("run", "-c", str(move.config(["a"])))
    assert result.returncode == 0
    assert "rows/s" not in result.stderr and '"msg": "state changed"' in result.stderr
