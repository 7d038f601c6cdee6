"""A cutover released while another session holds a lock on the moved table (issue "A cutover that
never stalls the application"; target: no application query waits longer than 1 s).

One move of a sysbench table, held before its cutover (``postpone_cutover = true``), under a
rate-limited ``sysbench oltp_write_only`` (``--percentile=100``: each per-second line reports that
second's maximum latency) and a probe connection of our own that writes the moved table every
``probe_interval_s`` (autocommit ``UPDATE ... SET k = k + 1`` by primary key, timing every query).
Then:

1. a blocker session runs ``BEGIN; SELECT ... FOR UPDATE`` on a row of the moved table and holds
   the transaction (and so its metadata lock on the table) for ``hold_s`` seconds, then commits;
2. ``release_after_s`` into the hold, the cutover is released with ``tablemover cutover -c CONFIG``
   (the CLI, over the control socket), so the blocker is older than the daemon's
   ``cutover_blocker_min_age_s`` (1 s) and is still there when the cutover looks.

A RENAME issued now would wait for the blocker's metadata lock, and every query on the table would
queue behind it; the daemon is expected to see the blocker first and hold the RENAME until it has
gone. The rows the probe and the blocker touch (ids above the sysbench range) are never written by
sysbench, so no row lock adds to what is measured.

Reported: the maximum latency of the probe's queries and of sysbench's per-second maxima in the
cutover window (from the release until the first query that found the table renamed away), the
same before the window for comparison, the daemon's ``cutover outage`` line (``outage_ms``,
``lock_wait_ms``, ``rename_attempts``), which method it used to find the blocker (its ``cutover
blocker check`` line) and whether it logged the blocker (``cutover waits``).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from loadkit import ER_NO_SUCH_TABLE, SysbenchRun, parse_sysbench, sysbench_cmd, sysbench_prepare

from bench.common import (
    MSG_OUTAGE,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    daemon_env,
    percentile,
    write_config,
)
from bench.keepup import SETTLE_TIMEOUT_S, wait_postponed
from tablemover.local.mariadb import LocalPair, root_connection

DB = "bench_heldlock"
PROBE_ROWS = 100  # the probe cycles over these rows, above the sysbench ids
MAX_WAIT_TARGET_MS = 1000
WARMUP_S = 2.0  # load and probe running before the blocker starts: the "before" figures
FINISH_TIMEOUT_S = 120.0
SYSBENCH_TIME_S = 600  # an upper bound: sysbench ends when the RENAME makes its statements fail
MSG_BLOCKER_CHECK = "cutover blocker check"
MSG_WAITS = "cutover waits"  # a prefix of the daemon's "cutover waits: a source transaction ..."
MSG_RENAMED = "source tables renamed"


class Probe:
    """A thread writing the moved table every ``interval_s`` and timing each query, until a query
    finds the table renamed away (1146) or :meth:`stop`."""

    def __init__(self, socket: str, db: str, first_id: int, interval_s: float) -> None:
        self.socket, self.db, self.first_id, self.interval_s = socket, db, first_id, interval_s
        self.samples: list[tuple[float, float]] = []  # (time.time() sent, seconds it took)
        self.renamed_at: float | None = None  # time.time() the first 1146 query was sent
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="probe")

    def start(self) -> Probe:
        """Start probing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing (if the rename has not stopped it already)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            conn = root_connection(self.socket, self.db)
        except pymysql.err.MySQLError as exc:
            self.error = f"connect: {exc}"
            return
        n = 0
        try:
            with conn.cursor() as cur:
                while not self._stop.wait(self.interval_s):
                    n += 1
                    sent = time.time()
                    clock = time.perf_counter()
                    try:
                        cur.execute(
                            f"UPDATE `{TABLE}` SET k = k + 1 WHERE id = %s", (self.first_id + n % PROBE_ROWS,)
                        )
                    except pymysql.err.MySQLError as exc:
                        self.samples.append((sent, time.perf_counter() - clock))
                        if exc.args and exc.args[0] == ER_NO_SUCH_TABLE:
                            self.renamed_at = sent  # the cutover renamed the table: the probe's end
                        else:
                            self.error = str(exc)
                        return
                    self.samples.append((sent, time.perf_counter() - clock))
        finally:
            with contextlib.suppress(pymysql.err.MySQLError):
                conn.close()


