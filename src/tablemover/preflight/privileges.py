"""Check: the configured users hold every privilege the move needs, on source and target.

What is needed (and why) is decided by :func:`source_requirements` / :func:`target_requirements`;
whether the account has it is decided by :mod:`tablemover.preflight.grants` from ``SHOW GRANTS``.
Both are pure; this module only adds the queries and the message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asyncmy.errors import MySQLError

from tablemover.config import Config, MoveSection
from tablemover.db import ConnectError, ServerInfo, close, connect, query, query_one, server_info
from tablemover.flavor import Flavor, ServerVersion
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check
from tablemover.preflight.grant_excess import excess_grants, excess_warning
from tablemover.preflight.grant_plan import (
    ACCOUNT_PLACEHOLDER,
    Need,
    Side,
    grant_script,
    group_statements,
    minimal_needs,
    replica_needs,
    requirements,
)
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
from tablemover.tls import TlsSetupError


def source_requirements(
    move: MoveSection, version: ServerVersion | None = None, *, target_schema_exists: bool = True
) -> list[Requirement]:
    """What the source user needs for ``move`` (see :mod:`tablemover.preflight.grant_plan`)."""
    needs = minimal_needs(move, version, target_schema_exists=target_schema_exists)
    return requirements(needs, Side.SOURCE)


def target_requirements(move: MoveSection, *, target_schema_exists: bool = True) -> list[Requirement]:
    """What the target user needs for ``move`` (see :mod:`tablemover.preflight.grant_plan`)."""
    return requirements(minimal_needs(move, target_schema_exists=target_schema_exists), Side.TARGET)


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


async def schema_visible(conn: Any, database: str) -> bool:
    """Whether ``database`` exists as this connection's user sees it (any privilege in it shows it)."""
    rows = await query(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (database,))
    return bool(rows)


async def server_privilege_problems(
    conn: Any,
    info: ServerInfo,
    where: str,
    needs: Sequence[Need],
    side: Side,
    databases: Sequence[str],
) -> list[str]:
    """The missing privileges of ``side``'s user on the server behind ``conn`` (one message with
    the GRANTs that fix them); warns when it holds far more than ``needs``."""
    account, accounts, notes = await account_grants(conn, info.version)
    rules = await name_rules(conn, info)
    plan = plan_fix(accounts, requirements(needs, side), rules)
    found = excess_grants(accounts, databases, rules)
    if found:
        needed = [
            g.sql(quote_account(account), info.flavor, rules)
            for g in group_statements([n for n in needs if n.side is side and not n.optional])
        ]
        # A warning, not a refusal: the move works, but with far more at stake than it needs.
        event(excess_warning(where, quote_account(account), found, needed), logging.WARNING)
    return privilege_problem(where, account, info.flavor, plan, rules, notes)


@check(Phase.SERVERS, "privileges")
async def required_privileges(ctx: PreflightContext) -> list[str]:
    """Report every privilege the source or target user lacks, with the GRANTs that fix it; warn
    about far more than needed."""
    move = ctx.config.move
    target_db = move.effective_target_database
    # Once the target schema exists the daemon does not create it, and needs no CREATE on all of it.
    exists = await schema_visible(ctx.target, target_db)
    needs = minimal_needs(
        move,
        ctx.source_info.version,
        target_schema_exists=exists,
        checkpoint_database=ctx.checkpoint_database,
    )
    source = await server_privilege_problems(
        ctx.source, ctx.source_info, ctx.source_address, needs, Side.SOURCE, [move.database]
    )
    target = await server_privilege_problems(
        ctx.target, ctx.target_info, ctx.target_address, needs, Side.TARGET, [target_db]
    )
    return source + target


async def _peek(config: Config, role: str) -> tuple[ServerVersion | None, bool, NameRules]:
    """``(version, target schema visible, name rules)`` of one server; ``(None, False, default)``
    when it cannot be read."""
    server = {"source": config.source, "target": config.target}.get(role, config.replica)
    assert server is not None
    conn: Any = None
    try:
        conn = await connect(server, role)
        info = await server_info(conn)
        visible = role == "target" and await schema_visible(conn, config.move.effective_target_database)
        return info.version, visible, await name_rules(conn, info)
    except (ConnectError, TlsSetupError, MySQLError, ValueError, OSError):
        # The grants are printed whatever the servers say; preflight reports why they cannot be reached.
        return None, False, DEFAULT_NAME_RULES
    finally:
        if conn is not None:
            await close(conn)


async def minimal_grant_script(config: Config) -> str:
    """The least grants of the move, both servers, as the SQL `tablemover check` prints.

    Reads each server's version (for the privilege names its flavour prints and MySQL's LOCK TABLES),
    how it reads database grant names, and whether the target schema already exists; without a
    server, prints the form that works on both flavours.
    """
    source_version, _, source_rules = await _peek(config, "source")
    target_version, target_exists, target_rules = await _peek(config, "target")
    needs = minimal_needs(config.move, source_version, target_schema_exists=target_exists)
    script = grant_script(
        needs,
        source_version.flavor if source_version else None,
        target_version.flavor if target_version else None,
        source_address=config.source.address,
        target_address=config.target.address,
        source_rules=source_rules,
        target_rules=target_rules,
    )
    if config.replica is None:
        return script
    version, _, rules = await _peek(config, "replica")
    flavor = version.flavor if version else None
    lines = [f"-- on the replica {config.replica.address} (the move reads rows and the binlog there):"]
    lines += [
        s.sql(ACCOUNT_PLACEHOLDER, flavor, rules)
        for s in group_statements(replica_needs(config.move, version))
    ]
    return "\n".join([script, *lines])
