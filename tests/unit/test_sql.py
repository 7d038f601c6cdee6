"""Unit tests for tablemover.sql: the pure SQL text builders, string for string.

The keyset predicates are also checked semantically: a tiny evaluator reads the generated OR-expansion
and its argument list back and evaluates them against a row, which must agree with Python's
lexicographic tuple comparison (the order MySQL walks a composite index in), ENUM columns included
(compared by member number, as IN lists).
"""

from __future__ import annotations

import re

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


def test_insert_rows_default_verb_is_a_plain_insert() -> None:
    assert (
        sql.insert_rows("db", "t", ["a", "b"], 2)
        == "INSERT INTO `db`.`t` (`a`, `b`) VALUES (%s, %s), (%s, %s)"
    )


@pytest.mark.parametrize("verb", ["REPLACE", "INSERT"])
def test_insert_rows_verbs(verb: str) -> None:
    assert sql.insert_rows("db", "t", ["id"], 1, verb=verb) == f"{verb} INTO `db`.`t` (`id`) VALUES (%s)"


@pytest.mark.parametrize(
    "verb",
    ["INSERT IGNORE", "UPDATE", "insert", "replace", "DELETE", "INSERT IGNORE; DROP TABLE x; --", ""],
)
def test_insert_rows_rejects_other_verbs(verb: str) -> None:
    # INSERT IGNORE turns truncation and out-of-range errors into warnings: never again.
    with pytest.raises(ValueError, match="unsupported verb"):
        sql.insert_rows("db", "t", ["id"], 1, verb=verb)


def test_insert_keeping_existing_rows_skips_only_duplicates() -> None:
    text = sql.insert_rows("db", "t", ["id", "v"], 2, keep_existing_on="id")
    assert text == (
        "INSERT INTO `db`.`t` (`id`, `v`) VALUES (%s, %s), (%s, %s) ON DUPLICATE KEY UPDATE `id` = `id`"
    )
    assert "IGNORE" not in text
    bulk = sql.insert_rows("db", "t", ["id", "v"], 1, keep_existing_on="id", marker="?")
    assert bulk == "INSERT INTO `db`.`t` (`id`, `v`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `id` = `id`"


def test_insert_keeping_existing_quotes_the_key_and_refuses_replace() -> None:
    assert sql.insert_rows("db", "t", ["a`b"], 1, keep_existing_on="a`b").endswith(
        "ON DUPLICATE KEY UPDATE `a``b` = `a``b`"
    )
    with pytest.raises(ValueError, match="only applies to INSERT"):
        sql.insert_rows("db", "t", ["id"], 1, verb="REPLACE", keep_existing_on="id")


def test_insert_rows_literal_nulls() -> None:
    text = sql.insert_rows("db", "t", ["a", "b", "c"], 1, verb="REPLACE", marker="?", literal_null=(1,))
    assert text == "REPLACE INTO `db`.`t` (`a`, `b`, `c`) VALUES (?, NULL, ?)"
    assert sql.row_placeholder(3, "%s", (0, 2)) == "(NULL, %s, NULL)"


def test_insert_rows_placeholder_count() -> None:
    text = sql.insert_rows("db", "t", ["a", "b", "c"], 4, verb="REPLACE")
    assert text.count("%s") == 12


def test_delete_keys_single_column() -> None:
    assert sql.delete_keys("db", "t", ["id"], 3) == "DELETE FROM `db`.`t` WHERE `id` IN (%s, %s, %s)"
    assert sql.delete_keys("db", "t", ["id"], 1) == "DELETE FROM `db`.`t` WHERE `id` IN (%s)"


def test_delete_keys_composite_is_an_or_of_equalities() -> None:
    # Not (a, b) IN ((%s, %s)): MariaDB 10.11 runs that as a full table scan.
    assert sql.delete_keys("db", "t", ["a", "b"], 2) == (
        "DELETE FROM `db`.`t` WHERE (`a` = %s AND `b` = %s) OR (`a` = %s AND `b` = %s)"
    )
    assert sql.delete_keys("db", "t", ["a", "b", "c"], 1) == (
        "DELETE FROM `db`.`t` WHERE (`a` = %s AND `b` = %s AND `c` = %s)"
    )
    assert " IN " not in sql.delete_keys("db", "t", ["a", "b"], 50)
    assert sql.delete_keys("db", "t", ["a", "b"], 50).count("%s") == 100
    with pytest.raises(ValueError):
        sql.delete_keys("db", "t", ["id"], 0)


