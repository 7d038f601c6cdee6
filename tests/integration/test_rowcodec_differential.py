"""Differential test: the native stream (own framing, compiled row decoders) against the library path.

Both run the daemon's stream thread (``BinlogStream.run``) over the same range of a real server's
binlog, once with ``native_decode=False`` (every event decoded by mysql-replication, as before
rowcodec) and once with the default native path, and must hand the writer the same batches: the
same row changes (compared by ``repr`` too, so Decimal('1.0') and Decimal('1.00'), or 1 and True,
differ), commit markers, event counts and final position, or fail with the same error. Every test
runs with binlog_row_metadata FULL and MINIMAL (``any_move``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_types import COLUMNS, DDL, HIGH, LOW, MID, NULLS, ODD, ZERO

from conftest import MoveEnv
from tablemover import db, rowcodec, stream
from tablemover.changes import Commit, StreamBatch
from tablemover.config import ServerSection
from tablemover.decode import RowDecoder
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition
from tablemover.local.mariadb import MOVER_PASSWORD, MOVER_USER
from tablemover.schema import TableSchema, inspect_table

_server_ids = itertools.count(7000)  # each binlog reader needs its own replica id


@dataclass
class Outcome:
    """What one stream run handed over, or the error it stopped with."""

    items: list[Any]
    events: int
    position: str
    error: str = ""
    compiled: dict[str, str] | None = None  # table -> "native" or why the library decodes it
    delegated_rows: int = 0  # row events of moved tables the native path left to the library


def _schemas(move: MoveEnv, tables: list[str]) -> dict[str, TableSchema]:
    server = ServerSection(host="127.0.0.1", port=move.source.port, user=MOVER_USER, password=MOVER_PASSWORD)

    async def inspect() -> dict[str, TableSchema]:
        conn = await db.connect(server, "source")
        try:
            return {t: await inspect_table(conn, move.database, t) for t in tables}
        finally:
            await db.close(conn)

    return anyio.run(inspect)


def run_stream(move: MoveEnv, tables: list[str], start: str, end: str, *, native: bool) -> Outcome:
    """The stream thread from ``start`` until it hands over ``end``'s commit (or fails)."""
    settings = stream.StreamSettings(
        server=ServerSection(
            host="127.0.0.1", port=move.source.port, user=MOVER_USER, password=MOVER_PASSWORD
        ),
        flavor=Flavor.MARIADB,
        server_id=next(_server_ids),
        database=move.database,
        own_rename_tag="tablemover move=differential",
        native_decode=native,
    )
    decoders = {t: RowDecoder(s) for t, s in _schemas(move, tables).items()}
    thread_stream = stream.BinlogStream(settings, decoders, MariaDBPosition.parse(start), None)  # type: ignore[arg-type]
    batches: list[StreamBatch] = []

    def hand_over(batch: StreamBatch | None) -> None:
        if batch is None:
            return
        batches.append(batch)
        if any(isinstance(i, Commit) and i.gtid == end for i in batch.items):
            thread_stream.stop()

    thread_stream._hand_over = hand_over  # type: ignore[method-assign]
    errors: list[BaseException] = []
    compiled: dict[str, str] = {}
    mismatches: list[str] = []
    delegated_rows: list[int] = []
    original_compile = rowcodec.compile_codec
    original_delegate = stream._NativeFraming.delegate

    def delegate(framing: stream._NativeFraming, data: bytes) -> Any:
        if data[5] in rowcodec.ROWS_EVENT_OPS:
            delegated_rows.append(data[5])
        return original_delegate(framing, data)

    def compile_codec(table: str, columns: Any, decoder: RowDecoder) -> Any:
        codec = original_compile(table, columns, decoder)
        compiled[table] = codec if isinstance(codec, str) else "native"
        return codec

    def body() -> None:
        try:
            thread_stream.run()
        except BaseException as exc:
            errors.append(exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rowcodec, "compile_codec", compile_codec)
        patch.setattr(
            stream._NativeFraming, "mismatch", lambda self, table, exc: mismatches.append(repr(exc))
        )
        patch.setattr(stream._NativeFraming, "delegate", delegate)
        worker = threading.Thread(target=body, daemon=True)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "the stream did not reach the end GTID"
    assert not mismatches, f"a row event did not fit its compiled decoder: {mismatches[:3]}"
    items = [i for b in batches for i in b.items]
    error = f"{type(errors[0]).__name__}: {errors[0]}" if errors else ""
    position = str(thread_stream.translator.position)
    return Outcome(items, sum(b.events for b in batches), position, error, compiled, len(delegated_rows))


