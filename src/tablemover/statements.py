"""Which tables a SQL statement from a binlog Query event changes.

The binlog stream sees statement text for DDL, and for DML that a session logged in STATEMENT (or MIXED)
format.  A move has to stop when, and only when, such a statement changes one of the moved tables.  Looking
for the table's name anywhere in the text is wrong both ways: it stops on ``CREATE TABLE backup LIKE moved``,
on a name inside a comment or a string literal, and on a same-named table of another database.

So this module tokenizes the text the way the server's lexer does (comments dropped, executable comments
kept as code, quoting undone) and then reads just enough of the grammar of each statement family to name the
tables it writes.  It is not a SQL parser: it only has to find targets, and where it cannot, it errs on the
side of reporting a change, because a missed change corrupts the copy while a spurious one only stops the
move for an operator to look at.

Everything here is pure: no I/O, standard library only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

__all__ = ["ChangeKind", "TableChange", "Token", "TokenKind", "changed_tables", "changes_any", "tokenize"]


class ChangeKind(enum.StrEnum):
    """How a statement changes a table."""

    ROWS = "rows"  # a data change in statement form: INSERT, REPLACE, UPDATE, DELETE, LOAD DATA
    TRUNCATE = "truncate"
    DDL = "ddl"  # ALTER, DROP, RENAME (either side), CREATE/DROP INDEX, OPTIMIZE, REPAIR, CREATE OR REPLACE


@dataclass(frozen=True)
class TableChange:
    """One table (or a whole schema) that a statement changes."""

    schema: str  # resolved: the explicit qualifier, else the event's default schema
    table: str | None  # None = every table of the schema (DROP DATABASE, CREATE OR REPLACE DATABASE)
    kind: ChangeKind


# =========================================================================== tokenizer


class TokenKind(enum.Enum):
    """What a token is, as far as finding table names needs to know."""

    WORD = "word"  # an unquoted keyword, identifier or number
    IDENT = "ident"  # a `backtick quoted` identifier
    STRING = "string"  # a 'single quoted' string literal
    DSTRING = "dstring"  # "double quoted": a string, or an identifier under sql_mode=ANSI_QUOTES
    PUNCT = "punct"  # any other single character


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; ``text`` is unquoted and unescaped, in its original case."""

    kind: TokenKind
    text: str

    @property
    def keyword(self) -> str:
        """The upper-cased text of an unquoted word, else "" (a quoted name is never a keyword)."""
        return self.text.upper() if self.kind is TokenKind.WORD else ""


_QUOTES = {"'": TokenKind.STRING, '"': TokenKind.DSTRING, "`": TokenKind.IDENT}

# `/*!50100 ... */` (MySQL) and `/*M!100100 ... */` (MariaDB): the server runs the content as code, so the
# tokenizer drops only the marker and the version number.  MySQL 8.0.34+ accepts 6-digit versions too.
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!\d{0,6}")


def _is_word_char(ch: str) -> bool:
    # Unquoted identifiers are [0-9A-Za-z$_] plus anything from U+0080 up; they may start with a digit,
    # so numbers come out as words too, which is harmless: no table name is looked for where one can be.
    return ch.isalnum() or ch in "_$" or (ord(ch) >= 0x80 and not ch.isspace())


def _starts_line_comment(query: str, i: int) -> bool:
    if query[i] == "#":
        return True
    # "--" opens a comment only when a space or control character follows; `a--1` is arithmetic.
    return query.startswith("--", i) and (i + 2 == len(query) or ord(query[i + 2]) <= 32)


def _read_quoted(query: str, start: int) -> tuple[str, int]:
    """The unquoted content of the literal or identifier opening at `start`, and the index after it."""
    quote = query[start]
    out: list[str] = []
    i, n = start + 1, len(query)
    while i < n:
        ch = query[i]
        if ch == "\\" and quote != "`" and i + 1 < n:
            # The escaped character only matters for not ending the literal early, so keep it as it is.
            out.append(query[i + 1])
            i += 2
        elif ch == quote:
            if query.startswith(quote, i + 1):  # a doubled quote stands for one
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out), n  # unterminated: the server would have rejected it; the rest is the literal


