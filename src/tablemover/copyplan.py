"""The copy's plan, pure: how many copy streams, which key ranges, where each resumes, chunk sizes.

The parallel copy (:mod:`tablemover.parallel`) cuts a table into *ranges* of its first key column's
values, ``lo < first <= hi``, each copied in key order by one stream at a time, so that N streams
copy one table at once. A range is a span of values, not of rows: it is cut from the column's
MIN and MAX when the copy starts, its ends open (``None``) so that a row inserted below the MIN or
above the MAX later still falls into the first or the last range. Only an integer first column is
cut (values can be spaced evenly without reading the table: a sampled boundary would cost a scan of
the index, which is the table for a clustered key); another table is one range, and streams run
across tables.

Nothing here does I/O: :mod:`tablemover.rangestore` persists what is planned, the copier reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tablemover.keycodec import KeyValue, decode_key, encode_key

MIN_CHUNK = 10  # the bounds config.py allows for chunk_size
MAX_CHUNK = 100_000
TARGET_CHUNK_S = 0.25  # keeps the shared locks short while amortising round trips
MAX_AUTO_THREADS = 8
RANGES_PER_THREAD = 2  # more ranges than streams: a stream that finishes early takes another
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})


@dataclass(frozen=True)
class ChunkPlan:
    """Where the next chunk starts and how big it is; pure."""

    after: tuple[KeyValue, ...] | None
    size: int


def next_chunk_size(size: int, elapsed_s: float, rows: int) -> int:
    """Adapt the chunk size towards :data:`TARGET_CHUNK_S`, at most doubling or halving per step."""
    if rows < size or elapsed_s <= 0:
        return size
    factor = max(0.5, min(2.0, TARGET_CHUNK_S / elapsed_s))
    return max(MIN_CHUNK, min(MAX_CHUNK, int(size * factor)))


def throttled_chunk_size(size: int) -> int:
    """The next chunk's size after the throttle held the copy: half, so that the locks a chunk
    holds and the apply work it makes shrink while the servers are under pressure."""
    return max(MIN_CHUNK, size // 2)


def auto_copy_threads(cores: int | None) -> int:
    """``copy_threads = 0``: one copy stream per two cores of this host (each stream keeps a source
    and a target server thread and a share of this process busy), at least 1, at most 8."""
    return max(1, min(MAX_AUTO_THREADS, (cores or 1) // 2))


@dataclass(frozen=True)
class Span:
    """Values of the first key column a range holds: ``lo < value <= hi`` (None: unbounded)."""

    lo: int | None = None
    hi: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form stored with each range row."""
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Span:
        """Inverse of :meth:`to_json`."""
        lo, hi = obj.get("lo"), obj.get("hi")
        return cls(None if lo is None else int(lo), None if hi is None else int(hi))

    @property
    def whole(self) -> bool:
        """The span holds every value (the table is one range)."""
        return self.lo is None and self.hi is None


def split_span(low: int, high: int, parts: int) -> list[Span]:
    """Cut the values ``low..high`` (the column's MIN and MAX) into at most ``parts`` spans of about
    equal width; the first is open below and the last open above, so every value has one span."""
    if parts <= 1 or high <= low:
        return [Span()]
    width = high - low + 1
    parts = min(parts, width)
    cuts = [low - 1 + (width * i) // parts for i in range(1, parts)]
    bounds: list[int | None] = [None, *cuts, None]
    return [Span(bounds[i], bounds[i + 1]) for i in range(parts)]


def plan_spans(
    first_type: str, low: Any, high: Any, estimated_rows: int, threads: int, min_rows: int
) -> list[Span]:
    """The ranges of one table: its first key column's values cut into ``threads`` x
    :data:`RANGES_PER_THREAD` spans, none expected to hold fewer than ``min_rows`` rows (a chunk or
    two: a range costs a partial last chunk and a row in the state table). One span for a
    non-integer first column, an empty table, or one stream."""
    if threads <= 1 or first_type not in INTEGER_TYPES or low is None or high is None:
        return [Span()]
    parts = min(threads * RANGES_PER_THREAD, max(1, estimated_rows // max(1, min_rows)))
    return split_span(int(low), int(high), parts)


@dataclass(frozen=True)
class RangeProgress:
    """How far one range's copy got, as its newest row in the state table says."""

    table: str
    number: int
    span: Span
    last_key: tuple[KeyValue, ...] | None = None
    rows_copied: int = 0
    done: bool = False
    seq: int = 0  # the newest row's seq; the next commit writes seq + 1 (compare-and-set)

    def advanced(self, last_key: tuple[KeyValue, ...] | None, rows: int, done: bool) -> RangeProgress:
        """After one more committed chunk of ``rows`` rows ending at ``last_key``."""
        return replace(
            self,
            last_key=last_key if last_key is not None else self.last_key,
            rows_copied=self.rows_copied + rows,
            done=done,
            seq=self.seq + 1,
        )

    def key_json(self) -> str | None:
        """The last key as stored (keycodec), None before the first chunk."""
        return None if self.last_key is None else json.dumps(encode_key(self.last_key))


def decode_last_key(text: Any) -> tuple[KeyValue, ...] | None:
    """A stored last key back into key values."""
    if text is None:
        return None
    return decode_key(json.loads(text) if isinstance(text, str | bytes | bytearray) else text)


def pending(ranges: Sequence[RangeProgress]) -> list[RangeProgress]:
    """The ranges left to copy, each to resume after its last committed key. In table and range
    order: the streams start spread over the key space (how many rows a span holds is not known)."""
    return [r for r in ranges if not r.done]


def table_done(ranges: Sequence[RangeProgress]) -> bool:
    """Every range of a table is copied (a table always has at least one range once planned)."""
    return bool(ranges) and all(r.done for r in ranges)


def rows_copied(ranges: Sequence[RangeProgress]) -> int:
    """Rows committed over the ranges."""
    return sum(r.rows_copied for r in ranges)
