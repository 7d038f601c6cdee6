"""The whole move, start to DONE, against the server's own copy (issue #23; bench/README.md).

What an operator waits for is the whole move: preflight, the copy, the catch-up, the checksum gate
and the cutover. For each ``copy_threads`` value this part moves a fresh sysbench table of the same
rows to DONE (no concurrent writes) and sets two figures beside the target server's own
``INSERT INTO t2 SELECT * FROM t1`` of the same rows, measured in the same run before and after
the moves (their mean is the reference, so a machine that slows down during the part moves both),
with the checksum trailing the copy (the default), and once more with the most streams and the
gate after the copy (``checksum_during_copy = false``: the gate's rows/s alone):

* ``end_to_end_ratio``: rows / (daemon start to exit) over the reference rate;
* ``copy_ratio``: rows / (COPYING to "copy complete and caught up") over the reference rate.

Beside them: the gate's rows/s and how much of it ran after the copy was done (the rest overlapped
the copy), and the CPU seconds of the daemon and of each server, to see which one is the limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadkit import create_sbtest_sql, fill_sbtest_sql

from bench import realistic as realistic_schema
from bench.common import (
    MSG_CAUGHT_UP,
    MSG_GATE,
    MSG_STATE_CHANGED,
    TABLE,
    check_same_rows,
    create_filled_table,
    process_cpu_s,
    rate,
    run_tablemover,
    wall_s,
    write_config,
)
from tablemover.local.mariadb import LocalMariaDB, LocalPair, grant_mover, start_pair

END_TO_END_TARGET = 0.7
COPY_TARGET = 1.0
DEFAULT_THREADS = (1, 2, 4, 8)
SCHEMA_GRANT = "bench\\_%"


def insert_select_s(server: LocalMariaDB, rows: int) -> float:
    """Seconds the server takes for ``INSERT INTO t2 SELECT * FROM t1`` of ``rows`` sbtest rows."""
    db = "bench_wm_ref"
    server.execute(
        f"DROP DATABASE IF EXISTS `{db}`",
        f"CREATE DATABASE `{db}`",
        f"USE `{db}`",
        create_sbtest_sql("t1"),
        create_sbtest_sql("t2"),
        fill_sbtest_sql("t1", rows),
    )
    conn = server.admin(db)
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute("INSERT INTO t2 SELECT * FROM t1")
            seconds = time.perf_counter() - started
    finally:
        conn.close()
    server.execute(f"DROP DATABASE `{db}`")  # free the buffer pool for the measured move
    return seconds


def _server_cpu(server: LocalMariaDB) -> float:
    return process_cpu_s(server.process.pid) if server.process is not None else 0.0


def whole_move(
    pair: LocalPair, workdir: Path, rows: int, threads: int, trailing: bool = True, realistic: bool = False
) -> dict[str, Any]:
    """Move a fresh ``rows``-row table to DONE with ``copy_threads = threads``; its phases.

    ``trailing``: the checksum trails the copy (``checksum_during_copy``, the default); without,
    the whole gate runs after the copy is caught up (its rows/s alone). ``realistic``: the
    realistic schema's two tables instead (``rows`` order lines and half as many customers)."""
    db = f"bench_wm{'r' if realistic else ''}{threads}{'' if trailing else 'g'}"
    if realistic:
        realistic_schema.create_tables(pair.source, db, rows, rows // 2)
        tables, total = realistic_schema.TABLES, rows + rows // 2
    else:
        create_filled_table(pair.source, db, rows)
        tables, total = [TABLE], rows
    config = write_config(pair, workdir, db, db, tables, copy_threads=threads, checksum_during_copy=trailing)
    cpu_before = (_server_cpu(pair.source), _server_cpu(pair.target))
    daemon = run_tablemover(config, db, stop_before_cutover=False)
    cpu_after = (_server_cpu(pair.source), _server_cpu(pair.target))
    copying = daemon.first(MSG_STATE_CHANGED, state="COPYING")
    caught_up = daemon.first(MSG_CAUGHT_UP)
    gate = daemon.first(MSG_GATE)
    copy_s = float(caught_up["ts"]) - float(copying["ts"])
    gate_s = float(gate.get("seconds", 0.0))
    # The gate line comes when the gate is complete; what of it ran after the copy was caught up is
    # what it added to the move's wall time.
    gate_after_copy_s = max(0.0, float(gate["ts"]) - float(caught_up["ts"]))
    # After the cutover the source tables have their renamed-away names; the target must equal them.
    for table in tables:
        check_same_rows(pair, (db, f"_{table}_moved"), (f"{db}_dst", table), f"after the {db} move")
    wall = wall_s(daemon)
    return {
        "copy_threads": threads,
        "checksum_during_copy": trailing,
        "schema": "realistic" if realistic else "sbtest",
        "rows": total,
        "end_to_end_s": round(wall, 3),
        "copy_phase_s": round(copy_s, 3),
        "gate_s": round(gate_s, 3),
        # The gate's rate is its own only when it ran alone, after the copy; trailing the copy, what
        # is left at the cutover is the remainder (gate_s), and its cost is inside copy_phase_s.
        "gate_rows_per_s": round(rate(total, gate_s)) if gate_s and not trailing else None,
        "gate_after_copy_s": round(gate_after_copy_s, 3),
        "daemon_cpu_s": round(daemon.cpu_total_s, 2),
        "source_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
        "target_cpu_s": round(cpu_after[1] - cpu_before[1], 2),
        "peak_rss_mb": daemon.peak_rss_mb,
    }


def bench_wholemove(
    pair: LocalPair, workdir: Path, rows: int, threads: tuple[int, ...], realistic_rows: int = 0
) -> dict[str, Any]:
    """Every ``threads`` value's whole move, as ratios of the same run's ``INSERT ... SELECT``;
    with ``realistic_rows``, the realistic schema too (its own reference, same run)."""
    before = insert_select_s(pair.target, rows)
    runs = [whole_move(pair, workdir, rows, n) for n in threads]
    # The gate alone (after the copy, not trailing it), with the most streams asked for.
    runs.append(whole_move(pair, workdir, rows, max(threads), trailing=False))
    after = insert_select_s(pair.target, rows)
    out: dict[str, Any] = {
        "rows": rows,
        "reference_s": [round(before, 3), round(after, 3)],
        "reference_rows_per_s": round(rate(rows, (before + after) / 2)),
        "targets": {"end_to_end_ratio": END_TO_END_TARGET, "copy_ratio": COPY_TARGET},
        "runs": _with_ratios(runs, rate(rows, (before + after) / 2)),
    }
    if realistic_rows:
        total = realistic_rows + realistic_rows // 2
        customers = realistic_rows // 2
        ref_before = sum(realistic_schema.reference_copy(pair.target, realistic_rows, customers).values())
        real = [whole_move(pair, workdir, realistic_rows, n, realistic=True) for n in threads]
        ref_after = sum(realistic_schema.reference_copy(pair.target, realistic_rows, customers).values())
        out["realistic"] = {
            "rows": total,
            "reference_s": [round(ref_before, 3), round(ref_after, 3)],
            "reference_rows_per_s": round(rate(total, (ref_before + ref_after) / 2)),
            "runs": _with_ratios(real, rate(total, (ref_before + ref_after) / 2)),
        }
    return out


def _with_ratios(runs: list[dict[str, Any]], reference_rows_per_s: float) -> list[dict[str, Any]]:
    """Each run's end-to-end and copy-phase rates as ratios of ``reference_rows_per_s``."""
    for run in runs:
        run["end_to_end_ratio"] = round(rate(run["rows"], run["end_to_end_s"]) / reference_rows_per_s, 3)
        run["copy_ratio"] = round(rate(run["rows"], run["copy_phase_s"]) / reference_rows_per_s, 3)
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the part alone on a pair of its own: ``python -m bench.wholemove --rows N --threads 1,4``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)))
    p.add_argument(
        "--realistic-rows", type=int, default=0, help="order lines of the realistic schema; 0 skips"
    )
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tablemover-wholemove-"))
    pair = start_pair(root=root / "servers")
    try:
        grant_mover(pair, SCHEMA_GRANT)
        workdir = root / "work"
        workdir.mkdir()
        threads = tuple(int(t) for t in args.threads.split(","))
        result = bench_wholemove(pair, workdir, args.rows, threads, args.realistic_rows)
        print(json.dumps(result, indent=2))
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