def tokenize(query: str) -> list[Token]:
    """Split statement text into tokens the way the server's lexer does.

    Comments (``-- ``, ``#``, ``/* */``) are dropped; executable comments (``/*!50100 ... */``,
    ``/*M!100100 ... */``) lose only their markers, since their content is code.  Quoted strings and
    identifiers come back unquoted with doubled quotes and backslash escapes undone.  Never raises.
    """
    tokens: list[Token] = []
    n = len(query)
    i = 0
    open_executable = 0  # executable comments entered; each one's closing "*/" is dropped, not tokenized
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif _starts_line_comment(query, i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif query.startswith("/*", i):
            executable = _EXECUTABLE_COMMENT.match(query, i)
            if executable:
                open_executable += 1
                i = executable.end()
            else:
                end = query.find("*/", i + 2)
                i = n if end < 0 else end + 2
        elif open_executable and query.startswith("*/", i):
            open_executable -= 1
            i += 2
        elif ch in _QUOTES:
            text, i = _read_quoted(query, i)
            tokens.append(Token(_QUOTES[ch], text))
        elif _is_word_char(ch):
            start = i
            while i < n and _is_word_char(query[i]):
                i += 1
            tokens.append(Token(TokenKind.WORD, query[start:i]))
        else:
            tokens.append(Token(TokenKind.PUNCT, ch))
            i += 1
    return tokens


# =========================================================================== cursor over one statement

_NAME_KINDS = (TokenKind.WORD, TokenKind.IDENT, TokenKind.DSTRING)


def _qualify(parts: list[str], default_schema: str) -> tuple[str, str]:
    """(schema, table) of a dotted table name."""
    return (parts[-2], parts[-1]) if len(parts) >= 2 else (default_schema, parts[0])


class _Cursor:
    """A read position in one statement's tokens; every method is safe at the end of the tokens."""

    def __init__(self, tokens: list[Token], default_schema: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.default_schema = default_schema
        self.ctes: frozenset[str] = frozenset()  # names a WITH clause defined: not tables

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def kw(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        return tok.keyword if tok else ""

    def punct(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        return tok.text if tok and tok.kind is TokenKind.PUNCT else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def advance(self, count: int = 1) -> None:
        self.pos = min(self.pos + count, len(self.tokens))

    def accept(self, *keywords: str) -> bool:
        """Step over the next token when it is one of `keywords`."""
        kw = self.kw()
        if kw and kw in keywords:
            self.advance()
            return True
        return False

    def accept_seq(self, *keywords: str) -> bool:
        """Step over the next tokens when they are exactly `keywords`, in order (IF NOT EXISTS)."""
        if all(self.kw(k) == word for k, word in enumerate(keywords)):
            self.advance(len(keywords))
            return True
        return False

    def accept_punct(self, ch: str) -> bool:
        if self.punct() == ch:
            self.advance()
            return True
        return False

    def at_name(self, ahead: int = 0) -> bool:
        # A double-quoted token where a name belongs can only be an ANSI_QUOTES identifier: a string
        # literal is never valid there.
        tok = self.peek(ahead)
        return tok is not None and tok.kind in _NAME_KINDS

    def name_parts(self) -> list[str]:
        """A dotted name (`db`.t, db . `t`, a.b.c, t.*) as its parts; [] when no name starts here."""
        parts: list[str] = []
        tok = self.peek()
        if tok is None or tok.kind not in _NAME_KINDS:
            return parts
        parts.append(tok.text)
        self.advance()
        while self.punct() == ".":
            if self.punct(1) == "*":  # `t.*` in a multi-table DELETE's target list
                self.advance(2)
                break
            following = self.peek(1)
            if following is None or following.kind not in _NAME_KINDS:
                break
            parts.append(following.text)
            self.advance(2)
        return parts

    def table(self) -> tuple[str, str] | None:
        """The (schema, table) named here, resolved against the default schema; None when there is none."""
        parts = self.name_parts()
        return _qualify(parts, self.default_schema) if parts else None

    def skip_group(self) -> None:
        """At "(", step past its matching ")" (or to the end of an unbalanced statement)."""
        depth = 0
        while (tok := self.peek()) is not None:
            self.advance()
            if tok.kind is TokenKind.PUNCT and tok.text == "(":
                depth += 1
            elif tok.kind is TokenKind.PUNCT and tok.text == ")":
                depth -= 1
                if depth <= 0:
                    return

    def skip_to(self, keyword: str, then: str = "") -> bool:
        """Move to the next `keyword` (followed by `then`) outside parentheses; False at the end."""
        while not self.at_end():
            if self.kw() == keyword and (not then or self.kw(1) == then):
                return True
            if self.punct() == "(":
                self.skip_group()
            else:
                self.advance()
        return False


def _changes(kind: ChangeKind, names: list[tuple[str, str]]) -> list[TableChange]:
    return [TableChange(schema, table, kind) for schema, table in names]


def _unknown_target(c: _Cursor, kind: ChangeKind) -> list[TableChange]:
    # The statement's verb writes or redefines a table, but the name could not be read (syntax this module
    # does not know, or a truncated text).  Say "something in the default schema changed": that stops a move
    # of that database for a person to look at, rather than let an unseen change through.
    return [TableChange(c.default_schema, None, kind)]


def _one(c: _Cursor, kind: ChangeKind) -> list[TableChange]:
    """The single table named at the cursor."""
    name = c.table()
    return _changes(kind, [name]) if name else _unknown_target(c, kind)


def _name_list(c: _Cursor, kind: ChangeKind) -> list[TableChange]:
    """A comma-separated list of tables (DROP TABLE a, b / OPTIMIZE TABLE a, b)."""
    names: list[tuple[str, str]] = []
    while (name := c.table()) is not None:
        names.append(name)
        if not c.accept_punct(","):
            break
    return _changes(kind, names) if names else _unknown_target(c, kind)


def _on_table(c: _Cursor, kind: ChangeKind) -> list[TableChange]:
    """The table after ON, as in CREATE INDEX i ON t / DROP INDEX i ON t."""
    if c.skip_to("ON"):
        c.advance()
        return _one(c, kind)
    return _unknown_target(c, kind)


def _schema(c: _Cursor) -> list[TableChange]:
    """A whole schema (DROP DATABASE d): table None."""
    parts = c.name_parts()
    return [TableChange(parts[-1], None, ChangeKind.DDL)] if parts else _unknown_target(c, ChangeKind.DDL)


# Words that may stand between CREATE/ALTER/DROP and the kind of object, in any order.
_FLAG_MODIFIERS = frozenset(
    {"TEMPORARY", "UNIQUE", "FULLTEXT", "SPATIAL", "ONLINE", "OFFLINE", "IGNORE", "AGGREGATE"}
)


def _skip_user(c: _Cursor) -> None:
    """Step over an account name: CURRENT_USER[()], user, 'user'@'host', `user`@`host`."""
    if c.accept("CURRENT_USER", "CURRENT_ROLE"):
        if c.punct() == "(":
            c.skip_group()
        return
    c.advance()
    if c.accept_punct("@"):
        c.advance()


def _skip_modifiers(c: _Cursor) -> set[str]:
    """Step over OR REPLACE, TEMPORARY, DEFINER=..., ALGORITHM=..., SQL SECURITY ..., UNIQUE, ONLINE...

    Returns the modifiers seen ("OR REPLACE" for the pair), since several decide what the statement does.
    """
    seen: set[str] = set()
    while True:
        kw = c.kw()
        if kw == "OR" and c.kw(1) == "REPLACE":
            c.advance(2)
            seen.add("OR REPLACE")
        elif kw in _FLAG_MODIFIERS:
            c.advance()
            seen.add(kw)
        elif kw in ("DEFINER", "ALGORITHM") and c.punct(1) == "=":
            c.advance(2)
            if kw == "DEFINER":
                _skip_user(c)
            else:
                c.advance()
        elif kw == "SQL" and c.kw(1) == "SECURITY":
            c.advance(3)
        else:
            return seen


# =========================================================================== table references (joins)


@dataclass(frozen=True)
class _Ref:
    """One entry of a FROM/UPDATE table list."""

    schema: str
    table: str | None  # None: a derived table, table function or CTE, which has no rows of its own
    alias: str | None  # how the rest of the statement names it: its alias, else its table name


# Keywords that can follow a table factor, so a bare word there is not its alias.
_NOT_ALIAS = frozenset(
    {
        "AS", "BEFORE", "CROSS", "EXCEPT", "FETCH", "FOR", "FORCE", "FROM", "FULL", "GROUP", "HAVING",
        "IGNORE", "INNER", "INTERSECT", "INTO", "JOIN", "LEFT", "LIMIT", "LOCK", "MINUS", "NATURAL",
        "OFFSET", "ON", "ORDER", "OUTER", "PARTITION", "PROCEDURE", "RETURNING", "RIGHT", "SELECT", "SET",
        "STRAIGHT_JOIN", "TABLESAMPLE", "UNION", "USE", "USING", "VALUES", "WHERE", "WINDOW", "WITH",
    }
)  # fmt: skip
_SUBQUERY_START = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})


def _alias(c: _Cursor) -> str | None:
    """The alias after a table factor, if any."""
    if c.accept("AS"):
        tok = c.peek()
        if tok is not None and tok.kind in (*_NAME_KINDS, TokenKind.STRING):
            c.advance()
            return tok.text
        return None
    tok = c.peek()
    if tok is not None and (
        tok.kind in (TokenKind.IDENT, TokenKind.DSTRING)
        or (tok.kind is TokenKind.WORD and tok.keyword not in _NOT_ALIAS)
    ):
        c.advance()
        return tok.text
    return None


def _table_factor(c: _Cursor) -> _Ref:
    """A named table factor: name [PARTITION (...)] [[AS] alias], or a table function like JSON_TABLE(...)."""
    parts = c.name_parts()
    if c.punct() == "(":  # a table function produces rows; it has none to change
        c.skip_group()
        return _Ref(c.default_schema, None, _alias(c))
    if len(parts) == 1 and parts[0] in c.ctes:
        return _Ref(c.default_schema, None, _alias(c) or parts[0])
    schema, table = _qualify(parts, c.default_schema)
    if c.accept("PARTITION") and c.punct() == "(":
        c.skip_group()
    return _Ref(schema, table, _alias(c) or table)


def _table_refs(c: _Cursor, stop: frozenset[str]) -> list[_Ref]:
    """Every table factor of a table list with joins, up to a `stop` keyword outside parentheses.

    Only the factors are read; ON conditions, index hints and subqueries are stepped over, since whatever
    they name is only read.
    """
    refs: list[_Ref] = []
    expect = True  # a name here starts a table factor (at the start, after "," or JOIN, inside "(")
    depth = 0  # open parentheses of nested joins: `(a JOIN b) JOIN c`
    while (tok := c.peek()) is not None:
        kw, punct = tok.keyword, c.punct()
        if depth == 0 and kw in stop and not (kw == "USING" and c.punct(1) == "("):
            break  # `USING (col)` is a join condition; a bare USING starts DELETE's table list
        if kw in ("USE", "IGNORE", "FORCE") and c.kw(1) in ("INDEX", "KEY"):
            while not c.at_end() and c.punct() != "(":  # [FOR JOIN | ORDER BY | GROUP BY] (index list)
                c.advance()
            c.skip_group()
        elif punct == "(":
            if expect and c.kw(1) not in _SUBQUERY_START:
                c.advance()
                depth += 1
                continue
            c.skip_group()
            if expect:  # a derived table: (SELECT ...) AS d
                refs.append(_Ref(c.default_schema, None, _alias(c)))
                expect = False
        elif punct == ")":
            if depth == 0:
                break
            depth -= 1
            c.advance()
            expect = False
        elif punct == "," or kw in ("JOIN", "STRAIGHT_JOIN"):
            c.advance()
            expect = True
        elif punct == "{":  # ODBC `{ OJ a LEFT JOIN b ON ... }`
            c.advance()
            c.accept("OJ")
            expect = True
        elif expect and kw == "LATERAL":
            c.advance()
        elif expect and c.at_name():
            refs.append(_table_factor(c))
            expect = False
        else:
            c.advance()
    return refs


def _named(qualifier: list[str], refs: list[_Ref]) -> list[_Ref]:
    """The table-list entries that `alias` or `db.table` (a column's qualifier, a DELETE target) means."""
    if len(qualifier) == 1:
        return [r for r in refs if r.alias == qualifier[0]]
    return [r for r in refs if r.schema == qualifier[-2] and r.table == qualifier[-1]]


def _real(refs: list[_Ref]) -> list[tuple[str, str]]:
    return [(r.schema, r.table) for r in refs if r.table is not None]


# =========================================================================== statement families


def _alter(c: _Cursor) -> list[TableChange]:
    """ALTER [ONLINE] [IGNORE] TABLE [IF EXISTS] t ... (incl. RENAME TO, EXCHANGE/CONVERT partitions)."""
    c.advance()
    _skip_modifiers(c)
    if c.accept("SEQUENCE"):  # a MariaDB sequence is a table, so it could be a moved one
        c.accept_seq("IF", "EXISTS")
        return _one(c, ChangeKind.DDL)
    if not c.accept("TABLE"):
        return []  # ALTER DATABASE/VIEW/EVENT/USER/...: changes no table's definition or rows
    c.accept_seq("IF", "EXISTS")
    first = c.table()
    if first is None:
        return _unknown_target(c, ChangeKind.DDL)
    names = [first]
    # The other tables an ALTER TABLE changes sit in its list of specifications, outside parentheses.
    while not c.at_end():
        if c.punct() == "(":
            c.skip_group()
        elif c.accept("RENAME"):
            if c.kw() in ("COLUMN", "INDEX", "KEY", "CONSTRAINT"):
                continue
            c.accept("TO", "AS")
            if (new := c.table()) is not None:
                names.append(new)
        elif c.accept("EXCHANGE"):
            # EXCHANGE PARTITION p WITH TABLE t2: t2's rows move into t, and t's into t2.
            while not c.at_end() and c.punct() != ",":
                if c.accept_seq("WITH", "TABLE"):
                    if (other := c.table()) is not None:
                        names.append(other)
                    break
                c.advance()
        elif c.accept_seq("CONVERT", "TABLE"):
            # MariaDB: CONVERT TABLE t2 TO PARTITION p moves t2 into t and drops it.
            if (other := c.table()) is not None:
                names.append(other)
        else:
            c.advance()
    return _changes(ChangeKind.DDL, names)


def _drop(c: _Cursor) -> list[TableChange]:
    """DROP TABLE a, b / DROP DATABASE d / DROP INDEX i ON t; DROP TEMPORARY TABLE touches no real table."""
    c.advance()
    modifiers = _skip_modifiers(c)
    if c.accept("TABLE", "TABLES", "SEQUENCE"):
        if "TEMPORARY" in modifiers:
            # Only a session's temporary table; MySQL logs one as DROP /*!40005 TEMPORARY */ TABLE.
            return []
        c.accept_seq("IF", "EXISTS")
        return _name_list(c, ChangeKind.DDL)
    if c.accept("DATABASE", "SCHEMA"):
        c.accept_seq("IF", "EXISTS")
        return _schema(c)
    if c.accept("INDEX"):
        return _on_table(c, ChangeKind.DDL)
    return []  # DROP VIEW/TRIGGER/PROCEDURE/USER/...


def _rename(c: _Cursor) -> list[TableChange]:
    """RENAME TABLE[S] [IF EXISTS] a [WAIT n|NOWAIT] TO b, c TO d: both sides of every pair."""
    c.advance()
    if not c.accept("TABLE", "TABLES"):
        return []  # RENAME USER
    names: list[tuple[str, str]] = []
    while True:
        c.accept_seq("IF", "EXISTS")
        source = c.table()
        if source is None:
            break
        names.append(source)
        if c.accept("WAIT"):
            c.advance()
        c.accept("NOWAIT")
        if not c.accept("TO"):
            break
        if (target := c.table()) is not None:
            names.append(target)
        if not c.accept_punct(","):
            break
    return _changes(ChangeKind.DDL, names) if names else _unknown_target(c, ChangeKind.DDL)


def _truncate(c: _Cursor) -> list[TableChange]:
    """TRUNCATE [TABLE] t."""
    c.advance()
    c.accept("TABLE")
    return _one(c, ChangeKind.TRUNCATE)


def _create(c: _Cursor) -> list[TableChange]:
    """CREATE INDEX and the CREATE OR REPLACE forms change an existing table; everything else makes a new one.

    A plain CREATE TABLE, with or without IF NOT EXISTS, LIKE or SELECT, either creates a table that did not
    exist or fails (or, with IF NOT EXISTS, does nothing), so it never changes an existing table; what it
    reads (LIKE / SELECT sources) is only read.  Views and triggers change no rows themselves: a trigger's
    writes reach the binlog as row events of their own.
    """
    c.advance()
    modifiers = _skip_modifiers(c)
    replace = "OR REPLACE" in modifiers and "TEMPORARY" not in modifiers
    if c.accept("INDEX"):
        return _on_table(c, ChangeKind.DDL)  # an ALTER TABLE ... ADD INDEX under another name
    if c.accept("TABLE", "SEQUENCE"):
        if not replace:
            return []
        c.accept_seq("IF", "NOT", "EXISTS")
        return _one(c, ChangeKind.DDL)  # drops the existing table of that name first
    if c.accept("DATABASE", "SCHEMA"):
        if not replace:
            return []
        c.accept_seq("IF", "NOT", "EXISTS")
        return _schema(c)
    return []


def _maintenance(c: _Cursor) -> list[TableChange]:
    """OPTIMIZE / REPAIR [NO_WRITE_TO_BINLOG | LOCAL] TABLE a, b: both rebuild the table."""
    c.advance()
    c.accept("NO_WRITE_TO_BINLOG", "LOCAL")
    if c.accept("TABLE", "TABLES"):
        return _name_list(c, ChangeKind.DDL)
    if c.kw() == "VIEW":
        return []  # REPAIR VIEW rewrites only the view's definition file
    return _unknown_target(c, ChangeKind.DDL)


def _insert(c: _Cursor) -> list[TableChange]:
    """INSERT / REPLACE [LOW_PRIORITY|DELAYED|HIGH_PRIORITY] [IGNORE] [INTO] t ...: only t is written.

    Whatever follows (VALUES, SET, SELECT ... FROM other, ON DUPLICATE KEY UPDATE) only reads other tables.
    """
    c.advance()
    while c.accept("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"):
        pass
    c.accept("INTO")
    return _one(c, ChangeKind.ROWS)


def _load(c: _Cursor) -> list[TableChange]:
    """LOAD DATA|XML [LOCAL] INFILE '...' [REPLACE|IGNORE] INTO TABLE t."""
    c.advance()
    if not c.accept("DATA", "XML"):
        return []  # LOAD INDEX INTO CACHE only warms a key cache
    if c.skip_to("INTO", "TABLE"):
        c.advance(2)
        return _one(c, ChangeKind.ROWS)
    return _unknown_target(c, ChangeKind.ROWS)


_SET_END = frozenset({"WHERE", "ORDER", "LIMIT", "RETURNING"})


def _assigned_columns(c: _Cursor) -> list[list[str]]:
    """The left-hand sides of `SET a.x = ..., y = ...`, as dotted parts."""
    columns: list[list[str]] = []
    while not c.at_end():
        if parts := c.name_parts():
            columns.append(parts)
        while (tok := c.peek()) is not None and tok.keyword not in _SET_END and c.punct() != ",":
            if c.punct() == "(":
                c.skip_group()
            else:
                c.advance()
        if not c.accept_punct(","):
            break
    return columns


def _update(c: _Cursor) -> list[TableChange]:
    """UPDATE [LOW_PRIORITY] [IGNORE] refs SET ...: with several tables, only those whose columns are set."""
    c.advance()
    while c.accept("LOW_PRIORITY", "IGNORE"):
        pass
    refs = _table_refs(c, frozenset({"SET"}))
    tables = _real(refs)
    if not tables:
        return _unknown_target(c, ChangeKind.ROWS)
    if len(refs) == 1 or not c.accept("SET"):
        return _changes(ChangeKind.ROWS, tables)  # single-table, or no SET clause found to narrow it down
    hits: list[tuple[str, str]] = []
    for column in _assigned_columns(c):
        qualifier = column[:-1]
        named = _named(qualifier, refs) if qualifier else []
        # An unqualified column could belong to any table of the list (the server knows the columns, this
        # module does not), and a qualifier that names nothing listed would be rejected by the server:
        # either way count every table.
        hits.extend(_real(named) if named else tables)
    return _changes(ChangeKind.ROWS, hits)


_DELETE_END = frozenset({"WHERE", "ORDER", "LIMIT", "RETURNING"})


def _target_list(c: _Cursor) -> list[list[str]]:
    """DELETE's targets: `a, db.b, c.*`."""
    targets: list[list[str]] = []
    while parts := c.name_parts():
        targets.append(parts)
        if not c.accept_punct(","):
            break
    return targets


def _is_cte(c: _Cursor, parts: list[str]) -> bool:
    return len(parts) == 1 and parts[0] in c.ctes


def _delete(c: _Cursor) -> list[TableChange]:
    """DELETE FROM t ... / DELETE a, b FROM refs ... / DELETE FROM a, b USING refs ...: only the targets."""
    c.advance()
    while c.accept("LOW_PRIORITY", "QUICK", "IGNORE", "HISTORY"):  # HISTORY: MariaDB system-versioned rows
        pass
    if c.accept("FROM"):
        targets = _target_list(c)
        multi_table = c.accept("USING")
    else:
        targets = _target_list(c)
        multi_table = c.accept("FROM")
    if not multi_table:
        # The single-table form (DELETE FROM t [AS a] WHERE ...), or a target list with no FROM to resolve
        # it against: the listed names are the targets.
        plain = [_qualify(parts, c.default_schema) for parts in targets if not _is_cte(c, parts)]
        return _changes(ChangeKind.ROWS, plain) if plain else _unknown_target(c, ChangeKind.ROWS)
    refs = _table_refs(c, _DELETE_END)
    hits: list[tuple[str, str]] = []
    for parts in targets:
        named = _named(parts, refs)
        if named:
            hits.extend(_real(named))  # a derived table or CTE cannot be deleted from
        elif not _is_cte(c, parts):
            # Not in the table list: the server would reject the statement; name the table itself.
            hits.append(_qualify(parts, c.default_schema))
    return _changes(ChangeKind.ROWS, hits) if hits else _unknown_target(c, ChangeKind.ROWS)


def _with(c: _Cursor) -> list[TableChange]:
    """WITH [RECURSIVE] cte AS (...), ... <statement>: the CTEs only read; their names are not tables."""
    c.advance()
    c.accept("RECURSIVE")
    names = set(c.ctes)
    while (tok := c.peek()) is not None and c.at_name():
        names.add(tok.text)
        c.advance()
        if c.punct() == "(":  # column list
            c.skip_group()
        c.accept("AS")
        if c.punct() == "(":
            c.skip_group()
        if c.accept("CYCLE") and c.skip_to("RESTRICT"):  # MariaDB: CYCLE cols RESTRICT
            c.advance()
        if not c.accept_punct(","):
            break
    c.ctes = frozenset(names)
    return _dispatch(c)


def _set(c: _Cursor) -> list[TableChange]:
    """MariaDB's SET STATEMENT var=value [, ...] FOR <statement> runs the statement; any other SET changes
    only variables."""
    if c.kw(1) != "STATEMENT":
        return []
    c.advance(2)
    if not c.skip_to("FOR"):
        return []
    c.advance()
    return _dispatch(c)


_FAMILIES: dict[str, Callable[[_Cursor], list[TableChange]]] = {
    "ALTER": _alter,
    "CREATE": _create,
    "DELETE": _delete,
    "DROP": _drop,
    "INSERT": _insert,
    "LOAD": _load,
    "OPTIMIZE": _maintenance,
    "RENAME": _rename,
    "REPAIR": _maintenance,
    "REPLACE": _insert,
    "SET": _set,
    "TRUNCATE": _truncate,
    "UPDATE": _update,
    "WITH": _with,
}


def _dispatch(c: _Cursor) -> list[TableChange]:
    # Any other leading word (SELECT, BEGIN, COMMIT, XA, SAVEPOINT, FLUSH, GRANT, ANALYZE, CHECK, CALL,
    # CREATE USER via _create, ...) changes no table in a way the move must stop for.
    family = _FAMILIES.get(c.kw())
    return family(c) if family else []


# =========================================================================== statements of one event

_ROUTINES = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})
_COMPOUND_STARTS = frozenset({"IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR"})


