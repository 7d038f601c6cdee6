"""Reading ``SHOW GRANTS`` and deciding whether an account holds a privilege on an object.

Pure functions on text and values, no I/O, so the rules the server applies can be unit-tested line by
line. The matching follows what MySQL and MariaDB actually do, not the union one might expect:

* a global grant (``ON *.*``) covers every database, except where a MySQL partial revoke
  (``REVOKE ... ON `db`.* FROM``) takes a privilege back for one database;
* database grants are LIKE patterns (``%``, ``_``, with ``\\_``/``\\%`` escapes) and the server
  uses only the *most specific* pattern that matches (see :func:`pattern_specificity`); privileges
  of a less specific matching pattern do not add up (``SELECT ON app.*`` hides ``ALTER ON `a%`.*``);
* table grants name one table exactly; column grants give nothing table-wide and are ignored;
* ``ALL [PRIVILEGES]`` covers every privilege that can be granted at its level;
* privileges of active roles add to the account's (each role is matched like an account).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class NameRules:
    """How the server compares names in grants."""

    # MySQL with partial_revokes=ON reads % and _ in database grants literally.
    wildcards: bool = True
    # lower_case_table_names=0 (the Linux default) compares database and table names case-sensitively.
    case_sensitive: bool = True
    # Whose rule ranks database grants that match the same database (see pattern_specificity).
    ordering: Flavor = Flavor.MARIADB

    def fold(self, name: str) -> str:
        """``name`` as the server compares it."""
        return name if self.case_sensitive else name.lower()


DEFAULT_NAME_RULES = NameRules()


def _pattern_parts(pattern: str, rules: NameRules) -> list[tuple[str, bool]]:
    """The pattern as (character, is_wildcard) pairs with escapes resolved."""
    parts: list[tuple[str, bool]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append((pattern[i + 1], False))
            i += 2
            continue
        parts.append((char, rules.wildcards and char in "%_"))
        i += 1
    return parts


def database_matches(pattern: str, database: str, rules: NameRules = DEFAULT_NAME_RULES) -> bool:
    """Whether a database-level grant's name (a LIKE pattern) covers ``database``."""
    regex = "".join(
        (".*" if char == "%" else ".") if wild else re.escape(char)
        for char, wild in _pattern_parts(rules.fold(pattern), rules)
    )
    return re.fullmatch(regex, rules.fold(database), re.DOTALL) is not None


def pattern_specificity(pattern: str, rules: NameRules = DEFAULT_NAME_RULES) -> int:
    """How the server ranks database grants that match the same database: the highest one wins.

    MariaDB 10.4+ ranks by how many names a pattern can match (``get_magic_sort()``); MySQL by the
    position of the first wildcard (``get_sort()``). Either way an exact name beats every pattern.
    """
    if rules.ordering is Flavor.MARIADB:
        return -_mariadb_magic(pattern)
    return _mysql_sort(pattern) if rules.wildcards else (128 if pattern else 0)


def _mariadb_magic(pattern: str, maxlen: int = 64) -> int:
    # Smaller is more specific. N literal characters, M '_', K runs of '%', P literal prefix length.
    n = m = k = p = 0
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            if not k and not m:
                p = n
            k += 1
            while i + 1 < len(pattern) and pattern[i + 1] == "%":
                i += 1
        elif char == "_":
            if not k and not m:
                p = n
            m += 1
        else:
            if char == "\\" and i + 1 < len(pattern):
                i += 1
            n += 1
        i += 1
    length = maxlen - n - m if k else 0
    d = maxlen + 1
    if length > m:
        return (((length * 2 + 1) * d + k) * d + m) * d + p
    return ((m * 2 * d + length) * d + k) * d + p


def _mysql_sort(pattern: str) -> int:
    # Larger is more specific: 128 without wildcards, else 1 + the raw index of the first wildcard
    # (+1 unless the pattern is just "%"), capped at 127.
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 2
            continue
        if char in "%_":
            position = i + 1
            if not (position == 1 and pattern == "%"):
                position += 1
            return min(position, 127)
        i += 1
    return 128 if pattern else 0


def _covers(privileges: frozenset[str], privilege: str, level: Level) -> bool:
    if privilege in privileges:
        return True
    if ALL not in privileges:
        return False
    if level is Level.GLOBAL:
        return True
    return privilege in (TABLE_PRIVILEGES if level is Level.TABLE else DATABASE_PRIVILEGES)


def _account_holds(
    account: AccountGrants, privilege: str, database: str | None, table: str | None, rules: NameRules
) -> bool:
    for grant in account.grants:
        if grant.level is Level.GLOBAL and _covers(grant.privileges, privilege, Level.GLOBAL):
            revoked = database is not None and any(
                rules.fold(r.database) == rules.fold(database)
                and (privilege in r.privileges or ALL in r.privileges)
                for r in account.revokes
            )
            if not revoked:
                return True
    if database is None:
        return False
    matching = [
        g
        for g in account.grants
        if g.level is Level.DATABASE
        and g.database is not None
        and database_matches(g.database, database, rules)
    ]
    if matching:
        # Lines naming the same pattern are one row of mysql.db: their privileges add up.
        rows: dict[str, set[str]] = {}
        for g in matching:
            rows.setdefault(rules.fold(g.database or ""), set()).update(g.privileges)
        best = max(pattern_specificity(p, rules) for p in rows)
        # The server orders equally specific rows arbitrarily: count only what all of them grant.
        winners = [frozenset(privs) for p, privs in rows.items() if pattern_specificity(p, rules) == best]
        if all(_covers(privs, privilege, Level.DATABASE) for privs in winners):
            return True
    if table is None:
        return False
    return any(
        g.level is Level.TABLE
        and rules.fold(g.database or "") == rules.fold(database)
        and rules.fold(g.table or "") == rules.fold(table)
        and _covers(g.privileges, privilege, Level.TABLE)
        for g in account.grants
    )


