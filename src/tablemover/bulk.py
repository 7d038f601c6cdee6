"""Multi-row writes to the target: MariaDB's bulk protocol, with the text protocol as the exception.

The server parses a multi-row ``INSERT ... VALUES (...), (...)`` text statement at a large cost per
row, and escaping every value into that text costs us about as much again. MariaDB's
``COM_STMT_BULK_EXECUTE`` sends one prepared statement with every row bound in binary form: about
half the server time and a fifth of our CPU for a copy chunk (docs/benchmarks.md).

The driver derives each parameter's wire type from the Python values of a batch, and refuses a
batch whose column mixes Python types or is NULL in every row. Real batches do both all the time
(a nullable column NULL in a whole batch, zero dates as text next to date objects), so the types
come from the inspected schema instead (:func:`param_kind`): each column's values are brought to
the one Python type that carries that column's values exactly (:func:`bulk_values`), and a column
NULL in every row of a batch is written as a literal ``NULL`` in a statement variant of its own.
What still goes as text, counted in ``text_batches`` and logged at DEBUG:

* a column whose values cannot be brought to one exact type (a value of a type the column never
  produces, or str and bytes mixed in a character set other than UTF-8);
* values the driver cannot encode (a string that is not valid in the connection charset);
* everything on MySQL (no bulk protocol), or once a server refused the bulk protocol.

Unsigned BIGINT values above 2^63 - 1 are sent as decimal text in the bulk batch: the driver
declares every integer parameter *signed*, and the server parses decimal text exactly.

Batches are bounded in bytes so that no request exceeds the target's ``max_allowed_packet``, which
would make the server drop the connection.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from itertools import accumulate, repeat
from operator import add, mul
from typing import Any

import anyio
from asyncmy.cursors import Cursor
from asyncmy.errors import NotSupportedError, ProgrammingError

from tablemover import sql
from tablemover.changes import Row
from tablemover.db import query_one
from tablemover.log import event
from tablemover.schema import Column

MAX_SIGNED_64 = 2**63 - 1
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
FIXED_VALUE_BYTES = 16  # numbers, temporals and the per-value indicator
ROW_OVERHEAD_BYTES = 8
MAX_VARIANTS = 16  # prepared statements kept per writer, one per set of all-NULL columns
MSG_TEXT_FALLBACK = "rows not bulk-compatible; writing them as text (slower, same result)"

_BIT_WIDTH = re.compile(r"bit\((\d+)\)")
_UTF8 = frozenset({None, "utf8mb4", "utf8mb3", "utf8"})

# Warnings that say nothing about the stored values: deprecated syntax, a statement unsafe for a
# STATEMENT-format binlog on the target, the range optimizer's memory limit (MySQL).
BENIGN_WARNINGS = frozenset({1287, 1592, 1681, 3170})

ServerWarning = tuple[str, int, str]  # (level, code, message), as SHOW WARNINGS lists them


class WriteWarnings(Exception):
    """A write succeeded with warnings or notes: the server converted a value to store it."""

    def __init__(self, warnings: Sequence[ServerWarning]) -> None:
        super().__init__("; ".join(f"{lvl} {code}: {msg}" for lvl, code, msg in warnings))
        self.warnings = list(warnings)

    @property
    def first(self) -> ServerWarning:
        """The first warning (the one a message names)."""
        return self.warnings[0]


def _relevant(warnings: Sequence[Any] | None) -> list[ServerWarning]:
    return [(str(w[0]), int(w[1]), str(w[2])) for w in warnings or () if int(w[1]) not in BENIGN_WARNINGS]


class WarningsCursor(Cursor):
    """A cursor that keeps the warnings of every statement it runs instead of only logging them.

    The driver runs ``SHOW WARNINGS`` after each statement that reports warnings (executemany may
    split into several statements, and only the last one's would be visible afterwards) and
    hands them to this hook of asyncmy's Cursor, whose own version only logs them.
    """

    async def _show_warnings(self, conn: Any) -> None:
        self.__dict__.setdefault("caught", []).extend(_relevant(await conn.show_warnings()))

    def raise_warnings(self) -> None:
        """Raise :class:`WriteWarnings` if a statement so far left warnings (and forget them)."""
        caught: list[ServerWarning] = self.__dict__.pop("caught", [])
        if caught:
            raise WriteWarnings(caught)


class ParamKind(enum.Enum):
    """The exact form a column's values take in a bulk batch (and so their wire type)."""

    INT = "int"  # LONGLONG
    UINT64 = "uint64"  # LONGLONG, or decimal text when a value is above 2^63 - 1
    FLOAT = "float"  # DOUBLE
    DECIMAL = "decimal"  # NEWDECIMAL
    TEMPORAL = "temporal"  # DATE / DATETIME objects, or the server's text (zero dates)
    TIME = "time"  # TIME from a timedelta, or text
    TEXT = "text"  # VAR_STRING (str) or BLOB (raw bytes in the column's charset)
    BYTES = "bytes"  # BLOB
    BIT = "bit"  # BLOB, big-endian, as wide as the column
    MEMBERS = "members"  # ENUM / SET by name (VAR_STRING), or by number when all are numbers
    OTHER = "other"  # whatever one Python type the values have (spatial types, ...)


_KINDS = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "year"), ParamKind.INT),
    **dict.fromkeys(("float", "double", "real"), ParamKind.FLOAT),
    **dict.fromkeys(("decimal", "numeric"), ParamKind.DECIMAL),
    **dict.fromkeys(("date", "datetime", "timestamp"), ParamKind.TEMPORAL),
    "time": ParamKind.TIME,
    **dict.fromkeys(
        ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json"), ParamKind.TEXT
    ),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), ParamKind.BYTES),
    "bit": ParamKind.BIT,
    **dict.fromkeys(("enum", "set"), ParamKind.MEMBERS),
}


