"""Benchmark tablemover against same-run references and the spec's targets (spec section 10).

Run as ``.venv/bin/python -m bench.run [--rows N] [--out FILE] ...`` (``--help`` lists the knobs). It
starts its own private source and target ``mariadbd`` under a temporary directory (never the system
server), measures, writes JSON and prints a table. Ratio figures are paired with a reference taken in
the same run on the same servers, so they are comparable across machines while absolute rates are not:

* ``copy``: rows/s of ``tablemover run`` copying a sysbench-shaped table with no concurrent writes,
  against the target server's own ``INSERT INTO t2 SELECT * FROM t1`` rate for the same rows.
* ``binlog``: events/s that ``tablemover run`` parses *and applies* from a backlog of small
  transactions, against a bare mysql-replication reader that only parses the same events.

Figures measured against an absolute target of the spec:

* ``keepup`` (:mod:`bench.keepup`): apply lag under a saturating one-connection sysbench write load,
  and the catch-up time after it.
* ``realistic`` (:mod:`bench.realistic`): on tables shaped like users' (composite key, DECIMAL,
  DATETIME(6), JSON, BLOB, ENUM, SET, a UNIQUE key): the copy ratio against ``INSERT ... SELECT``,
  the apply rate of a backlog of mixed traffic against that of a sysbench backlog, and the lag under
  light and heavy traffic.
* ``native`` (:mod:`bench.native`): keep-up and catch-up under 4-thread sysbench, tablemover against
  native MariaDB replication of the same table under the same load.
* ``outage`` (:mod:`bench.outage`): cutover outage percentiles over several moves under write load;
  and (:mod:`bench.rollback`, ``rollback_outage``) the rollback outage of moves with a rollback window,
  rolled back under the same load on the target, with the forward outage of the same moves beside it.
* ``heldlock`` (:mod:`bench.heldlock`): the application's longest query during a cutover released
  while another session holds a row lock on the moved table.
* ``resume`` (:mod:`bench.resume`): SIGKILL to copying again, and rows copied twice.
* ``replica`` (:mod:`bench.replica`): a whole move with a target replica watched (issue #27): the
  replica's peak heartbeat lag during the copy against ``max_replica_lag_s`` plus one chunk time,
  and the whole-move time against the same move without a replica, same run.
* ``read_replica`` (:mod:`bench.read_replica`): reading from a replica of the source (issue #24): the
  primary's CPU and rows read during a move under write load, without and with ``[replica]``, and the
  cutover outage through the replica against the same without, same run.
* ``rss``: the daemon's peak RSS in the copy and keepup runs (and a large copy with ``--rss-rows``).
* ``machine``: what the numbers were measured on.

Benchmarks report; they do not judge. The exit status is non-zero only when a ``tablemover run``
fails or a moved table does not match its source afterwards (then the figures mean nothing); the other
parts still run and the JSON names the failed part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql
from loadkit import create_sbtest_sql, ensure_sysbench, fill_sbtest_sql

from bench import tls as tlsbench
from bench.common import (
    BenchError,
    stop_all_daemons,
)
from bench.common import rate as _rate
from bench.copyapply import bench_binlog, timed_copy
from bench.heldlock import bench_heldlock
from bench.keepup import bench_keepup
from bench.native import bench_native
from bench.outage import bench_outage
from bench.read_replica import bench_read_replica
from bench.realistic import HEAVY_TARGET_RATIO, bench_realistic
from bench.replica import bench_replica
from bench.resume import bench_resume
from bench.rollback import bench_rollback
from bench.wholemove import bench_wholemove
from tablemover.local.mariadb import (
    LocalPair,
    grant_mover,
    start_pair,
)

DEFAULT_ROWS = 200_000
DEFAULT_OUT = "bench-results/bench.json"
DEFAULT_BINLOG_ROWS = 20_000
DEFAULT_TRANSACTIONS = 20_000
DEFAULT_KEEPUP_SECONDS = 20
DEFAULT_KEEPUP_ROWS = 100_000
DEFAULT_SAMPLE_S = 0.1  # 10 lag samples a second: enough that p99 over 20 s is not just the maximum
DEFAULT_CUTOVERS = 10
DEFAULT_CUTOVER_ROWS = 5_000
DEFAULT_CUTOVER_WRITE_RATE = 200
DEFAULT_ROLLBACKS = 5  # each about 3 s: a move, its window, 1 s of target writes, the rollback
DEFAULT_RESUMES = 3
DEFAULT_RESUME_ROWS = 500_000
DEFAULT_REALISTIC_ROWS = 100_000  # order lines; customers get half as many
DEFAULT_REALISTIC_LIGHT_S = 10
DEFAULT_REALISTIC_LIGHT_RATE = 20
DEFAULT_REALISTIC_HEAVY_S = 8
DEFAULT_REALISTIC_HEAVY_THREADS = 2
DEFAULT_REALISTIC_HEAVY_MAX_TXNS = 200_000
DEFAULT_NATIVE_SECONDS = 20
DEFAULT_NATIVE_ROWS = 100_000
DEFAULT_NATIVE_THREADS = 4
DEFAULT_NATIVE_SEED = 7  # sysbench --rand-seed: both runs draw the same keys and values
DEFAULT_HELDLOCK_HOLD_S = 5.0
DEFAULT_HELDLOCK_RELEASE_AFTER_S = 2.0
DEFAULT_HELDLOCK_ROWS = 20_000
DEFAULT_HELDLOCK_RATE = 200
DEFAULT_PROBE_INTERVAL_S = 0.005
DEFAULT_TLS_ROUNDS = tlsbench.DEFAULT_ROUNDS
DEFAULT_TLS_COPY_ROWS = tlsbench.DEFAULT_COPY_ROWS
DEFAULT_TLS_TRANSACTIONS = tlsbench.DEFAULT_TRANSACTIONS
DEFAULT_TLS_KEEPUP_ROUNDS = tlsbench.DEFAULT_KEEPUP_ROUNDS
DEFAULT_TLS_KEEPUP_SECONDS = tlsbench.DEFAULT_KEEPUP_SECONDS
# BENCH_QUICK=1 (or --quick): every long part shortened, for a check that the bench runs (~2 min);
# the figures are then noisier and not what docs/benchmarks.md records.
QUICK = {
    "keepup_seconds": 8,
    "cutovers": 5,
    "rollbacks": 3,
    "resumes": 2,
    "resume_rows": 200_000,
    "realistic_rows": 20_000,
    "realistic_light_seconds": 5,
    "realistic_heavy_seconds": 5,
    "native_seconds": 8,
    "native_rows": 50_000,
    "tls_rounds": 2,
    "tls_copy_rows": 100_000,
    "tls_transactions": 10_000,
    "tls_keepup_rounds": 1,
    "tls_keepup_seconds": 5,
    "wholemove_rows": 100_000,
    "wholemove_realistic_rows": 20_000,
    "wholemove_threads": "1,4",
    "replica_rows": 100_000,
    "read_replica_rows": 100_000,
    "read_replica_cutovers": 3,
}
SCHEMA_GRANT = "bench\\_%"  # every schema the benchmark creates starts with bench_
COPY_TARGET_RATIO = 0.6
RSS_TARGET_MB = 250
RSS_TARGET_ROWS = 10_000_000
RSS_COPY_THREADS = 8


# --- measurements -------------------------------------------------------------------------------


def bench_copy(pair: LocalPair, workdir: Path, rows: int) -> dict[str, Any]:
    """Copy rate of ``tablemover run`` vs the target's own ``INSERT ... SELECT`` of the same rows."""
    ref_db = "bench_ref"

    # Reference: the target server copying the same rows table-to-table, with nothing in between.
    pair.target.execute(
        f"CREATE DATABASE `{ref_db}`",
        f"USE `{ref_db}`",
        create_sbtest_sql("t1"),
        create_sbtest_sql("t2"),
        fill_sbtest_sql("t1", rows),
    )
    conn = pair.target.admin(ref_db)
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute("INSERT INTO t2 SELECT * FROM t1")
            reference_s = time.perf_counter() - started
    finally:
        conn.close()
    pair.target.execute(f"DROP DATABASE `{ref_db}`")  # free the buffer pool for the measured copy

    # Measured: a move of the same rows, source -> target, no concurrent writes.
    measured = timed_copy(pair, workdir, "bench_copy", rows)
    reference_rows_per_s = _rate(rows, reference_s)
    return {
        **measured,
        "reference_s": round(reference_s, 3),
        "reference_rows_per_s": round(reference_rows_per_s),
        "ratio": round(_rate(measured["rows_per_s"], reference_rows_per_s), 3),
        "target_ratio": COPY_TARGET_RATIO,
    }


