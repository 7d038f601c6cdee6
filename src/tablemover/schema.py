"""What a moved table looks like: columns, keys, the chunking key, and how to create it on the target.

Inspection reads information_schema once per table at start-up; the binlog decoder maps row images
to columns by ordinal against this, never by the column names the binlog may or may not carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncmy.errors import MySQLError

from tablemover.db import ConnectError, close, connect, query, query_one
from tablemover.sql import Col, qualified

if TYPE_CHECKING:
    from tablemover.config import Config

_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}


@dataclass(frozen=True)
class Column:
    """One column of a moved table."""

    name: str
    ordinal: int  # 0-based position, which is also its position in binlog row images
    data_type: str  # lower-case base type: "int", "varchar", "decimal", ...
    column_type: str  # full type: "int(10) unsigned", "enum('a','b')", ...
    nullable: bool
    generated: bool
    charset: str | None
    collation: str | None = None  # COLLATION_NAME: how a character column's keys compare

    @property
    def unsigned(self) -> bool:
        """True for unsigned numeric columns."""
        return "unsigned" in self.column_type

    @property
    def int_bits(self) -> int | None:
        """Width of an integer column in bits, None for other types."""
        return _INT_BITS.get(self.data_type)

    @property
    def is_binary(self) -> bool:
        """Byte-string columns (binary/varbinary/blob), whose values stay ``bytes``."""
        return self.data_type in _BINARY_TYPES or (
            self.data_type in _TEXT_TYPES and self.charset in (None, "binary")
        )

    @property
    def is_text(self) -> bool:
        """Character columns whose values are ``str``."""
        return self.data_type in _TEXT_TYPES and not self.is_binary

    @property
    def enum_values(self) -> tuple[str, ...]:
        """The members of an enum/set column, in definition order."""
        if self.data_type not in ("enum", "set"):
            return ()
        inner = self.column_type[self.column_type.index("(") + 1 : self.column_type.rindex(")")]
        return tuple(_split_quoted_list(inner))


def sql_col(column: Column) -> Col:
    """How the SQL builders read and compare ``column`` (its kind, members, charset, collation)."""
    return Col.of(column.name, column.data_type, column.enum_values, column.charset, column.collation)


def _split_quoted_list(inner: str) -> list[str]:
    # information_schema renders enum('a','it''s') with SQL quote doubling.
    items: list[str] = []
    i = 0
    while i < len(inner):
        if inner[i] != "'":
            i += 1
            continue
        j = i + 1
        buf = []
        while j < len(inner):
            if inner[j] == "'" and j + 1 < len(inner) and inner[j + 1] == "'":
                buf.append("'")
                j += 2
            elif inner[j] == "'":
                break
            else:
                buf.append(inner[j])
                j += 1
        items.append("".join(buf))
        i = j + 1
    return items


@dataclass(frozen=True)
class Index:
    """A unique index (or the primary key) usable to identify rows."""

    name: str
    columns: tuple[str, ...]
    unique: bool
    has_prefix: bool  # a prefix index (col(10)) cannot identify rows on its own


@dataclass(frozen=True)
class TableSchema:
    """A moved table as the source defines it."""

    database: str
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...]
    create_statement: str
    foreign_keys: tuple[str, ...]  # descriptions like "orders.customer_id -> customers"
    triggers: tuple[str, ...]

    @property
    def qualified_name(self) -> str:
        """``db.table`` for messages."""
        return f"{self.database}.{self.name}"

    @property
    def chunk_key(self) -> tuple[str, ...] | None:
        """The primary key, else the narrowest unique key over NOT NULL columns; None if neither."""
        return choose_chunk_key(self.indexes, {c.name: c for c in self.columns})

    @property
    def writable_columns(self) -> tuple[Column, ...]:
        """Columns we write; generated columns are computed by the target itself."""
        return tuple(c for c in self.columns if not c.generated)

    def column(self, name: str) -> Column:
        """Look a column up by name."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def choose_chunk_key(indexes: tuple[Index, ...], columns: dict[str, Column]) -> tuple[str, ...] | None:
    """Pick the key the copier walks and the applier matches rows on.

    The primary key wins. Otherwise a unique key qualifies only when all its columns are NOT NULL
    (NULLs are not unique) and it is not a prefix index; the narrowest one is taken, by name on ties,
    so the choice is stable across restarts.
    """
    for index in indexes:
        if index.name == "PRIMARY":
            return index.columns
    candidates = [
        index
        for index in indexes
        if index.unique and not index.has_prefix and all(not columns[c].nullable for c in index.columns)
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda i: (len(i.columns), i.name))
    return best.columns


