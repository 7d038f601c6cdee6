"""The least grants of a move (issue 26, point 5): what `check` prints, what preflight requires and
its "Fix:" hints grant, the warning for far more than needed, and hints quoted so that a crafted name
cannot turn a suggested statement into another one. Pure functions on SHOW GRANTS text."""

from __future__ import annotations

import pytest

from tablemover.config import MoveSection
from tablemover.flavor import Flavor, parse_version
from tablemover.preflight.foreign_keys import ForeignKey
from tablemover.preflight.grant_excess import excess_grants
from tablemover.preflight.grant_fix import grant_statements, plan_fix
from tablemover.preflight.grant_lines import parse_show_grants
from tablemover.preflight.grant_match import NameRules, missing
from tablemover.preflight.grant_plan import Side, grant_script, minimal_needs, requirements
from tablemover.preflight.triggers import trigger_problems
from tablemover.statements import TokenKind, tokenize

MARIADB = parse_version("10.11.6-MariaDB-log")
MYSQL = parse_version("8.4.3")


def section(**changes: object) -> MoveSection:
    base: dict[str, object] = {"name": "m", "database": "app", "tables": ["orders", "items"]}
    return MoveSection.model_validate({**base, **changes})


def statements_of(script: str, side: Side, account: str = "`m`@`%`") -> list[str]:
    """The runnable GRANT lines of one server's part of a script, account filled in."""
    part = script.split(f"-- on the {side.value}", 1)[1]
    if side is Side.SOURCE:
        part = part.split("-- on the target", 1)[0]
    return [
        line.replace("<account>", account).rstrip(";")
        for line in part.splitlines()
        if line.startswith("GRANT")
    ]


def test_plain_move_prints_table_level_grants_for_both_servers() -> None:
    needs = minimal_needs(section(), MARIADB, target_schema_exists=False)
    script = grant_script(needs, Flavor.MARIADB, Flavor.MARIADB, source_address="s:1", target_address="t:2")
    assert script.splitlines()[2:] == [
        "-- on the source s:1:",
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <account>;",
        "-- GRANT PROCESS ON *.* TO <account>;  -- optional: lets the cutover see the transactions that "
        "would block its RENAME",
        "GRANT SELECT, DROP, ALTER ON `app`.`orders` TO <account>;",
        "GRANT SELECT, INSERT, CREATE, DROP ON `app`.`_orders_moved` TO <account>;",
        "GRANT SELECT, DROP, ALTER ON `app`.`items` TO <account>;",
        "GRANT SELECT, INSERT, CREATE, DROP ON `app`.`_items_moved` TO <account>;",
        "-- on the target t:2:",
        "GRANT CREATE ON `app`.* TO <account>;",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`orders` TO <account>;",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`items` TO <account>;",
        "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\\_tablemover`.* TO <account>;",
    ]


def test_existing_target_schema_needs_no_schema_wide_create() -> None:
    needs = minimal_needs(section(target_database="dst"), MARIADB, target_schema_exists=True)
    target = statements_of(grant_script(needs, Flavor.MARIADB, Flavor.MARIADB), Side.TARGET)
    assert not [s for s in target if "`dst`.*" in s]
    assert "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `dst`.`orders` TO `m`@`%`" in target


def test_rollback_window_adds_the_reverse_feed_and_both_renames() -> None:
    needs = minimal_needs(section(tables=["t"], rollback_window_s=60), MARIADB, target_schema_exists=True)
    script = grant_script(needs, Flavor.MARIADB, Flavor.MARIADB)
    assert statements_of(script, Side.SOURCE) == [
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `m`@`%`",
        "GRANT SELECT, INSERT, CREATE, DROP, ALTER ON `app`.`t` TO `m`@`%`",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`_t_moved` TO `m`@`%`",
        "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\\_tablemover`.* TO `m`@`%`",
    ]
    assert statements_of(script, Side.TARGET) == [
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `m`@`%`",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.`t` TO `m`@`%`",
        "GRANT INSERT, CREATE ON `app`.`_t_rolledback` TO `m`@`%`",
        "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\\_tablemover`.* TO `m`@`%`",
    ]


def test_mysql_names_and_locking_read_privilege() -> None:
    needs = minimal_needs(section(tables=["t"]), MYSQL, target_schema_exists=True)
    source = statements_of(grant_script(needs, Flavor.MYSQL, Flavor.MYSQL), Side.SOURCE)
    assert source[0] == "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `m`@`%`"
    # LOCK TABLES exists per database only, and locks only tables the user can already SELECT.
    assert "GRANT LOCK TABLES ON `app`.* TO `m`@`%`" in source
    unknown = grant_script(minimal_needs(section(tables=["t"])), None, None)
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO <account>;" in unknown