# --------------------------------------------------------------------------- keyset predicate

COLORS = sql.Col("e", sql.Kind.ENUM, ("red", "green", "blue", "orange"))


def test_key_after_one_column() -> None:
    assert sql.key_after(["id"], [7]) == ("((`id` > %s))", [7])


def test_key_after_two_columns() -> None:
    assert sql.key_after(["a", "b"], [1, 2]) == ("((`a` > %s) OR (`a` = %s AND `b` > %s))", [1, 1, 2])


def test_key_after_three_columns() -> None:
    assert sql.key_after(["a", "b", "c"], ["x", "y", "z"]) == (
        "((`a` > %s) OR (`a` = %s AND `b` > %s) OR (`a` = %s AND `b` = %s AND `c` > %s))",
        ["x", "x", "y", "x", "y", "z"],
    )


def test_key_after_quotes_names() -> None:
    assert sql.key_after(["we`ird", "order"], [1, 2]).text == (
        "((`we``ird` > %s) OR (`we``ird` = %s AND `order` > %s))"
    )


def test_key_after_needs_one_value_per_column() -> None:
    with pytest.raises(ValueError):
        sql.key_after(["a", "b"], [1])


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
def test_key_after_placeholders_match_args(width: int) -> None:
    names = [f"k{i}" for i in range(width)]
    pred = sql.key_after(names, list(range(100, 100 + width)))
    assert pred.text.count("%s") == len(pred.args) == width * (width + 1) // 2


def test_key_at_or_before_shapes() -> None:
    assert sql.key_at_or_before(["id"], [7]) == ("((`id` <= %s))", [7])
    assert sql.key_at_or_before(["a", "b"], [1, 2]) == ("((`a` < %s) OR (`a` = %s AND `b` <= %s))", [1, 1, 2])


def test_enum_compares_by_member_number_as_an_in_list() -> None:
    # The bug: after (22, 'red'), "e > 'red'" compared names and skipped (22, 'green').
    pred = sql.key_after(["id", COLORS], [22, "red"])
    assert pred == ("((`id` > %s) OR (`id` = %s AND `e` IN (%s, %s, %s)))", [22, 22, 2, 3, 4])
    # Equality keeps the name (exact, and no filesort); "before" lists the smaller numbers, 0 (the
    # '' error value) first.
    assert sql.key_after([COLORS, "id"], ["blue", 5]) == (
        "((`e` IN (%s)) OR (`e` = %s AND `id` > %s))",
        [4, "blue", 5],
    )
    assert sql.key_at_or_before([COLORS], ["green"]) == ("((`e` IN (%s, %s, %s)))", [0, 1, 2])
    assert sql.key_at_or_before([COLORS, "id"], ["red", 5]) == (
        "((`e` IN (%s)) OR (`e` = %s AND `id` <= %s))",
        [0, "red", 5],
    )


def test_enum_after_the_last_member_drops_the_impossible_term() -> None:
    assert sql.key_after([COLORS, "id"], ["orange", 5]) == ("((`e` = %s AND `id` > %s))", ["orange", 5])
    assert sql.key_after([COLORS], ["orange"]) == ("(FALSE)", [])


def test_enum_member_numbers() -> None:
    assert [COLORS.arg(m) for m in ("red", "green", "blue", "orange")] == [1, 2, 3, 4]
    assert COLORS.arg("") == 0  # what a non-strict server stores for a non-member
    assert COLORS.arg("GREEN") == 2  # information_schema may report members in lower case
    assert COLORS.arg(3) == 3
    with pytest.raises(ValueError, match="not a member"):
        COLORS.arg("purple")
    with_empty = sql.Col("e", sql.Kind.ENUM, ("", "a"))
    assert with_empty.arg("") == 1  # '' is a real member here


