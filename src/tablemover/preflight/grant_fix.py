"""What to grant when privileges are missing, as GRANT statements checked against the same rules.

Pure functions on values, no I/O. :func:`plan_fix` works out the grants that make every
:class:`~tablemover.preflight.grant_match.Requirement` hold and re-checks them with
:mod:`~tablemover.preflight.grant_match` (a new grant on an exact database name hides the account's
wildcard grants for it); :func:`grant_statements` writes them for the server's flavour, with the
database name escaped so that a grant means exactly that database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tablemover.flavor import Flavor
from tablemover.preflight.grant_lines import AccountGrants, Grant, display_privilege
from tablemover.preflight.grant_match import DEFAULT_NAME_RULES, NameRules, Requirement, missing


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
