"""No write converts a value silently: a target table altered during the move stops it (exit 3).

The writer runs in strict mode and also refuses the conversions a server reports only as notes
(DECIMAL rounding: 930.31 into DECIMAL(10,0) stores 930 with Note 1265 even in strict mode). Copy
chunks skip only duplicate keys (ON DUPLICATE KEY UPDATE k = k), never a value error as INSERT
IGNORE did. A refused write rolls the writer's transaction back: the other rows of that source
transaction never reach the target either, and the target never holds a truncated value.
"""

from __future__ import annotations

import subprocess

import pytest
from asyncmy.errors import DataError

from conftest import MoveEnv
from support import assert_tables_equal
from tablemover.bulk import RowWriter
from tablemover.config import load_config
from tablemover.db import WRITER_SQL_MODE, close, connect
from tablemover.schema import inspect_table

EXIT_SAFETY = 3


def _refusal(result: subprocess.CompletedProcess[str], table: str, code: int) -> str:
    assert result.returncode == EXIT_SAFETY, result.stderr[-3000:]
    text = result.stderr
    assert f"`{table}`" in text and f" {code} (" in text, text[-3000:]
    assert "definition no longer matches the source" in text, text[-3000:]
    assert "start the move over" in text, text[-3000:]
    return text


def test_binlog_row_too_long_for_an_altered_target_column_stops_the_move(any_move: MoveEnv) -> None:
    move = any_move
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, n DECIMAL(10,2) NOT NULL)",
        "CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)",
        "INSERT INTO a SELECT seq, seq + 0.25 FROM seq_1_to_100",
        "INSERT INTO b SELECT seq, CONCAT('v', seq) FROM seq_1_to_100",
    )
    cfg = str(move.config(["a", "b"]))
    first = move.cli("run", "--stop-before-cutover", "-c", cfg)
    assert first.returncode == 0, first.stderr[-3000:]

    # Someone narrows a target column while the move waits; the values already there still fit.
    move.tgt("ALTER TABLE b MODIFY v VARCHAR(5) NOT NULL")
    # One source transaction: a row that fits (table a) and one that does not (table b).
    move.src(
        "BEGIN", "INSERT INTO a VALUES (1000, 930.31)", "INSERT INTO b VALUES (1000, '0123456789')", "COMMIT"
    )
    second = move.cli("run", "--stop-before-cutover", "-c", cfg)
    _refusal(second, "b", 1406)  # Data too long for column 'v'

    # Nothing of that transaction was committed: not the row that fitted, not a cut-off value.
    assert move.tgt("SELECT COUNT(*) FROM a WHERE id = 1000") == [(0,)]
    assert move.tgt("SELECT COUNT(*) FROM b WHERE id = 1000 OR v = '01234'") == [(0,)]
    assert move.tgt("SELECT COUNT(*) FROM a") == [(100,)]


def test_copy_chunk_rounded_by_an_altered_target_column_stops_the_move(move: MoveEnv) -> None:
    """The issue's case: a copy chunk's 930.31 silently became 930 under INSERT IGNORE."""
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, n DECIMAL(10,2) NOT NULL)",
        # The first chunk (10 rows) holds whole numbers, the rest 930.31.
        "INSERT INTO a SELECT seq, IF(seq <= 10, seq, 930.31) FROM seq_1_to_50",
    )
    cfg = str(
        move.config(["a"], move={"chunk_size": 10, "adaptive_chunk_size": False, "copy_read_ahead": False})
    )
    # Die right after the first chunk commits.
    first = move.cli("run", "-c", cfg, env={"TABLEMOVER_FAULTS": "writer.after_commit:1"})
    assert first.returncode == -9, first.stderr[-3000:]
    assert move.tgt("SELECT COUNT(*), MAX(id) FROM a") == [(10, 10)]

    # The target column loses its decimals (the whole numbers there survive the ALTER).
    move.tgt("ALTER TABLE a MODIFY n DECIMAL(10,0) NOT NULL")
    second = move.cli("run", "-c", cfg)
    text = _refusal(second, "a", 1265)  # Data truncated for column 'n': a note, even in strict mode
    assert "MySQL note 1265" in text, text[-3000:]
    assert move.tgt("SELECT COUNT(*), MAX(id) FROM a") == [(10, 10)]
    assert move.tgt("SELECT COUNT(*) FROM a WHERE n = 930") == [(0,)]


