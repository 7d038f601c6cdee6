"""Keyset pagination never skips or repeats a row, whatever the key's types (real mariadbd).

Each table's (composite) key mixes types whose literal comparison could disagree with the index
order: ENUM (by member number, the '' error value included), SET (by bitmask; a 12-member one takes
the plain-comparison fallback), BIT(64), YEAR, DECIMAL(30,10) beyond double precision, DATETIME(6)
with zero dates, TIME(6) with negative values, signed and unsigned BIGINT extremes, VARBINARY with
0x00 / 0xff / prefixes, VARCHAR in utf8mb4_general_ci and utf8mb4_unicode_ci with case, accents
and trailing spaces, and FLOAT values the text protocol prints alike. Leading key columns get few
distinct values, so the later columns' predicates decide most chunk boundaries. Values are random
with a fixed seed, extremes always included.

The copier (``TableCopier``, chunk sizes 1..7, below the configurable minimum) feeds a bulk
``RowWriter`` into a target table, and every row must arrive, in index order, exactly once. Then
``verify`` with chunks of 1..7 rows must count every row exactly once, find the tables equal, and
name one planted difference and one planted missing row in each table.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

from conftest import MoveEnv
from support import assert_tables_equal
from tablemover import sql
from tablemover import verify as verify_module
from tablemover.bulk import RowWriter, enum_error_positions, holds_enum_error
from tablemover.changes import CopyChunk, WorkItem
from tablemover.checkpoint import TableProgress
from tablemover.config import Config, load_config
from tablemover.copy import TableCopier
from tablemover.db import WRITER_SQL_MODE, close, connect, query
from tablemover.schema import TableSchema, inspect_table, sql_col

SEED = 20240522
Literal = str  # an SQL literal, as inserted on the source


def s(text: str) -> Literal:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def x(data: bytes) -> Literal:
    return f"X'{data.hex()}'"


U64 = [0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
S64 = [-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 1]


def _enum_rows(rnd: random.Random) -> list[list[Literal]]:
    members = ["red", "green", "blue", "orange", "purple"]  # 'purple' is no member: stored as ''
    rows = [["22", s("red")], ["22", s("green")], ["22", s("blue")], ["22", s("orange")], ["22", s("purple")]]
    rows += [[str(rnd.randint(0, 30)), s(rnd.choice(members))] for _ in range(150)]
    return rows


def _set_bit_rows(rnd: random.Random) -> list[list[Literal]]:
    def flags() -> str:
        return ",".join(m for m in "abcd" if rnd.random() < 0.4)

    rows = [[s(flags()), str(b)] for b in U64]
    rows += [
        [s(flags()), str(rnd.choice([*U64, rnd.getrandbits(64), rnd.getrandbits(8)]))] for _ in range(150)
    ]
    return rows


def _year_decimal_rows(rnd: random.Random) -> list[list[Literal]]:
    extremes = [
        "99999999999999999999.9999999999",
        "-99999999999999999999.9999999999",
        "12345678901234567890.0123456789",
        "12345678901234567890.0123456790",  # equal to the one above as a double
        "0.0000000001",
        "-0.0000000001",
        "0",
    ]
    years = ["0", "1901", "2155", "2000"]
    rows = [[rnd.choice(years), d] for d in extremes]
    for _ in range(150):
        digits = Decimal(rnd.randint(-(10**30) + 1, 10**30 - 1)).scaleb(-10)
        rows.append(
            [rnd.choice([*years, str(rnd.randint(1901, 2155))]), str(rnd.choice([digits, *extremes]))]
        )
    return rows


def _datetime_int_rows(rnd: random.Random) -> list[list[Literal]]:
    times = [
        "0000-00-00 00:00:00",
        "1000-01-01 00:00:00.000000",
        "2024-05-22 10:00:00.000001",
        "2024-05-22 10:00:00.000002",
        "2024-05-22 10:00:00.999999",
        "9999-12-31 23:59:59.999999",
    ]
    rows = []
    for _ in range(150):
        when = rnd.choice(times)
        rows.append(
            [
                s(when),
                str(rnd.choice([*U64, rnd.getrandbits(64)])),
                str(rnd.choice([*S64, rnd.getrandbits(63)])),
            ]
        )
    return rows


def _binary_time_rows(rnd: random.Random) -> list[list[Literal]]:
    alphabet = [0x00, 0x01, 0x20, 0x41, 0x61, 0x7F, 0x80, 0xFF]
    times = ["-838:59:59.000000", "-00:00:00.000001", "00:00:00", "00:00:00.000001", "838:59:59.000000"]
    rows = []
    for _ in range(150):
        data = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 3)))
        tm = rnd.choice(
            [*times, f"{rnd.randint(-838, 838)}:{rnd.randint(0, 59):02d}:00.{rnd.randint(0, 999999):06d}"]
        )
        rows.append([x(data), s(tm)])
    return rows


def _collation_rows(rnd: random.Random) -> list[list[Literal]]:
    # Case, accents, 'ß' (= 'ss' in unicode_ci, = 's' in general_ci) and trailing spaces.
    alphabet = ["a", "A", "á", "Á", "b", "B", "e", "é", "E", "ß", "s", "S", "z", " "]

    def word(length: int) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(length))

    return [
        [s(word(rnd.randint(0, 2))), s(word(rnd.randint(0, 3))), str(rnd.randint(0, 3))] for _ in range(200)
    ]


def _float_set_rows(rnd: random.Random) -> list[list[Literal]]:
    floats = [
        "1.2345678",
        "1.2345679",
        "1.234568",
        "16777216",
        "16777217",
        "3.4e38",
        "-3.4e38",
        "1.17549435e-38",
    ]
    rows = []
    for _ in range(150):
        mask = rnd.choice([0, 1, 2048, 4095, rnd.getrandbits(12)])
        rows.append([str(mask), rnd.choice([*floats, repr(rnd.uniform(-10, 10))])])
    return rows


def _mixed_rows(rnd: random.Random) -> list[list[Literal]]:
    names = ["a", "A", "á", "b", "b ", "c", "é", "e", "ss", "ß"]  # 5 distinct in unicode_ci
    return [
        [s(rnd.choice(["s", "m", "l", "xl"])), s(rnd.choice(names)), x(bytes([rnd.randint(0, 7)]))]
        for _ in range(200)
    ]


# name -> (key and other columns, primary key, row generator)
TABLES: dict[str, tuple[str, str, Callable[[random.Random], list[list[Literal]]]]] = {
    "enum_key": (
        "id TINYINT NOT NULL, e ENUM('red','green','blue','orange') NOT NULL",
        "id, e",
        _enum_rows,
    ),
    "set_bit": ("s SET('a','b','c','d') NOT NULL, b BIT(64) NOT NULL", "s, b", _set_bit_rows),
    "year_decimal": ("y YEAR NOT NULL, d DECIMAL(30,10) NOT NULL", "y, d", _year_decimal_rows),
    "datetime_ints": (
        "t DATETIME(6) NOT NULL, u BIGINT UNSIGNED NOT NULL, i BIGINT NOT NULL",
        "t, u, i",
        _datetime_int_rows,
    ),
    "binary_time": ("vb VARBINARY(8) NOT NULL, tm TIME(6) NOT NULL", "vb, tm", _binary_time_rows),
    "collations": (
        "g VARCHAR(8) COLLATE utf8mb4_general_ci NOT NULL, "
        "u VARCHAR(8) COLLATE utf8mb4_unicode_ci NOT NULL, n TINYINT NOT NULL",
        "g, u, n",
        _collation_rows,
    ),
    "float_bigset": (
        "bs SET('m0','m1','m2','m3','m4','m5','m6','m7','m8','m9','m10','m11') NOT NULL, f FLOAT NOT NULL",
        "bs, f",
        _float_set_rows,
    ),
    "mixed": (
        "size ENUM('s','m','l','xl') NOT NULL, name VARCHAR(4) COLLATE utf8mb4_unicode_ci NOT NULL, "
        "tag VARBINARY(2) NOT NULL",
        "size, name, tag",
        _mixed_rows,
    ),
}


def create_and_fill(move: MoveEnv, table: str, *, fill_target: bool = False) -> int:
    """Create ``table`` on both sides and fill the source (and the target, by the same statements,
    when ``fill_target``: a route that does not involve tablemover); returns the source's rows."""
    columns, key, generate = TABLES[table]
    ddl = f"CREATE TABLE {table} ({columns}, v INT NOT NULL, PRIMARY KEY ({key}))"
    rows = generate(random.Random(f"{SEED}-{table}"))
    values = ",".join(f"({', '.join(r)}, {i})" for i, r in enumerate(rows))
    names = ", ".join(c.split()[0] for c in columns.split(", ")) + ", v"
    # A non-strict session, as legacy applications run: an ENUM non-member becomes '' (number 0).
    # Key collisions (equal in the collation) keep the first row.
    fill = ["SET SESSION sql_mode = ''", f"INSERT IGNORE INTO {table} ({names}) VALUES {values}"]
    move.src(ddl, *fill)
    move.target.execute(f"CREATE DATABASE IF NOT EXISTS `{move.target_database}`")
    move.tgt(ddl, *(fill if fill_target else []))
    count = int(str(move.src(f"SELECT COUNT(*) FROM {table}")[0][0]))
    assert count > 50, f"{table}: only {count} distinct keys; the test would prove little"
    return count


