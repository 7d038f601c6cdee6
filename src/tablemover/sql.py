"""Pure SQL text builders. No I/O: every function takes values and returns text (and arguments).

Values are never interpolated here; builders emit ``%s`` placeholders for the driver. Identifiers
are always backtick-quoted, so reserved words and odd names in user schemas are safe.

Keyset predicates ("rows after this key", "rows up to that key") must select exactly the rows the
index walks past, in the *index's* order. For most types a comparison with a literal of the value
we read back orders the same way as the index; for a few it does not, and those columns are
described by a :class:`Col` whose ``kind`` says how to compare them. What was checked, per type
(tests/integration/test_keyset_order.py provokes each case against a real server):

* ENUM: the index orders by member *number*; ``e > 'red'`` compares the member *names* as
  strings and skips rows. Compared by number instead. ``e > 2`` would be correct but is never an
  index range on MariaDB 10.11 (EXPLAIN: ALL / full index scan), while ``e = 2`` and
  ``e IN (3, 4)`` are; so "after member 2" is written ``e IN (3, 4, ...)`` with every later
  number (0, the '' error value, sorts first). Equality keeps the name (``e = 'green'``), which
  is exact and spares a filesort (see :meth:`Col.eq_arg`). Enums with more than MAX_IN_LIST
  members fall back to ``e > 2``: still correct, only slower.
* SET: the index orders by the members' bitmask as an unsigned integer; the value reads back as
  text ("a,c"). Compared by bitmask, as an IN list of every later bitmask when the set has at
  most 10 members (1024 values), else ``s > mask`` (correct; not an index range).
* BIT: reads back as bytes; ``b > _binary'\\x13\\x88'`` compares an integer column with a string
  and selects nothing (a real server returns 0 rows). Compared as the unsigned integer, which
  is exact up to BIT(64) = 2^64 - 1 and an index range.
* FLOAT: the text protocol prints 6 significant digits, so two distinct values can read back as
  the same text and "after 1.23457" skips the second one (and the copy would write the rounded
  value). FLOAT columns are read as ``CAST(f AS DOUBLE)``, which is exact, and compared with that
  double, which is exact too. DOUBLE reads back as its shortest exact text: plain comparison.
* YEAR: stored as one byte (0 = 0000, 1 = 1901 ... 255 = 2155) and read back as the integer
  0 or 1901..2155, which orders the same. Plain comparison.
* DECIMAL: the driver sends a Decimal unquoted (``12345678901234567890.0123456789``), an exact
  decimal literal compared as DECIMAL (MySQL compares a DECIMAL column with a quoted string as
  DOUBLE, which cannot tell the 20-digit values ...789 and ...790 apart).
* DATE / DATETIME(6) / TIMESTAMP(6): read as the server's text (copy and verify connections use
  temporal_as_text) and compared as a string literal, which the server converts to the column's
  temporal type with all six fractional digits; zero dates compare as the zero value. TIMESTAMP
  is read and compared in the same session time zone (UTC). TIME arrives as a timedelta that the
  driver writes as a signed literal ('-00:00:01'): exact.
* signed / unsigned BIGINT: integer literals; 18446744073709551615 is an unsigned literal and
  -9223372036854775808 a decimal one, both compared exactly (never through DOUBLE).
* BINARY / VARBINARY / BLOB prefixes: bytes are sent as ``_binary'...'`` (the driver's escape
  always prefixes bytes), compared bytewise, as the index orders them.
* CHAR / VARCHAR / TEXT, any character set and collation: read as the stored bytes
  (``CAST(c AS BINARY)``) and compared as ``c > CONVERT(_binary'...' USING cs) COLLATE coll``
  with the column's own character set and collation (:attr:`Col.marker`), so the comparison is
  the index's: 'a' and 'A' (or 'e' and 'é', 'a' and 'a ' in PAD SPACE collations) are equal in
  both, a unique key cannot hold both, and the index gives a range (tests/integration/
  test_explain.py). No value goes through a Python codec, which for some character sets is not
  the server's (Python's cp1252 is not MariaDB's latin1: 0x81, 0x8D, 0x8F, 0x90, 0x9D). The
  value compared is the one read from the row itself, so it is valid in the column's charset.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

# The most numbers an ENUM/SET "after" predicate lists before it falls back to a plain comparison.
MAX_IN_LIST = 1024


class Statement(NamedTuple):
    """SQL text with ``%s`` placeholders and the arguments for them, in order."""

    text: str
    args: list[object]


class Kind(enum.Enum):
    """How a column's values are read and compared in index order (see the module docstring)."""

    VALUE = "value"  # the value read back compares like the index orders it
    ENUM = "enum"  # by member number
    SET = "set"  # by member bitmask
    BIT = "bit"  # as an unsigned integer
    FLOAT = "float"  # read as DOUBLE, which is exact


