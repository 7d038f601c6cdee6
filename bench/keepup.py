"""Apply keep-up under a write load (spec section 10: lag < 2 s), and the measurement it shares.

:func:`bench_keepup`: a move of one sysbench table is started with ``postpone_cutover = true``: once
copied and caught up it stays in COPYING, streaming and applying, until released on its control
socket. Then ``sysbench oltp_write_only`` (one unthrottled connection by default) writes to the table
for a fixed time while the bench samples the source's position (every :data:`SOURCE_SAMPLE_S`) and
the applied position (every ``sample_s``).

:func:`measure_load` is that measurement for any :class:`Load` and any :class:`Applier`: the daemon
(:class:`DaemonApplier`, its committed ``applied_gtid`` from ``status`` on the control socket) or a
native MariaDB replica (:mod:`bench.native`, its ``@@gtid_slave_pos``). Both are judged by the same
code against the same source samples:

* Lag at a sample taken at time t whose applied position has sequence number a is t minus the time
  of the newest source sample whose position a covers (0 when the newest source sample is covered):
  the age of the oldest source transaction not yet applied, too high by at most one source sampling
  interval. It is the definition the daemon uses for its own ``lag_s`` (also recorded), computed
  independently of the daemon's code.
* Catch-up is the time from the load's end until the applied position covers the source's
  ``@@gtid_binlog_pos`` read right after that end (which includes the last write of the load).
* The keep-up ratio is the transactions applied during the load over those committed during it (the
  source's and the applier's positions read just before the load starts and just after it ends).
* ``apply_events_per_s_to_catch_up``: events applied from the load's start until caught up, over
  that time (the daemon only): the apply rate while there is work, whether or not the load outran it.
"""

from __future__ import annotations

import bisect
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loadkit import SysbenchRun, parse_sysbench, sysbench_cmd, sysbench_prepare

from bench.common import (
    MSG_CAUGHT_UP,
    MSG_POSTPONED,
    MSG_STATE_CHANGED,
    TABLE,
    BenchError,
    Daemon,
    Position,
    ServerKeys,
    check_equal,
    control,
    covers,
    gtid_pos,
    machine_cpu,
    parse_position,
    percentile,
    process_cpu_s,
    process_runqueue_wait_s,
    rate,
    socket_path,
    status,
    total_seq,
    write_config,
)
from tablemover.local.mariadb import LocalMariaDB, LocalPair, root_connection

DB = "bench_keepup"
SOURCE_SAMPLE_S = 0.05
SETTLE_TIMEOUT_S = 300.0  # copy + first catch-up before the load starts
CATCH_UP_TIMEOUT_S = 300.0  # after the load: not catching up within this is a broken applier
CUTOVER_TIMEOUT_S = 120.0
LAG_TARGET_S = 2.0
MIN_DRAIN_S = 0.5  # a shorter catch-up is too short to time an apply rate on


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


# --- what applies, what loads -------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """One reading of an applier: its applied position and, where it has them, its own counters."""

    position: Position
    events: int | None = None  # events applied so far (the daemon's events_applied)
    own_lag_s: float | None = None  # the applier's own idea of its lag (the daemon's lag_s)


class Applier(Protocol):
    """Something that applies the source's binlog elsewhere: the daemon, or a native replica."""

    def applied(self) -> Applied:
        """Its applied position now; raises :class:`BenchError` when it has died or stopped."""
        ...

    def pids(self) -> dict[str, int]:
        """Its processes by name (for the CPU shares and run-queue waits of a load)."""
        ...


class Load(Protocol):
    """A write load on the source that runs for a bounded time."""

    name: str  # its key in cpu_cores_during_load
    in_process: bool  # runs as threads of the bench process (its CPU is then part of "bench")

    def start(self) -> None:
        """Start writing (returns at once)."""
        ...

    def finished(self) -> bool:
        """Whether it has ended (for any reason); never blocks."""
        ...

    def kill(self) -> None:
        """Stop it now (a failure elsewhere)."""
        ...

    def cpu_s(self) -> float:
        """CPU seconds it used (valid once finished)."""
        ...

    def report(self) -> dict[str, Any]:
        """``transactions`` and ``tps`` as the load counted them, plus anything else worth keeping;
        raises :class:`BenchError` when the load failed."""
        ...


def daemon_status(daemon: Daemon, sock: str) -> dict[str, Any]:
    """The daemon's status; a daemon that died or stopped answering is a :class:`BenchError`."""
    reply = status(sock)
    if reply is None:
        if daemon.poll() is not None:
            raise BenchError(f"tablemover run exited {daemon.returncode}:\n{daemon.tail()}")
        raise BenchError("the daemon did not answer `status` on its control socket")
    return reply


