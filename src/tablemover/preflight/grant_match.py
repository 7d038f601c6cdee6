"""Deciding whether an account holds a privilege on an object, from its parsed ``SHOW GRANTS``.

Pure functions on values, no I/O, so the rules the server applies can be unit-tested line by line.
The matching follows what MySQL and MariaDB actually do, not the union one might expect:

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

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tablemover.flavor import Flavor
from tablemover.preflight.grant_lines import (
    ALL,
    DATABASE_PRIVILEGES,
    TABLE_PRIVILEGES,
    AccountGrants,
    Level,
    canonical_privilege,
)


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
