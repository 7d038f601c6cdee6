"""Turn the binlog library's decoded row images into rows our writer can insert verbatim.

Row images are mapped to columns by *ordinal* against our own inspection of the table, because the
binlog carries column names, charsets, signedness and enum members only with
``binlog_row_metadata=FULL``. Each fix-up below exists because of a case where the library's value
would not round-trip without the metadata.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from tablemover import mysqljson
from tablemover.changes import Row
from tablemover.errors import SchemaChanged
from tablemover.mysqljson import RawJson
from tablemover.schema import Column, TableSchema

Fix = Callable[[Any], Any]

# The library returns None for values it cannot represent in Python; these are not NULLs.
_NOT_NULL = {
    "empty set": "",
    "out of date range": "0000-00-00",
    "out of datetime range": "0000-00-00 00:00:00",
    "out of datetime2 range": "0000-00-00 00:00:00",
}


def _bit(v: Any) -> Any:
    # The library renders BIT(n) as a string of '0'/'1'; the server accepts the integer.
    return int(v, 2) if isinstance(v, str) else v


_EPOCH = dt.datetime(1970, 1, 1)
ZERO_TIMESTAMP = "0000-00-00 00:00:00"


def _zero_timestamp(v: Any) -> Any:
    # The binlog stores TIMESTAMP as seconds since the epoch, and the zero timestamp as 0, which
    # the library reads as 1970-01-01 00:00:00. That instant (UTC) is below TIMESTAMP's range
    # (from 00:00:01), so the value can only be the zero timestamp: write that back.
    return ZERO_TIMESTAMP if v == _EPOCH else v


def _zero_year(v: Any) -> Any:
    # YEAR is one byte, value - 1900, with 0 for the year 0000; the library adds 1900 to it. 1900
    # is not a YEAR value (1901-2155 or 0000), so it can only be 0000.
    return 0 if v == 1900 else v


def _set(order: Sequence[str]) -> Fix:
    position = {name: i for i, name in enumerate(order)}

    def fix(v: Any) -> Any:
        # A Python set has no order; the server wants "a,b" (an int bitmask passes as is).
        if isinstance(v, set | frozenset):
            return ",".join(sorted(v, key=lambda m: position.get(m, len(position))))
        return v

    return fix


class UnreproducibleValue(ValueError):
    """A row image value that cannot be written exactly; the stream stops the move with it.

    The decoder does not know the transaction; the stream's translator names it in the
    :class:`~tablemover.errors.UnreproducibleEvent` it raises from this.
    """

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column}: {reason}")
        self.column = column
        self.reason = reason


def _json(column: str) -> Fix:
    def fix(v: Any) -> Any:
        # Only MySQL reports DATA_TYPE 'json' (MariaDB's JSON is LONGTEXT and arrives as text).
        # The stream hands over MySQL's binary JSON undecoded (mysqljson.RawJson); it becomes the
        # exact JSON text, or the move stops on what text cannot carry (DECIMAL, dates, ...).
        if v is None:
            return None
        if isinstance(v, RawJson):
            try:
                return mysqljson.to_text(v)
            except mysqljson.UnrepresentableJson as exc:
                raise UnreproducibleValue(column, str(exc)) from exc
        # Python objects from the library's own parser (a caller without the stream's reader
        # patch): exact only for what JSON has; anything else stops rather than guessing.
        try:
            return json.dumps(_debytes(v), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UnreproducibleValue(column, f"a JSON value the binlog library decoded as {exc}") from exc

    return fix


def _debytes(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8")  # JSON strings are UTF-8; anything else raises (refused)
    if isinstance(obj, dict):
        return {_debytes(k): _debytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_debytes(v) for v in obj]
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    raise TypeError(f"{type(obj).__name__} {obj!r}"[:120])


# MariaDB's fixed-size binary types: the binlog strips their trailing 0x00 bytes like BINARY(N)'s.
_FIXED_BINARY = {"inet4": 4, "inet6": 16, "uuid": 16}


def binary_width(column: Column) -> int | None:
    """N of a BINARY(N) column (also ``CHAR(N) CHARACTER SET binary``) or the size of an INET4,
    INET6 or UUID column, else None."""
    if column.data_type in _FIXED_BINARY:
        return _FIXED_BINARY[column.data_type]
    if column.data_type != "binary":
        return None
    match = _WIDTH.search(column.column_type)
    return int(match.group(1)) if match else 1  # BINARY without a width is BINARY(1)


_WIDTH = re.compile(r"\((\d+)\)")


def _pad_binary(width: int) -> Fix:
    # The binlog stores BINARY(N) without its trailing 0x00 bytes (the pad character; MySQL and
    # MariaDB both strip them in Field_string::pack; MariaDB's INET4/INET6/UUID too). Stored, the
    # value always has N bytes: a key matched without them finds nothing, and a value written
    # without them differs (or, for INET4 '0.0.0.0', is refused: '' is no INET4 value).
    def fix(v: Any) -> Any:
        return v.ljust(width, b"\0") if isinstance(v, bytes) else v

    return fix


class FixKind(enum.Enum):
    """Which fix-up a column's library value gets; the native row decoder (rowcodec) fuses some."""

    PAD_BINARY = "pad_binary"  # BINARY(N) bytes, padded back to N with 0x00
    BIT = "bit"  # '0'/'1' string -> int (an int passes as is)
    SET = "set"  # Python set -> "a,b" in definition order (a str passes as is)
    JSON = "json"  # MySQL binary JSON (mysqljson.RawJson) -> exact JSON text, or a refusal
    ZERO_TIMESTAMP = "zero_timestamp"  # 1970-01-01 00:00:00 (the binlog's 0) -> the zero timestamp
    ZERO_YEAR = "zero_year"  # 1900 (the binlog's 0) -> 0000