def param_kind(column: Column) -> ParamKind:
    """How ``column``'s values travel in a bulk batch, from the inspected schema."""
    if column.data_type == "bigint":
        return ParamKind.UINT64 if column.unsigned else ParamKind.INT
    if column.is_binary:
        return ParamKind.BYTES  # also CHAR/VARCHAR/TEXT in the binary character set
    return _KINDS.get(column.data_type, ParamKind.OTHER)


def _time_text(value: dt.timedelta) -> str:
    # The server's TIME text, signed: '-00:00:01.500000'.
    sign = "-" if value < dt.timedelta(0) else ""
    micros = abs(value) // dt.timedelta(microseconds=1)
    seconds, frac = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{frac:06d}"


def _temporal_text(value: Any) -> Any:
    if type(value) is dt.datetime:
        return value.isoformat(sep=" ")
    if type(value) is dt.date:
        return value.isoformat()
    return value


def _member_names(members: Sequence[str], is_set: bool) -> Callable[[Any], Any]:
    def names(value: Any) -> Any:
        if type(value) is not int:
            return value
        if is_set:
            return ",".join(m for i, m in enumerate(members) if value >> i & 1)
        return members[value - 1] if 0 < value <= len(members) else ""

    return names


def bulk_values(column: Column, kind: ParamKind, values: Sequence[Any]) -> Sequence[Any] | None:
    """``values`` (one column of a batch, NULLs included) in one exact Python type, or None.

    None means the batch cannot carry them exactly in binary form and goes as text.
    """
    types = set(map(type, values))
    types.discard(type(None))
    if kind is ParamKind.INT:
        if types <= {int}:
            return values
        if types <= {int, bool}:
            return [None if v is None else int(v) for v in values]
        return None
    if kind is ParamKind.UINT64:
        if not types <= {int}:
            return None
        if any(v is not None and v > MAX_SIGNED_64 for v in values):
            return [None if v is None else str(v) for v in values]
        return values
    if kind is ParamKind.FLOAT:
        if types <= {float}:
            return values
        if types <= {float, int}:
            return [None if v is None else float(v) for v in values]
        return None
    if kind is ParamKind.DECIMAL:
        if types <= {Decimal}:
            return values
        if types <= {Decimal, int, str}:
            return [None if v is None else Decimal(v) for v in values]
        return None
    if kind is ParamKind.TEMPORAL:
        if len(types) <= 1 and types <= {dt.datetime, dt.date, str}:
            return values
        if types <= {dt.datetime, dt.date, str}:
            # Zero dates ('0000-00-00', '2024-05-00') have no Python value: the whole column goes
            # as the server's text, which it parses back to the same value.
            return [_temporal_text(v) for v in values]
        return None
    if kind is ParamKind.TIME:
        if len(types) <= 1 and types <= {dt.timedelta, str}:
            return values
        if types <= {dt.timedelta, str}:
            return [_time_text(v) if type(v) is dt.timedelta else v for v in values]
        return None
    if kind is ParamKind.TEXT:
        if len(types) <= 1 and types <= {str, bytes}:
            return values
        if types <= {str, bytes}:
            # Stored bytes next to text (a MySQL JSON document, or a str a caller made): UTF-8 is
            # exact for utf8mb4/utf8mb3 columns. For any other character set Python's codec may
            # not be the server's (cp1252 is not MariaDB's latin1), so the batch goes as text,
            # where the server converts the str itself.
            if column.charset not in _UTF8:
                return None
            return [v.encode("utf-8") if type(v) is str else v for v in values]
        return None
    if kind is ParamKind.BYTES:
        if types <= {bytes}:
            return values
        if types <= {bytes, bytearray}:
            return [None if v is None else bytes(v) for v in values]
        return None
    if kind is ParamKind.BIT:
        if types <= {bytes}:
            return values
        if types <= {bytes, int}:
            match = _BIT_WIDTH.search(column.column_type)
            width = (int(match.group(1)) + 7) // 8 if match else 8
            return [v.to_bytes(width, "big") if type(v) is int else v for v in values]
        return None
    if kind is ParamKind.MEMBERS:
        if len(types) <= 1 and types <= {str, int}:
            return values  # names, or numbers the server maps to members itself
        if types <= {str, int}:
            names = _member_names(column.enum_values, column.data_type == "set")
            return [names(v) for v in values]
        return None
    return values if len(types) <= 1 else None


