"""A target table made before the move must be defined like the source table (real servers).

A differing one makes `tablemover check` and `tablemover run` exit 2, naming the column, before
anything is written to the target; a matching one (even with other secondary indexes and defaults)
is copied into by `run`, which finishes with the same rows as the source.
"""

from __future__ import annotations

import pytest

from conftest import MoveEnv
from support import assert_tables_equal
from tablemover import checkpoint
from tablemover.checkpoint import Checkpoint
from tablemover.machine import State

SOURCE = (
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(12,2) NOT NULL, note VARCHAR(100), "
    "code CHAR(8) NOT NULL, doubled DECIMAL(13,2) AS (total * 2) VIRTUAL, "
    "UNIQUE KEY uk_code (code), KEY k_total (total))"
)
SEED = (
    "INSERT INTO orders (id, total, note, code) "
    "SELECT seq, seq + 0.25, CONCAT('note ', seq), CONCAT('c', seq) FROM seq_1_to_300"
)

# (target definition, what the message must say) for each kind of difference.
MISMATCHES = {
    "narrower_decimal": (
        SOURCE.replace("DECIMAL(12,2)", "DECIMAL(12,0)"),
        ["column total: source decimal(12,2) NOT NULL, target decimal(12,0) NOT NULL"],
    ),
    "narrower_varchar": (
        SOURCE.replace("VARCHAR(100)", "VARCHAR(5)"),
        ["column note: source varchar(100) CHARACTER SET utf8mb4", "target varchar(5) CHARACTER SET"],
    ),
    "missing_column": (
        SOURCE.replace("note VARCHAR(100), ", ""),
        ["column note: source varchar(100)", "target has no such column"],
    ),
    "other_collation": (
        SOURCE.replace("VARCHAR(100)", "VARCHAR(100) COLLATE utf8mb4_bin"),
        ["column note: source varchar(100)", "target varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"],
    ),
    "generated_expression": (
        SOURCE.replace("total * 2", "total * 3"),
        ["column doubled: source decimal(13,2) GENERATED ALWAYS AS (`total` * 2) VIRTUAL", "* 3"],
    ),
    "unique_key_missing": (
        SOURCE.replace("UNIQUE KEY uk_code (code), ", ""),
        ["unique key uk_code (code): on the source, not on the target"],
    ),
}


def target_tables(move: MoveEnv) -> list[str]:
    """Tables in the target schema."""
    return sorted(str(r[0]) for r in move.tgt("SHOW TABLES"))


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_differing_target_table_is_refused_by_check_and_run(move: MoveEnv, case: str) -> None:
    target_ddl, needles = MISMATCHES[case]
    move.src(SOURCE, SEED)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(target_ddl)
    cfg = move.config(["orders"])
    common = [
        f"table {move.target_database}.orders already exists on target 127.0.0.1:{move.target.port}",
        f"differs from {move.database}.orders on source",
        "Drop the target table and let tablemover create it, or alter it to match",
    ]
    for command in ("check", "run"):
        result = move.cli(command, "-c", str(cfg), timeout=60)
        assert result.returncode == 2, (command, result.returncode, result.stderr[-3000:])
        assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
        for needle in [*common, *needles]:
            assert needle in result.stderr, f"{command}: {needle!r} not in:\n{result.stderr}"
        assert result.stderr.count("  - ") == 1, result.stderr  # one problem for the one table
    # Nothing was written: no checkpoint table, no rows, the hand-made table untouched.
    assert target_tables(move) == ["orders"]
    assert move.tgt("SELECT COUNT(*) FROM orders") == [(0,)]


def test_first_five_differences_are_named(move: MoveEnv) -> None:
    move.src(SOURCE)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(
        "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(12,0), note VARCHAR(5), code CHAR(4), "
        "doubled DECIMAL(13,2), extra INT) ENGINE=MyISAM"
    )
    result = move.cli("check", "-c", str(move.config(["orders"])), timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    for needle in (
        "column id: source bigint(20) NOT NULL, target int(11) NOT NULL",
        "column total: source decimal(12,2) NOT NULL, target decimal(12,0) NULL",
        "column note: ",
        "column code: ",
        "column doubled: ",
        "; and 3 more differences.",  # extra column, unique key, engine
    ):
        assert needle in result.stderr, f"{needle!r} not in:\n{result.stderr}"
    assert "column extra" not in result.stderr


def test_matching_target_table_is_used_by_run(move: MoveEnv) -> None:
    move.src(SOURCE, SEED)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    # Secondary non-unique indexes and defaults may differ: they do not change what is stored.
    move.tgt(
        SOURCE.replace(", KEY k_total (total)", "").replace("VARCHAR(100)", "VARCHAR(100) DEFAULT 'n/a'")
    )
    cfg = move.config(["orders"], move={"chunk_size": 100})
    check = move.cli("check", "-c", str(cfg), timeout=60)
    assert check.returncode == 0, check.stderr[-3000:]
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_orders_moved": "orders"}
    )
    # The move copied into the hand-made table rather than creating its own.
    create = str(move.tgt("SHOW CREATE TABLE orders")[0][1])
    assert "k_total" not in create and "DEFAULT 'n/a'" in create, create


def test_identical_rich_definition_passes(move: MoveEnv) -> None:
    # Everything the reader parses, made the same way on both servers: no false difference.
    ddl = (
        "CREATE TABLE t (id INT(11) UNSIGNED NOT NULL AUTO_INCREMENT, "
        "k TINYINT(1) NOT NULL DEFAULT 0, y YEAR, e ENUM('a','It''s') NOT NULL, s SET('x','y'), "
        "v VARCHAR(40) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin, b BLOB, "
        "g VARCHAR(50) AS (CONCAT(v, ' (', e, ')')) STORED, h INT AS ((id + 1) * 2) VIRTUAL, "
        "ts TIMESTAMP(3) NULL DEFAULT CURRENT_TIMESTAMP(3), "
        "PRIMARY KEY (id), UNIQUE KEY uv (v(10), k), UNIQUE KEY ub (b), KEY kk (k))"
    )
    move.src(ddl)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(ddl)
    result = move.cli("check", "-c", str(move.config(["t"])), timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


def test_skipped_once_the_move_has_a_checkpoint(move: MoveEnv) -> None:
    # Resuming: the target table is the move's own; this check must not second-guess it.
    move.src(SOURCE)
    db = move.target_database
    move.target.execute(f"CREATE DATABASE `{db}`", checkpoint.create_table_sql(db))
    conn = move.target.admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                checkpoint.insert_sql(db),
                checkpoint.insert_args(
                    Checkpoint(move_name=move.name, state=State.COPYING, applied_gtid="0-1-1")
                ),
            )
    finally:
        conn.close()
    move.tgt(SOURCE.replace("DECIMAL(12,2)", "DECIMAL(12,0)"))
    result = move.cli("check", "-c", str(move.config(["orders"])), timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