class DaemonApplier:
    """The running ``tablemover run`` daemon, read through ``status`` on its control socket."""

    def __init__(self, daemon: Daemon, sock: str, target: LocalMariaDB) -> None:
        self.daemon, self.sock, self.target = daemon, sock, target

    def applied(self) -> Applied:
        """Its committed ``applied_gtid``, ``events_applied`` and ``lag_s``."""
        st = daemon_status(self.daemon, self.sock)
        return Applied(
            parse_position(str(st.get("applied_gtid", ""))),
            int(st.get("events_applied", 0)),
            float(st.get("lag_s", 0.0)),
        )

    def pids(self) -> dict[str, int]:
        """The daemon and the target server."""
        return {"daemon": self.daemon.pid, "target_mariadbd": _pid(self.target)}

    def progress(self, since: float, until: float) -> list[dict[str, Any]]:
        """The daemon's own 5-second ``progress`` lines between two ``time.time()`` instants.

        ``backlog`` is its writer's inbox: near 0 while the lag grows means the stream side, not the
        target writes, is what limits the apply.
        """
        keys = ("events_per_s", "commits_per_s", "rows_written_per_s", "backlog", "lag_s")
        return [
            {k: line.get(k) for k in keys}
            for line in self.daemon.lines()
            if line.get("msg") == "progress" and since <= float(line.get("ts", 0)) <= until
        ]


class SysbenchLoad:
    """A :class:`Load` that is one ``sysbench ... run``."""

    name = "sysbench"
    in_process = False

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.run = SysbenchRun(cmd, log_path)

    def start(self) -> None:
        """Start sysbench."""
        self.run.start()

    def finished(self) -> bool:
        """Whether sysbench has exited (reaped)."""
        return self.run.poll() is not None

    def kill(self) -> None:
        """SIGKILL sysbench."""
        self.run.kill()

    def cpu_s(self) -> float:
        """sysbench's CPU seconds (from ``wait4``)."""
        return self.run.cpu_s

    def report(self) -> dict[str, Any]:
        """sysbench's own totals; a non-zero exit is a :class:`BenchError`."""
        if self.run.returncode != 0:
            raise BenchError(f"sysbench run exited {self.run.returncode}:\n{self.run.output()[-1500:]}")
        parsed = parse_sysbench(self.run.output())
        return {
            "transactions": parsed["transactions"],
            "tps": parsed["tps"],
            "source_tps_per_second": parsed["tps_per_second"],
        }


def _pid(server: LocalMariaDB) -> int:
    return server.process.pid if server.process is not None else -1