def estimated_bytes(row: Row) -> int:
    """An upper bound of a row's size on the wire (strings counted at 4 bytes a character)."""
    size = ROW_OVERHEAD_BYTES
    for v in row:
        if type(v) is str:
            size += 4 * len(v) + 9
        elif type(v) is bytes:
            size += len(v) + 9
        else:
            size += FIXED_VALUE_BYTES
    return size


def row_sizes(rows: Sequence[Row]) -> list[int]:
    """``[estimated_bytes(r) for r in rows]``, computed a column at a time.

    Row by row this is a Python loop over every value, which cost as much as planning the bulk
    parameters; a column of one type (all strings, all bytes, nothing sized) is a few C loops.
    """
    sizes = [ROW_OVERHEAD_BYTES] * len(rows)
    for values in zip(*rows, strict=True):
        types = set(map(type, values))
        column: Iterable[int]
        if types == {str}:
            column = map(add, map(mul, map(len, values), repeat(4)), repeat(9))
        elif types == {bytes}:
            column = map(add, map(len, values), repeat(9))
        elif not types & {str, bytes}:
            column = repeat(FIXED_VALUE_BYTES)
        else:
            column = [estimated_bytes((v,)) - ROW_OVERHEAD_BYTES for v in values]
        sizes = list(map(add, sizes, column))
    return sizes


def batches(rows: Sequence[Row], max_bytes: int) -> list[Sequence[Row]]:
    """Split ``rows`` into consecutive runs of at most ``max_bytes`` each (a bigger row goes alone)."""
    ends = list(accumulate(row_sizes(rows)))
    out: list[Sequence[Row]] = []
    start, before = 0, 0
    while start < len(rows):
        end = max(bisect_right(ends, before + max_bytes, lo=start), start + 1)
        out.append(rows[start:end])
        start, before = end, ends[end - 1]
    return out


