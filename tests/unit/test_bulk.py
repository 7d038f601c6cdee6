"""Batching and the schema-driven bulk types of tablemover.bulk (pure parts)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tablemover import sql
from tablemover.bulk import (
    MAX_SIGNED_64,
    BulkPlan,
    ParamKind,
    WriteWarnings,
    batches,
    bulk_values,
    enum_error_positions,
    estimated_bytes,
    holds_enum_error,
    param_kind,
    plan_bulk,
    row_sizes,
)
from tablemover.schema import Column


def col(name: str, column_type: str, charset: str | None = "utf8mb4", nullable: bool = True) -> Column:
    data_type = column_type.split("(")[0].split(" ")[0]
    return Column(name, 0, data_type, column_type, nullable, False, charset)


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        (col("a", "tinyint(4)"), ParamKind.INT),
        (col("a", "int(10) unsigned"), ParamKind.INT),
        (col("a", "bigint(20)"), ParamKind.INT),
        (col("a", "bigint(20) unsigned"), ParamKind.UINT64),
        (col("a", "year(4)"), ParamKind.INT),
        (col("a", "float"), ParamKind.FLOAT),
        (col("a", "double"), ParamKind.FLOAT),
        (col("a", "decimal(30,10)"), ParamKind.DECIMAL),
        (col("a", "date"), ParamKind.TEMPORAL),
        (col("a", "datetime(6)"), ParamKind.TEMPORAL),
        (col("a", "timestamp(3)"), ParamKind.TEMPORAL),
        (col("a", "time(2)"), ParamKind.TIME),
        (col("a", "varchar(20)"), ParamKind.TEXT),
        (col("a", "longtext"), ParamKind.TEXT),  # MariaDB's JSON
        (col("a", "json", None), ParamKind.TEXT),  # MySQL's JSON
        (col("a", "varchar(20)", "binary"), ParamKind.BYTES),
        (col("a", "varbinary(10)", None), ParamKind.BYTES),
        (col("a", "blob", None), ParamKind.BYTES),
        (col("a", "bit(10)", None), ParamKind.BIT),
        (col("a", "enum('x','y')"), ParamKind.MEMBERS),
        (col("a", "set('x','y')"), ParamKind.MEMBERS),
        (col("a", "point", None), ParamKind.OTHER),
    ],
)
def test_param_kind_comes_from_the_schema(column: Column, kind: ParamKind) -> None:
    assert param_kind(column) is kind


def test_nulls_and_one_type_pass_unchanged() -> None:
    for column, values in [
        (col("a", "int(11)"), [1, None, -5]),
        (col("a", "decimal(5,2)"), [Decimal("1.50"), None]),
        (col("a", "datetime(6)"), [dt.datetime(2024, 1, 1, 0, 0, 0, 5), None]),
        (col("a", "date"), ["0000-00-00", "2024-05-00", None]),
        (col("a", "varchar(5)"), ["x", None]),
        (col("a", "varchar(5)"), [b"raw", None]),
        (col("a", "blob", None), [b"\x00\xff", None]),
        (col("a", "enum('x','y')"), ["x", "y", None]),
        (col("a", "longtext"), ['{"a": 1}', None]),
    ]:
        assert bulk_values(column, param_kind(column), values) is values


def test_unsigned_bigint_above_the_signed_range_goes_as_decimal_text() -> None:
    column = col("u", "bigint(20) unsigned")
    assert bulk_values(column, ParamKind.UINT64, [1, MAX_SIGNED_64, None]) == [1, MAX_SIGNED_64, None]
    assert bulk_values(column, ParamKind.UINT64, [1, 2**64 - 1, None]) == ["1", "18446744073709551615", None]


def test_zero_dates_next_to_dates_make_the_column_text() -> None:
    out = bulk_values(
        col("d", "datetime(6)"),
        ParamKind.TEMPORAL,
        [dt.datetime(2024, 2, 29, 12, 34, 56, 123456), "0000-00-00 00:00:00", None, dt.datetime(2024, 1, 1)],
    )
    assert out == ["2024-02-29 12:34:56.123456", "0000-00-00 00:00:00", None, "2024-01-01 00:00:00"]
    assert bulk_values(col("d", "date"), ParamKind.TEMPORAL, [dt.date(2024, 5, 1), "2024-05-00"]) == [
        "2024-05-01",
        "2024-05-00",
    ]


def test_time_text_keeps_the_sign_and_fraction() -> None:
    values = [
        dt.timedelta(seconds=-1),
        dt.timedelta(hours=-838, minutes=-59, seconds=-59, microseconds=-990000),
    ]
    out = bulk_values(col("t", "time(2)"), ParamKind.TIME, [*values, "12:00:00"])
    assert out == ["-00:00:01.000000", "-838:59:59.990000", "12:00:00"]


def test_text_mixing_raw_bytes_and_str_is_encoded_only_in_utf8() -> None:
    out = bulk_values(col("v", "varchar(10)", "utf8mb4"), ParamKind.TEXT, ["café", b"caf\xc3\xa9", None])
    assert out == [b"caf\xc3\xa9", b"caf\xc3\xa9", None]
    # Any other charset: Python's codec may not be the server's (cp1252 is not MariaDB's latin1),
    # so the batch goes as text, where the server converts the str itself.
    assert bulk_values(col("v", "varchar(10)", "latin1"), ParamKind.TEXT, ["café", b"caf\xe9"]) is None
    assert bulk_values(col("v", "varchar(10)", "nocodec"), ParamKind.TEXT, ["a", b"b"]) is None


def test_bit_values_become_big_endian_bytes_of_the_column_width() -> None:
    out = bulk_values(col("b", "bit(10)", None), ParamKind.BIT, [b"\x03\xff", 5, None])
    assert out == [b"\x03\xff", b"\x00\x05", None]
    assert bulk_values(col("b", "bit(64)", None), ParamKind.BIT, [2**64 - 1, b"\x00" * 8]) == [
        b"\xff" * 8,
        b"\x00" * 8,
    ]


def test_enum_and_set_numbers_next_to_names_become_names() -> None:
    enum_col = col("e", "enum('x','y')")
    assert bulk_values(enum_col, ParamKind.MEMBERS, [2, "x", 0]) == ["y", "x", ""]
    set_col = col("s", "set('x','y','z')")
    assert bulk_values(set_col, ParamKind.MEMBERS, [5, "y"]) == ["x,z", "y"]
    assert bulk_values(set_col, ParamKind.MEMBERS, [5, 0]) == [5, 0]  # numbers alone stay numbers


def test_decimals_and_floats_are_brought_to_one_exact_type() -> None:
    assert bulk_values(col("d", "decimal(5,2)"), ParamKind.DECIMAL, [Decimal("1.5"), 2, "3.25"]) == [
        Decimal("1.5"),
        Decimal(2),
        Decimal("3.25"),
    ]
    assert bulk_values(col("f", "double"), ParamKind.FLOAT, [1.5, 2]) == [1.5, 2.0]
    assert bulk_values(col("f", "double"), ParamKind.FLOAT, [1.5, "x"]) is None


def test_values_the_column_never_produces_go_as_text() -> None:
    assert bulk_values(col("a", "int(11)"), ParamKind.INT, [1, "2"]) is None
    assert bulk_values(col("a", "blob", None), ParamKind.BYTES, [b"x", "y"]) is None
    assert bulk_values(col("a", "point", None), ParamKind.OTHER, [b"x", "y"]) is None


def _plan(columns: list[Column], rows: list[tuple[Any, ...]]) -> BulkPlan | str:
    return plan_bulk(columns, [param_kind(c) for c in columns], rows)


def test_a_column_null_in_every_row_becomes_a_literal_null() -> None:
    columns = [
        col("id", "int(11)"),
        col("note", "varchar(9)"),
        col("j", "longtext"),
        col("n", "decimal(5,2)"),
    ]
    rows = [(1, None, '{"a": 1}', Decimal("1.00")), (2, None, None, Decimal("2.50"))]
    plan = _plan(columns, rows)
    assert isinstance(plan, BulkPlan)
    assert plan.nulls == (1,)
    assert plan.rows == [(1, '{"a": 1}', Decimal("1.00")), (2, None, Decimal("2.50"))]
    # The statement for that plan.
    text = sql.insert_rows("d", "t", [c.name for c in columns], 1, marker="?", literal_null=plan.nulls)
    assert text.endswith("VALUES (?, NULL, ?, ?)")


def test_plan_names_the_column_that_cannot_go_bulk() -> None:
    reason = _plan([col("id", "int(11)"), col("v", "blob", None)], [(1, b"x"), (2, "y")])
    assert isinstance(reason, str) and "'v'" in reason and "bytes, str" in reason


def test_enum_error_value_rows() -> None:
    columns = [col("id", "int(11)"), col("e", "enum('a','b')"), col("f", "enum('','x')")]
    positions = enum_error_positions(columns)
    assert positions == (1,)  # '' is a member of f: a real value there
    assert holds_enum_error((1, "", "x"), positions)
    assert holds_enum_error((1, 0, "x"), positions)
    assert not holds_enum_error((1, "a", ""), positions)
    assert not holds_enum_error((1, None, ""), positions)


def test_write_warnings_name_the_first() -> None:
    exc = WriteWarnings([("Note", 1265, "Data truncated for column 'n' at row 1"), ("Warning", 1264, "x")])
    assert exc.first == ("Note", 1265, "Data truncated for column 'n' at row 1")
    assert "Note 1265" in str(exc)


def test_estimate_bounds_utf8_strings_at_four_bytes_a_character() -> None:
    row = ("😀" * 10, b"\x00" * 7, 12, None)
    assert estimated_bytes(row) >= len("😀".encode()) * 10 + 7 + 2 * 8


@pytest.mark.parametrize("limit", [1, 100, 1_000, 10_000_000])
def test_batches_keep_order_cover_every_row_and_respect_the_limit(limit: int) -> None:
    rows = [(i, "x" * (i % 50)) for i in range(500)]
    out = batches(rows, limit)
    assert [r for b in out for r in b] == rows
    for b in out:
        assert len(b) == 1 or sum(estimated_bytes(r) for r in b) <= limit


_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.just(""),
    st.just(b""),
)


@given(
    st.integers(min_value=1, max_value=6).flatmap(lambda n: st.lists(st.tuples(*[_VALUES] * n), max_size=30))
)
def test_the_column_wise_sizes_are_the_per_row_estimates(rows: list[tuple[Any, ...]]) -> None:
    assert row_sizes(rows) == [estimated_bytes(r) for r in rows]


@given(
    st.lists(st.tuples(st.integers(), st.one_of(st.none(), st.text(max_size=40))), max_size=200),
    st.integers(min_value=1, max_value=3000),
)
def test_batches_split_exactly_as_the_per_row_walk(rows: list[tuple[Any, ...]], limit: int) -> None:
    expected: list[list[tuple[Any, ...]]] = []
    size = 0
    for row in rows:
        if expected and size and size + estimated_bytes(row) > limit:
            expected.append([])
            size = 0
        if not expected:
            expected.append([])
        expected[-1].append(row)
        size += estimated_bytes(row)
    assert [list(b) for b in batches(rows, limit)] == expected


def test_a_row_bigger_than_the_limit_goes_alone() -> None:
    rows = [(1, "a"), (2, "b" * 1000), (3, "c")]
    assert [len(b) for b in batches(rows, 100)] == [1, 1, 1]


def test_bulk_statement_uses_question_marks() -> None:
    text = sql.insert_rows("d", "t", ["a", "b"], 1, verb="REPLACE")
    bulk = sql.insert_rows("d", "t", ["a", "b"], 1, verb="REPLACE", marker="?")
    assert text.endswith("VALUES (%s, %s)") and bulk.endswith("VALUES (?, ?)")
    assert text.replace("%s", "?") == bulk
    with pytest.raises(ValueError):
        sql.insert_rows("d", "t", ["a"], 1, marker=":1")
