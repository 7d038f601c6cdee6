"""Pure preflight rules: SHOW GRANTS parsing and matching, required privileges, server settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.config import MoveSection
from tablemover.db import ServerInfo
from tablemover.flavor import Flavor, parse_version
from tablemover.preflight.binlog import binlog_problems
from tablemover.preflight.binlog_events import binlog_event_problems
from tablemover.preflight.chunk_key import chunk_key_problems
from tablemover.preflight.engine import engine_problems
from tablemover.preflight.foreign_keys import ForeignKey, foreign_key_problems
from tablemover.preflight.grant_fix import (
    FixPlan,
    grant_database_name,
    grant_statements,
    plan_fix,
    quote_account,
)
from tablemover.preflight.grant_lines import (
    ALL,
    AccountGrants,
    Grant,
    GrantParseError,
    PartialRevoke,
    RoleGrant,
    canonical_privilege,
    parse_grant_line,
    parse_show_grants,
)
from tablemover.preflight.grant_match import (
    NameRules,
    Requirement,
    database_matches,
    holds,
    missing,
    pattern_specificity,
)
from tablemover.preflight.privileges import privilege_problem, source_requirements, target_requirements
from tablemover.preflight.same_server import same_server_problems
from tablemover.preflight.triggers import trigger_problems
from tablemover.preflight.versions import is_supported, version_problems
from tablemover.schema import Column, Index, TableSchema

MARIADB = "10.11.6-MariaDB-0+deb12u1-log"
MYSQL = "8.4.3"


def info(version: str = MARIADB, **changes: object) -> ServerInfo:
    """A healthy source's facts; ``changes`` break one of them."""
    v = parse_version(version)
    base = ServerInfo(
        version=v,
        server_id=1,
        server_uuid="3e11fa47-71ca-11e1-9e33-c80aa9429562" if v.flavor is Flavor.MYSQL else None,
        hostname="db1",
        port=3306,
        datadir="/var/lib/mysql",
        log_bin=True,
        binlog_format="ROW",
        binlog_row_image="FULL",
        binlog_row_metadata="FULL",
        gtid_mode="ON" if v.flavor is Flavor.MYSQL else None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def account(*lines: str) -> list[AccountGrants]:
    return [parse_show_grants(lines)]


# =========================================================================== parsing


MARIADB_MOVER = [
    "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `mover`@`%` IDENTIFIED BY PASSWORD "
    "'*C9E9E0ECBB3C43D19F96BE74B961EC90E737F68B'",
    "GRANT SELECT, INSERT, CREATE, DROP, ALTER ON `tm\\_%`.* TO `mover`@`%`",
]


def test_parse_mariadb_mover_grants() -> None:
    parsed = parse_show_grants(MARIADB_MOVER)
    assert parsed.grants == (
        Grant(frozenset({"REPLICATION SLAVE", "REPLICATION CLIENT"})),
        Grant(frozenset({"SELECT", "INSERT", "CREATE", "DROP", "ALTER"}), "tm\\_%"),
    )
    assert parsed.unparsed == ()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GRANT USAGE ON *.* TO `u`@`%`", Grant(frozenset({"USAGE"}))),
        ("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION", Grant(frozenset({ALL}))),
        ("GRANT ALL ON `app`.* TO 'u'@'10.0.%'", Grant(frozenset({ALL}), "app")),
        ("GRANT SELECT ON `app`.`orders` TO `u`@`%`", Grant(frozenset({"SELECT"}), "app", "orders")),
        ("GRANT SELECT ON TABLE `app`.`orders` TO `u`@`%`", Grant(frozenset({"SELECT"}), "app", "orders")),
        # column privileges give nothing table-wide; the table-wide INSERT on the same line counts
        (
            "GRANT SELECT (`id`, `total`), INSERT ON `app`.`orders` TO `u`@`%`",
            Grant(frozenset({"INSERT"}), "app", "orders"),
        ),
        ("GRANT UPDATE (`a`) ON `app`.`t` TO `u`@`%`", Grant(frozenset(), "app", "t")),
        # MySQL 8 prints dynamic privileges without spaces after the commas
        (
            "GRANT BACKUP_ADMIN,REPLICATION_APPLIER ON *.* TO `u`@`%`",
            Grant(frozenset({"BACKUP_ADMIN", "REPLICATION_APPLIER"})),
        ),
        ("GRANT REPLICATION REPLICA ON *.* TO `u`@`%`", Grant(frozenset({"REPLICATION SLAVE"}))),
        ("GRANT LOCK TABLES ON `a``b`.* TO `u`@`%`", Grant(frozenset({"LOCK TABLES"}), "a`b")),
        ('GRANT SELECT ON "app".* TO "u"@"%"', Grant(frozenset({"SELECT"}), "app")),
        ("grant select on `app`.* to `u`@`%`;", Grant(frozenset({"SELECT"}), "app")),
        ("GRANT SELECT ON `pubdb`.* TO PUBLIC", Grant(frozenset({"SELECT"}), "pubdb")),
        ("GRANT DELETE ON `foo`.* TO `rr`", Grant(frozenset({"DELETE"}), "foo")),
        ("GRANT `reader` TO `u`@`%`", RoleGrant(("reader",))),
        ("GRANT `r1`@`%`,`r2`@`localhost` TO `u`@`%`", RoleGrant(("r1@%", "r2@localhost"))),
        ("GRANT `admin` TO `root`@`localhost` WITH ADMIN OPTION", RoleGrant(("admin",))),
        (
            "REVOKE INSERT, UPDATE ON `mysql`.* FROM `u`@`%`",
            PartialRevoke(frozenset({"INSERT", "UPDATE"}), "mysql"),
        ),
        ("GRANT EXECUTE ON PROCEDURE `db`.`p` TO `u`@`%`", None),
        ("GRANT EXECUTE ON FUNCTION `db`.`f` TO `u`@`%`", None),
        ("GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION", None),
        ("SET DEFAULT ROLE `reader` FOR `u`@`%`", None),
        ("", None),
    ],
)
def test_parse_grant_line(line: str, expected: object) -> None:
    assert parse_grant_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "GRANT SELECT ON `app` TO `u`@`%`",  # SHOW GRANTS always qualifies objects
        "GRANT SELECT ON `app`.* `u`@`%`",
        "GRANT ON *.* TO `u`@`%`",
        "REVOKE SELECT ON *.* FROM `u`@`%`",
        "GRANT SELECT ON `a`.`b`.`c` TO `u`@`%`",
    ],
)
def test_unreadable_lines_are_errors(line: str) -> None:
    with pytest.raises(GrantParseError):
        parse_grant_line(line)