def enum_error_positions(columns: Sequence[Column]) -> tuple[int, ...]:
    """Positions of the ENUM columns that can hold the '' error value (no member is '')."""
    return tuple(i for i, c in enumerate(columns) if c.data_type == "enum" and "" not in c.enum_values)


def _is_enum_error(value: Any) -> bool:
    return value == "" or (type(value) is int and value == 0)


def holds_enum_error(row: Row, positions: Sequence[int]) -> bool:
    """Whether ``row`` holds the '' error value (number 0) in one of the ENUM ``positions``."""
    return any(_is_enum_error(row[i]) for i in positions)


_TRUNCATED_COLUMN = re.compile(r"column '(.*)' at row \d+")


def _truncated_column(message: str) -> str | None:
    match = _TRUNCATED_COLUMN.search(message)
    return match.group(1) if match else None


class BulkPlan:
    """A batch ready for the bulk protocol: which columns are NULL throughout, and the other values."""

    __slots__ = ("nulls", "rows")

    def __init__(self, nulls: tuple[int, ...], rows: list[tuple[Any, ...]]) -> None:
        self.nulls = nulls  # positions written as a literal NULL
        self.rows = rows  # the values of the other positions, row by row


def plan_bulk(columns: Sequence[Column], kinds: Sequence[ParamKind], rows: Sequence[Row]) -> BulkPlan | str:
    """How to send ``rows`` in one bulk batch, or the reason they must go as text."""
    nulls: list[int] = []
    kept: list[Sequence[Any]] = []
    for i, values in enumerate(zip(*rows, strict=True)):
        if values.count(None) == len(values):
            nulls.append(i)
            continue
        fixed = bulk_values(columns[i], kinds[i], values)
        if fixed is None:
            found = sorted({type(v).__name__ for v in values if v is not None})
            return f"column {columns[i].name!r} ({columns[i].column_type}) holds {', '.join(found)}"
        kept.append(fixed)
    if not kept:
        return "every column is NULL"
    return BulkPlan(tuple(nulls), list(zip(*kept, strict=True)))


