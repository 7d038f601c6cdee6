"""Test helpers: exact row comparison and a concurrent write load against the source."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from tablemover.local.mariadb import LocalMariaDB


def rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, ordered by all columns' primary key (first column set)."""
    conn = server.admin(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone='+00:00'")
            cur.execute(
                "SELECT GROUP_CONCAT(CONCAT('`', COLUMN_NAME, '`') ORDER BY SEQ_IN_INDEX) "
                "FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND INDEX_NAME='PRIMARY'",
                (database, table),
            )
            order = cur.fetchone()[0] or "1"
            cur.execute(f"SELECT * FROM `{table}` ORDER BY {order}")
            return list(cur.fetchall())
    finally:
        conn.close()


def assert_tables_equal(
    source: LocalMariaDB, source_db: str, target: LocalMariaDB, target_db: str, tables: dict[str, str]
) -> None:
    """Row-for-row equality; ``tables`` maps source table name -> target table name."""
    for src_table, dst_table in tables.items():
        src = rows(source, source_db, src_table)
        dst = rows(target, target_db, dst_table)
        if src != dst:
            src_set, dst_set = set(src), set(dst)
            missing = sorted(src_set - dst_set, key=repr)[:5]
            extra = sorted(dst_set - src_set, key=repr)[:5]
            raise AssertionError(
                f"{src_table}: {len(src)} source rows vs {len(dst)} target rows; "
                f"missing on target (first 5): {missing}; extra/different on target (first 5): {extra}"
            )


@dataclass
class WriteLoad:
    """Random inserts, updates (some changing the primary key), deletes and multi-statement
    transactions on tables shaped ``(id INT PRIMARY KEY, k INT, v VARCHAR(64))``, in a thread."""

    server: LocalMariaDB
    database: str
    tables: list[str]
    key_space: int = 20_000
    seed: int = 1
    pause_s: float = 0.0
    ops: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> WriteLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.ops

    def _run(self) -> None:
        rnd = random.Random(self.seed)
        conn = pymysql.connect(
            unix_socket=self.server.socket, user="root", database=self.database, autocommit=False
        )
        try:
            cur = conn.cursor()
            while not self._stop.is_set():
                try:
                    for _ in range(rnd.randint(1, 5)):  # a transaction of 1..5 statements
                        self._one(cur, rnd)
                    conn.commit()
                except pymysql.err.MySQLError as exc:
                    conn.rollback()
                    if exc.args[0] not in (1062, 1213, 1205):  # dup key / deadlock / lock wait: retry
                        self.errors.append(str(exc))
                if self.pause_s:
                    time.sleep(self.pause_s)
        finally:
            conn.close()

    def _one(self, cur: Any, rnd: random.Random) -> None:
        table = rnd.choice(self.tables)
        op = rnd.random()
        key = rnd.randint(1, self.key_space)
        if op < 0.35:
            cur.execute(
                f"INSERT INTO `{table}` (id, k, v) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE v=VALUES(v)",
                (key, rnd.randint(0, 1000), f"ins-{rnd.random()}"),
            )
        elif op < 0.65:
            cur.execute(f"UPDATE `{table}` SET v=%s, k=k+1 WHERE id=%s", (f"upd-{rnd.random()}", key))
        elif op < 0.75:
            new_key = rnd.randint(self.key_space + 1, self.key_space * 2)
            cur.execute(f"UPDATE IGNORE `{table}` SET id=%s WHERE id=%s", (new_key, key))
        elif op < 0.9:
            cur.execute(f"DELETE FROM `{table}` WHERE id=%s", (key,))
        else:
            lo = rnd.randint(1, self.key_space)
            cur.execute(f"UPDATE `{table}` SET k=k+1 WHERE id BETWEEN %s AND %s", (lo, lo + 20))
        self.ops += 1


def checkpoint_table(move: Any, *, feed: bool = False) -> str:
    """The qualified name of a move's checkpoint table on the target, or with ``feed`` of the
    rollback window's feed checkpoint on the source: the one place tests name it, so that moving
    the checkpoint into a schema of its own is a change here only."""
    # Both live in the move's state schema (config state_database), on the target and on the source.
    return str(move.checkpoint_table)


CHECKPOINT_COLUMNS = (
    "move_name",
    "state",
    "kind",
    "applied_gtid",
    "drain_gtid",
    "progress",
    "rows_copied",
    "events_applied",
    "hook_attempts",
    "detail",
    "writer",
)


def forge_row(server: LocalMariaDB, table: str, where: str = "TRUE", **values: str) -> None:
    """Append to checkpoint ``table`` a copy of its newest row (highest seq, among rows ``where``)
    with the next seq and the columns in ``values`` replaced by SQL expressions, as an account
    with DML on the table could."""
    select = ", ".join(values.get(c, c) for c in CHECKPOINT_COLUMNS)
    server.execute(
        f"INSERT INTO {table} ({', '.join(CHECKPOINT_COLUMNS)}, seq) SELECT {select}, seq + 1 FROM {table} "
        f"WHERE seq IS NOT NULL AND ({where}) ORDER BY seq DESC LIMIT 1"
    )


def transitions(move: Any) -> list[str]:
    """The states of a move's transition rows on the target, in order."""
    rows = move.target.execute(
        f"SELECT state FROM {checkpoint_table(move)} WHERE kind='transition' ORDER BY id"
    )
    return [r[0] for r in rows]


def write_hook(directory: Any, name: str, body: str) -> Any:
    """An executable shell hook ``name`` in ``directory`` (a pathlib.Path)."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def renames_in_binlog(move: Any, table: str = "a") -> int:
    """How many RENAME statements of ``table`` the source's binlog holds."""
    count = 0
    for name, *_rest in move.source.execute("SHOW BINARY LOGS"):
        for binlog_event in move.source.execute(f"SHOW BINLOG EVENTS IN '{name}'"):
            info = str(binlog_event[-1])
            if "RENAME" in info and f"`{move.database}`.`{table}` TO" in info:
                count += 1
    return count


def wait_for_log(move: Any, text: str, proc: Any = None, timeout: float = 120) -> str:
    """Wait until the daemon log (workdir/daemon.log) contains ``text``; fail if the daemon ``proc``
    ends first or the time runs out. Returns the log."""
    path = move.workdir / "daemon.log"
    deadline = time.monotonic() + timeout
    while True:
        log = path.read_text() if path.exists() else ""
        if text in log:
            return log
        assert proc is None or proc.poll() is None, f"the daemon ended before {text!r}:\n{log[-3000:]}"
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s:\n{log[-3000:]}"
        time.sleep(0.05)


ROOT = Path(__file__).resolve().parents[1]


def run_drill(
    out: Path, *args: str, timeout: float = 900
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``python -m drill.run ARGS --out OUT`` from the repository root; its result and report.

    The report is {} when the drill wrote none (the caller's returncode assertion says why)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, "-m", "drill.run", *args, "--out", str(out)]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return result, (json.loads(out.read_text()) if out.exists() else {})