async def _keys_in_index_order(config: Config, schema: TableSchema) -> list[tuple[Any, ...]]:
    key = schema.chunk_key or ()
    cols = [sql_col(c) for c in map(schema.column, key)]  # as the copier reads them: bytes of strings
    conn = await connect(config.source, "source", temporal_as_text=True)
    try:
        table = sql.qualified(schema.database, schema.name)
        rows = await query(
            conn, f"SELECT {sql.read_list(cols)} FROM {table} ORDER BY {sql.column_list(cols)}"
        )
    finally:
        await close(conn)
    return [tuple(r) for r in rows]


async def copy_with_chunks(
    config: Config, schema: TableSchema, chunk_size: int, rows: int, *, bulk: bool = True
) -> list[CopyChunk]:
    """Copy ``schema``'s table with the real copier and the real bulk writer; return the chunks.

    More than ``rows`` rows delivered means a chunk started before the previous one's end: with
    a chunk of one row that repeats forever, so it fails at once.
    """
    sources = [
        await connect(config.source, "source", autocommit=False, temporal_as_text=True) for _ in range(2)
    ]
    target = await connect(
        config.target, "target", autocommit=False, sql_mode=WRITER_SQL_MODE, binary_prefix=True
    )
    key = schema.chunk_key or ()
    writer = RowWriter(
        target,
        config.move.effective_target_database,
        schema.name,
        schema.writable_columns,
        verb="INSERT",
        keep_existing_on=key[0],
        bulk=bulk,
    )
    send, recv = anyio.create_memory_object_stream[WorkItem](max_buffer_size=4)
    chunks: list[CopyChunk] = []

    async def apply() -> None:
        async for item in recv:
            assert isinstance(item, CopyChunk)
            chunks.append(item)
            delivered = sum(len(c.rows) for c in chunks)
            assert delivered <= rows, f"{schema.name}: {delivered} rows delivered of {rows}: rows repeated"
            await writer.write(item.rows)
            await target.commit()
            item.committed.set()

    async def allowed() -> None:
        return None

    try:
        with anyio.fail_after(60):  # a copy of a few hundred rows; never hang the suite
            async with anyio.create_task_group() as tg:
                tg.start_soon(apply)
                copier = TableCopier(
                    sources, schema, TableProgress(), chunk_size, send, allowed, adaptive=False
                )
                await copier.run()
                send.close()
    finally:
        for conn in (*sources, target):
            await close(conn)
    # Every chunk goes through the bulk protocol; only a row holding an ENUM's '' error value goes
    # alone as text (strict mode would refuse it otherwise).
    odd = enum_error_positions(schema.writable_columns)
    if bulk:
        assert writer.text_batches == sum(holds_enum_error(r, odd) for c in chunks for r in c.rows)
    return chunks