class RowWriter:
    """Writes rows of one table with one statement shape (``REPLACE``, or ``INSERT`` keeping rows)."""

    def __init__(
        self,
        conn: Any,
        database: str,
        table: str,
        columns: Sequence[Column],
        *,
        verb: str,
        keep_existing_on: str | None = None,
        bulk: bool,
        max_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        """``columns`` are the written columns (in row order), as the source's schema describes them."""
        self.conn = conn
        self.database = database
        self.table = table
        self.columns = tuple(columns)
        self.kinds = tuple(param_kind(c) for c in columns)
        self.verb = verb
        self.keep_existing_on = keep_existing_on
        self.text_sql = self.statement("%s")
        self.bulk = bulk  # False for MySQL, or once the server refused the bulk protocol
        self.max_bytes = max_bytes
        self._statements: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._enum_errors = enum_error_positions(columns)
        self._strict_mode: str | None = None
        self.bulk_batches = 0
        self.text_batches = 0

    def statement(self, marker: str, literal_null: tuple[int, ...] = ()) -> str:
        """This writer's one-row statement with ``marker`` placeholders (``?``: bulk)."""
        return sql.insert_rows(
            self.database,
            self.table,
            [c.name for c in self.columns],
            1,
            verb=self.verb,
            marker=marker,
            keep_existing_on=self.keep_existing_on,
            literal_null=literal_null,
        )

    async def write(self, rows: Sequence[Row]) -> None:
        """Write ``rows`` (all of them, or raise the server's error), in their order."""
        if not rows:
            return
        if not self._enum_errors:
            await self._write_rows(rows)
            return
        # Rows holding an ENUM's '' error value are rare; each goes alone, in its place in the
        # order (REPLACE order matters for tables with secondary unique keys, see NetPlan).
        start = 0
        for i, row in enumerate(rows):
            if holds_enum_error(row, self._enum_errors):
                await self._write_rows(rows[start:i])
                await self._write_enum_error_row(row)
                start = i + 1
        await self._write_rows(rows[start:])

    async def _write_rows(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if not self.bulk:
            await self._write_text(rows)
            return
        for batch in batches(rows, self.max_bytes):
            plan = plan_bulk(self.columns, self.kinds, batch)
            if isinstance(plan, str):
                self._fell_back(plan)
            elif await self._write_bulk(plan):
                continue
            await self._write_text(batch)

    def _fell_back(self, reason: str) -> None:
        # DEBUG: a batch on the text path is slower, never wrong; text_batches counts them.
        event(MSG_TEXT_FALLBACK, logging.DEBUG, table=self.table, reason=reason[:200])

    async def _prepared(self, nulls: tuple[int, ...]) -> Any:
        stmt = self._statements.get(nulls)
        if stmt is not None:
            self._statements.move_to_end(nulls)
            return stmt
        stmt = await self.conn.prepare(self.statement("?", nulls))
        self._statements[nulls] = stmt
        if len(self._statements) > MAX_VARIANTS:
            _, oldest = self._statements.popitem(last=False)
            await oldest.close()
        return stmt

    async def _write_bulk(self, plan: BulkPlan) -> bool:
        """True when written; False when these rows (or this server) need the text protocol."""
        prepared = plan.nulls in self._statements
        try:
            stmt = await self._prepared(plan.nulls)
            result = await stmt.execute_bulk(plan.rows)
        except (NotSupportedError, ProgrammingError) as exc:
            # Raised before anything was sent: the server lacks the bulk capability (or the
            # statement cannot be prepared). Text works everywhere; stay on it.
            if isinstance(exc, ProgrammingError) and prepared:
                raise  # a real SQL error of an executed batch
            self.bulk = False
            self._fell_back(f"bulk protocol refused: {exc}")
            return False
        except (ValueError, UnicodeError) as exc:
            # The driver could not pack these values (checked before any I/O); text can.
            self._fell_back(str(exc))
            return False
        self.bulk_batches += 1
        if result.warning_count:
            warnings = _relevant(await self.conn.show_warnings())
            if warnings:
                raise WriteWarnings(warnings)
        return True

    async def _write_enum_error_row(self, row: Row) -> None:
        """Store a row holding an ENUM's '' error value, which strict mode refuses to store.

        A non-strict server stores '' (number 0) for a value that is no member, with a warning;
        the source did so once, and the row must move as it is. The row goes alone with strict
        mode off for that one statement, and every warning except "Data truncated" for exactly
        those columns still refuses it.
        """
        if self._strict_mode is None:
            found = await query_one(self.conn, "SELECT @@SESSION.sql_mode")
            self._strict_mode = str(found[0]) if found else ""
        relaxed = ",".join(m for m in self._strict_mode.split(",") if m and not m.startswith("STRICT_"))
        expected = {self.columns[i].name for i in self._enum_errors if _is_enum_error(row[i])}
        async with self.conn.cursor(WarningsCursor) as cur:
            await cur.execute("SET SESSION sql_mode = %s", (relaxed,))
            try:
                await cur.execute(self.text_sql, row)
            finally:
                with anyio.CancelScope(shield=True):
                    await cur.execute("SET SESSION sql_mode = %s", (self._strict_mode,))
            caught: list[ServerWarning] = cur.__dict__.pop("caught", [])
        unexpected = [w for w in caught if w[1] != 1265 or _truncated_column(w[2]) not in expected]
        if unexpected:
            raise WriteWarnings(unexpected)
        self.text_batches += 1

    async def _write_text(self, rows: Sequence[Row]) -> None:
        async with self.conn.cursor(WarningsCursor) as cur:
            await cur.executemany(self.text_sql, list(rows))
            self.text_batches += 1
            cur.raise_warnings()
