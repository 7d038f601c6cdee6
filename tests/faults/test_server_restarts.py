"""Servers going away under a running daemon: it retries in-process and finishes, no manual restart.

Every case runs a real move under a write load, takes a server down at a chosen moment (SIGKILL or
a clean shutdown, back on the same port), then requires: the one daemon process exits 0 in DONE,
the log shows the retries with their errors, and the target equals the source row for row.
"""

from __future__ import annotations

import pytest
from faultkit import (
    ReconnectingWriteLoad,
    finish,
    log_text,
    renamed,
    retries_logged,
    seed,
    wait_copied,
    wait_logged,
    wait_state,
)

from conftest import MoveEnv
from support import assert_tables_equal, transitions

# Each chunk read waits a little, so the copy lasts a few seconds and a fault lands mid-copy.
SLOW_COPY = {"TABLEMOVER_DELAYS": "copy.after_read:0.04"}
COPY = {"chunk_size": 500, "adaptive_chunk_size": False}


def check_finished(move: MoveEnv, load: ReconnectingWriteLoad) -> None:
    assert transitions(move)[-1] == "DONE", transitions(move)
    assert load.ops > 0
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "clean-restart"])
def test_target_down_mid_copy(fault_move: MoveEnv, kill: bool) -> None:
    move = fault_move
    seed(move, rows=20_000)
    cfg = move.config(["a", "b"], move=COPY)
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=20_000, pause_s=0.002)
    load.start()
    try:
        proc = move.popen("run", "-c", str(cfg), env=SLOW_COPY)
        copied = wait_copied(move, 3000)
        move.target.restart(kill=kill)
        finish(proc, move)
    finally:
        load.stop()
    check_finished(move, load)
    retries = retries_logged(move)
    assert retries, log_text(move)[-3000:]
    assert all(r.get("error") for r in retries), "each retry names its error"
    # It resumed from its checkpoint, not from scratch.
    assert "resuming move from checkpoint" in log_text(move)
    assert transitions(move).count("PREPARED") == 1
    assert copied >= 3000


@pytest.mark.slow
@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "clean-restart"])
def test_target_down_while_draining(fault_move: MoveEnv, kill: bool) -> None:
    move = fault_move
    seed(move, rows=5000)
    cfg = move.config(["a", "b"])
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.002)
    load.start()
    try:
        # The drain waits 3 s after the RENAME: the target goes down in RENAMED.
        proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "drain.start:3"})
        wait_state(move, "RENAMED")
        move.target.restart(kill=kill)
        finish(proc, move)
    finally:
        load.stop()
    check_finished(move, load)
    assert retries_logged(move), log_text(move)[-3000:]
    assert transitions(move)[-4:] == ["RENAMED", "DRAINED", "HOOK_FIRED", "DONE"]


def test_source_restart_mid_copy(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=20_000)
    cfg = move.config(["a", "b"], move=COPY)
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=20_000, pause_s=0.002)
    load.start()
    try:
        proc = move.popen("run", "-c", str(cfg), env=SLOW_COPY)
        wait_copied(move, 3000)
        move.source.restart()
        wait_logged(move, "resuming move from checkpoint")
        finish(proc, move)
    finally:
        load.stop()
    check_finished(move, load)
    assert retries_logged(move), log_text(move)[-3000:]


@pytest.mark.slow
def test_an_outage_longer_than_the_budget_exits_1_and_run_resumes(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=20_000)
    cfg = move.config(["a", "b"], move={**COPY, "retry_budget_s": 3})
    proc = move.popen("run", "-c", str(cfg), env=SLOW_COPY)
    try:
        wait_copied(move, 2000)
        move.target.stop()
        code = proc.wait(timeout=60)
    finally:
        move.target.restart()
    assert code == 1, log_text(move)[-3000:]
    retries = retries_logged(move)
    assert len(retries) >= 2, "it retried within the budget before giving up"
    assert all(r.get("outage_s", 0) < 3 for r in retries)
    assert "gave up after" in log_text(move) and "retry_budget_s = 3" in log_text(move)
    assert transitions(move)[-1] == "COPYING", "giving up keeps the checkpoint"
    done = move.cli("run", "-c", str(cfg))
    assert done.returncode == 0, done.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())
