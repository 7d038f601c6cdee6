"""Apply keep-up under a saturating single-connection sysbench write load (spec section 10: lag < 2 s).

A move of one sysbench table is started with ``postpone_cutover = true``: once copied and caught up
it stays in COPYING, streaming and applying, until released on its control socket. Then
``sysbench oltp_write_only --threads=1 --rate=0`` writes to the table for a fixed time while the
bench samples the source's position (every :data:`SOURCE_SAMPLE_S`) and the daemon's committed
applied position (``status`` on the control socket, every ``sample_s``).

Lag, as the bench computes it, is the age of the oldest source transaction the daemon has not yet
committed on the target: at a status sample taken at time t whose ``applied_gtid`` has sequence
number a, it is t minus the time of the newest source sample whose position a covers (0 when the
newest source sample is covered). That is an upper bound, too high by at most one source sampling
interval; it is the same definition the daemon uses for its own ``lag_s`` (also recorded), computed
independently of the daemon's code.

Catch-up is the time from sysbench's exit until the daemon's committed ``applied_gtid`` covers the
source's ``@@gtid_binlog_pos`` read right after that exit (which includes the last write of the load).
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    MSG_CAUGHT_UP,
    MSG_POSTPONED,
    MSG_STATE_CHANGED,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    control,
    covers,
    gtid_pos,
    parse_position,
    percentile,
    process_cpu_s,
    rate,
    socket_path,
    status,
    total_seq,
    write_config,
)
from tablemover.local.mariadb import LocalPair, root_connection

DB = "bench_keepup"
SOURCE_SAMPLE_S = 0.05
SETTLE_TIMEOUT_S = 300.0  # copy + first catch-up before the load starts
CATCH_UP_TIMEOUT_S = 300.0  # after the load: not catching up within this is a broken daemon
CUTOVER_TIMEOUT_S = 120.0
LAG_TARGET_S = 2.0
RE_TOTAL = re.compile(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec")
RE_INTERVAL = re.compile(r"\[\s*(\d+)s\s*\].*?tps:\s*([\d.]+)")


def sysbench_cmd(binary: str, socket: str, db: str, rows: int, seconds: int) -> list[str]:
    """``sysbench oltp_write_only`` on one table of ``db``: one connection, unthrottled, ``seconds`` long."""
    return [
        binary,
        "oltp_write_only",
        f"--mysql-socket={socket}",
        "--mysql-user=root",
        f"--mysql-db={db}",
        "--tables=1",
        f"--table-size={rows}",
        "--threads=1",
        "--rate=0",  # unthrottled: one connection writes as fast as the source lets it
        f"--time={seconds}",
        "--report-interval=1",
    ]


class SourceSampler:
    """A thread reading the source's ``@@gtid_binlog_pos`` every :data:`SOURCE_SAMPLE_S`."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.times: list[float] = []  # time.time() after each read
        self.seqs: list[int] = []  # total sequence number read then (non-decreasing)
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="source-sampler")

    def start(self) -> SourceSampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling; raise :class:`BenchError` if a read failed (the lags would mean nothing)."""
        self._stop.set()
        self._thread.join(timeout=10)
        if self.error:
            raise BenchError(f"sampling the source position failed: {self.error}")

    def _run(self) -> None:
        try:
            conn = root_connection(self.socket)
        except Exception as exc:  # reported by stop()
            self.error = str(exc)
            return
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute("SELECT @@global.gtid_binlog_pos")
                    row = cur.fetchone()
                    self.seqs.append(total_seq(parse_position(str(row[0] if row else "") or "")))
                    self.times.append(time.time())
                    self._stop.wait(SOURCE_SAMPLE_S)
        except Exception as exc:  # reported by stop()
            self.error = str(exc)
        finally:
            conn.close()

    def lag_at(self, t: float, applied_seq: int) -> float | None:
        """Age at ``t`` of the oldest source transaction past ``applied_seq`` (see the module doc);
        None when no source sample at or before ``t`` is covered (cannot tell)."""
        n = bisect.bisect_right(self.times, t)  # the source samples taken at or before t
        if n == 0:
            return None
        if self.seqs[n - 1] <= applied_seq:
            return 0.0
        covered = bisect.bisect_right(self.seqs, applied_seq, 0, n)  # samples with seq <= applied
        if covered == 0:
            return None
        return t - self.times[covered - 1]


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    return process.pid if process is not None else -1


def wait_postponed(daemon: Daemon, timeout_s: float) -> None:
    """Wait until the daemon logs that it holds the cutover (copied and caught up)."""
    deadline = time.monotonic() + timeout_s
    while daemon.find(MSG_POSTPONED, prefix=True) is None:
        if daemon.poll() is not None:
            raise BenchError(f"keepup: tablemover run exited {daemon.returncode} early:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"keepup: not copied and caught up within {timeout_s:.0f} s:\n{daemon.tail()}")
        time.sleep(0.05)


def daemon_status(daemon: Daemon, sock: str) -> dict[str, Any]:
    """The daemon's status; a daemon that died or stopped answering is a :class:`BenchError`."""
    reply = status(sock)
    if reply is None:
        if daemon.poll() is not None:
            raise BenchError(f"keepup: tablemover run exited {daemon.returncode}:\n{daemon.tail()}")
        raise BenchError("keepup: the daemon did not answer `status` on its control socket")
    return reply