def test_unreadable_lines_are_kept_for_the_message() -> None:
    parsed = parse_show_grants(["GRANT SELECT ON `app` TO `u`@`%`", *MARIADB_MOVER])
    assert parsed.unparsed == ("GRANT SELECT ON `app` TO `u`@`%`",)
    assert len(parsed.grants) == 2


def test_role_lines_are_collected() -> None:
    parsed = parse_show_grants(
        ["GRANT `a` TO `u`@`%`", "GRANT `b`@`%` TO `u`@`%`", "SET DEFAULT ROLE `a` FOR `u`@`%`"]
    )
    assert parsed.roles == ("a", "b@%")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("binlog  monitor", "REPLICATION CLIENT"),
        ("REPLICATION CLIENT", "REPLICATION CLIENT"),
        ("Replication Replica", "REPLICATION SLAVE"),
        ("ALL PRIVILEGES", ALL),
        ("select", "SELECT"),
    ],
)
def test_canonical_privilege(name: str, canonical: str) -> None:
    assert canonical_privilege(name) == canonical


# =========================================================================== matching


@pytest.mark.parametrize(
    ("pattern", "database", "matches"),
    [
        ("app", "app", True),
        ("app", "App", False),
        ("app", "app2", False),
        ("tm\\_%", "tm_abc", True),
        ("tm\\_%", "tm_", True),
        ("tm\\_%", "tmXabc", False),  # the escaped _ is literal
        ("tm_%", "tmXabc", True),  # an unescaped _ is a wildcard
        ("my_db", "myXdb", True),
        ("my\\_db", "myXdb", False),
        ("%", "anything", True),
        ("a%b", "ab", True),
        ("a%b", "axyzb", True),
        ("a%b", "axyzc", False),
        ("100\\%", "100%", True),
        ("100\\%", "1000", False),
        ("a.b", "aXb", False),  # regex characters are literal
    ],
)
def test_database_matches(pattern: str, database: str, matches: bool) -> None:
    assert database_matches(pattern, database) is matches


def test_database_matches_without_wildcards_and_case_insensitive() -> None:
    literal = NameRules(wildcards=False)
    assert database_matches("tm_%", "tm_%", literal)
    assert not database_matches("tm_%", "tm_abc", literal)
    assert database_matches("my\\_db", "my_db", literal)
    assert database_matches("APP", "app", NameRules(case_sensitive=False))


