"""The records destructive commands plan from, and how a changed config is told apart."""

from __future__ import annotations

from tablemover.checkpoint import KIND_TRANSITION, Checkpoint, TableProgress
from tablemover.config import Config, parse_config
from tablemover.machine import State
from tablemover.maintenance import config_differences, recorded_renames, recorded_tables


def config(tables: str = '["a", "b"]', fmt: str = "_{table}_moved", database: str = "app") -> Config:
    text = f'[move]\nname = "m"\ndatabase = "{database}"\ntables = {tables}\nrenamed_table_format = "{fmt}"\n'
    return parse_config(text, origin="move.toml", env={})


def row(state: State, **detail: object) -> Checkpoint:
    return Checkpoint(
        "m",
        state,
        "0-1-1",
        {"a": TableProgress(), "b": TableProgress()},
        kind=KIND_TRANSITION,
        detail=dict(detail),
    )


HISTORY = [
    row(State.PREPARED, created_tables=["a"]),
    row(State.COPYING),
    row(State.CUTOVER_STARTED, source_database="app", renames={"a": "_a_moved", "b": "_b_moved"}),
    row(State.RENAMED, source_database="app", renames={"a": "_a_moved", "b": "_b_moved"}),
    row(State.DONE),
]


def test_records_come_from_prepared_and_the_cutover() -> None:
    assert recorded_tables(HISTORY) == ["a", "b"]
    assert recorded_renames(HISTORY) == ("app", {"a": "_a_moved", "b": "_b_moved"})
    assert recorded_tables(HISTORY[1:]) is None and recorded_renames(HISTORY[:2]) is None


def test_the_same_config_differs_in_nothing() -> None:
    assert config_differences(config(), ["b", "a"], recorded_renames(HISTORY)) == []


def test_every_kind_of_change_is_named() -> None:
    renames = recorded_renames(HISTORY)
    assert config_differences(config('["a", "b", "c"]'), ["a", "b"])[0].startswith("tables:")
    assert config_differences(config(fmt="{table}_old"), ["a", "b"], renames)[0].startswith(
        "renamed_table_format:"
    )
    assert config_differences(config(database="other"), ["a", "b"], renames)[0].startswith("database:")