def _fix_for(column: Column) -> tuple[FixKind, Fix] | None:
    # Key columns keep their bytes too (no Python codec is the server's charset); the writer
    # compares them in the column's collation (sql.Col's placeholder), so the index is used.
    width = binary_width(column)
    if width is not None:
        return FixKind.PAD_BINARY, _pad_binary(width)
    if column.data_type == "bit":
        return FixKind.BIT, _bit
    if column.data_type == "set":
        return FixKind.SET, _set(column.enum_values)
    if column.data_type == "json":
        return FixKind.JSON, _json(column.name)
    if column.data_type == "timestamp":
        return FixKind.ZERO_TIMESTAMP, _zero_timestamp
    if column.data_type == "year":
        return FixKind.ZERO_YEAR, _zero_year
    return None


class RowDecoder:
    """Maps one table's row images (a dict in column order) to writable-column tuples."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.width = len(schema.columns)
        self._positions = [c.ordinal for c in schema.writable_columns]
        key = schema.chunk_key or ()
        names = [c.name for c in schema.writable_columns]
        self.key_positions = tuple(names.index(k) for k in key)
        # Writable-column index -> (kind, fix): what the native decoder must reproduce.
        self.fix_plan: dict[int, tuple[FixKind, Fix]] = {
            i: planned for i, c in enumerate(schema.writable_columns) if (planned := _fix_for(c))
        }
        self._fixes = [(i, fix) for i, (_kind, fix) in self.fix_plan.items()]

    def row(self, image: dict[str, Any], none_sources: dict[str, str] | None = None) -> Row:
        """The writable columns of one row image, fixed up.

        ``none_sources`` is the library's note of *why* a value is None; only a real NULL stays None.
        """
        values = list(image.values())
        if none_sources:
            names = list(image)
            for name, why in none_sources.items():
                restored = _NOT_NULL.get(why)
                if restored is not None:
                    values[names.index(name)] = restored
        if len(values) != self.width:
            raise SchemaChanged(
                f"binlog row for {self.schema.qualified_name} has {len(values)} columns, we know "
                f"{self.width}: the table was altered during the move. Restart the move from scratch."
            )
        out = [values[p] for p in self._positions]
        for i, fix in self._fixes:
            out[i] = fix(out[i])
        return tuple(out)

    def key(self, row: Row) -> tuple[Any, ...]:
        """The chunk-key values of a decoded row."""
        return tuple(row[p] for p in self.key_positions)
