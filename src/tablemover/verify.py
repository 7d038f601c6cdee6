"""``tablemover verify``: compare source and target tables chunk by chunk.

Chunks are cut along the chunk key on the source; each chunk is summarised on both servers as
(row count, 128-bit XOR of per-row MD5s), so only a summary crosses the network. A chunk whose
summaries differ is fetched row by row from both sides to name the exact keys that differ.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tablemover import sql
from tablemover.config import Config
from tablemover.db import close, connect, query, query_one
from tablemover.errors import PreflightError
from tablemover.schema import TableSchema, inspect_table, table_exists

VERIFY_CHUNK = 2000


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

    @property
    def equal(self) -> bool:
        """Every table is equal."""
        return all(t.equal for t in self.tables)


async def verify(config: Config, rechecks: int = 2, recheck_delay_s: float = 0.5) -> VerifyReport:
    """Compare every moved table; the source side is the renamed table once the cutover happened."""
    source = await connect(config.source, "source", temporal_as_text=True)
    target = await connect(config.target, "target", temporal_as_text=True)
    try:
        reports = []
        for table in config.move.tables:
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
                raise PreflightError(
                    f"target table {tdb}.{table} does not exist: the move has not created it."
                )
            schema = await inspect_table(source, config.move.database, source_table)
            reports.append(await _verify_table(source, target, schema, table, tdb, rechecks, recheck_delay_s))
        return VerifyReport(reports)
    finally:
        await close(source)
        await close(target)


async def _verify_table(
    source: Any,
    target: Any,
    schema: TableSchema,
    table: str,
    tdb: str,
    rechecks: int,
    recheck_delay_s: float,
) -> TableReport:
    key = schema.chunk_key
    if key is None:
        raise PreflightError(f"table {schema.qualified_name} has no primary or unique key to compare along.")
    columns = [sql.Col.of(c.name, c.data_type, c.enum_values) for c in schema.columns]
    key_cols = [columns[[c.name for c in columns].index(k)] for k in key]
    report = TableReport(table, schema.name)
    lower: tuple[Any, ...] | None = None
    while True:
        step = sql.key_boundary(schema.database, schema.name, key_cols, after=lower, step=VERIFY_CHUNK)
        boundary = await query_one(source, step.text, step.args or None)
        upper = tuple(boundary) if boundary is not None else None
        bounds = {"lower": lower, "upper": upper}
        src_sum = sql.checksum_range(schema.database, schema.name, columns, key_cols, **bounds)
        dst_sum = sql.checksum_range(tdb, table, columns, key_cols, **bounds)
        src = await query_one(source, src_sum.text, src_sum.args or None)
        dst = await query_one(target, dst_sum.text, dst_sum.args or None)
        assert src is not None and dst is not None
        report.chunks += 1
        report.source_rows += int(src[0])
        report.target_rows += int(dst[0])
        if tuple(src) != tuple(dst):
            await _drill_down(source, target, schema, table, tdb, columns, key_cols, bounds, report)
        if upper is None:
            return report
        lower = upper


async def _drill_down(
    source: Any,
    target: Any,
    schema: TableSchema,
    table: str,
    tdb: str,
    columns: list[sql.Col],
    key: list[sql.Col],
    bounds: dict[str, tuple[Any, ...] | None],
    report: TableReport,
) -> None:
    positions = [columns.index(k) for k in key]
    src_read = sql.select_range(schema.database, schema.name, columns, key, **bounds)
    dst_read = sql.select_range(tdb, table, columns, key, **bounds)
    src_rows = await query(source, src_read.text, src_read.args or None)
    dst_rows = await query(target, dst_read.text, dst_read.args or None)
    src_map = {tuple(r[p] for p in positions): r for r in src_rows}
    dst_map = {tuple(r[p] for p in positions): r for r in dst_rows}
    for k, row in src_map.items():
        if k not in dst_map:
            report.missing_on_target.append(list(k))
        elif dst_map[k] != row:
            report.different.append(list(k))
    report.extra_on_target.extend(list(k) for k in dst_map if k not in src_map)


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
