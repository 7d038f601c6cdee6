"""The split of ``preflight/grants``: three pure modules (SHOW GRANTS lines, matching, the fix) and
the module that re-exports them for the privilege check; properties that hold across all three."""

from __future__ import annotations

import ast
import inspect

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tablemover import sql
from tablemover.flavor import Flavor
from tablemover.preflight import grant_fix, grant_lines, grant_match, grants
from tablemover.preflight.grant_fix import grant_statements, plan_fix
from tablemover.preflight.grant_lines import GrantParseError, parse_grant_line, parse_show_grants
from tablemover.preflight.grant_match import NameRules, Requirement, missing

SPLIT = (grant_lines, grant_match, grant_fix)


def imports(module: object) -> tuple[set[str], set[str]]:
    """(modules a module imports from, names it imports), read from its source."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    modules: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
            names |= {alias.asname or alias.name for alias in node.names}
    return modules, names


def public(module: object) -> set[str]:
    """Names a module defines itself (not those it imports), without a leading underscore."""
    imported = imports(module)[1]
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name not in imported
    }


def test_grants_reexports_every_public_name_of_the_split() -> None:
    """``privileges`` (the check) and older imports read everything from ``grants``, unchanged."""
    defined = {name: module for module in SPLIT for name in public(module)}
    assert set(grants.__all__) == set(defined)
    for name, module in defined.items():
        assert getattr(grants, name) is getattr(module, name), name
    assert public(grants) == set()  # it defines nothing of its own


@pytest.mark.parametrize("module", SPLIT, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_the_split_modules_are_pure(module: object) -> None:
    """No database, no sockets, no files: only the standard library's pure parts and each other."""
    allowed = {
        "__future__",
        "collections.abc",
        "dataclasses",
        "enum",
        "re",
        "tablemover.flavor",
        "tablemover.preflight.grant_lines",
        "tablemover.preflight.grant_match",
        # identifier quoting, so fixes quote names as every statement tablemover sends does; it
        # imports only the standard library (checked below)
        "tablemover.sql",
    }
    imported = imports(module)[0]
    assert imported <= allowed, imported - allowed
    assert {m for m in imports(sql)[0] if m.startswith("tablemover")} == set()


TOKENS = ["GRANT", "REVOKE", "ON", "TO", "FROM", "SELECT", "ALL", "TABLE", "PROCEDURE", "PROXY", "WITH"]
PUNCT = [",", "(", ")", ".", "*", "@", ";", "`a`", "`a``b`", "'b'", "'b\\'c'", '"c"', "\\", "`", "'", '"']


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(st.sampled_from(TOKENS + PUNCT), max_size=14).map(" ".join),
        st.lists(st.sampled_from(TOKENS + PUNCT), max_size=14).map("".join),
    )
)
def test_any_line_is_read_or_refused_with_grant_parse_error(line: str) -> None:
    """SHOW GRANTS text from any server version: a line is read, skipped (None) or refused with
    GrantParseError, which the check reports; never another exception that would end the check."""
    try:
        parsed = parse_grant_line(line)
    except GrantParseError:
        assert parse_show_grants([line]).unparsed == (line,)
        return
    assert parsed is None or isinstance(
        parsed, grant_lines.Grant | grant_lines.PartialRevoke | grant_lines.RoleGrant
    )


names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    database=names | st.sampled_from(["tm_x", "a%b", "a\\_b", "x`y", "o'b", "ü_ñ"]),
    table=names,
    user=names | st.sampled_from(["o'brien", "a@b", "m\\x"]),
    host=st.sampled_from(["%", "localhost", "10.0.%"]),
    flavor=st.sampled_from(list(Flavor)),
    wildcards=st.booleans(),
    case_sensitive=st.booleans(),
)
def test_the_printed_grants_read_back_as_what_they_fix(
    database: str,
    table: str,
    user: str,
    host: str,
    flavor: Flavor,
    wildcards: bool,
    case_sensitive: bool,
) -> None:
    """The GRANT statements of a fix, read back by the SHOW GRANTS parser, cover every requirement:
    names with quotes, backticks, wildcards and escapes included (the three modules agree)."""
    # Without wildcards (MySQL partial_revokes=ON) the matcher still reads "\\" as an escape in a
    # database grant while the fix writes the name as it is: which one the server does is not
    # pinned down yet, so such names are left out here.
    assume(wildcards or "\\" not in database)
    rules = NameRules(wildcards=wildcards, case_sensitive=case_sensitive, ordering=flavor)
    requirements = [
        Requirement(("REPLICATION CLIENT",)),
        Requirement(("SELECT",), database, table),
        Requirement(("CREATE", "INSERT"), database, None),
    ]
    plan = plan_fix([], requirements, rules)
    statements = grant_statements(plan, f"{user}@{host}", flavor, rules)
    read_back = parse_show_grants(s.rstrip(";") for s in statements)
    assert read_back.unparsed == (), statements
    assert missing([read_back], requirements, rules) == [], statements
