"""Check: the configured users hold every privilege the move needs, on source and target.

What is needed (and why) is decided by :func:`source_requirements` / :func:`target_requirements`;
whether the account has it is decided by :mod:`tablemover.preflight.grants` from ``SHOW GRANTS``.
Both are pure; this module only adds the queries and the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from asyncmy.errors import MySQLError

from tablemover.checkpoint import TABLE as CHECKPOINT_TABLE
from tablemover.db import ServerInfo, query, query_one
from tablemover.flavor import Flavor, ServerVersion
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.grants import (
    DEFAULT_NAME_RULES,
    AccountGrants,
    FixPlan,
    NameRules,
    Requirement,
    display_privilege,
    grant_statements,
    parse_show_grants,
    plan_fix,
    quote_account,
)

_WHY_STREAM = "to stream the binlog"
_WHY_POSITION = "to read binlog positions"
_WHY_COPY = "to copy the rows"
_WHY_RENAME_OLD = "the cutover's RENAME TABLE needs them on the moved tables"
_WHY_RENAME_NEW = "the cutover's RENAME TABLE needs them on the renamed names"
_WHY_LOCKING_READ = "locking chunk reads (SELECT ... FOR SHARE) need one of them on MySQL 8.0.22+"
_WHY_TARGET_ROWS = "to copy and apply rows and write the checkpoint"
_WHY_TARGET_DDL = "to create the schema, the tables and the checkpoint table, and to drop it at cleanup"
_WHY_TARGET_COUNTER = "the cutover raises each table's AUTO_INCREMENT counter to the source's (ALTER TABLE)"


def source_requirements(
    version: ServerVersion, database: str, tables: Sequence[str], renamed: Mapping[str, str]
) -> list[Requirement]:
    """What the source user needs; ``renamed`` maps each table to its cutover name."""
    reqs = [
        Requirement(("REPLICATION SLAVE",), reason=_WHY_STREAM),
        Requirement(("REPLICATION CLIENT",), reason=_WHY_POSITION),
    ]
    # MySQL 8.0.22 started to require more than SELECT for FOR SHARE; MariaDB never did.
    locking_read_needs_more = version.flavor is Flavor.MYSQL and (
        version.major,
        version.minor,
        version.patch,
    ) >= (8, 0, 22)
    for table in tables:
        reqs.append(Requirement(("SELECT",), database, table, _WHY_COPY))
        if locking_read_needs_more:
            reqs.append(Requirement(("LOCK TABLES", "UPDATE", "DELETE"), database, table, _WHY_LOCKING_READ))
        reqs.append(Requirement(("ALTER",), database, table, _WHY_RENAME_OLD))
        reqs.append(Requirement(("DROP",), database, table, _WHY_RENAME_OLD))
        reqs.append(Requirement(("CREATE",), database, renamed[table], _WHY_RENAME_NEW))
        reqs.append(Requirement(("INSERT",), database, renamed[table], _WHY_RENAME_NEW))
    return reqs


def target_requirements(database: str, state_database: str = "_tablemover") -> list[Requirement]:
    """What the target user needs: the target schema (it creates the schema itself) and the
    move's state schema (the checkpoint)."""
    rows = ("SELECT", "INSERT", "UPDATE", "DELETE")
    reqs = [
        *(Requirement((p,), database, None, _WHY_TARGET_ROWS) for p in rows),
        *(Requirement((p,), database, None, _WHY_TARGET_DDL) for p in ("CREATE", "DROP")),
        Requirement(("ALTER",), database, None, _WHY_TARGET_COUNTER),
    ]
    if state_database != database:
        reqs += state_requirements(state_database, _WHY_CHECKPOINT)
    return reqs


_WHY_CHECKPOINT = "the move's checkpoint lives in its state schema, created by the daemon"


def state_requirements(state_database: str, reason: str) -> list[Requirement]:
    """The state schema: created by the daemon, rows appended and pruned, dropped at cleanup."""
    privileges = ("SELECT", "INSERT", "DELETE", "CREATE", "DROP")
    return [Requirement((p,), state_database, None, reason) for p in privileges]