def bench_rss_large(pair: LocalPair, workdir: Path, rows: int) -> dict[str, Any]:
    """Peak RSS of the daemon copying ``rows`` rows (``--rss-rows``; the spec's figure is for 10M) with
    8 copy streams: each holds a chunk in flight, so the bound has to hold with all of them."""
    return {
        **timed_copy(pair, workdir, "bench_rss", rows, copy_threads=RSS_COPY_THREADS),
        "copy_threads": RSS_COPY_THREADS,
        "target_mb": RSS_TARGET_MB,
    }


def _loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: on a shared machine, whether someone else was busy."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info(pair: LocalPair) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total_mb: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_mb = round(int(line.split()[1]) / 1024)
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mb": mem_total_mb,
        "python": platform.python_version(),
        "mariadbd": str(pair.source.execute("SELECT VERSION()")[0][0]),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# --- report -------------------------------------------------------------------------------------


PARTS = (
    "copy",
    "wholemove",
    "replica",
    "read_replica",
    "binlog",
    "keepup",
    "realistic",
    "native",
    "outage",
    "heldlock",
    "resume",
    "rss",
    "tls",
)


def _unavailable(section: dict[str, Any] | None) -> str | None:
    """Why a part has no figures ('not run', 'FAILED', 'skipped: ...'), or None when it has some."""
    if section is None:
        return "skipped"
    if "error" in section:
        return "FAILED (see the JSON)"
    if "skipped" in section:
        return f"skipped: {section['skipped']}"
    return None


def _table_rows(results: dict[str, Any]) -> list[Row]:
    """(benchmark, measured, reference or context, ratio, target) for every part."""
    rows: list[Row] = []
    copy, binlog = results.get("copy"), results.get("binlog")
    outage, resume, rss = (results.get(k) for k in ("outage", "resume", "rss"))

    def missing(name: str, section: dict[str, Any] | None) -> bool:
        why = _unavailable(section)
        if why is not None:
            rows.append((name, why, "", "", ""))
        return why is not None

    if not missing("copy", copy):
        assert copy is not None
        rows.append(
            (
                "copy",
                f"{copy['rows_per_s']:,} rows/s",
                f"{copy['reference_rows_per_s']:,} rows/s INSERT..SELECT",
                f"{copy['ratio']:.3f}",
                f">= {copy['target_ratio']}",
            )
        )
    rows.extend(_wholemove_rows(results.get("wholemove")))
    rows.extend(_replica_rows(results.get("replica")))
    rows.extend(_read_replica_rows(results.get("read_replica")))
    if not missing("binlog", binlog):
        assert binlog is not None
        rows.append(
            (
                "binlog",
                f"{binlog['apply_events_per_s']:,} events/s",
                f"{binlog['parse_only_events_per_s']:,} events/s parse-only",
                f"{binlog['ratio']:.3f}",
                f">= {binlog['target_ratio']}",
            )
        )
    for section, label in (("keepup", "durable"), ("keepup_relaxed", "relaxed")):
        part = results.get(section)
        if part is None and section == "keepup_relaxed":
            continue
        if missing(f"keepup lag ({label})", part):
            continue
        assert part is not None
        rows.append(
            (
                f"keepup lag ({label})",
                f"max {part['lag_max_s']:.2f} s, p99 {part['lag_p99_s']:.2f} s",
                f"source {part['source_tps']:,.0f} tps, applied {part['applied_txn_per_s']:,} txn/s",
                "-",
                f"< {part['lag_target_s']:g} s",
            )
        )
        rows.append(
            (f"catch-up ({label})", f"{part['catch_up_s']:.2f} s", "after the load stopped", "-", "-")
        )
    rows.extend(_realistic_rows(results.get("realistic"), missing))
    rows.extend(_native_rows(results.get("native"), missing))
    if not missing("cutover outage", outage):
        assert outage is not None
        p99 = "p99 (= max)" if outage["cutovers"] < 100 else "p99"
        rows.append(
            (
                "cutover outage",
                f"p50 {outage['p50_ms']} ms, {p99} {outage['p99_ms']} ms",
                f"{outage['cutovers']} cutover{'' if outage['cutovers'] == 1 else 's'}, "
                f"min {outage['min_ms']} ms",
                "-",
                f"p50 < {outage['p50_target_ms']} ms, p99 < {outage['p99_target_ms']} ms",
            )
        )
    rows.extend(_rollback_rows(results.get("rollback_outage"), missing))
    if outage is not None and _unavailable(outage) is None:
        gate = outage.get("gate_s_per_million_rows_median")
        rows.append(
            (
                "checksum before cutover",
                f"{gate} s per million rows" if gate is not None else "not run",
                "median over the cutover runs, under their write load",
                "-",
                "before the intent: adds no outage",
            )
        )
    rows.extend(_heldlock_rows(results.get("heldlock"), missing))
    rows.extend(_tls_rows(results.get("tls"), missing))
    if not missing("resume", resume):
        assert resume is not None
        rows.append(
            (
                "resume",
                f"median {resume['median_s']:.2f} s, max {resume['max_s']:.2f} s",
                f"{resume['resumes']} SIGKILLs, startup median {resume['startup_median_s']:.2f} s",
                "-",
                f"< {resume['target_s']:g} s",
            )
        )
        rows.append(
            (
                "re-copied rows",
                f"{resume['re_copied_rows_max']:,} (max a kill)",
                "",
                "-",
                "<= 1 chunk a table",
            )
        )
    if not missing("peak RSS", rss):
        assert rss is not None
        for label, key in (
            ("peak RSS copy", "copy"),
            ("peak RSS keepup", "keepup"),
            ("peak RSS large", "large"),
        ):
            part = rss.get(key)
            if part:
                applied = part.get("transactions_applied")
                rows.append(
                    (
                        label,
                        f"{part['peak_rss_mb']:.0f} MB",
                        f"{part['rows']:,} rows" + (f" + {applied:,} txns applied" if applied else ""),
                        "-",
                        f"< {rss['target_mb']} MB @ {rss['target_rows']:,} rows",
                    )
                )
    return rows


