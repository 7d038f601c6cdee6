"""Copy and apply on tables shaped like users' tables (issue "Apply at full speed on real schemas").

Two tables, one move:

* ``order_lines``: composite primary key ``(order_id BIGINT, line_no INT)``, DECIMAL(12,2),
  DATETIME(6), nullable columns, a utf8mb4 VARCHAR with multi-byte text, a TEXT, a secondary key;
* ``customers``: BIGINT UNSIGNED primary key, a secondary UNIQUE key on ``email VARCHAR(191)``, JSON,
  BLOB, ENUM, SET, DECIMAL, DATETIME(6).

Measured, in this order:

1. ``copy``: rows/s of the move's copy phase (a ``tablemover run --stop-before-cutover`` that exits
   once copied and caught up) against the target server's own ``INSERT ... SELECT`` of the same rows
   (both tables, same-run reference; target ratio >= 0.6).
2. ``heavy_backlog``: the mix below as fast as ``threads`` connections go, for ``heavy_seconds``,
   written while no daemon runs; then a resumed ``tablemover run`` applies that backlog, timed from
   its ``resuming move from checkpoint`` line to ``copy complete and caught up`` (as the ``binlog``
   part does). ``sysbench_backlog`` is the same measurement on a sysbench table of its own move:
   ``oltp_write_only`` from as many connections for as long. ``heavy_vs_sysbench`` is the ratio of
   the two apply rates, in events/s (target >= 0.5). A backlog, rather than the rate while both run,
   because that is the daemon's apply capacity whatever the load: applying live, the daemon keeps up
   with either load (or not) depending on how fast the generator writes and how much of the two
   cores it takes, and the rate would then measure the generator.
3. ``light``: apply lag under ~20 transactions/s of the mix from one connection, on a daemon held
   before its cutover (``postpone_cutover = true``; target: max and p99 < 2 s).
4. ``heavy``: the same daemon under the unthrottled mix, live: its lag, keep-up ratio and catch-up
   (no target; what a user would see).

Then the cutover is released and both target tables must equal their renamed source tables.

The traffic comes from :class:`RealisticLoad`, a pymysql generator in this process (unix socket to
the local source server, nothing else): bounded in time and in transaction count, seeded, and each
worker owns a disjoint part of the key space so that no statement misses its row or hits a duplicate
key (every statement writes a row event). The mix, by weight:

========================  ==  =============================================================
place an order            25  multi-row INSERT of 1-3 order lines + UPDATE of the customer's
                              balance, one transaction
update an order line      20  non-key columns (DECIMAL, DATETIME(6) or NULL, TEXT)
renumber an order line    10  UPDATE of ``line_no``: a primary-key change (composite key)
delete an order line      10  single-row DELETE by the composite key
new customer               8  INSERT with JSON, BLOB, ENUM, SET
update a customer         15  JSON_SET on the JSON document, BLOB, ENUM, SET, DATETIME(6)
change an email            6  UPDATE of the UNIQUE key
change a customer id       3  UPDATE of the primary key
delete a customer          3  single-row DELETE
========================  ==  =============================================================

A transaction of several statements goes to the server as one multi-statement round trip
(``BEGIN; ...; COMMIT``), so that the generator's Python cost per row event stays small: with one
round trip per statement, two Python threads could not write fast enough to load the daemon.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from loadkit import Pacer, SysbenchRun, mysql_errno, parse_sysbench, sysbench_cmd, sysbench_prepare
from pymysql.constants import CLIENT

from bench.common import (
    MSG_CAUGHT_UP,
    MSG_RESUMING,
    MSG_STATE_CHANGED,
    RUN_TIMEOUT_S,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    check_same_rows,
    process_cpu_s,
    rate,
    run_tablemover,
    socket_path,
    wall_s,
    write_config,
)
from bench.keepup import (
    LAG_TARGET_S,
    SETTLE_TIMEOUT_S,
    DaemonApplier,
    measure_load,
    release_cutover,
    wait_postponed,
)
from tablemover.local.mariadb import LocalMariaDB, LocalPair

DB = "bench_real"
REF_DB = "bench_real_ref"
SB_DB = "bench_real_sb"  # the sysbench reference of the heavy apply rate
SB_ROWS = 50_000
ORDERS, CUSTOMERS = "order_lines", "customers"
TABLES = [ORDERS, CUSTOMERS]
LINES_PER_ORDER = 5  # the filled orders have line_no 1..5
NEW_KEY_BASE = 1_000_000_000  # ids of rows the generator creates start here (the filled ones are below)
COPY_TARGET_RATIO = 0.6
HEAVY_TARGET_RATIO = 0.5
ER_RETRYABLE = (1205, 1213)  # lock wait timeout, deadlock: the transaction is skipped, the load goes on
SEED = 20240917

ORDERS_SQL = f"""CREATE TABLE `{ORDERS}` (
  order_id BIGINT NOT NULL,
  line_no INT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  description VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
  quantity INT NOT NULL,
  unit_price DECIMAL(12,2) NOT NULL,
  discount DECIMAL(12,2) NULL,
  created_at DATETIME(6) NOT NULL,
  shipped_at DATETIME(6) NULL,
  note TEXT NULL,
  PRIMARY KEY (order_id, line_no),
  KEY idx_sku (sku)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

CUSTOMERS_SQL = f"""CREATE TABLE `{CUSTOMERS}` (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  email VARCHAR(191) NOT NULL,
  name VARCHAR(100) NOT NULL,
  profile JSON NULL,
  avatar BLOB NULL,
  status ENUM('active','suspended','closed') NOT NULL DEFAULT 'active',
  flags SET('newsletter','beta','vip','staff') NOT NULL DEFAULT '',
  balance DECIMAL(12,2) NOT NULL DEFAULT 0.00,
  updated_at DATETIME(6) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uk_email (email),
  KEY idx_status_updated (status, updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def fill_orders_sql(table: str, rows: int) -> str:
    """``rows`` deterministic order lines (orders of :data:`LINES_PER_ORDER` lines)."""
    return (
        f"INSERT INTO `{table}` SELECT "
        f"(seq - 1) DIV {LINES_PER_ORDER} + 1, (seq - 1) MOD {LINES_PER_ORDER} + 1, "
        "CONCAT('SKU-', LPAD(seq * 7919 MOD 100000, 6, '0')), "
        "IF(seq MOD 9 = 0, NULL, CONCAT('Größe ', seq MOD 50, ' \u2013 Ærø ', "
        "LEFT(SHA2(seq, 256), 20 + seq MOD 40), IF(seq MOD 7 = 0, ' 東京 🚀', ''))), "
        "1 + seq MOD 9, (seq * 7919 MOD 1000000) / 100, IF(seq MOD 4 = 0, NULL, (seq MOD 5000) / 100), "
        "TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + INTERVAL (seq * 37 MOD 1000000) MICROSECOND, "
        "IF(seq MOD 3 = 0, NULL, TIMESTAMP('2024-01-02') + INTERVAL seq SECOND "
        "+ INTERVAL (seq * 11 MOD 1000000) MICROSECOND), "
        "IF(seq MOD 5 = 0, NULL, REPEAT(CONCAT(SHA2(seq * 3, 256), ' '), 1 + seq MOD 4)) "
        f"FROM seq_1_to_{rows}"
    )


def fill_customers_sql(table: str, rows: int) -> str:
    """``rows`` deterministic customers (ids 1..rows)."""
    return (
        f"INSERT INTO `{table}` SELECT seq, CONCAT('user', seq, '@example.com'), "
        "CONCAT('Kundin ', seq, IF(seq MOD 5 = 0, ' Müller-Lüdenscheidt', ' Ødegård')), "
        "IF(seq MOD 6 = 0, NULL, JSON_OBJECT('age', 18 + seq MOD 70, "
        "'city', ELT(1 + seq MOD 4, 'Zürich', 'São Paulo', '東京', 'Kraków'), "
        "'tags', JSON_ARRAY('t', seq MOD 10), 'score', (seq MOD 1000) / 10)), "
        "IF(seq MOD 4 = 0, NULL, UNHEX(REPEAT(SHA2(seq, 256), 1 + seq MOD 3))), "
        "ELT(1 + seq MOD 3, 'active', 'suspended', 'closed'), "
        "ELT(1 + seq MOD 4, '', 'newsletter', 'newsletter,beta', 'vip,staff'), "
        "(seq * 13 MOD 1000000) / 100, "
        "TIMESTAMP('2023-06-01') + INTERVAL seq MINUTE + INTERVAL (seq * 7 MOD 1000000) MICROSECOND "
        f"FROM seq_1_to_{rows}"
    )


def create_tables(
    server: LocalMariaDB, db: str, order_rows: int, customer_rows: int, suffix: str = ""
) -> None:
    """Schema ``db`` with both tables (named with ``suffix``), filled; the same rows on any server."""
    server.execute(
        f"CREATE DATABASE IF NOT EXISTS `{db}`",
        f"USE `{db}`",
        ORDERS_SQL.replace(f"`{ORDERS}`", f"`{ORDERS}{suffix}`", 1),
        CUSTOMERS_SQL.replace(f"`{CUSTOMERS}`", f"`{CUSTOMERS}{suffix}`", 1),
        fill_orders_sql(f"{ORDERS}{suffix}", order_rows),
        fill_customers_sql(f"{CUSTOMERS}{suffix}", customer_rows),
    )


# --- the load generator -------------------------------------------------------------------------

Statement = tuple[str, tuple[Any, ...]]
KINDS: tuple[tuple[str, int], ...] = (
    ("place_order", 25),
    ("update_line", 20),
    ("renumber_line", 10),
    ("delete_line", 10),
    ("new_customer", 8),
    ("update_customer", 15),
    ("change_email", 6),
    ("change_customer_id", 3),
    ("delete_customer", 3),
)


def _take(rng: random.Random, live: list[Any]) -> tuple[int, Any]:
    """A random live key and its index."""
    i = rng.randrange(len(live))
    return i, live[i]


def _remove(live: list[Any], i: int) -> None:
    """Remove ``live[i]`` in O(1) (order does not matter)."""
    live[i] = live[-1]
    live.pop()


@dataclass
class Worker:
    """One connection of :class:`RealisticLoad`, owning the keys ``k % workers == index``."""

    index: int
    workers: int
    orders: list[tuple[int, int]]  # live (order_id, line_no) of this worker
    customers: list[int]  # live customer ids of this worker
    rng: random.Random
    tag: int = 0  # which load this worker belongs to: keeps the keys of two loads apart
    counter: int = 0  # numbers the keys, line numbers and emails this worker creates
    committed: int = 0
    statements: int = 0
    skipped: int = 0  # transactions rolled back by a deadlock or lock wait timeout
    by_kind: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    ended_at: float = 0.0
    error: str = ""

    def new_key(self) -> int:
        """A key in this worker's residue class that no row has had."""
        self.counter += 1
        return NEW_KEY_BASE * (self.tag + 1) + self.index + self.workers * self.counter

    def plan(self, kind: str) -> tuple[list[Statement], Callable[[], None]] | None:
        """The statements of one transaction of ``kind`` and what to note once it committed; None
        when this worker has no row left to do it on."""
        rng, now = self.rng, "NOW(6)"
        args: tuple[Any, ...]
        if kind == "place_order":
            if not self.customers:
                return None
            order_id, lines = self.new_key(), rng.randint(1, 3)
            values = []
            params: list[Any] = []
            for line_no in range(1, lines + 1):
                values.append(f"(%s, %s, %s, %s, %s, %s, %s, {now}, NULL, %s)")
                params += [
                    order_id,
                    line_no,
                    f"SKU-{rng.randrange(100_000):06d}",
                    f"Größe {rng.randrange(50)} \u2013 neu {rng.getrandbits(64):x}",
                    rng.randint(1, 9),
                    f"{rng.randrange(1, 10_000_000) / 100:.2f}",
                    None if rng.random() < 0.5 else f"{rng.randrange(5000) / 100:.2f}",
                    None if rng.random() < 0.3 else "Bitte an der Rezeption abgeben. " * rng.randint(1, 4),
                ]
            _, customer = _take(rng, self.customers)
            stmts: list[Statement] = [
                (f"INSERT INTO `{ORDERS}` VALUES {', '.join(values)}", tuple(params)),
                (
                    f"UPDATE `{CUSTOMERS}` SET balance = balance + %s, updated_at = {now} WHERE id = %s",
                    (f"{rng.randrange(1, 50_000) / 100:.2f}", customer),
                ),
            ]
            return stmts, lambda: self.orders.extend((order_id, n) for n in range(1, lines + 1))
        if kind in ("update_line", "renumber_line", "delete_line"):
            if not self.orders:
                return None
            i, (order_id, line_no) = _take(rng, self.orders)
            where = "WHERE order_id = %s AND line_no = %s"
            if kind == "update_line":
                shipped = (
                    None
                    if rng.random() < 0.3
                    else f"2024-03-{rng.randint(1, 28):02d} 12:00:00.{rng.randrange(1_000_000):06d}"
                )
                sql = (
                    f"UPDATE `{ORDERS}` SET quantity = %s, unit_price = %s, discount = %s, "
                    f"shipped_at = %s, note = %s {where}"
                )
                args = (
                    rng.randint(1, 9),
                    f"{rng.randrange(1, 10_000_000) / 100:.2f}",
                    None if rng.random() < 0.5 else f"{rng.randrange(5000) / 100:.2f}",
                    shipped,
                    None if rng.random() < 0.2 else f"geändert {rng.getrandbits(32):x} ✓",
                    order_id,
                    line_no,
                )
                return [(sql, args)], lambda: None
            if kind == "renumber_line":
                self.counter += 1
                # Above any line number this order has had (the filled ones are 1..5).
                new_line = 100_000_000 * self.tag + 1000 + self.counter

                def renumbered() -> None:
                    self.orders[i] = (order_id, new_line)

                return [
                    (f"UPDATE `{ORDERS}` SET line_no = %s {where}", (new_line, order_id, line_no))
                ], renumbered
            return [(f"DELETE FROM `{ORDERS}` {where}", (order_id, line_no))], lambda: _remove(self.orders, i)
        if kind == "new_customer":
            cid = self.new_key()
            sql = (
                f"INSERT INTO `{CUSTOMERS}` (id, email, name, profile, avatar, status, flags, balance, "
                f"updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {now})"
            )
            args = (
                cid,
                f"new{cid}@example.org",
                f"Neukundin {cid} Ødegård",
                f'{{"age": {rng.randint(18, 90)}, "city": "Zürich", "tags": ["new"], "visits": 0}}',
                rng.randbytes(rng.randint(16, 200)),
                rng.choice(("active", "suspended")),
                rng.choice(("", "newsletter", "beta,vip")),
                f"{rng.randrange(100_000) / 100:.2f}",
            )
            return [(sql, args)], lambda: self.customers.append(cid)
        if not self.customers:
            return None
        i, cid = _take(rng, self.customers)
        if kind == "update_customer":
            sql = (
                f"UPDATE `{CUSTOMERS}` SET profile = JSON_SET(COALESCE(profile, '{{}}'), '$.visits', %s, "
                "'$.last', %s), avatar = %s, status = %s, flags = %s, "
                f"updated_at = {now} WHERE id = %s"
            )
            args = (
                rng.randrange(1000),
                f"{rng.getrandbits(48):x}",
                None if rng.random() < 0.2 else rng.randbytes(rng.randint(16, 200)),
                rng.choice(("active", "suspended", "closed")),
                rng.choice(("", "newsletter", "newsletter,beta", "vip,staff")),
                cid,
            )
            return [(sql, args)], lambda: None
        if kind == "change_email":
            self.counter += 1
            email = f"moved{self.tag}-{self.index}-{self.counter}@example.net"
            return [(f"UPDATE `{CUSTOMERS}` SET email = %s WHERE id = %s", (email, cid))], lambda: None
        if kind == "change_customer_id":
            new_id = self.new_key()

            def changed() -> None:
                self.customers[i] = new_id

            return [(f"UPDATE `{CUSTOMERS}` SET id = %s WHERE id = %s", (new_id, cid))], changed
        return [(f"DELETE FROM `{CUSTOMERS}` WHERE id = %s", (cid,))], lambda: _remove(self.customers, i)


class RealisticLoad:
    """The mixed traffic of the module docstring from ``threads`` connections (a :class:`bench.keepup.Load`).

    It stops after ``seconds`` or ``max_txns`` committed transactions, whichever comes first; ``rate``
    (transactions/s over all threads, 0 = as fast as they go) paces it.
    """

    name = "generator"
    in_process = True

    def __init__(
        self,
        socket: str,
        db: str,
        order_keys: list[tuple[int, int]],
        customer_ids: list[int],
        *,
        threads: int,
        rate: float,
        seconds: float,
        max_txns: int,
        seed: int,
        tag: int,
    ) -> None:
        self.socket, self.db = socket, db
        self.seconds, self.max_txns = seconds, max_txns
        self.per_thread_rate = rate / threads if rate > 0 else 0.0
        self.stop = threading.Event()
        self.workers = [
            Worker(
                i,
                threads,
                [k for k in order_keys if k[0] % threads == i],
                [c for c in customer_ids if c % threads == i],
                random.Random(seed * 1000 + i),
                tag,
            )
            for i in range(threads)
        ]
        self.kinds = [k for k, _ in KINDS]
        self.weights = [w for _, w in KINDS]
        self.started_at = 0.0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start every worker thread."""
        self.started_at = time.time()
        for w in self.workers:
            t = threading.Thread(target=self._run, args=(w,), daemon=True, name=f"realistic-{w.index}")
            self._threads.append(t)
            t.start()

    def finished(self) -> bool:
        """Whether every worker has stopped."""
        return not any(t.is_alive() for t in self._threads)

    def kill(self) -> None:
        """Stop every worker and wait for it."""
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def cpu_s(self) -> float:
        """CPU seconds of the worker threads (client side: building and escaping SQL, pymysql)."""
        return sum(w.cpu_s for w in self.workers)

    def report(self) -> dict[str, Any]:
        """Transactions committed and their rate; a worker's unexpected error is a :class:`BenchError`."""
        errors = [f"worker {w.index}: {w.error}" for w in self.workers if w.error]
        if errors:
            raise BenchError("the realistic load failed: " + "; ".join(errors))
        committed = sum(w.committed for w in self.workers)
        ended = max((w.ended_at for w in self.workers), default=self.started_at)
        by_kind: dict[str, int] = {}
        for w in self.workers:
            for k, n in w.by_kind.items():
                by_kind[k] = by_kind.get(k, 0) + n
        return {
            "transactions": committed,
            "tps": round(rate(committed, ended - self.started_at), 1),
            "statements": sum(w.statements for w in self.workers),
            "skipped_deadlocks": sum(w.skipped for w in self.workers),
            "transactions_by_kind": dict(sorted(by_kind.items())),
            "threads": len(self.workers),
        }

    def _run(self, w: Worker) -> None:
        try:
            conn = pymysql.connect(
                unix_socket=self.socket,
                user="root",
                password="",
                database=self.db,
                autocommit=True,
                charset="utf8mb4",
                client_flag=CLIENT.MULTI_STATEMENTS,
            )
        except pymysql.err.MySQLError as exc:
            w.error = f"connect: {exc}"
            return
        pacer = Pacer(self.per_thread_rate, self.stop)
        deadline = time.monotonic() + self.seconds
        budget = max(1, self.max_txns // len(self.workers))
        try:
            with conn.cursor() as cur:
                while w.committed < budget and time.monotonic() < deadline and pacer.wait():
                    kind = w.rng.choices(self.kinds, self.weights)[0]
                    planned = w.plan(kind)
                    if planned is None:
                        continue
                    stmts, on_commit = planned
                    text = [cur.mogrify(sql, args) for sql, args in stmts]
                    try:
                        if len(text) == 1:
                            cur.execute(text[0])
                        else:
                            # One round trip for the whole transaction (see the module docstring).
                            cur.execute(";".join(["BEGIN", *text, "COMMIT"]))
                            while cur.nextset():
                                pass
                    except pymysql.err.MySQLError as exc:
                        code = mysql_errno(exc)
                        with contextlib.suppress(pymysql.err.MySQLError):
                            cur.execute("ROLLBACK")
                        if code in ER_RETRYABLE:
                            w.skipped += 1
                            continue
                        w.error = f"{kind}: {exc}"
                        return
                    on_commit()
                    w.committed += 1
                    w.statements += len(text)
                    w.by_kind[kind] = w.by_kind.get(kind, 0) + 1
        finally:
            w.cpu_s = time.thread_time()
            w.ended_at = time.time()
            with contextlib.suppress(pymysql.err.MySQLError):
                conn.close()


def initial_keys(order_rows: int, customer_rows: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The keys :func:`create_tables` filled in."""
    orders = [
        ((seq - 1) // LINES_PER_ORDER + 1, (seq - 1) % LINES_PER_ORDER + 1)
        for seq in range(1, order_rows + 1)
    ]
    return orders, list(range(1, customer_rows + 1))


# --- the measurements ---------------------------------------------------------------------------


def reference_copy(target: LocalMariaDB, order_rows: int, customer_rows: int) -> dict[str, float]:
    """Seconds the target server takes for ``INSERT INTO copy SELECT * FROM t`` of each table."""
    create_tables(target, REF_DB, order_rows, customer_rows)
    target.execute(
        f"USE `{REF_DB}`",
        ORDERS_SQL.replace(f"`{ORDERS}`", f"`{ORDERS}_copy`", 1),
        CUSTOMERS_SQL.replace(f"`{CUSTOMERS}`", f"`{CUSTOMERS}_copy`", 1),
    )
    seconds: dict[str, float] = {}
    conn = target.admin(REF_DB)
    try:
        with conn.cursor() as cur:
            for table in TABLES:
                started = time.perf_counter()
                cur.execute(f"INSERT INTO `{table}_copy` SELECT * FROM `{table}`")
                seconds[table] = time.perf_counter() - started
    finally:
        conn.close()
    target.execute(f"DROP DATABASE `{REF_DB}`")  # free the buffer pool for the measured copy
    return seconds


def drain(
    pair: LocalPair, config: Path, label: str, write: Callable[[], dict[str, Any]], events_before: int
) -> dict[str, Any]:
    """Write a backlog with ``write`` while no daemon runs, then time a resumed ``tablemover run``
    applying it: from its ``resuming move from checkpoint`` line to its ``copy complete and caught up``
    line (startup and preflight excluded), as the ``binlog`` part does.

    ``cpu_us_per_event`` says where the time goes, and does not depend on how much of the machine
    the drain got (a shared machine): CPU microseconds per applied event of the daemon and of the
    target and source servers, from the resuming line to the daemon's exit (it exits right after).
    """
    written = write()
    servers = {"target_mariadbd": pair.target, "source_mariadbd": pair.source}

    def cpu_now() -> dict[str, float]:
        return {k: process_cpu_s(v.process.pid if v.process else -1) for k, v in servers.items()}

    log = config.parent / f"{config.stem}-{label.replace(' ', '-')}-drain.log"
    # --stop-before-cutover: it exits once caught up (the move's config holds the cutover).
    daemon = Daemon(config, log, stop_before_cutover=True).start()
    at_resume: dict[str, float] | None = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while daemon.poll() is None:
        if at_resume is None and daemon.find(MSG_RESUMING) is not None:
            at_resume = {"daemon": daemon.cpu_s(), **cpu_now()}
        if time.monotonic() > deadline:
            daemon.kill()
            raise BenchError(f"{label} drain: tablemover run did not finish:\n{daemon.tail()}")
        time.sleep(0.01)
    if daemon.returncode != 0:
        raise BenchError(f"{label} drain: tablemover run exited {daemon.returncode}:\n{daemon.tail()}")
    at_exit = {"daemon": daemon.cpu_total_s, **cpu_now()}
    resumed, done = daemon.first(MSG_RESUMING), daemon.first(MSG_CAUGHT_UP)
    seconds = float(done["ts"]) - float(resumed["ts"])
    events = int(done.get("events_applied", 0)) - events_before
    cpu = {k: v - (at_resume or {}).get(k, 0.0) for k, v in at_exit.items()}
    return {
        **written,
        "events_applied": events,
        "drain_s": round(seconds, 3),
        "apply_events_per_s": round(rate(events, seconds)),
        "run_wall_s": round(wall_s(daemon), 3),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_us_per_event": {k: round(rate(v, events) * 1e6, 1) for k, v in cpu.items()},
        "cpu_cores_during_drain": {k: round(rate(v, seconds), 2) for k, v in cpu.items()},
        "batches": {k: done[k] for k in ("bulk_batches", "text_batches") if k in done},
    }


def sysbench_reference(
    pair: LocalPair, workdir: Path, sysbench: str, rows: int, seconds: float, threads: int
) -> dict[str, Any]:
    """The same backlog measurement on a sysbench table: ``oltp_write_only`` from ``threads``
    connections for ``seconds`` while no daemon runs, then the drain."""
    source = pair.source
    source.execute(f"CREATE DATABASE `{SB_DB}`")
    cmd = sysbench_cmd(
        sysbench, source.socket, SB_DB, rows, max(1, round(seconds)), threads=threads, seed=SEED
    )
    sysbench_prepare(cmd, SB_DB)
    config = write_config(pair, workdir, SB_DB, SB_DB, [TABLE])
    first = run_tablemover(config, "sysbench reference copy")
    events_before = int(first.first(MSG_CAUGHT_UP).get("events_applied", 0))

    def write() -> dict[str, Any]:
        run = SysbenchRun(cmd, workdir / f"sysbench-{SB_DB}.log").start()
        while run.poll() is None:
            time.sleep(0.05)
        if run.returncode != 0:
            raise BenchError(f"sysbench run exited {run.returncode}:\n{run.output()[-1500:]}")
        parsed = parse_sysbench(run.output())
        return {"transactions": parsed["transactions"], "write_tps": parsed["tps"]}

    figures = drain(pair, config, "sysbench reference", write, events_before)
    check_equal(pair, (SB_DB, TABLE), (f"{SB_DB}_dst", TABLE), "after the sysbench reference drain")
    return {
        "table_rows": rows,
        "load": f"sysbench oltp_write_only, --threads={threads} --rate=0, {max(1, round(seconds))} s",
        **figures,
    }


def bench_realistic(
    pair: LocalPair,
    workdir: Path,
    sysbench: str | None,
    order_rows: int,
    light_seconds: float,
    light_rate: float,
    heavy_seconds: float,
    heavy_threads: int,
    heavy_max_txns: int,
    sample_s: float,
) -> dict[str, Any]:
    """Copy ratio, heavy-traffic apply rate against sysbench's, light and heavy keep-up on the
    realistic tables (module docstring)."""
    customer_rows = max(1, order_rows // 2)
    ref = reference_copy(pair.target, order_rows, customer_rows)
    total_rows = order_rows + customer_rows
    ref_s = sum(ref.values())

    # 1. The copy: a run that stops once copied and caught up.
    create_tables(pair.source, DB, order_rows, customer_rows)
    config = write_config(pair, workdir, DB, DB, TABLES, postpone_cutover=True)
    first = run_tablemover(config, "realistic copy")
    copying, caught_up = first.first(MSG_STATE_CHANGED, state="COPYING"), first.first(MSG_CAUGHT_UP)
    copy_phase_s = float(caught_up["ts"]) - float(copying["ts"])
    rows_per_s = rate(total_rows, copy_phase_s)
    orders, customers = initial_keys(order_rows, customer_rows)
    loads = 0

    def new_load(threads: int, pace: float, seconds: float, max_txns: int) -> RealisticLoad:
        nonlocal loads
        loads += 1
        return RealisticLoad(
            pair.source.socket,
            DB,
            orders,
            customers,
            threads=threads,
            rate=pace,
            seconds=seconds,
            max_txns=max_txns,
            seed=SEED + loads,
            tag=loads,
        )

    def carry_on(load: RealisticLoad) -> None:
        """The next load goes on from the rows this one left."""
        nonlocal orders, customers
        orders = [k for w in load.workers for k in w.orders]
        customers = [c for w in load.workers for c in w.customers]

    # 2. Heavy traffic as a backlog, applied by a resumed daemon; then the same for sysbench.
    def write_heavy() -> dict[str, Any]:
        load = new_load(heavy_threads, 0.0, heavy_seconds, heavy_max_txns)
        load.start()
        while not load.finished():
            time.sleep(0.05)
        carry_on(load)
        report = load.report()
        return {**report, "write_tps": report.pop("tps")}

    heavy_backlog = drain(
        pair, config, "realistic heavy", write_heavy, int(caught_up.get("events_applied", 0))
    )
    heavy_backlog["threads"] = heavy_threads
    if sysbench is None:
        vs: dict[str, Any] = {"skipped": "sysbench is not installed"}
        reference: dict[str, Any] = {}
    else:
        reference = sysbench_reference(pair, workdir, sysbench, SB_ROWS, heavy_seconds, heavy_threads)
        real_us = sum(heavy_backlog["cpu_us_per_event"].values())
        sb_us = sum(reference["cpu_us_per_event"].values())
        vs = {
            "realistic_events_per_s": heavy_backlog["apply_events_per_s"],
            "sysbench_events_per_s": reference["apply_events_per_s"],
            "ratio": round(rate(heavy_backlog["apply_events_per_s"], reference["apply_events_per_s"]), 3),
            "target_ratio": HEAVY_TARGET_RATIO,
            # The same comparison in CPU per event (daemon + both servers), which does not depend on
            # how much of a shared machine each drain got: sysbench's cost over the realistic one.
            "cpu_us_per_event": {"realistic": round(real_us, 1), "sysbench": round(sb_us, 1)},
            "cpu_ratio": round(rate(sb_us, real_us), 3),
        }

    # 3. Keep-up, light then heavy, on a daemon held before its cutover; then the cutover.
    sock = socket_path(workdir, DB)
    daemon = Daemon(config, workdir / f"{DB}.log").start()
    phases: dict[str, Any] = {}
    try:
        wait_postponed(daemon, SETTLE_TIMEOUT_S, "realistic")
        applier = DaemonApplier(daemon, sock, pair.target)
        for phase, threads, pace, seconds, max_txns in (
            ("light", 1, light_rate, light_seconds, max(1, int(light_rate * light_seconds * 2))),
            ("heavy", heavy_threads, 0.0, heavy_seconds, heavy_max_txns),
        ):
            load = new_load(threads, pace, seconds, max_txns)
            try:
                phases[phase] = {
                    "threads": threads,
                    "rate_per_s": pace or "unthrottled",
                    "seconds": seconds,
                    **measure_load(pair, load, applier, sample_s),
                    "lag_target_s": LAG_TARGET_S,
                }
            except BenchError as exc:
                raise BenchError(f"realistic, {phase} load: {exc}\n{daemon.tail()}") from exc
            carry_on(load)
        release_cutover(daemon, sock, "realistic")
    finally:
        daemon.kill()  # no-op once it has exited; a failure above must not leave it running
    verified = {
        t: check_same_rows(pair, (DB, f"_{t}_moved"), (f"{DB}_dst", t), f"after the realistic move ({t})")
        for t in TABLES
    }
    return {
        "tables": {ORDERS: order_rows, CUSTOMERS: customer_rows},
        "copy": {
            "rows": total_rows,
            "rows_copied": int(caught_up.get("rows_copied", 0)),
            "copy_phase_s": round(copy_phase_s, 3),
            "rows_per_s": round(rows_per_s),
            "reference_s": {t: round(s, 3) for t, s in ref.items()},
            "reference_rows_per_s": round(rate(total_rows, ref_s)),
            "ratio": round(rate(rows_per_s, rate(total_rows, ref_s)), 3),
            "target_ratio": COPY_TARGET_RATIO,
            "peak_rss_mb": first.peak_rss_mb,
        },
        "heavy_backlog": heavy_backlog,
        "sysbench_backlog": reference,
        "heavy_vs_sysbench": vs,
        **phases,
        "verified_rows": verified,
        "peak_rss_mb": daemon.peak_rss_mb,
    }