def assert_same_stream(move: MoveEnv, tables: list[str], start: str, end: str) -> Outcome:
    """Run both paths over start..end; they must agree exactly. Returns the native outcome."""
    library = run_stream(move, tables, start, end, native=False)
    native = run_stream(move, tables, start, end, native=True)
    assert native.error == library.error
    assert native.events == library.events
    assert native.position == library.position
    assert len(native.items) == len(library.items)
    for n, lib in zip(native.items, library.items, strict=True):
        assert n == lib
        assert repr(n) == repr(lib)  # the same types too: Decimal exponents, int vs bool, -0.0
    return native


def gtid_pos(move: MoveEnv) -> str:
    return str(move.source.execute("SELECT @@global.gtid_binlog_pos")[0][0])


# Zero dates, zero parts and invalid dates are values MariaDB stores; the decoders must agree on them.
INVALID_DATES = "SET sql_mode = CONCAT(@@sql_mode, ',ALLOW_INVALID_DATES')"


# --------------------------------------------------------------------------- every type


def test_every_type_of_test_types_decodes_as_the_library_does(any_move: MoveEnv) -> None:
    move = any_move
    move.src(DDL)
    start = gtid_pos(move)
    images = [LOW, HIGH, MID, NULLS, ZERO, ODD]
    values = ",".join(f"({1 + i},{image})" for i, image in enumerate(images))
    move.src(
        "SET time_zone='+00:00'",
        INVALID_DATES,
        f"INSERT INTO types ({COLUMNS}) VALUES {values}",
        "UPDATE types t1 JOIN types t2 ON t1.id=1 AND t2.id=2 SET "
        + ",".join(f"t1.{c}=t2.{c}" for c in COLUMNS.split(",")[1:]),
        "UPDATE types SET id=id+1000 WHERE id=3",
        "DELETE FROM types WHERE id=4",
    )
    native = assert_same_stream(move, ["types"], start, gtid_pos(move))
    assert native.compiled == {"types": "native"}  # every column of test_types is decoded natively
    assert native.delegated_rows == 0
    assert len(native.items) == 6 + 1 + 1 + 1 + 4  # rows, then a commit per statement


WIDE = """CREATE TABLE wide (
 k VARCHAR(40) CHARACTER SET utf8mb4 NOT NULL, k2 VARBINARY(8) NOT NULL,
 k3 CHAR(3) CHARACTER SET latin1 NOT NULL, g INT AS (LENGTH(k)) VIRTUAL,
 e ENUM({enum}) NULL, s SET({set}) NULL, b64 BIT(64) NULL, b9 BIT(9) NULL,
 d DECIMAL(65,30) NULL, d2 DECIMAL(10,10) NULL, d3 DECIMAL(9,0) UNSIGNED NULL,
 t1 TIME(1) NULL, t3 TIME(3) NULL, t6 TIME(6) NULL,
 dt1 DATETIME(1) NULL, dt4 DATETIME(4) NULL, dt0 DATETIME NULL,
 ts0 TIMESTAMP NULL DEFAULT NULL, ts5 TIMESTAMP(5) NULL DEFAULT NULL,
 tb TINYBLOB NULL, mb MEDIUMBLOB NULL, lb LONGTEXT CHARACTER SET utf8mb4 NULL,
 v300 VARCHAR(300) CHARACTER SET latin1 NULL, gs VARCHAR(50) AS (CONCAT(k, '!')) STORED,
 PRIMARY KEY (k, k2, k3)
)"""
WIDE_COLUMNS = "k, k2, k3, e, s, b64, b9, d, d2, d3, t1, t3, t6, dt1, dt4, dt0, ts0, ts5, tb, mb, lb, v300"
WIDE_ROWS = [
    # Extremes: a 4-byte UTF-8 key, the widest DECIMAL, negative TIME fractions, an invalid date,
    # a zero DATETIME and TIMESTAMP, BLOB lengths of 1, 3 and 4 bytes, a 2-byte VARCHAR length.
    "'ключ 😀', x'00ff', 'é', 'e299', 's0,s39,s7', b'" + "1" * 64 + "', b'100000001',"
    " '-12345678901234567890123456789012345.123456789012345678901234567890', '-0.0000000001', 999999999,"
    " '-00:00:00.1', '-838:59:59.999', '12:00:00.000001',"
    " '2024-02-30 10:00:00.5', '0000-00-00 00:00:00', '9999-12-31 23:59:59', 0, '2038-01-19 03:14:07.99999',"
    " x'', REPEAT('x', 70000), REPEAT('ü', 20000), REPEAT('é', 300)",
    "'', '', '', 'e0', '', 0, 0, 0, 0, 0, '00:00:00', '00:00:00', '00:00:00',"
    " '1000-01-01', '1000-01-01', '1000-01-01', NULL, NULL, NULL, NULL, NULL, NULL",
    "'k', x'01', 'a', " + ", ".join(["NULL"] * 19),
]
ENUM_MEMBERS = [f"e{i}" for i in range(300)]  # more than 255: two bytes a value
SET_MEMBERS = [f"s{i}" for i in range(40)]  # more than 32: eight bytes a value


