"""Cutover outage under write load (spec section 10: p50 < 100 ms, p99 < 500 ms).

Each sample is a small complete move (its own schema and move name) run to the end while a
:class:`LightWriter` thread writes to the moved table. The figure is the daemon's own
``cutover outage`` log line (``outage_ms``: from just before the RENAME round trip to just before the
on-success hook starts, the spec's "RENAME commit to on-success hook start" plus the RENAME itself).

As a cross-check that does not trust the daemon's clock points, an on-success hook records when it
started, and the writer records when it sent the first write that failed because the table was
renamed away: ``app_blocked_ms`` is the gap between the two, the outage as the application sees it
(it would switch to the target when the hook runs). It starts at that write's send time, so it may
begin up to one write interval after the RENAME did.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from loadkit import ER_NO_SUCH_TABLE, Pacer, mysql_errno

from bench.common import (
    MSG_GATE,
    MSG_OUTAGE,
    TABLE,
    BenchError,
    check_equal,
    create_filled_table,
    median,
    percentile,
    run_tablemover,
    wall_s,
    write_config,
)
from tablemover.local.mariadb import LocalPair, root_connection

P50_TARGET_MS = 100
P99_TARGET_MS = 500
ER_RETRYABLE = (1205, 1213)  # lock wait timeout, deadlock: the write is retried, the load goes on


class LightWriter:
    """Autocommit writes to one sbtest table at ``rate`` per second (updates of ``c`` by id, and
    inserts), until the table is renamed away (error 1146) or :meth:`stop`."""

    def __init__(self, socket: str, db: str, rows: int, rate: int, seed: int) -> None:
        self.socket, self.db, self.rows, self.rate = socket, db, rows, max(rate, 1)
        self.rng = random.Random(seed)
        self.commits = 0
        self.first_missing_sent_at: float | None = None  # time.time() the first failed write was sent
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"writer-{db}")

    def start(self) -> LightWriter:
        """Start writing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop writing (if the cutover has not stopped it already)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = root_connection(self.socket, self.db)
        except pymysql.err.MySQLError as exc:
            self.error = f"connect: {exc}"
            return
        pacer = Pacer(self.rate, self._stop)
        try:
            with conn.cursor() as cur:
                while pacer.wait():
                    sent_at = time.time()
                    try:
                        if self.rng.random() < 0.7:
                            cur.execute(
                                f"UPDATE `{TABLE}` SET c = %s WHERE id = %s",
                                (self.rng.randbytes(40).hex()[:119], self.rng.randint(1, self.rows)),
                            )
                        else:
                            cur.execute(
                                f"INSERT INTO `{TABLE}` (k, c, pad) VALUES (%s, %s, %s)",
                                (self.rng.randint(1, self.rows), self.rng.randbytes(40).hex()[:119], "bench"),
                            )
                    except pymysql.err.MySQLError as exc:
                        code = mysql_errno(exc)
                        if code == ER_NO_SUCH_TABLE:
                            # The cutover renamed the table: expected, and the end of this load.
                            self.first_missing_sent_at = sent_at
                            return
                        if code in ER_RETRYABLE:
                            continue
                        self.error = str(exc)
                        return
                    self.commits += 1
        finally:
            with contextlib.suppress(pymysql.err.MySQLError):
                conn.close()


def write_hook(directory: Path, stamp: Path, name: str = "on-success") -> None:
    """A hook (``name``, on-success by default) that writes the epoch time it started to ``stamp``."""
    directory.mkdir(parents=True, exist_ok=True)
    hook = directory / name
    hook.write_text(f'#!/bin/sh\ndate +%s.%N > "{stamp}"\n')
    hook.chmod(0o755)


def one_cutover(pair: LocalPair, workdir: Path, number: int, rows: int, write_rate: int) -> dict[str, Any]:
    """One complete move of a fresh ``rows``-row table under the light write load; its figures."""
    db = f"bench_cut_{number}"
    create_filled_table(pair.source, db, rows)
    hooks, stamp = workdir / f"{db}-hooks", workdir / f"{db}-hook-started"
    write_hook(hooks, stamp)
    config = write_config(pair, workdir, db, db, [TABLE], hooks_dir=str(hooks))
    writer = LightWriter(pair.source.socket, db, rows, write_rate, seed=number).start()
    try:
        daemon = run_tablemover(config, f"cutover {number}", stop_before_cutover=False)
    finally:
        writer.stop()
    if writer.error:
        raise BenchError(f"cutover {number}: the write load failed: {writer.error}")
    outage = daemon.first(MSG_OUTAGE)
    drained = daemon.find("drained") or {}
    # The checksum before the cutover (verify_before_cutover) runs under the same write load.
    gate = daemon.find(MSG_GATE) or {}
    hook_started = float(stamp.read_text().strip()) if stamp.exists() else None
    app_blocked_ms = (
        round((hook_started - writer.first_missing_sent_at) * 1000)
        if hook_started is not None and writer.first_missing_sent_at is not None
        else None
    )
    check_equal(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), f"after cutover {number}")
    return {
        "outage_ms": int(outage["outage_ms"]),
        "drain_ms": drained.get("waited_ms"),
        "gate_s": gate.get("seconds"),
        "gate_rows": gate.get("rows"),
        "gate_s_per_million_rows": gate.get("seconds_per_million_rows"),
        "app_blocked_ms": app_blocked_ms,
        "writes_committed": writer.commits,
        "writes_hit_rename": writer.first_missing_sent_at is not None,
        "run_wall_s": round(wall_s(daemon), 3),
        "peak_rss_mb": daemon.peak_rss_mb,
    }


def bench_outage(pair: LocalPair, workdir: Path, cutovers: int, rows: int, write_rate: int) -> dict[str, Any]:
    """``cutovers`` complete moves under light write load; outage percentiles."""
    runs = [one_cutover(pair, workdir, n, rows, write_rate) for n in range(1, cutovers + 1)]
    outages = [float(r["outage_ms"]) for r in runs]
    app = [float(r["app_blocked_ms"]) for r in runs if r["app_blocked_ms"] is not None]
    return {
        "cutovers": cutovers,
        "table_rows": rows,
        "write_rate_per_s": write_rate,
        "outage_ms": [int(x) for x in outages],
        "p50_ms": round(percentile(outages, 50)),
        "p99_ms": round(percentile(outages, 99)),
        "median_ms": round(median(outages)),
        "min_ms": round(min(outages)),
        "max_ms": round(max(outages)),
        "percentiles": "nearest rank: with fewer than 100 cutovers p99 is the maximum",
        "app_blocked_ms": [int(x) for x in app],
        "app_blocked_p50_ms": round(percentile(app, 50)) if app else None,
        "app_blocked_max_ms": round(max(app)) if app else None,
        "writes_hit_rename": sum(1 for r in runs if r["writes_hit_rename"]),
        # Cost of the checksum before the cutover: it runs before the intent, so it lengthens the
        # move, not the write outage above.
        "gate_s_per_million_rows_median": (
            round(median(gates), 2)
            if (gates := [float(r["gate_s_per_million_rows"]) for r in runs if r["gate_s_per_million_rows"]])
            else None
        ),
        "runs": runs,
        "p50_target_ms": P50_TARGET_MS,
        "p99_target_ms": P99_TARGET_MS,
    }