Row = tuple[str, str, str, str, str]


def _rollback_rows(back: dict[str, Any] | None, missing: Callable[[str, Any], bool]) -> list[Row]:
    """The table row of the rollback outage, beside the forward outage of the same moves."""
    if missing("rollback outage", back):
        return []
    assert back is not None
    n = back["rollbacks"]
    p99 = "p99 (= max)" if n < 100 else "p99"
    return [
        (
            "rollback outage",
            f"p50 {back['p50_ms']} ms, {p99} {back['p99_ms']} ms",
            f"{n} rollback{'' if n == 1 else 's'}; forward outage of the same moves p50 "
            f"{back['forward_p50_ms']} ms, max {back['forward_max_ms']} ms",
            "-",
            f"p50 < {back['p50_target_ms']} ms, p99 < {back['p99_target_ms']} ms",
        )
    ]


def _realistic_rows(real: dict[str, Any] | None, missing: Callable[[str, Any], bool]) -> list[Row]:
    """Table rows of the realistic-schema part."""
    if missing("realistic schema", real):
        return []
    assert real is not None
    copy, light, heavy = real["copy"], real["light"], real["heavy"]
    rows: list[Row] = [
        (
            "realistic copy",
            f"{copy['rows_per_s']:,} rows/s",
            f"{copy['reference_rows_per_s']:,} rows/s INSERT..SELECT",
            f"{copy['ratio']:.3f}",
            f">= {copy['target_ratio']}",
        ),
        (
            "realistic light lag",
            f"max {light['lag_max_s']:.2f} s, p99 {light['lag_p99_s']:.2f} s",
            f"{light['source_tps']:,.0f} mixed txn/s, 1 connection",
            "-",
            f"< {light['lag_target_s']:g} s",
        ),
    ]
    vs, backlog = real["heavy_vs_sysbench"], real["heavy_backlog"]
    rows.append(
        (
            "realistic heavy apply",
            f"{backlog['apply_events_per_s']:,} events/s",
            f"{vs['sysbench_events_per_s']:,} events/s sysbench, same drain"
            if "ratio" in vs
            else vs.get("skipped", ""),
            f"{vs['ratio']:.3f}" if "ratio" in vs else "-",
            f">= {HEAVY_TARGET_RATIO}",
        )
    )
    rows.append(
        (
            "realistic heavy lag",
            f"max {heavy['lag_max_s']:.2f} s, p99 {heavy['lag_p99_s']:.2f} s",
            f"{heavy['source_tps']:,.0f} mixed txn/s, {heavy['threads']} connections, live",
            "-",
            "-",
        )
    )
    return rows


def _native_rows(native: dict[str, Any] | None, missing: Callable[[str, Any], bool]) -> list[Row]:
    """Table rows of the tablemover-vs-native-replication part."""
    if missing("keep-up vs native", native):
        return []
    assert native is not None
    tm, nat = native["tablemover"], native["native"]
    return [
        (
            "keep-up vs native",
            f"tablemover {tm['keepup_ratio']:.3f}",
            f"native {nat['keepup_ratio']:.3f} ({tm['committed_txn_per_s']:,} / "
            f"{nat['committed_txn_per_s']:,} txn/s committed)",
            f"{native['keepup_vs_native']:.3f}",
            f">= {native['vs_native_target']} of native",
        ),
        (
            "catch-up vs native",
            f"tablemover {tm['catch_up_s']:.2f} s",
            f"native {nat['catch_up_s']:.2f} s",
            "-",
            f"< {native['catch_up_target_s']:g} s",
        ),
    ]


def _tls_rows(part: dict[str, Any] | None, missing: Callable[[str, Any], bool]) -> list[Row]:
    """Table rows of the TLS part: each figure over TLS, the plain one of the same run, the ratio."""
    if part is None or missing("TLS vs plain", part):
        return []
    rows: list[Row] = []
    figures = (
        ("copy over TLS", "copy", "rows_per_s", "rows/s"),
        ("apply over TLS", "binlog", "apply_events_per_s", "events/s"),
        ("parse-only over TLS", "binlog", "parse_only_events_per_s", "events/s"),
        ("keep-up over TLS", "keepup", "committed_txn_per_s", "txn/s kept up with"),
        ("keep-up CPU over TLS", "keepup", "daemon_cpu_us_per_txn", "us daemon CPU/txn"),
    )
    for label, section, key, unit in figures:
        got = part.get(section, {}).get(key)
        if got is None:
            continue
        n = part[section]["rounds"]
        rows.append(
            (
                label,
                f"{got['tls_median']:,.0f} {unit}",
                f"plain {got['plain_median']:,.0f}, medians of {n} + {n} alternated; "
                f"round ratios' median {got['round_ratio_median']:.3f}",
                f"{got['ratio_tls_plain']:.3f}",
                "TLS / plain",
            )
        )
    return rows


def _heldlock_rows(held: dict[str, Any] | None, missing: Callable[[str, Any], bool]) -> list[Row]:
    """Table rows of the held-lock cutover part."""
    if missing("held-lock cutover", held):
        return []
    assert held is not None
    probe, sb = held["probe"], held["sysbench"]
    return [
        (
            "held-lock cutover",
            f"app max wait {held['app_max_wait_ms']} ms",
            f"probe {probe['max_ms_in_window']} ms, sysbench {sb['max_latency_ms_in_window']} ms; "
            f"lock held {held['hold_s']:g} s",
            "-",
            f"<= {held['max_wait_target_ms']} ms",
        ),
        (
            "held-lock outage",
            f"{held['outage_ms']} ms, {held['rename_attempts']} RENAME",
            f"lock wait {held['lock_wait_ms']} ms, blocker via {held['blocker_method']}",
            "-",
            "-",
        ),
    ]