def parse_sysbench(output: str) -> dict[str, Any]:
    """Total and per-second tps from sysbench's report."""
    total = RE_TOTAL.search(output)
    if total is None:
        raise BenchError(f"keepup: no transactions line in sysbench's output:\n{output[-1500:]}")
    per_second = [float(m.group(2)) for m in RE_INTERVAL.finditer(output)]
    return {
        "transactions": int(total.group(1)),
        "tps": round(float(total.group(2)), 1),
        "tps_per_second": per_second,
    }


# The source's commit settings for the two loads. "durable" is what production primaries run
# (every commit flushed and synced): one sysbench connection is then bound by the log sync, as on
# a real primary. "relaxed" is what our throwaway servers run: one connection is then bound only by
# CPU, which on a 2-core machine it shares with the daemon, the target and sysbench itself.
DURABILITY = {
    "durable": ("SET GLOBAL innodb_flush_log_at_trx_commit = 1", "SET GLOBAL sync_binlog = 1"),
    "relaxed": ("SET GLOBAL innodb_flush_log_at_trx_commit = 2", "SET GLOBAL sync_binlog = 0"),
}


def bench_keepup(
    pair: LocalPair,
    workdir: Path,
    sysbench: str,
    rows: int,
    seconds: int,
    sample_s: float,
    durability: str = "durable",
) -> dict[str, Any]:
    """Lag of a running move under ``seconds`` of unthrottled one-connection sysbench writes."""
    source = pair.source
    db = f"{DB}_{durability}"
    source.execute(f"CREATE DATABASE `{db}`")
    source.execute(*DURABILITY[durability])
    try:
        figures = _keepup_on(pair, workdir, sysbench, db, rows, seconds, sample_s)
    finally:
        source.execute(*DURABILITY["relaxed"])  # the other parts expect the throwaway settings
    return {"durability": durability, "source_settings": list(DURABILITY[durability]), **figures}


def _keepup_on(
    pair: LocalPair, workdir: Path, sysbench: str, db: str, rows: int, seconds: int, sample_s: float
) -> dict[str, Any]:
    source = pair.source
    cmd = sysbench_cmd(sysbench, source.socket, db, rows, seconds)
    prep = subprocess.run([*cmd, "prepare"], capture_output=True, text=True, timeout=600, check=False)
    if prep.returncode != 0:
        raise BenchError(f"keepup: sysbench prepare failed:\n{(prep.stdout + prep.stderr)[-1500:]}")

    config = write_config(pair, workdir, db, db, [TABLE], postpone_cutover=True)
    sock = socket_path(workdir, db)
    daemon = Daemon(config, workdir / f"{db}.log").start()
    try:
        wait_postponed(daemon, SETTLE_TIMEOUT_S)
        copying = daemon.first(MSG_STATE_CHANGED, state="COPYING")
        caught_up = daemon.first(MSG_CAUGHT_UP)
        measured = _measure(pair, daemon, sock, cmd, workdir, sample_s)
        # Release the held cutover: it renames the source table away, drains and finishes.
        if (control(sock, "cutover") or {}).get("ok") is not True:
            raise BenchError(f"keepup: the daemon refused `cutover`:\n{daemon.tail()}")
        rc = daemon.wait(CUTOVER_TIMEOUT_S)
        if rc != 0:
            raise BenchError(
                f"keepup: tablemover run exited {rc} after the cutover release:\n{daemon.tail()}"
            )
    finally:
        daemon.kill()  # no-op once it has exited; a failure above must not leave it running
    verified = check_equal(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), "after the keepup move")
    return {
        "table_rows": rows,
        "load": f"sysbench oltp_write_only, 1 table, --threads=1 --rate=0, {seconds} s",
        "copy_s": round(float(caught_up["ts"]) - float(copying["ts"]), 3),
        **measured,
        "verified_rows": verified,
        "peak_rss_mb": daemon.peak_rss_mb,
        "lag_target_s": LAG_TARGET_S,
    }