class Blocker:
    """A thread holding ``BEGIN; SELECT ... FOR UPDATE`` on one row for ``hold_s`` seconds."""

    def __init__(self, socket: str, db: str, row_id: int, hold_s: float) -> None:
        self.socket, self.db, self.row_id, self.hold_s = socket, db, row_id, hold_s
        self.locked_at: float | None = None  # time.time() the lock was granted
        self.committed_at: float | None = None
        self.error = ""
        self.locked = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="blocker")

    def start(self) -> Blocker:
        """Open the transaction (returns at once; :attr:`locked` is set when the lock is held)."""
        self._thread.start()
        return self

    def join(self) -> None:
        """Wait for the commit."""
        self._thread.join(timeout=self.hold_s + 30)

    def _run(self) -> None:
        try:
            conn = root_connection(self.socket, self.db)
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(f"SELECT * FROM `{TABLE}` WHERE id = %s FOR UPDATE", (self.row_id,))
                cur.fetchall()
                self.locked_at = time.time()
                self.locked.set()
                time.sleep(self.hold_s)
                cur.execute("COMMIT")
                self.committed_at = time.time()
            conn.close()
        except pymysql.err.MySQLError as exc:
            self.error = str(exc)
        finally:
            self.locked.set()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def bench_heldlock(
    pair: LocalPair,
    workdir: Path,
    sysbench: str,
    rows: int,
    hold_s: float,
    release_after_s: float,
    sysbench_rate: int,
    probe_interval_s: float,
) -> dict[str, Any]:
    """One held-lock cutover under load (module docstring); its figures."""
    source = pair.source
    source.execute(f"CREATE DATABASE `{DB}`")
    cmd = sysbench_cmd(
        sysbench, source.socket, DB, rows, SYSBENCH_TIME_S, threads=2, rate=sysbench_rate, percentile=100
    )
    sysbench_prepare(cmd, DB)
    probe_first, blocker_id = rows + 1, rows + PROBE_ROWS + 1
    source.execute(
        f"USE `{DB}`",
        f"INSERT INTO `{TABLE}` (id, k, c, pad) "
        f"SELECT seq, 0, 'probe', 'probe' FROM seq_{probe_first}_to_{blocker_id}",
    )
    config = write_config(pair, workdir, DB, DB, [TABLE], postpone_cutover=True)
    daemon = Daemon(config, workdir / f"{DB}.log").start()
    load = SysbenchRun(cmd, workdir / f"sysbench-{DB}.log")
    probe: Probe | None = None
    blocker: Blocker | None = None
    try:
        wait_postponed(daemon, SETTLE_TIMEOUT_S, "heldlock")
        load.start()
        probe = Probe(source.socket, DB, probe_first, probe_interval_s).start()
        time.sleep(WARMUP_S)
        blocker = Blocker(source.socket, DB, blocker_id, hold_s).start()
        blocker.locked.wait(30)
        if blocker.error or blocker.locked_at is None:
            raise BenchError(f"heldlock: the blocker could not take its lock: {blocker.error}")
        time.sleep(max(0.0, blocker.locked_at + release_after_s - time.time()))
        released_at = time.time()
        cli = subprocess.run(
            [sys.executable, "-m", "tablemover", "cutover", "-c", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(),
            timeout=60,
            check=False,
        )
        release_returned_at = time.time()
        if cli.returncode != 0:
            raise BenchError(
                f"heldlock: `tablemover cutover` exited {cli.returncode}: {cli.stdout}{cli.stderr}"
            )
        rc = daemon.wait(FINISH_TIMEOUT_S + hold_s)
        if rc != 0:
            raise BenchError(f"heldlock: tablemover run exited {rc} after the release:\n{daemon.tail()}")
        blocker.join()
        probe.stop()
        if probe.error:
            raise BenchError(f"heldlock: the probe failed: {probe.error}")
    finally:
        if probe is not None:
            probe.stop()
        load.kill()  # it has usually died on the renamed table already
        daemon.kill()
    assert probe is not None and blocker is not None
    output = load.output()
    if load.returncode not in (0, None) and "1146" not in output and "doesn't exist" not in output:
        raise BenchError(f"heldlock: sysbench failed for another reason than the rename:\n{output[-1500:]}")
    verified = check_equal(pair, (DB, f"_{TABLE}_moved"), (f"{DB}_dst", TABLE), "after the heldlock move")

    outage = daemon.first(MSG_OUTAGE)
    method_line = daemon.find(MSG_BLOCKER_CHECK) or {}
    waits_line = daemon.find(MSG_WAITS, prefix=True)
    renamed_line = daemon.find(MSG_RENAMED) or {}
    renamed_ts = float(renamed_line.get("ts", 0.0)) or None
    window_end = probe.renamed_at if probe.renamed_at is not None else (renamed_ts or time.time())

    # A query counts in the window if it was waiting at any moment of it.
    in_window = [lat for sent, lat in probe.samples if sent + lat >= released_at and sent <= window_end]
    before = [lat for sent, lat in probe.samples if sent + lat < released_at]
    report = parse_sysbench(output, require_total=False)
    intervals = report["intervals"]
    # sysbench's second N covers [start + N - 1, start + N); its start is within ms of started_at.
    sb_window = [
        lat
        for sec, _tps, lat, _err in intervals
        if load.started_at + sec >= released_at and load.started_at + sec - 1 <= window_end
    ]
    sb_before = [lat for sec, _tps, lat, _err in intervals if load.started_at + sec < released_at]
    probe_max_ms = _ms(max(in_window)) if in_window else None
    sysbench_max_ms = round(max(sb_window)) if sb_window else None
    worst = max(x for x in (probe_max_ms, sysbench_max_ms, 0) if x is not None)
    return {
        "table_rows": rows,
        "load": f"sysbench oltp_write_only, 1 table, --threads=2 --rate={sysbench_rate}, --percentile=100",
        "blocker": (
            f"BEGIN; SELECT * FROM {TABLE} WHERE id = {blocker_id} FOR UPDATE; held {hold_s:g} s; COMMIT"
        ),
        "hold_s": hold_s,
        "release_after_s": release_after_s,
        "blocker_method": method_line.get("method"),
        "blocker_seen": waits_line is not None,
        "blocker_seen_ms_after_release": _ms(float(waits_line["ts"]) - released_at) if waits_line else None,
        "release_cli_s": round(release_returned_at - released_at, 3),
        "blocker_commit_to_rename_ms": (
            _ms(renamed_ts - blocker.committed_at) if renamed_ts and blocker.committed_at else None
        ),
        "release_to_rename_s": round(renamed_ts - released_at, 3) if renamed_ts else None,
        "outage_ms": int(outage["outage_ms"]),
        "lock_wait_ms": outage.get("lock_wait_ms"),
        "rename_attempts": outage.get("rename_attempts"),
        "failed_attempts_wait_ms": outage.get("failed_attempts_wait_ms"),
        "window_s": round(window_end - released_at, 3),
        "probe": {
            "interval_ms": _ms(probe_interval_s),
            "queries": len(probe.samples),
            "queries_in_window": len(in_window),
            "max_ms_in_window": probe_max_ms,
            "p99_ms_in_window": _ms(percentile(in_window, 99)) if in_window else None,
            "max_ms_before": _ms(max(before)) if before else None,
            "p99_ms_before": _ms(percentile(before, 99)) if before else None,
            "over_1s": sum(1 for _sent, lat in probe.samples if lat > 1.0),
        },
        "sysbench": {
            "max_latency_ms_in_window": sysbench_max_ms,
            "max_latency_ms_before": round(max(sb_before)) if sb_before else None,
            "seconds_in_window": len(sb_window),
            "exit_code": load.returncode,
        },
        "app_max_wait_ms": worst,
        "max_wait_target_ms": MAX_WAIT_TARGET_MS,
        "verified_rows": verified,
    }