def _self_cpu_s() -> float:
    """CPU seconds of this process (the bench: samplers, and a Python load generator if any)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the measurement ----------------------------------------------------------------------------


def measure_load(
    pair: LocalPair,
    load: Load,
    applier: Applier,
    sample_s: float,
    catch_up_timeout_s: float = CATCH_UP_TIMEOUT_S,
) -> dict[str, Any]:
    """Run ``load`` against the source while ``applier`` applies it; lag through it, catch-up after
    it, keep-up ratio and rates (see the module doc for every definition)."""
    source = pair.source
    sampler = SourceSampler(source.socket).start()
    samples: list[tuple[float, int, float | None, int | None]] = []  # (t, applied seq, own lag, events)
    try:
        time.sleep(2 * SOURCE_SAMPLE_S)  # a covered source sample exists before the first lag sample
        start_pos = parse_position(gtid_pos(source))
        at_start = applier.applied()
        pids = {**applier.pids(), "source_mariadbd": _pid(source)}
        cpu_before = {**{k: process_cpu_s(p) for k, p in pids.items()}, "bench": _self_cpu_s()}
        wait_before = {k: process_runqueue_wait_s(p) for k, p in pids.items()}
        machine_before = machine_cpu()
        load_start = time.time()
        load.start()
        try:
            next_sample = time.monotonic()
            # Checked every few ms so that the catch-up clock starts when the load really ends.
            while not load.finished():
                if time.monotonic() >= next_sample:
                    next_sample += sample_s
                    got = applier.applied()
                    samples.append((time.time(), total_seq(got.position), got.own_lag_s, got.events))
                time.sleep(0.005)
            load_end = time.time()
            machine_after = machine_cpu()
            cpu_after = {**{k: process_cpu_s(p) for k, p in pids.items()}, "bench": _self_cpu_s()}
            wait_after = {k: process_runqueue_wait_s(p) for k, p in pids.items()}
            final_text = gtid_pos(source)
            final = parse_position(final_text)
            at_end = applier.applied()
            report = load.report()
        finally:
            load.kill()  # a no-op once it has ended; a failure above must not leave it writing

        # Catch-up: poll faster than during the load, the figure is a duration.
        deadline = time.monotonic() + catch_up_timeout_s
        while True:
            got = applier.applied()
            if covers(got.position, final):
                caught_at = time.time()
                caught = got
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the applier did not apply through {final_text} within {catch_up_timeout_s:.0f} s "
                    f"after the load stopped (applied {got.position})"
                )
            time.sleep(0.01)
    finally:
        sampler.stop()

    lags: list[float] = []
    timeline: list[list[float | None]] = []
    for t, seq, own_lag, _events in samples:
        lag = sampler.lag_at(t, seq)
        if lag is not None:
            lags.append(lag)
            timeline.append([round(t - load_start, 2), round(lag, 3), own_lag and round(own_lag, 3)])
    if not lags:
        raise BenchError("no lag sample could be computed")
    load_s = load_end - load_start
    cpu = {k: round(rate(cpu_after[k] - cpu_before[k], load_s), 2) for k in cpu_before}
    cpu[load.name] = round(rate(load.cpu_s(), load_s), 2)
    if load.in_process:  # "bench" is then the rest of the bench process (samplers, status polls)
        cpu["bench"] = round(max(0.0, cpu["bench"] - cpu[load.name]), 2)
    busy, total = (after - before for after, before in zip(machine_after, machine_before, strict=True))
    cores = os.cpu_count() or 1
    # Cores the whole machine was busy, and the part of it none of the processes above account for
    # (on a shared machine: someone else's work, which the figures then depend on).
    cpu["machine_busy"] = round(rate(busy, total) * cores, 2)
    cpu["other"] = round(
        max(0.0, cpu["machine_busy"] - sum(v for k, v in cpu.items() if k != "machine_busy")), 2
    )
    committed = total_seq(final) - total_seq(start_pos)
    applied_during = total_seq(at_end.position) - total_seq(at_start.position)
    out: dict[str, Any] = {
        "load_s": round(load_s, 3),
        "source_tps": report["tps"],
        "source_transactions": report["transactions"],
        **{k: v for k, v in report.items() if k not in ("tps", "transactions")},
        "committed_txns": committed,
        "committed_txn_per_s": round(rate(committed, load_s)),
        "applied_txns_during_load": applied_during,
        "applied_txn_per_s_during_load": round(rate(applied_during, load_s)),
        "keepup_ratio": round(rate(applied_during, committed), 3),
        "lag_samples": len(lags),
        "sample_interval_s": sample_s,
        "source_sample_interval_s": SOURCE_SAMPLE_S,
        "lag_max_s": round(max(lags), 3),
        "lag_p99_s": round(percentile(lags, 99), 3),
        "lag_p50_s": round(percentile(lags, 50), 3),
        "lag_at_load_end_s": round(lags[-1], 3),
        "backlog_at_load_end_txns": max(0, total_seq(final) - total_seq(at_end.position)),
        "catch_up_s": round(caught_at - load_end, 3),
        "final_source_gtid": str(final_text),
        "cpu_cores_during_load": cpu,  # CPU seconds per second of load, per process
        # Seconds per second of load that the process's threads were runnable but had no core
        # (summed over its threads): high next to a low CPU share means starved, not idle.
        "runqueue_wait_per_s": {k: round(rate(wait_after[k] - wait_before[k], load_s), 2) for k in pids},
        "timeline": timeline,  # [seconds into the load, bench lag, the applier's own lag]
    }
    # The applied rate between the first and the last sample of the load (the older figure; the
    # keep-up ratio above is the one that compares with the committed rate).
    out["applied_txn_per_s"] = out["applied_txn_per_s_during_load"]
    if len(samples) >= 2:
        (t0, seq0, _, _), (t1, seq1, _, _) = samples[0], samples[-1]
        out["applied_txn_per_s"] = round(rate(seq1 - seq0, t1 - t0))
    if at_start.events is not None and caught.events is not None:
        out["events_applied_before_load"] = at_start.events
        out["events_applied"] = caught.events - at_start.events
        out["apply_events_per_s_to_catch_up"] = round(
            rate(caught.events - at_start.events, caught_at - load_start)
        )
        if at_end.events is not None and caught_at - load_end >= MIN_DRAIN_S:
            # The backlog left at the load's end, applied with no load competing for the CPU: the
            # apply rate that compares across loads (see README "Realistic schema").
            out["apply_events_per_s_after_load"] = round(
                rate(caught.events - at_end.events, caught_at - load_end)
            )
        if len(samples) >= 2 and samples[0][3] is not None and samples[-1][3] is not None:
            (t0, _, _, ev0), (t1, _, _, ev1) = samples[0], samples[-1]
            out["applied_events_per_s"] = round(rate((ev1 or 0) - (ev0 or 0), t1 - t0))
    own = [s[2] for s in samples if s[2] is not None]
    if own:
        out["daemon_lag_max_s"] = round(max(own), 3)
    if isinstance(applier, DaemonApplier):
        out["daemon_progress_during_load"] = applier.progress(load_start, load_end)
    return out


# --- a move held before its cutover -------------------------------------------------------------


def wait_postponed(daemon: Daemon, timeout_s: float, what: str) -> None:
    """Wait until the daemon logs that it holds the cutover (copied and caught up)."""
    deadline = time.monotonic() + timeout_s
    while daemon.find(MSG_POSTPONED, prefix=True) is None:
        if daemon.poll() is not None:
            raise BenchError(f"{what}: tablemover run exited {daemon.returncode} early:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not copied and caught up within {timeout_s:.0f} s:\n{daemon.tail()}")
        time.sleep(0.05)


def release_cutover(daemon: Daemon, sock: str, what: str) -> None:
    """Release the held cutover (control socket) and wait for the daemon to finish with exit 0."""
    if (control(sock, "cutover") or {}).get("ok") is not True:
        raise BenchError(f"{what}: the daemon refused `cutover`:\n{daemon.tail()}")
    rc = daemon.wait(CUTOVER_TIMEOUT_S)
    if rc != 0:
        raise BenchError(f"{what}: tablemover run exited {rc} after the cutover release:\n{daemon.tail()}")


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
    source.execute(*DURABILITY[durability])
    try:
        figures = sysbench_move(pair, workdir, sysbench, db, rows, seconds, sample_s)
    finally:
        source.execute(*DURABILITY["relaxed"])  # the other parts expect the throwaway settings
    return {"durability": durability, "source_settings": list(DURABILITY[durability]), **figures}


def sysbench_move(
    pair: LocalPair,
    workdir: Path,
    sysbench: str,
    db: str,
    rows: int,
    seconds: int,
    sample_s: float,
    *,
    threads: int = 1,
    seed: int = 0,
    server_keys: ServerKeys | None = None,
    on_caught_up: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Move a fresh ``rows``-row sysbench table of schema ``db`` and measure its apply under
    ``seconds`` of unthrottled ``oltp_write_only`` from ``threads`` connections; then release the
    cutover and check that the target equals the renamed source table.

    ``server_keys`` go into both server sections of the move's config (the ``tls`` part's TLS keys);
    ``on_caught_up`` is given the daemon's ``status`` once it holds the cutover, before the load
    (the ``tls`` part checks each connection's TLS state there)."""
    source = pair.source
    source.execute(f"CREATE DATABASE `{db}`")
    cmd = sysbench_cmd(sysbench, source.socket, db, rows, seconds, threads=threads, seed=seed)
    sysbench_prepare(cmd, db)
    config = write_config(pair, workdir, db, db, [TABLE], server_keys=server_keys, postpone_cutover=True)
    sock = socket_path(workdir, db)
    daemon = Daemon(config, workdir / f"{db}.log").start()
    try:
        wait_postponed(daemon, SETTLE_TIMEOUT_S, db)
        if on_caught_up is not None:
            on_caught_up(daemon_status(daemon, sock))
        copying = daemon.first(MSG_STATE_CHANGED, state="COPYING")
        caught_up = daemon.first(MSG_CAUGHT_UP)
        load = SysbenchLoad(cmd, workdir / f"sysbench-{db}.log")
        try:
            measured = measure_load(pair, load, DaemonApplier(daemon, sock, pair.target), sample_s)
        except BenchError as exc:
            raise BenchError(f"{db}: {exc}\n{daemon.tail()}") from exc
        # Release the held cutover: it renames the source table away, drains and finishes.
        release_cutover(daemon, sock, db)
    finally:
        daemon.kill()  # no-op once it has exited; a failure above must not leave it running
    verified = check_equal(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), f"after the {db} move")
    return {
        "table_rows": rows,
        "load": f"sysbench oltp_write_only, 1 table, --threads={threads} --rate=0, {seconds} s"
        + (f", --rand-seed={seed}" if seed else ""),
        "copy_s": round(float(caught_up["ts"]) - float(copying["ts"]), 3),
        **measured,
        "verified_rows": verified,
        "peak_rss_mb": daemon.peak_rss_mb,
        "lag_target_s": LAG_TARGET_S,
    }
