"""Unit tests for the pure part of tablemover.autoinc: which counter is raised, and the statement."""

from __future__ import annotations

import pytest

from tablemover.autoinc import Carry, alter_statement, back_tag, forward_tag, missing_message, raise_to
from tablemover.config import parse_config
from tablemover.statements import changes_any
from tablemover.window import rollback_comment


@pytest.mark.parametrize(
    ("origin", "destination", "expected"),
    [
        (101, 91, 101),  # top ids deleted on the origin: raise the destination to the origin's counter
        (101, 101, None),  # equal: nothing to do (the restart after a carry finds this)
        (101, 500, None),  # already higher (the application inserted): ALTER would LOWER it on InnoDB
        (None, 91, None),  # no AUTO_INCREMENT column on the origin
        (101, None, None),  # nor on the destination
        (None, None, None),
        (2, 1, 2),
    ],
)
def test_raise_to_never_lowers(origin: int | None, destination: int | None, expected: int | None) -> None:
    assert raise_to(origin, destination) == expected
    assert Carry("t", origin, destination).value == expected


def test_alter_statement_is_tagged_and_quoted() -> None:
    statement = alter_statement("app", "or`ders", 101, forward_tag("m1"))
    assert statement == (
        "ALTER /* tablemover rollback move=m1 nonce=auto-increment */ "
        "TABLE `app`.`or``ders` AUTO_INCREMENT = 101"
    )
    assert "*/ TABLE" in alter_statement("app", "t", 5, "evil */ DROP TABLE x /*")
    assert alter_statement("app", "t", 5, "evil */ DROP").count("*/") == 1


def test_the_target_alter_is_recognised_by_the_reverse_feed() -> None:
    # The rollback window's reverse feed skips statements carrying its own tag (stream.Translator:
    # `own_rename_tag in query`) and refuses any other DDL on a moved table; the target's ALTER is
    # DDL on a moved table, so it must carry that tag.
    statement = alter_statement("app", "orders", 101, forward_tag("m1"))
    assert rollback_comment("m1", nonce="") in statement
    assert changes_any(statement, "app", "app", {"orders"}) is not None  # it IS a change: the tag matters
    assert rollback_comment("m2", nonce="") not in statement  # another move's feed does not skip it
    assert "move=m1" in back_tag("m1")


def test_the_missing_table_refusal_names_what_is_missing_where() -> None:
    config = parse_config('[move]\nname = "m"\ndatabase = "app"\ntables = ["orders"]\n', env={})
    message = missing_message(
        config,
        "DRAINED, before the on-success hook",
        "orders",
        ("source", "app", ("_orders_moved", "orders"), "_orders_moved"),
        ("target", "app2", ("orders",), None),
    )
    assert "in DRAINED, before the on-success hook" in message
    assert (
        "AUTO_INCREMENT counter of orders cannot be carried over because the target has none of app2.orders"
        in message
    )
    assert "the source" not in message.split("because")[1].split(".")[0], "the source's table is there"
    both = missing_message(
        config,
        "x",
        "orders",
        ("source", "app", ("_orders_moved",), None),
        ("target", "app2", ("orders",), None),
    )
    assert "the source has none of app._orders_moved and the target has none of app2.orders" in both