def test_set_compares_by_bitmask() -> None:
    flags = sql.Col.of("s", "set", ("a", "b", "c"))
    assert flags.kind is sql.Kind.SET
    assert [flags.arg(v) for v in ("", "a", "b", "a,b", "c", "a,b,c")] == [0, 1, 2, 3, 4, 7]
    assert flags.arg(frozenset({"c", "a"})) == 5
    assert sql.key_after([flags], ["a,c"]) == ("((`s` IN (%s, %s)))", [6, 7])
    many = sql.Col.of("s", "set", [f"m{i}" for i in range(11)])  # 2048 bitmasks: too many to list
    assert many.domain is None
    assert sql.key_after([many], ["m0,m10"]) == ("((`s` > %s))", [1025])


def test_large_enum_falls_back_to_a_plain_comparison() -> None:
    big = sql.Col.of("e", "enum", [f"v{i}" for i in range(sql.MAX_IN_LIST)])
    assert big.domain is None
    assert sql.key_after([big], ["v9"]) == ("((`e` > %s))", [10])


def test_bit_compares_as_an_unsigned_integer() -> None:
    # A _binary literal compared with a BIT column selects nothing on a real server.
    bits = sql.Col.of("b", "bit")
    assert bits.arg(b"\x13\x88") == 5000
    assert bits.arg(b"\xff" * 8) == 2**64 - 1
    assert sql.key_after([bits], [b"\x01"]) == ("((`b` > %s))", [1])


def test_float_columns_are_read_as_double() -> None:
    floats = sql.Col.of("f", "float")
    assert floats.read == "CAST(`f` AS DOUBLE)"
    assert sql.Col.of("d", "double").read == "`d`"
    assert sql.read_list(["id", floats]) == "`id`, CAST(`f` AS DOUBLE)"


@pytest.mark.parametrize(
    ("data_type", "kind"),
    [
        ("enum", sql.Kind.ENUM),
        ("SET", sql.Kind.SET),
        ("bit", sql.Kind.BIT),
        ("float", sql.Kind.FLOAT),
        ("double", sql.Kind.VALUE),
        ("decimal", sql.Kind.VALUE),
        ("year", sql.Kind.VALUE),
        ("datetime", sql.Kind.VALUE),
        ("bigint", sql.Kind.VALUE),
        ("varbinary", sql.Kind.VALUE),
        ("varchar", sql.Kind.VALUE),
    ],
)
def test_col_kinds(data_type: str, kind: sql.Kind) -> None:
    col = sql.Col.of("c", data_type, ("x",))
    assert col.kind is kind
    assert col.members == (("x",) if kind in (sql.Kind.ENUM, sql.Kind.SET) else ())


_COND = re.compile(r"`((?:[^`]|``)+)` (=|>|<|<=) %s|`((?:[^`]|``)+)` IN \(((?:%s, )*%s)\)")


def evaluate(pred: sql.Statement, row: dict[str, int]) -> bool:
    """Evaluate a keyset predicate's text with its arguments against a row of numbers, as SQL would."""
    text, pending = pred.text, list(pred.args)
    assert text.startswith("(") and text.endswith(")")
    if text == "(FALSE)":
        return False
    result = False
    for term in text[1:-1].split(" OR "):
        assert term.startswith("(") and term.endswith(")"), term
        holds = True
        for cond in term[1:-1].split(" AND "):
            match = _COND.fullmatch(cond)
            assert match is not None, cond
            if match.group(1) is not None:
                column, op = match.group(1).replace("``", "`"), match.group(2)
                value = pending.pop(0)
                assert isinstance(value, int)
                ops = {"=": row[column] == value, ">": row[column] > value, "<": row[column] < value}
                holds = holds and ops.get(op, row[column] <= value)
            else:
                column = match.group(3).replace("``", "`")
                listed = [pending.pop(0) for _ in range(match.group(4).count("%s"))]
                holds = holds and row[column] in listed
        result = result or holds
    assert not pending, "every argument is consumed, in order"
    return result


_NAMES = ["a", "b`b", "c c"]


def _key(width: int, enum_at: int | None) -> list[sql.Col]:
    # Numbers -3..3 stand for the values; an ENUM column's members 1..4 (0 = the '' error value).
    return [
        sql.Col(n, sql.Kind.ENUM, ("w", "x", "y", "z")) if i == enum_at else sql.Col(n)
        for i, n in enumerate(_NAMES[:width])
    ]


def _values(key: list[sql.Col]) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*[st.integers(0, 4) if c.kind is sql.Kind.ENUM else st.integers(-3, 3) for c in key])


