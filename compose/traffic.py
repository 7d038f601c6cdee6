"""Write traffic for the tablemover compose demo: a small, steady mix of order writes on the source.

Runs in the compose file's ``traffic`` service (``python:3.11-slim`` with PyMySQL installed at start).
Every step is one short transaction on ``app.orders`` / ``app.order_items``: a new order with one to
three items, an order status change, an item quantity change, or an order deleted with its items.

It waits (retrying) while the source is not reachable yet. When a write fails with error 1146 (table
does not exist) after the tables were seen, tablemover's cutover has renamed them away: the script
says so and exits 0, which is what an application pointed at the old tables sees at cutover.

Settings come from the environment: DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME,
TRAFFIC_RATE (steps per second, default 20), TRAFFIC_SEED (optional, for a repeatable mix) and
RENAMED_TABLE_FORMAT (tablemover's ``renamed_table_format``, default ``_{table}_moved``: a restarted
script that finds the tables already renamed exits 0 at once).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from typing import Any

ER_NO_SUCH_TABLE = 1146
# Transient errors: the step is retried on a new connection or simply dropped.
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
CONNECTION_ERRORS = frozenset({1040, 1045, 1049, 1053, 2003, 2005, 2006, 2013, 2055})
TABLES = ("orders", "order_items")
STATUSES = ("new", "paid", "shipped", "cancelled")


def log(message: str) -> None:
    """One line on stdout, flushed (compose shows it in `docker compose logs traffic`)."""
    print(f"traffic: {message}", flush=True)


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number a PyMySQL exception carries, if any."""
    if exc.args and isinstance(exc.args[0], int):
        return int(exc.args[0])
    return None


def is_cutover(code: int | None, tables_seen: bool) -> bool:
    """Whether an error means the tables were renamed away by the cutover (not a startup race)."""
    return code == ER_NO_SUCH_TABLE and tables_seen


def renamed_away(conn: Any, renamed_format: str) -> bool:
    """Whether every table is gone and present under its cutover name (a cutover happened earlier)."""
    names = [renamed_format.format(table=t) for t in TABLES]
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME IN ({', '.join(['%s'] * len(names))})",
            names,
        )
        (count,) = cur.fetchone()
    conn.commit()
    return int(count) == len(names)


def random_id(cur: Any, table: str, rng: random.Random) -> int | None:
    """An existing id of ``table`` picked roughly at random, without scanning the table."""
    cur.execute(f"SELECT MIN(id), MAX(id) FROM {table}")
    low, high = cur.fetchone()
    if low is None:
        return None
    cur.execute(f"SELECT id FROM {table} WHERE id >= %s ORDER BY id LIMIT 1", (rng.randint(low, high),))
    row = cur.fetchone()
    return None if row is None else int(row[0])


def step(conn: Any, rng: random.Random) -> str:
    """Run one write transaction; returns what it did."""
    roll = rng.random()
    with conn.cursor() as cur:
        try:
            if roll < 0.45:
                items = [
                    (f"SKU-{rng.randint(1, 200):04d}", rng.randint(1, 5), rng.randint(100, 5000))
                    for _ in range(rng.randint(1, 3))
                ]
                total = sum(q * p for _, q, p in items)
                cur.execute(
                    "INSERT INTO orders (customer_id, status, total_cents, note) VALUES (%s, 'new', %s, %s)",
                    (rng.randint(100, 999), total, rng.choice((None, "", "traffic ✓", "rush"))),
                )
                order_id = cur.lastrowid
                cur.executemany(
                    "INSERT INTO order_items (order_id, sku, quantity, price_cents) VALUES (%s, %s, %s, %s)",
                    [(order_id, sku, qty, price) for sku, qty, price in items],
                )
                what = "insert"
            elif roll < 0.70:
                order_id = random_id(cur, "orders", rng)
                if order_id is not None:
                    cur.execute(
                        "UPDATE orders SET status = %s WHERE id = %s", (rng.choice(STATUSES), order_id)
                    )
                what = "update order"
            elif roll < 0.90:
                item_id = random_id(cur, "order_items", rng)
                if item_id is not None:
                    cur.execute(
                        "UPDATE order_items SET quantity = %s WHERE id = %s", (rng.randint(1, 9), item_id)
                    )
                what = "update item"
            else:
                order_id = random_id(cur, "orders", rng)
                if order_id is not None:
                    cur.execute("DELETE FROM order_items WHERE order_id = %s", (order_id,))
                    cur.execute("DELETE FROM orders WHERE id = %s", (order_id,))
                what = "delete"
            conn.commit()
            return what
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be gone; the caller reconnects
                conn.rollback()
            raise


def connect(pymysql: Any, settings: dict[str, Any]) -> Any:
    """A new connection, retried until the source accepts it (it may still be initialising)."""
    delay = 1.0
    while True:
        try:
            return pymysql.connect(autocommit=False, charset="utf8mb4", connect_timeout=5, **settings)
        except pymysql.MySQLError as exc:
            log(f"source not ready ({exc}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def run() -> int:
    """The write loop; returns the process exit code."""
    import pymysql  # installed by the compose service at start; imported late so tests need not have it

    settings = {
        "host": os.environ.get("DB_HOST", "127.0.0.1"),
        "port": int(os.environ.get("DB_PORT", "3306")),
        "user": os.environ.get("DB_USER", "root"),
        "password": os.environ.get("DB_PASSWORD", ""),
        "database": os.environ.get("DB_NAME", "app"),
    }
    rate = float(os.environ.get("TRAFFIC_RATE", "20"))
    seed = os.environ.get("TRAFFIC_SEED")
    renamed_format = os.environ.get("RENAMED_TABLE_FORMAT", "_{table}_moved")
    rng = random.Random(int(seed)) if seed else random.Random()
    interval = 1.0 / rate if rate > 0 else 0.0
    log(
        f"writing to {settings['database']}.{{{','.join(TABLES)}}} on {settings['host']}:{settings['port']} "
        f"at about {rate:g} transactions/s"
    )
    conn = connect(pymysql, settings)
    tables_seen = False
    counts: dict[str, int] = {}
    last_report = time.monotonic()
    while True:
        try:
            what = step(conn, rng)
        except pymysql.MySQLError as exc:
            code = error_code(exc)
            if is_cutover(code, tables_seen):
                log(
                    f"{exc.args[-1]}: the tables were renamed away (tablemover cutover); "
                    f"stopping after {sum(counts.values())} transactions {counts}"
                )
                return 0
            if code == ER_NO_SUCH_TABLE and renamed_away(conn, renamed_format):
                log("the tables were renamed away before this run (tablemover cutover); nothing to do")
                return 0
            if code == ER_NO_SUCH_TABLE:
                log("tables not there yet; waiting")
                time.sleep(2)
            elif code in (ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK):
                log(f"transient error {code}, step dropped")
            elif code in CONNECTION_ERRORS or code is None or not conn.open:
                log(f"connection problem ({exc}); reconnecting")
                with contextlib.suppress(Exception):
                    conn.close()
                conn = connect(pymysql, settings)
            else:
                raise
            continue
        tables_seen = True
        counts[what] = counts.get(what, 0) + 1
        now = time.monotonic()
        if now - last_report >= 10:
            log(f"{sum(counts.values())} transactions so far {counts}")
            last_report = now
        if interval:
            time.sleep(interval)


def main() -> None:
    """Entry point: exit 0 at cutover or on SIGINT/SIGTERM (`docker compose stop`)."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