async def table_exists(conn: Any, database: str, table: str) -> bool:
    """Whether a base table (not a view) of that name exists."""
    rows = await query(
        conn,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
        "AND TABLE_TYPE='BASE TABLE'",
        (database, table),
    )
    return bool(rows)


async def inspect_table(conn: Any, database: str, table: str) -> TableSchema:
    """Read a table's definition. The caller has checked that it exists."""
    col_rows = await query(
        conn,
        "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, EXTRA, "
        "CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
        (database, table),
    )
    columns = tuple(
        Column(
            name=str(r[0]),
            ordinal=int(r[1]) - 1,
            data_type=str(r[2]).lower(),
            column_type=str(r[3]).lower(),
            nullable=str(r[4]) == "YES",
            # VIRTUAL/STORED GENERATED (MySQL), VIRTUAL GENERATED/PERSISTENT (MariaDB); MySQL's
            # DEFAULT_GENERATED marks an ordinary column with an expression default, which we write.
            generated=any(w in str(r[5]).upper() for w in ("VIRTUAL", "STORED", "PERSISTENT")),
            charset=str(r[6]) if r[6] is not None else None,
            collation=str(r[7]) if r[7] is not None else None,
        )
        for r in col_rows
    )
    idx_rows = await query(
        conn,
        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (database, table),
    )
    grouped: dict[str, list[Any]] = {}
    for r in idx_rows:
        grouped.setdefault(str(r[0]), []).append(r)
    indexes = tuple(
        Index(
            name=name,
            columns=tuple(str(r[2]) for r in rows),
            unique=int(rows[0][1]) == 0,
            has_prefix=any(r[3] is not None for r in rows),
        )
        for name, rows in grouped.items()
    )
    fk_rows = await query(
        conn,
        "SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME "
        "FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND "
        "((TABLE_SCHEMA=%s AND TABLE_NAME=%s) OR (REFERENCED_TABLE_SCHEMA=%s AND REFERENCED_TABLE_NAME=%s))",
        (database, table, database, table),
    )
    foreign_keys = tuple(f"{r[0]}.{r[1]} -> {r[2]}.{r[3]}" for r in fk_rows)
    trigger_rows = await query(
        conn,
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
        "WHERE EVENT_OBJECT_SCHEMA=%s AND EVENT_OBJECT_TABLE=%s ORDER BY TRIGGER_NAME",
        (database, table),
    )
    create_row = await query(conn, f"SHOW CREATE TABLE {qualified(database, table)}")
    return TableSchema(
        database=database,
        name=table,
        columns=columns,
        indexes=indexes,
        create_statement=str(create_row[0][1]),
        foreign_keys=foreign_keys,
        triggers=tuple(str(r[0]) for r in trigger_rows),
    )


async def count_rows_estimate(conn: Any, database: str, table: str) -> int:
    """The optimizer's row estimate (cheap; used for progress and ETA, never for correctness)."""
    rows = await query(
        conn,
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
        (database, table),
    )
    return int(rows[0][0] or 0) if rows else 0


async def lower_case_table_names(conn: Any) -> int:
    """The server's ``lower_case_table_names``: 0 names as spelt, 1 folded to lower case, 2 see config."""
    row = await query_one(conn, "SELECT @@lower_case_table_names")
    return int(row[0]) if row is not None and row[0] is not None else 0


async def _server_lctn(config: Config, role: str) -> int | None:
    server = config.source if role == "source" else config.target
    conn: Any = None
    try:
        conn = await connect(server, role)
        return await lower_case_table_names(conn)
    except (ConnectError, MySQLError, OSError):
        return None  # the command itself reports the unreachable server, in its own words
    finally:
        if conn is not None:
            await close(conn)


async def resolve_names(config: Config) -> Config:
    """``config`` with its database and table names spelt as the servers store them.

    Called once, before anything else reads a name: under ``lower_case_table_names=1`` the server
    stores ``Orders`` as ``orders`` and its binlog names it so, and the stream, the checkpoint's
    table keys, the RENAME, status, verify and cleanup all compare against the stored name. A server
    that cannot be reached lends the other's setting (both must agree, which preflight checks);
    with neither reachable the names stay as configured and the command reports the outage.
    """
    source = await _server_lctn(config, "source")
    target = await _server_lctn(config, "target")
    if source is None and target is None:
        return config
    source_lctn = source if source is not None else target
    target_lctn = target if target is not None else source
    assert source_lctn is not None and target_lctn is not None
    return config.with_name_rules(source_lctn, target_lctn)
