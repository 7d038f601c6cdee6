"""Destructive commands act only on what the move recorded, never on what today's config names.

``cleanup --drop-source`` drops the names the cutover recorded with its RENAME; ``discard`` plans
from the tables the move took on at PREPARED. A config changed since (a new renamed_table_format,
by file or environment, or a table added to ``tables``) is refused with exit 2 and nothing dropped
or emptied.
"""

from __future__ import annotations

from conftest import MoveEnv


def test_cleanup_refuses_a_changed_renamed_table_format(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_300")
    cfg = str(move.config(["a"]))
    assert move.cli("run", "-c", cfg).returncode == 0
    # A live application table that today's (changed) format would name.
    move.src("CREATE TABLE a_live (id INT PRIMARY KEY)", "INSERT INTO a_live SELECT seq FROM seq_1_to_10")
    changed = move.cli(
        "cleanup",
        "--drop-source",
        "--yes",
        "-c",
        cfg,
        env={"TABLEMOVER_MOVE__RENAMED_TABLE_FORMAT": "{table}_live"},
    )
    assert changed.returncode == 2, changed
    assert "renamed_table_format" in changed.stderr and "Nothing was changed" in changed.stderr, (
        changed.stderr
    )
    assert move.src("SELECT COUNT(*) FROM a_live") == [(10,)]
    assert move.src("SELECT COUNT(*) FROM _a_moved") == [(300,)]
    assert move.tgt(f"SELECT COUNT(*) FROM `{move.state_database}`._tablemover_checkpoint")[0][0] > 0

    cleaned = move.cli("cleanup", "--drop-source", "--yes", "-c", cfg)
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"dropped source table {move.database}._a_moved" in cleaned.stdout
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == ["a_live"]


def test_discard_refuses_a_table_added_to_the_config(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_300")
    cfg = move.config(["a"])
    assert move.cli("run", "--stop-before-cutover", "-c", str(cfg)).returncode == 0
    # A table of the target's own, with rows, that the move never touched.
    move.tgt("CREATE TABLE b (id INT PRIMARY KEY)", "INSERT INTO b SELECT seq FROM seq_1_to_25")
    move.src("CREATE TABLE b (id INT PRIMARY KEY)")
    added = move.config(["a", "b"])
    refused = move.cli("discard", "--yes", "-c", str(added))
    assert refused.returncode == 2, refused
    assert "tables: the config names ['a', 'b'], the move recorded ['a']" in refused.stderr, refused.stderr
    assert move.tgt("SELECT COUNT(*) FROM b") == [(25,)]
    assert move.tgt("SELECT COUNT(*) FROM a") == [(300,)]

    original = move.config(["a"])
    discarded = move.cli("discard", "--yes", "-c", str(original))
    assert discarded.returncode == 0, discarded.stderr
    assert f"dropped target table {move.target_database}.a" in discarded.stdout
    assert move.tgt("SELECT COUNT(*) FROM b") == [(25,)], "discard touched a table the move never filled"
