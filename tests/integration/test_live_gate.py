"""gate.LiveGate: key intervals of a table, compared by several workers, exact under writes.

The intervals are (lower, upper] with keys as the copy reads them (its chunk's ``last_key``:
character columns as their bytes, ENUMs as names). Splitting a table into intervals must compare
every row exactly once: the interval bounds and the chunk bounds inside them are compared by the
server in the key columns' own collation (a latin1 case-insensitive key, a latin1_bin key, a
BINARY key ending in zero bytes), so nothing is skipped or counted twice at an edge.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal
from tablemover import gtid, sql
from tablemover.config import Config, load_config
from tablemover.errors import PreflightError
from tablemover.flavor import Flavor
from tablemover.gate import GateDifference, LiveGate
from tablemover.verify import TableReport, VerifyReport, verify_live

Key = tuple[Any, ...]
Intervals = list[tuple[Key | None, Key | None]]


def both(move: MoveEnv, *statements: str) -> None:
    """The same statements on source and target (the target schema created first)."""
    move.src(*statements)
    move.target.execute(f"CREATE DATABASE IF NOT EXISTS `{move.target_database}`")
    move.tgt(*statements)


async def caught_up(position: gtid.GtidPosition) -> None:
    """Nothing but the test writes, and it writes both sides itself."""


async def gate(
    config: Config,
    intervals: dict[str, Intervals],
    *,
    workers: int = 2,
    chunk_rows: int = 7,
    wait: Any = caught_up,
    seen: list[TableReport] | None = None,
) -> VerifyReport:
    async with LiveGate(
        config,
        Flavor.MARIADB,
        wait,
        workers=workers,
        chunk_rows=chunk_rows,
        on_difference=seen.append if seen is not None else None,
    ) as g:
        for table, spans in intervals.items():
            for lower, upper in spans:
                g.add(table, lower, upper)
        return await g.finish(raise_on_difference=False)


def split(keys: Sequence[Key], every: int) -> Intervals:
    """Consecutive intervals ending at every ``every``-th key, the last one open."""
    edges: list[Key | None] = [None, *keys[every - 1 :: every], None]
    return list(itertools.pairwise(edges))


def keys_of(move: MoveEnv, table: str, read: str, order: str) -> list[Key]:
    """Every key in index order, read the way the copy reads it."""
    return [tuple(r) for r in move.src(f"SELECT {read} FROM {table} ORDER BY {order}")]


def totals(report: VerifyReport) -> dict[str, tuple[int, int, bool]]:
    return {t.table: (t.source_rows, t.target_rows, t.equal) for t in report.tables}


INT_TABLE = "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64))"


async def test_intervals_equal_the_whole_table_gate(move: MoveEnv) -> None:
    both(move, INT_TABLE, "INSERT INTO a SELECT seq * 2, seq % 7, CONCAT('v', seq) FROM seq_1_to_5000")
    config = load_config(move.config(["a"]))
    whole = await verify_live(config, Flavor.MARIADB, caught_up, 1)
    keys = keys_of(move, "a", "id", "id")
    # Edges on stored keys, between keys (an odd id), and past the last one.
    spans: Intervals = [(None, (999,)), ((999,), (2000,)), ((2000,), (2001,)), ((2001,), (6000,))]
    spans += [((6000,), (9999,)), ((9999,), (20000,)), ((20000,), None)]
    for intervals in (split(keys, 1000), split(keys, 333), spans):
        parts = await gate(config, {"a": intervals}, chunk_rows=250)
        assert totals(parts) == totals(whole) == {"a": (5000, 5000, True)}, intervals[:3]
    # Chunks follow the intervals: an interval of 1000 rows is 4 chunks of 250, none empty; the
    # open end after the last key is one (empty) chunk.
    assert (await gate(config, {"a": split(keys, 1000)}, chunk_rows=250)).tables[0].chunks == 5 * 4 + 1


async def test_a_difference_in_the_middle_interval_is_found_and_named(move: MoveEnv) -> None:
    both(move, INT_TABLE, "INSERT INTO a SELECT seq * 2, seq % 7, CONCAT('v', seq) FROM seq_1_to_3000")
    move.tgt("UPDATE a SET v = 'tampered' WHERE id = 2500", "DELETE FROM a WHERE id = 2800")
    move.tgt("INSERT INTO a VALUES (2801, 1, 'extra')")
    config = load_config(move.config(["a"]))
    seen: list[TableReport] = []
    spans: Intervals = [(None, (2000,)), ((2000,), (4000,)), ((4000,), None)]
    report = await gate(config, {"a": spans}, workers=3, chunk_rows=100, seen=seen)
    (table,) = report.tables
    assert not report.equal and (table.source_rows, table.target_rows) == (3000, 3000)
    assert (table.different, table.missing_on_target, table.extra_on_target) == ([[2500]], [[2800]], [[2801]])
    # The callback heard of each differing chunk as soon as its keys were known.
    assert sorted(k for r in seen for k in r.different + r.missing_on_target + r.extra_on_target) == [
        [2500],
        [2800],
        [2801],
    ]
    with pytest.raises(GateDifference) as raised:
        async with LiveGate(config, Flavor.MARIADB, caught_up, workers=2) as g:
            g.add("a", (2000,), (4000,))
            await g.finish()
    assert raised.value.report.tables[0].different == [[2500]]
    # A callback that raises stops the gate at once; its error comes out of the block as itself.

    class Stop(Exception):
        pass

    def stop(report: TableReport) -> None:
        raise Stop(report.different)

    with pytest.raises(Stop):
        async with LiveGate(config, Flavor.MARIADB, caught_up, workers=2, on_difference=stop) as g:
            g.add("a", None, None)
            await g.finish()
    # The intervals either side of it are equal on their own.
    clean = await gate(config, {"a": [(None, (2000,)), ((4000,), None)]})
    assert clean.equal and clean.tables[0].source_rows == 1000 + 1000


async def test_an_error_comes_out_as_itself(move: MoveEnv) -> None:
    both(move, INT_TABLE)
    move.tgt("DROP TABLE a")
    config = load_config(move.config(["a"]))
    with pytest.raises(PreflightError, match="does not exist"):
        await gate(config, {"a": [(None, None)]})


class Mirror:
    """A one-thread apply: each write runs on the source, then the same statement on the target;
    ``applied`` is the source position the target holds. ``wait`` is the gate's ``wait_applied``."""

    def __init__(self, move: MoveEnv, table: str, key_space: int, lag_s: float = 0.005) -> None:
        self.move, self.table, self.key_space, self.lag_s = move, table, key_space, lag_s
        self.applied = ""
        self.writes = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.going = threading.Event()  # set after the first writes
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    async def wait(self, position: gtid.GtidPosition) -> None:
        while not (self.applied and gtid.covers(gtid.parse_position(Flavor.MARIADB, self.applied), position)):
            if not self.thread.is_alive():
                raise AssertionError(f"the mirror stopped: {self.errors[:3]}")
            await anyio.sleep(0.002)

    def _connect(self, server: Any, database: str) -> Any:
        return pymysql.connect(unix_socket=server.socket, user="root", database=database, autocommit=True)

    def _run(self) -> None:
        rnd = random.Random(23)
        source = self._connect(self.move.source, self.move.database)
        target = self._connect(self.move.target, self.move.target_database)
        try:
            with source.cursor() as src, target.cursor() as dst:
                src.execute("SELECT @@global.gtid_binlog_pos")
                self.applied = str(src.fetchone()[0])
                while not self.stop.is_set():
                    key = rnd.randrange(1, self.key_space)
                    statement = rnd.choice(
                        [
                            f"UPDATE {self.table} SET v = 'u{self.writes}' WHERE id = {key}",
                            f"DELETE FROM {self.table} WHERE id = {key}",
                            f"REPLACE INTO {self.table} VALUES ({key}, {key % 5}, 'r{self.writes}')",
                        ]
                    )
                    try:
                        src.execute(statement)
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] in (1205, 1213):  # behind the gate's lock: not written, skip
                            continue
                        raise
                    src.execute("SELECT @@global.gtid_binlog_pos")
                    position = str(src.fetchone()[0])
                    time.sleep(self.lag_s)  # the apply trails: a gate that does not wait sees it
                    dst.execute(statement)
                    self.applied = position
                    self.writes += 1
                    if self.writes == 20:
                        self.going.set()
        except Exception as exc:  # reported through errors and wait()
            self.errors.append(repr(exc))
        finally:
            source.close()
            target.close()