def test_wide_keys_and_metadata_shapes(any_move: MoveEnv) -> None:
    move = any_move
    enum = ",".join(f"'{m}'" for m in ENUM_MEMBERS)
    move.src(WIDE.format(enum=enum, set=",".join(f"'{m}'" for m in SET_MEMBERS)))
    start = gtid_pos(move)
    move.src(
        "SET time_zone='+00:00'",
        INVALID_DATES,
        f"INSERT INTO wide ({WIDE_COLUMNS}) VALUES " + ",".join(f"({row})" for row in WIDE_ROWS),
        "UPDATE wide SET k = CONCAT(k, '+'), e = 'e1', s = 's3' WHERE k = 'k'",
        "DELETE FROM wide WHERE k = ''",
    )
    native = assert_same_stream(move, ["wide"], start, gtid_pos(move))
    assert native.compiled == {"wide": "native"}
    assert native.delegated_rows == 0


def test_unhandled_type_falls_back_to_the_library(any_move: MoveEnv) -> None:
    move = any_move
    move.src("CREATE TABLE geo (id INT PRIMARY KEY, p POINT NULL, v VARCHAR(10))")
    start = gtid_pos(move)
    move.src(
        "INSERT INTO geo VALUES (1, POINT(1, 2), 'a'), (2, NULL, NULL)",
        "UPDATE geo SET v = 'b' WHERE id = 1",
    )
    native = assert_same_stream(move, ["geo"], start, gtid_pos(move))
    assert native.compiled == {"geo": "column p: column type 255"}
    assert native.delegated_rows == 2


# --------------------------------------------------------------------------- the stream around rows


def test_transactions_tables_rotation_and_big_events(any_move: MoveEnv) -> None:
    move = any_move
    move.source.execute("SET GLOBAL max_allowed_packet = 67108864")  # a 17 MB row event below
    other = f"{move.database}_other"
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v LONGBLOB)",
        "CREATE TABLE b (id INT PRIMARY KEY, n INT)",
        "CREATE TABLE unmoved (id INT PRIMARY KEY)",
        f"CREATE DATABASE `{other}`",
        f"CREATE TABLE `{other}`.a (id INT PRIMARY KEY)",
    )
    try:
        start = gtid_pos(move)
        move.src(
            "BEGIN",
            "INSERT INTO a VALUES (1, 'x'), (2, 'y')",
            "INSERT INTO unmoved VALUES (1)",
            f"INSERT INTO `{other}`.a VALUES (1)",
            "UPDATE b SET n = 1",  # no row: no row event
            "INSERT INTO b SELECT seq, seq FROM seq_1_to_9000",  # partial hand-overs (> 4 batches)
            "COMMIT",
            "FLUSH BINARY LOGS",  # a rotation: the library forgets its table maps
            "UPDATE b SET n = n + 1 WHERE id <= 3000",
            "DELETE FROM a WHERE id = 2",
            "INSERT INTO a VALUES (3, REPEAT('z', 17000000))",  # a packet of more than 16 MiB
            "CREATE TABLE later (id INT)",
        )
        native = assert_same_stream(move, ["a", "b"], start, gtid_pos(move))
        assert native.delegated_rows == 0
    finally:
        move.source.execute(f"DROP DATABASE IF EXISTS `{other}`", "SET GLOBAL max_allowed_packet = DEFAULT")


def test_partial_row_image_is_refused_on_both_paths(any_move: MoveEnv) -> None:
    move = any_move
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT, w INT)", "INSERT INTO a VALUES (1, 1, 1)")
    start = gtid_pos(move)
    move.src("SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE a SET v = 2 WHERE id = 1")
    native = assert_same_stream(move, ["a"], start, gtid_pos(move))
    assert native.error.startswith("UnreproducibleEvent: transaction 0-1-")


def test_ddl_on_a_moved_table_is_refused_on_both_paths(any_move: MoveEnv) -> None:
    move = any_move
    move.src("CREATE TABLE a (id INT PRIMARY KEY)")
    start = gtid_pos(move)
    move.src("INSERT INTO a VALUES (1)", "ALTER TABLE a ADD COLUMN x INT", "INSERT INTO a VALUES (2, 2)")
    native = assert_same_stream(move, ["a"], start, gtid_pos(move))
    assert native.error.startswith("SchemaChanged:")


