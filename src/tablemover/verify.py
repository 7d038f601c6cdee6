"""``tablemover verify`` and the checksum before the cutover: source vs target, chunk by chunk.

Chunks are cut along the chunk key on the source; each chunk is summarised on both servers as
(row count, 128-bit XOR of per-row MD5s), so only a summary crosses the network. A chunk whose
summaries differ is fetched row by row from both sides to name the exact keys that differ.

Two ways to look at a moving source:

* ``verify`` (the command) re-checks a differing chunk a few times, a moment apart, before it
  reports it: after the cutover nothing moves and the first look is final; with writes going on
  a difference that goes away was a change in flight.
* :func:`verify_live` (the gate before the cutover, while the apply runs) is exact instead: it
  reads each source chunk with a shared lock, reads the source position on the same connection,
  waits until the target has applied through that position, and only then reads the target. While
  the lock is held no source transaction can change the chunk (gap locks included), and every one
  that changed it before is inside the position, so source and target must agree exactly: any
  difference is real, none is in flight. It runs on :class:`tablemover.gate.LiveGate` (several
  chunks at once; the apply is waited for before the lock is taken, so the lock is held only for
  the few changes committed meanwhile, and released once a target snapshot is open).

Both ways run their connections at REPEATABLE READ, whatever the server's default: at READ
COMMITTED a locking read takes no gap locks, so an insert into the chunk's range (an append into
the last, open-ended chunk) commits between the source's sum and the position read after it, and
the gate reports a difference that is not there, telling the operator to start over.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from tablemover import gtid, sql
from tablemover.config import Config
from tablemover.db import (
    close,
    connect,
    execute,
    query,
    query_one,
)
from tablemover.errors import PreflightError, SafetyRefusal, UnreproducibleRow
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.schema import TableSchema, inspect_table, sql_col, table_exists

if TYPE_CHECKING:
    from tablemover.apply import TargetWriter
    from tablemover.gate import LiveGate

VERIFY_CHUNK = 2000
LIVE_LOCK_WAIT_S = 5  # the gate's locking read gives way to the application quickly, then retries
LIVE_CHUNK_ATTEMPTS = 20
ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"


@dataclass
class TableReport:
    """One table's comparison."""

    table: str
    source_table: str
    chunks: int = 0
    source_rows: int = 0
    target_rows: int = 0
    missing_on_target: list[list[Any]] = field(default_factory=list)
    extra_on_target: list[list[Any]] = field(default_factory=list)
    different: list[list[Any]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """No difference at all."""
        return not (self.missing_on_target or self.extra_on_target or self.different)


@dataclass
class VerifyReport:
    """All tables."""

    tables: list[TableReport]
    lock_held_max_s: float = 0.0  # the live gate: the longest a chunk's shared lock was held

    @property
    def equal(self) -> bool:
        """Every table is equal."""
        return all(t.equal for t in self.tables)


def applied_waiter(writer: TargetWriter) -> Callable[[gtid.GtidPosition], Awaitable[None]]:
    """``wait_applied(position)``: return once ``writer`` has committed every source transaction in
    ``position`` (what the live gate waits for before it reads the target)."""

    async def wait_applied(position: gtid.GtidPosition) -> None:
        while not gtid.covers(writer.committed_position, position):
            with anyio.move_on_after(1.0):
                await writer.committed.wait()

    return wait_applied


async def checksum_gate(
    config: Config,
    flavor: Flavor,
    machine: MoveMachine,
    writer: TargetWriter,
    trailing: LiveGate | None = None,
) -> None:
    """The correctness gate before the point of no return: every table, source vs target.

    Runs while the apply goes on, as the cutover's last step before the intent is written (after
    any postponed or blocked wait), so it adds nothing to the write outage. A difference is real
    (:func:`verify_live` compares exactly), so nothing is renamed: back to COPYING, the keys in
    the log, exit 3 for an operator to look. With ``trailing`` (the gate that has compared the
    copy's chunks as they were committed, ``checksum_during_copy``), what is left is to finish
    it: the chunks still queued and the rows after each table's last copied key.
    """
    started = time.monotonic()
    if trailing is None:
        event("checksumming every moved table before the cutover (the apply goes on)")
    else:
        event("finishing the checksum that trailed the copy (the apply goes on)")
    try:
        if trailing is None:
            report = await verify_live(config, flavor, applied_waiter(writer))
        else:
            report = await trailing.finish(raise_on_difference=False)
    except UnreproducibleRow:
        if machine.current is State.CUTOVER_STARTED:
            await machine.fire("cancel_cutover", detail={"reason": "unreproducible JSON value"})
        raise
    rows = sum(t.source_rows for t in report.tables)
    seconds = time.monotonic() - started
    if report.equal:
        event(
            "checksum before cutover: source and target equal",
            rows=rows,
            seconds=round(seconds, 3),
            seconds_per_million_rows=round(seconds * 1_000_000 / rows, 2) if rows else 0.0,
            lock_held_max_s=round(report.lock_held_max_s, 3),
            trailed_copy=trailing is not None,
        )
        return
    refusal = difference_refusal(report)
    if machine.current is State.CUTOVER_STARTED:
        await machine.fire("cancel_cutover", detail={"reason": "checksum difference"})
    raise refusal


def difference_refusal(report: VerifyReport) -> SafetyRefusal:
    """Log the keys that differ (ERROR) and return the refusal (exit 3) that stops the move."""
    differing = {
        t.table: {
            "missing_on_target": t.missing_on_target[:20],
            "extra_on_target": t.extra_on_target[:20],
            "different": t.different[:20],
        }
        for t in report.tables
        if not t.equal
    }
    event("checksum before cutover found differences", logging.ERROR, tables=differing)
    return SafetyRefusal(
        f"the checksum before the cutover found rows that differ between source and target "
        f"({'; '.join(f'{t}: {d}' for t, d in differing.items())}). Nothing was renamed and the "
        "move stays in COPYING. The target does not hold what the source holds: find out why "
        "(`tablemover verify` names the keys; was the target written to by something else?), "
        "then start the move over (`tablemover discard -c FILE --yes`, then `tablemover run`)."
    )


async def verify(config: Config, rechecks: int = 2, recheck_delay_s: float = 0.5) -> VerifyReport:
    """Compare every moved table; the source side is the renamed table once the cutover happened."""
    source = await connect(config.source, "source", temporal_as_text=True)
    target = await connect(config.target, "target", temporal_as_text=True)
    try:
        await _repeatable_read(source, target)
        reports = []
        for table in config.move.tables:
            schema, tdb = await _resolve_tables(source, target, config, table)
            compare = _Offline(rechecks, recheck_delay_s)
            reports.append(await _verify_table(source, target, schema, table, tdb, compare))
        return VerifyReport(reports)
    finally:
        await close(source)
        await close(target)


async def verify_live(
    config: Config,
    flavor: Flavor,
    wait_applied: Callable[[gtid.GtidPosition], Awaitable[None]],
    workers: int | None = None,
) -> VerifyReport:
    """The exact comparison of the moved tables while the apply runs (see the module docstring).

    ``wait_applied(position)`` returns once the target has committed every source transaction
    in ``position``. Each table is one interval of a :class:`tablemover.gate.LiveGate` with
    ``workers`` workers (default ``[move] checksum_threads``).
    """
    # gate builds on this module's reports and chunks: imported here, not at the top, for the cycle.
    from tablemover.gate import LiveGate

    async with LiveGate(config, flavor, wait_applied, workers=workers) as gate:
        for table in config.move.tables:
            gate.add(table, None, None)
        return await gate.finish(raise_on_difference=False)


async def _repeatable_read(*conns: Any) -> None:
    # Explicit, whatever transaction_isolation the servers default to (module docstring).
    for conn in conns:
        await execute(conn, ISOLATION)


async def _resolve_tables(source: Any, target: Any, config: Config, table: str) -> tuple[TableSchema, str]:
    source_table = table
    if not await table_exists(source, config.move.database, table):
        source_table = config.move.renamed(table)
        if not await table_exists(source, config.move.database, source_table):
            raise PreflightError(
                f"neither {config.move.database}.{table} nor {config.move.database}.{source_table} "
                "exists on the source: nothing to compare against."
            )
    tdb = config.move.effective_target_database
    if not await table_exists(target, tdb, table):
        raise PreflightError(f"target table {tdb}.{table} does not exist: the move has not created it.")
    return await inspect_table(source, config.move.database, source_table), tdb


@dataclass
class _Chunk:
    """One chunk's bounds and the statements that read it."""

    source: Any
    target: Any
    src_sum: sql.Statement
    dst_sum: sql.Statement
    src_rows: sql.Statement
    dst_rows: sql.Statement
    positions: list[int]
    key_cols: list[sql.Col]  # for showing character keys as text in the report
    table: str = ""  # db.table on the source, for the refusal below
    json_checks: tuple[str, ...] = ()  # MySQL JSON columns: src_sum carries a fourth value
    bounds: str = ""  # the chunk's key range, for the refusal below

    def source_sum(self, row: Any) -> Any:
        """The source's (count, sum, sum), or :class:`UnreproducibleRow` when the chunk holds a row
        whose JSON document has a value JSON text cannot carry.

        The digest hashes a document's text, which is the same for a DATETIME and the string of
        its digits (and for DECIMAL 1.5 and DOUBLE 1.5): equal sums could not vouch for such a row.
        The copy and the stream refuse these values; one on the source here was copied by an
        earlier version, or by something other than this move.
        """
        if row is None or not self.json_checks:
            return row
        if int(row[3] or 0):
            raise UnreproducibleRow(
                f"{int(row[3])} row(s) of {self.table} with keys between {self.bounds} hold, inside "
                f"a JSON document (column {', '.join(self.json_checks)}), a DECIMAL, date/time or "
                "other value that JSON text cannot carry; the target cannot hold them exactly and "
                "the checksum cannot tell them apart, so nothing is renamed. Store such values as "
                "JSON strings or numbers on the source (or move the table another way), then start "
                "the move over: `tablemover discard -c FILE --yes`, then `tablemover run -c FILE`.",
                table=self.table,
                column=", ".join(self.json_checks),
                key=self.bounds,
            )
        return tuple(row[:3])


@dataclass
class _Offline:
    """`verify`: look again at a differing chunk ``rechecks`` times before reporting it."""

    rechecks: int
    delay_s: float

    async def compare(self, chunk: _Chunk, report: TableReport) -> None:
        for attempt in range(self.rechecks + 1):
            src, dst = await _sums(chunk)
            if src == dst:
                break
            if attempt < self.rechecks:
                await anyio.sleep(self.delay_s)
        _count(report, src, dst)
        if src != dst:
            await _drill_down(chunk, report)


def _count(report: TableReport, src: Any, dst: Any) -> None:
    assert src is not None and dst is not None
    report.chunks += 1
    report.source_rows += int(src[0])
    report.target_rows += int(dst[0])


async def _sums(chunk: _Chunk) -> tuple[Any, Any]:
    src = chunk.source_sum(await query_one(chunk.source, chunk.src_sum.text, chunk.src_sum.args or None))
    dst = await query_one(chunk.target, chunk.dst_sum.text, chunk.dst_sum.args or None)
    return (tuple(src) if src else None), (tuple(dst) if dst else None)


async def _verify_table(
    source: Any,
    target: Any,
    schema: TableSchema,
    table: str,
    tdb: str,
    compare: _Offline,
) -> TableReport:
    key = schema.chunk_key
    if key is None:
        raise PreflightError(f"table {schema.qualified_name} has no primary or unique key to compare along.")
    columns = [sql_col(c) for c in schema.columns]
    key_cols = [columns[[c.name for c in columns].index(k)] for k in key]
    positions = [columns.index(k) for k in key_cols]
    # MySQL JSON columns (only MySQL reports DATA_TYPE 'json'; MariaDB's JSON is LONGTEXT).
    json_checks = tuple(c.name for c in schema.columns if c.data_type == "json" and not c.generated)
    report = TableReport(table, schema.name)
    lower: tuple[Any, ...] | None = None
    while True:
        step = sql.key_boundary(schema.database, schema.name, key_cols, after=lower, step=VERIFY_CHUNK)
        boundary = await query_one(source, step.text, step.args or None)
        upper = tuple(boundary) if boundary is not None else None
        chunk = _Chunk(
            source,
            target,
            sql.checksum_range(
                schema.database,
                schema.name,
                columns,
                key_cols,
                lower=lower,
                upper=upper,
                json_checks=json_checks,
            ),
            sql.checksum_range(tdb, table, columns, key_cols, lower=lower, upper=upper),
            sql.select_range(schema.database, schema.name, columns, key_cols, lower=lower, upper=upper),
            sql.select_range(tdb, table, columns, key_cols, lower=lower, upper=upper),
            positions,
            key_cols,
            schema.qualified_name,
            json_checks,
            f"{lower!r} (exclusive) and {upper!r}"
            if upper is not None
            else f"{lower!r} (exclusive) and the end",
        )
        await compare.compare(chunk, report)
        if upper is None:
            return report
        lower = upper


async def _drill_down(chunk: _Chunk, report: TableReport, *, lock: bool = False) -> None:
    src_read = chunk.src_rows.text + (" LOCK IN SHARE MODE" if lock else "")
    src_rows = await query(chunk.source, src_read, chunk.src_rows.args or None)
    dst_rows = await query(chunk.target, chunk.dst_rows.text, chunk.dst_rows.args or None)
    src_map = {tuple(r[p] for p in chunk.positions): r for r in src_rows}
    dst_map = {tuple(r[p] for p in chunk.positions): r for r in dst_rows}
    for k, row in src_map.items():
        if k not in dst_map:
            report.missing_on_target.append(shown_key(chunk.key_cols, k))
        elif dst_map[k] != row:
            report.different.append(shown_key(chunk.key_cols, k))
    report.extra_on_target.extend(shown_key(chunk.key_cols, k) for k in dst_map if k not in src_map)


# MariaDB's latin1 is Windows-1252 with the five bytes cp1252 leaves undefined mapped to the C1
# controls of the same number (0x81 -> U+0081, ...): Python's cp1252 raises on them.
_LATIN1_GAPS = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def shown_key(cols: list[sql.Col], values: tuple[Any, ...]) -> list[Any]:
    """A key as the report shows it: character columns (read as their bytes) as text.

    For the operator's eyes only; comparisons use the bytes. A value no codec here reads as the
    server would stays bytes rather than be shown wrongly.
    """
    return [_shown(c, v) for c, v in zip(cols, values, strict=True)]


def _shown(col: sql.Col, value: Any) -> Any:
    if col.charset is None or not isinstance(value, bytes):
        return value
    try:
        if col.charset in ("utf8mb4", "utf8mb3", "utf8", "ascii"):
            return value.decode("utf-8")
        if col.charset == "latin1":
            return "".join(chr(b) if b in _LATIN1_GAPS else bytes([b]).decode("cp1252") for b in value)
    except UnicodeDecodeError:
        pass
    return value


def print_report(report: VerifyReport, *, as_json: bool) -> None:
    """Print a human or JSON report."""
    if as_json:
        out = {
            "equal": report.equal,
            "tables": [{**asdict(t), "equal": t.equal} for t in report.tables],
        }
        print(json.dumps(out, indent=2, default=str))
        return
    for t in report.tables:
        verdict = "equal" if t.equal else "DIFFERENT"
        print(
            f"{t.table}: {verdict} ({t.source_rows} source rows from {t.source_table}, "
            f"{t.target_rows} target rows, {t.chunks} chunks)"
        )
        for label, keys in (
            ("missing on target", t.missing_on_target),
            ("extra on target", t.extra_on_target),
            ("different", t.different),
        ):
            if keys:
                shown = ", ".join(str(tuple(k)) for k in keys[:20])
                more = f" ... and {len(keys) - 20} more" if len(keys) > 20 else ""
                print(f"  {label}: {shown}{more}")
    print("verify: " + ("all tables equal" if report.equal else "differences found"))