def holds(
    accounts: Sequence[AccountGrants],
    privilege: str,
    database: str | None = None,
    table: str | None = None,
    rules: NameRules = DEFAULT_NAME_RULES,
) -> bool:
    """Whether the account (with its active roles, one :class:`AccountGrants` each) holds ``privilege``.

    ``database=None`` asks for a global privilege; ``table=None`` for one on the whole database.
    """
    wanted = canonical_privilege(privilege)
    return any(_account_holds(a, wanted, database, table, rules) for a in accounts)


@dataclass(frozen=True)
class Requirement:
    """A privilege tablemover needs on one object, and why."""

    privileges: tuple[str, ...]  # any one suffices; the first is what a fix grants
    database: str | None = None  # None: a global privilege
    table: str | None = None  # None: on the whole database
    reason: str = ""

    @property
    def object_name(self) -> str:
        """``*.*``, ``db.*`` or ``db.table`` for messages."""
        if self.database is None:
            return "*.*"
        return f"{self.database}.{self.table or '*'}"


def missing(
    accounts: Sequence[AccountGrants],
    requirements: Iterable[Requirement],
    rules: NameRules = DEFAULT_NAME_RULES,
) -> list[Requirement]:
    """The requirements no privilege of the account covers, in the given order."""
    return [
        req
        for req in requirements
        if not any(holds(accounts, p, req.database, req.table, rules) for p in req.privileges)
    ]


def quote_account(account: str) -> str:
    """``user@host`` (as ``CURRENT_USER()`` returns it) -> ``'user'@'host'``."""
    user, at, host = account.rpartition("@")
    if not at:
        user, host = account, "%"

    def q(s: str) -> str:
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return f"{q(user)}@{q(host)}"


def grant_database_pattern(database: str, rules: NameRules = DEFAULT_NAME_RULES) -> str:
    """The database-grant pattern that matches exactly ``database``, unquoted."""
    if not rules.wildcards:
        return database
    # Unescaped, `my_db` would also grant on `myXdb`.
    return database.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def grant_database_name(database: str, rules: NameRules = DEFAULT_NAME_RULES) -> str:
    """A database name quoted for ``GRANT ... ON <it>.*`` so that it means exactly that database."""
    return "`" + grant_database_pattern(database, rules).replace("`", "``") + "`"


@dataclass(frozen=True)
class FixPlan:
    """What is missing and the grants that supply it."""

    missing: tuple[Requirement, ...]
    # (database, privileges): None means ON *.*; privileges in the order they are granted
    grants: tuple[tuple[str | None, tuple[str, ...]], ...]
    # privileges the account already has but the fix must repeat, because a grant on the exact
    # database name takes precedence over the wildcard grant they come from
    repeated: tuple[str, ...]


def plan_fix(
    accounts: Sequence[AccountGrants],
    requirements: Sequence[Requirement],
    rules: NameRules = DEFAULT_NAME_RULES,
) -> FixPlan:
    """Work out the grants that make every requirement hold, checked against the same model.

    Table requirements are fixed with a database-level grant: the cutover renames tables to names
    that do not exist yet, which table-level grants cannot name in advance. Because that new grant
    on the exact database name hides the account's wildcard database grants for it, the plan is
    re-checked with the grants applied and whatever they hid is added, until nothing is missing.
    """
    first_gaps = missing(accounts, requirements, rules)
    plan: dict[str | None, list[str]] = {}
    repeated: list[str] = []
    gaps = first_gaps
    for round_number in range(4):  # converges in two rounds; the bound only guards against a bug
        if not gaps:
            break
        for req in gaps:
            privileges = plan.setdefault(req.database, [])
            if req.privileges[0] not in privileges:
                privileges.append(req.privileges[0])
                if round_number > 0 and req.privileges[0] not in repeated:
                    repeated.append(req.privileges[0])
        granted = tuple(
            Grant(frozenset(privs), None if db is None else grant_database_pattern(db, rules))
            for db, privs in plan.items()
        )
        user = accounts[0] if accounts else AccountGrants()
        simulated = [replace(user, grants=user.grants + granted), *accounts[1:]]
        gaps = missing(simulated, requirements, rules)
    return FixPlan(
        tuple(first_gaps),
        tuple((db, tuple(privs)) for db, privs in plan.items()),
        tuple(repeated),
    )


def grant_statements(
    plan: FixPlan, account: str, flavor: Flavor, rules: NameRules = DEFAULT_NAME_RULES
) -> list[str]:
    """The plan as GRANT statements for ``account`` (``user@host``)."""
    statements = []
    for database, privileges in plan.grants:
        target = "*.*" if database is None else f"{grant_database_name(database, rules)}.*"
        names = ", ".join(display_privilege(p, flavor) for p in privileges)
        statements.append(f"GRANT {names} ON {target} TO {quote_account(account)};")
    return statements