def format_table(results: dict[str, Any]) -> str:
    """A short aligned summary of ``results``."""
    rows = [("benchmark", "measured", "reference / context", "ratio", "target"), *_table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i in (1, 3) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(_details(results))
    return "\n".join(lines)


def _wholemove_rows(part: dict[str, Any] | None) -> list[Row]:
    """Two rows per copy_threads value: the whole move and its copy phase, vs INSERT ... SELECT."""
    if part is None:
        return []
    why = _unavailable(part)
    if why is not None:
        return [("whole move", why, "", "", "")]
    out: list[Row] = []
    reference = f"{part['reference_rows_per_s']:,} rows/s INSERT..SELECT"
    for run in part["runs"]:
        n, rows = run["copy_threads"], run["rows"]
        n = f"{n}{'' if run['checksum_during_copy'] else ', gate after'}"
        out.append(
            (
                f"whole move, {n} thr",
                f"{round(rows / run['end_to_end_s']):,} rows/s",
                reference,
                f"{run['end_to_end_ratio']:.3f}",
                f">= {part['targets']['end_to_end_ratio']}",
            )
        )
        out.append(
            (
                f"  copy phase, {n} thr",
                f"{round(rows / run['copy_phase_s']):,} rows/s",
                reference,
                f"{run['copy_ratio']:.3f}",
                f">= {part['targets']['copy_ratio']}",
            )
        )
    real = part.get("realistic")
    if real:
        reference = f"{real['reference_rows_per_s']:,} rows/s INSERT..SELECT"
        for run in real["runs"]:
            n, rows = run["copy_threads"], run["rows"]
            out.append(
                (
                    f"whole move, realistic, {n} thr",
                    f"{round(rows / run['end_to_end_s']):,} rows/s",
                    reference,
                    f"{run['end_to_end_ratio']:.3f}",
                    f">= {part['targets']['end_to_end_ratio']}",
                )
            )
            out.append(
                (
                    f"  copy phase, realistic, {n} thr",
                    f"{round(rows / run['copy_phase_s']):,} rows/s",
                    reference,
                    f"{run['copy_ratio']:.3f}",
                    f">= {part['targets']['copy_ratio']}",
                )
            )
    return out


def _replica_rows(part: dict[str, Any] | None) -> list[Row]:
    """The replica part: its peak lag during the copy against the limit plus one chunk, and the
    whole move's time against the same move without a replica."""
    if part is None:
        return []
    why = _unavailable(part)
    if why is not None:
        return [("target replica", why, "", "", "")]
    n = part["copy_threads"]
    peak = part["peak_lag_s"]
    return [
        (
            f"replica peak lag, {n} thr",
            "-" if peak is None else f"{peak:.2f} s (own read {part['own_peak_lag_s'] or 0:.2f} s)",
            f"max_replica_lag_s {part['max_replica_lag_s']:g} + chunk {part['chunk_s']:g} s",
            "-",
            f"<= {part['target_peak_lag_s']:g} s",
        ),
        (
            f"whole move with replica, {n} thr",
            f"{part['end_to_end_s']:.2f} s",
            f"{part['reference_end_to_end_s']:.2f} s without a replica (medians)",
            f"{part['cost_ratio']:.3f}",
            "(reported)",
        ),
    ]


def _read_replica_rows(part: dict[str, Any] | None) -> list[Row]:
    """The read-replica part: the primary's load with ``[replica]`` against without, and the cutover
    outage through the replica against without (medians / percentiles of the same run)."""
    if part is None:
        return []
    why = _unavailable(part)
    if why is not None:
        return [("read replica", why, "", "", "")]
    out: list[Row] = []
    load = part.get("load")
    if load:
        w, wo, ratio = load["with_replica"], load["without_replica"], load["ratios_with_without"]
        out.append(
            (
                "primary CPU, read replica",
                f"{w['primary_cpu_s']:.2f} s",
                f"{wo['primary_cpu_s']:.2f} s without [replica] ({load['rows']:,}-row move, writes)",
                f"{ratio['primary_cpu_s']:.3f}" if ratio["primary_cpu_s"] is not None else "-",
                "(reported)",
            )
        )
        out.append(
            (
                "primary rows read, read replica",
                f"{w['primary_table_rows_read']:,}",
                f"{wo['primary_table_rows_read']:,} without; replica read {w['replica_table_rows_read']:,}",
                f"{ratio['primary_table_rows_read']:.3f}"
                if ratio["primary_table_rows_read"] is not None
                else "-",
                "(reported)",
            )
        )
    outage = part.get("outage")
    if outage:
        w, wo = outage["with_replica"], outage["without_replica"]
        out.append(
            (
                "cutover outage, read replica",
                f"p50 {w['p50_ms']} ms, max {w['max_ms']} ms",
                f"without: p50 {wo['p50_ms']} ms, max {wo['max_ms']} ms ({w['cutovers']} + {wo['cutovers']})",
                "-",
                "p50 < 100 ms, p99 < 500 ms",
            )
        )
    return out


def _read_replica_details(part: dict[str, Any] | None) -> list[str]:
    if not part or _unavailable(part) is not None:
        return []
    out = []
    load = part.get("load")
    if load:
        for label in ("without_replica", "with_replica"):
            f = load[label]
            out.append(
                f"read replica load ({label.replace('_', ' ')}): move {f['wall_s']} s; primary CPU "
                f"{f['primary_cpu_s']} s ({f['primary_cpu_move_s']} s beyond the write load), rows read "
                f"{f['primary_table_rows_read']:,} (move user {f['primary_mover_rows_read']:,}); replica CPU "
                f"{f['replica_cpu_s']} s, rows read {f['replica_table_rows_read']:,} (move user "
                f"{f['replica_mover_rows_read']:,}); medians of {load['repeats']}"
            )
    outage = part.get("outage")
    if outage:
        for label in ("without_replica", "with_replica"):
            f = outage[label]
            lag = (
                f"; replica lag at the cutover p50 {f['lag_at_cutover_p50_s']} s, "
                f"max {f['lag_at_cutover_max_s']} s"
                if f["lag_at_cutover_max_s"] is not None
                else ""
            )
            out.append(
                f"read replica outage ({label.replace('_', ' ')}): ms {f['outage_ms']}, "
                f"drain ms {f['drain_ms']}, writer's view ms {f['app_blocked_ms']}{lag}"
            )
    return out


def _replica_details(part: dict[str, Any] | None) -> list[str]:
    if not part or _unavailable(part) is not None:
        return []
    out = []
    for run in part["runs"]:
        watched = "replica watched" if run["replica"] else "no replica"
        line = (
            f"replica: {run['rows']:,} rows, copy_threads {run['copy_threads']}, {watched}: "
            f"start to DONE {run['end_to_end_s']} s, copy {run['copy_phase_s']} s"
        )
        if run["replica"]:
            line += (
                f"; lag median {run['median_lag_s']} s, peak {run['peak_lag_s']} s in the copy "
                f"({run['peak_lag_whole_move_s']} s over the move); held the copy {run['held_copy_s']} s"
            )
        out.append(line)
    return out


def _gate_rate(run: dict[str, Any]) -> str:
    """The gate's rows/s when it ran alone; trailing the copy, its time at the cutover is the rest."""
    if run["gate_rows_per_s"] is None:
        return "the rest of the gate that trailed the copy"
    return f"{run['gate_rows_per_s']:,} rows/s alone"


def _wholemove_details(part: dict[str, Any] | None) -> list[str]:
    if not part or _unavailable(part) is not None:
        return []
    out = []
    for run in [*part["runs"], *part.get("realistic", {}).get("runs", [])]:
        out.append(
            f"wholemove {run['schema']} {run['copy_threads']} thr"
            f"{'' if run['checksum_during_copy'] else ' gate after copy'}: "
            f"{run['rows']:,} rows, "
            f"start to DONE {run['end_to_end_s']} s, "
            f"copy {run['copy_phase_s']} s, gate {run['gate_s']} s "
            f"({_gate_rate(run)}, "
            f"{run['gate_after_copy_s']} s after the copy); CPU s daemon {run['daemon_cpu_s']}, source "
            f"{run['source_cpu_s']}, target {run['target_cpu_s']}; peak RSS {run['peak_rss_mb']} MB"
        )
    return out


def _details(results: dict[str, Any]) -> list[str]:
    """One line of detail per part that has figures."""
    out: list[str] = []
    copy, binlog, machine = results.get("copy"), results.get("binlog"), results["machine"]
    outage, resume = results.get("outage"), results.get("resume")
    if copy and _unavailable(copy) is None:
        out.append(
            f"copy:    {copy['rows']:,} rows, copy phase {copy['copy_phase_s']} s "
            f"(run wall {copy['total_wall_s']} s), reference INSERT...SELECT {copy['reference_s']} s"
        )
    if binlog and _unavailable(binlog) is None:
        out.append(
            f"binlog:  {binlog['transactions']:,} txns written at {binlog['source_write_tps']:,} tps; "
            f"{binlog['events_applied']:,} events applied in {binlog['apply_s']} s, "
            f"{binlog['parse_only_events']:,} parsed in {binlog['parse_only_s']} s"
        )
    for keepup in (results.get("keepup"), results.get("keepup_relaxed")):
        if not keepup or _unavailable(keepup) is not None:
            continue
        out.append(
            f"keepup ({keepup['durability']} source): {keepup['load_s']:.1f} s of "
            f"{keepup['source_transactions']:,} sysbench txns ({keepup['source_tps']:,.0f} tps); applied "
            f"{keepup['applied_txn_per_s']:,} txn/s, {keepup['applied_events_per_s']:,} events/s; lag p50 "
            f"{keepup['lag_p50_s']:.2f} s, at load end {keepup['lag_at_load_end_s']:.2f} s "
            f"({keepup['backlog_at_load_end_txns']:,} txns behind), daemon's own lag_s max "
            f"{keepup['daemon_lag_max_s']:.2f} s"
        )
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in keepup["cpu_cores_during_load"].items())
        out.append(f"         CPU cores used during the load: {cpu}")
    out.extend(_wholemove_details(results.get("wholemove")))
    out.extend(_replica_details(results.get("replica")))
    out.extend(_read_replica_details(results.get("read_replica")))
    out.extend(_details_new(results))
    out.extend(_details_tls(results.get("tls")))
    if outage and _unavailable(outage) is None:
        app = outage["app_blocked_ms"]
        out.append(
            f"outage:  ms {outage['outage_ms']} ({outage['table_rows']:,}-row moves, writes at "
            f"{outage['write_rate_per_s']}/s); as the writer saw it (failed write -> hook start) {app}"
        )
    back = results.get("rollback_outage")
    if back and _unavailable(back) is None:
        out.append(
            f"rollback: ms {back['outage_ms']} ({back['table_rows']:,}-row moves, writes at "
            f"{back['write_rate_per_s']}/s to the target); as the writer saw it (failed write -> on-rollback "
            f"start) {back['app_blocked_ms']}; lock wait {back['lock_wait_ms']}, reverse drain "
            f"{back['reverse_drain_ms']}; forward {back['forward_outage_ms']}"
        )
    if resume and _unavailable(resume) is None:
        out.append(
            f"resume:  s {resume['resume_s']} ({resume['table_rows']:,}-row table, killed at "
            f"{[k['checkpoint_rows'] for k in resume['kills']]} rows)"
        )
    large = results.get("rss_large")
    if large and _unavailable(large) is None:
        out.append(
            f"rss:     {large['rows']:,}-row copy, copy phase {large['copy_phase_s']} s "
            f"({large['rows_per_s']:,} rows/s), peak RSS {large['peak_rss_mb']} MB"
        )
    out.append(
        f"machine: {machine['nproc']} x {machine['cpu_model']}, {machine['mem_total_mb']} MB, "
        f"Python {machine['python']}, MariaDB {machine['mariadbd']}"
    )
    return out


