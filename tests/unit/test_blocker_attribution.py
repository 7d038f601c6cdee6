"""The blocker check's fallback: which long transactions it attributes to a moved table, and what
it publishes of the others (nothing that identifies them)."""

from __future__ import annotations

from tablemover.blockers import Blocker, attribute, named_table, old_enough, published

TABLES = ["orders", "Items"]


def test_a_statement_naming_a_moved_table_is_attributed() -> None:
    assert named_table("UPDATE orders SET v = 1 WHERE id = 2", "app", "app", TABLES) == "orders"
    assert named_table("select * from `app`.`orders` where 1", "other", "app", TABLES) == "orders"
    assert named_table("SELECT * FROM app . items", "", "app", TABLES) == "Items", "case-folded, spaced"
    assert named_table("SELECT o.id FROM x JOIN `orders` o", "app", "app", TABLES) == "orders"
    assert named_table("DELETE FROM `it``s`, orders", "app", "app", TABLES) == "orders"


def test_other_tables_literals_and_other_schemas_are_not() -> None:
    assert named_table("UPDATE accounts SET token = 'orders'", "app", "app", TABLES) == "", "a literal"
    assert named_table("SELECT 1 /* orders */ FROM t -- orders", "app", "app", TABLES) == "", "comments"
    assert named_table("SELECT * FROM orders", "billing", "app", TABLES) == "", "another default schema"
    assert named_table("SELECT * FROM billing.orders", "app", "app", TABLES) == "", "another schema's table"
    assert named_table("SELECT * FROM orders_archive", "app", "app", TABLES) == ""
    assert named_table("", "app", "app", TABLES) == "", "idle in transaction"


def test_unattributed_transactions_are_published_as_a_count_only() -> None:
    rows = attribute(
        [
            (7, "app", "10.0.0.5", 40, "UPDATE orders SET secret = 'sk_live_x' WHERE id = 1", "app"),
            (8, "root", "localhost", 90, "UPDATE accounts SET api_token = 'sk_live_y'", "app"),
            (9, "batch", "10.0.0.9", 30, "", "billing"),
            (10, "young", "h", 0, "UPDATE orders SET v = 1", "app"),
        ],
        "app",
        TABLES,
    )
    found = old_enough(rows, 1.0, "app")
    assert [b.thread_id for b in found] == [8, 7, 9], "the young one does not count"
    lines = published(found)
    assert len(lines) == 2, lines
    assert lines[0].startswith("thread 7 (app@10.0.0.5), transaction open 40 s on app.orders: UPDATE orders")
    assert "sk_live" not in lines[0]
    assert lines[1].startswith("2 other transaction(s), the oldest open 90 s"), lines[1]
    for hidden in ("root", "localhost", "accounts", "api_token", "batch", "10.0.0.9", "billing", "8", "9 "):
        assert hidden not in lines[1], (hidden, lines[1])


def test_exact_methods_publish_every_blocker() -> None:
    found = [Blocker(3, "u", "h", 5, "", "app.orders"), Blocker(4, "v", "h", 2, "SELECT 1", "app.Items")]
    assert published(found) == [b.describe() for b in found]
    assert published([]) == []
