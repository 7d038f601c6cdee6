"""The write load of a round: sysbench, the built-in Python generator, the acknowledged writes."""

from __future__ import annotations

import contextlib
import random
import string
import threading
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
from loadkit import (
    ER_NO_SUCH_TABLE,
    Pacer,
    SysbenchRun,
    create_sbtest_sql,
    fill_sbtest_sql,
    mysql_errno,
    sysbench_cmd,
    sysbench_prepare,
)

from drill.common import Children, Drill
from drill.db import connect

EXTRA_TABLE_RATE = 100  # the Python generator's transactions/s on sbtest3 next to sysbench
SYSBENCH_TABLES = 2
ER_RETRYABLE = (1062, 1205, 1213)  # duplicate key (a key change onto a live id), lock wait, deadlock
ACKED_ID_BASE = 2_000_000_000  # keys of the acknowledged writes (INT: up to 2,147,483,647)


def prepare_sysbench(drill: Drill, db: str, log_path: Path) -> SysbenchRun:
    """``sysbench oltp_write_only`` on sbtest1..2 of ``db`` (2 threads at ``drill.rate`` txn/s until
    stopped or until the tables are renamed), prepared, not started. In a session of its own: a
    Ctrl-C on the terminal reaches only the drill, which then stops it."""
    assert drill.sysbench is not None
    cmd = sysbench_cmd(
        drill.sysbench,
        drill.pair.source.socket,
        db,
        drill.rows,
        0,
        threads=2,
        rate=drill.rate,
        tables=SYSBENCH_TABLES,
        report_interval=0,
    )
    sysbench_prepare(cmd, db)
    run = SysbenchRun(cmd, log_path, new_session=True)
    drill.children.sysbench.append(run)
    return run


def stop_sysbench(run: SysbenchRun, renamed_by: str = "the cutover") -> tuple[str, bool]:
    """Stop it; (how it ended, whether that was expected). ``renamed_by``: what renames its tables
    away (the cutover on the source, the rollback on the target)."""
    if run.proc is None:
        return "not started", False
    if run.terminate():
        return "terminated by the drill", True
    output = run.output()
    if f"error {ER_NO_SUCH_TABLE}" in output or f"errno = {ER_NO_SUCH_TABLE}" in output:
        return f"stopped by {renamed_by} (1146: tables renamed)", True
    fatal = [line for line in output.splitlines() if "FATAL" in line]
    return f"died on its own (exit {run.returncode}): {' | '.join(fatal[:2])[:300]}", False