@given(st.text(alphabet="ab_%\\x", max_size=6), st.text(alphabet="ab_%x", max_size=6))
@settings(max_examples=300, deadline=None)
def test_escaped_name_matches_exactly_itself(name: str, other: str) -> None:
    # grant_database_name() is what a fix statement grants on: it must cover the database and nothing else.
    pattern = grant_database_name(name)[1:-1].replace("``", "`")
    assert database_matches(pattern, name)
    assert database_matches(pattern, other) is (other == name)


# Most specific first, as mariadbd 10.11 ranked them for the database tm_fm (each pair checked by
# granting SELECT on one pattern and ALTER on the other and trying both statements).
MARIADB_ORDER = ["tm\\_fm", "tm_fm", "tm_f_", "tm\\_f%", "tm_f%", "tm\\_%", "tm%", "t%", "%"]


def test_pattern_specificity_mariadb() -> None:
    ranks = [pattern_specificity(p) for p in MARIADB_ORDER]
    assert ranks == sorted(ranks, reverse=True)
    assert len(set(ranks)) == len(ranks)
    # equally specific patterns: the server's choice is arbitrary
    assert pattern_specificity("tm_f_") == pattern_specificity("tm__m")


def test_pattern_specificity_mysql() -> None:
    mysql = NameRules(ordering=Flavor.MYSQL)
    # MySQL's get_sort(): no wildcard = 128, else raw index of the first wildcard + 2 ("%" alone = 1)
    assert pattern_specificity("app", mysql) == 128
    assert pattern_specificity("tm\\_%", mysql) == 6
    assert pattern_specificity("tm_fm", mysql) == 4
    assert pattern_specificity("%", mysql) == 1
    assert pattern_specificity("%x", mysql) == 2
    assert pattern_specificity("tm_%", NameRules(wildcards=False, ordering=Flavor.MYSQL)) == 128


def test_most_specific_grant_differs_by_flavor() -> None:
    acc = account("GRANT SELECT ON `tm_fm`.* TO `u`@`%`", "GRANT ALTER ON `tm\\_%`.* TO `u`@`%`")
    assert holds(acc, "SELECT", "tm_fm", "t")
    mysql = NameRules(ordering=Flavor.MYSQL)
    assert holds(acc, "ALTER", "tm_fm", "t", mysql)
    assert not holds(acc, "SELECT", "tm_fm", "t", mysql)


def test_global_grant_covers_every_database() -> None:
    acc = account("GRANT SELECT, REPLICATION SLAVE ON *.* TO `u`@`%`")
    assert holds(acc, "SELECT", "any", "table")
    assert holds(acc, "REPLICATION SLAVE")
    assert not holds(acc, "INSERT", "any", "table")


def test_all_privileges_covers_its_level_only() -> None:
    acc = account("GRANT ALL PRIVILEGES ON `app`.* TO `u`@`%`", "GRANT ALL ON `x`.`t` TO `u`@`%`")
    assert holds(acc, "ALTER", "app", "orders")
    assert holds(acc, "LOCK TABLES", "app", "orders")
    assert not holds(acc, "REPLICATION SLAVE")  # global-only privileges need ON *.*
    assert not holds(acc, "SELECT", "other", "orders")
    assert holds(acc, "DROP", "x", "t")
    assert not holds(acc, "LOCK TABLES", "x", "t")  # not a table-level privilege
    assert not holds(acc, "DROP", "x", "u")
    assert holds(account("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`"), "BINLOG MONITOR")


def test_aliases_are_equal() -> None:
    mariadb = account("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`")
    mysql = account("GRANT REPLICATION REPLICA, REPLICATION CLIENT ON *.* TO `u`@`%`")
    for acc in (mariadb, mysql):
        for name in ("REPLICATION CLIENT", "BINLOG MONITOR", "REPLICATION SLAVE", "REPLICATION REPLICA"):
            assert holds(acc, name), (acc, name)


def test_wildcard_database_grant() -> None:
    acc = account(*MARIADB_MOVER)
    assert holds(acc, "ALTER", "tm_abc", "orders")
    assert not holds(acc, "ALTER", "tmXabc", "orders")
    assert not holds(acc, "UPDATE", "tm_abc", "orders")


