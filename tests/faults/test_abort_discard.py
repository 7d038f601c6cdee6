"""`abort` of a running daemon (exit 0, ABORTED, resumable) and `discard` (refused while a daemon
runs and from RENAMED on; a plan without --yes; a fresh start after it)."""

from __future__ import annotations

import pytest
from faultkit import (
    ReconnectingWriteLoad,
    latest_checkpoint,
    log_text,
    renamed,
    seed,
    status,
    wait_copied,
    wait_logged,
)

from conftest import MoveEnv
from support import assert_tables_equal, transitions

# Each round aborts at another moment: during the pause after a chunk read, or (no delay, small
# chunks) while a chunk read, a writer statement or a lag query is in flight.
ROUNDS = [
    ("copy.after_read:0.03", 500),
    ("", 50),
    ("copy.after_read:0.005", 100),
    ("", 20),
]


@pytest.mark.slow
def test_abort_a_running_daemon_again_and_again_then_resume(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=40_000)
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=40_000, pause_s=0.002)
    load.start()
    try:
        copied = 0
        for delays, chunk in ROUNDS:
            cfg = move.config(["a", "b"], move={"chunk_size": chunk, "adaptive_chunk_size": False})
            proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": delays})
            copied = wait_copied(move, copied + 200)
            assert proc.poll() is None, log_text(move)[-3000:]
            aborted = move.cli("abort", "-c", str(cfg))
            assert aborted.returncode == 0, aborted.stdout + aborted.stderr
            assert "aborting in COPYING" in aborted.stdout
            code = proc.wait(timeout=30)
            assert code == 0, f"daemon exited {code} after abort:\n{log_text(move)[-4000:]}"
            assert transitions(move)[-1] == "ABORTED", transitions(move)
            shown = status(move, cfg)
            assert shown["source"] == "checkpoint" and shown["state"] == "ABORTED"
            assert not (move.workdir / "t.sock").exists(), "the stopped daemon left its socket behind"
        assert log_text(move).count("aborted by the operator") == len(ROUNDS)
        # `run` resumes the aborted move where it stopped and finishes it.
        cfg = move.config(["a", "b"])
        done = move.cli("run", "-c", str(cfg))
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        load.stop()
    states = transitions(move)
    assert states.count("PREPARED") == 1, "an abort must keep the move's progress"
    assert states.count("ABORTED") == len(ROUNDS) and states[-1] == "DONE", states
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def test_abort_while_the_daemon_rides_out_a_source_outage(fault_move: MoveEnv) -> None:
    # The abort lands between attempts (the daemon waits to retry): no pipeline to stop, the
    # daemon records ABORTED itself and exits 0.
    move = fault_move
    seed(move, rows=20_000)
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "adaptive_chunk_size": False})
    proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "copy.after_read:0.03"})
    try:
        wait_copied(move, 2000)
        move.source.stop()
        wait_logged(move, "transient error; retrying", timeout=30)
        aborted = move.cli("abort", "-c", str(cfg))
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        code = proc.wait(timeout=30)
        assert code == 0, f"daemon exited {code} after abort:\n{log_text(move)[-4000:]}"
        assert transitions(move)[-1] == "ABORTED", transitions(move)
    finally:
        move.source.restart()
    done = move.cli("run", "-c", str(cfg))
    assert done.returncode == 0, done.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def test_discard_refused_while_running_plans_without_yes_and_a_fresh_start_finishes(
    fault_move: MoveEnv,
) -> None:
    move = fault_move
    seed(move, rows=5000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    wait_logged(move, "copy complete and caught up")

    refused = move.cli("discard", "-c", str(cfg), "--yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "a daemon is running it" in refused.stderr and "pid=" in refused.stderr, refused.stderr
    assert proc.poll() is None and status(move, cfg)["source"] == "daemon"

    aborted = move.cli("abort", "-c", str(cfg))
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert proc.wait(timeout=30) == 0
    before = _target_snapshot(move)

    plan = move.cli("discard", "-c", str(cfg))
    assert plan.returncode == 0, plan.stderr
    assert f"drop target table {move.target_database}.a" in plan.stdout, plan.stdout
    assert f"drop target table {move.target_database}.b" in plan.stdout
    assert "checkpoint rows" in plan.stdout and "nothing was changed" in plan.stdout
    assert _target_snapshot(move) == before, "discard without --yes changed the target"

    gone = move.cli("discard", "-c", str(cfg), "--yes")
    assert gone.returncode == 0, gone.stderr
    assert move.tgt("SHOW TABLES") == [], "the move's tables and checkpoint table must be gone"
    assert latest_checkpoint(move) is None
    assert status(move, cfg)["state"] is None

    # Started again from scratch, under writes: it finishes equal.
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.005)
    load.start()
    try:
        fresh = move.cli("run", "-c", str(move.config(["a", "b"])))
    finally:
        load.stop()
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert transitions(move)[0] == "PREPARED" and transitions(move).count("PREPARED") == 1
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


@pytest.mark.parametrize("state", ["RENAMED", "DONE"])
def test_discard_refused_from_renamed_on(fault_move: MoveEnv, state: str) -> None:
    move = fault_move
    seed(move, rows=2000)
    cfg = move.config(["a", "b"])
    if state == "RENAMED":
        killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "state.RENAMED"})
        assert killed.returncode == -9, killed.stderr[-2000:]
    else:
        assert move.cli("run", "-c", str(cfg)).returncode == 0
    assert transitions(move)[-1] == state
    before = _target_snapshot(move)
    for args in ([], ["--yes"]):
        refused = move.cli("discard", "-c", str(cfg), *args)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"in {state}" in refused.stderr and "Finish the move" in refused.stderr, refused.stderr
    assert _target_snapshot(move) == before, "a refused discard changed the target"
    if state == "RENAMED":
        finished = move.cli("run", "-c", str(cfg))
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def _target_snapshot(move: MoveEnv) -> tuple[object, ...]:
    tables = tuple(sorted(str(r[0]) for r in move.tgt("SHOW TABLES")))
    counts = tuple(move.tgt(f"SELECT COUNT(*) FROM `{t}`")[0][0] for t in tables)
    return tables, counts
