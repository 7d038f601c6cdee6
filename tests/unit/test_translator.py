"""Unit tests for the binlog Translator (tablemover.stream): commit boundaries, hand-over, DDL guard.

The Translator is pure: these tests feed it the calls the stream thread makes for each binlog event
and check what it buffers, what ``take()`` hands over, and how ``position`` advances. Spec rule 6:
a transaction's GTID becomes a ``Commit`` (and joins the position) only at its commit boundary.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover import gtid, sql
from tablemover.changes import Commit, Op, RowChange
from tablemover.decode import RowDecoder
from tablemover.errors import SchemaChanged, UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition, MySQLGtidSet
from tablemover.schema import Column, Index, TableSchema
from tablemover.stream import Translator, _fold_gtids, full_image

TAG = "tablemover move=x"
U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def _schema(name: str) -> TableSchema:
    return TableSchema(
        database="app",
        name=name,
        columns=(
            Column("id", 0, "int", "int(11)", False, False, None),
            Column("note", 1, "varchar", "varchar(20)", True, False, "utf8mb4"),
        ),
        indexes=(Index("PRIMARY", ("id",), True, False),),
        create_statement="",
        foreign_keys=(),
        triggers=(),
    )


DECODERS = {t: RowDecoder(_schema(t)) for t in ("orders", "order_items")}


def mariadb(start: str = "0-1-10") -> Translator:
    return Translator(
        "app", DECODERS, Flavor.MARIADB, own_rename_tag=TAG, position=MariaDBPosition.parse(start)
    )


def mysql(start: str = f"{U1}:1-10") -> Translator:
    return Translator("app", DECODERS, Flavor.MYSQL, own_rename_tag=TAG, position=MySQLGtidSet.parse(start))


def ins(tr: Translator, table: str, *ids: int) -> None:
    tr.rows_event(table, Op.INSERT, [{"values": {"id": i, "note": b"n"}} for i in ids])


def commits(items: list[Any]) -> list[str]:
    return [i.gtid for i in items if isinstance(i, Commit)]


def dml(tr: Translator, gtid: str, *ids: int, table: str = "orders") -> None:
    """A whole MariaDB DML transaction: GTID, rows, Xid."""
    tr.gtid_event(gtid, False)
    ins(tr, table, *ids)
    tr.xid_event()


# --------------------------------------------------------------------------- commit boundaries


def test_no_commit_at_gtid_event_only_at_xid() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    assert commits(tr.items) == []
    assert str(tr.position) == "0-1-10"
    ins(tr, "orders", 1, 2)
    assert commits(tr.items) == []
    assert str(tr.position) == "0-1-10"
    assert tr.pending_complete == 0
    tr.xid_event()
    assert tr.items == [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        Commit("0-1-11"),
    ]
    assert str(tr.position) == "0-1-11"
    assert tr.pending_complete == 3


def test_commit_query_ends_a_transaction() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    assert commits(tr.items) == []
    tr.query_event("COMMIT", "app")
    assert commits(tr.items) == ["0-1-11"]
    assert str(tr.position) == "0-1-11"


@pytest.mark.parametrize("text", ["COMMIT", "commit", " COMMIT ;", "COMMIT;\n", "ROLLBACK"])
def test_commit_query_spellings(text: str) -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    tr.query_event(text, "app")
    assert commits(tr.items) == ["0-1-11"]


def test_update_and_delete_rows_are_decoded() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.rows_event(
        "orders",
        Op.UPDATE,
        [{"before_values": {"id": 1, "note": b"a"}, "after_values": {"id": 2, "note": b"b"}}],
    )
    tr.rows_event("order_items", Op.DELETE, [{"values": {"id": 3, "note": None}}])
    tr.xid_event()
    assert tr.items == [
        RowChange("orders", Op.UPDATE, (1, b"a"), (2, b"b")),
        RowChange("order_items", Op.DELETE, (3, None), None),
        Commit("0-1-11"),
    ]


def test_position_advances_per_commit() -> None:
    tr = mariadb()
    seen = []
    for seq in (11, 12, 13):
        dml(tr, f"0-1-{seq}", seq)
        seen.append(str(tr.position))
    assert seen == ["0-1-11", "0-1-12", "0-1-13"]
    assert commits(tr.items) == ["0-1-11", "0-1-12", "0-1-13"]


def test_position_tracks_several_domains() -> None:
    tr = mariadb("0-1-10,1-1-5")
    dml(tr, "1-1-6", 1)
    assert str(tr.position) == "0-1-10,1-1-6"
    dml(tr, "0-1-11", 2)
    assert str(tr.position) == "0-1-11,1-1-6"


def test_mysql_gtid_begin_rows_xid() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event("BEGIN", "app")
    assert commits(tr.items) == []
    ins(tr, "orders", 5)
    assert commits(tr.items) == []
    assert str(tr.position) == f"{U1}:1-10"
    tr.xid_event()
    assert tr.items == [RowChange("orders", Op.INSERT, None, (5, b"n")), Commit(f"{U1}:11")]
    assert str(tr.position) == f"{U1}:1-11"


def test_mysql_statement_inside_transaction_does_not_commit() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event("BEGIN", "app")
    tr.query_event("SAVEPOINT sp1", "app")
    ins(tr, "orders", 5)
    assert commits(tr.items) == []
    tr.query_event("COMMIT", "app")
    assert commits(tr.items) == [f"{U1}:11"]


def test_mysql_standalone_ddl_commits_immediately() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event("CREATE TABLE app.unrelated (id INT PRIMARY KEY)", "app")
    assert tr.items == [Commit(f"{U1}:11")]
    assert str(tr.position) == f"{U1}:1-11"


def test_mariadb_standalone_ddl_commits_immediately() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    assert tr.items == []
    tr.query_event("ALTER TABLE unrelated ADD COLUMN x INT", "app")
    assert tr.items == [Commit("0-1-11")]
    assert str(tr.position) == "0-1-11"
    assert tr.pending_complete == 1


def test_events_without_preceding_gtid_do_not_commit() -> None:
    tr = mariadb()
    ins(tr, "orders", 1)
    tr.xid_event()
    tr.query_event("COMMIT", "app")
    assert commits(tr.items) == []
    assert str(tr.position) == "0-1-10"
    assert tr.pending_complete == 0


def test_second_xid_after_commit_does_not_commit_again() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    tr.xid_event()
    assert commits(tr.items) == ["0-1-11"]


# --------------------------------------------------------------------------- take / rewind


def test_take_hands_over_through_last_commit_only() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    dml(tr, "0-1-12", 2)
    tr.gtid_event("0-1-13", False)
    ins(tr, "orders", 3)
    batch = tr.take()
    assert batch is not None
    assert batch.items == [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        Commit("0-1-11"),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        Commit("0-1-12"),
    ]
    assert tr.items == [RowChange("orders", Op.INSERT, None, (3, b"n"))]
    assert tr.pending_complete == 0
    tr.xid_event()
    rest = tr.take()
    assert rest is not None
    assert rest.items == [RowChange("orders", Op.INSERT, None, (3, b"n")), Commit("0-1-13")]
    assert batch.events + rest.events == 9  # every event counted once across the two hand-overs
    assert tr.items == []


def test_take_without_complete_transaction_hands_over_no_items() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    batch = tr.take()
    assert batch is not None
    assert batch.items == []
    assert batch.events == 2
    assert len(tr.items) == 1


def test_take_on_empty_translator_is_none() -> None:
    assert mariadb().take() is None
    assert mariadb().take(partial=True) is None


def test_take_partial_hands_over_everything() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    tr.gtid_event("0-1-12", False)
    ins(tr, "orders", 2, 3)
    batch = tr.take(partial=True)
    assert batch is not None
    assert batch.items == [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        Commit("0-1-11"),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        RowChange("orders", Op.INSERT, None, (3, b"n")),
    ]
    assert tr.items == []
    assert tr.pending_complete == 0
    assert str(tr.position) == "0-1-11"
    ins(tr, "orders", 4)
    tr.xid_event()
    rest = tr.take()
    assert rest is not None
    assert rest.items == [RowChange("orders", Op.INSERT, None, (4, b"n")), Commit("0-1-12")]
    assert str(tr.position) == "0-1-12"


def test_rewind_drops_half_read_transaction() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    tr.gtid_event("0-1-12", False)
    ins(tr, "orders", 2)
    tr.rewind()
    assert tr.items == [RowChange("orders", Op.INSERT, None, (1, b"n")), Commit("0-1-11")]
    assert str(tr.position) == "0-1-11"
    # The reconnected stream reads the transaction again from its start: exactly one copy.
    dml(tr, "0-1-12", 2)
    assert tr.items == [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        Commit("0-1-11"),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        Commit("0-1-12"),
    ]


def test_rewind_forgets_the_half_read_gtid() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    tr.rewind()
    assert tr.items == []
    tr.xid_event()  # a stray Xid without the GTID must not name the forgotten transaction
    assert commits(tr.items) == []
    assert str(tr.position) == "0-1-10"


def test_rewind_after_partial_take() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    tr.take(partial=True)
    ins(tr, "orders", 2)
    tr.rewind()
    assert tr.items == []
    assert str(tr.position) == "0-1-10"


def test_rewind_on_boundary_keeps_everything() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    tr.rewind()
    assert commits(tr.items) == ["0-1-11"]
    assert len(tr.items) == 2


# --------------------------------------------------------------------------- DDL guard


@pytest.mark.parametrize(
    ("query", "schema"),
    [
        ("ALTER TABLE orders ADD COLUMN x INT", "app"),
        ("ALTER TABLE `orders` ADD COLUMN x INT", "app"),
        ("alter table orders engine=InnoDB", "app"),
        ("ALTER TABLE app.orders DROP COLUMN note", "other"),
        ("ALTER TABLE `app`.`orders` DROP COLUMN note", ""),
        ("TRUNCATE TABLE orders", "app"),
        ("TRUNCATE orders", "app"),
        ("TRUNCATE TABLE `app`.`order_items`", "other"),
        ("DROP TABLE orders", "app"),
        ("DROP TABLE IF EXISTS `orders` /* generated by server */", "app"),
        ("DROP TABLE unrelated, orders", "app"),
        ("RENAME TABLE orders TO orders_old", "app"),
        ("RENAME TABLE `app`.`orders` TO `app`.`x`, `app`.`y` TO `app`.`orders`", "other"),
        ("/* maintenance */ ALTER TABLE orders ADD INDEX (note)", "app"),
        ("  \n ALTER TABLE orders FORCE", "app"),
        ("-- nightly cleanup\nTRUNCATE TABLE orders", "app"),
        ("# nightly cleanup\nTRUNCATE TABLE orders", "app"),
    ],
)
def test_ddl_on_moved_table_raises(query: str, schema: str) -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    with pytest.raises(SchemaChanged, match=r"app\.order"):
        tr.query_event(query, schema)


@pytest.mark.parametrize(
    ("query", "schema"),
    [
        ("ALTER TABLE orders_archive ADD COLUMN x INT", "app"),
        ("ALTER TABLE `orders_archive` ADD COLUMN x INT", "app"),
        ("DROP TABLE my_orders", "app"),
        ("TRUNCATE TABLE orders2", "app"),
        ("RENAME TABLE orders_old TO orders_older", "app"),
        ("CREATE TABLE unrelated (id INT PRIMARY KEY)", "app"),
        ("ALTER TABLE orders ADD COLUMN x INT", "shop"),
        ("ALTER TABLE shop.orders ADD COLUMN x INT", "shop"),
        ("ALTER TABLE shop.orders ADD COLUMN happy INT", "shop"),
        ("DROP TABLE `apparel`.`orders`", "apparel"),
        ("GRANT SELECT ON app.orders TO reader", "app"),
        ("INSERT INTO shop.orders VALUES (1, 'x')", "app"),
        ("CREATE TABLE orders_backup LIKE orders", "app"),
        ("CREATE TABLE x AS SELECT * FROM orders", "app"),
        ("INSERT INTO other SELECT * FROM orders", "app"),
        ("UPDATE other SET v = 'ALTER TABLE orders' WHERE id = 1", "app"),
    ],
)
def test_other_statements_do_not_raise(query: str, schema: str) -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    tr.query_event(query, schema)
    assert tr.items == [Commit("0-1-11")]


@pytest.mark.parametrize(
    ("query", "schema"),
    [
        ("INSERT INTO orders VALUES (1, 'x')", "app"),
        ("UPDATE `app`.`orders` SET note = 'x' WHERE id = 1", "other"),
        ("DELETE FROM orders WHERE id < 5", "app"),
        ("REPLACE INTO order_items SELECT * FROM staging", "app"),
        ("LOAD DATA INFILE '/tmp/x' INTO TABLE orders", "app"),
        ("UPDATE orders o JOIN other x ON o.id = x.id SET o.note = x.v", "app"),
    ],
)
def test_statement_logged_writes_to_moved_tables_raise(query: str, schema: str) -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.query_event("BEGIN", schema)
    with pytest.raises(UnreproducibleEvent, match=r"binlog_format=STATEMENT or MIXED") as caught:
        tr.query_event(query, schema)
    assert caught.value.gtid == "0-1-11" and caught.value.table.startswith("app.order")
    assert not isinstance(caught.value, SchemaChanged)
    assert caught.value.exit_code == 3 and caught.value.dooms_move


def test_partial_row_image_raises_naming_the_transaction() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-12", False)
    with pytest.raises(UnreproducibleEvent, match=r"binlog_row_image=MINIMAL or NOBLOB") as caught:
        tr.partial_image("orders", Op.UPDATE)
    assert caught.value.gtid == "0-1-12" and caught.value.table == "app.orders"


@pytest.mark.parametrize(
    ("bitmap", "columns", "full"),
    [
        (b"\x07", 3, True),
        (b"\x03", 3, False),
        (b"\xff", 8, True),
        (b"\xff\x01", 9, True),
        (b"\xff\x00", 9, False),
        (b"\xfe\x01", 9, False),
        (b"\xff\xff\x0f", 20, True),
    ],
)
def test_full_image_bitmap(bitmap: bytes, columns: int, full: bool) -> None:
    assert full_image(bitmap, columns) is full


def test_own_tagged_rename_does_not_raise_and_commits() -> None:
    rename = sql.rename_tables(
        "app", [("orders", "_orders_moved"), ("order_items", "_order_items_moved")], TAG
    )
    for schema in ("app", "", "other"):
        tr = mariadb()
        tr.gtid_event("0-1-11", True)
        tr.query_event(rename, schema)
        assert tr.items == [Commit("0-1-11")]
        assert str(tr.position) == "0-1-11"


def test_untagged_rename_of_moved_tables_raises() -> None:
    rename = sql.rename_tables("app", [("orders", "_orders_moved")], "somebody else")
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    with pytest.raises(SchemaChanged):
        tr.query_event(rename, "app")


def test_mysql_ddl_on_moved_table_raises() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    with pytest.raises(SchemaChanged):
        tr.query_event("TRUNCATE TABLE orders", "app")


# --------------------------------------------------------------------------- events counting


def test_events_count_every_call() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    tr.query_event("CREATE TABLE unrelated (id INT)", "app")
    tr.gtid_event("0-1-12", False)
    tr.rows_event(
        "orders", Op.INSERT, [{"values": {"id": 1, "note": None}}, {"values": {"id": 2, "note": None}}]
    )
    tr.xid_event()
    batch = tr.take()
    assert batch is not None
    assert batch.events == 5
    assert tr.take() is None


def test_our_rename_is_handed_over_at_once_and_only_it() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    assert not tr.urgent  # ordinary commits wait for the batch age or size
    tr.gtid_event("0-1-12", standalone=True)
    tr.query_event(f"/* {TAG} */ RENAME TABLE app.orders TO app._orders_old", "app")
    assert tr.urgent and commits(tr.items) == ["0-1-11", "0-1-12"]
    batch = tr.take()
    assert batch is not None and not tr.urgent
    tr.gtid_event("0-1-13", standalone=True)
    tr.query_event("CREATE TABLE app.other (id INT PRIMARY KEY)", "app")
    assert not tr.urgent


# --------------------------------------------------------------------------- natively decoded rows, positions


def test_row_changes_count_as_one_event() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    changes = [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
    ]
    tr.row_changes(changes)
    tr.xid_event()
    batch = tr.take()
    assert batch is not None
    assert batch.items == [*changes, Commit("0-1-11")]
    assert batch.events == 3


def test_position_is_folded_in_by_take_and_on_reading() -> None:
    tr = mariadb("0-1-10")
    for n in range(11, 15):
        dml(tr, f"0-1-{n}", n)
    assert str(tr.position) == "0-1-14"
    dml(tr, "0-1-15", 15)
    tr.take()
    assert tr._committed == []  # folded when handed over: the list never grows past a batch
    assert str(tr.position) == "0-1-15"


MARIADB_GTID = st.builds(
    lambda d, s, n: f"{d}-{s}-{n}", st.integers(0, 3), st.integers(1, 4), st.integers(0, 2**64 - 1)
)


@given(st.lists(MARIADB_GTID, max_size=30), st.sampled_from(["", "0-1-10", "0-1-10,2-3-5"]))
@settings(max_examples=300, deadline=None)
def test_folding_gtids_equals_advancing_one_by_one(gtids: list[str], start: str) -> None:
    expected = MariaDBPosition.parse(start)
    for g in gtids:
        expected = gtid.advance(expected, g)
    assert _fold_gtids(MariaDBPosition.parse(start), list(gtids)) == expected


@given(st.lists(st.integers(1, 50), max_size=20))
@settings(max_examples=100, deadline=None)
def test_folding_mysql_gtids_equals_adding_one_by_one(numbers: list[int]) -> None:
    start = MySQLGtidSet.parse(f"{U1}:1-10")
    expected = start
    for n in numbers:
        expected = gtid.advance(expected, f"{U1}:{n}")
    assert _fold_gtids(start, [f"{U1}:{n}" for n in numbers]) == expected


def test_folding_a_malformed_gtid_raises_as_advance_does() -> None:
    with pytest.raises(ValueError):
        _fold_gtids(MariaDBPosition.parse("0-1-5"), ["0-1-6", f"{U1}:7"])
