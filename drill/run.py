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

from tablemover.local.mariadb import LocalPair, grant_mover, pair_config, root_connection, start_pair

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

# Spec section 3's state graph, written out here rather than imported from tablemover so that the
# check does not share the daemon's idea of what is legal.
LEGAL_NEXT: dict[str, frozenset[str]] = {
    "": frozenset({"PREPARED"}),
    "PREPARED": frozenset({"COPYING"}),
    "COPYING": frozenset({"CUTOVER_STARTED"}),
    "CUTOVER_STARTED": frozenset({"COPYING", "RENAMED"}),
    "RENAMED": frozenset({"DRAINED"}),
    "DRAINED": frozenset({"HOOK_FIRED"}),
    "HOOK_FIRED": frozenset({"DONE"}),
    "DONE": frozenset(),
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
        self.loads: list[PyLoad] = []

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


def scan_binlog(socket_path: str, db: str, since: BinlogPos, load_from: BinlogPos) -> tuple[int, int]:
    """(RENAME statements naming ``db``'s tables, commits of row transactions after ``load_from``).

    Scans every binlog event from ``since`` (taken before the round's schema was created, so nothing
    of the round is missed) to the end.
    """
    marker = f"`{db}`.`"
    renames = commits = 0
    conn = connect(socket_path, streaming=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            names = [str(r[0]) for r in cur.fetchall() if str(r[0]) >= since[0]]
            for name in names:
                start = f" FROM {since[1]}" if name == since[0] else ""
                cur.execute(f"SHOW BINLOG EVENTS IN '{name}'{start}")
                for _log, pos, event_type, _server, _end, info in cur:
                    if event_type == "Query" and "RENAME" in str(info).upper() and marker in str(info):
                        renames += 1
                    elif event_type == "Xid" and (name, int(pos)) >= load_from:
                        commits += 1
    finally:
        conn.close()
    return renames, commits


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


def transitions(pair: LocalPair, dst_db: str) -> list[tuple[str, int]]:
    """(state, hook_attempts) of the checkpoint's transition rows, in order."""
    rows = query(
        pair.target.socket,
        f"SELECT state, hook_attempts FROM `{dst_db}`._tablemover_checkpoint "
        "WHERE kind='transition' ORDER BY id",
    )
    return [(str(r[0]), int(r[1])) for r in rows]


def transition_problems(states: list[str]) -> list[str]:
    """What is wrong with a finished move's sequence of transition states (empty: nothing)."""
    problems = []
    for before, after in zip(["", *states], states, strict=False):
        if after not in LEGAL_NEXT.get(before, frozenset()):
            problems.append(f"illegal transition {before or 'start'} -> {after}")
    if states[-2:] != ["HOOK_FIRED", "DONE"]:
        problems.append(f"does not end with HOOK_FIRED, DONE (ends {states[-2:]})")
    for once in ("RENAMED", "HOOK_FIRED"):
        if states.count(once) != 1:
            problems.append(f"{once} written {states.count(once)} times")
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


def stop_sysbench(run: SysbenchRun) -> tuple[str, bool]:
    """Stop it; (how it ended, whether that was expected)."""
    if run.proc is None:
        return "not started", False
    if run.terminate():
        return "terminated by the drill", True
    output = run.output()
    if f"error {ER_NO_SUCH_TABLE}" in output or f"errno = {ER_NO_SUCH_TABLE}" in output:
        return "stopped by the cutover (1146: tables renamed)", True
    fatal = [line for line in output.splitlines() if "FATAL" in line]
    return f"died on its own (exit {run.returncode}): {' | '.join(fatal[:2])[:300]}", False


class PyLoad:
    """Built-in write load: inserts, updates, deletes, key-changing updates, 1-4 statements a
    transaction, paced to ``rate`` transactions/s over ``threads`` connections."""

    def __init__(
        self, socket_path: str, db: str, tables: list[str], rows: int, rate: int, threads: int, seed: int
    ) -> None:
        self.socket_path, self.db, self.tables, self.rows = socket_path, db, tables, rows
        self.rate, self.seed = max(rate, 1), seed
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
        return ("stopped by the cutover (1146: tables renamed)" if self.cutover_seen else "stopped"), True

    def _worker(self, index: int, threads: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        pacer = Pacer(self.rate / threads, self._stop)
        # Disjoint id ranges per thread, above anything the seed data uses, for new keys.
        next_new_id = 1_000_000_000 + index * 100_000_000
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


# --- kill plan ----------------------------------------------------------------------------------


@dataclass
class Kill:
    """One planned SIGKILL: at a fault point, or at ``fraction`` of the run's expected duration."""

    point: str = ""  # TABLEMOVER_FAULTS spec; "" for a random instant
    fraction: float = 0.0
    delay_s: float | None = None  # the random instant, once chosen
    happened: bool = False
    run_attempted: bool = False

    def label(self) -> str:
        """How the table shows it."""
        text = self.point or f"random@{self.delay_s if self.delay_s is not None else 0:.2f}s"
        if self.run_attempted and not self.happened:
            text += " (not reached)" if self.point else " (run ended first)"
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


def run_daemon(
    children: Children, config: Path, log_path: Path, fault: str = "", kill_after_s: float | None = None
) -> RunRecord:
    """Run ``tablemover run`` once: with ``fault`` armed, or SIGKILLed after ``kill_after_s``."""
    record = RunRecord(fault, kill_after_s, log=str(log_path))
    cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run", "-c", str(config)]
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = children.spawn(cmd, log, env=daemon_env(fault))
        try:
            record.rc = proc.wait(timeout=kill_after_s if kill_after_s is not None else RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            record.rc = proc.wait()
            record.killed_by_drill = kill_after_s is not None
            record.timed_out = kill_after_s is None
        record.wall_s = time.monotonic() - started
    children.reap()
    parse_log(record, log_path)
    return record


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


# --- one round ----------------------------------------------------------------------------------


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
    full_runs: list[float] = field(default_factory=list)
    restart_runs: list[float] = field(default_factory=list)

    def expected_run_s(self) -> float:
        """Expected duration of an undisturbed first run (timed ones, else a bound)."""
        return 1.1 * statistics.median(self.full_runs) if self.full_runs else DEFAULT_RUN_S

    def expected_restart_s(self) -> float:
        """Expected duration of a restart after a kill."""
        return statistics.median(self.restart_runs) if self.restart_runs else DEFAULT_RESTART_S


def write_hook(directory: Path, log: Path) -> None:
    """An on-success hook that appends its attempt number to ``log``."""
    directory.mkdir(parents=True, exist_ok=True)
    hook = directory / "on-success"
    hook.write_text(f'#!/bin/sh\necho "$TABLEMOVER_HOOK_ATTEMPT" >> "{log}"\n')
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


def round_runs(drill: Drill, kills: list[Kill], config: Path, rdir: Path) -> list[RunRecord]:
    """The killed runs, then clean restarts until one exits 0 (or MAX_RESTARTS, or a refusal)."""
    runs: list[RunRecord] = []
    for i, kill in enumerate(kills):
        if runs and runs[-1].rc == 0:
            break  # the move is done: a further kill has nothing left to hit
        kill.run_attempted = True
        log = rdir / f"run-{len(runs) + 1}.log"
        if kill.point:
            rec = run_daemon(drill.children, config, log, fault=kill.point)
            kill.happened = rec.rc == -signal.SIGKILL
        else:
            kill.delay_s = kill.fraction * (drill.expected_run_s() if i == 0 else drill.expected_restart_s())
            rec = run_daemon(drill.children, config, log, kill_after_s=kill.delay_s)
            kill.happened = rec.killed_by_drill
        runs.append(rec)
        if i == 0 and (rec.rc == 0 or (kill.happened and kill.point in CUTOVER_POINTS)):
            # Undisturbed until the cutover (or the end): a measure of a whole run.
            drill.full_runs.append(rec.wall_s)
        if rec.rc in (2, 3):
            return runs
    restarts = 0
    while runs[-1].rc != 0 and restarts < MAX_RESTARTS:
        restarts += 1
        rec = run_daemon(drill.children, config, rdir / f"run-{len(runs) + 1}.log")
        runs.append(rec)
        if rec.rc == 0:
            drill.restart_runs.append(rec.wall_s)
        if rec.rc in (2, 3):
            break
    return runs


def run_round(drill: Drill, number: int, kills: list[Kill], table_count: int) -> dict[str, Any]:
    """Set up, load, kill, restart and check one round; its JSON record."""
    started = time.monotonic()
    pair = drill.pair
    db, dst = f"drill_{number}", f"drill_{number}_dst"
    tables = [f"sbtest{i}" for i in range(1, table_count + 1)]
    rdir = drill.workdir / f"round-{number}"
    rdir.mkdir(parents=True)
    result: dict[str, Any] = {"round": number, "tables": tables}
    failures: list[str] = []
    warnings: list[str] = []

    since = binlog_position(pair.source.socket)
    sysbench = setup_round(drill, db, tables, rdir)
    load_from = binlog_position(pair.source.socket)

    hook_log = rdir / "hook.log"
    write_hook(rdir / "hooks", hook_log)
    move = {
        "name": db,
        "database": db,
        "target_database": dst,
        "tables": tables,
        "hooks_dir": str(rdir / "hooks"),
    }
    config = rdir / "move.toml"
    config.write_text(pair_config(pair, rdir, move))

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

    runs = round_runs(drill, kills, config, rdir)
    final = runs[-1]

    loads: dict[str, Any] = {}
    ended: list[tuple[str, tuple[str, bool]]] = []
    if sysbench is not None:
        ended.append(("sysbench", stop_sysbench(sysbench)))
    if pyload is not None:
        ended.append(("python", pyload.stop()))
    for name, (how, expected) in ended:
        loads[name] = how
        if not expected:
            warnings.append(f"{name} load: {how}")
    result["load"] = loads
    if pyload is not None:
        result["python_load_commits"] = pyload.commits

    for run in runs:
        if run.timed_out:
            failures.append(f"a run did not finish within {RUN_TIMEOUT_S:.0f} s and was killed")
        elif run.rc not in (0, -signal.SIGKILL):
            (failures if run.rc in (2, 3) else warnings).append(
                f"run {runs.index(run) + 1} exited {run.rc}: {'; '.join(run.errors[:2])}"
            )
    for kill in kills:
        if not kill.happened:
            warnings.append(f"planned kill {kill.label()} did not happen")
    if final.rc != 0:
        failures.append(f"the last run exited {final.rc} after {len(runs) - 1} restarts")

    checks = check_round(drill, config, (db, dst), tables, (since, load_from), hook_log, failures)
    result.update(checks)
    result.update(
        {
            "kill_points": " + ".join(k.label() for k in kills),
            "restarts": len(runs) - 1,
            "runs": [r.as_json() for r in runs],
            "kills": [k.as_json() for k in kills],
            "failures": failures,
            "warnings": warnings,
            "result": "FAIL" if failures else "PASS",
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    return result


def check_round(
    drill: Drill,
    config: Path,
    schemas: tuple[str, str],
    tables: list[str],
    binlog_from: tuple[BinlogPos, BinlogPos],
    hook_log: Path,
    failures: list[str],
) -> dict[str, Any]:
    """Every check of a finished round; appends what failed to ``failures``.

    ``binlog_from``: where the round began (before its schema existed) and where its load began.
    """
    pair = drill.pair
    db, dst = schemas
    since, load_from = binlog_from
    out: dict[str, Any] = {}

    rc, text = tablemover_verify(config)
    out["verify"] = {"rc": rc, "output": text[-2000:]}
    if rc != 0:
        failures.append(f"tablemover verify exited {rc}: {' | '.join(text.splitlines())[-600:]}")

    diffs: list[dict[str, Any]] = []
    rows = 0
    for table in tables:
        renamed = f"_{table}_moved"
        try:
            d = dump_diff(pair, (db, renamed), (dst, table))
        except pymysql.err.MySQLError as exc:
            failures.append(f"dump diff of {table}: {exc}")
            diffs.append({"table": table, "error": str(exc)})
            continue
        rows += d.source_rows
        diffs.append(
            {
                "table": table,
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
                f"dump diff {d.table}: {d.missing} missing, {d.extra} extra, {d.different} different "
                f"({'; '.join(d.examples[:3])})"
            )
    out["dump_diff"] = diffs
    out["rows"] = rows

    if drill.pt_table_sync is not None:
        pt: dict[str, str] = {}
        for table in tables:
            try:
                pt[table] = pt_table_sync(drill.pt_table_sync, pair, (db, f"_{table}_moved"), (dst, table))
            except (subprocess.TimeoutExpired, OSError) as exc:
                pt[table] = f"could not run: {exc}"
            if pt[table]:
                failures.append(f"pt-table-sync {table}: {pt[table][:600]}")
        out["pt_table_sync"] = pt

    try:
        renames, commits = scan_binlog(pair.source.socket, db, since, load_from)
    except pymysql.err.MySQLError as exc:
        failures.append(f"binlog scan: {exc}")
        renames, commits = -1, -1
    out["renames"] = renames
    out["write_transactions"] = commits
    if renames != 1:
        failures.append(f"the source binlog holds {renames} RENAMEs of {db}'s tables, not 1")

    try:
        trans = transitions(pair, dst)
    except pymysql.err.MySQLError as exc:
        failures.append(f"checkpoint transitions: {exc}")
        trans = []
    states = [s for s, _ in trans]
    out["transitions"] = states
    problems = transition_problems(states) if states else ["no transition rows"]
    out["transition_problems"] = problems
    failures.extend(f"checkpoint: {p} ({' '.join(states)})" for p in problems)

    attempts = [int(x) for x in hook_log.read_text().split()] if hook_log.exists() else []
    out["hook_attempts"] = attempts
    fired = [a for s, a in trans if s == "HOOK_FIRED"]
    if not attempts:
        failures.append("the on-success hook never ran")
    elif attempts != sorted(set(attempts)):
        failures.append(f"hook attempt numbers not increasing: {attempts}")
    elif fired and attempts[-1] != fired[-1]:
        failures.append(
            f"the on-success hook ran as attempt {attempts[-1]} but HOOK_FIRED records attempt {fired[-1]} "
            "(it ran again after HOOK_FIRED, or its success was not recorded)"
        )
    return out


# --- report -------------------------------------------------------------------------------------


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "FAIL")


def format_table(rounds: list[dict[str, Any]], with_pt: bool) -> str:
    """An aligned table of rounds."""
    header = ["round", "tables", "kill point(s)", "restarts", "rows", "write txns", "verify", "dump diff"]
    if with_pt:
        header.append("pt-sync")
    header += ["renames", "states", "hook", "s", "result"]
    lines = [header]
    for r in rounds:
        diffs = r.get("dump_diff", [])
        row = [
            str(r["round"]),
            str(len(r["tables"])),
            r.get("kill_points", ""),
            str(r.get("restarts", "")),
            f"{r.get('rows', 0):,}",
            f"{r.get('write_transactions', 0):,}",
            _mark(r.get("verify", {}).get("rc") == 0) if "verify" in r else "-",
            _mark(
                bool(diffs)
                and all(d.get("missing") == d.get("extra") == d.get("different") == 0 for d in diffs)
            ),
        ]
        if with_pt:
            row.append(_mark(not any(r.get("pt_table_sync", {"": "?"}).values())))
        row += [
            str(r.get("renames", "-")),
            _mark(not r.get("transition_problems", ["?"])),
            ",".join(str(a) for a in r.get("hook_attempts", [])) or "-",
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
            how = (
                f"fault {run['fault']}"
                if run["fault"]
                else (f"kill after {run['kill_after_s']} s" if run["kill_after_s"] is not None else "clean")
            )
            out.append(
                f"  run {i}: {how}, exit {run['rc']}, {run['wall_s']} s, "
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
    args = p.parse_args(argv)
    for name in ("rounds", "rows", "rate"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
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
            f"seed {seed}, pt-table-sync {'yes' if pt else 'not installed (skipped)'}",
            file=sys.stderr,
        )
        workdir = root / "work"
        workdir.mkdir()
        pair = start_pair(row_metadata=args.row_metadata, root=root / "servers")
        grant_mover(pair, SCHEMA_GRANT)
        drill = Drill(pair, workdir, children, args.rows, args.rate, seed, sysbench, pt)
        payload = {
            "seed": seed,
            "rounds_planned": args.rounds,
            "rows_per_table": args.rows,
            "rate_txn_per_s": args.rate,
            "load": load_desc,
            "load_is_sysbench": sysbench is not None,
            "pt_table_sync": bool(pt),
            "row_metadata": args.row_metadata,
            "mariadbd": str(pair.source.execute("SELECT VERSION()")[0][0]),
            "rounds": rounds,
        }
        targeted = 0
        for number in range(1, args.rounds + 1):
            kills = plan_kills(number, targeted, rng)
            targeted += number % 2
            table_count = rng.choice((2, 3))
            try:
                record = run_round(drill, number, kills, table_count)
            except LoadError as exc:
                record = {
                    "round": number,
                    "tables": [],
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
