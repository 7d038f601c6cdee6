"""Crash drills for the copy phase: SIGKILL the daemon at random instants while writes continue."""

from __future__ import annotations

import json
import random
import signal
import time

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
ROWS = 50_000
CHUNK = 100


def latest_checkpoint(move: MoveEnv) -> dict[str, object] | None:
    rows = move.target.execute(
        f"SELECT state, applied_gtid, progress FROM `{move.state_database}`._tablemover_checkpoint "
        "ORDER BY id DESC LIMIT 1"
    )
    if not rows:
        return None
    state, applied, progress = rows[0]
    return {"state": state, "applied": applied, "progress": json.loads(progress)}


def target_has_checkpoint_table(move: MoveEnv) -> bool:
    sql = (
        "SELECT 1 FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA='{move.state_database}' AND TABLE_NAME='_tablemover_checkpoint'"
    )
    return bool(move.target.execute(sql))


def test_sigkill_during_copy_and_apply_resumes_and_converges(any_move: MoveEnv) -> None:
    move = any_move
    rnd = random.Random(20261124)
    for t in ("a", "b", "s"):
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{ROWS}",
        )
    cfg = move.config(["a", "b", "s"], move={"chunk_size": CHUNK, "adaptive_chunk_size": False})
    # `s` gets no writes: its copy progress must count every row exactly once across all restarts.
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=ROWS, pause_s=0.001).start()
    kills = 0
    try:
        while kills < 5:
            proc = move.popen("run", "--stop-before-cutover", "-c", str(cfg))
            time.sleep(rnd.uniform(0.5, 1.2))
            if proc.poll() is not None:
                break  # finished before we could kill it: the remaining drill runs below
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            if target_has_checkpoint_table(move):
                cp = latest_checkpoint(move)
                assert cp is None or cp["state"] in ("PREPARED", "COPYING"), cp
    finally:
        ops = load.stop()
    print(f"drill: {kills} SIGKILLs during copy/apply, {ops} source write transactions")
    assert kills >= 3, f"the copy finished too fast to be killed repeatedly ({kills} kills)"
    assert ops > 100 and not load.errors, (ops, load.errors[:3])

    final = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    log = (move.workdir / "daemon.log").read_text()
    # No restart started the move over: the start position was captured once, every later run that
    # got past preflight resumed from the checkpoint.
    assert log.count('"prepared move"') == 1, "a restart prepared the move again"
    assert log.count("resuming move from checkpoint") >= 1

    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"a": "a", "b": "b", "s": "s"}
    )
    cp = latest_checkpoint(move)
    assert cp is not None
    # Every committed chunk is recorded in the same transaction as its rows, so a restart never
    # copies a committed chunk again: the static table's counter equals its row count exactly.
    # (The chunk in flight at each kill was rolled back with its checkpoint: at most one chunk.)
    assert cp["progress"]["s"]["rows"] == ROWS, cp["progress"]["s"]
