"""What to grant when privileges are missing, as GRANT statements checked against the same rules.

Pure functions on values, no I/O. :func:`plan_fix` works out the grants that make every
:class:`~tablemover.preflight.grant_match.Requirement` hold and re-checks them with
:mod:`~tablemover.preflight.grant_match` (a new grant on an exact database name hides the account's
wildcard grants for it); :func:`grant_statements` writes them for the server's flavour: table-level
where the privilege exists per table, identifiers quoted with the project's quoting, and a
database-level grant's name escaped so that it means exactly that database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tablemover.flavor import Flavor
from tablemover.preflight.grant_lines import TABLE_PRIVILEGES, AccountGrants, Grant, display_privilege
from tablemover.preflight.grant_match import DEFAULT_NAME_RULES, NameRules, Requirement, missing
from tablemover.sql import qualified


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
    # (database, table, privileges): database None means ON *.*, table None ON db.*; privileges in
    # the order they are granted
    grants: tuple[tuple[str | None, str | None, tuple[str, ...]], ...]
    # privileges the account already has but the fix must repeat, because a grant on the exact
    # database name takes precedence over the wildcard grant they come from
    repeated: tuple[str, ...]


def _grant_object(req: Requirement) -> tuple[str | None, str | None]:
    """Where a fix grants ``req``: on the table where the privilege exists per table, else the database."""
    if req.table is not None and req.privileges[0] in TABLE_PRIVILEGES:
        return req.database, req.table
    return req.database, None


def plan_fix(
    accounts: Sequence[AccountGrants],
    requirements: Sequence[Requirement],
    rules: NameRules = DEFAULT_NAME_RULES,
) -> FixPlan:
    """Work out the grants that make every requirement hold, checked against the same model.

    A table requirement is fixed with a table-level grant (accepted for a table that does not exist
    yet, like the cutover's renamed name, when it includes CREATE, which the plan's requirements on
    such names do); only privileges that exist per database alone (LOCK TABLES) and requirements on
    a whole database get a database-level grant. Such a grant on the exact database name hides the
    account's wildcard database grants for it, so the plan is re-checked with the grants applied and
    whatever they hid is added, until nothing is missing. Table grants hide nothing: the server adds
    them to the database's.
    """
    first_gaps = missing(accounts, requirements, rules)
    plan: dict[tuple[str | None, str | None], list[str]] = {}
    repeated: list[str] = []
    gaps = first_gaps
    for round_number in range(4):  # converges in two rounds; the bound only guards against a bug
        if not gaps:
            break
        for req in gaps:
            privileges = plan.setdefault(_grant_object(req), [])
            if req.privileges[0] not in privileges:
                privileges.append(req.privileges[0])
                if round_number > 0 and req.privileges[0] not in repeated:
                    repeated.append(req.privileges[0])
        granted = tuple(
            Grant(
                frozenset(privs),
                None if db is None else (db if table is not None else grant_database_pattern(db, rules)),
                table,
            )
            for (db, table), privs in plan.items()
        )
        user = accounts[0] if accounts else AccountGrants()
        simulated = [replace(user, grants=user.grants + granted), *accounts[1:]]
        gaps = missing(simulated, requirements, rules)
    # The server refuses a table grant on a table that does not exist unless it includes CREATE. A
    # table the requirements want CREATE on is one the move creates (a renamed name, a target
    # table), so its grant carries CREATE even when the account already holds it.
    creates = {
        (r.database, r.table) for r in requirements if r.table is not None and r.privileges[0] == "CREATE"
    }
    for (db, table), privs in plan.items():
        if table is not None and (db, table) in creates and "CREATE" not in privs:
            privs.append("CREATE")
    return FixPlan(
        tuple(first_gaps),
        tuple((db, table, tuple(privs)) for (db, table), privs in plan.items()),
        tuple(repeated),
    )


def grant_statements(
    plan: FixPlan, account: str, flavor: Flavor, rules: NameRules = DEFAULT_NAME_RULES
) -> list[str]:
    """The plan as GRANT statements for ``account`` (``user@host``)."""
    statements = []
    for database, table, privileges in plan.grants:
        if database is None:
            target = "*.*"
        elif table is None:
            target = f"{grant_database_name(database, rules)}.*"
        else:
            # A table-level grant names its schema literally: no wildcard to escape.
            target = qualified(database, table)
        names = ", ".join(display_privilege(p, flavor) for p in privileges)
        statements.append(f"GRANT {names} ON {target} TO {quote_account(account)};")
    return statements