async def test_four_workers_under_concurrent_writes_report_equal(move: MoveEnv) -> None:
    # A small table, so that the writes land in the chunks being compared: a gate that did not wait
    # for the apply under its lock (or released the lock before its target snapshot) reports
    # differences here within a few rounds.
    both(move, INT_TABLE, "INSERT INTO a SELECT seq, seq % 7, CONCAT('v', seq) FROM seq_1_to_4000")
    config = load_config(move.config(["a"]))
    keys = keys_of(move, "a", "id", "id")
    rounds = during = 0
    with Mirror(move, "a", 4000) as mirror:
        assert await anyio.to_thread.run_sync(mirror.going.wait, 30), mirror.errors
        while during < 400 and rounds < 40:
            before = mirror.writes
            async with LiveGate(config, Flavor.MARIADB, mirror.wait, workers=4, chunk_rows=100) as g:
                for lower, upper in split(keys, 500):
                    g.add("a", lower, upper)
                report = await g.finish()
            during += mirror.writes - before
            assert g.vanished == 0, "a chunk's sums differed that were equal at a second look"
            rounds += 1
            assert report.equal, (rounds, totals(report), report.tables[0])
            (table,) = report.tables
            assert table.source_rows == table.target_rows > 3000
    assert not mirror.errors, mirror.errors[:3]
    assert during >= 400, f"only {during} writes in {rounds} rounds"