def _details_tls(part: dict[str, Any] | None) -> list[str]:
    """The TLS part's samples in the order they were taken (plain, TLS, plain, TLS, ...)."""
    if not part or _unavailable(part) is not None:
        return []
    out = []
    for section, key in (
        ("copy", "rows_per_s"),
        ("binlog", "apply_events_per_s"),
        ("binlog", "parse_only_events_per_s"),
        ("keepup", "committed_txn_per_s"),
        ("keepup", "daemon_cpu_us_per_txn"),
    ):
        samples = part.get(section, {}).get("samples")
        if samples:
            taken = ", ".join(f"{s['mode']} {s[key]:,}" for s in samples)
            out.append(f"tls:     {section} {key}: {taken}")
    return out


def _details_new(results: dict[str, Any]) -> list[str]:
    """Detail lines of the realistic, native and heldlock parts."""
    out: list[str] = []
    real, native, held = (results.get(k) for k in ("realistic", "native", "heldlock"))
    if real and _unavailable(real) is None:
        copy, light, heavy = real["copy"], real["light"], real["heavy"]
        tables = ", ".join(f"{t} {n:,}" for t, n in real["tables"].items())
        out.append(
            f"realistic: {copy['rows']:,} rows ({tables}), "
            f"copy phase {copy['copy_phase_s']} s, reference {copy['reference_s']}"
        )
        backlog, sb = real["heavy_backlog"], real["sysbench_backlog"]
        out.append(
            f"         heavy backlog: {backlog['transactions']:,} txns written at "
            f"{backlog['write_tps']:,.0f} txn/s, {backlog['events_applied']:,} events drained in "
            f"{backlog['drain_s']} s"
            + (
                f"; sysbench backlog: {sb['transactions']:,} txns, {sb['events_applied']:,} events in "
                f"{sb['drain_s']} s"
                if sb
                else ""
            )
        )
        out.append(
            f"         live: light {light['source_transactions']:,} txns in {light['load_s']:.1f} s, "
            f"catch-up {light['catch_up_s']:.2f} s; heavy {heavy['source_transactions']:,} txns at "
            f"{heavy['source_tps']:,.0f} txn/s, applied {heavy.get('applied_events_per_s', 0):,} events/s "
            f"during the load (keep-up ratio {heavy['keepup_ratio']}), catch-up {heavy['catch_up_s']:.2f} s"
        )
        if "cpu_us_per_event" in real["heavy_vs_sysbench"]:
            per = real["heavy_vs_sysbench"]["cpu_us_per_event"]
            out.append(
                f"         CPU us per applied event (daemon + servers): realistic {per['realistic']}, "
                f"sysbench {per['sysbench']} (ratio {real['heavy_vs_sysbench']['cpu_ratio']})"
            )
    if native and _unavailable(native) is None:
        for label in ("tablemover", "native"):
            part = native[label]
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in part["cpu_cores_during_load"].items())
            waits = ", ".join(f"{k} {v:.2f}" for k, v in part["runqueue_wait_per_s"].items())
            out.append(
                f"{label}: {part['committed_txns']:,} txns committed at {part['committed_txn_per_s']:,}/s, "
                f"applied {part['applied_txn_per_s_during_load']:,}/s during the load, lag max "
                f"{part['lag_max_s']:.2f} s, catch-up {part['catch_up_s']:.2f} s"
            )
            out.append(f"         CPU cores: {cpu}; waiting for a core (s/s): {waits}")
    if held and _unavailable(held) is None:
        probe = held["probe"]
        out.append(
            f"heldlock: released {held['release_after_s']:g} s into a {held['hold_s']:g} s hold; "
            f"blocker seen {held['blocker_seen_ms_after_release']} ms after the release "
            f"({held['blocker_method']}), RENAME "
            f"{held['blocker_commit_to_rename_ms']} ms after its commit; probe {probe['queries_in_window']} "
            f"queries in the {held['window_s']:.2f} s window, p99 {probe['p99_ms_in_window']} ms "
            f"(before: max {probe['max_ms_before']} ms)"
        )
    return out