_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_NAME = re.compile(r"[a-z0-9_]+\Z")  # a character set or collation name as the server lists it


@dataclass(frozen=True)
class Col:
    """A column as the builders need it: its name, and how it reads and compares.

    ``collation`` is set for character columns (CHAR/VARCHAR/TEXT in a character set other than
    binary): their values are read and sent as the stored bytes (see :attr:`read` and
    :attr:`marker`), never through a Python codec.
    """

    name: str
    kind: Kind = Kind.VALUE
    members: tuple[str, ...] = ()  # ENUM/SET members in definition order
    charset: str | None = None  # of a character column
    collation: str | None = None  # of a character column

    @classmethod
    def of(
        cls,
        name: str,
        data_type: str,
        members: Sequence[str] = (),
        charset: str | None = None,
        collation: str | None = None,
    ) -> Col:
        """Describe a column from its information_schema DATA_TYPE (and ENUM/SET members,
        character set and collation)."""
        kind = {"enum": Kind.ENUM, "set": Kind.SET, "bit": Kind.BIT, "float": Kind.FLOAT}.get(
            data_type.lower(), Kind.VALUE
        )
        text = (
            data_type.lower() in _TEXT_TYPES
            and charset not in (None, "binary")
            and collation is not None
            and bool(_NAME.match(charset or ""))
            and bool(_NAME.match(collation))
        )
        return cls(
            name,
            kind,
            tuple(members) if kind in (Kind.ENUM, Kind.SET) else (),
            charset if text else None,
            collation if text else None,
        )

    @property
    def marker(self) -> str:
        """The placeholder of a value compared with this column.

        A character column's value travels as its bytes (the driver sends bytes as
        ``_binary'...'``); ``CONVERT(... USING cs) COLLATE coll`` makes them a string of the column's
        own character set and collation again, so the comparison is the index's (case- and
        accent-insensitive where the column is, an index range) and no byte goes through a codec
        other than the server's. The COLLATE is needed: CONVERT's result has the character set's
        default collation at the same coercibility as the column, an "illegal mix" otherwise. A
        ``str`` (a key from an older checkpoint) converts from the connection's utf8mb4 the same way.
        """
        if self.collation is None:
            return "%s"
        return f"CONVERT(%s USING {self.charset}) COLLATE {self.collation}"

    def arg(self, value: object) -> object:
        """The argument that compares ``value`` (as read from a row) in the index's order."""
        if self.kind is Kind.ENUM and isinstance(value, str):
            if value == "" and "" not in self.members:
                return 0  # the '' a non-strict server stores for an invalid value: number 0
            return self._member_number(value) + 1
        if self.kind is Kind.SET and isinstance(value, str | set | frozenset):
            names = value.split(",") if isinstance(value, str) else list(value)
            return sum(1 << self._member_number(m) for m in names if m != "")
        if self.kind is Kind.BIT and isinstance(value, bytes | bytearray):
            return int.from_bytes(value, "big")
        return value

    def eq_arg(self, value: object) -> object:
        """The argument that matches ``value`` in an equality (``col = %s``).

        ENUM and SET keep the member names: equality by name is exact, and unlike equality by
        number it lets the optimizer see the column as constant, so a chunk read in key order
        needs no filesort (EXPLAIN shows one for ``e = 4 AND id > 500 ORDER BY e, id``).
        """
        if self.kind is Kind.BIT:
            return self.arg(value)
        return value

    def _member_number(self, name: str) -> int:
        # 0-based. information_schema may report member names in another case than the server
        # returns them (and ENUM/SET compare case-insensitively in a _ci collation anyway).
        try:
            return self.members.index(name)
        except ValueError:
            folded = [m.casefold() for m in self.members]
            if folded.count(name.casefold()) == 1:
                return folded.index(name.casefold())
            raise ValueError(f"{name!r} is not a member of column {self.name!r}") from None

    @property
    def domain(self) -> int | None:
        """How many numbers an ENUM/SET value can have, when few enough to list; else None."""
        if self.kind is Kind.ENUM:
            size = len(self.members) + 1  # 0 is the '' error value
        elif self.kind is Kind.SET:
            size = 1 << len(self.members)
        else:
            return None
        return size if size <= MAX_IN_LIST else None

    @property
    def read(self) -> str:
        """The select-list expression that reads this column exactly."""
        if self.kind is Kind.FLOAT:
            return f"CAST({quote_ident(self.name)} AS DOUBLE)"
        if self.collation is not None:
            # The stored bytes: a utf8mb4 session would convert them, and a byte the character
            # set maps to no Unicode character (an ascii column's 0x80, cp1250's 0x81) would come
            # back as '?'. Bytes are written back as _binary, which the server stores unconverted.
            return f"CAST({quote_ident(self.name)} AS BINARY)"
        return quote_ident(self.name)


