"""Rollback outage under write load (issue #15): the extra write outage of ``tablemover rollback``,
measured as :mod:`bench.outage` measures the forward cutover's.

Each sample is a small complete move (its own schema and move name) with ``rollback_window_s`` set,
run under the forward bench's light write load (:class:`bench.outage.LightWriter` on the source).
Once the daemon logs ``rollback window open`` (the on-success hook has run: the application now
writes to the target), the same light load is pointed at the target's table; after
``TARGET_WRITES_S`` of that, ``tablemover rollback -c CONFIG`` (the CLI, waiting until ROLLED_BACK)
takes the move back while the load goes on. The figure is the daemon's own ``rollback outage`` log
line (``outage_ms``: from just before the target's RENAME round trip to just before the on-rollback
hook starts; the forward definition, with the target's RENAME and on-rollback in place of the
source's RENAME and on-success).

The cross-check is the forward one's: an on-rollback hook records when it started, the target writer
records when it sent its first write that failed because the RENAME took the table away (1146), and
``app_blocked_ms`` is the gap between the two: the outage as the application sees it (it would switch
back to the source when the hook runs). The forward outage of the same moves is recorded beside it
(``forward_outage_ms``: the same runs, the same load), and afterwards the source's restored table
must equal the target's rolled-back one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    MSG_DRAINED,
    MSG_OUTAGE,
    MSG_ROLLBACK_OUTAGE,
    MSG_WINDOW_OPEN,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    create_filled_table,
    daemon_env,
    median,
    percentile,
    wait_for_line,
    wall_s,
    write_config,
)
from bench.outage import P50_TARGET_MS, P99_TARGET_MS, LightWriter, write_hook
from tablemover.local.mariadb import (
    MOVER_USER,
    WINDOW_SOURCE_GRANTS,
    WINDOW_TARGET_GRANTS,
    LocalPair,
    grant_mover,
)

WINDOW_S = 600  # never elapses during a sample: the rollback ends each one
TARGET_WRITES_S = 1.0  # the application writes to the target this long before the rollback is asked for
WINDOW_TIMEOUT_S = 120.0  # copy, forward cutover, on-success: the window must be open by then
ROLLBACK_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 30.0  # the daemon's exit after ROLLED_BACK


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _stamp(path: Path) -> float | None:
    return float(path.read_text().strip()) if path.exists() else None


def one_rollback(pair: LocalPair, workdir: Path, number: int, rows: int, write_rate: int) -> dict[str, Any]:
    """One move of a fresh ``rows``-row table with a rollback window, rolled back under the light write
    load on the target; its figures."""
    db = f"bench_rb_{number}"
    create_filled_table(pair.source, db, rows)
    hooks = workdir / f"{db}-hooks"
    success_stamp, rollback_stamp = workdir / f"{db}-success-started", workdir / f"{db}-rollback-started"
    write_hook(hooks, success_stamp)
    write_hook(hooks, rollback_stamp, "on-rollback")
    config = write_config(pair, workdir, db, db, [TABLE], hooks_dir=str(hooks), rollback_window_s=WINDOW_S)
    what = f"rollback {number}"
    source_writer = LightWriter(pair.source.socket, db, rows, write_rate, seed=number).start()
    daemon = Daemon(config, workdir / f"{db}.log").start()
    target_writer: LightWriter | None = None
    try:
        wait_for_line(daemon, MSG_WINDOW_OPEN, WINDOW_TIMEOUT_S, what)
        source_writer.stop()  # it ended at the forward RENAME already
        # The application after the switch: the same load, on the target's table.
        target_writer = LightWriter(pair.target.socket, f"{db}_dst", rows, write_rate, seed=10_000 + number)
        target_writer.start()
        time.sleep(TARGET_WRITES_S)
        if target_writer.first_missing_sent_at is not None or target_writer.error:
            raise BenchError(
                f"{what}: the target write load ended before the rollback: {target_writer.error}"
            )
        asked_at = time.time()
        cli = subprocess.run(
            [sys.executable, "-m", "tablemover", "rollback", "-c", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(),
            timeout=ROLLBACK_TIMEOUT_S,
            check=False,
        )
        cli_returned_at = time.time()
        if cli.returncode != 0:
            raise BenchError(
                f"{what}: `tablemover rollback` exited {cli.returncode}: {cli.stdout}{cli.stderr}\n"
                + daemon.tail()
            )
        rc = daemon.wait(FINISH_TIMEOUT_S)
        if rc != 0:
            raise BenchError(f"{what}: tablemover run exited {rc} after the rollback:\n{daemon.tail()}")
        target_writer.stop()
    finally:
        source_writer.stop()
        if target_writer is not None:
            target_writer.stop()
        daemon.kill()
    assert target_writer is not None
    for writer, side in ((source_writer, "source"), (target_writer, "target")):
        if writer.error:
            raise BenchError(f"{what}: the write load on the {side} failed: {writer.error}")
    outage = daemon.first(MSG_ROLLBACK_OUTAGE)
    forward = daemon.first(MSG_OUTAGE)
    drains = [line for line in daemon.lines() if line.get("msg") == MSG_DRAINED]
    hook_started = _stamp(rollback_stamp)
    missing_at = target_writer.first_missing_sent_at
    # The source's tables have their names back and hold what the target had at its RENAME.
    check_equal(pair, (db, TABLE), (f"{db}_dst", f"_{TABLE}_rolledback"), f"after {what}")
    return {
        "outage_ms": int(outage["outage_ms"]),
        "lock_wait_ms": outage.get("lock_wait_ms"),
        "rename_attempts": outage.get("rename_attempts"),
        "failed_attempts_wait_ms": outage.get("failed_attempts_wait_ms"),
        "reverse_drain_ms": drains[-1].get("waited_ms") if len(drains) >= 2 else None,
        "app_blocked_ms": _ms(hook_started - missing_at)
        if hook_started is not None and missing_at is not None
        else None,
        "target_writes_committed": target_writer.commits,
        "writes_hit_rename": missing_at is not None,
        "rollback_cli_s": round(cli_returned_at - asked_at, 3),
        "forward_outage_ms": int(forward["outage_ms"]),
        "run_wall_s": round(wall_s(daemon), 3),
        "peak_rss_mb": daemon.peak_rss_mb,
    }


def _window_grants(pair: LocalPair, schema_grant: str, revoke: bool) -> None:
    """Add (or take back) what a rollback window needs beyond the move user's usual grants, so the
    other parts run with exactly their usual privileges."""
    if not revoke:
        grant_mover(pair, schema_grant, window=True)
        return
    for server, grants in ((pair.source, WINDOW_SOURCE_GRANTS), (pair.target, WINDOW_TARGET_GRANTS)):
        server.execute(
            *(
                g.replace("GRANT ", "REVOKE ", 1)
                .replace(" TO ", " FROM ")
                .format(user=MOVER_USER, db=schema_grant)
                for g in grants
            )
        )


def bench_rollback(
    pair: LocalPair, workdir: Path, rollbacks: int, rows: int, write_rate: int, schema_grant: str
) -> dict[str, Any]:
    """``rollbacks`` moves rolled back under light write load; rollback outage percentiles, with the
    forward outage of the same moves beside them."""
    _window_grants(pair, schema_grant, revoke=False)
    try:
        runs = [one_rollback(pair, workdir, n, rows, write_rate) for n in range(1, rollbacks + 1)]
    finally:
        _window_grants(pair, schema_grant, revoke=True)
    outages = [float(r["outage_ms"]) for r in runs]
    app = [float(r["app_blocked_ms"]) for r in runs if r["app_blocked_ms"] is not None]
    forward = [float(r["forward_outage_ms"]) for r in runs]
    drains = [float(r["reverse_drain_ms"]) for r in runs if r["reverse_drain_ms"] is not None]
    return {
        "rollbacks": rollbacks,
        "table_rows": rows,
        "write_rate_per_s": write_rate,
        "target_writes_s_before_rollback": TARGET_WRITES_S,
        "outage_ms": [int(x) for x in outages],
        "p50_ms": round(percentile(outages, 50)),
        "p99_ms": round(percentile(outages, 99)),
        "median_ms": round(median(outages)),
        "min_ms": round(min(outages)),
        "max_ms": round(max(outages)),
        "percentiles": "nearest rank: with fewer than 100 rollbacks p99 is the maximum",
        "lock_wait_ms": [r["lock_wait_ms"] for r in runs],
        "rename_attempts": [r["rename_attempts"] for r in runs],
        "reverse_drain_ms": [int(x) for x in drains],
        "app_blocked_ms": [int(x) for x in app],
        "app_blocked_p50_ms": round(percentile(app, 50)) if app else None,
        "app_blocked_max_ms": round(max(app)) if app else None,
        "writes_hit_rename": sum(1 for r in runs if r["writes_hit_rename"]),
        # The forward cutover outage of the same moves (same load, same run): what to compare with.
        "forward_outage_ms": [int(x) for x in forward],
        "forward_p50_ms": round(percentile(forward, 50)),
        "forward_max_ms": round(max(forward)),
        "runs": runs,
        # The forward outage's targets (spec section 10): a rollback is held to the same definition.
        "p50_target_ms": P50_TARGET_MS,
        "p99_target_ms": P99_TARGET_MS,
    }