_WHY_WINDOW_STREAM = "the rollback window streams the target's binlog back"
_WHY_WINDOW_ROWS = "the rollback window writes the target's changes into the renamed source tables"
_WHY_WINDOW_CHECKPOINT = "the rollback window keeps its checkpoint on the source"
_WHY_ROLLBACK_TARGET = "a rollback's RENAME TABLE moves the target tables away"
_WHY_ROLLBACK_SOURCE = "a rollback's RENAME TABLE gives the source tables their names back"


def window_requirements(
    database: str,
    target_database: str,
    tables: Sequence[str],
    renamed: Mapping[str, str],
    state_database: str = "_tablemover",
) -> tuple[list[Requirement], list[Requirement]]:
    """What the rollback window adds: ``(on the source, on the target)``."""
    source: list[Requirement] = []
    for table in tables:
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            source.append(Requirement((privilege,), database, renamed[table], _WHY_WINDOW_ROWS))
        for privilege in ("ALTER", "DROP"):
            source.append(Requirement((privilege,), database, renamed[table], _WHY_ROLLBACK_SOURCE))
        for privilege in ("CREATE", "INSERT"):
            source.append(Requirement((privilege,), database, table, _WHY_ROLLBACK_SOURCE))
    if state_database == database:  # the feed's checkpoint table beside the renamed tables
        for privilege in ("CREATE", "SELECT", "INSERT", "DELETE"):
            source.append(Requirement((privilege,), database, CHECKPOINT_TABLE, _WHY_WINDOW_CHECKPOINT))
    else:
        source += state_requirements(state_database, _WHY_WINDOW_CHECKPOINT)
    target = [
        Requirement(("REPLICATION SLAVE",), reason=_WHY_WINDOW_STREAM),
        Requirement(("REPLICATION CLIENT",), reason=_WHY_WINDOW_STREAM),
        Requirement(("ALTER",), target_database, None, _WHY_ROLLBACK_TARGET),
    ]
    return source, target


def privilege_problem(
    where: str,
    account: str,
    flavor: Flavor,
    plan: FixPlan,
    rules: NameRules = DEFAULT_NAME_RULES,
    notes: Sequence[str] = (),
) -> list[str]:
    """One message naming every missing privilege, why it is needed, and the GRANTs that fix it."""
    if not plan.missing:
        return []
    by_reason: dict[str, tuple[list[str], list[str]]] = {}
    for req in plan.missing:
        labels, objects = by_reason.setdefault(req.reason, ([], []))
        names = [display_privilege(p, flavor) for p in req.privileges]
        label = names[0] if len(names) == 1 else "one of " + " / ".join(names)
        if label not in labels:
            labels.append(label)
        if req.object_name not in objects:
            objects.append(req.object_name)
    needs = "; ".join(
        f"{', '.join(labels)} on {', '.join(objects)} ({reason})"
        for reason, (labels, objects) in by_reason.items()
    )
    fixes = " ".join(grant_statements(plan, account, flavor, rules))
    text = f"{where}: user {quote_account(account)} lacks privileges tablemover needs: {needs}. Fix: {fixes}"
    if plan.repeated:
        text += (
            f" (this repeats {', '.join(display_privilege(p, flavor) for p in plan.repeated)}, which the "
            "user has from a wildcard database grant: a grant on the exact database name takes precedence "
            "over it)"
        )
    for note in notes:
        text += f" ({note})"
    return [text]


async def _show_grants(conn: Any, sql: str) -> AccountGrants:
    return parse_show_grants(str(r[0]) for r in await query(conn, sql))


def _quote_role(role: str) -> str:
    name, at, host = role.partition("@")
    quoted = "`" + name.replace("`", "``") + "`"
    return quoted + ("@`" + host.replace("`", "``") + "`" if at else "")


