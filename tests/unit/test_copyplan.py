"""The parallel copy's plan (tablemover.copyplan) and its stored form (rangestore.newest): pure."""

from __future__ import annotations

import json

import pytest

from tablemover import rangestore, sql
from tablemover.copyplan import (
    MAX_AUTO_THREADS,
    MIN_CHUNK,
    RANGES_PER_THREAD,
    RangeProgress,
    Span,
    auto_copy_threads,
    decode_last_key,
    pending,
    plan_spans,
    rows_copied,
    split_span,
    table_done,
    throttled_chunk_size,
)


def holder(spans: list[Span], value: int) -> list[int]:
    """Indexes of the spans that hold ``value`` (lo < value <= hi, None open)."""
    return [
        i for i, s in enumerate(spans) if (s.lo is None or s.lo < value) and (s.hi is None or value <= s.hi)
    ]


@pytest.mark.parametrize(("low", "high", "parts"), [(1, 300_000, 8), (-50, 49, 3), (0, 6, 10), (5, 5, 4)])
def test_every_value_falls_in_exactly_one_span(low: int, high: int, parts: int) -> None:
    spans = split_span(low, high, parts)
    assert 1 <= len(spans) <= parts
    assert spans[0].lo is None and spans[-1].hi is None  # rows below MIN / above MAX later
    for value in [low - 1000, low - 1, *range(low, high + 1, max(1, (high - low) // 500)), high, high + 7]:
        assert len(holder(spans, value)) == 1, (value, spans)


def test_spans_are_about_equal_in_width() -> None:
    spans = split_span(1, 800, 8)
    inner = [s.hi - s.lo for s in spans[1:-1] if s.hi is not None and s.lo is not None]
    assert inner == [100] * 6
    assert spans[0].hi == 100 and spans[-1].lo == 700


def test_plan_cuts_only_integer_first_columns_with_enough_rows() -> None:
    assert plan_spans("varchar", "a", "z", 10**6, 4, 2000) == [Span()]
    assert plan_spans("int", None, None, 0, 4, 2000) == [Span()]  # empty table
    assert plan_spans("bigint", 1, 10**6, 10**6, 1, 2000) == [Span()]  # one stream
    assert len(plan_spans("bigint", 1, 10**6, 10**6, 4, 2000)) == 4 * RANGES_PER_THREAD
    # Few rows: no range expected to hold less than min_rows.
    assert len(plan_spans("int", 1, 5000, 5000, 8, 2000)) == 2


def test_auto_threads_follow_the_cores_within_bounds() -> None:
    assert auto_copy_threads(None) == 1
    assert auto_copy_threads(2) == 1
    assert auto_copy_threads(4) == 2
    assert auto_copy_threads(64) == MAX_AUTO_THREADS


def test_throttled_chunks_halve_down_to_the_minimum() -> None:
    assert throttled_chunk_size(1000) == 500
    assert throttled_chunk_size(MIN_CHUNK) == MIN_CHUNK


def test_range_progress_resumes_after_its_last_committed_key() -> None:
    r = RangeProgress("t", 0, Span(None, 100))
    r1 = r.advanced((10, "a"), 10, False)
    r2 = r1.advanced(None, 0, True)  # an empty last chunk keeps the last key
    assert (r1.seq, r1.last_key, r1.rows_copied) == (1, (10, "a"), 10)
    assert (r2.seq, r2.last_key, r2.done) == (2, (10, "a"), True)
    assert decode_last_key(r1.key_json()) == (10, "a")
    other = RangeProgress("t", 1, Span(100, None))
    assert pending([r2, other]) == [other]
    assert not table_done([r2, other]) and table_done([r2])
    assert not table_done([])
    assert rows_copied([r2, other.advanced((150,), 5, True)]) == 15


def test_the_newest_row_of_each_range_wins() -> None:
    def row(table: str, no: int, seq: int, rows: int, done: bool) -> tuple[object, ...]:
        span = json.dumps(Span(None if no == 0 else 10, 10 if no == 0 else None).to_json())
        return (table, no, seq, span, json.dumps([seq]), rows, int(done), "w")

    stored = rangestore.newest(
        [
            row("a", 0, 3, 30, False),
            row("a", 0, 1, 10, False),
            row("a", 1, 0, 0, False),
            row("b", 0, 9, 5, True),
        ]
    )
    assert [(p.number, p.seq, p.rows_copied) for p, _ in stored["a"]] == [(0, 3, 30), (1, 0, 0)]
    assert stored["a"][0][0].last_key == (3,) and stored["a"][0][0].span == Span(None, 10)
    assert stored["b"][0][0].done and stored["b"][0][1] == "w"


def test_a_chunk_read_within_a_span_bounds_the_first_key_column() -> None:
    key = ["a", "b"]  # plain names: compared as the column's own type
    statement = sql.select_chunk("d", "t", ["a", "b", "v"], key, after=(5, "x"), limit=10, span=(0, 100))
    assert "`a` > %s" in statement.text and "`a` <= %s" in statement.text
    assert statement.args[-2:] == [0, 100]
    open_low = sql.select_chunk("d", "t", ["a", "b", "v"], key, after=None, limit=10, span=(None, 100))
    assert open_low.args == [100] and " WHERE " in open_low.text
    whole = sql.select_chunk("d", "t", ["a", "b", "v"], key, after=None, limit=10)
    assert " WHERE " not in whole.text


def test_a_range_row_no_owner_wrote_is_refused() -> None:
    from tablemover.checkpoint import Checkpoint
    from tablemover.errors import SafetyRefusal
    from tablemover.machine import State

    owners = [
        Checkpoint("m", State.COPYING, "", writer="host pid=1"),
        Checkpoint("m", State.COPYING, "", writer="h2"),
    ]
    mine = RangeProgress("t", 0, Span(), None, 5, False, 3)
    rangestore.check_writers("m", {"t": [(mine, "h2")]}, owners)
    rangestore.check_writers("m", {"t": [(mine, "forger")]}, [])  # no owner rows: nothing to check
    with pytest.raises(SafetyRefusal, match=r"range 0 of table t .* was written by 'forger'"):
        rangestore.check_writers("m", {"t": [(mine, "h2"), (mine, "forger")]}, owners)