_keys = st.integers(min_value=1, max_value=3).flatmap(
    lambda n: st.sampled_from([None, *range(n)]).map(lambda at: _key(n, at))
)


@given(_keys.flatmap(lambda key: st.tuples(st.just(key), _values(key), st.lists(_values(key), min_size=1))))
@FAST
def test_key_after_is_lexicographic(
    case: tuple[list[sql.Col], tuple[int, ...], list[tuple[int, ...]]],
) -> None:
    key, after, rows = case
    for row_key in rows:
        row = dict(zip(_NAMES, row_key, strict=False))
        assert evaluate(sql.key_after(key, after), row) == (row_key > after), (after, row_key)
        assert evaluate(sql.key_at_or_before(key, after), row) == (row_key <= after), (after, row_key)


@given(
    _keys.flatmap(
        lambda key: st.tuples(st.just(key), _values(key), _values(key), st.lists(_values(key), min_size=1))
    )
)
@FAST
def test_range_predicate_is_half_open(
    case: tuple[list[sql.Col], tuple[int, ...], tuple[int, ...], list[tuple[int, ...]]],
) -> None:
    """checksum_range/select_range use ``after(lower) AND at_or_before(upper)``: exactly (lower, upper]."""
    key, lower, upper, rows = case
    for row_key in rows:
        row = dict(zip(_NAMES, row_key, strict=False))
        inside = evaluate(sql.key_after(key, lower), row) and evaluate(sql.key_at_or_before(key, upper), row)
        assert inside == (lower < row_key <= upper)


# --------------------------------------------------------------------------- chunk reads


def test_select_chunk_first_chunk() -> None:
    assert sql.select_chunk("db", "t", ["id", "v"], ["id"], after=None, limit=100) == (
        "SELECT `id`, `v` FROM `db`.`t` ORDER BY `id` LIMIT 100 LOCK IN SHARE MODE",
        [],
    )


def test_select_chunk_after_key() -> None:
    assert sql.select_chunk("db", "t", ["a", "b", "v"], ["a", "b"], after=(1, 2), limit=50) == (
        "SELECT `a`, `b`, `v` FROM `db`.`t` WHERE ((`a` > %s) OR (`a` = %s AND `b` > %s)) "
        "ORDER BY `a`, `b` LIMIT 50 LOCK IN SHARE MODE",
        [1, 1, 2],
    )


def test_select_chunk_without_lock() -> None:
    assert sql.select_chunk("db", "t", ["id"], ["id"], after=(3,), limit=10, lock=False).text == (
        "SELECT `id` FROM `db`.`t` WHERE ((`id` > %s)) ORDER BY `id` LIMIT 10"
    )


def test_select_chunk_locks_by_default() -> None:
    text = sql.select_chunk("db", "t", ["id"], ["id"], after=None, limit=42).text
    assert text.endswith("LIMIT 42 LOCK IN SHARE MODE")
    assert "FOR SHARE" not in text  # MariaDB does not accept it


def test_select_chunk_reads_floats_exactly_and_compares_enums_by_number() -> None:
    f = sql.Col.of("f", "float")
    stmt = sql.select_chunk("db", "t", ["id", COLORS, f], ["id", COLORS], after=(1, "blue"), limit=5)
    assert stmt.text.startswith("SELECT `id`, `e`, CAST(`f` AS DOUBLE) FROM `db`.`t` WHERE ")
    assert stmt.text.count("%s") == len(stmt.args) and stmt.args == [1, 1, 4]
    # BIT compares as a number in equalities too.
    bits = sql.Col.of("b", "bit")
    assert sql.key_after([bits, "id"], [b"\x01", 2]).args == [1, 1, 2]


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
# Each row's digest computed once, in a derived table a LIMIT keeps from being merged.
_CHECKSUM_HEAD = (
    "SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(`_tm_h`, 16), 16, 10) AS UNSIGNED)), 0), "
    "COALESCE(BIT_XOR(CAST(CONV(RIGHT(`_tm_h`, 16), 16, 10) AS UNSIGNED)), 0) "
    f"FROM (SELECT {_DIGEST} AS `_tm_h` FROM `db`.`t`"
)
_CHECKSUM_TAIL = " LIMIT 18446744073709551615) AS `_tm_rows`"