ColLike = Col | str


def _col(c: ColLike) -> Col:
    return c if isinstance(c, Col) else Col(c)


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier."""
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, table: str) -> str:
    """```db`.`table``` ."""
    return f"{quote_ident(database)}.{quote_ident(table)}"


def column_list(columns: Sequence[ColLike]) -> str:
    """```a`, `b``` ."""
    return ", ".join(quote_ident(_col(c).name) for c in columns)


def read_list(columns: Sequence[ColLike]) -> str:
    """The select list that reads ``columns`` exactly (FLOAT as DOUBLE), in order."""
    return ", ".join(_col(c).read for c in columns)


def row_placeholder(width: int, marker: str = "%s", literal_null: Collection[int] = ()) -> str:
    """``(%s, %s, ...)`` for one row (``marker="?"`` for a server-side prepared statement).

    Positions in ``literal_null`` hold the literal ``NULL`` instead of a placeholder.
    """
    return "(" + ", ".join("NULL" if i in literal_null else marker for i in range(width)) + ")"


# --------------------------------------------------------------------------- keyset predicates


def _compare(col: Col, op: str, value: object) -> tuple[str, list[object]] | None:
    """``col op value`` (op: >, < or <=) in the index's order; None when no value satisfies it."""
    arg = col.arg(value)
    domain = col.domain
    if domain is None or not isinstance(arg, int):
        return f"{quote_ident(col.name)} {op} {col.marker}", [arg]
    # ENUM/SET: an IN list of the qualifying numbers, because only equality is an index range.
    if op == ">":
        numbers = range(arg + 1, domain)
    elif op == "<":
        numbers = range(min(arg, domain))
    else:  # "<="
        numbers = range(min(arg + 1, domain))
    if not numbers:
        return None
    return f"{quote_ident(col.name)} IN ({', '.join(['%s'] * len(numbers))})", list(numbers)


def _keyset(key: Sequence[ColLike], values: Sequence[object], op: str, last_op: str) -> Statement:
    cols = [_col(c) for c in key]
    if len(values) != len(cols):
        raise ValueError(f"{len(values)} values for a key of {len(cols)} columns")
    terms: list[str] = []
    args: list[object] = []
    for i, col in enumerate(cols):
        compared = _compare(col, last_op if i == len(cols) - 1 else op, values[i])
        if compared is None:
            continue  # e.g. "after the last ENUM member": this term holds for no row
        parts = [f"{quote_ident(c.name)} = {c.marker}" for c in cols[:i]]
        terms.append("(" + " AND ".join([*parts, compared[0]]) + ")")
        args.extend(c.eq_arg(v) for c, v in zip(cols[:i], values[:i], strict=True))
        args.extend(compared[1])
    if not terms:
        return Statement("(FALSE)", [])
    return Statement("(" + " OR ".join(terms) + ")", args)


def key_after(key: Sequence[ColLike], values: Sequence[object]) -> Statement:
    """Keyset predicate "row key > values" in the index order, for composite keys too.

    Written as an OR-expansion rather than a row-constructor comparison because MySQL and
    MariaDB only use the index range for the expanded form on every version we support.
    """
    return _keyset(key, values, ">", ">")


