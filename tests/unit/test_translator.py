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

from tablemover import gtid, sql, stream
from tablemover.changes import Commit, Op, RowChange
from tablemover.decode import RowDecoder
from tablemover.errors import SchemaChanged, UnreproducibleEvent, XAUnresolved
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition, MySQLGtidSet
from tablemover.schema import Column, Index, TableSchema
from tablemover.stream import Translator, _fold_gtids, _xid_key, full_image, xid_text

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


@pytest.mark.parametrize("text", ["COMMIT", "commit", " COMMIT ;", "COMMIT;\n"])
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


def test_commits_without_preceding_gtid_do_not_commit() -> None:
    tr = mariadb()
    tr.xid_event()
    tr.query_event("COMMIT", "app")
    tr.query_event("ROLLBACK", "app")
    tr.xa_prepare_event(False, "X'78',X'',1")
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


# --------------------------------------------------------------- transactions as the server commits them
# The event sequences below are those MariaDB 10.11 writes (read with SHOW BINLOG EVENTS from a real
# server): a transaction that also wrote a MyISAM table logs its SAVEPOINT and ROLLBACK TO
# statements, and a ROLLBACK TO a savepoint set before anything was logged becomes ROLLBACK.

XID = "X'7831',X'',1"  # XA START 'x1', as the binlog spells it
XID2 = "X'7832',X'',1"


def upd(tr: Translator, key: int, note: bytes) -> None:
    tr.rows_event(
        "orders",
        Op.UPDATE,
        [{"before_values": {"id": key, "note": b"n"}, "after_values": {"id": key, "note": note}}],
    )


def notes(items: list[Any]) -> list[bytes]:
    return [i.after[1] for i in items if isinstance(i, RowChange) and i.after is not None]


def test_transaction_ending_in_rollback_applies_nothing_but_consumes_its_gtid() -> None:
    tr = mariadb()
    dml(tr, "0-1-11", 1)
    tr.gtid_event("0-1-12", False)
    ins(tr, "orders", 2, 3)
    tr.query_event("ROLLBACK", "app")
    assert tr.items == [RowChange("orders", Op.INSERT, None, (1, b"n")), Commit("0-1-11"), Commit("0-1-12")]
    assert str(tr.position) == "0-1-12"
    assert tr.pending_complete == 3


def test_rollback_after_part_of_the_transaction_was_handed_over_is_refused() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1, 2)
    assert tr.take(partial=True) is not None  # a huge transaction: its start went to the writer
    ins(tr, "orders", 3)
    with pytest.raises(UnreproducibleEvent, match=r"0-1-11 ends in ROLLBACK after part of it") as caught:
        tr.query_event("ROLLBACK", "app")
    assert caught.value.gtid == "0-1-11" and caught.value.exit_code == 3
    assert str(tr.position) == "0-1-10"


def test_rollback_to_savepoint_drops_the_changes_after_it() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    upd(tr, 1, b"a")
    tr.query_event("SAVEPOINT `s1`", "app")
    upd(tr, 2, b"b")
    tr.query_event("SAVEPOINT `s2`", "app")
    tr.rows_event("orders", Op.DELETE, [{"values": {"id": 3, "note": b"n"}}])
    tr.query_event("ROLLBACK TO `s2`", "app")
    tr.xid_event()
    assert notes(tr.items) == [b"a", b"b"]
    assert [i.op for i in tr.items if isinstance(i, RowChange)] == [Op.UPDATE, Op.UPDATE]
    assert commits(tr.items) == ["0-1-11"]


def test_nested_savepoints_and_repeated_rollbacks() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    upd(tr, 1, b"a")
    tr.query_event("SAVEPOINT `s1`", "app")
    upd(tr, 1, b"b")
    tr.query_event("SAVEPOINT `s2`", "app")
    upd(tr, 1, b"c")
    tr.query_event("ROLLBACK TO `s1`", "app")  # s2 is gone with it, s1 stays
    assert notes(tr.items) == [b"a"]
    upd(tr, 1, b"d")
    tr.query_event("ROLLBACK TO SAVEPOINT s1", "app")
    upd(tr, 1, b"e")
    with pytest.raises(UnreproducibleEvent, match="savepoint `s2`, which it did not set"):
        tr.query_event("ROLLBACK TO `s2`", "app")


def test_savepoint_of_the_same_name_replaces_the_older_one() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    upd(tr, 2, b"10")
    tr.query_event("SAVEPOINT `a`", "app")
    upd(tr, 2, b"11")
    tr.query_event("SAVEPOINT `a`", "app")
    upd(tr, 2, b"12")
    tr.query_event("ROLLBACK TO `a`", "app")
    tr.query_event("ROLLBACK TO `a`", "app")
    tr.xid_event()
    assert notes(tr.items) == [b"10", b"11"]


