"""``defer_secondary_indexes`` on real servers: the copy fills tables that have their primary and
unique keys only, the other indexes come in one ALTER per table once the copy is caught up, and
the target ends with the source's definition, also when a daemon is SIGKILLed around that ALTER.

``orders`` has a composite primary key, a secondary unique key, a composite index with a DESC part
and a comment, a prefix index and a FULLTEXT index (which InnoDB cannot build with concurrent
writes: its ALTER falls back to LOCK=SHARED). ``items`` has one plain index,
which is added online (ALGORITHM=INPLACE, LOCK=NONE) while writes go on.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, transitions
from tablemover.local.mariadb import LocalMariaDB

ORDERS = (
    "CREATE TABLE orders (region VARCHAR(8) NOT NULL, id INT NOT NULL, code INT NOT NULL, "
    "customer INT NOT NULL, placed DATETIME NOT NULL, note VARCHAR(200) NOT NULL, body TEXT NOT NULL, "
    "PRIMARY KEY (region, id), UNIQUE KEY uk_code (code), "
    "KEY ix_customer_placed (customer, placed DESC) COMMENT 'per customer, newest first', "
    "KEY ix_note (note(12)), FULLTEXT KEY ft_body (body)) ENGINE=InnoDB"
)
ITEMS = "CREATE TABLE items (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY ix_k (k)) ENGINE=InnoDB"
DEFERRED = {"orders": ["ix_customer_placed", "ix_note", "ft_body"], "items": ["ix_k"]}
ROWS = 6_000


def seed(move: MoveEnv) -> None:
    move.src(
        ORDERS,
        "INSERT INTO orders SELECT IF(seq % 2, 'eu', 'us'), seq DIV 2, seq, seq % 101, "
        "'2026-01-01' + INTERVAL seq MINUTE, CONCAT('note about order ', seq), "
        "CONCAT('body words ', seq, ' lorem ipsum') FROM seq_1_to_" + str(ROWS),
        ITEMS,
        f"INSERT INTO items SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{ROWS}",
    )


@dataclass
class OrdersLoad:
    """Inserts, updates (of indexed columns and of the unique key) and deletes on ``orders``."""

    server: LocalMariaDB
    database: str
    ops: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OrdersLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.ops

    def _run(self) -> None:
        rnd = random.Random(7)
        conn = pymysql.connect(
            unix_socket=self.server.socket, user="root", database=self.database, autocommit=True
        )
        next_id = ROWS
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    region = rnd.choice(("eu", "us"))
                    key = rnd.randint(1, ROWS // 2)
                    op = rnd.random()
                    try:
                        if op < 0.3:
                            next_id += 1
                            cur.execute(
                                "INSERT INTO orders VALUES (%s, %s, %s, %s, NOW(), %s, %s)",
                                (
                                    region,
                                    next_id,
                                    10 * ROWS + next_id,
                                    rnd.randint(0, 100),
                                    "new",
                                    "fresh text",
                                ),
                            )
                        elif op < 0.6:
                            cur.execute(
                                "UPDATE orders SET customer=%s, placed=placed + INTERVAL 1 SECOND, "
                                "note=CONCAT('edited ', note), body=CONCAT(body, ' more') "
                                "WHERE region=%s AND id=%s",
                                (rnd.randint(0, 100), region, key),
                            )
                        elif op < 0.75:
                            # Negating keeps the codes unique: every |code| is distinct.
                            cur.execute(
                                "UPDATE orders SET code=-code WHERE region=%s AND id=%s", (region, key)
                            )
                        else:
                            cur.execute("DELETE FROM orders WHERE region=%s AND id=%s", (region, key))
                    except pymysql.err.MySQLError as exc:
                        if exc.args[0] not in (1213, 1205):
                            self.errors.append(repr(exc))
                    self.ops += 1
                    self._stop.wait(0.002)
        finally:
            conn.close()


def show_create(server: LocalMariaDB, database: str, table: str) -> str:
    """The table's definition with its own name taken out (the source's is renamed at the cutover)."""
    text = str(server.execute(f"SHOW CREATE TABLE `{database}`.`{table}`")[0][1])
    return text.split("\n", 1)[1]


def index_names(server: LocalMariaDB, database: str, table: str) -> set[str]:
    found = server.execute(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
        f"WHERE TABLE_SCHEMA='{database}' AND TABLE_NAME='{table}'"
    )
    return {str(r[0]) for r in found}


def added(output: str) -> list[dict[str, Any]]:
    """The "deferred indexes added" events of a run's log (JSON lines)."""
    events = []
    for line in output.splitlines():
        if line.startswith("{") and '"deferred indexes added"' in line:
            events.append(json.loads(line))
    return events