def _config(move: MoveEnv, table: str) -> Config:
    return load_config(move.config([table]))


@pytest.mark.parametrize("table", list(TABLES))
async def test_copy_delivers_every_row_once_in_index_order(move: MoveEnv, table: str) -> None:
    count = create_and_fill(move, table)
    config = _config(move, table)
    source = await connect(config.source, "source")
    try:
        schema = await inspect_table(source, move.database, table)
    finally:
        await close(source)
    expected = await _keys_in_index_order(config, schema)
    assert len(expected) == count
    positions = [[c.name for c in schema.writable_columns].index(k) for k in schema.chunk_key or ()]
    # Chunk sizes 1..7 through the bulk protocol, and once through the text protocol (MySQL's).
    for chunk_size, bulk in [*((size, True) for size in range(1, 8)), (4, False)]:
        move.tgt(f"TRUNCATE TABLE {table}")
        chunks = await copy_with_chunks(config, schema, chunk_size, count, bulk=bulk)
        delivered = [tuple(r[p] for p in positions) for c in chunks for r in c.rows]
        assert delivered == expected, (
            f"{table}, chunk size {chunk_size}: rows skipped, repeated or out of order"
        )
        assert len(chunks) == count // chunk_size + 1
        assert_tables_equal(move.source, move.database, move.target, move.target_database, {table: table})
        # Exact for every type, FLOAT included (the text protocol prints FLOAT rounded).
        src_sum = move.src(f"CHECKSUM TABLE {table}")[0][1]
        dst_sum = move.tgt(f"CHECKSUM TABLE {table}")[0][1]
        assert src_sum == dst_sum, f"{table}, chunk size {chunk_size}: target rows differ"


