"""The pure comparison behind the ``target_definition`` preflight check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tablemover.preflight.target_definition import (
    ColumnDefinition,
    KeyDefinition,
    TableDefinition,
    definition_differences,
)

ID = ColumnDefinition("id", "bigint(20)", nullable=False)
TOTAL = ColumnDefinition("total", "decimal(12,2)", nullable=False)
NOTE = ColumnDefinition("note", "varchar(100)", True, "utf8mb4", "utf8mb4_general_ci")
CODE = ColumnDefinition("code", "char(8)", False, "latin1", "latin1_swedish_ci")
DOUBLE = ColumnDefinition(
    "double_total", "decimal(13,2)", True, generated="VIRTUAL", expression="`total` * 2"
)
PK = KeyDefinition("PRIMARY", ("id",))
UK_CODE = KeyDefinition("uk_code", ("code",))

SOURCE = TableDefinition((ID, TOTAL, NOTE, CODE, DOUBLE), (PK, UK_CODE), "InnoDB")


def with_columns(*columns: ColumnDefinition) -> TableDefinition:
    """SOURCE with other columns."""
    return replace(SOURCE, columns=columns)


def with_keys(*keys: KeyDefinition) -> TableDefinition:
    """SOURCE with other keys."""
    return replace(SOURCE, keys=keys)


def test_identical_definition_has_no_differences() -> None:
    assert definition_differences(SOURCE, SOURCE) == []


def test_empty_tables_have_no_differences() -> None:
    assert definition_differences(TableDefinition(()), TableDefinition(())) == []


def test_narrower_decimal() -> None:
    narrow = replace(TOTAL, column_type="decimal(12,0)")
    assert definition_differences(SOURCE, with_columns(ID, narrow, NOTE, CODE, DOUBLE)) == [
        "column total: source decimal(12,2) NOT NULL, target decimal(12,0) NOT NULL"
    ]


def test_shorter_varchar() -> None:
    short = replace(NOTE, column_type="varchar(5)")
    assert definition_differences(SOURCE, with_columns(ID, TOTAL, short, CODE, DOUBLE)) == [
        "column note: source varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL, "
        "target varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL"
    ]


def test_wider_type_is_also_a_difference() -> None:
    # Not lossy, but not the source's table either: the check asks for the same definition.
    wide = replace(TOTAL, column_type="decimal(20,4)")
    assert len(definition_differences(SOURCE, with_columns(ID, wide, NOTE, CODE, DOUBLE))) == 1


def test_different_collation() -> None:
    binary = replace(NOTE, collation="utf8mb4_bin")
    [difference] = definition_differences(SOURCE, with_columns(ID, TOTAL, binary, CODE, DOUBLE))
    assert difference.startswith("column note: ")
    assert "COLLATE utf8mb4_general_ci NULL, target" in difference
    assert difference.endswith("COLLATE utf8mb4_bin NULL")


def test_different_charset() -> None:
    utf8 = replace(CODE, charset="utf8mb4", collation="utf8mb4_general_ci")
    [difference] = definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, utf8, DOUBLE))
    assert difference == (
        "column code: source char(8) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL, "
        "target char(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
    )


def test_utf8_is_utf8mb3() -> None:
    # Older servers print utf8mb3 as "utf8"; it is the same character set.
    new = replace(CODE, charset="utf8mb3", collation="utf8mb3_general_ci")
    old = replace(CODE, charset="utf8", collation="utf8_general_ci")
    assert definition_differences(with_columns(ID, new), with_columns(ID, old)) == []


@pytest.mark.parametrize(("source_null", "target_null"), [(False, True), (True, False)])
def test_nullability(source_null: bool, target_null: bool) -> None:
    src = with_columns(ID, replace(TOTAL, nullable=source_null))
    tgt = with_columns(ID, replace(TOTAL, nullable=target_null))
    [difference] = definition_differences(src, tgt)
    assert difference.startswith("column total: source decimal(12,2) ")
    assert difference.endswith("target decimal(12,2) " + ("NULL" if target_null else "NOT NULL"))


def test_missing_column() -> None:
    assert definition_differences(SOURCE, with_columns(ID, TOTAL, CODE, DOUBLE)) == [
        "column note: source varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL, "
        "target has no such column"
    ]


def test_extra_column() -> None:
    extra = ColumnDefinition("flag", "tinyint(1)", nullable=False)
    assert definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, CODE, DOUBLE, extra)) == [
        "column flag: not on the source, target tinyint(1) NOT NULL"
    ]


def test_different_column_order() -> None:
    assert definition_differences(SOURCE, with_columns(ID, NOTE, TOTAL, CODE, DOUBLE)) == [
        "column order: total is column 2 on the source but column 3 on the target"
    ]


def test_missing_column_alone_is_not_an_order_difference() -> None:
    differences = definition_differences(SOURCE, with_columns(ID, NOTE, CODE, DOUBLE))
    assert differences == [
        "column total: source decimal(12,2) NOT NULL, target has no such column",
    ]


def test_column_names_match_case_insensitively() -> None:
    upper = replace(TOTAL, name="Total")
    assert definition_differences(SOURCE, with_columns(ID, upper, NOTE, CODE, DOUBLE)) == []


@pytest.mark.parametrize(
    ("source_type", "target_type"),
    [
        ("int(11)", "int"),
        ("int(10) unsigned", "int unsigned"),
        ("bigint(20)", "bigint"),
        ("tinyint(4)", "tinyint"),
        ("tinyint(1)", "tinyint"),
        ("smallint(6)", "smallint(5)"),
        ("mediumint(9)", "mediumint"),
        ("int(5) unsigned zerofill", "int unsigned zerofill"),
        ("year(4)", "year"),
    ],
)
def test_integer_display_width_is_cosmetic(source_type: str, target_type: str) -> None:
    src = with_columns(ColumnDefinition("n", source_type, nullable=True))
    tgt = with_columns(ColumnDefinition("n", target_type, nullable=True))
    assert definition_differences(src, tgt) == []
    assert definition_differences(tgt, src) == []


@pytest.mark.parametrize(
    ("source_type", "target_type"),
    [
        ("int(11)", "int(11) unsigned"),
        ("int(11)", "bigint(20)"),
        ("int(11)", "int(11) unsigned zerofill"),
        ("decimal(10,2)", "decimal(10,3)"),
        ("double", "float"),
        ("datetime(6)", "datetime"),  # fractional seconds are not a display width
        ("char(10)", "varchar(10)"),
        ("varbinary(16)", "binary(16)"),
        ("enum('a','b')", "enum('a','b','c')"),
        ("enum('a','b')", "enum('b','a')"),
        ("enum('a')", "enum('A')"),
        ("set('x','y')", "set('x')"),
    ],
)
def test_real_type_differences(source_type: str, target_type: str) -> None:
    src = with_columns(ColumnDefinition("n", source_type, nullable=True))
    tgt = with_columns(ColumnDefinition("n", target_type, nullable=True))
    assert definition_differences(src, tgt) == [
        f"column n: source {source_type} NULL, target {target_type} NULL"
    ]


def test_generated_expression_differs() -> None:
    other = replace(DOUBLE, expression="`total` * 3")
    assert definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, CODE, other)) == [
        "column double_total: source decimal(13,2) GENERATED ALWAYS AS (`total` * 2) VIRTUAL NULL, "
        "target decimal(13,2) GENERATED ALWAYS AS (`total` * 3) VIRTUAL NULL"
    ]


def test_generated_kind_differs() -> None:
    stored = replace(DOUBLE, generated="STORED")
    [difference] = definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, CODE, stored))
    assert difference.endswith("target decimal(13,2) GENERATED ALWAYS AS (`total` * 2) STORED NULL")


def test_generated_on_one_side_only() -> None:
    plain = ColumnDefinition("double_total", "decimal(13,2)", nullable=True)
    [difference] = definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, CODE, plain))
    assert difference == (
        "column double_total: source decimal(13,2) GENERATED ALWAYS AS (`total` * 2) VIRTUAL NULL, "
        "target decimal(13,2) NULL"
    )


@pytest.mark.parametrize(
    "rendering",
    ["(`total` * 2)", "`total`*2", "total * 2", "((`TOTAL` * 2))", " `total`  *  2 "],
)
def test_generated_expression_rendering_is_cosmetic(rendering: str) -> None:
    # MariaDB prints `total` * 2, MySQL 8 (`total` * 2): the same expression.
    same = replace(DOUBLE, expression=rendering)
    assert definition_differences(SOURCE, with_columns(ID, TOTAL, NOTE, CODE, same)) == []


def test_string_literals_in_expressions_keep_case_and_spaces() -> None:
    src = with_columns(
        ColumnDefinition("g", "varchar(20)", True, generated="STORED", expression="concat(`a`,' X')")
    )
    tgt = with_columns(
        ColumnDefinition("g", "varchar(20)", True, generated="STORED", expression="concat(`a`,'x')")
    )
    assert len(definition_differences(src, tgt)) == 1


def test_parenthesised_halves_are_not_outer_parens() -> None:
    src = with_columns(
        ColumnDefinition("g", "int", True, generated="VIRTUAL", expression="(a + 1) * (b + 1)")
    )
    tgt = with_columns(ColumnDefinition("g", "int", True, generated="VIRTUAL", expression="a + 1 * (b + 1)"))
    assert len(definition_differences(src, tgt)) == 1


def test_ordinary_column_expression_field_is_ignored() -> None:
    # MySQL reports '' as the GENERATION_EXPRESSION of ordinary columns, MariaDB NULL.
    src = with_columns(ColumnDefinition("n", "int", True, expression=None))
    tgt = with_columns(ColumnDefinition("n", "int", True, expression=""))
    assert definition_differences(src, tgt) == []


def test_unique_key_missing() -> None:
    assert definition_differences(SOURCE, with_keys(PK)) == [
        "unique key uk_code (code): on the source, not on the target"
    ]


def test_unique_key_extra_on_target() -> None:
    extra = KeyDefinition("uk_note", ("note",))
    assert definition_differences(SOURCE, with_keys(PK, UK_CODE, extra)) == [
        "unique key uk_note (note): on the target, not on the source"
    ]


def test_unique_key_with_different_columns() -> None:
    wider = KeyDefinition("uk_code", ("code", "note"))
    assert definition_differences(SOURCE, with_keys(PK, wider)) == [
        "unique key uk_code: source (code), target (code, note)"
    ]


def test_unique_key_column_order_matters() -> None:
    src = with_keys(PK, KeyDefinition("uk", ("code", "note")))
    tgt = with_keys(PK, KeyDefinition("uk", ("note", "code")))
    assert definition_differences(src, tgt) == ["unique key uk: source (code, note), target (note, code)"]


def test_unique_key_prefix_matters() -> None:
    src = with_keys(PK, KeyDefinition("uk", ("note",)))
    tgt = with_keys(PK, KeyDefinition("uk", ("note(10)",)))
    assert definition_differences(src, tgt) == ["unique key uk: source (note), target (note(10))"]


def test_unique_key_name_does_not_matter() -> None:
    renamed = KeyDefinition("code_unique", ("code",))
    assert definition_differences(SOURCE, with_keys(PK, renamed)) == []


def test_primary_key_different_columns() -> None:
    wider = KeyDefinition("PRIMARY", ("id", "code"))
    assert definition_differences(SOURCE, with_keys(wider, UK_CODE)) == [
        "primary key: source (id), target (id, code)"
    ]


def test_primary_key_missing_even_with_a_unique_key_on_its_columns() -> None:
    unique_id = KeyDefinition("id", ("id",))
    assert definition_differences(SOURCE, with_keys(unique_id, UK_CODE)) == [
        "primary key: source (id), target has none",
        "unique key id (id): on the target, not on the source",
    ]


def test_primary_key_only_on_target() -> None:
    src = with_keys(UK_CODE)
    assert definition_differences(src, SOURCE) == ["primary key: source has none, target (id)"]


def test_engine_differs() -> None:
    assert definition_differences(SOURCE, replace(SOURCE, engine="MyISAM")) == [
        "engine: source InnoDB, target MyISAM"
    ]


def test_engine_case_and_unknown_are_not_differences() -> None:
    assert definition_differences(SOURCE, replace(SOURCE, engine="innodb")) == []
    assert definition_differences(SOURCE, replace(SOURCE, engine=None)) == []


def test_everything_is_listed_in_a_stable_order() -> None:
    target = TableDefinition(
        (
            ID,
            replace(TOTAL, column_type="decimal(12,0)"),
            replace(CODE, nullable=True),
            ColumnDefinition("extra", "int", True),
        ),
        (PK,),
        "Aria",
    )
    differences = definition_differences(SOURCE, target)
    assert [d.split(":")[0] for d in differences] == [
        "column total",
        "column note",
        "column code",
        "column double_total",
        "column extra",
        "unique key uk_code (code)",
        "engine",
    ]
