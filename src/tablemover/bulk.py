"""Multi-row writes to the target: MariaDB's bulk protocol when it can carry the rows, text otherwise.

The server parses a multi-row ``INSERT ... VALUES (...), (...)`` text statement at a large cost per
row, and escaping every value into that text costs us about as much again. MariaDB's
``COM_STMT_BULK_EXECUTE`` sends one prepared statement with every row bound in binary form: about
half the server time and a fifth of our CPU for a copy chunk (docs/benchmarks.md).

The binary form is used only where it stores exactly what the text form would:

* the driver declares every integer parameter *signed*, so a batch holding an integer above
  2^63 - 1 (a ``BIGINT UNSIGNED`` or ``BIT(64)`` value) is written as text instead;
* a value the driver cannot pack (a column of mixed Python types, a column NULL in every row, a
  string that is not valid in the connection charset) makes it fall back to text for that batch;
* MySQL has no bulk protocol; a server or driver that refuses it is written to as text from then on.

Batches are bounded in bytes so that no request exceeds the target's ``max_allowed_packet``, which
would make the server drop the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncmy.errors import NotSupportedError, ProgrammingError

from tablemover.changes import Row
from tablemover.log import event

MAX_SIGNED_64 = 2**63 - 1
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
FIXED_VALUE_BYTES = 16  # numbers, temporals and the per-value indicator
ROW_OVERHEAD_BYTES = 8
MSG_TEXT_FALLBACK = "rows not bulk-compatible; writing them as text (slower, same result)"


def wide_int_positions(columns: Sequence[Any]) -> tuple[int, ...]:
    """Positions of the columns whose integers may exceed 2^63 - 1 (unsigned BIGINT, BIT)."""
    return tuple(
        i for i, c in enumerate(columns) if (c.data_type == "bigint" and c.unsigned) or c.data_type == "bit"
    )


def has_wide_int(rows: Sequence[Row], positions: Sequence[int]) -> bool:
    """True when a row holds an integer the driver would send as a negative signed value."""
    for i in positions:
        for row in rows:
            v = row[i]
            if type(v) is int and v > MAX_SIGNED_64:
                return True
    return False


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


def batches(rows: Sequence[Row], max_bytes: int) -> list[Sequence[Row]]:
    """Split ``rows`` into consecutive runs of at most ``max_bytes`` each (a bigger row goes alone)."""
    out: list[Sequence[Row]] = []
    start = 0
    size = 0
    for i, row in enumerate(rows):
        row_size = estimated_bytes(row)
        if size and size + row_size > max_bytes:
            out.append(rows[start:i])
            start, size = i, 0
        size += row_size
    if start < len(rows):
        out.append(rows[start:])
    return out


class RowWriter:
    """Writes rows with one multi-row statement shape (e.g. ``REPLACE INTO t (a, b) VALUES``)."""

    def __init__(
        self,
        conn: Any,
        text_sql: str,
        bulk_sql: str,
        wide_ints: Sequence[int],
        *,
        bulk: bool,
        max_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        """``text_sql`` has ``%s`` placeholders for one row, ``bulk_sql`` the same with ``?``."""
        self.conn = conn
        self.text_sql = text_sql
        self.bulk_sql = bulk_sql
        self.wide_ints = tuple(wide_ints)
        self.bulk = bulk  # False for MySQL, or once the server refused the bulk protocol
        self.max_bytes = max_bytes
        self._statement: Any = None
        self._fallback_logged = False
        self.bulk_batches = 0
        self.text_batches = 0

    async def write(self, rows: Sequence[Row]) -> None:
        """Write ``rows`` (all of them, or raise the server's error)."""
        if not rows:
            return
        if not self.bulk:
            await self._write_text(rows)
            return
        for batch in batches(rows, self.max_bytes):
            if has_wide_int(batch, self.wide_ints) or not await self._write_bulk(batch):
                await self._write_text(batch)

    async def _write_bulk(self, rows: Sequence[Row]) -> bool:
        """True when written; False when these rows (or this server) need the text protocol."""
        try:
            if self._statement is None:
                self._statement = await self.conn.prepare(self.bulk_sql)
            await self._statement.execute_bulk(rows)
        except (NotSupportedError, ProgrammingError) as exc:
            # Raised before anything was sent: the server lacks the bulk capability (or the
            # statement cannot be prepared). Text works everywhere; stay on it.
            if isinstance(exc, ProgrammingError) and self._statement is not None:
                raise  # a real SQL error of an executed batch
            self.bulk = False
            return False
        except (ValueError, UnicodeError) as exc:
            # The driver could not pack these values (checked before any I/O); text can.
            if not self._fallback_logged:
                event(MSG_TEXT_FALLBACK, statement=self.text_sql[:80], reason=str(exc)[:200])
                self._fallback_logged = True
            return False
        self.bulk_batches += 1
        return True

    async def _write_text(self, rows: Sequence[Row]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(self.text_sql, list(rows))
        self.text_batches += 1
