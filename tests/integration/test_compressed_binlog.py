"""A source with log_bin_compress=ON: compressed row and query events are reproduced, not passed over.

MariaDB compresses every event above ``log_bin_compress_min_len`` (10 bytes here, so nearly all of
them): row events become WRITE/UPDATE/DELETE_ROWS_COMPRESSED events and statements
QUERY_COMPRESSED events. The move must inflate them and treat them exactly as the plain ones, on
both decoders: the rows written during and after the copy end equal byte for byte, and a
compressed TRUNCATE of a moved table stops the move like a plain one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_unreproducible import assert_stopped_for_operator, session, start_postponed

from conftest import MoveEnv, _new_move, _start
from support import WriteLoad
from tablemover.local.mariadb import LocalMariaDB, LocalPair

COMPRESS_ARGS = ("--log-bin-compress=ON", "--log-bin-compress-min-len=10")
TABLE = (
    "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), b BLOB, "
    "d DECIMAL(20,6), t DATETIME(3), KEY (k))"
)


@pytest.fixture(scope="module")
def compressed_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """A source + target whose binlogs are compressed (log_bin_compress=ON)."""
    p = _start("FULL", tmp_path_factory, name="compressed", extra_args=COMPRESS_ARGS)
    yield p
    p.stop()


@pytest.fixture(params=["native", "library"])
def cmove(compressed_pair: LocalPair, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MoveEnv]:
    """A fresh move on the compressed pair, once per decoder (TABLEMOVER_NATIVE_DECODE)."""
    for env in _new_move(compressed_pair, tmp_path):
        env.extra_env["TABLEMOVER_NATIVE_DECODE"] = "1" if request.param == "native" else "0"
        yield env


def seed(move: MoveEnv, tables: tuple[str, ...], count: int) -> None:
    for name in tables:
        move.src(
            TABLE.format(name=name),
            f"INSERT INTO {name} SELECT seq, seq % 97, CONCAT('seed-', seq), "
            f"REPEAT(CHAR(seq % 256), seq % 300), seq / 7, "
            f"'2024-01-01 00:00:00.123' + INTERVAL seq SECOND FROM seq_1_to_{count}",
        )


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[str, ...]]:
    """Every row as the HEX() of each column, in primary-key order: a byte-for-byte comparison."""
    columns = server.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
    )
    shown = ", ".join(f"HEX(`{c[0]}`)" for c in columns)
    return [tuple(r) for r in server.execute(f"SELECT {shown} FROM `{database}`.`{table}` ORDER BY id")]


def compressed_events(move: MoveEnv) -> set[str]:
    """The compressed event types in the source's binlogs (proof the test exercises them)."""
    found: set[str] = set()
    for log in move.source.execute("SHOW BINARY LOGS"):
        for ev in move.source.execute(f"SHOW BINLOG EVENTS IN '{log[0]}'"):
            if "compressed" in str(ev[2]).lower():
                found.add(str(ev[2]))
    return found


def test_compressed_row_events_are_reproduced(cmove: MoveEnv) -> None:
    move = cmove
    seed(move, ("a", "c"), 3000)
    cfg = move.config(["a"], move={"chunk_size": 200})
    # During the copy: random inserts, updates (some of the key) and deletes on the moved table.
    load = WriteLoad(move.source, move.database, ["a", "c"], key_space=3000, pause_s=0.001).start()
    try:
        first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert first.returncode == 0, first.stderr[-3000:]
    finally:
        ops = load.stop()
    assert ops > 50 and not load.errors, (ops, load.errors[:3])
    # After the copy: the daemon tails the binlog while an application writes every row shape.
    cfg, proc = start_postponed(move, ["a"])
    session(
        move,
        "INSERT INTO a VALUES (100001, 1, 'after', REPEAT('x', 5000), 1.5, '2030-01-01 00:00:00.5'), "
        "(100002, 2, NULL, NULL, NULL, NULL)",
        "UPDATE a SET v = CONCAT(v, '-upd'), b = REPEAT('y', 700) WHERE id % 11 = 0",
        "UPDATE a SET id = id + 200000 WHERE id BETWEEN 40 AND 60",
        "DELETE FROM a WHERE id % 13 = 0",
        "INSERT INTO c VALUES (100003, 3, 'other table', NULL, NULL, NULL)",
    )
    session(move, "REPLACE INTO a VALUES (100001, 9, 'replaced', '', 0, '2000-02-29 12:00:00')")
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-4000:]
    kinds = compressed_events(move)
    assert {"Write_rows_compressed_v1", "Update_rows_compressed_v1", "Delete_rows_compressed_v1"} <= kinds, (
        kinds
    )
    assert "Query_compressed" in kinds, kinds
    source = hex_rows(move.source, move.database, "_a_moved")
    assert len(source) > 2500
    assert hex_rows(move.target, move.target_database, "a") == source


def test_a_compressed_truncate_of_a_moved_table_stops_the_move(cmove: MoveEnv) -> None:
    move = cmove
    seed(move, ("a",), 300)
    cfg, proc = start_postponed(move, ["a"])
    before = hex_rows(move.target, move.target_database, "a")
    move.src("TRUNCATE TABLE a /* long enough to be compressed */")
    assert_stopped_for_operator(move, cfg, proc, "TRUNCATE", "TRUNCATE TABLE a")
    assert hex_rows(move.target, move.target_database, "a") == before, "nothing of it may be applied"
    assert "Query_compressed" in compressed_events(move)