def key_at_or_before(key: Sequence[ColLike], values: Sequence[object]) -> Statement:
    """Keyset predicate "row key <= values" in the index order (the upper end of a range).

    Spelled positively rather than ``NOT key_after(...)``: an ENUM's ``NOT IN`` list is no range.
    """
    return _keyset(key, values, "<", "<=")


def span_where(key: Sequence[ColLike], span: tuple[object | None, object | None] | None) -> Statement:
    """`` WHERE lo < k1 AND k1 <= hi`` on the first key column (an end that is None is open): a
    range of a parallel copy (tablemover.copyplan). The index range scan starts at ``lo``."""
    if span is None:
        return Statement("", [])
    lo, hi = span
    return _range_where(key[:1], None if lo is None else (lo,), None if hi is None else (hi,))


def _and(first: Statement, second: Statement) -> Statement:
    """Two `` WHERE ...`` clauses (either possibly empty) as one."""
    if not first.text:
        return second
    if not second.text:
        return first
    return Statement(f"{first.text} AND {second.text.removeprefix(' WHERE ')}", [*first.args, *second.args])


def _range_where(
    key: Sequence[ColLike], lower: Sequence[object] | None, upper: Sequence[object] | None
) -> Statement:
    # (lower, upper]: after the lower key and not after the upper one.
    conds: list[str] = []
    args: list[object] = []
    for bound, build in ((lower, key_after), (upper, key_at_or_before)):
        if bound is not None:
            pred = build(key, bound)
            conds.append(pred.text)
            args.extend(pred.args)
    return Statement(f" WHERE {' AND '.join(conds)}" if conds else "", args)


# --------------------------------------------------------------------------- MySQL JSON

# The JSON_TYPE() names of the values JSON text carries exactly: read back as text and parsed again
# (by the target, or by the copy's writer) each comes back as the same JSON type and value. The
# names are MySQL's own (sql/item_json_func.cc, ``json_type_string_map``, the same list in 8.0 and
# 8.4; the reference manual's JSON_TYPE() entry lists them by group). Every other name is a value
# that only the binary JSON of a MySQL column can hold: DECIMAL (text reads back as a DOUBLE),
# DATE, TIME, DATETIME, TIMESTAMP (text reads back as a STRING), OPAQUE, BLOB, BIT, GEOMETRY, and
# whatever a later version adds; an allow-list, so an unknown name is flagged, never passed.
JSON_TEXT_TYPES = ("ARRAY", "BOOLEAN", "DOUBLE", "INTEGER", "NULL", "OBJECT", "STRING", "UNSIGNED INTEGER")

# Every value of a document, the document itself first. MySQL's path syntax: ``.*`` is every member
# of an object, ``[*]`` every element of an array, ``prefix**suffix`` every path that begins with
# the prefix and ends with the suffix (a path may not end in ``**``). Any value below the top is a
# member of an object or an element of an array, so '$**.*' and '$**[*]' reach all of them, at any
# depth; '$' is the top-level value (a document may be a lone scalar). JSON_EXTRACT() with several
# paths, wildcards among them, returns every match wrapped in one array, in path order, and keeps
# each value's JSON type (the manual's JSON_EXTRACT() and "Searching and Modifying JSON Values").
_ALL_VALUES = "'$', '$**.*', '$**[*]'"


def json_non_text_types(database: str, table: str, column: str) -> str:
    """A select-list expression: the JSON_TYPE() names in the row's document ``column`` that JSON
    text cannot carry (comma-separated), or NULL when it holds none (or is NULL). MySQL only.

    A correlated subquery over JSON_TABLE(), which turns the array of every value in the document
    (see :data:`_ALL_VALUES`) into rows; a ``JSON`` column of JSON_TABLE() holds each value with its
    JSON type (the manual's JSON_TABLE() entry: "expr ... can be a column ... or a function call").
    It reads only the row already selected: an extra expression of the chunk's own read, no scan of
    its own, so the chunk's key range and index stay as they are. MariaDB has nothing to check: its
    JSON is LONGTEXT, text in and text out, and its information_schema never reports the type 'json'.
    """
    allowed = ", ".join(f"'{name}'" for name in JSON_TEXT_TYPES)
    doc = f"{qualified(database, table)}.{quote_ident(column)}"
    return (
        "(SELECT GROUP_CONCAT(DISTINCT JSON_TYPE(`_tm_jt`.`v`) ORDER BY JSON_TYPE(`_tm_jt`.`v`)) "
        f"FROM JSON_TABLE(JSON_EXTRACT({doc}, {_ALL_VALUES}), '$[*]' COLUMNS (`v` JSON PATH '$')) "
        f"AS `_tm_jt` WHERE JSON_TYPE(`_tm_jt`.`v`) NOT IN ({allowed}))"
    )


