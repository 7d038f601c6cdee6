"""Batching and bulk-eligibility rules of tablemover.bulk (pure parts)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tablemover import sql
from tablemover.bulk import MAX_SIGNED_64, batches, estimated_bytes, has_wide_int, wide_int_positions


@dataclass
class Col:
    data_type: str
    column_type: str

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type


def test_wide_int_positions_are_unsigned_bigints_and_bits() -> None:
    cols = [
        Col("bigint", "bigint(20) unsigned"),
        Col("bigint", "bigint(20)"),
        Col("int", "int(10) unsigned"),
        Col("bit", "bit(64)"),
        Col("varchar", "varchar(10)"),
    ]
    assert wide_int_positions(cols) == (0, 3)


def test_has_wide_int_only_above_the_signed_range() -> None:
    rows = [(1, MAX_SIGNED_64), (None, 5)]
    assert not has_wide_int(rows, (0, 1))
    assert has_wide_int([*rows, (MAX_SIGNED_64 + 1, 0)], (0,))
    # A column not listed is not looked at (its values cannot be that wide).
    assert not has_wide_int([(0, MAX_SIGNED_64 + 1)], (0,))


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
