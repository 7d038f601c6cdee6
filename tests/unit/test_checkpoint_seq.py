"""The checkpoint rows' order: a seq each writer chooses (the row it continues plus one), not the
AUTO_INCREMENT id; owner rows take none; the statements that read and prune by it."""

from __future__ import annotations

import pytest

from tablemover import checkpoint as cpstore
from tablemover.checkpoint import Checkpoint
from tablemover.machine import State


def cp(**changes: object) -> Checkpoint:
    return Checkpoint(move_name="m", state=State.COPYING, applied_gtid="0-1-5").evolve(**changes)


def test_a_row_continues_the_one_it_was_made_from() -> None:
    assert cpstore.next_row(cp()).seq == 1  # the first row of a move, or the first after an upgrade
    assert cpstore.next_row(cp(seq=41)).seq == 42
    # A chain in one transaction (a progress row, then transitions): each continues the last.
    first = cpstore.next_row(cp(seq=7))
    second = cpstore.next_row(first.evolve(state=State.CUTOVER_STARTED, kind=cpstore.KIND_TRANSITION))
    assert (first.seq, second.seq) == (8, 9)


def test_owner_rows_take_no_seq() -> None:
    owner = cpstore.next_row(cp(seq=12, kind=cpstore.KIND_OWNER))
    assert owner.seq == 0
    assert cpstore.insert_args(owner)[0] is None  # stored NULL: outside the unique (move_name, seq)


def test_insert_stores_the_chosen_seq_first() -> None:
    row = cpstore.next_row(cp(seq=3))
    assert "(seq, move_name," in cpstore.insert_sql("db")
    assert cpstore.insert_args(row)[:2] == (4, "m")
    assert cpstore.insert_sql("db").count("%s") == len(cpstore.insert_args(row))


def test_the_newest_row_is_the_highest_seq_and_earlier_layout_rows_come_last() -> None:
    # MariaDB and MySQL sort NULL lowest: DESC puts rows without a seq after every row with one;
    # a move with only those is read newest id first (the order the earlier version used).
    assert cpstore.NEWEST_FIRST == " ORDER BY seq DESC"
    assert cpstore.EARLIER_NEWEST_FIRST == " ORDER BY id DESC"
    assert cpstore.OLDEST_FIRST == " ORDER BY seq, id"
    ddl = cpstore.create_table_sql("db")
    assert "seq BIGINT UNSIGNED NULL" in ddl and "UNIQUE KEY move_seq (move_name, seq)" in ddl
    assert "ADD COLUMN seq BIGINT UNSIGNED NULL" in cpstore.upgrade_sql("db")
    assert "ADD UNIQUE KEY move_seq (move_name, seq)" in cpstore.upgrade_sql("db")


def test_prune_keeps_the_newest_row_by_seq() -> None:
    sql = cpstore.prune_sql("db")
    assert "(seq < %s OR seq IS NULL)" in sql and "MAX(id)" not in sql


def test_the_checkpoint_is_found_where_the_move_has_rows() -> None:
    """A new move starts in the state schema; a move an earlier version began in the target
    schema is resumed there; once the state schema has a row of the move, it wins."""
    choose = cpstore.choose_location
    assert choose("_tablemover", "app", in_state=False, in_legacy=False) == "_tablemover"
    assert choose("_tablemover", "app", in_state=False, in_legacy=True) == "app"
    assert choose("_tablemover", "app", in_state=True, in_legacy=True) == "_tablemover"
    assert choose("_tablemover", "app", in_state=True, in_legacy=False) == "_tablemover"


def test_the_state_schema_is_a_plain_identifier_folded_with_the_names() -> None:
    from tablemover.config import MoveSection

    move = MoveSection(name="m", database="app", tables=["t"])
    assert move.state_database == "_tablemover"
    assert (
        MoveSection(name="m", database="app", tables=["t"], state_database="Ops_State")
        .with_name_rules(1, 1)
        .state_database
        == "ops_state"
    )
    with pytest.raises(ValueError):
        MoveSection(name="m", database="app", tables=["t"], state_database="bad name")