# --------------------------------------------------------------------------- copy


def select_chunk(
    database: str,
    table: str,
    columns: Sequence[ColLike],
    key: Sequence[ColLike],
    *,
    after: Sequence[object] | None,
    limit: int,
    lock: bool = True,
    json_checks: Sequence[str] = (),
    span: tuple[object | None, object | None] | None = None,
) -> Statement:
    """Read the next chunk in key order after the key ``after`` (None: from the start), locked.

    ``LOCK IN SHARE MODE`` is spelled the old way because MariaDB does not accept ``FOR SHARE``.
    Each name in ``json_checks`` (a MySQL JSON column) adds one last select-list expression,
    :func:`json_non_text_types` of that column, in that order, after the columns. ``span``
    ``(lo, hi)`` keeps the read to ``lo < first key column <= hi`` (a parallel copy's range, see
    :func:`span_where`).
    """
    where = _and(_range_where(key, after, None), span_where(key, span))
    suffix = " LOCK IN SHARE MODE" if lock else ""
    checks = "".join(f", {json_non_text_types(database, table, c)}" for c in json_checks)
    return Statement(
        f"SELECT {read_list(columns)}{checks} FROM {qualified(database, table)}{where.text} "
        f"ORDER BY {column_list(key)} LIMIT {int(limit)}{suffix}",
        where.args,
    )


# --------------------------------------------------------------------------- writes

_VERBS = ("INSERT", "REPLACE")


def insert_rows(
    database: str,
    table: str,
    columns: Sequence[str],
    rows: int,
    *,
    verb: str = "INSERT",
    marker: str = "%s",
    keep_existing_on: str | None = None,
    literal_null: Collection[int] = (),
) -> str:
    """Multi-row ``INSERT`` / ``REPLACE`` with ``marker`` placeholders for ``rows`` rows.

    ``keep_existing_on`` (a key column) makes an INSERT keep a row that already exists under a
    unique key: ``ON DUPLICATE KEY UPDATE k = k`` changes nothing. Unlike ``INSERT IGNORE``, it
    skips *only* duplicates: a value the column cannot hold stays an error. Positions in
    ``literal_null`` get a literal ``NULL`` instead of a placeholder (a bulk statement whose
    column is NULL in every row of a batch).
    """
    if verb not in _VERBS:
        raise ValueError(f"unsupported verb {verb!r}")
    if marker not in ("%s", "?"):
        raise ValueError(f"unsupported placeholder {marker!r}")
    if keep_existing_on is not None and verb != "INSERT":
        raise ValueError("keep_existing_on only applies to INSERT")
    values = ", ".join([row_placeholder(len(columns), marker, literal_null)] * rows)
    text = f"{verb} INTO {qualified(database, table)} ({column_list(columns)}) VALUES {values}"
    if keep_existing_on is not None:
        col = quote_ident(keep_existing_on)
        text += f" ON DUPLICATE KEY UPDATE {col} = {col}"
    return text


def delete_keys(database: str, table: str, key: Sequence[ColLike], rows: int) -> str:
    """Delete ``rows`` rows by key; the arguments are the keys' values, flattened in order.

    A composite key is written ``(a = %s AND b = %s) OR (a = %s AND b = %s) ...``: MariaDB 10.11
    runs ``(a, b) IN ((%s, %s))`` as a full table scan, while every server we support turns the
    OR of equalities into one index range per key. Character columns compare their values' bytes
    in the column's collation (:attr:`Col.marker`).
    """
    if rows < 1:
        raise ValueError("delete_keys needs at least one row")
    cols = [_col(k) for k in key]
    if len(cols) == 1:
        where = f"{quote_ident(cols[0].name)} IN ({', '.join([cols[0].marker] * rows)})"
    else:
        one = "(" + " AND ".join(f"{quote_ident(k.name)} = {k.marker}" for k in cols) + ")"
        where = " OR ".join([one] * rows)
    return f"DELETE FROM {qualified(database, table)} WHERE {where}"


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


# --------------------------------------------------------------------------- verify