def _is_compound(tokens: list[Token]) -> bool:
    """Whether the text is a stored program definition or an anonymous compound statement.

    Their bodies hold `;`-separated statements that must not be read as statements of the event: a
    definition runs nothing now, and a stored program or compound statement that runs later (MariaDB's
    `BEGIN NOT ATOMIC ... END`, `IF ... END IF`) has each statement it executes logged on its own.
    """
    c = _Cursor(tokens, "")
    first = c.kw()
    if first == "BEGIN":
        return c.kw(1) == "NOT"  # a plain BEGIN starts a transaction
    if first in _COMPOUND_STARTS or (c.at_name() and c.punct(1) == ":"):  # `label: LOOP ...`
        return True
    if first not in ("CREATE", "ALTER"):
        return False
    c.advance()
    _skip_modifiers(c)
    return c.kw() in _ROUTINES


def _statements(tokens: list[Token]) -> Iterator[list[Token]]:
    """The `;`-separated statements of one event (normally exactly one)."""
    start = 0
    while start < len(tokens):
        rest = tokens[start:]
        if _is_compound(rest):
            yield rest
            return
        end = next((i for i, tok in enumerate(rest) if tok.kind is TokenKind.PUNCT and tok.text == ";"), None)
        yield rest if end is None else rest[:end]
        start = len(tokens) if end is None else start + end + 1