def assert_moved(move: MoveEnv, tables: list[str]) -> None:
    """DONE, rows equal, and each target table defined exactly as its (renamed) source table."""
    assert transitions(move)[-1] == "DONE"
    pairs = {f"_{t}_moved": t for t in tables}
    assert_tables_equal(move.source, move.database, move.target, move.target_database, pairs)
    for src, dst in pairs.items():
        assert show_create(move.target, move.target_database, dst) == show_create(
            move.source, move.database, src
        ), dst


def recorded(move: MoveEnv) -> dict[str, list[str]]:
    row = move.target.execute(
        f"SELECT detail FROM {move.checkpoint_table} WHERE state='PREPARED' AND kind='transition'"
    )
    return dict(json.loads(row[0][0]).get("deferred_indexes", {}))


@pytest.mark.parametrize("copy_threads", [1, 4])
def test_deferred_indexes_are_added_after_a_copy_under_writes(move: MoveEnv, copy_threads: int) -> None:
    seed(move)
    settings = {"chunk_size": 200, "defer_secondary_indexes": True, "copy_threads": copy_threads}
    cfg = move.config(["orders", "items"], move=settings)
    orders = OrdersLoad(move.source, move.database).start()
    items = WriteLoad(move.source, move.database, ["items"], key_space=ROWS, pause_s=0.002).start()
    try:
        # The writes go on through the copy and the ALTERs (which run before the stop).
        first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert first.returncode == 0, first.stderr[-3000:]
    finally:
        ops = orders.stop() + items.stop()
    assert ops > 200, f"the write load barely ran ({ops} ops)"
    assert not orders.errors and not items.errors, (orders.errors + items.errors)[:3]
    assert recorded(move) == DEFERRED
    done = {e["table"].split(".")[1]: e for e in added(first.stderr)}
    assert set(done) == {"orders", "items"}, first.stderr[-3000:]
    assert done["orders"]["indexes"] == "ix_customer_placed,ix_note,ft_body"
    assert done["items"]["lock"] == "ALGORITHM=INPLACE, LOCK=NONE"  # built online
    assert done["orders"]["lock"] == "LOCK=SHARED"  # FULLTEXT: not online in InnoDB
    assert all(isinstance(e["seconds"], float | int) and e["seconds"] >= 0 for e in done.values())

    second = move.cli("run", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    assert added(second.stderr) == [], "the indexes were there: nothing to add again"
    assert_moved(move, ["orders", "items"])


def test_killed_before_the_alter_a_restart_adds_the_indexes(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["orders"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "indexes.before_alter"})
    assert killed.returncode != 0
    assert transitions(move)[-1] == "COPYING"
    # The copy ran without them: the table has the primary and the unique key only.
    assert index_names(move.target, move.target_database, "orders") == {"PRIMARY", "uk_code"}
    move.src("UPDATE orders SET note='after the kill' WHERE id < 50")

    # Preflight accepts the table that lacks exactly the deferred indexes; the run adds them.
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    [event] = added(run.stderr)
    assert event["indexes"] == "ix_customer_placed,ix_note,ft_body"
    assert_moved(move, ["orders"])


def test_killed_after_the_alter_committed_a_restart_adds_nothing(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["orders"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "indexes.after_alter"})
    assert killed.returncode != 0
    assert transitions(move)[-1] == "COPYING"
    assert index_names(move.target, move.target_database, "orders") == {
        "PRIMARY",
        "uk_code",
        *DEFERRED["orders"],
    }

    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert added(run.stderr) == []
    assert_moved(move, ["orders"])


def test_a_restart_adds_only_the_missing_ones_and_refuses_a_changed_one(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["orders"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "indexes.before_alter"})
    assert killed.returncode != 0
    # Someone adds a deferred index by hand, but not as the source defines it: refused, nothing cut over.
    move.tgt("ALTER TABLE orders ADD KEY ix_customer_placed (customer, placed)")
    refused = move.cli("run", "-c", str(cfg))
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "defined otherwise than on" in refused.stderr and "ix_customer_placed" in refused.stderr
    assert transitions(move)[-1] == "COPYING"

    # Defined as on the source: the run adds the two others only.
    move.tgt(
        "ALTER TABLE orders DROP KEY ix_customer_placed, "
        "ADD KEY ix_customer_placed (customer, placed DESC) COMMENT 'per customer, newest first'"
    )
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    [event] = added(run.stderr)
    assert event["indexes"] == "ix_note,ft_body"
    assert_moved(move, ["orders"])


def test_a_table_reduced_before_the_first_checkpoint_still_gets_its_indexes(move: MoveEnv) -> None:
    """Killed between PREPARED's CREATE TABLE and its checkpoint: the next run finds the table
    (empty, without its secondary indexes), preflight accepts it, and PREPARED records them."""
    seed(move)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(
        "CREATE TABLE items (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64)) ENGINE=InnoDB",
    )
    cfg = move.config(["items"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert recorded(move) == {"items": ["ix_k"]}
    assert [e["indexes"] for e in added(run.stderr)] == ["ix_k"]
    assert_moved(move, ["items"])


def altering(move: MoveEnv) -> int:
    """How many of the daemons' deferred-index ALTERs the target is running (or holding)."""
    found = move.target.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'ALTER /* tablemover%'"
    )
    return int(found[0][0])


def wait(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def hold(move: MoveEnv) -> Any:
    """A reader whose open transaction holds ``orders``: every ALTER of it waits, as a long one runs."""
    reader = pymysql.connect(unix_socket=move.target.socket, user="root", database=move.target_database)
    with reader.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT COUNT(*) FROM orders")
    return reader


def test_killed_during_the_alter_a_restart_ends_with_every_index(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["orders"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "indexes.before_alter"})
    assert killed.returncode != 0
    reader = hold(move)
    try:
        daemon = move.popen("run", "-c", str(cfg))
        wait("the daemon's ALTER", lambda: altering(move) >= 1)
        daemon.kill()  # SIGKILL, in the middle of its ALTER
        daemon.wait(timeout=30)
    finally:
        reader.commit()  # the server finishes the orphaned ALTER, or has dropped it
        reader.close()
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    assert_moved(move, ["orders"])


def test_an_alter_still_running_from_a_killed_daemon_finishes_first(move: MoveEnv) -> None:
    """The server may go on with a killed daemon's ALTER: the next daemon, which found the indexes
    missing, then has its own ALTER refused (1061, duplicate key name), looks again, and goes on."""
    seed(move)
    cfg = move.config(["orders"], move={"chunk_size": 500, "defer_secondary_indexes": True})
    killed = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "indexes.before_alter"})
    assert killed.returncode != 0
    reader = hold(move)
    errors: list[Exception] = []

    def orphan() -> None:  # the statement a killed daemon left running on the server
        conn = pymysql.connect(unix_socket=move.target.socket, user="root", database=move.target_database)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "ALTER /* tablemover move=t deferred indexes */ TABLE orders "
                    "ADD KEY ix_customer_placed (customer, placed DESC) "
                    "COMMENT 'per customer, newest first', "
                    "ADD KEY ix_note (note(12)), ADD FULLTEXT KEY ft_body (body)"
                )
        except pymysql.err.MySQLError as exc:  # reported by the test below
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=orphan, daemon=True)
    try:
        thread.start()
        wait("the orphaned ALTER", lambda: altering(move) == 1)
        daemon = move.popen("run", "-c", str(cfg))
        wait("the daemon's ALTER", lambda: altering(move) == 2)
    finally:
        reader.commit()
        reader.close()
    thread.join(timeout=60)
    assert not errors, errors
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    log = (move.workdir / "daemon.log").read_text()
    assert "a deferred index appeared meanwhile; looking again" in log
    assert '"deferred indexes added"' not in log
    assert_moved(move, ["orders"])