def test_savepoint_names_compare_as_the_server_does() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.query_event("SAVEPOINT `we``ird`", "app")
    upd(tr, 2, b"x")
    tr.query_event("ROLLBACK TO `WE``IRD`", "app")
    tr.query_event("COMMIT", "app")
    assert tr.items == [Commit("0-1-11")]


def test_release_savepoint_forgets_it_and_later_ones() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.query_event("SAVEPOINT s1", "app")
    tr.query_event("SAVEPOINT s2", "app")
    tr.query_event("RELEASE SAVEPOINT s1", "app")
    with pytest.raises(UnreproducibleEvent, match="did not set"):
        tr.query_event("ROLLBACK TO s2", "app")


def test_savepoints_end_with_their_transaction() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.query_event("SAVEPOINT s1", "app")
    tr.xid_event()
    tr.gtid_event("0-1-12", False)
    with pytest.raises(UnreproducibleEvent, match="did not set"):
        tr.query_event("ROLLBACK TO s1", "app")


def test_partial_take_keeps_changes_after_an_open_savepoint() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1, 2)
    tr.query_event("SAVEPOINT s1", "app")
    ins(tr, "orders", 3)
    batch = tr.take(partial=True)
    assert batch is not None and len(batch.items) == 2
    assert tr.take(partial=True) is None  # nothing more may go before the savepoint's fate
    tr.query_event("ROLLBACK TO s1", "app")
    ins(tr, "orders", 4)
    tr.xid_event()
    rest = tr.take()
    assert rest is not None
    assert rest.items == [RowChange("orders", Op.INSERT, None, (4, b"n")), Commit("0-1-11")]


def test_savepoint_past_the_hold_limit_is_handed_over_and_a_rollback_to_it_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "HOLD_LIMIT", 2)
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    tr.query_event("SAVEPOINT s1", "app")
    ins(tr, "orders", 1, 2, 3)
    batch = tr.take(partial=True)
    assert batch is not None and len(batch.items) == 3
    with pytest.raises(UnreproducibleEvent, match="rolls back to savepoint s1 after row changes"):
        tr.query_event("ROLLBACK TO s1", "app")


def test_rollback_to_a_savepoint_set_before_a_partial_take_is_exact() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    tr.take(partial=True)
    tr.query_event("SAVEPOINT s1", "app")
    ins(tr, "orders", 2)
    tr.query_event("ROLLBACK TO s1", "app")
    tr.xid_event()
    assert tr.items == [Commit("0-1-11")]


def mariadb_xa_prepare(tr: Translator, gtid: str, xid: str, *ids: int) -> None:
    """MariaDB's first part of an XA transaction: GTID (FL_PREPARED_XA), rows, XA END, XA_PREPARE."""
    tr.gtid_event(gtid, False, xa=True)
    ins(tr, "orders", *ids)
    tr.query_event(f"XA END {xid}", "app")
    tr.xa_prepare_event(False, xid)


def xa_outcome(tr: Translator, gtid: str, verb: str, xid: str) -> None:
    """MariaDB's second part: a standalone GTID (FL_COMPLETED_XA) with XA COMMIT or XA ROLLBACK."""
    tr.gtid_event(gtid, True)
    tr.query_event(f"XA {verb} {xid}", "app")


def test_xa_commit_applies_the_rows_with_it_and_not_before() -> None:
    tr = mariadb()
    mariadb_xa_prepare(tr, "0-1-11", XID, 1, 2)
    assert tr.pending_complete == 0 and str(tr.position) == "0-1-10"
    assert tr.take() is not None and tr.take(partial=True) is None
    xa_outcome(tr, "0-1-12", "COMMIT", XID)
    batch = tr.take()
    assert batch is not None
    assert batch.items == [
        RowChange("orders", Op.INSERT, None, (1, b"n")),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        Commit("0-1-11"),
        Commit("0-1-12"),
    ]
    assert str(tr.position) == "0-1-12"


def test_xa_rollback_applies_nothing_and_consumes_both_gtids() -> None:
    tr = mariadb()
    mariadb_xa_prepare(tr, "0-1-11", XID, 1, 2)
    xa_outcome(tr, "0-1-12", "ROLLBACK", XID)
    assert tr.items == [Commit("0-1-11"), Commit("0-1-12")]
    assert str(tr.position) == "0-1-12" and tr.pending_complete == 2


def test_transactions_after_a_prepared_xa_wait_for_its_outcome() -> None:
    tr = mariadb()
    dml(tr, "0-1-10", 9)
    mariadb_xa_prepare(tr, "0-1-11", XID, 1)
    dml(tr, "0-1-12", 5)
    tr.gtid_event("0-1-13", True)
    tr.query_event("CREATE TABLE unrelated (id INT)", "app")
    assert tr.pending_complete == 2 and str(tr.position) == "0-1-10"
    first = tr.take()
    assert first is not None and commits(first.items) == ["0-1-10"]
    assert tr.take(partial=True) is None
    xa_outcome(tr, "0-1-14", "ROLLBACK", XID)
    assert tr.items == [
        Commit("0-1-11"),
        RowChange("orders", Op.INSERT, None, (5, b"n")),
        Commit("0-1-12"),
        Commit("0-1-13"),
        Commit("0-1-14"),
    ]
    assert str(tr.position) == "0-1-14" and tr.pending_complete == 5


def test_two_prepared_xa_transactions_resolved_in_any_order() -> None:
    tr = mariadb()
    mariadb_xa_prepare(tr, "0-1-11", XID, 1)
    mariadb_xa_prepare(tr, "0-1-12", XID2, 2)
    xa_outcome(tr, "0-1-13", "ROLLBACK", XID)
    assert tr.pending_complete == 0 and str(tr.position) == "0-1-10"
    xa_outcome(tr, "0-1-14", "COMMIT", XID2)
    assert tr.items == [
        Commit("0-1-11"),
        RowChange("orders", Op.INSERT, None, (2, b"n")),
        Commit("0-1-12"),
        Commit("0-1-13"),
        Commit("0-1-14"),
    ]
    assert str(tr.position) == "0-1-14" and tr.pending_complete == 5


def test_xa_without_moved_rows_commits_at_its_prepare() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False, xa=True)
    tr.query_event(f"XA END {XID}", "app")
    tr.xa_prepare_event(False, XID)
    assert tr.items == [Commit("0-1-11")] and str(tr.position) == "0-1-11"
    xa_outcome(tr, "0-1-12", "ROLLBACK", XID)  # harmless: nothing of it is held
    assert commits(tr.items) == ["0-1-11", "0-1-12"] and str(tr.position) == "0-1-12"


def test_xa_outcome_of_a_transaction_prepared_before_our_start_is_harmless() -> None:
    tr = mariadb()
    xa_outcome(tr, "0-1-11", "COMMIT", XID)
    assert tr.items == [Commit("0-1-11")]


def test_rewind_while_an_xa_waits_reads_it_all_again() -> None:
    tr = mariadb()
    dml(tr, "0-1-10", 9)
    mariadb_xa_prepare(tr, "0-1-11", XID, 1)
    dml(tr, "0-1-12", 5)
    tr.rewind()
    assert commits(tr.items) == ["0-1-10"] and str(tr.position) == "0-1-10"
    # The reconnected stream starts after 0-1-10: the prepare again, then its outcome.
    mariadb_xa_prepare(tr, "0-1-11", XID, 1)
    dml(tr, "0-1-12", 5)
    xa_outcome(tr, "0-1-13", "COMMIT", XID)
    assert commits(tr.items) == ["0-1-10", "0-1-11", "0-1-12", "0-1-13"]
    assert [i.after for i in tr.items if isinstance(i, RowChange)] == [(9, b"n"), (1, b"n"), (5, b"n")]


def test_an_xa_waiting_too_long_stops_the_move_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "HOLD_LIMIT", 3)
    tr = mariadb()
    mariadb_xa_prepare(tr, "0-1-11", XID, 1)
    dml(tr, "0-1-12", 2)
    with pytest.raises(XAUnresolved, match=r"XA START 'x1'.*0-1-11.*XA RECOVER") as caught:
        dml(tr, "0-1-13", 3)
    assert caught.value.xid == XID and caught.value.gtid == "0-1-11" and caught.value.exit_code == 3
    assert str(tr.position) == "0-1-10"


def test_an_xa_too_large_to_hold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "HOLD_LIMIT", 2)
    tr = mariadb()
    tr.gtid_event("0-1-11", False, xa=True)
    ins(tr, "orders", 1, 2)
    assert tr.take(partial=True) is None  # never handed over before its outcome
    ins(tr, "orders", 3)
    with pytest.raises(UnreproducibleEvent, match=r"XA transaction 0-1-11 has more than 2"):
        tr.take(partial=True)


def test_savepoints_inside_an_xa_transaction() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False, xa=True)
    upd(tr, 2, b"15")
    tr.query_event("SAVEPOINT `a`", "app")
    upd(tr, 2, b"16")
    tr.query_event("ROLLBACK TO `a`", "app")
    tr.query_event(f"XA END {XID}", "app")
    tr.xa_prepare_event(False, XID)
    xa_outcome(tr, "0-1-12", "COMMIT", XID)
    assert notes(tr.items) == [b"15"] and commits(tr.items) == ["0-1-11", "0-1-12"]


def test_mysql_xa_two_phase_and_one_phase() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event(f"XA START {XID}", "app")  # MySQL: no BEGIN, no FL_PREPARED_XA
    ins(tr, "orders", 1)
    tr.query_event(f"XA END {XID}", "app")
    tr.xa_prepare_event(False, XID)
    assert tr.pending_complete == 0
    tr.gtid_event(f"{U1}:12", True)
    tr.query_event(f"XA ROLLBACK {XID}", "app")
    assert tr.items == [Commit(f"{U1}:11"), Commit(f"{U1}:12")]
    tr.gtid_event(f"{U1}:13", True)
    tr.query_event(f"XA START {XID2}", "app")
    ins(tr, "orders", 2)
    tr.query_event(f"XA END {XID2}", "app")
    tr.xa_prepare_event(True, XID2)  # XA COMMIT ... ONE PHASE: its commit
    assert tr.items[-2:] == [RowChange("orders", Op.INSERT, None, (2, b"n")), Commit(f"{U1}:13")]
    assert str(tr.position) == f"{U1}:1-13"


def test_xa_commit_one_phase_statement_commits() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event(f"XA START {XID}", "app")
    ins(tr, "orders", 1)
    tr.query_event(f"XA END {XID}", "app")
    tr.query_event(f"XA COMMIT {XID} ONE PHASE", "app")
    assert commits(tr.items) == [f"{U1}:11"] and len(tr.items) == 2


def test_xid_spellings_agree() -> None:
    assert xid_text(1, b"x1", b"") == XID == _xid_key("X'7831',X'',1")
    assert xid_text(7, b"gt'r", b"bq") == _xid_key("X'67742772',X'6271',7")
    assert _xid_key("X'0A0B',X'FF',1") == xid_text(1, b"\x0a\x0b", b"\xff")


# --------------------------------------------------------------------------- transaction shapes


def test_a_gtid_while_a_transaction_is_open_is_refused() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", False)
    ins(tr, "orders", 1)
    with pytest.raises(UnreproducibleEvent, match=r"0-1-12 starts while transaction 0-1-11 has not ended"):
        tr.gtid_event("0-1-12", False)
    assert str(tr.position) == "0-1-10"


def test_a_gtid_with_no_commit_before_the_next_is_refused_even_without_rows() -> None:
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)
    tr.query_event("BEGIN", "app")
    with pytest.raises(UnreproducibleEvent, match="has not ended"):
        tr.gtid_event(f"{U1}:12", True)


@pytest.mark.parametrize("where", ["before any GTID", "after a commit"])
def test_rows_outside_a_transaction_are_refused(where: str) -> None:
    tr = mariadb()
    if where == "after a commit":
        dml(tr, "0-1-11", 1)
    with pytest.raises(UnreproducibleEvent, match="outside any transaction"):
        ins(tr, "orders", 2)
    with pytest.raises(UnreproducibleEvent, match="outside any transaction"):
        tr.row_changes([RowChange("orders", Op.INSERT, None, (3, b"n"))])


def test_rows_in_a_standalone_group_are_refused() -> None:
    tr = mariadb()
    tr.gtid_event("0-1-11", True)
    with pytest.raises(UnreproducibleEvent, match="single statement"):
        ins(tr, "orders", 1)
    tr = mysql()
    tr.gtid_event(f"{U1}:11", True)  # no BEGIN followed
    with pytest.raises(UnreproducibleEvent, match="single statement"):
        ins(tr, "orders", 1)


def test_legitimate_shapes_pass() -> None:
    tr = mariadb()
    # A stray commit before the first GTID (a transaction before our start position).
    tr.xid_event()
    # Standalone DDL groups, one after another.
    for seq in (11, 12):
        tr.gtid_event(f"0-1-{seq}", True)
        tr.query_event(f"CREATE TABLE unrelated{seq} (id INT)", "app")
    dml(tr, "0-1-13", 1)
    # Our own cutover RENAME.
    tr.gtid_event("0-1-14", True)
    tr.query_event(f"/* {TAG} */ RENAME TABLE app.orders TO app._orders_old", "app")
    # A reconnect in the middle of a transaction, then the transaction again from its GTID.
    tr.gtid_event("0-1-15", False)
    ins(tr, "orders", 2)
    tr.rewind()
    dml(tr, "0-1-15", 2)
    assert commits(tr.items) == ["0-1-11", "0-1-12", "0-1-13", "0-1-14", "0-1-15"]
    # MySQL: GTID + BEGIN + rows + Xid, and an empty transaction.
    my = mysql()
    my.gtid_event(f"{U1}:11", True)
    my.query_event("BEGIN", "app")
    ins(my, "orders", 1)
    my.xid_event()
    my.gtid_event(f"{U1}:12", True)
    my.query_event("BEGIN", "app")
    my.query_event("COMMIT", "app")
    assert commits(my.items) == [f"{U1}:11", f"{U1}:12"]
