"""The checksum before the cutover: exact under live writes, and it stops a move that diverged."""

from __future__ import annotations

import json

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, renames_in_binlog, transitions, wait_for_log

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"


def seed(move: MoveEnv, rows: int = 5000) -> None:
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'seed' FROM seq_1_to_{rows}")


def log_events(move: MoveEnv, msg: str) -> list[dict[str, object]]:
    out = []
    for line in (move.workdir / "daemon.log").read_text().splitlines():
        if line.startswith("{") and f'"msg": "{msg}' in line:
            out.append(json.loads(line))
    return out


def test_gate_passes_under_live_writes_and_reports_its_cost(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["a", "b"], move={"chunk_size": 500})
    # A steady write load on both tables: every chunk is written while it is checksummed.
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.001).start()
    try:
        proc = move.popen("run", "-c", str(cfg))
        assert proc.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    finally:
        load.stop()
    equal = log_events(move, "checksum before cutover: source and target equal")
    assert len(equal) == 1 and int(equal[0]["rows"]) >= 2 * 4000, equal  # type: ignore[call-overload]
    assert float(equal[0]["seconds_per_million_rows"]) > 0  # type: ignore[arg-type]
    assert not log_events(move, "checksum before cutover found differences")
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


def test_gate_catches_a_row_planted_on_the_target_and_renames_nothing(move: MoveEnv) -> None:
    seed(move, 2000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", proc)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    # Something other than the move writes to the target: the gate must refuse to cut over.
    move.tgt("INSERT INTO b VALUES (900001, 1, 'planted')", "UPDATE a SET v = 'changed' WHERE id = 17")
    cfg = move.config(["a", "b"])
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 3, run.stderr[-3000:]
    assert "checksum before the cutover found rows that differ" in run.stderr
    assert "900001" in run.stderr and "17" in run.stderr
    assert renames_in_binlog(move, "a") == 0 and renames_in_binlog(move, "b") == 0
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == ["a", "b"]
    assert transitions(move)[-1] == "COPYING", "nothing past COPYING: no intent was written"