class Backlog:
    """A burst of source writes that a slow apply (``apply_s`` each) replays on the target in
    order, in a thread: the target lags behind by seconds, then catches up."""

    def __init__(self, move: MoveEnv, statements: list[str], apply_s: float) -> None:
        self.move, self.statements, self.apply_s = move, statements, apply_s
        self.applied = ""
        self.errors: list[str] = []
        self.written = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Backlog:
        self.thread.start()
        assert self.written.wait(60), self.errors
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=60)

    async def wait(self, position: gtid.GtidPosition) -> None:
        while not gtid.covers(gtid.parse_position(Flavor.MARIADB, self.applied), position):
            if not self.thread.is_alive():
                raise AssertionError(f"the apply stopped: {self.errors[:3]}")
            await anyio.sleep(0.002)

    def _run(self) -> None:
        source = pymysql.connect(
            unix_socket=self.move.source.socket, user="root", database=self.move.database, autocommit=True
        )
        target = pymysql.connect(
            unix_socket=self.move.target.socket,
            user="root",
            database=self.move.target_database,
            autocommit=True,
        )
        try:
            with source.cursor() as src, target.cursor() as dst:
                src.execute("SELECT @@global.gtid_binlog_pos")
                self.applied = str(src.fetchone()[0])
                queue = []
                for statement in self.statements:
                    src.execute(statement)
                    src.execute("SELECT @@global.gtid_binlog_pos")
                    queue.append((statement, str(src.fetchone()[0])))
                self.written.set()
                for statement, position in queue:
                    time.sleep(self.apply_s)
                    dst.execute(statement)
                    self.applied = position
        except Exception as exc:  # reported through errors and wait()
            self.errors.append(repr(exc))
        finally:
            source.close()
            target.close()


async def test_the_lock_is_not_held_while_the_apply_works_off_a_backlog(move: MoveEnv) -> None:
    # 300 writes to another table, applied at 5 ms each: the target is 1.5 s behind when the gate
    # starts. The gate waits for that without a lock; its locks are held for milliseconds.
    both(
        move,
        INT_TABLE,
        "INSERT INTO a SELECT seq, seq % 7, 'v' FROM seq_1_to_2000",
        "CREATE TABLE b (id INT PRIMARY KEY, v INT)",
    )
    config = load_config(move.config(["a"]))
    burst = [f"INSERT INTO b VALUES ({n}, {n})" for n in range(300)]
    with Backlog(move, burst, apply_s=0.005) as backlog:
        started = time.monotonic()
        async with LiveGate(config, Flavor.MARIADB, backlog.wait, workers=2, chunk_rows=250) as g:
            g.add("a", None, None)
            report = await g.finish()
        seconds = time.monotonic() - started
    assert not backlog.errors, backlog.errors[:3]
    assert report.equal and report.tables[0].source_rows == 2000
    assert seconds > 1.0, "the gate waited for the backlog"
    assert g.lock_held_max_s < 0.25, f"a shared lock was held {g.lock_held_max_s:.3f} s"


