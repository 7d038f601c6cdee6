"""Pure SQL text builders. No I/O: every function takes values and returns text.

Values are never interpolated here; builders emit ``%s`` placeholders for the driver. Identifiers
are always backtick-quoted, so reserved words and odd names in user schemas are safe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier."""
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, table: str) -> str:
    """```db`.`table``` ."""
    return f"{quote_ident(database)}.{quote_ident(table)}"


def column_list(columns: Sequence[str]) -> str:
    """```a`, `b``` ."""
    return ", ".join(quote_ident(c) for c in columns)


def row_placeholder(width: int, marker: str = "%s") -> str:
    """``(%s, %s, ...)`` for one row (``marker="?"`` for a server-side prepared statement)."""
    return "(" + ", ".join([marker] * width) + ")"


def key_after(key: Sequence[str]) -> str:
    """Keyset predicate "row key > (%s, ...)" in the index order, for composite keys too.

    Written as an OR-expansion rather than a row-constructor comparison because MySQL and
    MariaDB only use the index range for the expanded form on every version we support.
    """
    terms = []
    for i in range(len(key)):
        eqs = [f"{quote_ident(k)} = %s" for k in key[:i]]
        terms.append("(" + " AND ".join([*eqs, f"{quote_ident(key[i])} > %s"]) + ")")
    return "(" + " OR ".join(terms) + ")"


def key_after_args(values: Sequence[object]) -> list[object]:
    """The arguments :func:`key_after` expects for the key ``values``."""
    args: list[object] = []
    for i in range(len(values)):
        args.extend(values[: i + 1])
    return args


def select_chunk(
    database: str,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    after: bool,
    limit: int,
    lock: bool = True,
) -> str:
    """Read the next chunk in key order, with a shared lock (spec rule 3).

    ``LOCK IN SHARE MODE`` is spelled the old way because MariaDB does not accept ``FOR SHARE``.
    """
    where = f" WHERE {key_after(key)}" if after else ""
    order = column_list(key)
    suffix = " LOCK IN SHARE MODE" if lock else ""
    return (
        f"SELECT {column_list(columns)} FROM {qualified(database, table)}{where} "
        f"ORDER BY {order} LIMIT {int(limit)}{suffix}"
    )


def insert_rows(
    database: str,
    table: str,
    columns: Sequence[str],
    rows: int,
    *,
    verb: str = "INSERT IGNORE",
    marker: str = "%s",
) -> str:
    """Multi-row ``INSERT IGNORE`` / ``REPLACE`` with ``marker`` placeholders for ``rows`` rows."""
    if verb not in ("INSERT IGNORE", "REPLACE", "INSERT"):
        raise ValueError(f"unsupported verb {verb!r}")
    if marker not in ("%s", "?"):
        raise ValueError(f"unsupported placeholder {marker!r}")
    values = ", ".join([row_placeholder(len(columns), marker)] * rows)
    return f"{verb} INTO {qualified(database, table)} ({column_list(columns)}) VALUES {values}"


def delete_keys(database: str, table: str, key: Sequence[str], rows: int) -> str:
    """Delete ``rows`` rows by key: ``WHERE (k1, k2) IN ((%s, %s), ...)``."""
    if len(key) == 1:
        target = quote_ident(key[0])
        values = ", ".join(["%s"] * rows)
    else:
        target = "(" + column_list(key) + ")"
        values = ", ".join([row_placeholder(len(key))] * rows)
    return f"DELETE FROM {qualified(database, table)} WHERE {target} IN ({values})"


def rename_tables(database: str, pairs: Sequence[tuple[str, str]], comment: str) -> str:
    """One atomic ``RENAME TABLE a TO b, c TO d`` tagged with a comment for the binlog."""
    body = ", ".join(f"{qualified(database, old)} TO {qualified(database, new)}" for old, new in pairs)
    safe_comment = comment.replace("*/", "* /")
    return f"RENAME /* {safe_comment} */ TABLE {body}"


_AUTO_INCREMENT_OPTION = re.compile(r"\s+AUTO_INCREMENT=\d+\b")


def target_create_statement(show_create: str, database: str) -> str:
    """Turn ``SHOW CREATE TABLE`` output into the statement that creates the table on the target.

    The AUTO_INCREMENT counter is dropped: the copied rows set it, and a stale counter from the
    source's snapshot would be misleading. The table name is qualified with the target schema.
    """
    # Only the table options (the last line, after the closing parenthesis) carry the counter; a
    # column's DEFAULT or COMMENT may contain the same text.
    head, sep, options = show_create.rpartition("\n)")
    text = head + sep + _AUTO_INCREMENT_OPTION.sub("", options, count=1) if sep else show_create
    match = re.match(r"CREATE TABLE (`(?:[^`]|``)+`)", text)
    if match is None:
        raise ValueError("not a CREATE TABLE statement")
    return f"CREATE TABLE {quote_ident(database)}.{match.group(1)}{text[match.end() :]}"


def row_digest(columns: Sequence[str]) -> str:
    """An expression hashing a whole row; NULL and '' differ thanks to the ISNULL() flags."""
    values = ", ".join(quote_ident(c) for c in columns)
    nulls = ", ".join(f"ISNULL({quote_ident(c)})" for c in columns)
    return f"MD5(CONCAT_WS('#', {values}, {nulls}))"


def checksum_range(
    database: str, table: str, columns: Sequence[str], key: Sequence[str], *, lower: bool, upper: bool
) -> str:
    """Row count and a 128-bit order-independent checksum of the rows in (lower, upper]."""
    digest = row_digest(columns)
    where = _range_where(key, lower=lower, upper=upper)
    return (
        f"SELECT COUNT(*), "
        f"COALESCE(BIT_XOR(CAST(CONV(LEFT({digest}, 16), 16, 10) AS UNSIGNED)), 0), "
        f"COALESCE(BIT_XOR(CAST(CONV(RIGHT({digest}, 16), 16, 10) AS UNSIGNED)), 0) "
        f"FROM {qualified(database, table)}{where}"
    )


def key_boundary(database: str, table: str, key: Sequence[str], *, after: bool, step: int) -> str:
    """The key of the ``step``-th row after a key (or from the start): the end of a verify chunk."""
    where = f" WHERE {key_after(key)}" if after else ""
    return (
        f"SELECT {column_list(key)} FROM {qualified(database, table)}{where} "
        f"ORDER BY {column_list(key)} LIMIT 1 OFFSET {int(step) - 1}"
    )


def select_range(
    database: str, table: str, columns: Sequence[str], key: Sequence[str], *, lower: bool, upper: bool
) -> str:
    """All rows in (lower, upper], in key order (verify's drill-down)."""
    where = _range_where(key, lower=lower, upper=upper)
    return (
        f"SELECT {column_list(columns)} FROM {qualified(database, table)}{where} ORDER BY {column_list(key)}"
    )


def _range_where(key: Sequence[str], *, lower: bool, upper: bool) -> str:
    # (lower, upper]: after the lower key and not after the upper one; args: lower's, then upper's.
    conds = []
    if lower:
        conds.append(key_after(key))
    if upper:
        conds.append(f"NOT {key_after(key)}")
    return f" WHERE {' AND '.join(conds)}" if conds else ""
