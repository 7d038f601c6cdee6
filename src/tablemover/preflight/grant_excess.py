"""Grants that give the move user far more than a move needs: global ALL, SUPER, DROP everywhere.

Pure functions on parsed ``SHOW GRANTS``, no I/O. The preflight privilege check warns (never
refuses) with what :func:`excess_grants` finds: an account that can drop every schema, or the whole
application schema, turns a bug or a stolen password into lost data, and the move needs none of it
(:mod:`tablemover.preflight.grant_plan` has what it needs).
"""

from __future__ import annotations

from collections.abc import Sequence

from tablemover.preflight.grant_lines import ALL, AccountGrants, Level
from tablemover.preflight.grant_match import DEFAULT_NAME_RULES, NameRules, database_matches
from tablemover.sql import quote_ident

# Global privileges that, alone, are far beyond a move's needs.
_GLOBAL_EXCESS = ("SUPER", "DROP")
# On a schema the move works in: the whole schema, where the move needs a few tables.
_SCHEMA_EXCESS = ("DROP",)


def _named(privileges: frozenset[str], wanted: Sequence[str]) -> list[str]:
    if ALL in privileges:
        return ["ALL PRIVILEGES"]
    return [p for p in wanted if p in privileges]


def excess_grants(
    accounts: Sequence[AccountGrants],
    databases: Sequence[str],
    rules: NameRules = DEFAULT_NAME_RULES,
) -> list[str]:
    """The grants, as ``PRIVILEGES ON object``, that hold far more than needed.

    ``accounts`` are the user and its active roles (and PUBLIC); ``databases`` the application
    schemas the move works in on this server. Flagged: ALL PRIVILEGES, SUPER or DROP on ``*.*``;
    ALL PRIVILEGES or DROP on a database pattern that covers one of ``databases`` (``app``,
    ``app\\_%``, ``%``). The state schema is not an application schema: DROP there is expected.
    """
    found: list[str] = []
    for account in accounts:
        for grant in account.grants:
            if grant.level is Level.GLOBAL:
                names = _named(grant.privileges, _GLOBAL_EXCESS)
                where = "*.*"
            elif grant.level is Level.DATABASE and any(
                database_matches(grant.database or "", db, rules) for db in databases
            ):
                names = _named(grant.privileges, _SCHEMA_EXCESS)
                where = f"{quote_ident(grant.database or '')}.*"
            else:
                continue
            if names:
                text = f"{', '.join(names)} ON {where}"
                if text not in found:
                    found.append(text)
    return found


def excess_warning(where: str, account: str, found: Sequence[str], needed: Sequence[str]) -> str:
    """The warning for ``found`` excess grants, with the statements that would be enough instead."""
    return (
        f"{where}: user {account} holds far more than a move needs: {'; '.join(found)}. The move "
        "would work with only these (what `tablemover check` prints): "
        + " ".join(needed)
        + " Consider a user with only those grants: an account that can drop whole schemas turns a "
        "bug or a stolen password into lost data."
    )