async def test_case_insensitive_latin1_and_binary_composite_keys_at_interval_edges(move: MoveEnv) -> None:
    high = bytes(range(0x80, 0x100))
    both(
        move,
        "CREATE TABLE l (k VARCHAR(8) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL PRIMARY KEY, "
        "v TEXT CHARACTER SET latin1)",
        "CREATE TABLE lb (a CHAR(1) CHARACTER SET latin1 COLLATE latin1_bin NOT NULL, n INT NOT NULL, "
        "v INT, PRIMARY KEY (a, n))",
        "CREATE TABLE bc (g INT NOT NULL, id BINARY(8) NOT NULL, v INT, PRIMARY KEY (g, id))",
        # Mixed case ('a' < 'B' < 'c' in the collation, not in bytes) and 0x80-0xFF, 0xC5 and 0xE5
        # ('\u00c5', '\u00e5': one letter in latin1_swedish_ci) among them; the suffix keeps keys unique.
        "INSERT INTO l VALUES "
        + ", ".join(
            f"(x'{(bytes([c]) + b'%03d' % n).hex()}', 'v')" for n, c in enumerate(b"aBcDeFgHiJ" + high)
        ),
        "INSERT INTO lb VALUES "
        + ", ".join(f"(x'{bytes([c]).hex()}', {n}, {n})" for c in b"aA" + high for n in (1, 2)),
        # BINARY(8) keys ending in zero bytes, differing only in them.
        "INSERT INTO bc VALUES "
        + ", ".join(
            f"({g}, x'{(bytes([i]) + bytes(6) + bytes([z])).hex()}', {i})"
            for g in (0, 1, 2)
            for i in range(1, 40)
            for z in (0, 1)
        ),
    )
    config = load_config(move.config(["l", "lb", "bc"]))
    reads = {
        "l": ("CAST(k AS BINARY)", "k"),
        "lb": ("CAST(a AS BINARY), n", "a, n"),
        "bc": ("g, id", "g, id"),
    }
    keys = {t: keys_of(move, t, read, order) for t, (read, order) in reads.items()}
    counts = {t: int(move.src(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in reads}
    whole = totals(await verify_live(config, Flavor.MARIADB, caught_up, 2))
    assert whole == {t: (counts[t], counts[t], True) for t in reads}
    for every in (1, 2, 5, 17):
        for chunk_rows in (1, 3, 50):
            report = await gate(config, {t: split(k, every) for t, k in keys.items()}, chunk_rows=chunk_rows)
            assert totals(report) == whole, (every, chunk_rows)
    # An upper bound spelled in another case than the stored key ('\u00e5' for the stored '\u00c5', 'A' for
    # 'a'): the server compares it in the column's collation, so the row belongs to the interval
    # that ends there, and the next interval (after the same bound) does not count it again.
    stored = next(k for k in keys["l"] if k[0][:1] == b"\xc5")
    folded = (b"\xe5" + stored[0][1:],)
    at_a = (b"A" + next(k for k in keys["l"] if k[0][:1] == b"a")[0][1:],)
    spans: Intervals = [(None, at_a), (at_a, folded), (folded, None)]
    report = await gate(config, {"l": spans}, chunk_rows=4)
    assert totals(report) == {"l": (counts["l"], counts["l"], True)}
    first = await gate(config, {"l": [(None, folded)]})
    second = await gate(config, {"l": [(folded, None)]})
    assert first.tables[0].source_rows + second.tables[0].source_rows == counts["l"]
    at_most = f"k <= CONVERT(x'{folded[0].hex()}' USING latin1) COLLATE latin1_swedish_ci"
    assert move.src(f"SELECT COUNT(*) FROM l WHERE {at_most}")[0][0] == first.tables[0].source_rows
    # A difference on a row that is an interval's edge is found once, in the interval ending at it.
    edge = keys["bc"][4]
    move.tgt(f"UPDATE bc SET v = -1 WHERE g = {edge[0]} AND id = x'{edge[1].hex()}'")
    report = await gate(config, {"bc": split(keys["bc"], 5)}, chunk_rows=2)
    assert report.tables[0].different == [[edge[0], edge[1]]]


def test_the_locked_range_checksum_holds_its_rows(move: MoveEnv) -> None:
    """The digest is computed in a derived table; its shared lock must reach the table's rows."""
    both(move, INT_TABLE, "INSERT INTO a SELECT seq, seq, 'v' FROM seq_1_to_100")
    locked = sql.checksum_range(
        move.database, "a", ["id", "k", "v"], ["id"], lower=(10,), upper=(20,), lock=True
    )
    holder = move.source.admin(move.database)
    writer = move.source.admin(move.database)
    try:
        with holder.cursor() as h, writer.cursor() as w:
            h.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            h.execute("BEGIN")
            h.execute(locked.text, locked.args)
            assert h.fetchone()[0] == 10
            w.execute("SET SESSION innodb_lock_wait_timeout = 1")
            w.execute("UPDATE a SET v = 'outside' WHERE id = 30")  # well past the range: not held
            with pytest.raises(pymysql.err.OperationalError) as waited:
                w.execute("UPDATE a SET v = 'inside' WHERE id = 15")
            assert waited.value.args[0] == 1205
            h.execute("ROLLBACK")
    finally:
        holder.close()
        writer.close()


async def test_the_daemon_gate_with_four_workers_under_live_writes(move: MoveEnv) -> None:
    table = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
    for t in ("a", "b"):
        move.src(table.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'seed' FROM seq_1_to_5000")
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "checksum_threads": 4})
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.001).start()
    try:
        proc = move.popen("run", "-c", str(cfg))
        code = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=300))
        assert code == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    finally:
        load.stop()
    log = (move.workdir / "daemon.log").read_text()
    assert "checksum before cutover: source and target equal" in log
    assert '"lock_held_max_s": ' in log  # the gate's event says how long its locks were held
    assert "checksum before cutover found differences" not in log
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )
