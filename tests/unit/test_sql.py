"""Unit tests for tablemover.sql: the pure SQL text builders, string for string.

The keyset predicate is also checked semantically: a tiny evaluator reads the generated OR-expansion
and its argument list back and evaluates them against a row, which must agree with Python's
lexicographic tuple comparison (the order MySQL walks a composite index in).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover import sql

FAST = settings(max_examples=200, deadline=None)

D = "`db`.`t`"


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders", "`orders`"),
        ("select", "`select`"),
        ("a`b", "`a``b`"),
        ("`", "````"),
        ("``x``", "`````x`````"),
        ("with space", "`with space`"),
        ("", "``"),
    ],
)
def test_quote_ident(name: str, expected: str) -> None:
    assert sql.quote_ident(name) == expected


@given(st.text(min_size=1, max_size=20))
@FAST
def test_quote_ident_round_trips(name: str) -> None:
    quoted = sql.quote_ident(name)
    assert quoted.startswith("`") and quoted.endswith("`")
    inner = quoted[1:-1]
    # Every backtick inside is doubled, so no single backtick can end the identifier early.
    assert re.fullmatch(r"(?:[^`]|``)*", inner)
    assert inner.replace("``", "`") == name


def test_qualified() -> None:
    assert sql.qualified("app", "orders") == "`app`.`orders`"
    assert sql.qualified("a`pp", "or`ders") == "`a``pp`.`or``ders`"


def test_column_list_and_placeholder() -> None:
    assert sql.column_list(["a", "b`c"]) == "`a`, `b``c`"
    assert sql.row_placeholder(3) == "(%s, %s, %s)"
    assert sql.row_placeholder(1) == "(%s)"


# --------------------------------------------------------------------------- INSERT / DELETE


def test_insert_rows_default_verb_is_insert_ignore() -> None:
    assert sql.insert_rows("db", "t", ["a", "b"], 2) == (
        "INSERT IGNORE INTO `db`.`t` (`a`, `b`) VALUES (%s, %s), (%s, %s)"
    )


@pytest.mark.parametrize("verb", ["INSERT IGNORE", "REPLACE", "INSERT"])
def test_insert_rows_verbs(verb: str) -> None:
    assert sql.insert_rows("db", "t", ["id"], 1, verb=verb) == f"{verb} INTO `db`.`t` (`id`) VALUES (%s)"


@pytest.mark.parametrize(
    "verb", ["UPDATE", "insert ignore", "replace", "DELETE", "INSERT IGNORE; DROP TABLE x; --", ""]
)
def test_insert_rows_rejects_other_verbs(verb: str) -> None:
    with pytest.raises(ValueError, match="unsupported verb"):
        sql.insert_rows("db", "t", ["id"], 1, verb=verb)


def test_insert_rows_placeholder_count() -> None:
    text = sql.insert_rows("db", "t", ["a", "b", "c"], 4, verb="REPLACE")
    assert text.count("%s") == 12


def test_delete_keys_single_column() -> None:
    assert sql.delete_keys("db", "t", ["id"], 3) == "DELETE FROM `db`.`t` WHERE `id` IN (%s, %s, %s)"
    assert sql.delete_keys("db", "t", ["id"], 1) == "DELETE FROM `db`.`t` WHERE `id` IN (%s)"


def test_delete_keys_composite() -> None:
    assert sql.delete_keys("db", "t", ["a", "b"], 2) == (
        "DELETE FROM `db`.`t` WHERE (`a`, `b`) IN ((%s, %s), (%s, %s))"
    )
    assert sql.delete_keys("db", "t", ["a", "b", "c"], 1) == (
        "DELETE FROM `db`.`t` WHERE (`a`, `b`, `c`) IN ((%s, %s, %s))"
    )


# --------------------------------------------------------------------------- keyset predicate


def test_key_after_one_column() -> None:
    assert sql.key_after(["id"]) == "((`id` > %s))"
    assert sql.key_after_args([7]) == [7]


def test_key_after_two_columns() -> None:
    assert sql.key_after(["a", "b"]) == "((`a` > %s) OR (`a` = %s AND `b` > %s))"
    assert sql.key_after_args([1, 2]) == [1, 1, 2]


def test_key_after_three_columns() -> None:
    assert sql.key_after(["a", "b", "c"]) == (
        "((`a` > %s) OR (`a` = %s AND `b` > %s) OR (`a` = %s AND `b` = %s AND `c` > %s))"
    )
    assert sql.key_after_args(["x", "y", "z"]) == ["x", "x", "y", "x", "y", "z"]


def test_key_after_quotes_names() -> None:
    assert sql.key_after(["we`ird", "order"]) == "((`we``ird` > %s) OR (`we``ird` = %s AND `order` > %s))"


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
def test_key_after_placeholders_match_args(width: int) -> None:
    names = [f"k{i}" for i in range(width)]
    values = list(range(100, 100 + width))
    assert sql.key_after(names).count("%s") == len(sql.key_after_args(values)) == width * (width + 1) // 2


_COND = re.compile(r"`((?:[^`]|``)+)` (=|>) %s")


def evaluate_key_after(text: str, args: Sequence[object], row: dict[str, int]) -> bool:
    """Evaluate the text of :func:`sql.key_after` with its arguments against a row, as SQL would."""
    assert text.startswith("(") and text.endswith(")")
    terms = text[1:-1].split(" OR ")
    pending = list(args)
    result = False
    for term in terms:
        assert term.startswith("(") and term.endswith(")"), term
        holds = True
        for cond in term[1:-1].split(" AND "):
            match = _COND.fullmatch(cond)
            assert match is not None, cond
            column, op = match.group(1).replace("``", "`"), match.group(2)
            value = pending.pop(0)
            assert isinstance(value, int)
            holds = holds and (row[column] == value if op == "=" else row[column] > value)
        result = result or holds
    assert not pending, "every argument is consumed, in order"
    return result


_NAMES = ["a", "b`b", "c c"]


@given(
    st.integers(min_value=1, max_value=3).flatmap(
        lambda n: st.tuples(
            st.tuples(*[st.integers(-3, 3)] * n),
            st.lists(st.tuples(*[st.integers(-3, 3)] * n), min_size=1, max_size=10),
        )
    )
)
@FAST
def test_key_after_is_lexicographic(case: tuple[tuple[int, ...], list[tuple[int, ...]]]) -> None:
    after, rows = case
    key = _NAMES[: len(after)]
    text = sql.key_after(key)
    args = sql.key_after_args(after)
    for row_key in rows:
        row = dict(zip(key, row_key, strict=True))
        assert evaluate_key_after(text, args, row) == (row_key > after), (after, row_key)


@given(
    st.integers(min_value=1, max_value=3).flatmap(
        lambda n: st.tuples(
            st.tuples(*[st.integers(-3, 3)] * n),
            st.tuples(*[st.integers(-3, 3)] * n),
            st.lists(st.tuples(*[st.integers(-3, 3)] * n), min_size=1, max_size=10),
        )
    )
)
@FAST
def test_range_predicate_is_half_open(
    case: tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, ...]]],
) -> None:
    """checksum_range/select_range use ``after(lower) AND NOT after(upper)``: exactly (lower, upper]."""
    lower, upper, rows = case
    key = _NAMES[: len(lower)]
    text = sql.key_after(key)
    for row_key in rows:
        row = dict(zip(key, row_key, strict=True))
        inside = evaluate_key_after(text, sql.key_after_args(lower), row) and not evaluate_key_after(
            text, sql.key_after_args(upper), row
        )
        assert inside == (lower < row_key <= upper)


# --------------------------------------------------------------------------- chunk reads


def test_select_chunk_first_chunk() -> None:
    assert sql.select_chunk("db", "t", ["id", "v"], ["id"], after=False, limit=100) == (
        "SELECT `id`, `v` FROM `db`.`t` ORDER BY `id` LIMIT 100 LOCK IN SHARE MODE"
    )


def test_select_chunk_after_key() -> None:
    assert sql.select_chunk("db", "t", ["a", "b", "v"], ["a", "b"], after=True, limit=50) == (
        "SELECT `a`, `b`, `v` FROM `db`.`t` WHERE ((`a` > %s) OR (`a` = %s AND `b` > %s)) "
        "ORDER BY `a`, `b` LIMIT 50 LOCK IN SHARE MODE"
    )


def test_select_chunk_without_lock() -> None:
    assert sql.select_chunk("db", "t", ["id"], ["id"], after=True, limit=10, lock=False) == (
        "SELECT `id` FROM `db`.`t` WHERE ((`id` > %s)) ORDER BY `id` LIMIT 10"
    )


def test_select_chunk_locks_by_default() -> None:
    text = sql.select_chunk("db", "t", ["id"], ["id"], after=False, limit=42)
    assert text.endswith("LIMIT 42 LOCK IN SHARE MODE")
    assert "FOR SHARE" not in text  # MariaDB does not accept it


def test_select_chunk_placeholders_match_args() -> None:
    text = sql.select_chunk("db", "t", ["a", "b", "c", "v"], ["a", "b", "c"], after=True, limit=5)
    assert text.count("%s") == len(sql.key_after_args((1, 2, 3)))


# --------------------------------------------------------------------------- RENAME


def test_rename_tables_multi_table() -> None:
    text = sql.rename_tables("app", [("a", "_a_moved"), ("b", "_b_moved")], "tablemover move=x")
    assert text == (
        "RENAME /* tablemover move=x */ TABLE `app`.`a` TO `app`.`_a_moved`, `app`.`b` TO `app`.`_b_moved`"
    )


def test_rename_tables_single_and_quoting() -> None:
    assert sql.rename_tables("a`b", [("o`1", "_o`1_moved")], "c") == (
        "RENAME /* c */ TABLE `a``b`.`o``1` TO `a``b`.`_o``1_moved`"
    )


def _comment_closes_where_intended(text: str) -> bool:
    # The comment must run from the first "/*" to the first "*/", which must be the one we wrote.
    start = text.index("/*")
    end = text.index("*/", start + 2)
    return text[end:].startswith("*/ TABLE `")


@pytest.mark.parametrize(
    "comment",
    ["x */ DROP TABLE app.users; /*", "*/", "**/", "*/*/", "a*/b", "***///", "*", "/", "end*"],
)
def test_rename_tables_comment_cannot_close_early(comment: str) -> None:
    text = sql.rename_tables("app", [("a", "_a_moved")], comment)
    assert _comment_closes_where_intended(text), text
    assert text.endswith("TABLE `app`.`a` TO `app`.`_a_moved`")


@given(st.text(alphabet="*/ ab!+", max_size=20))
@FAST
def test_rename_tables_comment_sanitised_property(comment: str) -> None:
    text = sql.rename_tables("app", [("a", "_a_moved")], comment)
    assert _comment_closes_where_intended(text), text
    assert text.count("*/") == 1


# --------------------------------------------------------------------------- CREATE TABLE for the target

_SHOW_CREATE = (
    "CREATE TABLE `orders` (\n"
    "  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n"
    "  `note` varchar(40) DEFAULT NULL,\n"
    "  PRIMARY KEY (`id`)\n"
    ") ENGINE=InnoDB AUTO_INCREMENT=4242 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
)


def test_target_create_statement_basic() -> None:
    assert sql.target_create_statement(_SHOW_CREATE, "tgt") == (
        "CREATE TABLE `tgt`.`orders` (\n"
        "  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n"
        "  `note` varchar(40) DEFAULT NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
    )


def test_target_create_statement_without_counter_is_unchanged_but_qualified() -> None:
    show = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
    assert sql.target_create_statement(show, "db") == (
        "CREATE TABLE `db`.`t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
    )


def test_target_create_statement_keeps_column_named_auto_increment() -> None:
    show = (
        "CREATE TABLE `t` (\n"
        "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `auto_increment` int(11) NOT NULL DEFAULT 5,\n"
        "  `AUTO_INCREMENT` int(11) DEFAULT NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=latin1"
    )
    assert sql.target_create_statement(show, "db") == (
        "CREATE TABLE `db`.`t` (\n"
        "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `auto_increment` int(11) NOT NULL DEFAULT 5,\n"
        "  `AUTO_INCREMENT` int(11) DEFAULT NULL,\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=latin1"
    )


def test_target_create_statement_keeps_default_string_mentioning_auto_increment() -> None:
    """Only the table option goes; text inside a column's DEFAULT string is data and stays verbatim."""
    show = (
        "CREATE TABLE `t` (\n"
        "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `note` varchar(40) DEFAULT 'next AUTO_INCREMENT=7 here',\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4"
    )
    assert sql.target_create_statement(show, "tgt") == (
        "CREATE TABLE `tgt`.`t` (\n"
        "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `note` varchar(40) DEFAULT 'next AUTO_INCREMENT=7 here',\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def test_target_create_statement_default_string_without_leading_space_untouched() -> None:
    show = (
        "CREATE TABLE `t` (\n"
        "  `id` int(11) NOT NULL,\n"
        "  `note` varchar(40) DEFAULT 'AUTO_INCREMENT=7',\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB AUTO_INCREMENT=3"
    )
    assert sql.target_create_statement(show, "tgt") == (
        "CREATE TABLE `tgt`.`t` (\n"
        "  `id` int(11) NOT NULL,\n"
        "  `note` varchar(40) DEFAULT 'AUTO_INCREMENT=7',\n"
        "  PRIMARY KEY (`id`)\n"
        ") ENGINE=InnoDB"
    )


@pytest.mark.parametrize(
    ("show_name", "database", "expected_prefix"),
    [
        ("`we``ird`", "tgt", "CREATE TABLE `tgt`.`we``ird` ("),
        ("`ends``` ", "tgt", "CREATE TABLE `tgt`.`ends``` ("),
        ("`orders`", "t`db", "CREATE TABLE `t``db`.`orders` ("),
        ("`my table`", "tgt", "CREATE TABLE `tgt`.`my table` ("),
    ],
)
def test_target_create_statement_backticks(show_name: str, database: str, expected_prefix: str) -> None:
    show = (
        f"CREATE TABLE {show_name.strip()} (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
    )
    out = sql.target_create_statement(show, database)
    assert out == expected_prefix + "\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"


@pytest.mark.parametrize("text", ["CREATE VIEW `v` AS SELECT 1", "SELECT 1", "", "create table `t` (id int)"])
def test_target_create_statement_rejects_non_create_table(text: str) -> None:
    with pytest.raises(ValueError, match="not a CREATE TABLE"):
        sql.target_create_statement(text, "db")


# --------------------------------------------------------------------------- verify queries

_DIGEST = "MD5(CONCAT_WS('#', `id`, `v`, ISNULL(`id`), ISNULL(`v`)))"
_CHECKSUM_HEAD = (
    f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT({_DIGEST}, 16), 16, 10) AS UNSIGNED)), 0), "
    f"COALESCE(BIT_XOR(CAST(CONV(RIGHT({_DIGEST}, 16), 16, 10) AS UNSIGNED)), 0) FROM `db`.`t`"
)


