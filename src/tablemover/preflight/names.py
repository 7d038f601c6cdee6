"""Check: both servers resolve table names the same way, and the move uses the names they stored.

``lower_case_table_names`` decides how a server stores and compares database and table names: 0 as
spelt, 1 folded to lower case (the binlog's table maps then carry the folded name). The CLI reads it
and spells every configured name as the server stored it (:func:`tablemover.schema.resolve_names`);
this check refuses what that cannot make safe:

- servers that fold differently: the application may reach ``Orders`` on a folding source and would
  find only ``orders`` on a target that does not fold (and a name folded on one side may not be the
  stored one on the other);
- 2 (stored as spelt, compared folded; only on case-insensitive file systems, MariaDB on Linux turns
  it into 0): the binlog's table maps name a table folded while information_schema keeps its case,
  and no test server here runs it, so it is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tablemover.db import query
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.schema import lower_case_table_names

_FIX = (
    "lower_case_table_names is fixed when a server's data directory is initialised: start both servers "
    "with the same setting (0 or 1)"
)


def name_rule_problems(
    source_lctn: int,
    target_lctn: int,
    names: Sequence[str],
    source_address: str,
    target_address: str,
) -> list[str]:
    """What is wrong with moving ``names`` (the databases and tables as configured) between servers with
    these ``lower_case_table_names``; [] when nothing is."""
    problems = [
        f"{where} has lower_case_table_names=2 (names stored as spelt, compared in lower case): tablemover "
        f"does not support it (the binlog names tables folded, information_schema as spelt). {_FIX}."
        for where, lctn in ((source_address, source_lctn), (target_address, target_lctn))
        if lctn == 2
    ]
    if problems or source_lctn == target_lctn:
        return problems
    mixed = [n for n in names if n != n.lower()]
    # A source that compares exactly into a folding target is harmless when every name is already
    # in lower case: both servers store and find the same spelling.
    if source_lctn == 0 and not mixed:
        return []
    why = (
        f"the names {', '.join(mixed)} would be stored in lower case on one server and as spelt on the other"
        if mixed
        else "the application may spell a table in any case on the source, and only the stored lower-case "
        "spelling finds it on the target"
    )
    return [
        f"{source_address} has lower_case_table_names={source_lctn} and {target_address} has "
        f"{target_lctn}: {why}. {_FIX}."
    ]


async def same_but_case(conn: Any, database: str, table: str | None = None) -> str | None:
    """The stored name that differs from ``database`` (or ``database``.``table``) only in case, if any;
    None also when the name itself is stored.

    For the message when a configured name is not found on a server that compares names exactly
    (lower_case_table_names=0): ``Orders`` is not ``orders`` there.
    """
    if table is None:
        rows = await query(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LOWER(SCHEMA_NAME)=LOWER(%s)",
            (database,),
        )
    else:
        rows = await query(
            conn,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
            "AND LOWER(TABLE_NAME)=LOWER(%s)",
            (database, table),
        )
    # information_schema may compare case-insensitively (its collation) or not (a lookup by name
    # on a case-sensitive file system): compare in Python, exactly.
    names = [str(r[0]) for r in rows]
    wanted = database if table is None else table
    if wanted in names:
        return None
    return names[0] if names else None


def case_hint(found: str | None) -> str:
    """The sentence naming the stored name that differs only in case ("" when there is none)."""
    if found is None:
        return ""
    return (
        f" The server has {found}, which differs only in case: this server compares names as spelt "
        f"(lower_case_table_names=0), so write {found} as the server stores it."
    )


@check(Phase.SERVERS, "names")
async def names(ctx: PreflightContext) -> list[str]:
    """Refuse servers that resolve table names differently, or the unsupported setting 2."""
    move = ctx.config.move
    source_lctn = await lower_case_table_names(ctx.source)
    target_lctn = await lower_case_table_names(ctx.target)
    problems = name_rule_problems(
        source_lctn,
        target_lctn,
        [move.database, move.effective_target_database, *move.tables],
        ctx.source_address,
        ctx.target_address,
    )
    if problems:
        return problems
    if (move.source_folds_names, move.target_folds_names) != (source_lctn == 1, target_lctn == 1):
        # The CLI resolves the names before anything reads them; a caller that did not would
        # screen the binlog under names the server does not use (every write lost).
        return [
            "the configured names were not resolved against the servers' lower_case_table_names "
            f"(source {source_lctn}, target {target_lctn}); this is a bug of the caller: resolve them "
            "with tablemover.schema.resolve_names first."
        ]
    if source_lctn == 0:
        # Named here, beside the privilege check that would otherwise only say the grants miss it.
        found = await same_but_case(ctx.source, move.database)
        if found is not None:
            return [f"{ctx.source_address}: database {move.database} does not exist." + case_hint(found)]
    return []