def test_row_digest() -> None:
    assert sql.row_digest(["id", "v"]) == _DIGEST
    assert sql.row_digest(["id", sql.Col.of("f", "float")]) == (
        "MD5(CONCAT_WS('#', `id`, CAST(`f` AS DOUBLE), ISNULL(`id`), ISNULL(`f`)))"
    )


_RANGES = [
    (None, None, "", []),
    ((1,), None, " WHERE ((`id` > %s))", [1]),
    (None, (9,), " WHERE ((`id` <= %s))", [9]),
    ((1,), (9,), " WHERE ((`id` > %s)) AND ((`id` <= %s))", [1, 9]),
]


@pytest.mark.parametrize(("lower", "upper", "where", "args"), _RANGES)
def test_checksum_range_shapes(
    lower: tuple[int] | None, upper: tuple[int] | None, where: str, args: list[int]
) -> None:
    stmt = sql.checksum_range("db", "t", ["id", "v"], ["id"], lower=lower, upper=upper)
    assert stmt == (_CHECKSUM_HEAD + where + _CHECKSUM_TAIL, args)


def test_checksum_range_locks_inside_the_derived_table() -> None:
    """A locking read's clause on the outer SELECT locks no row of a derived table's base table."""
    stmt = sql.checksum_range("db", "t", ["id", "v"], ["id"], lower=(1,), upper=None, lock=True)
    assert stmt == (
        _CHECKSUM_HEAD + " WHERE ((`id` > %s))" + _CHECKSUM_TAIL.replace(")", " LOCK IN SHARE MODE)", 1),
        [1],
    )
    assert stmt.text.endswith(" LOCK IN SHARE MODE) AS `_tm_rows`")


def test_checksum_range_composite_key() -> None:
    stmt = sql.checksum_range("db", "t", ["id", "v"], ["id", "v"], lower=(1, "a"), upper=(5, "b"))
    after = "((`id` > %s) OR (`id` = %s AND `v` > %s))"
    before = "((`id` < %s) OR (`id` = %s AND `v` <= %s))"
    assert stmt == (f"{_CHECKSUM_HEAD} WHERE {after} AND {before}{_CHECKSUM_TAIL}", [1, 1, "a", 5, 5, "b"])


def test_key_boundary_shapes() -> None:
    # LIMIT 2: the row after the boundary tells whether the range goes on past this chunk.
    assert sql.key_boundary("db", "t", ["a", "b"], after=None, step=100) == (
        "SELECT `a`, `b` FROM `db`.`t` ORDER BY `a`, `b` LIMIT 2 OFFSET 99",
        [],
    )
    assert sql.key_boundary("db", "t", ["id"], after=(4,), step=1) == (
        "SELECT `id` FROM `db`.`t` WHERE ((`id` > %s)) ORDER BY `id` LIMIT 2 OFFSET 0",
        [4],
    )


@pytest.mark.parametrize(("lower", "upper", "where", "args"), _RANGES)
def test_key_boundary_inside_an_interval(
    lower: tuple[int] | None, upper: tuple[int] | None, where: str, args: list[int]
) -> None:
    """The live gate's boundary counts only the rows in (lower, upper], the range checksum's own."""
    stmt = sql.key_boundary("db", "t", ["id"], after=lower, upper=upper, step=2000)
    assert stmt == (f"SELECT `id` FROM {D}{where} ORDER BY `id` LIMIT 2 OFFSET 1999", args)
    checksum = sql.checksum_range("db", "t", ["id", "v"], ["id"], lower=lower, upper=upper)
    assert checksum.text.endswith(where + _CHECKSUM_TAIL) and checksum.args == stmt.args


def test_key_boundary_composite_upper_in_the_columns_collation() -> None:
    """An upper key with a latin1 case-insensitive column and a binary column: the server compares
    each in the column's own order (CONVERT ... COLLATE, _binary bytes), never Python."""
    key = [LATIN1_CI, sql.Col.of("b", "binary")]
    stmt = sql.key_boundary("db", "t", key, after=(b"Ab", b"\x00"), upper=(b"\xe5", b"\x81\x00"), step=10)
    marker = "CONVERT(%s USING latin1) COLLATE latin1_swedish_ci"
    after = f"((`k` > {marker}) OR (`k` = {marker} AND `b` > %s))"
    before = f"((`k` < {marker}) OR (`k` = {marker} AND `b` <= %s))"
    assert stmt == (
        f"SELECT CAST(`k` AS BINARY), `b` FROM {D} WHERE {after} AND {before} "
        "ORDER BY `k`, `b` LIMIT 2 OFFSET 9",
        [b"Ab", b"Ab", b"\x00", b"\xe5", b"\xe5", b"\x81\x00"],
    )