def test_row_digest() -> None:
    assert sql.row_digest(["id", "v"]) == _DIGEST


@pytest.mark.parametrize(
    ("lower", "upper", "where"),
    [
        (False, False, ""),
        (True, False, " WHERE ((`id` > %s))"),
        (False, True, " WHERE NOT ((`id` > %s))"),
        (True, True, " WHERE ((`id` > %s)) AND NOT ((`id` > %s))"),
    ],
)
def test_checksum_range_shapes(lower: bool, upper: bool, where: str) -> None:
    text = sql.checksum_range("db", "t", ["id", "v"], ["id"], lower=lower, upper=upper)
    assert text == _CHECKSUM_HEAD + where


def test_checksum_range_composite_key() -> None:
    text = sql.checksum_range("db", "t", ["id", "v"], ["id", "v"], lower=True, upper=True)
    pred = "((`id` > %s) OR (`id` = %s AND `v` > %s))"
    assert text == f"{_CHECKSUM_HEAD} WHERE {pred} AND NOT {pred}"
    assert text.count("%s") == 2 * len(sql.key_after_args((1, 2)))


def test_key_boundary_shapes() -> None:
    assert sql.key_boundary("db", "t", ["a", "b"], after=False, step=100) == (
        "SELECT `a`, `b` FROM `db`.`t` ORDER BY `a`, `b` LIMIT 1 OFFSET 99"
    )
    assert sql.key_boundary("db", "t", ["id"], after=True, step=1) == (
        "SELECT `id` FROM `db`.`t` WHERE ((`id` > %s)) ORDER BY `id` LIMIT 1 OFFSET 0"
    )


@pytest.mark.parametrize(
    ("lower", "upper", "where"),
    [
        (False, False, ""),
        (True, False, " WHERE ((`id` > %s))"),
        (False, True, " WHERE NOT ((`id` > %s))"),
        (True, True, " WHERE ((`id` > %s)) AND NOT ((`id` > %s))"),
    ],
)
def test_select_range_shapes(lower: bool, upper: bool, where: str) -> None:
    text = sql.select_range("db", "t", ["id", "v"], ["id"], lower=lower, upper=upper)
    assert text == f"SELECT `id`, `v` FROM {D}{where} ORDER BY `id`"
    assert "LOCK IN SHARE MODE" not in text
