"""Unit tests for row decoding (tablemover.decode), schema helpers (tablemover.schema) and the adaptive
chunk size of the copier (tablemover.copy.next_chunk_size).

Row images are what mysql-replication hands us: a dict in column order. The decoder must turn them
into exactly the tuple of writable columns the target accepts verbatim.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.copy import MAX_CHUNK, MIN_CHUNK, TARGET_CHUNK_S, next_chunk_size
from tablemover.decode import FixKind, RowDecoder
from tablemover.errors import SchemaChanged
from tablemover.schema import Column, Index, TableSchema, choose_chunk_key

FAST = settings(max_examples=200, deadline=None)


def col(
    name: str,
    ordinal: int,
    data_type: str = "int",
    column_type: str | None = None,
    *,
    nullable: bool = False,
    generated: bool = False,
    charset: str | None = None,
) -> Column:
    return Column(
        name=name,
        ordinal=ordinal,
        data_type=data_type,
        column_type=column_type or data_type,
        nullable=nullable,
        generated=generated,
        charset=charset,
    )


def schema(columns: list[Column], indexes: list[Index]) -> TableSchema:
    return TableSchema(
        database="app",
        name="t",
        columns=tuple(columns),
        indexes=tuple(indexes),
        create_statement="",
        foreign_keys=(),
        triggers=(),
    )


PK_ID = Index("PRIMARY", ("id",), True, False)


# --------------------------------------------------------------------------- RowDecoder.row


def test_plain_row_passes_through() -> None:
    dec = RowDecoder(schema([col("id", 0), col("v", 1, "varchar", charset="utf8mb4")], [PK_ID]))
    assert dec.row({"id": 1, "v": b"abc"}) == (1, b"abc")
    assert dec.row({"id": 2, "v": None}) == (2, None)


def test_generated_columns_are_dropped() -> None:
    dec = RowDecoder(
        schema(
            [
                col("g1", 0, generated=True),
                col("id", 1),
                col("g2", 2, generated=True),
                col("v", 3),
                col("g3", 4, generated=True),
            ],
            [PK_ID],
        )
    )
    assert dec.row({"g1": 100, "id": 1, "g2": 200, "v": 2, "g3": 300}) == (1, 2)
    assert dec.key((1, 2)) == (1,)
    assert dec.key_positions == (0,)


def test_mapping_is_by_ordinal_not_by_name() -> None:
    # Without binlog_row_metadata=FULL the library may name columns differently (or not at all).
    dec = RowDecoder(schema([col("id", 0), col("v", 1)], [PK_ID]))
    assert dec.row({"col_0": 7, "col_1": 8}) == (7, 8)


@pytest.mark.parametrize(("bits", "value"), [("0101", 5), ("0", 0), ("1" * 64, 2**64 - 1), ("10000000", 128)])
def test_bit_string_becomes_int(bits: str, value: int) -> None:
    dec = RowDecoder(schema([col("id", 0), col("b", 1, "bit", "bit(64)", nullable=True)], [PK_ID]))
    assert dec.row({"id": 1, "b": bits}) == (1, value)


def test_bit_int_and_null_pass_through() -> None:
    dec = RowDecoder(schema([col("id", 0), col("b", 1, "bit", "bit(8)", nullable=True)], [PK_ID]))
    assert dec.row({"id": 1, "b": 3}) == (1, 3)
    assert dec.row({"id": 1, "b": None}) == (1, None)


SET_COL = col("s", 1, "set", "set('x','a','b','it''s')", nullable=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b", "a"}, "a,b"),
        ({"b", "x"}, "x,b"),
        (frozenset({"it's", "x", "b"}), "x,b,it's"),
        ({"a"}, "a"),
        (set(), ""),
        (5, 5),
        ("a,b", "a,b"),
        (None, None),
    ],
)
def test_set_in_definition_order(value: Any, expected: Any) -> None:
    dec = RowDecoder(schema([col("id", 0), SET_COL], [PK_ID]))
    assert dec.row({"id": 1, "s": value}) == (1, expected)


def test_none_sources_restore_non_null_values() -> None:
    dec = RowDecoder(
        schema(
            [
                col("id", 0),
                col("s", 1, "set", "set('a','b')"),
                col("d", 2, "date"),
                col("dt", 3, "datetime"),
                col("n", 4, nullable=True),
            ],
            [PK_ID],
        )
    )
    image = {"id": 1, "s": None, "d": None, "dt": None, "n": None}
    reasons = {"s": "empty set", "d": "out of date range", "dt": "out of datetime2 range", "n": "null"}
    assert dec.row(image, reasons) == (1, "", "0000-00-00", "0000-00-00 00:00:00", None)
    assert dec.row(image, {"dt": "out of datetime range"}) == (1, None, None, "0000-00-00 00:00:00", None)
    assert dec.row(image) == (1, None, None, None, None)


def test_none_sources_do_not_touch_the_image() -> None:
    dec = RowDecoder(schema([col("id", 0), col("s", 1, "set", "set('a')")], [PK_ID]))
    image = {"id": 1, "s": None}
    dec.row(image, {"s": "empty set"})
    assert image == {"id": 1, "s": None}


@pytest.mark.parametrize("image", [{"id": 1}, {"id": 1, "v": 2, "extra": 3}, {}])
def test_column_count_mismatch_is_schema_changed(image: dict[str, Any]) -> None:
    dec = RowDecoder(schema([col("id", 0), col("v", 1)], [PK_ID]))
    with pytest.raises(SchemaChanged, match=r"app\.t"):
        dec.row(image)


def test_column_count_counts_generated_columns() -> None:
    dec = RowDecoder(schema([col("id", 0), col("g", 1, generated=True)], [PK_ID]))
    assert dec.width == 2
    with pytest.raises(SchemaChanged):
        dec.row({"id": 1})


def test_json_values_are_serialised() -> None:
    dec = RowDecoder(schema([col("id", 0), col("j", 1, "json", nullable=True)], [PK_ID]))
    assert dec.row({"id": 1, "j": {b"k": [1, b"v", None]}}) == (1, '{"k": [1, "v", null]}')
    assert dec.row({"id": 1, "j": None}) == (1, None)


@pytest.mark.parametrize(
    ("charset", "raw"),
    [
        ("utf8mb4", "Grüße 😀".encode()),
        ("latin1", b"\x80"),
        # Python's cp1252 (which PyMySQL maps latin1 to) has no character for these five bytes;
        # MariaDB's latin1 has: decoding them stopped the move on every run.
        ("latin1", b"\x81\x8d\x8f\x90\x9d"),
        ("latin1", bytes(range(0x80, 0x100))),
        ("cp1251", "Привет".encode("cp1251")),
        ("ascii", b"\x80"),  # a byte no Unicode character maps to in ascii: only bytes keep it
        ("utf16", "é1".encode("utf-16-be")),
        ("sjis", b"\x83\x5c"),
    ],
)
def test_text_key_and_value_bytes_stay_bytes(charset: str, raw: bytes) -> None:
    # No Python codec is the server's character set: keys keep their bytes like values do, and
    # the writer compares them in the column's collation (sql.Col.marker).
    dec = RowDecoder(
        schema(
            [col("k", 0, "varchar", "varchar(20)", charset=charset), col("v", 1, "varchar", charset=charset)],
            [Index("PRIMARY", ("k",), True, False)],
        )
    )
    row = dec.row({"k": raw, "v": raw})
    assert row == (raw, raw)
    assert dec.key(row) == (raw,)
    assert dec.fix_plan == {}


@pytest.mark.parametrize(
    ("column_type", "stored", "padded"),
    [
        ("binary(16)", b"\x01\x02", b"\x01\x02" + bytes(14)),
        ("binary(4)", b"", bytes(4)),
        ("binary(4)", b"\x00\x00\x00\x01", b"\x00\x00\x00\x01"),
        ("binary(3)", b"a b", b"a b"),
        ("binary(1)", b"", b"\x00"),
    ],
)
def test_binary_values_and_keys_get_their_trailing_zero_bytes_back(
    column_type: str, stored: bytes, padded: bytes
) -> None:
    # The binlog strips BINARY(N)'s trailing 0x00 bytes (gh-ost #915, python-mysql-replication #401).
    dec = RowDecoder(
        schema(
            [
                col("k", 0, "binary", column_type, charset=None),
                col("v", 1, "binary", column_type, charset=None, nullable=True),
                col("vb", 2, "varbinary", "varbinary(16)", charset=None, nullable=True),
            ],
            [Index("PRIMARY", ("k",), True, False)],
        )
    )
    row = dec.row({"k": stored, "v": stored, "vb": stored})
    assert row == (padded, padded, stored)  # VARBINARY keeps its zero bytes in the binlog
    assert dec.key(row) == (padded,)
    assert dec.row({"k": stored, "v": None, "vb": None}) == (padded, None, None)
    assert {k for k, _ in dec.fix_plan.values()} == {FixKind.PAD_BINARY}


def test_binary_key_columns_stay_bytes() -> None:
    dec = RowDecoder(
        schema(
            [col("k", 0, "varbinary", "varbinary(16)"), col("c", 1, "char", "char(4)", charset="binary")],
            [Index("PRIMARY", ("k", "c"), True, False)],
        )
    )
    assert dec.row({"k": b"\x00\xff", "c": b"\x80\x00"}) == (b"\x00\xff", b"\x80\x00")


def test_composite_key_order_follows_index() -> None:
    dec = RowDecoder(
        schema(
            [col("a", 0), col("b", 1, "varchar", charset="utf8mb4"), col("c", 2)],
            [Index("PRIMARY", ("c", "b"), True, False)],
        )
    )
    row = dec.row({"a": 1, "b": b"x", "c": 3})
    assert row == (1, b"x", 3)
    assert dec.key(row) == (3, b"x")


# --------------------------------------------------------------------------- Column helpers


@pytest.mark.parametrize(
    ("column_type", "members"),
    [
        ("enum('a','b')", ("a", "b")),
        ("enum('a,b','c')", ("a,b", "c")),
        ("enum('it''s','x')", ("it's", "x")),
        ("set('','a')", ("", "a")),
        ("enum('(',')')", ("(", ")")),
        ("set('a b','c''''d',',')", ("a b", "c''d", ",")),
        ("enum('é','😀')", ("é", "😀")),
    ],
)
def test_enum_values(column_type: str, members: tuple[str, ...]) -> None:
    data_type = column_type.split("(", 1)[0]
    assert col("e", 0, data_type, column_type).enum_values == members


def test_enum_values_empty_for_other_types() -> None:
    assert col("v", 0, "varchar", "varchar(10)").enum_values == ()


def test_column_flags() -> None:
    assert col("u", 0, "bigint", "bigint(20) unsigned").unsigned
    assert not col("s", 0, "bigint", "bigint(20)").unsigned
    assert col("u", 0, "mediumint", "mediumint(8)").int_bits == 24
    assert col("d", 0, "decimal", "decimal(10,2)").int_bits is None
    assert col("b", 0, "varbinary", "varbinary(3)").is_binary
    assert col("c", 0, "char", "char(3)", charset="binary").is_binary
    assert col("c", 0, "char", "char(3)", charset="latin1").is_text
    assert not col("c", 0, "char", "char(3)", charset="latin1").is_binary


# --------------------------------------------------------------------------- choose_chunk_key


def cols(*specs: tuple[str, bool]) -> dict[str, Column]:
    return {name: col(name, i, nullable=nullable) for i, (name, nullable) in enumerate(specs)}


COLS = cols(("id", False), ("a", False), ("b", False), ("n", True), ("c", False))


def test_primary_key_wins() -> None:
    indexes = (
        Index("a_uq", ("a",), True, False),
        Index("PRIMARY", ("b", "c"), True, False),
    )
    assert choose_chunk_key(indexes, COLS) == ("b", "c")


def test_nullable_unique_is_skipped() -> None:
    indexes = (Index("n_uq", ("n",), True, False), Index("ab_uq", ("a", "b"), True, False))
    assert choose_chunk_key(indexes, COLS) == ("a", "b")


def test_nullable_member_of_composite_unique_is_skipped() -> None:
    indexes = (Index("an_uq", ("a", "n"), True, False),)
    assert choose_chunk_key(indexes, COLS) is None


def test_prefix_index_is_skipped() -> None:
    indexes = (Index("a_prefix", ("a",), True, True), Index("bc_uq", ("b", "c"), True, False))
    assert choose_chunk_key(indexes, COLS) == ("b", "c")


def test_non_unique_index_is_skipped() -> None:
    assert choose_chunk_key((Index("a_idx", ("a",), False, False),), COLS) is None


def test_narrowest_then_name() -> None:
    indexes = (
        Index("z_wide", ("a", "b"), True, False),
        Index("m_uq", ("c",), True, False),
        Index("k_uq", ("b",), True, False),
    )
    assert choose_chunk_key(indexes, COLS) == ("b",)
    assert choose_chunk_key(tuple(reversed(indexes)), COLS) == ("b",)


def test_no_key_at_all() -> None:
    assert choose_chunk_key((), COLS) is None


def test_schema_chunk_key_and_writable_columns() -> None:
    s = schema([col("g", 0, generated=True), col("id", 1)], [PK_ID])
    assert s.chunk_key == ("id",)
    assert [c.name for c in s.writable_columns] == ["id"]
    assert s.column("g").generated
    assert s.qualified_name == "app.t"
    with pytest.raises(KeyError):
        s.column("missing")


# --------------------------------------------------------------------------- next_chunk_size


def test_chunk_size_examples() -> None:
    assert next_chunk_size(1000, TARGET_CHUNK_S, 1000) == 1000
    assert next_chunk_size(1000, TARGET_CHUNK_S / 10, 1000) == 2000  # fast: at most double
    assert next_chunk_size(1000, TARGET_CHUNK_S * 10, 1000) == 500  # slow: at most halve
    assert next_chunk_size(1000, TARGET_CHUNK_S * 2, 1000) == 500
    assert next_chunk_size(1000, TARGET_CHUNK_S / 1.5, 1000) == 1500


def test_chunk_size_clamped_to_bounds() -> None:
    assert next_chunk_size(MAX_CHUNK, 0.001, MAX_CHUNK) == MAX_CHUNK
    assert next_chunk_size(MIN_CHUNK, 100.0, MIN_CHUNK) == MIN_CHUNK
    assert next_chunk_size(MAX_CHUNK - 1, 0.001, MAX_CHUNK - 1) == MAX_CHUNK


def test_short_last_chunk_keeps_size() -> None:
    assert next_chunk_size(1000, 100.0, 999) == 1000
    assert next_chunk_size(1000, 0.0001, 0) == 1000


def test_zero_elapsed_keeps_size() -> None:
    assert next_chunk_size(1000, 0.0, 1000) == 1000


@given(
    st.integers(MIN_CHUNK, MAX_CHUNK),
    st.floats(min_value=1e-6, max_value=1e3, allow_nan=False),
)
@FAST
def test_chunk_size_bounds_and_rate_property(size: int, elapsed: float) -> None:
    new = next_chunk_size(size, elapsed, size)
    assert MIN_CHUNK <= new <= MAX_CHUNK
    assert new <= 2 * size
    assert new >= min(size, max(MIN_CHUNK, size // 2))


@given(
    st.integers(MIN_CHUNK, MAX_CHUNK),
    st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
    st.integers(0, MAX_CHUNK),
)
@FAST
def test_short_chunk_property(size: int, elapsed: float, rows: int) -> None:
    if rows < size:
        assert next_chunk_size(size, elapsed, rows) == size


@given(
    st.integers(10, 100_000),  # every chunk_size the config accepts as a start value
    st.floats(min_value=1e-6, max_value=1e3, allow_nan=False),
)
@FAST
def test_chunk_size_moves_towards_target_only(size: int, elapsed: float) -> None:
    """A slow chunk never makes the next one bigger, a fast one never makes it smaller."""
    new = next_chunk_size(size, elapsed, size)
    if elapsed > TARGET_CHUNK_S:
        assert new <= size, (size, elapsed, new)
    if elapsed < TARGET_CHUNK_S:
        assert new >= size, (size, elapsed, new)


def test_fix_plan_names_each_fix_up() -> None:
    # rowcodec fuses these fix-ups into its compiled decoders; the kinds must say which is which.
    dec = RowDecoder(
        schema(
            [
                col("k", 0, "varchar", "varchar(10)", charset="latin1"),
                col("b", 1, "bit", "bit(3)", nullable=True),
                col("g", 2, "bit", "bit(3)", generated=True),
                col("s", 3, "set", "set('x','y')", nullable=True),
                col("j", 4, "json", nullable=True),
                col("v", 5, "varchar", "varchar(10)", charset="utf8mb4", nullable=True),
            ],
            [Index("PRIMARY", ("k",), True, False)],
        )
    )
    kinds = {i: kind for i, (kind, _fix) in dec.fix_plan.items()}
    assert kinds == {1: FixKind.BIT, 2: FixKind.SET, 3: FixKind.JSON}
    assert dec.row({"k": b"caf\xe9", "b": "101", "g": 0, "s": {"y", "x"}, "j": None, "v": b"v"}) == (
        b"caf\xe9",
        5,
        "x,y",
        None,
        b"v",
    )
