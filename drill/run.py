"""Crash drill: SIGKILL ``tablemover run`` under write load, restart it, and prove zero divergence.

Run as ``.venv/bin/python -m drill.run [--rounds N] [--rows R] [--seed S] [--out FILE]``. It starts one
private source and target ``mariadbd`` pair under a temporary directory (never the system server) for
the whole drill and removes it at the end, also on Ctrl-C or SIGTERM. Each round:

1. creates fresh schemas ``drill_<n>`` (source) and ``drill_<n>_dst`` (target) with 2 or 3
   sysbench-shaped tables of ``--rows`` rows;
2. writes to them for the whole move: sysbench ``oltp_write_only`` on ``sbtest1``/``sbtest2`` and,
   in 3-table rounds, a built-in Python generator on ``sbtest3`` (key-changing updates and inserts
   of new keys, which ``oltp_write_only`` never does). Without sysbench (not installable) the
   Python generator writes every table, and the output says so;
3. runs ``tablemover run`` and SIGKILLs it once or twice: at a targeted fault point
   (``TABLEMOVER_FAULTS``), or at a uniformly random instant of its expected run time; then restarts
   it without faults until it exits 0 (at most ``MAX_RESTARTS`` restarts);
4. checks, all of which must pass: the final exit 0; ``tablemover verify`` exits 0; an ordered dump
   of every renamed source table equals the target table row by row (plain PyMySQL, no tablemover
   code); ``pt-table-sync --print`` prints nothing (when percona-toolkit is installed); the source
   binlog holds exactly one RENAME of the round's tables; the checkpoint's transition rows follow the
   spec's state graph, hold RENAMED and HOOK_FIRED once and end with HOOK_FIRED, DONE; the
   on-success hook ran, and not again after HOOK_FIRED was written.

Window rounds (every ``--window-every``-th round, default every other one) run the same move with a
rollback window (``rollback_window_s``) and go on after the cutover:

5. at WINDOW_OPEN, with nothing writing anywhere (the source load ended at the cutover, the target
   load has not started), the forward checks of step 4 run on the data (verify, dump diff,
   pt-table-sync): every write the source acknowledged is on the target;
6. the application writes to the *target*: sysbench and the Python generator as in step 2, plus a
   writer of unique inserts, updates and deletes whose commits returned (acknowledged writes);
7. rollback rounds ask ``tablemover rollback`` and SIGKILL the daemon at one of the window's fault
   points (``state.WINDOW_OPEN`` ... ``state.ROLLED_BACK``, cycled) and, every other rollback round,
   also at a random instant of the window phase; the drill restarts ``tablemover run`` until it
   exits 0 and asks for the rollback again whenever a restart is back in WINDOW_OPEN (a request
   dies with the process that took it). Then: the last state is ROLLED_BACK; every source table
   (original name) equals the target's ``_<t>_rolledback`` row by row; every acknowledged target
   write is on the source; the source binlog holds one forward RENAME and one RENAME back, the
   target's binlog one RENAME away; the transitions follow the window's state graph; on-rollback's
   attempts increase and the last is the one ROLLED_BACK records;
8. elapse rounds (every fifth window round) use a short window, SIGKILL the daemon at a random
   instant while the target is written, stop the target writes, wait until the source's renamed
   tables equal the target's tables while the state is still WINDOW_OPEN, then let the window
   elapse: the move ends at DONE (``... HOOK_FIRED, WINDOW_OPEN, DONE``) and step 4's checks run on
   the final data (the target's writes included), with no RENAME on the target.

It prints a table of rounds and a final ``N passed, M failed`` line, writes the same as JSON to
``--out`` (the daemon logs of failed rounds go to ``<out stem>-logs/`` beside it) and exits 0 only when
every round passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeAlias

import pymysql
import pymysql.cursors
from loadkit import (
    ER_NO_SUCH_TABLE,
    LoadError,
    Pacer,
    SysbenchRun,
    create_sbtest_sql,
    ensure_sysbench,
    fill_sbtest_sql,
    mysql_errno,
    sysbench_cmd,
    sysbench_prepare,
)

from tablemover.local.mariadb import (
    LocalPair,
    grant_mover,
    make_tls_files,
    pair_config,
    require_x509,
    root_connection,
    start_pair,
)

DEFAULT_ROUNDS = 20
DEFAULT_ROWS = 20_000
DEFAULT_OUT = "bench-results/drill.json"
# Source transactions per second of the write load. The daemon applies about 5,000 sysbench
# oltp_write_only transactions/s here; two unthrottled sysbench threads commit more than that on
# these non-durable throwaway servers, so the apply lag would only grow and the cutover gate
# (lag < 1 s) would never open. At 2,000/s a restart catches up on the backlog of a kill within a
# second or two.
DEFAULT_RATE = 2000
EXTRA_TABLE_RATE = 100  # the Python generator's transactions/s on sbtest3 next to sysbench
SCHEMA_GRANT = "drill\\_%"  # every schema the drill creates starts with drill_
SYSBENCH_TABLES = 2
MAX_RESTARTS = 5
RUN_TIMEOUT_S = 120.0
VERIFY_TIMEOUT_S = 120.0
# Random kills land uniformly in [0, expected run time). Until the drill has timed a run (round 1
# reaches the cutover with nothing disturbing it before), these bounds stand in.
DEFAULT_RUN_S = 4.0
DEFAULT_RESTART_S = 3.0
MAX_COMMIT_K = 22  # writer.*_commit:K picks K in 1..this (a 2-table run commits about 22-25 times)
ER_RETRYABLE = (1062, 1205, 1213)  # duplicate key (a key change onto a live id), lock wait, deadlock

CUTOVER_POINTS = (
    "state.CUTOVER_STARTED",  # intent written, nothing renamed yet
    "cutover.after_rename",  # RENAME committed, RENAMED checkpoint not written
    "state.RENAMED",
    "state.DRAINED",
    "hook.before_success",  # hook attempt recorded, hook not started
    "state.HOOK_FIRED",
)
WRITER_POINTS = ("writer.before_commit", "writer.after_commit")
TARGETED_POINTS = CUTOVER_POINTS + WRITER_POINTS
# The rollback window's fault points, in the order a rollback passes them.
WINDOW_POINTS = (
    "state.WINDOW_OPEN",  # window recorded, reverse feed not started (no rollback asked yet)
    "state.ROLLBACK_STARTED",  # intent written, on-before-rollback not run, target not renamed
    "rollback.after_rename",  # target RENAME committed, ROLLBACK_RENAMED not written
    "state.ROLLBACK_RENAMED",
    "state.ROLLBACK_DRAINED",  # every target write on the source, source tables not renamed back
    "restore.after_rename",  # source RENAME back committed, on-rollback not run
    "hook.before_rollback",  # on-rollback attempt recorded, hook not started
    "state.ROLLED_BACK",
)

# Window rounds. A rollback round keeps the window open (ROLLBACK_WINDOW_S) until it rolls back; an
# elapse round (every ELAPSE_EVERY-th window round) opens a short one (ELAPSE_WINDOW_S) and lets it
# close. ELAPSE_WINDOW_S covers the target writes, a kill and restart and the catch-up check with
# room to spare on 2 loaded cores: the drill never relies on it for correctness (it waits on the
# data), but a window closing while the daemon is down would end the move before the reverse
# feed caught up, which is the documented behaviour, not a finding.
DEFAULT_WINDOW_EVERY = 2
ELAPSE_EVERY = 5
ROLLBACK_WINDOW_S = 600
ELAPSE_WINDOW_S = 10
WINDOW_WRITE_S = 1.0  # target writes before the rollback is asked for (or stopped, elapse rounds)
WINDOW_RATE_SHARE = 2  # the target load runs at --rate / this (sysbench), like the source's mix
ACKED_RATE = 200  # acknowledged-write transactions/s on the target
MIN_ACKED = 50  # the rollback is asked for once at least this many target writes were acknowledged
DEFAULT_ROLLBACK_S = 2.0  # expected ask -> ROLLED_BACK until the drill has timed one
WINDOW_PHASE_TIMEOUT_S = 300.0
ASK_RETRY_S = 0.3
TARGET_LOAD_ID_BASE = 1_500_000_000  # new keys of the Python load on the target (source: 1e9)
ACKED_ID_BASE = 2_000_000_000  # keys of the acknowledged writes (INT: up to 2,147,483,647)

# Spec section 3's state graph, written out here rather than imported from tablemover so that the
# check does not share the daemon's idea of what is legal.
LEGAL_NEXT: dict[str, frozenset[str]] = {
    "": frozenset({"PREPARED"}),
    "PREPARED": frozenset({"COPYING"}),
    "COPYING": frozenset({"CUTOVER_STARTED"}),
    "CUTOVER_STARTED": frozenset({"COPYING", "RENAMED"}),
    "RENAMED": frozenset({"DRAINED"}),
    "DRAINED": frozenset({"HOOK_FIRED"}),
    "HOOK_FIRED": frozenset({"DONE", "WINDOW_OPEN"}),
    "DONE": frozenset(),
    # The rollback window (README "The rollback window"): it elapses (DONE) or rolls back; a declined
    # or unrenamed rollback returns to WINDOW_OPEN.
    "WINDOW_OPEN": frozenset({"DONE", "ROLLBACK_STARTED"}),
    "ROLLBACK_STARTED": frozenset({"WINDOW_OPEN", "ROLLBACK_RENAMED"}),
    "ROLLBACK_RENAMED": frozenset({"ROLLBACK_DRAINED"}),
    "ROLLBACK_DRAINED": frozenset({"ROLLED_BACK"}),
    "ROLLED_BACK": frozenset(),
}
# How a round's transitions must end, by the kind of round.
ENDINGS: dict[str, list[str]] = {
    "": ["HOOK_FIRED", "DONE"],
    "elapse": ["HOOK_FIRED", "WINDOW_OPEN", "DONE"],
    "rollback": ["ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"],
}
ONCE: dict[str, tuple[str, ...]] = {
    "": ("RENAMED", "HOOK_FIRED"),
    "elapse": ("RENAMED", "HOOK_FIRED"),
    "rollback": ("RENAMED", "HOOK_FIRED", "ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"),
}
ROLLBACK_STATES = frozenset({"ROLLBACK_STARTED", "ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"})
NEVER: dict[str, frozenset[str]] = {
    "": ROLLBACK_STATES | {"WINDOW_OPEN"},
    "elapse": ROLLBACK_STATES,  # nobody asks for a rollback
    "rollback": frozenset(),
}

Conn: TypeAlias = "pymysql.connections.Connection[Any]"


class DrillError(LoadError):
    """The drill itself could not do something (set up a round, start the load). A
    :class:`LoadError` of the shared load code (sysbench prepare failed) is one as well: the drill
    catches :class:`LoadError`."""


# --- processes the drill owns -------------------------------------------------------------------


class Children:
    """Every process and load thread the drill started, so that an interrupt stops exactly those."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sysbench: list[SysbenchRun] = []
        self.loads: list[PyLoad | AckedWrites] = []

    def spawn(
        self, cmd: Sequence[str], log: IO[bytes], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session (a Ctrl-C on the terminal reaches only the drill, which
        then stops it), output to ``log``."""
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        """Forget processes that have exited."""
        self.procs = [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        """SIGKILL every process still running and stop every load thread."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self.procs.clear()
        for run in self.sysbench:
            run.kill()
        self.sysbench.clear()
        for load in self.loads:
            load.stop()
        self.loads.clear()


# --- plain PyMySQL access (the independent checks use nothing of tablemover) --------------------


def connect(socket_path: str, database: str | None = None, streaming: bool = False) -> Conn:
    """A root connection over a unix socket (the project's one helper for local servers)."""
    return root_connection(socket_path, database, streaming=streaming)


def query(socket_path: str, sql: str) -> list[tuple[Any, ...]]:
    """All rows of one statement."""
    conn = connect(socket_path)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


BinlogPos = tuple[str, int]


def binlog_position(socket_path: str) -> BinlogPos:
    """The source's current binlog file and offset."""
    row = query(socket_path, "SHOW MASTER STATUS")[0]
    return str(row[0]), int(row[1])


def scan_binlog(socket_path: str, db: str, since: BinlogPos, load_from: BinlogPos) -> tuple[list[str], int]:
    """(the RENAME statements naming ``db``'s tables, commits of row transactions after ``load_from``).

    Scans every binlog event from ``since`` (taken before the round's schema was created, so nothing
    of the round is missed) to the end. A round's binlog holds a few hundred thousand events; the
    ``mariadb`` command-line client lists them about twice as fast as PyMySQL parses them, so it is
    used when installed (Debian's mariadb-server brings it), PyMySQL otherwise.
    """
    marker = f"`{db}`.`"
    renames: list[str] = []
    commits = 0
    names = [str(r[0]) for r in query(socket_path, "SHOW BINARY LOGS") if str(r[0]) >= since[0]]
    client = shutil.which("mariadb") or shutil.which("mysql")
    for name in names:
        start = f" FROM {since[1]}" if name == since[0] else ""
        sql = f"SHOW BINLOG EVENTS IN '{name}'{start}"
        for pos, event_type, info in _binlog_events(client, socket_path, sql):
            if event_type == "Query" and "RENAME" in info.upper() and marker in info:
                renames.append(info)
            elif event_type == "Xid" and (name, pos) >= load_from:
                commits += 1
    return renames, commits


def _binlog_events(client: str | None, socket_path: str, sql: str) -> Iterator[tuple[int, str, str]]:
    """(position, event type, info) of each event ``sql`` (a SHOW BINLOG EVENTS) lists."""
    if client is None:
        conn = connect(socket_path, streaming=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                for _log, pos, event_type, _server, _end, info in cur:
                    yield int(pos), str(event_type), str(info)
        finally:
            conn.close()
        return
    # Batch mode: one tab-separated line an event, tabs and newlines inside a value escaped.
    cmd = [client, "--no-defaults", "-S", socket_path, "-uroot", "-B", "-N", "-e", sql]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            fields = line.rstrip("\n").split("\t", 5)
            if len(fields) == 6:
                yield int(fields[1]), fields[2], fields[5]
        err = proc.stderr.read() if proc.stderr is not None else ""
    if proc.returncode != 0:
        raise pymysql.err.OperationalError(0, f"{client} exited {proc.returncode}: {err.strip()[:300]}")


def count_renames(statements: list[str], db: str, table: str, to: str) -> int:
    """How many of ``statements`` rename ``db.table`` to ``db.to``."""
    pair = f"`{db}`.`{table}` TO `{db}`.`{to}`"
    return sum(1 for info in statements if pair in info)


@dataclass
class TableDiff:
    """An ordered comparison of one renamed source table with its target table."""

    table: str
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0  # on the source, not on the target
    extra: int = 0  # on the target, not on the source
    different: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """No row differs."""
        return self.missing == self.extra == self.different == 0

    def note(self, text: str) -> None:
        """Keep the first few differences as examples."""
        if len(self.examples) < 5:
            self.examples.append(text)


def _rows(conn: Conn, sql: str) -> Iterator[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        yield from cur


def dump_diff(pair: LocalPair, src: tuple[str, str], dst: tuple[str, str]) -> TableDiff:
    """``SELECT * ... ORDER BY id`` on both sides, merged by id and compared row by row."""
    diff = TableDiff(f"{src[0]}.{src[1]} vs {dst[0]}.{dst[1]}")
    sconn, tconn = connect(pair.source.socket, streaming=True), connect(pair.target.socket, streaming=True)
    try:
        srows = _rows(sconn, f"SELECT * FROM `{src[0]}`.`{src[1]}` ORDER BY id")
        trows = _rows(tconn, f"SELECT * FROM `{dst[0]}`.`{dst[1]}` ORDER BY id")
        s, t = next(srows, None), next(trows, None)
        while s is not None or t is not None:
            if t is None or (s is not None and s[0] < t[0]):
                assert s is not None
                diff.source_rows += 1
                diff.missing += 1
                diff.note(f"id {s[0]} missing on the target")
                s = next(srows, None)
            elif s is None or t[0] < s[0]:
                diff.target_rows += 1
                diff.extra += 1
                diff.note(f"id {t[0]} on the target only")
                t = next(trows, None)
            else:
                diff.source_rows += 1
                diff.target_rows += 1
                if s != t:
                    diff.different += 1
                    diff.note(f"id {s[0]}: source {s!r} target {t!r}")
                s, t = next(srows, None), next(trows, None)
    finally:
        sconn.close()
        tconn.close()
    return diff


def pt_table_sync(binary: str, pair: LocalPair, src: tuple[str, str], dst: tuple[str, str]) -> str:
    """'' when ``pt-table-sync --print`` finds nothing to change, else what it printed."""
    proc = subprocess.run(
        [
            binary,
            "--print",
            f"S={pair.source.socket},u=root,D={src[0]},t={src[1]}",
            f"S={pair.target.socket},u=root,D={dst[0]},t={dst[1]}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode == 0 and not proc.stdout.strip():
        return ""
    return f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[:1500]}"


# Every round's move keeps its checkpoint in the default state schema, under its own name.
STATE_DB = "_tablemover"


def move_name(dst_db: str) -> str:
    """A round's move name (its source schema) from its target schema ``<db>_dst``."""
    return dst_db.removesuffix("_dst")


def transitions(pair: LocalPair, dst_db: str) -> list[tuple[str, int]]:
    """(state, hook_attempts) of the checkpoint's transition rows, in order."""
    rows = query(
        pair.target.socket,
        f"SELECT state, hook_attempts FROM `{STATE_DB}`._tablemover_checkpoint "
        f"WHERE move_name='{move_name(dst_db)}' AND kind='transition' ORDER BY id",
    )
    return [(str(r[0]), int(r[1])) for r in rows]


def transition_problems(states: list[str], window: str = "") -> list[str]:
    """What is wrong with a finished move's sequence of transition states (empty: nothing).

    ``window``: "" (no rollback window), "elapse" (the window elapsed) or "rollback" (rolled back).
    """
    problems = []
    for before, after in zip(["", *states], states, strict=False):
        if after not in LEGAL_NEXT.get(before, frozenset()):
            problems.append(f"illegal transition {before or 'start'} -> {after}")
    ending = ENDINGS[window]
    if states[-len(ending) :] != ending:
        problems.append(f"does not end with {', '.join(ending)} (ends {states[-len(ending) :]})")
    for once in ONCE[window]:
        if states.count(once) != 1:
            problems.append(f"{once} written {states.count(once)} times")
    problems.extend(
        f"{s} written in a round that must not reach it" for s in sorted(NEVER[window] & set(states))
    )
    return problems


# --- write load ---------------------------------------------------------------------------------


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


def acked_problems(
    pair: LocalPair, db: str, tables: dict[str, str], expected: dict[tuple[str, int], str | None]
) -> list[str]:
    """Where the source's tables (``tables``: the writer's table -> the source table now holding
    it) do not hold what the acknowledged writes left (plain PyMySQL)."""
    problems: list[str] = []
    for table, source_table in tables.items():
        mine = {i: c for (t, i), c in expected.items() if t == table}
        if not mine:
            continue
        rows = query(
            pair.source.socket, f"SELECT id, c FROM `{db}`.`{source_table}` WHERE id >= {ACKED_ID_BASE}"
        )
        have = {int(r[0]): str(r[1]) for r in rows}
        for row_id, c in sorted(mine.items()):
            if c is None and row_id in have:
                problems.append(
                    f"{table} id {row_id}: deleted on the target (acknowledged), present on the source"
                )
            elif c is not None and have.get(row_id) != c:
                problems.append(
                    f"{table} id {row_id}: acknowledged {c!r} on the target, source has {have.get(row_id)!r}"
                )
    return problems


# --- kill plan ----------------------------------------------------------------------------------


@dataclass
class Kill:
    """One planned SIGKILL: at a fault point, or at ``fraction`` of the run's expected duration."""

    point: str = ""  # TABLEMOVER_FAULTS spec; "" for a random instant
    fraction: float = 0.0
    delay_s: float | None = None  # the random instant, once chosen
    happened: bool = False
    run_attempted: bool = False
    missed: str = ""  # why it did not happen, when not the usual reason

    def label(self) -> str:
        """How the table shows it."""
        text = self.point or f"random@{self.delay_s if self.delay_s is not None else 0:.2f}s"
        if self.run_attempted and not self.happened:
            text += f" ({self.missed or ('not reached' if self.point else 'run ended first')})"
        return text

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": "fault" if self.point else "random",
            "point": self.point or None,
            "delay_s": None if self.delay_s is None else round(self.delay_s, 3),
            "happened": self.happened,
        }


def plan_kills(number: int, targeted_index: int, rng: random.Random) -> list[Kill]:
    """Odd rounds cycle through the targeted points, even rounds kill at a random instant; every
    third round kills the first restart too (a later cutover point, or another random instant)."""

    def targeted(point: str) -> Kill:
        return Kill(f"{point}:{rng.randint(1, MAX_COMMIT_K)}" if point in WRITER_POINTS else point)

    if number % 2 == 1:
        kills = [targeted(TARGETED_POINTS[targeted_index % len(TARGETED_POINTS)])]
    else:
        kills = [Kill(fraction=rng.random())]
    if number % 3 == 0:
        first = kills[0].point.split(":")[0]
        if first in WRITER_POINTS:
            kills.append(Kill(rng.choice(CUTOVER_POINTS)))
        elif first in CUTOVER_POINTS and first != CUTOVER_POINTS[-1]:
            kills.append(Kill(rng.choice(CUTOVER_POINTS[CUTOVER_POINTS.index(first) + 1 :])))
        else:
            kills.append(Kill(fraction=rng.random()))
    return kills


@dataclass
class WindowPlan:
    """A window round's kind and its kills after the cutover."""

    kind: str  # "rollback" or "elapse"
    kills: list[Kill]  # at most one fault point (armed until it fires) and one random instant

    @property
    def point(self) -> Kill | None:
        """The fault-point kill, if any."""
        return next((k for k in self.kills if k.point), None)

    @property
    def random(self) -> Kill | None:
        """The random-instant kill, if any."""
        return next((k for k in self.kills if not k.point), None)


def plan_window(index: int, rng: random.Random) -> WindowPlan:
    """The ``index``-th window round (from 1): every ELAPSE_EVERY-th lets the window elapse, with a
    kill at a random instant of the target writes; the others roll back, SIGKILLed at the next
    window fault point in turn and, every other one, at a random instant of the window phase too."""
    if index % ELAPSE_EVERY == 0:
        return WindowPlan("elapse", [Kill(fraction=rng.random())])
    rollback_index = index - 1 - index // ELAPSE_EVERY
    kills = [Kill(WINDOW_POINTS[rollback_index % len(WINDOW_POINTS)])]
    if rollback_index % 2 == 1:
        kills.append(Kill(fraction=rng.random()))
    return WindowPlan("rollback", kills)


# --- daemon runs --------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One ``tablemover run`` process."""

    fault: str
    kill_after_s: float | None
    rc: int | None = None
    wall_s: float = 0.0
    killed_by_drill: bool = False
    timed_out: bool = False
    states: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def reached_window(self) -> bool:
        """Whether this run entered WINDOW_OPEN."""
        return "WINDOW_OPEN" in self.states

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "fault": self.fault or None,
            "kill_after_s": None if self.kill_after_s is None else round(self.kill_after_s, 3),
            "rc": self.rc,
            "wall_s": round(self.wall_s, 3),
            "killed_by_drill": self.killed_by_drill,
            "timed_out": self.timed_out,
            "states": self.states,
            "errors": self.errors,
        }


def daemon_env(fault: str) -> dict[str, str]:
    """The environment without any TABLEMOVER_* variable (config overrides, faults), plus ``fault``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEMOVER_")}
    if fault:
        env["TABLEMOVER_FAULTS"] = fault
    return env


def parse_log(record: RunRecord, path: Path) -> None:
    """Fill ``record.states`` and ``record.errors`` from a JSON log file."""
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            if "Traceback" in raw or raw.startswith(("Error", "error")):
                record.errors.append(raw[:300])
            continue
        if not isinstance(line, dict):
            continue
        if line.get("msg") == "state changed":
            record.states.append(str(line.get("state")))
        elif str(line.get("level", "")).lower() in ("error", "critical"):
            detail = {k: v for k, v in line.items() if k not in ("ts", "level", "msg")}
            record.errors.append(f"{line.get('msg')} {json.dumps(detail)[:400]}")


class Daemon:
    """One ``tablemover run`` process the drill watches without blocking: its exit, and the states and
    messages its JSON log has reported so far."""

    def __init__(self, children: Children, config: Path, log_path: Path, fault: str = "") -> None:
        self.children = children
        self.log_path = log_path
        self.record = RunRecord(fault, None, log=str(log_path))
        self.states: list[str] = []
        self.messages: set[str] = set()
        self._offset = 0
        self._partial = b""
        cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run", "-c", str(config)]
        with log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = children.spawn(cmd, log, env=daemon_env(fault))
        self.ended = 0.0

    def elapsed(self) -> float:
        """Seconds since it started."""
        return time.monotonic() - self.started

    def poll(self, wait_s: float = 0.0) -> int | None:
        """Its exit code once it has exited (waiting up to ``wait_s`` for that), else None."""
        if self.record.rc is None:
            try:
                rc = self.proc.wait(timeout=wait_s) if wait_s > 0 else self.proc.poll()
            except subprocess.TimeoutExpired:
                rc = None
            if rc is not None:
                self.ended = time.monotonic()
                self.record.rc = rc
                self.record.wall_s = self.ended - self.started
        return self.record.rc

    def kill(self, *, timed_out: bool = False) -> None:
        """SIGKILL it (a planned kill, or ``timed_out``) unless it has exited already."""
        if self.poll() is None:
            self.proc.kill()
            self.poll(wait_s=30)
            self.record.killed_by_drill = not timed_out
            self.record.timed_out = timed_out

    def _scan(self) -> None:
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                msg = str(line.get("msg"))
                self.messages.add(msg)
                if msg == "state changed":
                    self.states.append(str(line.get("state")))

    def reached(self, state: str) -> bool:
        """Whether its log has reported entering ``state``."""
        self._scan()
        return state in self.states

    def said(self, *messages: str) -> bool:
        """Whether its log holds one of ``messages``."""
        self._scan()
        return not self.messages.isdisjoint(messages)

    def finish(self) -> RunRecord:
        """Its record, once it has exited (waits for that), with the states and errors of its log."""
        if self.poll() is None:
            self.poll(wait_s=RUN_TIMEOUT_S)
        if self.poll() is None:
            self.kill(timed_out=True)
        self.children.reap()
        parse_log(self.record, self.log_path)
        return self.record


def run_daemon(
    children: Children,
    config: Path,
    log_path: Path,
    fault: str = "",
    kill_after_s: float | None = None,
    *,
    until_window: bool = False,
) -> tuple[RunRecord, Daemon | None]:
    """Run ``tablemover run`` once: with ``fault`` armed, or SIGKILLed after ``kill_after_s``.

    With ``until_window`` it returns as soon as the daemon reports WINDOW_OPEN: (its record, not
    finished, and the daemon, still running), which the window phase then takes over; otherwise
    (the record, None) once it has exited.
    """
    daemon = Daemon(children, config, log_path, fault)
    daemon.record.kill_after_s = kill_after_s
    limit = kill_after_s if kill_after_s is not None else RUN_TIMEOUT_S
    while daemon.poll(wait_s=min(0.02, max(limit - daemon.elapsed(), 0.001))) is None:
        if until_window and daemon.reached("WINDOW_OPEN") and daemon.poll() is None:
            return daemon.record, daemon
        if daemon.elapsed() >= limit:
            daemon.kill(timed_out=kill_after_s is None)
    return daemon.finish(), None


def tablemover_verify(config: Path) -> tuple[int, str]:
    """``tablemover verify``'s exit code and output."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tablemover", "verify", "-c", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(""),
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, f"verify did not finish within {VERIFY_TIMEOUT_S:.0f} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


# --- rounds: shared state, hooks, daemon runs ----------------------------------------------------


@dataclass
class Drill:
    """What every round shares."""

    pair: LocalPair
    workdir: Path
    children: Children
    rows: int
    rate: int
    seed: int
    sysbench: str | None
    pt_table_sync: str | None
    # Extra [source]/[target] keys of every round's config: --tls's verify_identity and certificates.
    server_keys: dict[str, str] = field(default_factory=dict)
    full_runs: list[float] = field(default_factory=list)
    restart_runs: list[float] = field(default_factory=list)
    rollback_runs: list[float] = field(default_factory=list)  # rollback asked -> daemon exited 0

    def expected_run_s(self) -> float:
        """Expected duration of an undisturbed first run (timed ones, else a bound)."""
        return 1.1 * statistics.median(self.full_runs) if self.full_runs else DEFAULT_RUN_S

    def expected_restart_s(self) -> float:
        """Expected duration of a restart after a kill."""
        return statistics.median(self.restart_runs) if self.restart_runs else DEFAULT_RESTART_S

    def expected_rollback_s(self) -> float:
        """Expected time from an accepted rollback request to ROLLED_BACK (the daemon's exit)."""
        return 1.1 * statistics.median(self.rollback_runs) if self.rollback_runs else DEFAULT_ROLLBACK_S


@dataclass(frozen=True)
class HookLogs:
    """Where the round's hooks append: on-success and on-rollback their attempt number,
    on-before-rollback the state it ran in."""

    success: Path
    before_rollback: Path
    rollback: Path

    @staticmethod
    def read(path: Path) -> list[str]:
        """The lines a hook appended (none when it never ran)."""
        return path.read_text().split() if path.exists() else []


def write_hooks(directory: Path, logs: HookLogs, window: bool) -> None:
    """An on-success hook that appends its attempt number to ``logs.success``; with ``window`` also
    on-before-rollback (appends its state) and on-rollback (appends its attempt number)."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = {"on-success": f'echo "$TABLEMOVER_HOOK_ATTEMPT" >> "{logs.success}"'}
    if window:
        bodies["on-before-rollback"] = f'echo "$TABLEMOVER_STATE" >> "{logs.before_rollback}"'
        bodies["on-rollback"] = f'echo "$TABLEMOVER_HOOK_ATTEMPT" >> "{logs.rollback}"'
    for name, body in bodies.items():
        hook = directory / name
        hook.write_text(f"#!/bin/sh\n{body}\n")
        hook.chmod(0o755)


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


def round_runs(
    drill: Drill,
    kills: list[Kill],
    config: Path,
    rdir: Path,
    *,
    until_window: bool = False,
    window_point: Kill | None = None,
) -> tuple[list[RunRecord], Daemon | None]:
    """The killed runs, then clean restarts until one exits 0 (or MAX_RESTARTS, or a refusal).

    In a window round (``until_window``) the runs end at WINDOW_OPEN instead of DONE: the daemon that
    got there is returned still running (None when it died there, or never got there).
    ``window_point``'s fault is armed in every run until it fires.
    """
    runs: list[RunRecord] = []
    live: Daemon | None = None

    def arm(fault: str) -> str:
        if fault.split(":")[0] in WRITER_POINTS:
            # Unreached by the forward move, a writer.* fault fires in the reverse feed's writer:
            # never next to the window point, whose kill could then not be told from it.
            return fault
        extra = window_point.point if window_point is not None and not window_point.happened else ""
        return ",".join(p for p in (fault, extra) if p)

    def run(fault: str, kill_after_s: float | None) -> RunRecord:
        nonlocal live
        log = rdir / f"run-{len(runs) + 1}.log"
        rec, live = run_daemon(
            drill.children, config, log, arm(fault), kill_after_s, until_window=until_window
        )
        if live is None:
            runs.append(rec)
            if window_point is not None and rec.reached_window and died_of_fault(rec):
                window_point.happened = True  # killed at WINDOW_OPEN: the only window point before it
        return rec

    def finished() -> bool:
        return live is not None or (
            bool(runs) and (runs[-1].rc == 0 or (until_window and runs[-1].reached_window))
        )

    for i, kill in enumerate(kills):
        if finished():
            break  # the move is done (or in its window): a further kill has nothing left to hit
        kill.run_attempted = True
        if kill.point:
            rec = run(kill.point, None)
            kill.happened = died_of_fault(rec) and not rec.reached_window
        else:
            kill.delay_s = kill.fraction * (drill.expected_run_s() if i == 0 else drill.expected_restart_s())
            rec = run("", kill.delay_s)
            kill.happened = rec.killed_by_drill
        if not kill.happened and (live is not None or rec.reached_window):
            kill.missed = "window opened first"
        if i == 0:
            if live is not None:
                drill.full_runs.append(live.elapsed())  # undisturbed until the window opened
            elif rec.rc == 0 or (kill.happened and kill.point in CUTOVER_POINTS):
                drill.full_runs.append(rec.wall_s)  # undisturbed until the cutover (or the end)
        if rec.rc in (2, 3):
            return runs, None
    restarts = 0
    while not finished() and restarts < MAX_RESTARTS:
        restarts += 1
        rec = run("", None)
        if rec.rc == 0:
            drill.restart_runs.append(rec.wall_s)
        if rec.rc in (2, 3):
            break
    return runs, live


def died_of_fault(rec: RunRecord) -> bool:
    """SIGKILLed by one of its own fault points (not by the drill)."""
    return rec.rc == -signal.SIGKILL and not rec.killed_by_drill and not rec.timed_out


def move_state(pair: LocalPair, dst_db: str) -> str:
    """The move's last committed state (its newest transition row on the target)."""
    rows = query(
        pair.target.socket,
        f"SELECT state FROM `{STATE_DB}`._tablemover_checkpoint "
        f"WHERE move_name='{move_name(dst_db)}' AND kind='transition' ORDER BY id DESC LIMIT 1",
    )
    return str(rows[0][0]) if rows else ""


# --- the rollback window ------------------------------------------------------------------------


@dataclass
class TargetLoad:
    """The application writing to the target during the window: sysbench on sbtest1..2 and the
    Python generator on the rest (or on everything without sysbench), and the acknowledged writes."""

    sysbench: SysbenchRun | None
    pyload: PyLoad | None
    acked: AckedWrites
    ended: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @classmethod
    def start(cls, drill: Drill, dst: str, tables: list[str], rdir: Path, seed: int) -> TargetLoad:
        """Start every writer on the target's schema ``dst``."""
        socket = drill.pair.target.socket
        share = max(drill.rate // WINDOW_RATE_SHARE, 1)
        sysbench = None
        py_tables = tables
        if drill.sysbench is not None:
            cmd = sysbench_cmd(
                drill.sysbench,
                socket,
                dst,
                drill.rows,
                0,
                threads=2,
                rate=share,
                tables=SYSBENCH_TABLES,
                report_interval=0,
            )
            sysbench = SysbenchRun(cmd, rdir / "sysbench-target.log", new_session=True)
            drill.children.sysbench.append(sysbench)
            sysbench.start()
            py_tables = tables[SYSBENCH_TABLES:]
        pyload = None
        if py_tables:
            rate = share if sysbench is None else EXTRA_TABLE_RATE
            pyload = PyLoad(
                socket,
                dst,
                py_tables,
                drill.rows,
                rate,
                2,
                seed,
                id_base=TARGET_LOAD_ID_BASE,
                renamed_by="the rollback",
            )
            pyload.start(drill.children)
        acked = AckedWrites(socket, dst, tables, ACKED_RATE, seed)
        acked.start(drill.children)
        return cls(sysbench, pyload, acked)

    def stop(self) -> None:
        """Stop every writer (once), noting how each ended."""
        if self.ended:
            return
        if self.sysbench is not None:
            self.ended["sysbench"] = stop_sysbench(self.sysbench, "the rollback")
        if self.pyload is not None:
            self.ended["python"] = self.pyload.stop()
        self.ended["acked"] = self.acked.stop()


@dataclass
class WindowRun:
    """What the window phase of a round did."""

    kind: str
    target_from: BinlogPos = ("", 0)  # the target's binlog where its load began
    asks: int = 0  # accepted rollback requests (some by a run killed right after)
    ask_errors: list[str] = field(default_factory=list)  # refused by a run still alive (warnings)
    ask_lost: list[str] = field(default_factory=list)  # refused because its run was killed meanwhile
    caught_up_s: float | None = None  # elapse rounds: target writes stopped -> source caught up
    caught_up_state: str = ""  # the move's state right after the catch-up was seen
    load: TargetLoad | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        acked = self.load.acked if self.load is not None else None
        return {
            "kind": self.kind,
            "rollback_requests_accepted": self.asks,
            "rollback_request_errors": self.ask_errors[:5],
            "rollback_requests_lost_with_their_run": self.ask_lost[:5],
            "caught_up_s": None if self.caught_up_s is None else round(self.caught_up_s, 2),
            "caught_up_state": self.caught_up_state or None,
            "acked_writes": acked.acked if acked else 0,
            "target_load": {k: v[0] for k, v in self.load.ended.items()} if self.load else {},
        }


def source_caught_up(drill: Drill, db: str, dst: str, tables: list[str]) -> bool:
    """Whether every renamed source table equals its target table (the reverse feed caught up)."""
    return all(dump_diff(drill.pair, (db, f"_{t}_moved"), (dst, t)).equal for t in tables)


def ask_rollback(drill: Drill, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``tablemover rollback --no-wait`` in the background (it returns once the daemon took it)."""
    cmd = [sys.executable, "-m", "tablemover", "rollback", "-c", str(config), "--no-wait"]
    with log.open("wb") as out:
        return drill.children.spawn(cmd, out, env=daemon_env(""))


def window_phase(
    drill: Drill,
    plan: WindowPlan,
    config: Path,
    rdir: Path,
    schemas: tuple[str, str],
    tables: list[str],
    live: Daemon | None,
    runs: list[RunRecord],
    seed: int,
) -> WindowRun:
    """From WINDOW_OPEN to the end of the move: the target written, the planned kills, restarts until
    a run exits 0, and (rollback rounds) the rollback asked of every run that is in WINDOW_OPEN.

    ``live`` is the daemon that opened the window (None when it died there); every run's record is
    appended to ``runs``.
    """
    pair = drill.pair
    db, dst = schemas
    rollback = plan.kind == "rollback"
    point, rand = plan.point, plan.random
    for kill in plan.kills:
        kill.run_attempted = True
    out = WindowRun(plan.kind, target_from=binlog_position(pair.target.socket))
    out.load = load = TargetLoad.start(drill, dst, tables, rdir, seed)
    t0 = time.monotonic()
    write_until = t0 + WINDOW_WRITE_S
    # Killed at WINDOW_OPEN: the application writes to the target for a while with no daemon, and
    # the restarted reverse feed must pick all of that up.
    restart_at = t0 if live is not None else t0 + WINDOW_WRITE_S / 2
    kill_at = None
    if rand is not None:
        span = WINDOW_WRITE_S + (drill.expected_rollback_s() if rollback else 0.0)
        rand.delay_s = rand.fraction * span
        kill_at = t0 + rand.delay_s
    daemon = live
    asked: Daemon | None = None  # the run that accepted the rollback (a request dies with its run)
    asked_at: float | None = None  # when it accepted it (None: it resumed a rollback under way)
    ask: tuple[subprocess.Popen[bytes], Daemon, Path] | None = None
    next_ask = 0.0
    restarts = 0
    deadline = t0 + WINDOW_PHASE_TIMEOUT_S
    while True:
        now = time.monotonic()
        if not rollback and now >= write_until:
            load.stop()  # elapse rounds: the application stops writing well before the window closes
        if daemon is not None and daemon.poll() is not None:
            rec = daemon.finish()
            runs.append(rec)
            if (
                point is not None
                and not point.happened
                and point.point in rec.fault.split(",")
                and died_of_fault(rec)
            ):
                point.happened = True
            if rec.rc == 0:
                if asked is daemon and asked_at is not None:
                    drill.rollback_runs.append(daemon.ended - asked_at)
                break
            daemon = None
            if rec.rc in (2, 3):
                break
        if now > deadline:
            out.ask_errors.append(f"the window phase did not end within {WINDOW_PHASE_TIMEOUT_S:.0f} s")
            if daemon is not None:
                daemon.kill(timed_out=True)
                runs.append(daemon.finish())
            break
        if daemon is None:
            if restarts >= MAX_RESTARTS:
                break
            if now < restart_at:
                time.sleep(0.02)
                continue
            restarts += 1
            fault = point.point if point is not None and not point.happened else ""
            daemon = Daemon(drill.children, config, rdir / f"run-{len(runs) + 1}.log", fault)
            continue
        if rand is not None and kill_at is not None and not rand.happened and now >= kill_at:
            daemon.kill()
            rand.happened = True
            continue
        if ask is not None and ask[0].poll() is not None:
            proc, whom, log = ask
            ask = None
            if proc.returncode == 0:
                out.asks += 1
                if whom is daemon:
                    asked, asked_at = daemon, time.monotonic()
                # else: taken by a run that has died since; its successor is asked again if need be
            else:
                text = log.read_text(errors="replace").strip().replace("\n", " | ")
                # Refused by a run killed meanwhile: expected, its successor is asked.
                (out.ask_errors if whom is daemon else out.ask_lost).append(
                    f"exit {proc.returncode}: {text[-300:]}"
                )
                next_ask = now + ASK_RETRY_S
        if (
            rollback
            and ask is None
            and asked is not daemon
            and now >= max(write_until, next_ask)
            and (load.acked.acked >= MIN_ACKED or now >= write_until + 10)
            and daemon.said("rollback window open", "resuming move from checkpoint")
        ):
            if move_state(pair, dst) == "WINDOW_OPEN":
                log = rdir / f"rollback-{out.asks + len(out.ask_errors) + len(out.ask_lost) + 1}.log"
                ask = (ask_rollback(drill, config, log), daemon, log)
            else:
                asked, asked_at = daemon, None  # resumed a rollback already under way: nothing to ask
        if not rollback and load.ended and out.caught_up_s is None and not out.caught_up_state:
            if source_caught_up(drill, db, dst, tables):
                out.caught_up_state = move_state(pair, dst)
                if out.caught_up_state == "WINDOW_OPEN":
                    out.caught_up_s = time.monotonic() - write_until
                continue
            daemon.poll(wait_s=0.2)  # the reverse feed is still behind: look again shortly
            continue
        daemon.poll(wait_s=0.02)
    if ask is not None and ask[0].poll() is None:
        ask[0].kill()
        ask[0].wait()
    drill.children.reap()
    load.stop()
    return out


# --- one round ----------------------------------------------------------------------------------


def run_round(
    drill: Drill, number: int, kills: list[Kill], table_count: int, window: WindowPlan | None = None
) -> dict[str, Any]:
    """Set up, load, kill, restart and check one round; its JSON record."""
    started = time.monotonic()
    pair = drill.pair
    db, dst = f"drill_{number}", f"drill_{number}_dst"
    tables = [f"sbtest{i}" for i in range(1, table_count + 1)]
    rdir = drill.workdir / f"round-{number}"
    rdir.mkdir(parents=True)
    kind = window.kind if window is not None else ""
    result: dict[str, Any] = {"round": number, "tables": tables, "window": kind}
    failures: list[str] = []
    warnings: list[str] = []

    since = binlog_position(pair.source.socket)
    target_since = binlog_position(pair.target.socket)
    sysbench = setup_round(drill, db, tables, rdir)
    load_from = binlog_position(pair.source.socket)

    hooks = HookLogs(rdir / "hook.log", rdir / "before-rollback-hook.log", rdir / "rollback-hook.log")
    write_hooks(rdir / "hooks", hooks, window is not None)
    move: dict[str, Any] = {
        "name": db,
        "database": db,
        "target_database": dst,
        "tables": tables,
        "hooks_dir": str(rdir / "hooks"),
    }
    if window is not None:
        move["rollback_window_s"] = ROLLBACK_WINDOW_S if kind == "rollback" else ELAPSE_WINDOW_S
    config = rdir / "move.toml"
    keys = drill.server_keys
    config.write_text(pair_config(pair, rdir, move, source=keys, target=keys))

    pyload = None
    py_tables = tables if sysbench is None else tables[SYSBENCH_TABLES:]
    if py_tables:
        rate = drill.rate if sysbench is None else EXTRA_TABLE_RATE
        pyload = PyLoad(pair.source.socket, db, py_tables, drill.rows, rate, 2, drill.seed * 100 + number)
        pyload.start(drill.children)
    if sysbench is not None:
        sysbench.start()
    time.sleep(0.2)
    if sysbench is not None and sysbench.poll() is not None:
        raise DrillError(f"sysbench exited at once: {sysbench.output()[-1500:]}")

    runs, live = round_runs(
        drill,
        kills,
        config,
        rdir,
        until_window=window is not None,
        window_point=window.point if window is not None else None,
    )

    # The source load ends at the cutover (1146); in a window round it is over by WINDOW_OPEN.
    loads: dict[str, Any] = {}
    ended: list[tuple[str, tuple[str, bool]]] = []
    if sysbench is not None:
        ended.append(("sysbench", stop_sysbench(sysbench)))
    if pyload is not None:
        ended.append(("python", pyload.stop()))

    forward: dict[str, Any] | None = None
    wrun: WindowRun | None = None
    if window is not None:
        if live is None and not (runs and runs[-1].reached_window):
            failures.append("the move never reached WINDOW_OPEN")
        else:
            if kind == "rollback":
                # Nothing writes anywhere now: the source's tables are renamed away and the target's
                # application has not started. The forward move is checked here, on settled data.
                checks_from = time.monotonic()
                forward = forward_data_checks(drill, config, (db, dst), tables, failures, "at WINDOW_OPEN")
                result["forward_checks_s"] = round(time.monotonic() - checks_from, 1)
            window_from = time.monotonic()
            wrun = window_phase(
                drill, window, config, rdir, (db, dst), tables, live, runs, drill.seed * 100 + number
            )
            result["window_run"] = {**wrun.as_json(), "seconds": round(time.monotonic() - window_from, 1)}
            assert wrun.load is not None
            ended.extend((f"target {name}", how) for name, how in wrun.load.ended.items())
            warnings.extend(f"rollback request: {e}" for e in wrun.ask_errors)
    for name, (how, expected) in ended:
        loads[name] = how
        if not expected:
            warnings.append(f"{name} load: {how}")
    result["load"] = loads
    if pyload is not None:
        result["python_load_commits"] = pyload.commits
    final = runs[-1]

    for run in runs:
        if run.timed_out:
            failures.append(f"a run did not finish within {RUN_TIMEOUT_S:.0f} s and was killed")
        elif run.rc not in (0, -signal.SIGKILL):
            (failures if run.rc in (2, 3) else warnings).append(
                f"run {runs.index(run) + 1} exited {run.rc}: {'; '.join(run.errors[:2])}"
            )
    window_kills = window.kills if window is not None else []
    for kill in kills + window_kills:
        if not kill.happened:
            warnings.append(f"planned kill {kill.label()} did not happen")
    if final.rc != 0:
        failures.append(f"the last run exited {final.rc} after {len(runs) - 1} restarts")

    checks_from = time.monotonic()
    checks = check_round(
        drill,
        config,
        (db, dst),
        tables,
        RoundMarks(since, load_from, target_since),
        hooks,
        failures,
        kind=kind,
        forward=forward,
        wrun=wrun,
    )
    result.update(checks)
    result["checks_s"] = round(time.monotonic() - checks_from, 1)
    result.update(
        {
            "kill_points": " + ".join(k.label() for k in kills)
            + (" | " + " + ".join(k.label() for k in window_kills) if window_kills else ""),
            "restarts": len(runs) - 1,
            "runs": [r.as_json() for r in runs],
            "kills": [k.as_json() for k in kills],
            "window_kills": [k.as_json() for k in window_kills],
            "failures": failures,
            "warnings": warnings,
            "result": "FAIL" if failures else "PASS",
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    return result


@dataclass(frozen=True)
class RoundMarks:
    """Binlog positions taken during a round: before its schema existed (source, target) and where
    its source load began."""

    since: BinlogPos
    load_from: BinlogPos
    target_since: BinlogPos


def diff_tables(
    drill: Drill,
    pairs: list[tuple[str, tuple[str, str], tuple[str, str]]],
    failures: list[str],
    when: str = "",
) -> tuple[list[dict[str, Any]], int, dict[str, str] | None]:
    """The ordered dump diff (and pt-table-sync, when installed) of each (table, source, target):
    (per-table results, source rows, pt-table-sync output per table or None)."""
    diffs: list[dict[str, Any]] = []
    rows = 0
    suffix = f" {when}" if when else ""
    for table, src, dst in pairs:
        try:
            d = dump_diff(drill.pair, src, dst)
        except pymysql.err.MySQLError as exc:
            failures.append(f"dump diff of {table}{suffix}: {exc}")
            diffs.append({"table": table, "error": str(exc)})
            continue
        rows += d.source_rows
        diffs.append(
            {
                "table": table,
                "compared": d.table,
                "source_rows": d.source_rows,
                "target_rows": d.target_rows,
                "missing": d.missing,
                "extra": d.extra,
                "different": d.different,
                "examples": d.examples,
            }
        )
        if not d.equal:
            failures.append(
                f"dump diff {d.table}{suffix}: {d.missing} missing, {d.extra} extra, {d.different} different "
                f"({'; '.join(d.examples[:3])})"
            )
    pt: dict[str, str] | None = None
    if drill.pt_table_sync is not None:
        pt = {}
        for table, src, dst in pairs:
            try:
                pt[table] = pt_table_sync(drill.pt_table_sync, drill.pair, src, dst)
            except (subprocess.TimeoutExpired, OSError) as exc:
                pt[table] = f"could not run: {exc}"
            if pt[table]:
                failures.append(f"pt-table-sync {table}{suffix}: {pt[table][:600]}")
    return diffs, rows, pt


def forward_data_checks(
    drill: Drill,
    config: Path,
    schemas: tuple[str, str],
    tables: list[str],
    failures: list[str],
    when: str = "",
) -> dict[str, Any]:
    """The forward move's data checks: ``tablemover verify``, and the ordered dump diff (and
    pt-table-sync) of every renamed source table with its target table."""
    db, dst = schemas
    out: dict[str, Any] = {}
    rc, text = tablemover_verify(config)
    out["verify"] = {"rc": rc, "output": text[-2000:], "when": when or "at the end"}
    if rc != 0:
        failures.append(
            f"tablemover verify{' ' + when if when else ''} exited {rc}: "
            + " | ".join(text.splitlines())[-600:]
        )
    pairs = [(t, (db, f"_{t}_moved"), (dst, t)) for t in tables]
    out["dump_diff"], out["rows"], pt = diff_tables(drill, pairs, failures, when)
    if pt is not None:
        out["pt_table_sync"] = pt
    return out


def check_round(
    drill: Drill,
    config: Path,
    schemas: tuple[str, str],
    tables: list[str],
    marks: RoundMarks,
    hooks: HookLogs,
    failures: list[str],
    *,
    kind: str = "",
    forward: dict[str, Any] | None = None,
    wrun: WindowRun | None = None,
) -> dict[str, Any]:
    """Every check of a finished round; appends what failed to ``failures``.

    ``kind``: "" (no window), "elapse" or "rollback". ``forward``: the forward data checks a rollback
    round ran at WINDOW_OPEN (the others run them here, on the final data).
    """
    pair = drill.pair
    db, dst = schemas
    out: dict[str, Any] = {}

    if kind == "rollback" and forward is not None:
        out.update(forward)
        # The source, its tables under their names again, holds exactly what the target held.
        pairs = [(t, (db, t), (dst, f"_{t}_rolledback")) for t in tables]
        out["rollback_dump_diff"], _rows, pt = diff_tables(drill, pairs, failures, "after the rollback")
        if pt is not None:
            out["rollback_pt_table_sync"] = pt
    elif kind != "rollback":
        out.update(forward_data_checks(drill, config, schemas, tables, failures))

    if wrun is not None and wrun.load is not None:
        holder = {t: (t if kind == "rollback" else f"_{t}_moved") for t in tables}
        acked = wrun.load.acked
        out["acked_writes"] = acked.acked
        if acked.acked == 0:
            failures.append("the target acknowledged no write during the window")
        try:
            lost = acked_problems(pair, db, holder, acked.expected)
        except pymysql.err.MySQLError as exc:
            lost = [f"could not read the source: {exc}"]
        out["acked_lost"] = len(lost)
        if lost:
            failures.append(
                f"{len(lost)} of {acked.acked} writes the target acknowledged are not on the source: "
                + "; ".join(lost[:3])
            )
    if kind == "elapse" and wrun is not None:
        out["caught_up_s"] = wrun.caught_up_s
        if wrun.caught_up_s is None:
            failures.append(
                "the source's renamed tables were not seen equal to the target's while the window was open "
                f"(state when they were: {wrun.caught_up_state or 'never'})"
            )

    try:
        statements, commits = scan_binlog(pair.source.socket, db, marks.since, marks.load_from)
        forward_renames = count_renames(statements, db, tables[0], f"_{tables[0]}_moved")
        restores = count_renames(statements, db, f"_{tables[0]}_moved", tables[0])
        renames = len(statements)
    except pymysql.err.MySQLError as exc:
        failures.append(f"binlog scan: {exc}")
        renames = forward_renames = restores = commits = -1
    out["renames"] = forward_renames if kind else renames
    out["write_transactions"] = commits
    if kind == "rollback":
        out["restores"] = restores
        if (forward_renames, restores, renames) != (1, 1, 2):
            failures.append(
                f"the source binlog holds {renames} RENAMEs of {db}'s tables ({forward_renames} away, "
                f"{restores} back), not one away and one back"
            )
    elif renames != 1 or (kind and forward_renames != 1):
        failures.append(f"the source binlog holds {renames} RENAMEs of {db}'s tables, not 1")
    if kind:
        try:
            tstatements, target_commits = scan_binlog(
                pair.target.socket, dst, marks.target_since, wrun.target_from if wrun else ("~", 0)
            )
            target_renames = len(tstatements)
            away = count_renames(tstatements, dst, tables[0], f"_{tables[0]}_rolledback")
        except pymysql.err.MySQLError as exc:
            failures.append(f"target binlog scan: {exc}")
            target_renames = away = target_commits = -1
        out["target_renames"] = target_renames
        out["target_write_transactions"] = target_commits
        want = 1 if kind == "rollback" else 0
        if (target_renames, away) != (want, want):
            failures.append(
                f"the target binlog holds {target_renames} RENAMEs of {dst}'s tables ({away} to the "
                f"rolled-back names), not {want}"
            )

    try:
        trans = transitions(pair, dst)
    except pymysql.err.MySQLError as exc:
        failures.append(f"checkpoint transitions: {exc}")
        trans = []
    states = [s for s, _ in trans]
    out["transitions"] = states
    problems = transition_problems(states, kind) if states else ["no transition rows"]
    out["transition_problems"] = problems
    failures.extend(f"checkpoint: {p} ({' '.join(states)})" for p in problems)

    out["hook_attempts"] = attempts = [int(x) for x in HookLogs.read(hooks.success)]
    failures.extend(
        hook_problems("on-success", attempts, [a for s, a in trans if s == "HOOK_FIRED"], "HOOK_FIRED")
    )
    if kind == "rollback":
        out["rollback_hook_attempts"] = rb = [int(x) for x in HookLogs.read(hooks.rollback)]
        failures.extend(
            hook_problems("on-rollback", rb, [a for s, a in trans if s == "ROLLED_BACK"], "ROLLED_BACK")
        )
        out["before_rollback_runs"] = before = HookLogs.read(hooks.before_rollback)
        if not before or set(before) != {"ROLLBACK_STARTED"}:
            failures.append(
                f"on-before-rollback ran {len(before)} times, in states {before} "
                "(once at least, and in ROLLBACK_STARTED)"
            )
    elif HookLogs.read(hooks.rollback) or HookLogs.read(hooks.before_rollback):
        failures.append("a rollback hook ran in a round that did not roll back")
    return out


def hook_problems(name: str, attempts: list[int], fired: list[int], state: str) -> list[str]:
    """What is wrong with a hook's attempt numbers (the ones it appended) against the one ``state``
    recorded (``fired``): it ran, increasing, and not again after ``state`` was written."""
    if not attempts:
        return [f"the {name} hook never ran"]
    if attempts != sorted(set(attempts)):
        return [f"{name} hook attempt numbers not increasing: {attempts}"]
    if fired and attempts[-1] != fired[-1]:
        return [
            f"the {name} hook ran as attempt {attempts[-1]} but {state} records attempt {fired[-1]} "
            f"(it ran again after {state}, or its success was not recorded)"
        ]
    return []


# --- report -------------------------------------------------------------------------------------


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "FAIL")


def _diffs_ok(diffs: list[dict[str, Any]]) -> bool:
    return bool(diffs) and all(d.get("missing") == d.get("extra") == d.get("different") == 0 for d in diffs)


def _renames(r: dict[str, Any]) -> str:
    """Source RENAMEs (away, + back in rollback rounds) / target RENAMEs in window rounds."""
    text = str(r.get("renames", "-"))
    if r.get("window") == "rollback":
        text += f"+{r.get('restores', '-')}"
    if r.get("window"):
        text += f"/{r.get('target_renames', '-')}"
    return text


def format_table(rounds: list[dict[str, Any]], with_pt: bool) -> str:
    """An aligned table of rounds."""
    header = ["round", "tables", "window", "kill point(s)", "restarts", "rows", "write txns", "verify"]
    header.append("dump diff")
    if with_pt:
        header.append("pt-sync")
    header += ["acked", "renames", "states", "hook", "s", "result"]
    lines = [header]
    for r in rounds:
        diff_ok = _diffs_ok(r.get("dump_diff", []))
        if r.get("window") == "rollback":
            diff_ok = diff_ok and _diffs_ok(r.get("rollback_dump_diff", []))
        row = [
            str(r["round"]),
            str(len(r["tables"])),
            r.get("window") or "-",
            r.get("kill_points", ""),
            str(r.get("restarts", "")),
            f"{r.get('rows', 0):,}",
            f"{r.get('write_transactions', 0):,}",
            _mark(r.get("verify", {}).get("rc") == 0) if "verify" in r else "-",
            _mark(diff_ok),
        ]
        if with_pt:
            pt = {**r.get("pt_table_sync", {"": "?"}), **r.get("rollback_pt_table_sync", {})}
            row.append(_mark(not any(pt.values())))
        hook = ",".join(str(a) for a in r.get("hook_attempts", [])) or "-"
        if r.get("window") == "rollback":
            hook += " rb " + (",".join(str(a) for a in r.get("rollback_hook_attempts", [])) or "-")
        acked = "-"
        if "acked_writes" in r:
            acked = f"{r['acked_writes']:,} {_mark(r.get('acked_lost') == 0 and r['acked_writes'] > 0)}"
        row += [
            acked,
            _renames(r),
            _mark(not r.get("transition_problems", ["?"])),
            hook,
            f"{r.get('seconds', 0):.1f}",
            r["result"],
        ]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_details(rounds: list[dict[str, Any]]) -> str:
    """What went wrong (failures) or was unusual (warnings), round by round."""
    out = []
    for r in rounds:
        if not r.get("failures") and not r.get("warnings"):
            continue
        out.append(f"round {r['round']} ({r['result']}, kill {r.get('kill_points', '?')}):")
        out.extend(f"  FAILED: {f}" for f in r.get("failures", []))
        out.extend(f"  warning: {w}" for w in r.get("warnings", []))
        for i, run in enumerate(r.get("runs", []), 1):
            how = ", ".join(
                part
                for part in (
                    f"fault {run['fault']}" if run["fault"] else "",
                    f"kill after {run['kill_after_s']} s" if run["kill_after_s"] is not None else "",
                    "SIGKILLed by the drill" if run["killed_by_drill"] else "",
                )
                if part
            )
            out.append(
                f"  run {i}: {how or 'clean'}, exit {run['rc']}, {run['wall_s']} s, "
                f"states {' '.join(run['states']) or '-'}"
                + (f", errors: {'; '.join(run['errors'][:2])}" if run["errors"] else "")
            )
        if r.get("logs"):
            out.append(f"  logs: {r['logs']}")
    return "\n".join(out)


# --- entry point --------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops everything


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m drill.run", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds (default %(default)s)")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows per table (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    p.add_argument(
        "--rate",
        type=int,
        default=DEFAULT_RATE,
        help="write transactions/s of the load (default %(default)s)",
    )
    p.add_argument(
        "--load",
        choices=("auto", "sysbench", "python"),
        default="auto",
        help="auto: sysbench (installed if missing), else the built-in Python generator",
    )
    p.add_argument(
        "--row-metadata", choices=("FULL", "MINIMAL"), default="FULL", help="the servers' binlog_row_metadata"
    )
    p.add_argument(
        "--window-every",
        type=int,
        default=DEFAULT_WINDOW_EVERY,
        metavar="N",
        help="every Nth round runs with a rollback window (rolls back, or every "
        f"{ELAPSE_EVERY}th such round lets it elapse); 0: none (default %(default)s)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="servers with TLS certificates of a throwaway CA and require_secure_transport=ON, the "
        'move user REQUIRE X509, every round\'s move with tls_mode = "verify_identity" and a client '
        "certificate (the drill's own connections are root over the unix sockets)",
    )
    args = p.parse_args(argv)
    for name in ("rounds", "rows", "rate"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.window_every < 0:
        p.error("--window-every must be 0 (no window rounds) or more")
    return args


def choose_load(mode: str) -> tuple[str | None, str]:
    """(sysbench path or None, a description of the load)."""
    if mode == "python":
        return None, "built-in Python generator (--load python)"
    path, how = ensure_sysbench()
    if path is None:
        if mode == "sysbench":
            raise DrillError(f"--load sysbench, but {how}")
        return None, f"built-in Python generator, because {how}"
    return path, how


def write_json(out: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``out`` (creating its directory)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server pair, run every round, print and write the results."""
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    rng = random.Random(seed)
    out = Path(args.out)
    logs_dir = out.with_name(f"{out.stem}-logs")  # the daemon logs of failed rounds
    shutil.rmtree(logs_dir, ignore_errors=True)  # from an earlier drill: they would mislead
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="tablemover-drill-"))
    children = Children()
    pair: LocalPair | None = None
    rounds: list[dict[str, Any]] = []
    payload: dict[str, Any] = {}
    try:
        sysbench, load_desc = choose_load(args.load)
        if sysbench is None:
            banner = "!" * 100
            print(f"{banner}\n!!! WRITE LOAD: {load_desc}\n!!! (not sysbench)\n{banner}", file=sys.stderr)
        pt = shutil.which("pt-table-sync")
        print(
            f"drill: {args.rounds} rounds, {args.rows:,} rows a table, "
            f"load {load_desc} at {args.rate} txn/s, "
            + (
                f"rollback window every {args.window_every} rounds, "
                if args.window_every
                else "no window rounds, "
            )
            + f"seed {seed}, pt-table-sync {'yes' if pt else 'not installed (skipped)'}",
            file=sys.stderr,
        )
        workdir = root / "work"
        workdir.mkdir()
        tls_files = make_tls_files(root / "pki") if args.tls else None
        pair = start_pair(
            row_metadata=args.row_metadata,
            root=root / "servers",
            extra_args=tls_files.server_args() if tls_files is not None else (),
        )
        grant_mover(pair, SCHEMA_GRANT, window=args.window_every > 0)
        drill = Drill(pair, workdir, children, args.rows, args.rate, seed, sysbench, pt)
        if tls_files is not None:
            # The servers then refuse any connection of the move user that is not TLS with the
            # client certificate: a round that passes had every connection of every role encrypted.
            require_x509(pair)
            drill.server_keys = tls_files.client_keys("verify_identity")
        payload = {
            "seed": seed,
            "rounds_planned": args.rounds,
            "rows_per_table": args.rows,
            "rate_txn_per_s": args.rate,
            "load": load_desc,
            "load_is_sysbench": sysbench is not None,
            "pt_table_sync": bool(pt),
            "row_metadata": args.row_metadata,
            "window_every": args.window_every,
            "tls": "verify_identity, require_secure_transport=ON, REQUIRE X509" if args.tls else "off",
            "mariadbd": str(pair.source.execute("SELECT VERSION()")[0][0]),
            "rounds": rounds,
        }
        targeted = windows = 0
        for number in range(1, args.rounds + 1):
            kills = plan_kills(number, targeted, rng)
            targeted += number % 2
            table_count = rng.choice((2, 3))
            window = None
            if args.window_every and number % args.window_every == 0:
                windows += 1
                window = plan_window(windows, rng)
            try:
                record = run_round(drill, number, kills, table_count, window)
            except LoadError as exc:
                record = {
                    "round": number,
                    "tables": [],
                    "window": window.kind if window is not None else "",
                    "result": "FAIL",
                    "failures": [f"drill error: {exc}"],
                }
            finally:
                children.stop_all()
            if record["result"] != "PASS":
                logs = logs_dir / f"round-{number}"
                shutil.copytree(workdir / f"round-{number}", logs, ignore=shutil.ignore_patterns("*.sock"))
                record["logs"] = str(logs)
            rounds.append(record)
            print(
                f"round {number}/{args.rounds}: {record['result']} "
                f"kill {record.get('kill_points', '?')}, {record.get('restarts', '?')} restarts, "
                f"{record.get('seconds', '?')} s"
                + (f" -- {record['failures'][0][:300]}" if record.get("failures") else ""),
                file=sys.stderr,
            )
            payload["wall_s"] = round(time.monotonic() - started, 1)
            write_json(out, payload)
    except KeyboardInterrupt:
        print("interrupted: stopping the load, the daemon and the servers", file=sys.stderr)
        return 130
    except SystemExit:
        print("terminated: stopping the load, the daemon and the servers", file=sys.stderr)
        raise
    except LoadError as exc:
        print(f"drill failed: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if pair is not None:
            pair.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    passed = sum(1 for r in rounds if r["result"] == "PASS")
    failed = len(rounds) - passed
    wall = round(time.monotonic() - started, 1)
    payload.update({"passed": passed, "failed": failed, "wall_s": wall})
    write_json(out, payload)
    print(format_table(rounds, with_pt=bool(payload.get("pt_table_sync"))))
    details = format_details(rounds)
    if details:
        print("\n" + details)
    if not payload.get("load_is_sysbench"):
        print(f"\nNOTE: the write load was the {payload.get('load')}, not sysbench")
    print(f"\nwrote {out}; {wall} s in all ({wall / max(len(rounds), 1):.1f} s a round), seed {seed}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and rounds else 1


if __name__ == "__main__":
    sys.exit(main())