def test_most_specific_database_grant_wins_and_does_not_add_up() -> None:
    # MariaDB and MySQL use the first matching db-level row in specificity order: SELECT on `tm_fm`
    # hides ALTER on `tm\_%` for tm_fm (verified against mariadbd 10.11).
    acc = account("GRANT SELECT ON `tm_fm`.* TO `u`@`%`", "GRANT ALTER ON `tm\\_%`.* TO `u`@`%`")
    assert holds(acc, "SELECT", "tm_fm", "t")
    assert not holds(acc, "ALTER", "tm_fm", "t")
    assert holds(acc, "ALTER", "tm_other", "t")
    assert not holds(acc, "SELECT", "tm_other", "t")
    # two lines naming one pattern are one row: they add up
    same = account("GRANT SELECT ON `app`.* TO `u`@`%`", "GRANT ALTER ON `app`.* TO `u`@`%`")
    assert holds(same, "SELECT", "app", "t") and holds(same, "ALTER", "app", "t")


def test_equally_specific_patterns_count_only_what_both_grant() -> None:
    acc = account("GRANT SELECT, ALTER ON `ab%`.* TO `u`@`%`", "GRANT SELECT ON `ac%`.* TO `u`@`%`")
    assert holds(acc, "ALTER", "abc", "t")
    both = account("GRANT SELECT, ALTER ON `tm_f_`.* TO `u`@`%`", "GRANT SELECT ON `tm__m`.* TO `u`@`%`")
    assert holds(both, "SELECT", "tm_fm", "t")
    assert not holds(both, "ALTER", "tm_fm", "t")


def test_table_grants_add_to_database_grants() -> None:
    acc = account("GRANT SELECT ON `app`.* TO `u`@`%`", "GRANT ALTER, DROP ON `app`.`orders` TO `u`@`%`")
    assert holds(acc, "ALTER", "app", "orders")
    assert not holds(acc, "ALTER", "app", "items")
    assert not holds(acc, "ALTER", "app")  # a table grant is no database-wide grant
    # table-level database names are not patterns
    assert not holds(account("GRANT SELECT ON `a_p`.`t` TO `u`@`%`"), "SELECT", "axp", "t")


def test_column_grants_do_not_count() -> None:
    acc = account("GRANT SELECT (`id`) ON `app`.`orders` TO `u`@`%`")
    assert not holds(acc, "SELECT", "app", "orders")


def test_partial_revoke_takes_a_global_privilege_back_for_one_database() -> None:
    acc = account("GRANT SELECT, INSERT ON *.* TO `u`@`%`", "REVOKE INSERT ON `app`.* FROM `u`@`%`")
    assert holds(acc, "INSERT", "other", "t")
    assert not holds(acc, "INSERT", "app", "t")
    assert holds(acc, "SELECT", "app", "t")
    # ...but a database grant still gives it back
    regranted = account(
        "GRANT INSERT ON *.* TO `u`@`%`",
        "REVOKE INSERT ON `app`.* FROM `u`@`%`",
        "GRANT INSERT ON `app`.* TO `u`@`%`",
    )
    assert holds(regranted, "INSERT", "app", "t")


def test_case_insensitive_names() -> None:
    acc = account("GRANT SELECT ON `App`.`Orders` TO `u`@`%`")
    assert not holds(acc, "SELECT", "app", "orders")
    assert holds(acc, "SELECT", "app", "orders", NameRules(case_sensitive=False))


def test_roles_add_up() -> None:
    user = parse_show_grants(["GRANT `reader` TO `u`@`%`", "GRANT USAGE ON *.* TO `u`@`%`"])
    role = parse_show_grants(["GRANT SELECT ON `app`.* TO `reader`"])
    assert not holds([user], "SELECT", "app", "t")
    assert holds([user, role], "SELECT", "app", "t")


# =========================================================================== requirements


def move_section(
    database: str = "app", tables: tuple[str, ...] = ("orders",), **changes: object
) -> MoveSection:
    """A [move] section; the requirements are derived from it (grant_plan.minimal_needs)."""
    return MoveSection.model_validate({"name": "m", "database": database, "tables": list(tables), **changes})


def test_source_requirements_mariadb() -> None:
    reqs = source_requirements(move_section(), parse_version(MARIADB))
    found = {(r.privileges, r.object_name) for r in reqs}
    assert found == {
        (("REPLICATION SLAVE",), "*.*"),
        (("REPLICATION CLIENT",), "*.*"),
        (("SELECT",), "app.orders"),
        (("ALTER",), "app.orders"),
        (("DROP",), "app.orders"),
        (("CREATE",), "app._orders_moved"),
        (("INSERT",), "app._orders_moved"),
        (("SELECT",), "app._orders_moved"),  # verify after the cutover
        (("DROP",), "app._orders_moved"),  # cleanup --drop-source
    }
    assert missing(account(*MARIADB_MOVER), reqs) != []
    granted = account(*(line.replace("tm\\_%", "app") for line in MARIADB_MOVER))
    assert missing(granted, reqs) == []


@pytest.mark.parametrize(("version", "needs_lock"), [("8.0.21", False), ("8.0.22", True), ("8.4.3", True)])
def test_source_requirements_mysql_locking_read(version: str, needs_lock: bool) -> None:
    reqs = source_requirements(move_section(tables=("t",)), parse_version(version))
    lock = [r for r in reqs if r.privileges == ("LOCK TABLES", "UPDATE", "DELETE")]
    assert bool(lock) is needs_lock
    base = [
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `mover`@`%`",
        "GRANT SELECT, INSERT, CREATE, ALTER, DROP ON `app`.* TO `mover`@`%`",
    ]
    assert (missing(account(*base), reqs) == lock) if needs_lock else missing(account(*base), reqs) == []
    for extra in ("UPDATE ON `app`.`t`", "DELETE ON `app`.*", "LOCK TABLES ON `app`.*", "LOCK TABLES ON *.*"):
        assert missing(account(*base, f"GRANT {extra} TO `mover`@`%`"), reqs) == []
    assert missing(account(*base, "GRANT UPDATE ON `app`.`other` TO `mover`@`%`"), reqs) == lock


STATE_GRANT = "GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `\\_tablemover`.* TO `m`@`%`"


def test_target_requirements() -> None:
    reqs = target_requirements(move_section(target_database="dst"))
    assert {(r.privileges[0], r.object_name) for r in reqs} == {
        *((p, "dst.orders") for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER")),
        *((p, "_tablemover.*") for p in ("SELECT", "INSERT", "DELETE", "CREATE", "DROP")),
    }
    table_level = "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `dst`.`orders` TO `m`@`%`"
    assert missing(account(table_level, STATE_GRANT), reqs) == []
    # ALTER: the cutover carries the AUTO_INCREMENT counter over (autoinc.py)
    no_alter = table_level.replace(", ALTER", "")
    assert [r.privileges for r in missing(account(no_alter, STATE_GRANT), reqs)] == [("ALTER",)]
    # the checkpoint lives in the state schema: grants on the application schema do not reach it
    assert len(missing(account("GRANT ALL ON `dst`.* TO `m`@`%`"), reqs)) == 5
    # a target schema that does not exist yet needs CREATE on all of it (CREATE DATABASE)
    absent = target_requirements(move_section(target_database="dst"), target_schema_exists=False)
    assert [r.object_name for r in missing(account(table_level, STATE_GRANT), absent)] == ["dst.*"]


def _statements(plan: FixPlan, flavor: Flavor = Flavor.MARIADB, rules: NameRules | None = None) -> list[str]:
    return grant_statements(plan, "mover@%", flavor, rules or NameRules())


def test_fix_grants_the_missing_privileges_on_the_table() -> None:
    reqs = [
        Requirement(("REPLICATION CLIENT",)),
        Requirement(("ALTER",), "tm_x", "orders"),
        Requirement(("DROP",), "tm_x", "orders"),
        Requirement(("CREATE",), "tm_x", "_orders_moved"),
        Requirement(("INSERT",), "tm_x", "_orders_moved"),
        Requirement(("ALTER",), "tm_x", "items"),
        Requirement(("LOCK TABLES", "UPDATE", "DELETE"), "tm_x", "items"),
        Requirement(("DROP",), "_tablemover"),
    ]
    plan = plan_fix(account("GRANT USAGE ON *.* TO `mover`@`%`"), reqs)
    assert plan.missing == tuple(reqs)
    assert plan.repeated == ()
    # Table-level, quoted literally; LOCK TABLES and whole-schema needs per database, escaped.
    assert _statements(plan) == [
        "GRANT BINLOG MONITOR ON *.* TO 'mover'@'%';",
        "GRANT ALTER, DROP ON `tm_x`.`orders` TO 'mover'@'%';",
        "GRANT CREATE, INSERT ON `tm_x`.`_orders_moved` TO 'mover'@'%';",
        "GRANT ALTER ON `tm_x`.`items` TO 'mover'@'%';",
        "GRANT LOCK TABLES ON `tm\\_x`.* TO 'mover'@'%';",
        "GRANT DROP ON `\\_tablemover`.* TO 'mover'@'%';",
    ]
    assert grant_statements(plan_fix([], reqs[:1]), "mover@10.0.0.%", Flavor.MYSQL) == [
        "GRANT REPLICATION CLIENT ON *.* TO 'mover'@'10.0.0.%';"
    ]
    literal = NameRules(wildcards=False, ordering=Flavor.MYSQL)
    assert _statements(plan_fix([], reqs[6:7], literal), Flavor.MYSQL, literal) == [
        "GRANT LOCK TABLES ON `tm_x`.* TO 'mover'@'%';"
    ]
    assert plan_fix(account("GRANT ALL ON *.* TO `mover`@`%`"), reqs) == FixPlan((), (), ())


PATTERN_USER = (
    "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `m`@`%`",
    "GRANT SELECT, INSERT, CREATE ON `tm\\_%`.* TO `m`@`%`",
)
OBJECTS = [
    "*.*",
    "`tm\\_%`.*",
    "`tm_x`.*",
    "`tm\\_x`.*",
    "`%`.*",
    "`tm\\_x`.`a`",
    "`t%`.*",
    "`\\_tablemover`.*",
]


def test_fix_repeats_what_a_new_exact_grant_would_hide() -> None:
    # The user has the state schema's SELECT, INSERT, DELETE, CREATE through `%`; a grant on
    # `\_tablemover` takes precedence for it, so granting only DROP there would take the rest away.
    acc = account("GRANT SELECT, INSERT, DELETE, CREATE ON `%`.* TO `m`@`%`")
    reqs = [Requirement((p,), "_tablemover") for p in ("SELECT", "INSERT", "DELETE", "CREATE", "DROP")]
    plan = plan_fix(acc, reqs)
    assert [r.privileges[0] for r in plan.missing] == ["DROP"]
    assert plan.grants == (("_tablemover", None, ("DROP", "SELECT", "INSERT", "DELETE", "CREATE")),)
    assert set(plan.repeated) == {"SELECT", "INSERT", "DELETE", "CREATE"}
    fixed = account(
        "GRANT SELECT, INSERT, DELETE, CREATE ON `%`.* TO `m`@`%`",
        *(s.rstrip(";") for s in _statements(plan)),
    )
    assert missing(fixed, reqs) == []
    # A table grant hides nothing: the server adds it to the database's.
    table_reqs = source_requirements(move_section("tm_x"), parse_version(MARIADB))
    table_plan = plan_fix(account(*PATTERN_USER), table_reqs)
    assert table_plan.repeated == ()
    assert ("tm_x", "orders", ("ALTER", "DROP")) in table_plan.grants


@given(
    held=st.lists(
        st.tuples(
            st.sampled_from(
                ["SELECT", "INSERT", "CREATE", "ALTER", "DROP", "ALL", "UPDATE", "LOCK TABLES", "DELETE"]
            ),
            st.sampled_from(OBJECTS),
        ),
        max_size=6,
    ),
    flavor=st.sampled_from([Flavor.MARIADB, Flavor.MYSQL]),
    window=st.booleans(),
    exists=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_the_fix_always_fixes(
    held: list[tuple[str, str]], flavor: Flavor, window: bool, exists: bool
) -> None:
    rules = NameRules(ordering=flavor)
    version = parse_version(MARIADB if flavor is Flavor.MARIADB else MYSQL)
    lines = [f"GRANT {priv} ON {obj} TO `m`@`%`" for priv, obj in held]
    move = move_section("tm_x", ("a", "b"), rollback_window_s=30 if window else 0)
    reqs = source_requirements(move, version, target_schema_exists=exists)
    reqs += target_requirements(move, target_schema_exists=exists)
    plan = plan_fix(account(*lines), reqs, rules)
    assert list(plan.missing) == missing(account(*lines), reqs, rules)
    fixed = account(*lines, *(s.rstrip(";") for s in grant_statements(plan, "m@%", flavor, rules)))
    assert missing(fixed, reqs, rules) == []


def test_quote_account() -> None:
    assert quote_account("mover@%") == "'mover'@'%'"
    assert quote_account("o'brien@10.%") == "'o\\'brien'@'10.%'"
    assert quote_account("a@b@host") == "'a@b'@'host'"


def test_privilege_message_names_everything() -> None:
    reqs = source_requirements(move_section("tm_x"), parse_version(MARIADB))
    plan = plan_fix(
        account("GRANT REPLICATION SLAVE ON *.* TO `weak`@`%`", "GRANT SELECT ON `tm\\_%`.* TO `weak`@`%`"),
        reqs,
    )
    [text] = privilege_problem("source 127.0.0.1:3307", "weak@%", Flavor.MARIADB, plan, notes=["a note"])
    assert text.startswith("source 127.0.0.1:3307: user 'weak'@'%' lacks privileges tablemover needs: ")
    assert "BINLOG MONITOR on *.*" in text
    assert "ALTER, DROP on tm_x.orders" in text
    assert "CREATE, INSERT on tm_x._orders_moved" in text
    assert "GRANT BINLOG MONITOR ON *.* TO 'weak'@'%';" in text
    assert (
        "Fix: GRANT BINLOG MONITOR ON *.* TO 'weak'@'%'; GRANT ALTER, DROP ON `tm_x`.`orders` TO 'weak'@'%'; "
        in text
    )
    assert "GRANT CREATE, INSERT, DROP ON `tm_x`.`_orders_moved` TO 'weak'@'%';" in text
    assert "`tm\\_x`.*" not in text and "wildcard" not in text
    assert text.endswith("(a note)")
    assert privilege_problem("x", "u@%", Flavor.MARIADB, FixPlan((), (), ())) == []


# =========================================================================== server settings


def test_healthy_servers_pass() -> None:
    for version in (MARIADB, MYSQL, "10.6.0-MariaDB", "8.0.11"):
        assert binlog_problems(info(version), "source s:1") == []
        assert version_problems(info(version), "source s:1") == []


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("10.5.23-MariaDB", False),
        ("10.6.0-MariaDB", True),
        ("11.4.2-MariaDB", True),
        ("5.5.5-10.3.39-MariaDB", False),
        ("5.7.44-log", False),
        ("8.0.36", True),
        ("9.1.0", True),
    ],
)
def test_supported_versions(version: str, supported: bool) -> None:
    assert is_supported(info(version)) is supported
    problems = version_problems(info(version), "target 10.0.0.2:3306")
    assert (problems == []) is supported
    if not supported:
        assert problems[0].startswith("target 10.0.0.2:3306 runs ")
        assert "MariaDB 10.6 or newer and MySQL 8.0 or newer" in problems[0]


def test_binlog_format_statement() -> None:
    [msg] = binlog_problems(info(binlog_format="STATEMENT"), "source 127.0.0.1:3307")
    assert msg.startswith("source 127.0.0.1:3307: binlog_format is STATEMENT; tablemover needs ROW")
    assert "SET GLOBAL binlog_format='ROW'" in msg
    assert "restart the writers' connections" in msg


def test_binlog_row_image_minimal() -> None:
    [msg] = binlog_problems(info(binlog_row_image="MINIMAL"), "source h:1")
    assert "binlog_row_image is MINIMAL; tablemover needs FULL" in msg
    assert "SET GLOBAL binlog_row_image='FULL'" in msg


def test_binlog_off() -> None:
    [msg] = binlog_problems(info(log_bin=False), "source h:1")
    assert "binary logging is off (log_bin=0)" in msg
    assert "restart the server" in msg
    assert "gtid_mode" not in msg  # MariaDB has no gtid_mode to set
    [mysql_msg] = binlog_problems(info(MYSQL, log_bin=False), "source h:1")
    assert "gtid_mode=ON" in mysql_msg


@pytest.mark.parametrize("mode", ["OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE"])
def test_mysql_gtid_mode_must_be_on(mode: str) -> None:
    [msg] = binlog_problems(info(MYSQL, gtid_mode=mode), "source h:1")
    assert f"gtid_mode is {mode}; tablemover needs ON" in msg
    assert "SET GLOBAL gtid_mode=ON" in msg


def test_mariadb_has_no_gtid_mode() -> None:
    assert binlog_problems(info(MARIADB, gtid_mode=None), "source h:1") == []


def test_everything_wrong_reports_everything() -> None:
    broken = info(MYSQL, log_bin=False, binlog_format="MIXED", binlog_row_image="NOBLOB", gtid_mode="OFF")
    assert len(binlog_problems(broken, "source h:1")) == 4


def test_same_server() -> None:
    src = info()
    assert same_server_problems(src, replace(src, server_id=2), "source a:1", "target b:1") == []
    [msg] = same_server_problems(src, src, "source a:3306", "target b:3306")
    assert "source a:3306 and target b:3306 are the same server" in msg
    assert "server_id 1" in msg
    assert "[target] host/port" in msg
    mysql = info(MYSQL)
    [msg] = same_server_problems(mysql, replace(mysql, hostname="other"), "source a:1", "target b:1")
    assert mysql.server_uuid is not None and mysql.server_uuid in msg


# =========================================================================== table rules


def _schema(indexes: tuple[Index, ...], nullable: bool = False) -> TableSchema:
    columns = (
        Column("id", 0, "int", "int(11)", nullable, False, None),
        Column("code", 1, "varchar", "varchar(10)", nullable, False, "utf8mb4"),
    )
    return TableSchema("app", "orders", columns, indexes, "CREATE TABLE ...", (), ())