def row_digest(columns: Sequence[ColLike]) -> str:
    """An expression hashing a whole row; NULL and '' differ thanks to the ISNULL() flags."""
    values = read_list(columns)
    nulls = ", ".join(f"ISNULL({quote_ident(_col(c).name)})" for c in columns)
    return f"MD5(CONCAT_WS('#', {values}, {nulls}))"


# A LIMIT no chunk reaches: a derived table with a LIMIT is materialized, never merged into the
# query around it, so each row's digest is computed once (merged, it is computed once per half).
_MATERIALIZE = "LIMIT 18446744073709551615"


def checksum_range(
    database: str,
    table: str,
    columns: Sequence[ColLike],
    key: Sequence[ColLike],
    *,
    lower: Sequence[object] | None,
    upper: Sequence[object] | None,
    json_checks: Sequence[str] = (),
    lock: bool = False,
    span: tuple[object | None, object | None] | None = None,
) -> Statement:
    """Row count and a 128-bit order-independent checksum of the rows in (lower, upper].

    Each row's MD5 is computed once, in a derived table (its two halves are XORed as two unsigned
    64-bit integers): about a third less work per chunk than computing it for each half. ``lock``
    reads the rows with a shared lock; the ``LOCK IN SHARE MODE`` belongs to the derived table's
    own SELECT, since on the outer one it locks nothing (MariaDB 10.11: an UPDATE of a row in the
    range is not blocked). With ``json_checks`` (MySQL JSON columns) a fourth value counts the rows
    whose document in any of them holds a value JSON text cannot carry
    (:func:`json_non_text_types`): the digest hashes the documents' text, which prints a DATETIME
    like the string of the same digits.
    """
    where = _and(_range_where(key, lower, upper), span_where(key, span))
    inner = f"{row_digest(columns)} AS `_tm_h`"
    flagged = ""
    if json_checks:
        any_flag = ", ".join(json_non_text_types(database, table, c) for c in json_checks)
        inner += f", COALESCE({any_flag}, NULL) AS `_tm_f`"
        flagged = ", COUNT(`_tm_f`)"
    suffix = " LOCK IN SHARE MODE" if lock else ""
    return Statement(
        "SELECT COUNT(*), "
        "COALESCE(BIT_XOR(CAST(CONV(LEFT(`_tm_h`, 16), 16, 10) AS UNSIGNED)), 0), "
        f"COALESCE(BIT_XOR(CAST(CONV(RIGHT(`_tm_h`, 16), 16, 10) AS UNSIGNED)), 0){flagged} "
        f"FROM (SELECT {inner} FROM {qualified(database, table)}{where.text} {_MATERIALIZE}{suffix}) "
        "AS `_tm_rows`",
        where.args,
    )


def key_boundary(
    database: str,
    table: str,
    key: Sequence[ColLike],
    *,
    after: Sequence[object] | None,
    step: int,
    upper: Sequence[object] | None = None,
    span: tuple[object | None, object | None] | None = None,
) -> Statement:
    """The key of the ``step``-th row after a key (or from the start): the end of a verify chunk.

    With ``upper`` only rows up to and including that key count (an interval (after, upper] of the
    live gate); the server compares, in the key columns' own order and collation, like every other
    range here. The statement also returns the row after the ``step``-th one, when there is one
    inside the range (LIMIT 2): fewer than two rows back means the rest of the range is at most
    one chunk, so the caller ends it at ``upper`` itself and sends no query for an empty chunk.
    """
    where = _and(_range_where(key, after, upper), span_where(key, span))
    return Statement(
        f"SELECT {read_list(key)} FROM {qualified(database, table)}{where.text} "
        f"ORDER BY {column_list(key)} LIMIT 2 OFFSET {int(step) - 1}",
        where.args,
    )


def select_range(
    database: str,
    table: str,
    columns: Sequence[ColLike],
    key: Sequence[ColLike],
    *,
    lower: Sequence[object] | None,
    upper: Sequence[object] | None,
    span: tuple[object | None, object | None] | None = None,
) -> Statement:
    """All rows in (lower, upper], in key order (verify's drill-down)."""
    where = _and(_range_where(key, lower, upper), span_where(key, span))
    return Statement(
        f"SELECT {read_list(columns)} FROM {qualified(database, table)}{where.text} "
        f"ORDER BY {column_list(key)}",
        where.args,
    )