def _measure(
    pair: LocalPair, daemon: Daemon, sock: str, cmd: list[str], workdir: Path, sample_s: float
) -> dict[str, Any]:
    """Run the load, sample lag through it and the catch-up after it; the figures."""
    sampler = SourceSampler(pair.source.socket).start()
    time.sleep(2 * SOURCE_SAMPLE_S)  # a covered source sample exists before the first status sample
    before = daemon_status(daemon, sock)
    log_path = workdir / "sysbench-keepup.log"
    samples: list[tuple[float, int, float, int]] = []  # (t, applied seq, daemon lag_s, events_applied)
    servers = {"source_mariadbd": _pid(pair.source.process), "target_mariadbd": _pid(pair.target.process)}
    cpu_before = {"daemon": daemon.cpu_s(), **{k: process_cpu_s(p) for k, p in servers.items()}}
    with log_path.open("wb") as log:
        load = subprocess.Popen([*cmd, "run"], stdout=log, stderr=subprocess.STDOUT)
    try:
        load_start = time.time()
        start_seq = total_seq(parse_position(gtid_pos(pair.source)))
        next_sample = time.monotonic()
        while True:
            # Reaped with wait4 for its CPU time (who used the two cores during the load matters),
            # and checked every few ms so that the catch-up clock starts when the load really ends.
            pid, wait_status, usage = os.wait4(load.pid, os.WNOHANG)
            if pid:
                load.returncode = os.waitstatus_to_exitcode(wait_status)
                load_cpu_s = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() >= next_sample:
                next_sample += sample_s
                st = daemon_status(daemon, sock)
                samples.append(
                    (
                        time.time(),
                        total_seq(parse_position(str(st.get("applied_gtid", "")))),
                        float(st.get("lag_s", 0.0)),
                        int(st.get("events_applied", 0)),
                    )
                )
            time.sleep(0.005)
        load_end = time.time()
        cpu_after = {"daemon": daemon.cpu_s(), **{k: process_cpu_s(p) for k, p in servers.items()}}
        final_text = gtid_pos(pair.source)
        final = parse_position(final_text)
        if load.returncode != 0:
            raise BenchError(
                f"keepup: sysbench run exited {load.returncode}:\n{log_path.read_text()[-1500:]}"
            )

        # Catch-up: poll faster than during the load, the figure is a duration.
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            st = daemon_status(daemon, sock)
            if covers(parse_position(str(st.get("applied_gtid", ""))), final):
                catch_up_s = time.time() - load_end
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"keepup: the daemon did not apply through {final_text} within "
                    f"{CATCH_UP_TIMEOUT_S:.0f} s after the load stopped "
                    f"(applied {st.get('applied_gtid')}):\n{daemon.tail()}"
                )
            time.sleep(0.01)
    finally:
        if load.returncode is None:  # a failure mid-load: do not leave sysbench writing
            load.kill()
            load.wait()
        sampler.stop()
    report = parse_sysbench(log_path.read_text(errors="replace"))

    lags: list[float] = []
    timeline: list[list[float]] = []
    for t, seq, daemon_lag, _events in samples:
        lag = sampler.lag_at(t, seq)
        if lag is not None:
            lags.append(lag)
            timeline.append([round(t - load_start, 2), round(lag, 3), round(daemon_lag, 3)])
    if not lags:
        raise BenchError("keepup: no lag sample could be computed")
    # The daemon's own progress lines (every 5 s): backlog is its writer's inbox, so a backlog near
    # 0 while lag grows says the stream side, not the target writes, is what limits the apply.
    progress = [
        {k: line.get(k) for k in ("events_per_s", "commits_per_s", "rows_written_per_s", "backlog", "lag_s")}
        for line in daemon.lines()
        if line.get("msg") == "progress" and load_start <= float(line.get("ts", 0)) <= load_end
    ]
    load_s = load_end - load_start
    cpu = {k: round(rate(cpu_after[k] - cpu_before[k], load_s), 2) for k in cpu_before}
    cpu["sysbench"] = round(rate(load_cpu_s, load_s), 2)
    (t0, seq0, _, ev0), (t1, seq1, _, ev1) = samples[0], samples[-1]
    end_seq = total_seq(final)
    return {
        "load_s": round(load_s, 3),
        "source_tps": report["tps"],
        "source_transactions": report["transactions"],
        "source_tps_per_second": report["tps_per_second"],
        "source_txn_per_s_from_gtid": round(rate(end_seq - start_seq, load_s)),
        "applied_txn_per_s": round(rate(seq1 - seq0, t1 - t0)),
        "applied_events_per_s": round(rate(ev1 - ev0, t1 - t0)),
        "events_applied_before_load": int(before.get("events_applied", 0)),
        "lag_samples": len(lags),
        "sample_interval_s": sample_s,
        "source_sample_interval_s": SOURCE_SAMPLE_S,
        "lag_max_s": round(max(lags), 3),
        "lag_p99_s": round(percentile(lags, 99), 3),
        "lag_p50_s": round(percentile(lags, 50), 3),
        "lag_at_load_end_s": round(lags[-1], 3),
        "daemon_lag_max_s": round(max(s[2] for s in samples), 3),
        "cpu_cores_during_load": cpu,  # CPU seconds per second of load, per process
        "daemon_progress_during_load": progress,
        "backlog_at_load_end_txns": max(0, end_seq - seq1),
        "catch_up_s": round(catch_up_s, 3),
        "final_source_gtid": str(final_text),
        "timeline": timeline,  # [seconds into the load, bench lag, daemon's lag_s]
    }