def test_chunk_key_rule() -> None:
    pk = Index("PRIMARY", ("id",), True, False)
    assert chunk_key_problems(_schema((pk,)), "orders") == []
    assert chunk_key_problems(_schema((Index("u", ("code",), True, False),)), "orders") == []
    no_key = [
        (),
        (Index("k", ("id",), False, False),),
        (Index("prefix", ("code",), True, True),),
    ]
    for indexes in no_key:
        [msg] = chunk_key_problems(_schema(indexes), "orders")
        assert msg.startswith(
            "table app.orders has no primary or unique key: add one or remove it from [move] tables"
        )
    [msg] = chunk_key_problems(_schema((Index("u", ("code",), True, False),), nullable=True), "orders")
    assert "NOT NULL" in msg


def test_foreign_key_message() -> None:
    fk = ForeignKey("app", "order_items", "fk_order", "order_id", "app", "orders")
    [msg] = foreign_key_problems("app", "orders", [fk])
    assert "table app.orders has foreign keys: app.order_items.fk_order (order_id) -> app.orders" in msg
    assert "cannot be kept across two clusters" in msg
    assert "ALTER TABLE `app`.`order_items` DROP FOREIGN KEY `fk_order`;" in msg
    assert foreign_key_problems("app", "orders", []) == []


def test_trigger_message() -> None:
    [msg] = trigger_problems("app", "orders", ("trg_ins", "trg_upd"))
    assert "table app.orders has triggers (trg_ins, trg_upd)" in msg
    assert "would not fire" in msg
    assert "DROP TRIGGER `app`.`trg_ins`; DROP TRIGGER `app`.`trg_upd`;" in msg
    assert trigger_problems("app", "orders", ()) == []


def test_engine_rule() -> None:
    assert engine_problems("app", "t", "InnoDB", "source h:1") == []
    [msg] = engine_problems("app", "t", "MyISAM", "source h:1")
    assert "uses the MyISAM engine; tablemover needs InnoDB" in msg
    assert "ALTER TABLE `app`.`t` ENGINE=InnoDB" in msg


def test_window_requirements_add_the_reverse_feed_and_the_renames_back() -> None:
    plain = move_section("tm_x", ("a",), target_database="tm_x_dst")
    window = move_section("tm_x", ("a",), target_database="tm_x_dst", rollback_window_s=60)

    def added(side: str) -> set[tuple[str, str]]:
        pick = source_requirements if side == "source" else target_requirements
        before = {(r.privileges[0], r.object_name) for r in pick(plain)}
        return {(r.privileges[0], r.object_name) for r in pick(window)} - before

    assert added("source") == {
        ("UPDATE", "tm_x._a_moved"),
        ("DELETE", "tm_x._a_moved"),
        ("ALTER", "tm_x._a_moved"),
        ("CREATE", "tm_x.a"),
        ("INSERT", "tm_x.a"),
        *((p, "_tablemover.*") for p in ("SELECT", "INSERT", "DELETE", "CREATE", "DROP")),
    }
    # (ALTER and DROP on the target table, which the rollback's RENAME needs, every move has.)
    assert added("target") == {
        ("REPLICATION SLAVE", "*.*"),
        ("REPLICATION CLIENT", "*.*"),
        ("CREATE", "tm_x_dst._a_rolledback"),
        ("INSERT", "tm_x_dst._a_rolledback"),
    }


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"binlog_row_value_options": "PARTIAL_JSON"},
            ["PARTIAL_UPDATE_ROWS_EVENT", "binlog_row_value_options=''"],
        ),
        ({"binlog_transaction_compression": "ON"}, ["TRANSACTION_PAYLOAD_EVENT", "compression=OFF"]),
    ],
)
def test_mysql_settings_that_write_refused_events(settings: dict[str, str], words: list[str]) -> None:
    problems = binlog_event_problems(Flavor.MYSQL, settings, "source db1:3306")
    assert len(problems) == 1 and all(w in problems[0] for w in words), problems
    assert problems[0].startswith("source db1:3306")


def test_default_and_mariadb_binlog_event_settings_pass() -> None:
    defaults = {"binlog_row_value_options": "", "binlog_transaction_compression": "OFF"}
    assert binlog_event_problems(Flavor.MYSQL, defaults, "source") == []
    # MariaDB's compressed binlog is reproduced (the stream inflates it).
    assert binlog_event_problems(Flavor.MARIADB, {"log_bin_compress": "ON"}, "source") == []