@pytest.mark.parametrize("table", list(TABLES))
async def test_verify_chunks_cover_every_row_once(
    move: MoveEnv, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = create_and_fill(move, table, fill_target=True)
    config = _config(move, table)
    assert move.src(f"CHECKSUM TABLE {table}")[0][1] == move.tgt(f"CHECKSUM TABLE {table}")[0][1]

    for step in range(1, 8):
        monkeypatch.setattr(verify_module, "VERIFY_CHUNK", step)
        report = await _verify(config)
        assert report.equal, (table, step, report)
        assert (report.source_rows, report.target_rows) == (count, count), (table, step)
        assert report.chunks == count // step + 1, (table, step)

    rnd = random.Random(f"{SEED}-{table}-plant")
    changed, deleted = rnd.sample(range(count), 2)
    values = sorted(int(str(r[0])) for r in move.src(f"SELECT v FROM {table}"))
    changed, deleted = values[changed], values[deleted]
    move.tgt(f"UPDATE {table} SET v = -1 - v WHERE v = {changed}", f"DELETE FROM {table} WHERE v = {deleted}")
    monkeypatch.setattr(verify_module, "VERIFY_CHUNK", 3)
    report = await _verify(config)
    assert report.different == [await _key_of(config, table, changed)], (table, report)
    assert report.missing_on_target == [await _key_of(config, table, deleted)], (table, report)
    assert report.extra_on_target == []
    assert (report.source_rows, report.target_rows) == (count, count - 1)


async def _verify(config: Config) -> verify_module.TableReport:
    # A chunk boundary that does not advance would loop forever: fail instead.
    with anyio.fail_after(60):
        return (await verify_module.verify(config, rechecks=0)).tables[0]


async def _key_of(config: Config, table: str, v: int) -> list[Any]:
    """The key of the row whose ``v`` is ``v``, read the way verify reads keys."""
    conn = await connect(config.source, "source", temporal_as_text=True)
    try:
        schema = await inspect_table(conn, config.move.database, table)
        cols = [
            sql.Col.of(c.name, c.data_type, c.enum_values) for c in map(schema.column, schema.chunk_key or ())
        ]
        rows = await query(
            conn,
            f"SELECT {sql.read_list(cols)} FROM {sql.qualified(config.move.database, table)} WHERE v = %s",
            [v],
        )
    finally:
        await close(conn)
    assert len(rows) == 1
    return list(rows[0])
