"""Names as the servers store them: config folding (lower_case_table_names) and the preflight rule."""

from __future__ import annotations

import pytest

from tablemover.config import parse_config, stored_names
from tablemover.errors import ConfigError
from tablemover.preflight.names import name_rule_problems

CONFIG = """\
[move]
name = "m"
database = "App"
target_database = "AppDst"
tables = ["Orders", "order_items"]
renamed_table_format = "_{table}_Moved"
"""


def test_lctn_0_keeps_names_as_spelt() -> None:
    config = parse_config(CONFIG, env={}).with_name_rules(0, 0)
    move = config.move
    assert (move.database, move.target_database, move.tables) == ("App", "AppDst", ["Orders", "order_items"])
    assert move.renamed("Orders") == "_Orders_Moved"
    assert not move.source_folds_names and not move.target_folds_names


def test_lctn_1_folds_every_name_as_the_server_stores_it() -> None:
    original = parse_config(CONFIG, env={})
    move = original.with_name_rules(1, 1).move
    assert (move.database, move.target_database, move.tables) == ("app", "appdst", ["orders", "order_items"])
    assert move.effective_target_database == "appdst"
    assert move.renamed("orders") == "_orders_moved"  # the server stores the renamed name folded too
    assert move.rolledback("orders") == "_orders_rolledback"
    assert move.source_folds_names and move.target_folds_names
    assert original.move.tables == ["Orders", "order_items"]  # the loaded config is left alone
    # Only the name rules change; everything else is the same config.
    assert original.with_name_rules(1, 1).move.name == "m"
    assert original.with_name_rules(1, 1).source == original.source


def test_default_target_database_follows_the_folded_source_name() -> None:
    config = parse_config(CONFIG.replace('target_database = "AppDst"\n', ""), env={})
    assert config.with_name_rules(1, 1).move.effective_target_database == "app"


def test_two_spellings_of_one_table_are_a_config_error_when_folded() -> None:
    assert stored_names("a", "", ["Orders", "orders"], 0, 0)[2] == ["Orders", "orders"]
    with pytest.raises(ConfigError, match="same table twice"):
        stored_names("a", "", ["Orders", "orders"], 1, 1)


@pytest.mark.parametrize(
    ("source", "target", "names", "refused"),
    [
        (0, 0, ["App", "Orders"], False),
        (1, 1, ["app", "orders"], False),
        (0, 1, ["app", "orders"], False),  # exact source, folding target, all lower case: same names
        (0, 1, ["app", "Orders"], True),  # the target would store `orders`
        (1, 0, ["app", "orders"], True),  # the application may spell Orders on the source
        (2, 2, ["app", "orders"], True),
        (0, 2, ["app", "orders"], True),
    ],
)
def test_name_rule(source: int, target: int, names: list[str], refused: bool) -> None:
    problems = name_rule_problems(source, target, names, "source s:1", "target t:2")
    assert bool(problems) == refused
    for problem in problems:
        assert "lower_case_table_names" in problem
        assert "start both servers with the same setting" in problem
