"""Reading ``SHOW GRANTS``: each line into a :class:`Grant`, :class:`PartialRevoke` or :class:`RoleGrant`.

Pure functions on text, no I/O. A line is tokenized the way the server prints it (backtick-quoted
identifiers, quoted strings with backslash and doubled-quote escapes) and read by shape; a GRANT or
REVOKE line of an unknown shape raises :class:`GrantParseError`, and :func:`parse_show_grants` keeps
it in :attr:`AccountGrants.unparsed` so the check can name it instead of guessing. Column privileges
are dropped (they give nothing table-wide); routine and proxy grants are skipped. Privilege names are
canonicalised (:func:`canonical_privilege`) so the servers' aliases compare equal.

Whether the parsed grants cover a privilege is :mod:`tablemover.preflight.grant_match`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tablemover.flavor import Flavor

ALL = "ALL"

# Names the servers print or accept for the same privilege; the value is the name we compare on.
_ALIASES = {
    "ALL PRIVILEGES": ALL,
    "REPLICATION REPLICA": "REPLICATION SLAVE",
    "BINLOG MONITOR": "REPLICATION CLIENT",  # MariaDB 10.5+ renamed REPLICATION CLIENT
    "REPLICA MONITOR": "SLAVE MONITOR",
}

# What ALL covers below the global level (at the global level it covers everything).
TABLE_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "REFERENCES",
        "TRIGGER",
        "CREATE VIEW",
        "SHOW VIEW",
        "DELETE HISTORY",
    }
)
DATABASE_PRIVILEGES = TABLE_PRIVILEGES | frozenset(
    {
        "LOCK TABLES",
        "CREATE TEMPORARY TABLES",
        "EVENT",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "EXECUTE",
        "SHOW CREATE ROUTINE",
    }
)


def canonical_privilege(name: str) -> str:
    """Upper-case, single-spaced, aliases resolved: ``binlog  monitor`` -> ``REPLICATION CLIENT``."""
    text = " ".join(name.upper().split())
    return _ALIASES.get(text, text)


def display_privilege(privilege: str, flavor: Flavor) -> str:
    """The name to print in a GRANT statement for ``flavor``."""
    if privilege == "REPLICATION CLIENT" and flavor is Flavor.MARIADB:
        return "BINLOG MONITOR"
    return privilege


class Level(enum.Enum):
    """Where a grant applies."""

    GLOBAL = "global"
    DATABASE = "database"
    TABLE = "table"


@dataclass(frozen=True)
class Grant:
    """One ``GRANT privs ON object`` line (column privileges dropped)."""

    privileges: frozenset[str]  # canonical names; ALL stands for every privilege of the level
    database: str | None = None  # None: ON *.*; a LIKE pattern at database level, a name at table level
    table: str | None = None  # None: ON db.*

    @property
    def level(self) -> Level:
        """Global, database or table."""
        if self.database is None:
            return Level.GLOBAL
        return Level.DATABASE if self.table is None else Level.TABLE


@dataclass(frozen=True)
class PartialRevoke:
    """A MySQL partial revoke: a global privilege taken back for one database."""

    privileges: frozenset[str]
    database: str


@dataclass(frozen=True)
class RoleGrant:
    """``GRANT role[, role] TO account``: the roles an account (or role) was granted."""

    roles: tuple[str, ...]


@dataclass(frozen=True)
class AccountGrants:
    """Everything one ``SHOW GRANTS`` output says about one account or role."""

    grants: tuple[Grant, ...] = ()
    revokes: tuple[PartialRevoke, ...] = ()
    roles: tuple[str, ...] = ()
    unparsed: tuple[str, ...] = ()  # GRANT/REVOKE lines we could not read, for the error message


class GrantParseError(ValueError):
    """A GRANT or REVOKE line that does not have the shape SHOW GRANTS prints."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<backtick>`(?:[^`]|``)*`)
    | (?P<single>'(?:[^'\\]|\\.|'')*')
    | (?P<double>"(?:[^"\\]|\\.|"")*")
    | (?P<word>[A-Za-z0-9_$]+)
    | (?P<punct>[(),.*@;=])
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "name" (quoted identifier or string), "word", "punct", "other"
    text: str

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    def is_punct(self, char: str) -> bool:
        return self.kind == "punct" and self.text == char


def _unquote(kind: str, raw: str) -> str:
    body = raw[1:-1]
    if kind == "backtick":
        return body.replace("``", "`")
    quote = raw[0]
    body = body.replace(quote * 2, quote)
    return re.sub(r"\\(.)", r"\1", body)