@pytest.mark.parametrize("window", [0, 30])
@pytest.mark.parametrize("version", [MARIADB, MYSQL], ids=["mariadb", "mysql"])
@pytest.mark.parametrize("exists", [True, False])
def test_printed_grants_are_enough_and_each_privilege_is_needed(
    window: int, version: object, exists: bool
) -> None:
    assert version is MARIADB or version is MYSQL
    move = section(database="tm_x", target_database="tm_x_dst", rollback_window_s=window)
    needs = minimal_needs(move, version, target_schema_exists=exists)
    script = grant_script(needs, version.flavor, version.flavor)
    rules = NameRules(ordering=version.flavor)
    for side in Side:
        reqs = requirements(needs, side)
        lines = statements_of(script, side)
        assert missing([parse_show_grants(lines)], reqs, rules) == []
        # Nothing printed is spare: take any one privilege away and a requirement is missing. The
        # one exception: while the target schema is missing, CREATE on all of it covers the tables'
        # CREATE, which stays because a table grant on a missing table must include it.
        for i, line in enumerate(lines):
            privileges = line[len("GRANT ") : line.index(" ON ")].split(", ")
            for dropped in privileges:
                if not exists and side is Side.TARGET and dropped == "CREATE" and "`.`" in line:
                    continue
                rest = [p for p in privileges if p != dropped]
                fewer = lines[:i] + ([f"GRANT {', '.join(rest)}{line[line.index(' ON ') :]}"] if rest else [])
                fewer += lines[i + 1 :]
                assert missing([parse_show_grants(fewer)], reqs, rules), (side, line, dropped)
        # and the least set holds nothing the excess warning would name
        app = move.database if side is Side.SOURCE else move.effective_target_database
        assert excess_grants([parse_show_grants(lines)], [app], rules) == []


def test_every_printed_statement_parses_as_one_grant() -> None:
    needs = minimal_needs(section(rollback_window_s=5), MARIADB)
    for side in Side:
        for line in statements_of(grant_script(needs, Flavor.MARIADB, Flavor.MARIADB), side):
            assert len(parse_show_grants([line]).grants) == 1


def one_statement(sql: str) -> list[str]:
    """The names in ``sql`` after checking, with the server's lexer, that it is one statement."""
    tokens = tokenize(sql)
    assert [t.text for t in tokens if t.kind is TokenKind.PUNCT and t.text == ";"] == [";"]
    assert tokens[-1].text == ";"
    return [t.text for t in tokens if t.kind is TokenKind.IDENT]


# ------------------------------------------------------------------------ the "Fix:" hints


def test_fix_hint_is_table_level_and_can_be_run_before_the_table_exists() -> None:
    needs = minimal_needs(section(tables=["orders"]), MARIADB, target_schema_exists=True)
    # The user has everything but INSERT on the renamed name, which does not exist yet: the fix
    # repeats CREATE, without which the server refuses a grant on a missing table.
    held = [
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `m`@`%`",
        "GRANT SELECT, ALTER, DROP ON `app`.`orders` TO `m`@`%`",
        "GRANT SELECT, CREATE, DROP ON `app`.`_orders_moved` TO `m`@`%`",
    ]
    plan = plan_fix([parse_show_grants(held)], requirements(needs, Side.SOURCE))
    assert grant_statements(plan, "m@%", Flavor.MARIADB) == [
        "GRANT INSERT, CREATE ON `app`.`_orders_moved` TO 'm'@'%';"
    ]


def test_fix_hint_for_a_bare_user_is_the_printed_set() -> None:
    needs = minimal_needs(section(database="tm_x"), MARIADB, target_schema_exists=False)
    for side in Side:
        plan = plan_fix([parse_show_grants([])], requirements(needs, side))
        hinted = grant_statements(plan, "m@%", Flavor.MARIADB)
        printed = grant_script(needs, Flavor.MARIADB, Flavor.MARIADB, account="'m'@'%'")
        runnable = [line for line in printed.split("-- on the target")[side is Side.TARGET].splitlines()]
        # the same grants (a hint lists privileges in the order they are found missing)
        printed_grants = parse_show_grants(line.rstrip(";") for line in runnable if line.startswith("GRANT"))
        assert set(parse_show_grants(h.rstrip(";") for h in hinted).grants) == set(printed_grants.grants)
        assert len(hinted) == len(printed_grants.grants)
        assert not [s for s in hinted if "`tm\\_x`.*" in s and side is Side.SOURCE]


def test_trigger_hint_escapes_backticks() -> None:
    crafted = "x`; DROP DATABASE app; -- "
    [text] = trigger_problems("app", "orders", (crafted,))
    suggested = text[text.index("DROP TRIGGER") : text.index(") and move")]
    assert suggested == "DROP TRIGGER `app`.`x``; DROP DATABASE app; -- `;"
    assert one_statement(suggested) == ["app", crafted]


def test_foreign_key_hint_escapes_backticks() -> None:
    fk = ForeignKey("app", "order`items", "fk`; DROP TABLE orders; -- ", "order_id", "app", "orders")
    assert (
        fk.drop_sql() == "ALTER TABLE `app`.`order``items` DROP FOREIGN KEY `fk``; DROP TABLE orders; -- `;"
    )
    assert one_statement(fk.drop_sql()) == ["app", "order`items", "fk`; DROP TABLE orders; -- "]


