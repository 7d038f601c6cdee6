"""SIGTERM/SIGINT: finish the current batch, keep the state, exit 0 within 10 s; a restart finishes."""

from __future__ import annotations

import signal
import time

import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, transitions

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
RENAMED = {"_a_moved": "a", "_b_moved": "b"}


def wait_for(log_path, text: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_in_copying_keeps_state_and_resumes(move: MoveEnv, sig: signal.Signals) -> None:
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'x' FROM seq_1_to_40000")
    cfg = move.config(["a", "b"], move={"chunk_size": 200, "adaptive_chunk_size": False})
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=40000, pause_s=0.002).start()
    try:
        proc = move.popen("run", "-c", str(cfg))
        wait_for(move.workdir / "daemon.log", "state changed")
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        load.stop()
    assert code == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert took < 10, f"took {took:.1f} s to stop"
    assert transitions(move)[-1] == "COPYING", "a stop signal must not change the state"
    assert f"stopped by {sig.name}" in (move.workdir / "daemon.log").read_text()
    final = move.cli("run", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, RENAMED)


def test_sigterm_in_renamed_keeps_state_and_the_restart_drains(move: MoveEnv) -> None:
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'x' FROM seq_1_to_2000")
    cfg = move.config(["a", "b"])
    proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "drain.start:5"})
    wait_for(move.workdir / "daemon.log", "source tables renamed")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - sent < 10
    assert transitions(move)[-1] == "RENAMED"
    final = move.cli("run", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    assert transitions(move)[-3:] == ["DRAINED", "HOOK_FIRED", "DONE"]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, RENAMED)
