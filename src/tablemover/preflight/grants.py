"""Privileges from ``SHOW GRANTS``: the names the privilege check and its tests import.

Split by responsibility into three pure modules (text and values, no I/O), each unit-tested on its
own in ``tests/unit/test_preflight_rules.py`` and ``tests/unit/test_grant_modules.py``:

* :mod:`~tablemover.preflight.grant_lines`: reading ``SHOW GRANTS`` lines into grants, partial
  revokes and role grants, and the privilege names the servers use;
* :mod:`~tablemover.preflight.grant_match`: whether an account, with its active roles, holds a
  privilege on an object, by the rules MySQL and MariaDB apply (wildcard database patterns, the most
  specific one winning, partial revokes);
* :mod:`~tablemover.preflight.grant_fix`: the GRANT statements that supply what is missing.

The check that queries the servers and writes the message is :mod:`tablemover.preflight.privileges`
(registered as ``privileges``). This module only re-exports, so existing imports keep working.
"""

from __future__ import annotations

from tablemover.preflight.grant_fix import (
    FixPlan,
    grant_database_name,
    grant_database_pattern,
    grant_statements,
    plan_fix,
    quote_account,
)
from tablemover.preflight.grant_lines import (
    ALL,
    DATABASE_PRIVILEGES,
    TABLE_PRIVILEGES,
    AccountGrants,
    Grant,
    GrantParseError,
    Level,
    PartialRevoke,
    RoleGrant,
    canonical_privilege,
    display_privilege,
    parse_grant_line,
    parse_show_grants,
)
from tablemover.preflight.grant_match import (
    DEFAULT_NAME_RULES,
    NameRules,
    Requirement,
    database_matches,
    holds,
    missing,
    pattern_specificity,
)

__all__ = [
    "ALL",
    "DATABASE_PRIVILEGES",
    "DEFAULT_NAME_RULES",
    "TABLE_PRIVILEGES",
    "AccountGrants",
    "FixPlan",
    "Grant",
    "GrantParseError",
    "Level",
    "NameRules",
    "PartialRevoke",
    "Requirement",
    "RoleGrant",
    "canonical_privilege",
    "database_matches",
    "display_privilege",
    "grant_database_name",
    "grant_database_pattern",
    "grant_statements",
    "holds",
    "missing",
    "parse_grant_line",
    "parse_show_grants",
    "pattern_specificity",
    "plan_fix",
    "quote_account",
]