# ------------------------------------------------------------------------ far more than needed


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        # MariaDB
        (["GRANT ALL PRIVILEGES ON *.* TO `m`@`%` WITH GRANT OPTION"], ["ALL PRIVILEGES ON *.*"]),
        (["GRANT SUPER, REPLICATION SLAVE ON *.* TO `m`@`%`"], ["SUPER ON *.*"]),
        (["GRANT DROP ON *.* TO `m`@`%`"], ["DROP ON *.*"]),
        (["GRANT SELECT, INSERT, CREATE, ALTER, DROP ON `app`.* TO `m`@`%`"], ["DROP ON `app`.*"]),
        (["GRANT ALL PRIVILEGES ON `app`.* TO `m`@`%`"], ["ALL PRIVILEGES ON `app`.*"]),
        (
            [
                "GRANT DROP ON `a%`.* TO `m`@`%`",
                "GRANT DROP ON `ap\\_%`.* TO `m`@`%`",
                "GRANT DROP ON `%`.* TO `m`@`%`",
            ],
            ["DROP ON `a%`.*", "DROP ON `%`.*"],
        ),
        # MySQL 8 lists the static privileges one by one, and dynamic ones on a line of their own
        (
            [
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, FILE, "
                "REFERENCES, INDEX, ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY TABLES, LOCK TABLES, "
                "EXECUTE, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `r`@`h` WITH GRANT OPTION",
                "GRANT APPLICATION_PASSWORD_ADMIN,BACKUP_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `r`@`h`",
            ],
            ["SUPER, DROP ON *.*"],
        ),
        (["GRANT DROP ON `app`.* TO `m`@`%`", "REVOKE DROP ON `other`.* FROM `m`@`%`"], ["DROP ON `app`.*"]),
        # what the move needs is not excess; nor is anything outside the application schema
        (
            [
                "GRANT REPLICATION SLAVE, BINLOG MONITOR, PROCESS ON *.* TO `m`@`%`",
                "GRANT SELECT, ALTER, DROP ON `app`.`t` TO `m`@`%`",
                "GRANT ALL PRIVILEGES ON `app`.`_t_moved` TO `m`@`%`",
                "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\\_tablemover`.* TO `m`@`%`",
                "GRANT DROP ON `other`.* TO `m`@`%`",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON `app`.* TO `m`@`%`",
            ],
            [],
        ),
    ],
)
def test_excess_grants(lines: list[str], found: list[str]) -> None:
    assert excess_grants([parse_show_grants(lines)], ["app"]) == found


def test_excess_through_a_role_counts() -> None:
    user = parse_show_grants(["GRANT `dba` TO `m`@`%`", "GRANT USAGE ON *.* TO `m`@`%`"])
    role = parse_show_grants(["GRANT ALL PRIVILEGES ON *.* TO `dba`"])
    assert excess_grants([user], ["app"]) == []
    assert excess_grants([user, role], ["app"]) == ["ALL PRIVILEGES ON *.*"]


def test_excess_patterns_follow_the_servers_name_rules() -> None:
    acc = [parse_show_grants(["GRANT DROP ON `App`.* TO `m`@`%`"])]
    assert excess_grants(acc, ["app"]) == []
    assert excess_grants(acc, ["app"], NameRules(case_sensitive=False)) == ["DROP ON `App`.*"]


def test_a_move_begun_by_an_earlier_version_needs_its_checkpoint_table_in_the_target_schema() -> None:
    move = section(tables=["t"], target_database="dst")
    needs = minimal_needs(move, MARIADB, target_schema_exists=True, checkpoint_database="dst")
    target = statements_of(grant_script(needs, Flavor.MARIADB, Flavor.MARIADB), Side.TARGET)
    assert (
        target[-1]
        == "GRANT SELECT, INSERT, DELETE, CREATE, DROP, ALTER ON `dst`.`_tablemover_checkpoint` TO `m`@`%`"
    )
    assert "`dst`.*" not in " ".join(target)
    # the state schema's own is not repeated as a legacy need
    same = minimal_needs(move, MARIADB, target_schema_exists=True, checkpoint_database="_tablemover")
    assert same == minimal_needs(move, MARIADB, target_schema_exists=True)


def test_without_wildcards_the_state_schema_is_named_literally() -> None:
    # MySQL with partial_revokes=ON reads `_` in a database grant literally: no escape there.
    needs = minimal_needs(section(tables=["t"]), MYSQL, target_schema_exists=True)
    literal = NameRules(wildcards=False, ordering=Flavor.MYSQL)
    script = grant_script(needs, Flavor.MYSQL, Flavor.MYSQL, source_rules=literal, target_rules=literal)
    target = statements_of(script, Side.TARGET)
    assert target[-1] == "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `_tablemover`.* TO `m`@`%`"
    assert missing([parse_show_grants(target)], requirements(needs, Side.TARGET), literal) == []