def test_key_boundary_enum_upper_is_an_in_list() -> None:
    """An ENUM upper bound is a list of member numbers (an index range), the last member's inclusive."""
    e = sql.Col.of("e", "enum", ("red", "green", "blue"))
    stmt = sql.key_boundary("db", "t", [e, "id"], after=None, upper=("green", 7), step=5)
    assert stmt == (
        f"SELECT `e`, `id` FROM {D} WHERE ((`e` IN (%s, %s)) OR (`e` = %s AND `id` <= %s)) "
        "ORDER BY `e`, `id` LIMIT 2 OFFSET 4",
        [0, 1, "green", 7],
    )


@pytest.mark.parametrize(("lower", "upper", "where", "args"), _RANGES)
def test_select_range_shapes(
    lower: tuple[int] | None, upper: tuple[int] | None, where: str, args: list[int]
) -> None:
    stmt = sql.select_range("db", "t", ["id", "v"], ["id"], lower=lower, upper=upper)
    assert stmt == (f"SELECT `id`, `v` FROM {D}{where} ORDER BY `id`", args)
    assert "LOCK IN SHARE MODE" not in stmt.text


# --------------------------------------------------------------------------- character columns


LATIN1_CI = sql.Col.of("k", "varchar", (), "latin1", "latin1_swedish_ci")


def test_character_columns_read_their_bytes_and_compare_in_their_collation() -> None:
    # The value's bytes (sent as _binary'...') become a string of the column's charset and collation
    # again, so the comparison is the index's and no Python codec touches the bytes.
    assert LATIN1_CI.read == "CAST(`k` AS BINARY)"
    assert LATIN1_CI.marker == "CONVERT(%s USING latin1) COLLATE latin1_swedish_ci"
    after = sql.key_after([sql.Col("n"), LATIN1_CI], [1, b"\x81"])
    assert after.text == (
        "((`n` > %s) OR (`n` = %s AND `k` > CONVERT(%s USING latin1) COLLATE latin1_swedish_ci))"
    )
    assert after.args == [1, 1, b"\x81"]
    assert sql.delete_keys("db", "t", [LATIN1_CI], 2) == (
        "DELETE FROM `db`.`t` WHERE `k` IN (CONVERT(%s USING latin1) COLLATE latin1_swedish_ci, "
        "CONVERT(%s USING latin1) COLLATE latin1_swedish_ci)"
    )
    assert sql.delete_keys("db", "t", [sql.Col("n"), LATIN1_CI], 1) == (
        "DELETE FROM `db`.`t` WHERE (`n` = %s AND `k` = CONVERT(%s USING latin1) COLLATE latin1_swedish_ci)"
    )
    chunk = sql.select_chunk("db", "t", [sql.Col("n"), LATIN1_CI], [LATIN1_CI], after=None, limit=5)
    assert chunk.text.startswith("SELECT `n`, CAST(`k` AS BINARY) FROM") and "ORDER BY `k`" in chunk.text


@pytest.mark.parametrize(
    ("data_type", "charset", "collation"),
    [
        ("varbinary", None, None),  # bytes already, compared bytewise
        ("char", "binary", "binary"),  # CHAR CHARACTER SET binary is BINARY
        ("blob", None, None),
        ("int", None, None),
        ("varchar", "utf8mb4", None),  # collation unknown (a hand-made Column): plain placeholder
        ("varchar", "utf8mb4", "utf8mb4_general_ci; DROP"),  # not a collation name the server lists
    ],
)
def test_other_columns_keep_the_plain_placeholder(
    data_type: str, charset: str | None, collation: str | None
) -> None:
    col = sql.Col.of("c", data_type, (), charset, collation)
    assert col.marker == "%s" and col.read == "`c`" and col.collation is None