class PyLoad:
    """Built-in write load: inserts, updates, deletes, key-changing updates, 1-4 statements a
    transaction, paced to ``rate`` transactions/s over ``threads`` connections."""

    def __init__(
        self,
        socket_path: str,
        db: str,
        tables: list[str],
        rows: int,
        rate: int,
        threads: int,
        seed: int,
        *,
        id_base: int = 1_000_000_000,
        renamed_by: str = "the cutover",
    ) -> None:
        self.socket_path, self.db, self.tables, self.rows = socket_path, db, tables, rows
        self.rate, self.seed = max(rate, 1), seed
        self.id_base, self.renamed_by = id_base, renamed_by
        self.commits = 0
        self.errors: list[str] = []
        self.cutover_seen = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._worker, args=(i, threads), daemon=True, name=f"pyload-{i}")
            for i in range(threads)
        ]

    def start(self, children: Children) -> None:
        """Start the writer threads."""
        children.loads.append(self)
        for t in self._threads:
            t.start()

    def stop(self) -> tuple[str, bool]:
        """Stop the threads; (how the load ended, whether that was expected)."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=10)
        if self.errors:
            return f"failed: {self.errors[0]}", False
        if self.cutover_seen:
            return f"stopped by {self.renamed_by} (1146: tables renamed)", True
        return "stopped", True

    def _worker(self, index: int, threads: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        pacer = Pacer(self.rate / threads, self._stop)
        # Disjoint id ranges per thread, above anything the seed data uses, for new keys.
        next_new_id = self.id_base + index * 100_000_000
        try:
            conn = connect(self.socket_path, self.db)
        except pymysql.err.MySQLError as exc:
            self.errors.append(f"connect: {exc}")
            return
        try:
            with conn.cursor() as cur:
                while pacer.wait():
                    table = rng.choice(self.tables)
                    try:
                        cur.execute("BEGIN")
                        for _ in range(rng.randint(1, 4)):
                            next_new_id = self._statement(cur, rng, table, next_new_id)
                        cur.execute("COMMIT")
                    except pymysql.err.MySQLError as exc:
                        code = mysql_errno(exc)
                        with contextlib.suppress(pymysql.err.MySQLError):
                            conn.rollback()
                        if code == ER_NO_SUCH_TABLE:
                            self.cutover_seen = True
                            return
                        if code in ER_RETRYABLE:
                            continue
                        self.errors.append(f"{table}: {exc}")
                        return
                    with self._lock:
                        self.commits += 1
        finally:
            conn.close()

    def _statement(self, cur: pymysql.cursors.Cursor, rng: random.Random, table: str, new_id: int) -> int:
        """Run one random write statement (or a delete + insert pair); returns the next free new id."""
        row_id = rng.randint(1, self.rows)
        c = "".join(rng.choices(string.ascii_letters + string.digits, k=119))
        pad = "".join(rng.choices(string.digits, k=59))
        op = rng.random()
        if op < 0.30:
            cur.execute(f"UPDATE `{table}` SET c = %s WHERE id = %s", (c, row_id))
        elif op < 0.45:
            cur.execute(f"UPDATE `{table}` SET k = k + 1 WHERE id = %s", (row_id,))
        elif op < 0.55:
            cur.execute(f"DELETE FROM `{table}` WHERE id = %s", (row_id,))
        elif op < 0.70:
            cur.execute(
                f"INSERT INTO `{table}` (id, k, c, pad) VALUES (%s, %s, %s, %s)",
                (new_id, rng.randint(1, self.rows), c, pad),
            )
            new_id += 1
        elif op < 0.85:
            # Key-changing update: half onto a fresh key, half onto a random low key (which may be
            # taken: ER_DUP_ENTRY rolls the transaction back and the load goes on).
            target = new_id if rng.random() < 0.5 else rng.randint(1, self.rows)
            new_id += 1
            cur.execute(f"UPDATE `{table}` SET id = %s WHERE id = %s", (target, row_id))
        else:
            cur.execute(f"DELETE FROM `{table}` WHERE id = %s", (row_id,))
            cur.execute(
                f"INSERT INTO `{table}` (id, k, c, pad) VALUES (%s, %s, %s, %s)",
                (row_id, rng.randint(1, self.rows), c, pad),
            )
        return new_id


class AckedWrites:
    """The application's acknowledged writes on the target during the window: unique inserts, and
    updates and deletes of the rows it inserted (ids from ``ACKED_ID_BASE``, which no other load
    touches), one statement a transaction, paced to ``rate`` transactions/s.

    :attr:`expected` (``c`` of each of its rows, None once deleted) changes only after a ``COMMIT``
    returned: every entry is a write the target acknowledged. A write that failed with 1146 (the
    rollback renamed the table away) did not happen, and the writer stops there.
    """

    def __init__(self, socket_path: str, db: str, tables: list[str], rate: int, seed: int) -> None:
        self.socket_path, self.db, self.tables, self.rate, self.seed = socket_path, db, tables, rate, seed
        self.expected: dict[tuple[str, int], str | None] = {}
        self.acked = 0
        self.errors: list[str] = []
        self.renamed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="acked-writes")

    def start(self, children: Children) -> None:
        """Start the writer thread."""
        children.loads.append(self)
        self._thread.start()

    def stop(self) -> tuple[str, bool]:
        """Stop it; (how it ended, whether that was expected)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.errors:
            return f"failed: {self.errors[0]}", False
        return ("stopped by the rollback (1146: tables renamed)" if self.renamed else "stopped"), True

    def _run(self) -> None:
        rng = random.Random(self.seed)
        pacer = Pacer(self.rate, self._stop)
        next_id = ACKED_ID_BASE
        live: list[tuple[str, int]] = []  # rows it inserted and has not deleted
        try:
            conn = connect(self.socket_path, self.db)
        except pymysql.err.MySQLError as exc:
            self.errors.append(f"connect: {exc}")
            return
        try:
            with conn.cursor() as cur:
                while pacer.wait():
                    op = rng.random()
                    after: str | None
                    args: tuple[Any, ...]
                    if op < 0.7 or not live:
                        key = (rng.choice(self.tables), next_id)
                        next_id += 1
                        after = f"acked-{key[1]}"
                        sql, args = (
                            f"INSERT INTO `{key[0]}` (id, k, c, pad) VALUES (%s, 1, %s, '')",
                            (key[1], after),
                        )
                    elif op < 0.9:
                        key = rng.choice(live)
                        after = f"acked-{key[1]}-u{self.acked}"
                        sql, args = f"UPDATE `{key[0]}` SET c = %s WHERE id = %s", (after, key[1])
                    else:
                        key, after = rng.choice(live), None
                        sql, args = f"DELETE FROM `{key[0]}` WHERE id = %s", (key[1],)
                    try:
                        cur.execute("BEGIN")
                        cur.execute(sql, args)
                        cur.execute("COMMIT")
                    except pymysql.err.MySQLError as exc:
                        code = mysql_errno(exc)
                        with contextlib.suppress(pymysql.err.MySQLError):
                            conn.rollback()
                        if code == ER_NO_SUCH_TABLE:
                            self.renamed = True
                            return
                        if code in ER_RETRYABLE:
                            continue
                        self.errors.append(f"{key[0]}: {exc}")
                        return
                    # Acknowledged: the commit returned.
                    self.expected[key] = after
                    self.acked += 1
                    if after is None:
                        live.remove(key)
                    elif key not in live:
                        live.append(key)
        finally:
            conn.close()


def setup_round(drill: Drill, db: str, tables: list[str], rdir: Path) -> SysbenchRun | None:
    """Create the round's schema and tables (sysbench prepare for sbtest1..2 when it is the load)."""
    src = drill.pair.source
    src.execute(f"CREATE DATABASE `{db}`")
    python_tables = tables
    sysbench = None
    if drill.sysbench is not None:
        sysbench = prepare_sysbench(drill, db, rdir / "sysbench.log")
        python_tables = tables[SYSBENCH_TABLES:]
    for table in python_tables:
        src.execute(f"USE `{db}`", create_sbtest_sql(table), fill_sbtest_sql(table, drill.rows))
    return sysbench
