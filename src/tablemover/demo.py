"""``tablemover demo``: the whole mission on a laptop, with nothing but ``mariadbd`` installed.

Starts a source and a target MariaDB under a temp dir, seeds three tables, keeps writing to them,
runs a move, SIGKILLs it once mid-copy and restarts it (resume), lets it cut over, verifies the
result with chunked checksums and prints a summary. The servers are removed at the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pymysql

from tablemover.config import load_config
from tablemover.errors import MoveFailed
from tablemover.local.mariadb import LocalMariaDB, grant_mover, pair_config, start_pair
from tablemover.verify import verify

TABLES = ("customers", "orders", "order_items")
SCHEMA = {
    "customers": "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
    "email VARCHAR(128), created DATETIME(6) NOT NULL, balance DECIMAL(12,2) NOT NULL DEFAULT 0)",
    "orders": "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, "
    "status ENUM('new','paid','shipped') NOT NULL, total DECIMAL(12,2) NOT NULL, note TEXT, "
    "KEY (customer_id))",
    "order_items": "CREATE TABLE order_items (order_id BIGINT NOT NULL, line INT NOT NULL, sku VARCHAR(32) "
    "NOT NULL, qty INT NOT NULL, PRIMARY KEY (order_id, line))",
}
SEED = {
    "customers": "INSERT INTO customers SELECT seq, CONCAT('customer ', seq), "
    "CONCAT('c', seq, '@example.com'), NOW(6) - INTERVAL seq SECOND, seq % 1000 FROM seq_1_to_{n}",
    "orders": "INSERT INTO orders SELECT seq, seq % {c} + 1, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'), "
    "seq % 500 + 0.99, IF(seq % 7 = 0, CONCAT('gift wrap ', seq), NULL) FROM seq_1_to_{n}",
    "order_items": "INSERT INTO order_items SELECT seq DIV 2 + 1, seq % 2 + 1, CONCAT('SKU-', seq % 997), "
    "seq % 5 + 1 FROM seq_1_to_{n}",
}


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class _Traffic:
    """Application-like writes until the tables are renamed away (that is the cutover)."""

    def __init__(self, server: LocalMariaDB, database: str, customers: int, orders: int) -> None:
        self.server, self.database = server, database
        self.customers, self.next_order = customers, orders + 1
        self.transactions = 0
        self.stopped_by_cutover = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # After a cutover the thread ends by itself at its next write (the tables are gone); give it
        # that moment before stopping it, so the summary tells the truth.
        self._thread.join(timeout=2)
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        rnd = random.Random(7)
        conn = pymysql.connect(unix_socket=self.server.socket, user="root", database=self.database)
        try:
            while not self._stop.is_set():
                try:
                    self._one_order(conn.cursor(), rnd)
                    conn.commit()
                except pymysql.err.OperationalError as exc:
                    # A deadlock with the copier's locking read or a lock wait: an application retries.
                    if exc.args[0] not in (1205, 1213):
                        raise
                    conn.rollback()
                    continue
                except pymysql.err.ProgrammingError as exc:
                    if exc.args[0] != 1146:  # table doesn't exist: renamed away by the cutover
                        raise
                    self.stopped_by_cutover = True
                    return
                self.next_order += 1
                self.transactions += 1
                time.sleep(0.002)
        finally:
            conn.close()

    def _one_order(self, cur: Any, rnd: random.Random) -> None:
        order = self.next_order
        cur.execute(
            "INSERT INTO orders VALUES (%s, %s, 'new', %s, NULL)",
            (order, rnd.randint(1, self.customers), rnd.randint(100, 9999) / 100),
        )
        cur.execute("INSERT INTO order_items VALUES (%s, 1, %s, %s)", (order, f"SKU-{order % 997}", 1))
        cur.execute(
            "UPDATE customers SET balance = balance + 1 WHERE id = %s", (rnd.randint(1, self.customers),)
        )
        if rnd.random() < 0.2:
            cur.execute("UPDATE orders SET status='paid' WHERE id = %s", (rnd.randint(1, order),))
        if rnd.random() < 0.05:
            cur.execute("DELETE FROM order_items WHERE order_id = %s", (rnd.randint(1, order),))


def _events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def run_demo(rows: int = 200_000, keep: bool = False) -> int:
    """Run the demo; returns the exit code."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tablemover-demo-"))
    _say(f"starting a source and a target MariaDB under {workdir}")
    pair = start_pair(root=workdir / "servers")
    try:
        grant_mover(pair, "shop")
        customers, orders, items = rows // 10, rows * 4 // 10, rows // 2
        pair.source.execute("CREATE DATABASE shop", "USE shop", *SCHEMA.values())
        pair.source.execute(
            "USE shop",
            SEED["customers"].format(n=customers),
            SEED["orders"].format(n=orders, c=customers),
            SEED["order_items"].format(n=items),
        )
        _say(f"seeded shop.customers ({customers}), shop.orders ({orders}), shop.order_items ({items})")
        hooks = workdir / "hooks"
        hooks.mkdir()
        hook = hooks / "on-success"
        hook.write_text(
            '#!/bin/sh\necho "on-success: point the application at the target now '
            '(drain position $TABLEMOVER_DRAIN_GTID, attempt $TABLEMOVER_HOOK_ATTEMPT)"\n'
        )
        hook.chmod(0o755)
        cfg = workdir / "demo.toml"
        move = {
            "name": "demo",
            "database": "shop",
            "tables": list(TABLES),
            "chunk_size": 2000,
            "hooks_dir": str(hooks),
        }
        cfg.write_text(pair_config(pair, workdir, move))
        traffic = _Traffic(pair.source, "shop", customers, orders)
        traffic.start()
        _say("application traffic running: new orders, payments, balance updates, deletes")
        log = workdir / "daemon.log"
        cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run", "-c", str(cfg)]
        env = dict(os.environ)
        move_started = time.monotonic()
        with log.open("a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            while proc.poll() is None and not any(
                e.get("msg") == "progress" or e.get("msg") == "table copied" for e in _events(log)
            ):
                time.sleep(0.05)
            time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                _say("SIGKILLed the move mid-copy (as a host crash would); restarting it")
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            code = proc.wait()
        traffic.stop()
        events = _events(log)
        if code != 0:
            _say(f"the move failed with exit code {code}; log: {log}")
            print(log.read_text()[-3000:])
            return 1
        resumed = next((e for e in events if e.get("msg") == "resuming move from checkpoint"), None)
        outage = next((e.get("outage_ms") for e in events if e.get("msg") == "cutover outage"), None)
        hook_out = next((e.get("output") for e in events if e.get("msg") == "hook ran"), "")
        _say(str(hook_out))
        report = anyio.run(verify, load_config(cfg))
        total = sum(t.target_rows for t in report.tables)
        elapsed = time.monotonic() - move_started
        print()
        print("tablemover demo summary")
        print(f"  tables moved         {', '.join(TABLES)}")
        print(f"  rows on the target   {total}")
        print(
            f"  app transactions     {traffic.transactions} during the move (writes stopped by the cutover: "
            f"{'yes' if traffic.stopped_by_cutover else 'no'})"
        )
        resume_text = f"yes, from {resumed.get('state')}" if resumed else "no kill landed"
        print(f"  resumed after kill   {resume_text}")
        print(f"  move wall time       {elapsed:.1f} s ({total / elapsed:,.0f} rows/s including the restart)")
        print(f"  cutover outage       {outage} ms (RENAME to on-success hook)")
        print(f"  verify               {'all tables equal' if report.equal else 'DIFFERENCES FOUND'}")
        print(f"  total demo time      {time.monotonic() - started:.1f} s")
        return 0 if report.equal else 1
    except MoveFailed as exc:
        _say(str(exc))
        return 1
    finally:
        if keep:
            _say(f"servers left running under {workdir}")
        else:
            pair.cleanup()
            _say("servers stopped and removed")
