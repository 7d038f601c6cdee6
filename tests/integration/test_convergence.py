"""Convergence: while the copy runs, a writer changes two moved tables and an unmoved one."""

from __future__ import annotations

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"


def seed(move: MoveEnv, tables: list[str], rows: int) -> None:
    for t in tables:
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{rows}",
        )


def test_target_converges_under_concurrent_writes(any_move: MoveEnv) -> None:
    move = any_move
    seed(move, ["a", "b", "c"], 20_000)
    cfg = move.config(["a", "b"], move={"chunk_size": 300})
    load = WriteLoad(move.source, move.database, ["a", "b", "c"], key_space=20_000, pause_s=0.001).start()
    try:
        first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert first.returncode == 0, first.stderr[-3000:]
    finally:
        ops = load.stop()
    assert ops > 200, f"the write load barely ran ({ops} ops): the test would prove nothing"
    assert not load.errors, load.errors[:3]
    # The load kept writing after the first run caught up; a second run applies the rest.
    second = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"a": "a", "b": "b"})
    assert move.tgt("SHOW TABLES LIKE 'c'") == [], "an unmoved table leaked to the target"
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout
