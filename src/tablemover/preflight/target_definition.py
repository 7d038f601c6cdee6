"""Check: a target table that exists before the move is defined like its source table.

tablemover creates missing target tables from the source's ``SHOW CREATE TABLE``; one that already
exists (made by hand, or by a schema tool) is copied into as it is. If it is narrower than the source
(``DECIMAL(12,0)`` for ``DECIMAL(12,2)``, ``VARCHAR(5)`` for ``VARCHAR(100)``) the copy silently
truncates or rounds values; if a column is missing the move dies mid-way with error 1054. So an
existing table is accepted only when what it stores and how it identifies rows match the source:
columns (name, order, type, nullability, charset, collation, generated-column expression and kind),
the primary key, every unique key, and the engine.

Deliberately not compared: column defaults (every copied and applied row carries every column's
value, so a default never decides what the target stores), secondary non-unique indexes (they change
how the target is read, not what it stores or which rows collide), key names, comments, and table
options other than the engine.

Once the move has a checkpoint the target tables are the ones the move created (or accepted here
before it started), so the check stands down, like ``target_empty``. That is also what lets a move
with ``defer_secondary_indexes`` resume: its tables lack their non-unique indexes until the copy is
done, and ``tablemover.indexes`` adds exactly the ones the PREPARED checkpoint recorded.

The comparison (:func:`definition_differences`) is pure; :func:`read_definition` is the thin reader.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.schema import table_exists

__all__ = [
    "MAX_DIFFERENCES",
    "ColumnDefinition",
    "KeyDefinition",
    "TableDefinition",
    "definition_differences",
    "read_definition",
    "target_definition",
]

MAX_DIFFERENCES = 5
"""Differences named per table; the rest are counted. Five is enough to see the pattern."""

PRIMARY = "PRIMARY"

# MariaDB and MySQL before 8.0.19 print integer display widths (int(11)); MySQL 8.0.19+ does not.
# The width never limits what is stored, so int(11) and int are the same column.
_INT_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")
# YEAR(4) is the only YEAR there is; MariaDB prints the width, MySQL 8 does not.
_YEAR_WIDTH = re.compile(r"^year\(4\)")
# EXTRA: MariaDB and MySQL say "VIRTUAL GENERATED" / "STORED GENERATED"; old MariaDB said
# "PERSISTENT", its synonym of STORED. MySQL 8's "DEFAULT_GENERATED" marks an expression *default*
# (DEFAULT (now())), which is an ordinary column, so a bare "GENERATED" must not count.
_GENERATED_KIND = re.compile(r"\b(VIRTUAL|STORED|PERSISTENT)\b")


@dataclass(frozen=True)
class ColumnDefinition:
    """One column as information_schema.COLUMNS describes it (raw values, as the server prints them)."""

    name: str
    column_type: str  # COLUMN_TYPE: "decimal(12,2)", "int(11) unsigned", "enum('a','b')"
    nullable: bool
    charset: str | None = None
    collation: str | None = None
    generated: str | None = None  # "VIRTUAL" or "STORED" for generated columns, else None
    expression: str | None = None  # GENERATION_EXPRESSION of a generated column

    def describe(self) -> str:
        """The definition as a reader would write it, for messages: ``decimal(12,2) NOT NULL``."""
        parts = [self.column_type]
        if self.charset is not None or self.collation is not None:
            parts.append(f"CHARACTER SET {self.charset} COLLATE {self.collation}")
        if self.generated is not None:
            parts.append(
                f"GENERATED ALWAYS AS ({_strip_outer_parens(self.expression or '')}) {self.generated}"
            )
        parts.append("NULL" if self.nullable else "NOT NULL")
        return " ".join(parts)

    def comparable(self) -> tuple[object, ...]:
        """What must be equal on both sides, with the servers' cosmetic differences taken out."""
        return (
            _normal_type(self.column_type),
            self.nullable,
            _normal_charset(self.charset),
            _normal_charset(self.collation),
            self.generated,
            _normal_expression(self.expression) if self.generated is not None else None,
        )


@dataclass(frozen=True)
class KeyDefinition:
    """The primary key or a unique key: its name and its columns in key order."""

    name: str
    columns: tuple[str, ...]  # a prefix part is written "col(10)": it is a different key than "col"

    @property
    def primary(self) -> bool:
        """True for the primary key."""
        return self.name == PRIMARY

    def comparable(self) -> tuple[str, ...]:
        """The columns, case-folded (column names are case-insensitive on every server)."""
        return tuple(c.lower() for c in self.columns)

    def describe(self) -> str:
        """``(a, b(10))`` for messages."""
        return "(" + ", ".join(self.columns) + ")"


@dataclass(frozen=True)
class TableDefinition:
    """What the comparison looks at: columns in ordinal order, primary and unique keys, engine."""

    columns: tuple[ColumnDefinition, ...]
    keys: tuple[KeyDefinition, ...] = ()  # only PRIMARY and unique keys
    engine: str | None = None


def definition_differences(
    source: TableDefinition, target: TableDefinition, names: tuple[str, str] = ("source", "target")
) -> list[str]:
    """Every way ``target`` differs from ``source`` that changes what is stored or which rows collide.

    Returns human-readable differences, most useful first: columns in the source's order (changed,
    then missing), columns only the target has, column order, the primary key, unique keys, engine.
    An empty list means the target can be copied into as it is. ``names`` are the two sides' names
    in the messages (the replica check compares a primary with its replica).
    """
    a, b = names
    differences: list[str] = []
    target_columns = {c.name.lower(): c for c in target.columns}
    source_names = {c.name.lower() for c in source.columns}

    for col in source.columns:
        other = target_columns.get(col.name.lower())
        if other is None:
            differences.append(f"column {col.name}: {a} {col.describe()}, {b} has no such column")
        elif col.comparable() != other.comparable():
            differences.append(f"column {col.name}: {a} {col.describe()}, {b} {other.describe()}")
    for other in target.columns:
        if other.name.lower() not in source_names:
            differences.append(f"column {other.name}: not on the {a}, {b} {other.describe()}")

    # Writes name their columns, so the copy itself does not care about order; but after the cutover
    # the application reads this table, and SELECT * or INSERT without a column list would see
    # another table. Compared over the shared columns, so a missing column is not reported twice.
    order = _first_misplaced_column(source.columns, target.columns, names)
    if order is not None:
        differences.append(order)

    differences.extend(_key_differences(source.keys, target.keys, names))

    # The checkpoint commits in the same transaction as the rows it describes: a non-transactional
    # target table would keep rows of a transaction that the checkpoint says never happened.
    if source.engine and target.engine and source.engine.lower() != target.engine.lower():
        differences.append(f"engine: {a} {source.engine}, {b} {target.engine}")
    return differences


def _first_misplaced_column(
    source: Sequence[ColumnDefinition], target: Sequence[ColumnDefinition], names: tuple[str, str]
) -> str | None:
    a, b = names
    target_names = [c.name.lower() for c in target]
    source_names = [c.name.lower() for c in source]
    shared_in_source = [n for n in source_names if n in target_names]
    shared_in_target = [n for n in target_names if n in source_names]
    for src_name, tgt_name in zip(shared_in_source, shared_in_target, strict=True):
        if src_name != tgt_name:
            name = source[source_names.index(src_name)].name
            return (
                f"column order: {name} is column {source_names.index(src_name) + 1} on the {a} "
                f"but column {target_names.index(src_name) + 1} on the {b}"
            )
    return None


def _key_differences(
    source: Sequence[KeyDefinition], target: Sequence[KeyDefinition], names: tuple[str, str]
) -> list[str]:
    # Unique keys decide which rows collide. Through a unique key the source lacks, the copy's
    # INSERT IGNORE would drop a row and the apply's REPLACE would delete another one; without a
    # key the source has, the application could write duplicates once it moves over. Names do not
    # matter, columns do, in key order as the issue asks (the apply deletes by the source's key, and
    # a key in another order cannot serve those lookups); a prefix part (col(10)) is another
    # constraint than the whole column.
    a, b = names
    differences: list[str] = []
    src_pk = next((k for k in source if k.primary), None)
    tgt_pk = next((k for k in target if k.primary), None)
    if src_pk is None and tgt_pk is not None:
        differences.append(f"primary key: {a} has none, {b} {tgt_pk.describe()}")
    elif src_pk is not None and tgt_pk is None:
        differences.append(f"primary key: {a} {src_pk.describe()}, {b} has none")
    elif src_pk is not None and tgt_pk is not None and src_pk.comparable() != tgt_pk.comparable():
        differences.append(f"primary key: {a} {src_pk.describe()}, {b} {tgt_pk.describe()}")

    unmatched = [k for k in target if not k.primary]
    missing: list[KeyDefinition] = []
    for key in (k for k in source if not k.primary):
        match = next((k for k in unmatched if k.comparable() == key.comparable()), None)
        if match is None:
            missing.append(key)
        else:
            unmatched.remove(match)
    for key in missing:
        # Same name, other columns: say so in one line rather than "missing" plus "extra".
        renamed = next((k for k in unmatched if k.name.lower() == key.name.lower()), None)
        if renamed is not None:
            unmatched.remove(renamed)
            differences.append(f"unique key {key.name}: {a} {key.describe()}, {b} {renamed.describe()}")
        else:
            differences.append(f"unique key {key.name} {key.describe()}: on the {a}, not on the {b}")
    for key in unmatched:
        differences.append(f"unique key {key.name} {key.describe()}: on the {b}, not on the {a}")
    return differences


def _normal_type(column_type: str) -> str:
    text = column_type.strip()
    text = _INT_DISPLAY_WIDTH.sub(r"\1", text)
    return _YEAR_WIDTH.sub("year", text)


def _normal_charset(name: str | None) -> str | None:
    # MariaDB < 10.6 and MySQL < 8.0.30 print utf8mb3 as "utf8" (and its collations as "utf8_...").
    if name is None:
        return None
    lowered = name.lower()
    if lowered == "utf8" or lowered.startswith("utf8_"):
        return "utf8mb3" + lowered[len("utf8") :]
    return lowered


def _normal_expression(expression: str | None) -> str:
    """The expression without what servers print differently: case, spaces, backticks, outer parens.

    String literals are kept exactly. MariaDB prints ``\\`id\\` + 1``, MySQL 8 ``(\\`id\\` + 1)``.
    """
    text = _strip_outer_parens(expression or "")
    out: list[str] = []
    quote: str | None = None
    for ch in text:
        if quote is not None:
            out.append(ch)
            if ch == quote:  # a doubled quote closes and reopens: same result
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "`" or ch.isspace():
            continue
        else:
            out.append(ch.lower())
    return "".join(out)


def _strip_outer_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _closing_paren(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _closing_paren(text: str) -> int:
    """Index of the parenthesis closing the one at index 0 (quotes respected), -1 if none."""
    depth = 0
    quote: str | None = None
    for i, ch in enumerate(text):
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


async def read_definition(conn: Any, database: str, table: str) -> TableDefinition:
    """Read a table's :class:`TableDefinition` from information_schema (same queries on both servers).

    :mod:`tablemover.schema` inspects the source for the copy but leaves out collation and
    generation expression, so the comparison reads both sides here, alike.
    """
    col_rows = await query(
        conn,
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, "
        "GENERATION_EXPRESSION FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
        (database, table),
    )
    columns = tuple(_column(r) for r in col_rows)
    key_rows = await query(
        conn,
        "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND NON_UNIQUE=0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (database, table),
    )
    grouped: dict[str, list[str]] = {}
    for name, column, sub_part in key_rows:
        # MySQL 8 functional key parts have no COLUMN_NAME; they still make the key a different one.
        part = str(column) if column is not None else "(expression)"
        grouped.setdefault(str(name), []).append(part if sub_part is None else f"{part}({int(sub_part)})")
    keys = tuple(KeyDefinition(name, tuple(parts)) for name, parts in grouped.items())
    engine_rows = await query(
        conn,
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, table),
    )
    engine = str(engine_rows[0][0]) if engine_rows and engine_rows[0][0] is not None else None
    return TableDefinition(columns, keys, engine)


def _column(row: Sequence[Any]) -> ColumnDefinition:
    name, column_type, is_nullable, charset, collation, extra, expression = row
    kind = _GENERATED_KIND.search(str(extra or "").upper())
    generated = None if kind is None else ("VIRTUAL" if kind.group(1) == "VIRTUAL" else "STORED")
    return ColumnDefinition(
        name=str(name),
        column_type=str(column_type),
        nullable=str(is_nullable).upper() == "YES",
        charset=str(charset) if charset is not None else None,
        collation=str(collation) if collation is not None else None,
        generated=generated,
        # MariaDB has NULL, MySQL '' for ordinary columns; only a generated column's counts.
        expression=str(expression) if generated is not None and expression is not None else None,
    )


@check(Phase.TABLES, "target_definition")
async def target_definition(ctx: PreflightContext) -> list[str]:
    """Refuse existing target tables whose definition differs from the source table's."""
    if ctx.checkpoint is not None:
        return []  # the move has started: the target tables are the ones it created or accepted
    move = ctx.config.move
    target_db = move.effective_target_database
    problems: list[str] = []
    for table in move.tables:
        schema = ctx.schemas.get(table)
        if schema is None:
            continue  # missing or not a table on the source: source_tables has said so
        if not await table_exists(ctx.target, target_db, table):
            continue  # absent (tablemover creates it) or a view (target_empty refuses it)
        source = await read_definition(ctx.source, schema.database, schema.name)
        target = await read_definition(ctx.target, target_db, table)
        differences = definition_differences(source, target)
        if differences:
            problems.append(_problem(ctx, schema.qualified_name, f"{target_db}.{table}", differences))
    return problems


def _problem(ctx: PreflightContext, source_name: str, target_name: str, differences: list[str]) -> str:
    shown = "; ".join(differences[:MAX_DIFFERENCES])
    more = len(differences) - MAX_DIFFERENCES
    if more > 0:
        shown += f"; and {more} more difference{'s' if more != 1 else ''}"
    return (
        f"table {target_name} already exists on {ctx.target_address} and its definition differs from "
        f"{source_name} on {ctx.source_address}: {shown}. tablemover copies rows as the source defines "
        "them, so a narrower or different column would change or truncate values and a missing one would "
        "stop the move. Drop the target table and let tablemover create it, or alter it to match."
    )