def test_strict_writer_still_moves_everything_the_source_holds(any_move: MoveEnv) -> None:
    """Values a lenient source stores are moved exactly, through the copy and the binlog."""
    move = any_move
    legacy = [
        # A non-strict session: an ENUM non-member is stored as '' (number 0), zero dates and
        # zero parts, and (with ALLOW_INVALID_DATES) a day the month does not have.
        "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
        "INSERT INTO t (id, e, d, dt, v) VALUES "
        "({0}, 'nope', '0000-00-00', '2024-05-00 10:00:00', 'a'), "
        "({1}, 'b', '2024-02-30', '0000-00-00', 'b'), ({2}, 'nope', NULL, NULL, NULL)",
    ]
    move.src(
        "CREATE TABLE t (id INT PRIMARY KEY, e ENUM('a','b') NOT NULL, d DATE, dt DATETIME, v VARCHAR(3))",
        legacy[0],
        legacy[1].format(1, 2, 3),
    )
    cfg = str(move.config(["t"]))
    first = move.cli("run", "--stop-before-cutover", "-c", cfg)
    assert first.returncode == 0, first.stderr[-3000:]
    move.src(legacy[0], legacy[1].format(4, 5, 6), "UPDATE t SET v = 'c' WHERE id IN (1, 4)")
    second = move.cli("run", "--stop-before-cutover", "-c", cfg)
    assert second.returncode == 0, second.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"t": "t"})
    numbers = "SELECT id, e + 0, CAST(d AS CHAR), CAST(dt AS CHAR) FROM t ORDER BY id"
    assert move.tgt(numbers) == move.src(numbers)
    assert [r[1] for r in move.tgt(numbers)] == [0, 2, 0, 0, 2, 0]


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "text"])
async def test_copy_insert_keeps_existing_rows_and_refuses_bad_values(move: MoveEnv, bulk: bool) -> None:
    """INSERT ... ON DUPLICATE KEY UPDATE id = id: a duplicate key keeps the row the binlog wrote
    (as INSERT IGNORE did), a value the column cannot hold is an error (unlike INSERT IGNORE)."""
    move.src("CREATE TABLE t (id INT PRIMARY KEY, u INT NOT NULL UNIQUE, v VARCHAR(3))")
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(
        "CREATE TABLE t (id INT PRIMARY KEY, u INT NOT NULL UNIQUE, v VARCHAR(3))",
        "INSERT INTO t VALUES (1, 10, 'new'), (2, 20, 'new')",
    )
    config = load_config(move.config(["t"]))
    conn = await connect(config.target, "target", autocommit=False, sql_mode=WRITER_SQL_MODE)
    try:
        source = await connect(config.source, "source")
        try:
            schema = await inspect_table(source, move.database, "t")
        finally:
            await close(source)
        writer = RowWriter(
            conn,
            move.target_database,
            "t",
            schema.writable_columns,
            verb="INSERT",
            keep_existing_on="id",
            bulk=bulk,
        )
        # id 1 exists; id 3 collides with row 2 on the secondary unique key u; id 4 is new.
        await writer.write([(1, 10, "old"), (3, 20, "old"), (4, 40, None)])
        await conn.commit()
        assert (writer.bulk_batches, writer.text_batches) == ((1, 0) if bulk else (0, 1))
        with pytest.raises(DataError):
            await writer.write([(5, 50, "too long")])
        await conn.rollback()
    finally:
        await close(conn)
    assert move.tgt("SELECT id, u, v FROM t ORDER BY id") == [(1, 10, "new"), (2, 20, "new"), (4, 40, None)]