# --------------------------------------------------------------------------- random values

RANDOM = """CREATE TABLE rnd (
 id INT PRIMARY KEY, ti TINYINT NULL, tiu TINYINT UNSIGNED NULL, mi MEDIUMINT NULL,
 miu MEDIUMINT UNSIGNED NULL, bi BIGINT NULL, biu BIGINT UNSIGNED NULL, d DECIMAL(20,6) NULL,
 f FLOAT NULL, db DOUBLE NULL, dt DATE NULL, dtm DATETIME(3) NULL, ts TIMESTAMP(6) NULL DEFAULT NULL,
 tm TIME(4) NULL, y YEAR NULL, vc VARCHAR(300) CHARACTER SET utf8mb4 NULL,
 lat VARCHAR(20) CHARACTER SET latin1 NULL, vb VARBINARY(300) NULL, bl BLOB NULL, c CHAR(10) NULL,
 e ENUM('a','b','c') NULL, s SET('x','y','z','w') NULL, bt BIT(13) NULL
)"""


def _nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


def _date_text(y: int, m: int, d: int) -> str:
    return f"{y:04d}-{m:02d}-{d:02d}"


ROW = st.tuples(
    *(
        _nullable(s)
        for s in (
            st.integers(-128, 127),
            st.integers(0, 255),
            st.integers(-(2**23), 2**23 - 1),
            st.integers(0, 2**24 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.integers(0, 2**64 - 1),
            st.decimals(-(10**14) + 1, 10**14 - 1, places=6, allow_nan=False, allow_infinity=False),
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.floats(allow_nan=False, allow_infinity=False),
            st.builds(_date_text, st.integers(0, 9999), st.integers(0, 12), st.integers(0, 31)),
            st.builds(
                lambda d, h, mi, s, f: f"{d} {h:02d}:{mi:02d}:{s:02d}.{f:03d}",
                st.builds(_date_text, st.integers(1000, 9999), st.integers(1, 12), st.integers(1, 28)),
                st.integers(0, 23),
                st.integers(0, 59),
                st.integers(0, 59),
                st.integers(0, 999),
            ),
            st.datetimes(dt.datetime(1970, 1, 2), dt.datetime(2038, 1, 18)).map(lambda v: v.isoformat(" ")),
            st.builds(
                lambda neg, h, mi, s, f: f"{'-' if neg else ''}{h}:{mi:02d}:{s:02d}.{f:04d}",
                st.booleans(),
                st.integers(0, 838),
                st.integers(0, 59),
                st.integers(0, 59),
                st.integers(0, 9999),
            ),
            st.sampled_from([0, 1901, 1999, 2155]),
            st.text(max_size=100),
            st.text(st.characters(codec="latin-1"), max_size=20),
            st.binary(max_size=300),
            st.binary(max_size=500),
            st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=10).map(str.rstrip),
            st.sampled_from(["a", "b", "c"]),
            st.sets(st.sampled_from(["x", "y", "z", "w"])).map(",".join),
            st.integers(0, 2**13 - 1),
        )
    )
)
COLS = "ti,tiu,mi,miu,bi,biu,d,f,db,dt,dtm,ts,tm,y,vc,lat,vb,bl,c,e,s,bt"
_ids = itertools.count(1)


@given(rows=st.lists(ROW, min_size=1, max_size=12), updated=st.integers(0, 11), after=ROW)
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
def test_random_values_decode_as_the_library_does(
    any_move: MoveEnv, rows: list[tuple[Any, ...]], updated: int, after: tuple[Any, ...]
) -> None:
    move = any_move
    if not move.src("SHOW TABLES LIKE 'rnd'"):
        move.src(RANDOM)
    start = gtid_pos(move)
    ids = [next(_ids) for _ in rows]
    conn = move.source.admin(move.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone='+00:00', sql_mode='ALLOW_INVALID_DATES'")
            marks = ",".join(["%s"] * (1 + len(COLS.split(","))))
            cur.executemany(
                f"INSERT INTO rnd (id,{COLS}) VALUES ({marks})",
                [(i, *row) for i, row in zip(ids, rows, strict=True)],
            )
            target = ids[updated % len(ids)]
            sets = ",".join(f"{c}=%s" for c in COLS.split(","))
            cur.execute(f"UPDATE rnd SET {sets} WHERE id=%s", (*after, target))
            cur.execute("DELETE FROM rnd WHERE id=%s", (ids[0],))
    finally:
        conn.close()
    native = assert_same_stream(move, ["rnd"], start, gtid_pos(move))
    assert native.compiled == {"rnd": "native"}
    assert native.delegated_rows == 0