def _tokens(line: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:  # only trailing whitespace is left
            break
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        text = m.group(kind)
        if kind in ("backtick", "single", "double"):
            out.append(_Tok("name", _unquote(kind, text)))
        else:
            out.append(_Tok(kind, text))
    return out


def _split_top_level(tokens: Sequence[_Tok]) -> list[list[_Tok]]:
    """Split on commas that are not inside parentheses."""
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.is_punct("("):
            depth += 1
        elif tok.is_punct(")"):
            depth -= 1
        if depth == 0 and tok.is_punct(","):
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def _find_top_level_word(tokens: Sequence[_Tok], word: str, start: int = 0) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        tok = tokens[i]
        if tok.is_punct("("):
            depth += 1
        elif tok.is_punct(")"):
            depth -= 1
        elif depth == 0 and tok.is_word(word):
            return i
    return -1


def _privileges(tokens: Sequence[_Tok], line: str) -> frozenset[str]:
    privs: set[str] = set()
    for part in _split_top_level(tokens):
        words: list[str] = []
        column_level = False
        for tok in part:
            if tok.kind == "word" and not column_level:
                words.append(tok.text)
            elif tok.is_punct("("):
                column_level = True
            elif not column_level:
                raise GrantParseError(f"unexpected {tok.text!r} in the privilege list of {line!r}")
        if not words:
            raise GrantParseError(f"empty privilege in {line!r}")
        if not column_level:  # SELECT (`a`, `b`) does not allow SELECT of the whole table
            privs.add(canonical_privilege(" ".join(words)))
    return frozenset(privs)


def _object(tokens: Sequence[_Tok], line: str) -> tuple[str | None, str | None] | None:
    """``(database, table)`` of an ON clause; None for objects we ignore (routines, proxy users)."""
    toks = list(tokens)
    if toks and toks[0].is_word("TABLE"):
        toks = toks[1:]
    elif toks and toks[0].is_word("FUNCTION", "PROCEDURE", "PACKAGE"):
        return None
    if any(t.is_punct("@") for t in toks):  # GRANT PROXY ON user@host
        return None
    if len(toks) == 3 and toks[1].is_punct("."):
        db_tok, table_tok = toks[0], toks[2]
        if db_tok.is_punct("*") and table_tok.is_punct("*"):
            return (None, None)
        if db_tok.kind in ("name", "word"):
            if table_tok.is_punct("*"):
                return (db_tok.text, None)
            if table_tok.kind in ("name", "word"):
                return (db_tok.text, table_tok.text)
    raise GrantParseError(f"cannot read the object of {line!r}")


def _role_names(tokens: Sequence[_Tok], line: str) -> tuple[str, ...]:
    roles: list[str] = []
    for part in _split_top_level(tokens):
        if not part or part[0].kind not in ("name", "word"):
            raise GrantParseError(f"cannot read the role list of {line!r}")
        # MySQL names roles as accounts (`r`@`%`); keep the host so SHOW GRANTS FOR can use it.
        if len(part) == 3 and part[1].is_punct("@"):
            roles.append(f"{part[0].text}@{part[2].text}")
        elif len(part) == 1:
            roles.append(part[0].text)
        else:
            raise GrantParseError(f"cannot read the role list of {line!r}")
    return tuple(roles)


def parse_grant_line(line: str) -> Grant | PartialRevoke | RoleGrant | None:
    """Parse one ``SHOW GRANTS`` line.

    Returns None for lines that grant nothing we check (``SET DEFAULT ROLE``, routine and proxy
    grants); raises :class:`GrantParseError` for a GRANT/REVOKE line of an unknown shape.
    """
    tokens = _tokens(line.strip().rstrip(";"))
    if not tokens or not tokens[0].is_word("GRANT", "REVOKE"):
        return None
    revoke = tokens[0].is_word("REVOKE")
    to_index = _find_top_level_word(tokens, "FROM" if revoke else "TO", 1)
    if to_index < 0:
        raise GrantParseError(f"no {'FROM' if revoke else 'TO'} in {line!r}")
    on_index = _find_top_level_word(tokens[:to_index], "ON", 1)
    if on_index < 0:
        if revoke:
            raise GrantParseError(f"cannot read {line!r}")
        return RoleGrant(_role_names(tokens[1:to_index], line))
    privileges = _privileges(tokens[1:on_index], line)
    obj = _object(tokens[on_index + 1 : to_index], line)
    if obj is None:
        return None
    database, table = obj
    if revoke:
        # Partial revokes exist only at the database level; anything else is not a grant line.
        if database is None or table is not None:
            raise GrantParseError(f"unexpected revoke {line!r}")
        return PartialRevoke(privileges, database)
    return Grant(privileges, database, table)


def parse_show_grants(lines: Iterable[str]) -> AccountGrants:
    """Parse every line of one account's ``SHOW GRANTS`` output."""
    grants: list[Grant] = []
    revokes: list[PartialRevoke] = []
    roles: list[str] = []
    unparsed: list[str] = []
    for line in lines:
        try:
            parsed = parse_grant_line(line)
        except GrantParseError:
            unparsed.append(line)
            continue
        if isinstance(parsed, Grant):
            grants.append(parsed)
        elif isinstance(parsed, PartialRevoke):
            revokes.append(parsed)
        elif isinstance(parsed, RoleGrant):
            roles.extend(parsed.roles)
    return AccountGrants(tuple(grants), tuple(revokes), tuple(roles), tuple(unparsed))