# --- entry point --------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results (%(default)s)")
    p.add_argument("--skip", action="append", default=[], choices=PARTS, help="skip a part (repeatable)")
    p.add_argument(
        "--only", action="append", default=[], choices=PARTS, help="run only this part (repeatable)"
    )
    g = p.add_argument_group("copy and binlog")
    g.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the copy table (%(default)s)")
    g.add_argument("--binlog-rows", type=int, default=DEFAULT_BINLOG_ROWS, help="rows in the binlog table")
    g.add_argument(
        "--transactions", type=int, default=DEFAULT_TRANSACTIONS, help="write transactions in the backlog"
    )
    g = p.add_argument_group("keepup")
    g.add_argument(
        "--keepup-seconds",
        type=int,
        default=DEFAULT_KEEPUP_SECONDS,
        help="load duration; 0 skips (%(default)s)",
    )
    g.add_argument("--keepup-rows", type=int, default=DEFAULT_KEEPUP_ROWS, help="sysbench table size")
    g.add_argument(
        "--sample-interval", type=float, default=DEFAULT_SAMPLE_S, help="seconds between lag samples"
    )
    g = p.add_argument_group("realistic schema (composite key, DECIMAL, DATETIME(6), JSON, BLOB, ...)")
    g.add_argument(
        "--realistic-rows",
        type=int,
        default=DEFAULT_REALISTIC_ROWS,
        help="order lines (customers: half as many); (%(default)s)",
    )
    g.add_argument(
        "--realistic-light-seconds",
        type=float,
        default=DEFAULT_REALISTIC_LIGHT_S,
        help="light traffic duration (%(default)s)",
    )
    g.add_argument(
        "--realistic-light-rate",
        type=float,
        default=DEFAULT_REALISTIC_LIGHT_RATE,
        help="light traffic transactions/s (%(default)s)",
    )
    g.add_argument(
        "--realistic-heavy-seconds",
        type=float,
        default=DEFAULT_REALISTIC_HEAVY_S,
        help="heavy traffic duration; 0 skips the whole part (%(default)s)",
    )
    g.add_argument(
        "--realistic-heavy-threads",
        type=int,
        default=DEFAULT_REALISTIC_HEAVY_THREADS,
        help="heavy traffic connections (%(default)s)",
    )
    g.add_argument(
        "--realistic-heavy-max-txns",
        type=int,
        default=DEFAULT_REALISTIC_HEAVY_MAX_TXNS,
        help="heavy traffic stops after this many transactions (%(default)s)",
    )
    g = p.add_argument_group("native (tablemover vs native replication, same sysbench load)")
    g.add_argument(
        "--native-seconds",
        type=int,
        default=DEFAULT_NATIVE_SECONDS,
        help="load duration; 0 skips (%(default)s)",
    )
    g.add_argument("--native-rows", type=int, default=DEFAULT_NATIVE_ROWS, help="sysbench table size")
    g.add_argument(
        "--native-threads", type=int, default=DEFAULT_NATIVE_THREADS, help="sysbench threads (%(default)s)"
    )
    g.add_argument("--native-seed", type=int, default=DEFAULT_NATIVE_SEED, help="sysbench --rand-seed")
    g = p.add_argument_group("outage")
    g.add_argument("--cutovers", type=int, default=DEFAULT_CUTOVERS, help="cutovers; 0 skips (%(default)s)")
    g.add_argument("--cutover-rows", type=int, default=DEFAULT_CUTOVER_ROWS, help="rows a cutover table")
    g.add_argument(
        "--cutover-write-rate", type=int, default=DEFAULT_CUTOVER_WRITE_RATE, help="writes/s during each move"
    )
    g.add_argument(
        "--rollbacks",
        type=int,
        default=DEFAULT_ROLLBACKS,
        help="moves with a rollback window rolled back under the same load (same rows and rate); 0 skips "
        "(%(default)s)",
    )
    g = p.add_argument_group("heldlock (cutover released while a session holds a row lock)")
    g.add_argument(
        "--heldlock-hold",
        type=float,
        default=DEFAULT_HELDLOCK_HOLD_S,
        help="seconds the blocker holds its lock; 0 skips (%(default)s)",
    )
    g.add_argument(
        "--heldlock-release-after",
        type=float,
        default=DEFAULT_HELDLOCK_RELEASE_AFTER_S,
        help="seconds into the hold when the cutover is released (%(default)s)",
    )
    g.add_argument("--heldlock-rows", type=int, default=DEFAULT_HELDLOCK_ROWS, help="sysbench table size")
    g.add_argument(
        "--heldlock-rate",
        type=int,
        default=DEFAULT_HELDLOCK_RATE,
        help="sysbench transactions/s (%(default)s)",
    )
    g.add_argument(
        "--probe-interval",
        type=float,
        default=DEFAULT_PROBE_INTERVAL_S,
        help="seconds between the probe's writes (%(default)s)",
    )
    g = p.add_argument_group("resume")
    g.add_argument("--resumes", type=int, default=DEFAULT_RESUMES, help="SIGKILLs; 0 skips (%(default)s)")
    g.add_argument("--resume-rows", type=int, default=DEFAULT_RESUME_ROWS, help="rows of the killed copy")
    g = p.add_argument_group("tls (copy, apply and keep-up over TLS beside plain, alternated)")
    g.add_argument(
        "--tls-rounds",
        type=int,
        default=DEFAULT_TLS_ROUNDS,
        help="copy and backlog-apply samples of each mode; 0 skips the part (%(default)s)",
    )
    g.add_argument("--tls-copy-rows", type=int, default=DEFAULT_TLS_COPY_ROWS, help="rows a copy sample")
    g.add_argument(
        "--tls-transactions",
        type=int,
        default=DEFAULT_TLS_TRANSACTIONS,
        help="backlog transactions an apply sample (%(default)s)",
    )
    g.add_argument(
        "--tls-keepup-rounds",
        type=int,
        default=DEFAULT_TLS_KEEPUP_ROUNDS,
        help="keep-up samples of each mode; 0 skips them (%(default)s)",
    )
    g.add_argument(
        "--tls-keepup-seconds",
        type=int,
        default=DEFAULT_TLS_KEEPUP_SECONDS,
        help="sysbench seconds a keep-up sample (%(default)s)",
    )
    g = p.add_argument_group("wholemove (start to DONE, gate included, per copy_threads)")
    g.add_argument(
        "--wholemove-rows", type=int, default=300_000, help="rows of the moved table; 0 skips (%(default)s)"
    )
    g.add_argument(
        "--wholemove-realistic-rows",
        type=int,
        default=100_000,
        help="order lines of the realistic schema's whole move (and half as many customers); 0 skips",
    )
    g.add_argument(
        "--wholemove-threads",
        default="1,2,4,8",
        help="copy_threads values, comma-separated (%(default)s)",
    )
    g = p.add_argument_group("replica (a move with a target replica watched, against the same without)")
    g.add_argument(
        "--replica-rows",
        type=int,
        default=300_000,
        help="rows of the moved table (copy_threads 4); 0 skips (%(default)s)",
    )
    g = p.add_argument_group("read_replica (reading from a replica of the source, against the same without)")
    g.add_argument(
        "--read-replica-rows",
        type=int,
        default=200_000,
        help="rows of each move whose load on the primary is measured (2 + 2 moves); 0 skips (%(default)s)",
    )
    g.add_argument(
        "--read-replica-cutovers",
        type=int,
        default=6,
        help="cutovers each way (--cutover-rows, --cutover-write-rate); 0 skips (%(default)s)",
    )
    g = p.add_argument_group("rss")
    g.add_argument(
        "--rss-rows",
        type=int,
        default=0,
        help=f"also copy this many rows for peak RSS (the spec's figure is for {RSS_TARGET_ROWS:,}); 0 skips",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shorter loads and fewer samples everywhere (also BENCH_QUICK=1): a check that it runs",
    )
    # Quick mode changes the defaults only: an option given explicitly still wins.
    argv_list = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv_list or os.environ.get("BENCH_QUICK", "") not in ("", "0"):
        p.set_defaults(quick=True, **QUICK)
    args = p.parse_args(argv_list)
    if args.only:  # --only A --only B is --skip every other part
        args.skip = sorted(set(args.skip) | (set(PARTS) - set(args.only)))
    for name in (
        "rows",
        "binlog_rows",
        "transactions",
        "keepup_rows",
        "cutover_rows",
        "resume_rows",
        "realistic_rows",
        "realistic_heavy_threads",
        "realistic_heavy_max_txns",
        "native_rows",
        "native_threads",
        "heldlock_rows",
        "heldlock_rate",
        "tls_copy_rows",
        "tls_transactions",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.realistic_light_rate <= 0 or args.realistic_light_seconds <= 0 or args.probe_interval <= 0:
        p.error("--realistic-light-rate, --realistic-light-seconds and --probe-interval must be positive")
    if args.heldlock_hold and not 1.5 <= args.heldlock_release_after < args.heldlock_hold:
        # The daemon ignores transactions younger than cutover_blocker_min_age_s (1 s, whole seconds
        # of age): released earlier, the blocker would not count yet and the RENAME would queue.
        p.error("--heldlock-release-after must be at least 1.5 and below --heldlock-hold")
    for name in (
        "keepup_seconds",
        "cutovers",
        "rollbacks",
        "resumes",
        "rss_rows",
        "wholemove_rows",
        "wholemove_realistic_rows",
        "replica_rows",
        "read_replica_rows",
        "read_replica_cutovers",
        "realistic_heavy_seconds",
        "native_seconds",
        "heldlock_hold",
        "tls_rounds",
        "tls_keepup_rounds",
        "tls_keepup_seconds",
    ):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if args.sample_interval <= 0 or args.cutover_write_rate < 1:
        p.error("--sample-interval must be positive and --cutover-write-rate at least 1")
    return args


def drop_bench_schemas(pair: LocalPair) -> None:
    """Drop every bench_ schema on both servers, so each part starts from the same small servers."""
    for server in (pair.source, pair.target):
        for (name,) in server.execute("SHOW DATABASES LIKE 'bench\\_%'"):
            server.execute(f"DROP DATABASE `{name}`")


def plan(
    args: argparse.Namespace, pair: LocalPair, workdir: Path
) -> list[tuple[str, str, Callable[[], dict[str, Any]]]]:
    """(part, what it does, how to run it) for every part the arguments ask for."""
    parts: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []
    skip = set(args.skip)
    if "copy" not in skip:
        parts.append(("copy", f"{args.rows:,} rows", lambda: bench_copy(pair, workdir, args.rows)))
    if "wholemove" not in skip and args.wholemove_rows:
        threads = tuple(int(t) for t in str(args.wholemove_threads).split(",") if t.strip())
        parts.append(
            (
                "wholemove",
                f"{args.wholemove_rows:,} rows to DONE with copy_threads {', '.join(map(str, threads))}",
                lambda: bench_wholemove(
                    pair, workdir, args.wholemove_rows, threads, args.wholemove_realistic_rows
                ),
            )
        )
    if "replica" not in skip and args.replica_rows:
        parts.append(
            (
                "replica",
                f"{args.replica_rows:,} rows to DONE with copy_threads 4, a target replica watched, "
                "against the same without",
                lambda: bench_replica(pair, workdir, args.replica_rows),
            )
        )
    if "read_replica" not in skip and (args.read_replica_rows or args.read_replica_cutovers):
        parts.append(
            (
                "read_replica",
                f"a {args.read_replica_rows:,}-row move under writes and {args.read_replica_cutovers} "
                "cutovers, each without and with [replica] (a replica of the source)",
                lambda: bench_read_replica(
                    pair,
                    workdir,
                    args.read_replica_rows,
                    args.read_replica_cutovers,
                    args.cutover_rows,
                    args.cutover_write_rate,
                ),
            )
        )
    if "binlog" not in skip:
        parts.append(
            (
                "binlog",
                f"{args.transactions:,} transactions",
                lambda: bench_binlog(pair, workdir, args.binlog_rows, args.transactions),
            )
        )
    if "keepup" not in skip and args.keepup_seconds:
        for durability in ("durable", "relaxed"):
            parts.append(
                (
                    f"keepup_{durability}" if durability != "durable" else "keepup",
                    f"{args.keepup_seconds} s of sysbench, {durability} source",
                    lambda d=durability: _keepup(args, pair, workdir, d),  # type: ignore[misc]
                )
            )
    if "realistic" not in skip and args.realistic_heavy_seconds:
        parts.append(
            (
                "realistic",
                f"{args.realistic_rows:,} order lines + {args.realistic_rows // 2:,} customers: copy, "
                f"{args.realistic_light_seconds:g} s light and {args.realistic_heavy_seconds:g} s heavy "
                "traffic",
                lambda: bench_realistic(
                    pair,
                    workdir,
                    ensure_sysbench()[0],
                    args.realistic_rows,
                    args.realistic_light_seconds,
                    args.realistic_light_rate,
                    args.realistic_heavy_seconds,
                    args.realistic_heavy_threads,
                    args.realistic_heavy_max_txns,
                    args.sample_interval,
                ),
            )
        )
    if "native" not in skip and args.native_seconds:
        parts.append(
            (
                "native",
                f"{args.native_seconds} s of {args.native_threads}-thread sysbench, tablemover then a "
                "native replica",
                lambda: _with_sysbench(
                    lambda sysbench: bench_native(
                        pair,
                        workdir,
                        workdir.parent / "replica",
                        sysbench,
                        args.native_rows,
                        args.native_seconds,
                        args.sample_interval,
                        args.native_threads,
                        args.native_seed,
                    )
                ),
            )
        )
    if "outage" not in skip and args.cutovers:
        parts.append(
            (
                "outage",
                f"{args.cutovers} cutovers",
                lambda: bench_outage(
                    pair, workdir, args.cutovers, args.cutover_rows, args.cutover_write_rate
                ),
            )
        )
    if "outage" not in skip and args.rollbacks:
        parts.append(
            (
                "rollback_outage",
                f"{args.rollbacks} rollbacks",
                lambda: bench_rollback(
                    pair, workdir, args.rollbacks, args.cutover_rows, args.cutover_write_rate, SCHEMA_GRANT
                ),
            )
        )
    if "heldlock" not in skip and args.heldlock_hold:
        parts.append(
            (
                "heldlock",
                f"a cutover released while a row lock is held {args.heldlock_hold:g} s",
                lambda: _with_sysbench(
                    lambda sysbench: bench_heldlock(
                        pair,
                        workdir,
                        sysbench,
                        args.heldlock_rows,
                        args.heldlock_hold,
                        args.heldlock_release_after,
                        args.heldlock_rate,
                        args.probe_interval,
                    )
                ),
            )
        )
    if "resume" not in skip and args.resumes:
        parts.append(
            (
                "resume",
                f"{args.resumes} SIGKILLs of a {args.resume_rows:,}-row copy",
                lambda: bench_resume(pair, workdir, args.resume_rows, args.resumes),
            )
        )
    if "tls" not in skip and args.tls_rounds:
        parts.append(
            (
                "tls",
                f"copy, backlog apply and keep-up, plain and over TLS alternately ({args.tls_rounds} "
                f"+ {args.tls_rounds} samples, {args.tls_keepup_rounds} + {args.tls_keepup_rounds} "
                "keep-up), on a TLS pair of its own",
                lambda: tlsbench.bench_tls(
                    workdir.parent / "tls",
                    SCHEMA_GRANT,
                    ensure_sysbench()[0],
                    rounds=args.tls_rounds,
                    copy_rows=args.tls_copy_rows,
                    transactions=args.tls_transactions,
                    keepup_rounds=args.tls_keepup_rounds,
                    keepup_seconds=args.tls_keepup_seconds,
                    sample_s=args.sample_interval,
                ),
            )
        )
    if "rss" not in skip and args.rss_rows:
        parts.append(
            (
                "rss_large",
                f"{args.rss_rows:,}-row copy",
                lambda: bench_rss_large(pair, workdir, args.rss_rows),
            )
        )
    return parts


def _with_sysbench(part: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """``part(sysbench binary)``, or a skipped part when sysbench is not there and cannot be installed."""
    binary, how = ensure_sysbench()
    if binary is None:
        return {"skipped": how}
    return part(binary)


def _keepup(args: argparse.Namespace, pair: LocalPair, workdir: Path, durability: str) -> dict[str, Any]:
    return _with_sysbench(
        lambda binary: bench_keepup(
            pair, workdir, binary, args.keepup_rows, args.keepup_seconds, args.sample_interval, durability
        )
    )


def rss_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The daemon's peak RSS in every run that measured it, beside the spec's target."""
    out: dict[str, Any] = {"target_mb": RSS_TARGET_MB, "target_rows": RSS_TARGET_ROWS}
    for key, section, rows_key in (
        ("copy", "copy", "rows"),
        ("keepup", "keepup", "table_rows"),
        ("large", "rss_large", "rows"),
    ):
        part = results.get(section)
        if part and _unavailable(part) is None:
            out[key] = {"rows": part[rows_key], "peak_rss_mb": part["peak_rss_mb"]}
            if key == "keepup":  # that daemon also applied the whole sysbench load
                out[key]["transactions_applied"] = part["source_transactions"]
    return out


def git_revision() -> str:
    """``git rev-parse --short HEAD``, plus "with uncommitted changes" when ``src/`` differs from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--short", "src"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} with uncommitted changes" if dirty else head


def install_mdl_plugin(pair: LocalPair) -> str:
    """Install ``metadata_lock_info`` on the source, so the cutover's blocker check is exact (see
    ``tablemover.blockers``); what happened, for the JSON."""
    try:
        pair.source.execute("INSTALL SONAME 'metadata_lock_info'")
    except pymysql.err.MySQLError as exc:
        # The parts still run: the daemon then falls back to "any long InnoDB transaction".
        return f"not installed: {exc}"
    return "installed"


def main(argv: Sequence[str] | None = None) -> int:
    """Start a server pair, run every benchmark, write the JSON and print the table."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-"))
    pair: LocalPair | None = None
    results: dict[str, Any] = {}
    failed: list[str] = []
    try:
        workdir = root / "work"
        workdir.mkdir()
        print("starting source and target servers ...", file=sys.stderr)
        pair = start_pair(row_metadata="FULL", root=root / "servers")
        grant_mover(pair, SCHEMA_GRANT)
        results["machine"] = {
            **machine_info(pair),
            "source_metadata_lock_info": install_mdl_plugin(pair),
            "git": git_revision(),
            "loadavg_at_start": _loadavg(),
        }
        for name, what, run in plan(args, pair, workdir):
            print(f"{name}: {what} ...", file=sys.stderr)
            part_started = time.perf_counter()
            try:
                results[name] = run()
            except BenchError as exc:
                # The other parts still run: one broken figure should not hide the rest.
                print(f"{name} failed: {exc}", file=sys.stderr)
                results[name] = {"error": str(exc)}
                failed.append(name)
            finally:
                stop_all_daemons()
            results[name]["bench_s"] = round(time.perf_counter() - part_started, 1)
            drop_bench_schemas(pair)
        if "rss" not in args.skip:
            results["rss"] = rss_summary(results)
    finally:
        stop_all_daemons()
        if pair is not None:
            pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["machine"]["bench_wall_s"] = round(time.perf_counter() - started, 1)
    results["machine"]["loadavg_at_end"] = _loadavg()
    results["machine"]["quick"] = bool(args.quick)
    results["failed"] = failed
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"\nwrote {out} ({results['machine']['bench_wall_s']} s)")
    if failed:
        print(f"FAILED: {', '.join(failed)} (a run failed or the moved data differs)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
