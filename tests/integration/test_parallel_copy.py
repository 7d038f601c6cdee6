"""The parallel copy (``copy_threads`` > 1): ranges copied by streams of their own, while writes go on.

Row-for-row equality after concurrent writes (integer, composite and character first key columns:
a character one is one range, the streams then run across tables), the checksum gate and the
cutover on top of it, and SIGKILLs that land by construction (a fault point that kills the daemon
at its n-th chunk commit) with the resume copying each range from its last committed key: a table
that gets no writes counts every row exactly once over all the restarts.
"""

from __future__ import annotations

import json

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
COMPOSITE = (
    "CREATE TABLE comp (a INT NOT NULL, s VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL, "
    "e ENUM('red','green','blue') NOT NULL, d DECIMAL(20,6) NOT NULL, t DATETIME(6) NOT NULL, "
    "b BINARY(4) NOT NULL, j JSON NULL, PRIMARY KEY (a, s, e, d, t, b), UNIQUE KEY (s, a))"
)
COMPOSITE_ROWS = (
    "INSERT INTO comp SELECT seq DIV 3, CONCAT(IF(seq % 2, 'K', 'k'), seq), ELT(1 + seq % 3, 'red', "
    "'green', 'blue'), seq / 7, '2026-01-01' + INTERVAL seq SECOND, UNHEX(LPAD(HEX(seq), 8, '0')), "
    "IF(seq % 5, JSON_OBJECT('n', seq), NULL) FROM seq_1_to_{rows}"
)
NAMED = (
    "CREATE TABLE named (k VARCHAR(12) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL "
    "PRIMARY KEY, v TEXT)"
)
NAMED_ROWS = (
    "INSERT INTO named SELECT CONCAT(CHAR(65 + seq % 26), seq), REPEAT('x', seq % 50) FROM seq_1_to_{rows}"
)


def seed(move: MoveEnv, tables: list[str], rows: int) -> None:
    for t in tables:
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{rows}",
        )


def ranges(move: MoveEnv) -> dict[str, list[tuple[int, int, bool]]]:
    """Per table, each range's newest (range_no, rows_copied, done)."""
    found: dict[str, dict[int, tuple[int, int, int, bool]]] = {}
    for table, number, seq, copied, done in move.target.execute(
        f"SELECT table_name, range_no, seq, rows_copied, done FROM `{move.state_database}`."
        "_tablemover_copy_ranges ORDER BY table_name, range_no, seq"
    ):
        found.setdefault(str(table), {})[int(number)] = (int(number), int(seq), int(copied), bool(done))
    return {t: [(n, c, d) for n, _, c, d in r.values()] for t, r in found.items()}


def checkpoint_progress(move: MoveEnv) -> dict[str, dict[str, object]]:
    rows = move.target.execute(
        f"SELECT progress FROM `{move.state_database}`._tablemover_checkpoint "
        "WHERE kind <> 'owner' ORDER BY seq DESC LIMIT 1"
    )
    return dict(json.loads(rows[0][0]))


def test_parallel_copy_converges_under_writes_and_cuts_over(move: MoveEnv) -> None:
    seed(move, ["a", "b"], 40_000)
    move.src(COMPOSITE, COMPOSITE_ROWS.format(rows=9_000), NAMED, NAMED_ROWS.format(rows=5_000))
    tables = ["a", "b", "comp", "named"]
    cfg = move.config(tables, move={"copy_threads": 4, "chunk_size": 200, "adaptive_chunk_size": False})
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=40_000, pause_s=0.001).start()
    try:
        first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert first.returncode == 0, first.stderr[-3000:]
    finally:
        ops = load.stop()
    assert ops > 100 and not load.errors, (ops, load.errors[:3])
    planned = ranges(move)
    # Integer first key columns are cut into ranges; a character one is one range.
    assert len(planned["a"]) > 1 and len(planned["comp"]) > 1, planned
    assert len(planned["named"]) == 1, planned
    assert all(done for r in planned.values() for _, _, done in r), planned
    progress = checkpoint_progress(move)
    assert all(progress[t]["done"] for t in tables), progress
    # Static tables: every row counted once.
    assert sum(c for _, c, _ in planned["comp"]) == 9_000
    assert sum(c for _, c, _ in planned["named"]) == 5_000
    # The rest: the gate compares every table, the cutover renames, the target equals the source.
    final = move.cli("run", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    log = (move.workdir / "daemon.log").read_text() if (move.workdir / "daemon.log").exists() else ""
    assert "checksum before cutover found differences" not in log
    assert_tables_equal(
        move.source,
        move.database,
        move.target,
        move.target_database,
        {f"_{t}_moved": t for t in tables},
    )


def test_sigkill_at_chunk_commits_resumes_each_range_once(move: MoveEnv) -> None:
    seed(move, ["a", "b", "s"], 30_000)
    tables = ["s", "a", "b"]  # the static table's ranges are copied first: the kills land in them
    settings = {"copy_threads": 4, "chunk_size": 100, "adaptive_chunk_size": False}
    cfg = move.config(tables, move=settings)
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=30_000, pause_s=0.001).start()
    kills = []
    try:
        # Each kill lands by construction: the n-th chunk commit of that run (after the commit, or
        # with the chunk written and its range row inserted but not committed).
        for point in ("parallel.after_commit:7", "parallel.before_commit:20", "parallel.after_commit:45"):
            run = move.cli("run", "--stop-before-cutover", "-c", str(cfg), env={"TABLEMOVER_FAULTS": point})
            assert run.returncode == -9, (point, run.returncode, run.stderr[-2000:])
            kills.append(point)
            assert ranges(move), "the ranges were not committed before the first chunk"
    finally:
        ops = load.stop()
    assert ops > 100 and not load.errors, (ops, load.errors[:3])
    assert len(kills) == 3
    copied_before = sum(c for _, c, _ in ranges(move).get("s", []))
    assert 0 < copied_before < 30_000, copied_before
    # The operator lowers copy_threads on resume: the stored ranges go on (one stream), none restarts.
    cfg = move.config(tables, move={**settings, "copy_threads": 1})
    final = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {t: t for t in tables})
    # Each committed chunk is recorded with its rows: over three SIGKILLs the static table's ranges
    # count every row exactly once (the chunk in flight at a kill rolled back with its range row).
    stored = ranges(move)
    assert sum(c for _, c, _ in stored["s"]) == 30_000, stored["s"]
    assert all(done for r in stored.values() for _, _, done in r)
    progress = checkpoint_progress(move)
    assert progress["s"]["done"] and progress["s"]["rows"] == 30_000, progress["s"]