async def account_grants(conn: Any, version: ServerVersion) -> tuple[str, list[AccountGrants], list[str]]:
    """``(account, grants of the account and of each active role, notes for the message)``."""
    row = await query_one(conn, "SELECT CURRENT_USER(), CURRENT_ROLE()")
    assert row is not None
    account = str(row[0])
    active_role = str(row[1]) if row[1] is not None else ""
    notes: list[str] = []
    if version.flavor is Flavor.MYSQL:
        # MySQL expands the privileges of named roles itself; CURRENT_ROLE() is already a valid list.
        sql = "SHOW GRANTS FOR CURRENT_USER()"
        if active_role and active_role.upper() != "NONE":
            sql += f" USING {active_role}"
        accounts = [await _show_grants(conn, sql)]
    else:
        accounts = [await _show_grants(conn, "SHOW GRANTS FOR CURRENT_USER()")]
        if (version.major, version.minor) >= (10, 11):
            # MariaDB 10.11 added grants to PUBLIC, which every account holds but SHOW GRANTS FOR
            # CURRENT_USER() does not list.
            try:
                accounts.append(await _show_grants(conn, "SHOW GRANTS FOR PUBLIC"))
            except MySQLError:
                notes.append("could not read the grants to PUBLIC; they were not counted")
        if accounts[0].roles and not active_role:
            notes.append(
                f"roles granted but none active: {', '.join(accounts[0].roles)}; their privileges count "
                "only once a role is active, e.g. SET DEFAULT ROLE <role> FOR " + quote_account(account)
            )
        # The active role brings the roles granted to it along; each is matched like an account.
        pending = [active_role] if active_role else []
        seen: set[str] = set()
        while pending:
            role = pending.pop()
            if role in seen:
                continue
            seen.add(role)
            try:
                role_grants = await _show_grants(conn, f"SHOW GRANTS FOR {_quote_role(role)}")
            except MySQLError:
                notes.append(f"could not read the grants of role {role}; its privileges were not counted")
                continue
            accounts.append(role_grants)
            pending.extend(role_grants.roles)
    unparsed = [line for a in accounts for line in a.unparsed]
    if unparsed:
        notes.append(
            "tablemover could not read these SHOW GRANTS lines, so what they grant was not counted: "
            + " | ".join(unparsed)
        )
    return account, accounts, notes


async def name_rules(conn: Any, info: ServerInfo) -> NameRules:
    """How this server compares database/table names in grants."""
    row = await query_one(conn, "SELECT @@lower_case_table_names")
    case_sensitive = row is None or int(row[0]) == 0
    wildcards = True
    if info.flavor is Flavor.MYSQL:
        # partial_revokes exists from MySQL 8.0.16 on; SHOW VARIABLES returns nothing before.
        revokes = await query_one(conn, "SHOW GLOBAL VARIABLES LIKE 'partial_revokes'")
        wildcards = not (revokes is not None and str(revokes[1]).upper() in ("ON", "1"))
    return NameRules(wildcards=wildcards, case_sensitive=case_sensitive, ordering=info.flavor)


async def _server_problems(
    conn: Any, info: ServerInfo, where: str, requirements: Sequence[Requirement]
) -> list[str]:
    account, accounts, notes = await account_grants(conn, info.version)
    rules = await name_rules(conn, info)
    plan = plan_fix(accounts, requirements, rules)
    return privilege_problem(where, account, info.flavor, plan, rules, notes)


@check(Phase.SERVERS, "privileges")
async def required_privileges(ctx: PreflightContext) -> list[str]:
    """Report every privilege the source or target user lacks, with the GRANTs that fix it."""
    move = ctx.config.move
    renamed = {t: move.renamed(t) for t in move.tables}
    source_reqs = source_requirements(ctx.source_info.version, move.database, move.tables, renamed)
    target_reqs = target_requirements(move.effective_target_database, ctx.checkpoint_database)
    if move.rollback_window_s > 0:
        more_source, more_target = window_requirements(
            move.database, move.effective_target_database, move.tables, renamed, move.state_database
        )
        source_reqs += more_source
        target_reqs += more_target
    source = await _server_problems(ctx.source, ctx.source_info, ctx.source_address, source_reqs)
    target = await _server_problems(ctx.target, ctx.target_info, ctx.target_address, target_reqs)
    return source + target