def changed_tables(query: str, default_schema: str) -> list[TableChange]:
    """The tables that the statement text of a binlog Query event changes, in order, without repeats.

    `default_schema` is the event's schema (the session's current database) and qualifies unqualified
    names; when it is "" so is their schema.  Tables that are only read (SELECT and LIKE sources, join
    partners whose columns are not assigned, subqueries) are not reported, nor are temporary tables, views,
    triggers and routines.  Statements that change no table (transaction control, SET, GRANT, FLUSH,
    ANALYZE, CREATE TABLE of a new name, ...) give [].  A statement whose verb changes a table but whose
    target cannot be read gives a change of table None in the default schema.  Never raises.
    """
    found: list[TableChange] = []
    for statement in _statements(tokenize(query)):
        if _is_compound(statement):
            continue
        for change in _dispatch(_Cursor(statement, default_schema)):
            if change not in found:
                found.append(change)
    return found


def changes_any(
    query: str, default_schema: str, database: str, tables: Collection[str], *, fold_case: bool = False
) -> TableChange | None:
    """The first change that hits `database`.`t` for a t in `tables` (or the whole database), else None.

    Names compare as the server compares them: exactly with lower_case_table_names=0 (``fold_case``
    False: ``TRUNCATE ORDERS`` is another table than ``orders``), case-insensitively with 1
    (``fold_case`` True: the statement may spell a moved table in any case and still changes it; the
    change returned then names `database` and the table as given in `tables`).
    """
    if not fold_case:
        for change in changed_tables(query, default_schema):
            if change.schema == database and (change.table is None or change.table in tables):
                return change
        return None
    # Folded: the change names the moved table as the caller knows it (the stored name), so the
    # refusal's message names the table the operator configured, whatever the statement's spelling.
    moved = {t.lower(): t for t in tables}
    for change in changed_tables(query, default_schema):
        if change.schema.lower() != database.lower():
            continue
        if change.table is None:
            return TableChange(database, None, change.kind)
        if change.table.lower() in moved:
            return TableChange(database, moved[change.table.lower()], change.kind)
    return None
