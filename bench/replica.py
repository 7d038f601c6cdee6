"""A whole move with a target replica watched (issue #27; bench/README.md "Target replica").

A third ``mariadbd`` replicates the pair's target with GTID (from the target's position when the
part starts: every schema this part writes is created after that). A fresh sysbench table of the
same rows is moved to DONE with ``copy_threads`` (4 by default) and no concurrent writes,
alternately without a replica and with the replica watched (``[throttle] target_replicas``),
``repeats`` times each, and once more without: the medians are compared, so a machine that slows
down during the part (others share it) moves both.

While each move runs the part samples, every ``SAMPLE_S``: the daemon's ``status`` (its state, the
heartbeat lag it reports for the replica and whether the replica holds the copy) and, on the
replica itself, its own reading of the heartbeat (the replica's clock minus the newest beat it has
applied, the same clock as the writer's here). Figures:

* ``peak_lag_s`` (the daemon's) and ``own_peak_lag_s`` (the part's) while the move is COPYING,
  against ``max_replica_lag_s`` plus one chunk time (the adaptive chunk size's target duration,
  :data:`tablemover.copyplan.TARGET_CHUNK_S`): the copy stops starting chunks once the lag passes
  the limit, so what may still land is what is in flight;
* ``end_to_end_s`` with the replica (median) over the median without (``cost_ratio``), and the
  seconds the replica held the copy in each; the cutover's wait for the replica is inside the
  whole-move time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

from bench.common import (
    MSG_CAUGHT_UP,
    MSG_STATE_CHANGED,
    TABLE,
    BenchError,
    Daemon,
    check_same_rows,
    create_filled_table,
    socket_path,
    status,
    table_digest,
    write_config,
)
from tablemover.copyplan import TARGET_CHUNK_S
from tablemover.local.mariadb import (
    LocalMariaDB,
    LocalPair,
    grant_mover,
    replicate,
    root_connection,
    start_pair,
)

DEFAULT_ROWS = 300_000
DEFAULT_THREADS = 4
DEFAULT_REPEATS = 2  # pairs of moves without and with the replica (the machine's noise is large)
MAX_REPLICA_LAG_S = 1.5  # the daemon's default, gh-ost's --max-lag-millis default
SAMPLE_S = 0.1
RUN_TIMEOUT_S = 600.0
CATCH_UP_S = 300
SCHEMA_GRANT = "bench\\_%"


def start_replica(root: Path, target: LocalMariaDB) -> LocalMariaDB:
    """A GTID replica of ``target`` from its position now, the mover user able to read its
    heartbeat and ``SHOW SLAVE STATUS``."""
    replica = LocalMariaDB(root, server_id=13, extra_args=("--skip-slave-start", "--report-host=127.0.0.1"))
    replica.install()
    replica.start()
    try:
        replicate(replica, target)
    except BaseException:
        replica.stop()
        raise
    return replica


class HeartbeatReader:
    """The replica's own view of a move's heartbeat: its clock now minus the newest beat it holds
    (None until it has replayed the heartbeat table)."""

    def __init__(self, replica: LocalMariaDB, state_db: str, move: str) -> None:
        self.conn = root_connection(replica.socket)
        self.sql = (
            "SELECT TIMESTAMPDIFF(MICROSECOND, beat, UTC_TIMESTAMP(6)) / 1e6 "
            f"FROM `{state_db}`.`_tablemover_heartbeat` WHERE move = %s AND side = 'target'"
        )
        self.move = move

    def lag_s(self) -> float | None:
        """One reading."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.sql, (self.move,))
                row = cur.fetchone()
        except pymysql.err.ProgrammingError:  # the table not replicated yet
            return None
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def sampled_move(
    pair: LocalPair, workdir: Path, db: str, rows: int, threads: int, replica: LocalMariaDB | None
) -> dict[str, Any]:
    """Move a fresh ``rows``-row table to DONE with ``copy_threads = threads`` (watching
    ``replica`` when given), sampling the daemon's status (and the replica's heartbeat) meanwhile."""
    create_filled_table(pair.source, db, rows)
    throttle: dict[str, Any] = {}
    name = ""
    if replica is not None:
        name = f"127.0.0.1:{replica.port}"
        throttle = {"target_replicas": [name], "max_replica_lag_s": MAX_REPLICA_LAG_S}
    config = write_config(pair, workdir, db, db, [TABLE], copy_threads=threads, throttle=throttle)
    reader = HeartbeatReader(replica, f"{db}_state", db) if replica is not None else None
    daemon = Daemon(config, workdir / f"{db}.log").start()
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while daemon.poll() is None:
            if time.monotonic() > deadline:
                daemon.kill()
                raise BenchError(f"tablemover run ({db}) did not finish within {RUN_TIMEOUT_S:.0f} s")
            doc = status(socket_path(workdir, db)) or {}
            figures = doc.get("target_replicas", {}).get(name, {}) if name else {}
            samples.append(
                {
                    "t": time.time(),
                    "state": doc.get("state"),
                    "copy_done": doc.get("percent_copied") == 100.0,
                    "lag_s": figures.get("lag_s"),
                    "holds_copy": bool(figures.get("holds_copy")),
                    "own_lag_s": reader.lag_s() if reader is not None else None,
                }
            )
            time.sleep(SAMPLE_S)
    finally:
        if reader is not None:
            reader.close()
        if daemon.poll() is None:
            daemon.kill()
    if daemon.returncode != 0:
        raise BenchError(f"tablemover run ({db}) exited {daemon.returncode}:\n{daemon.tail()}")
    check_same_rows(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), f"after the {db} move")
    copying = float(daemon.first(MSG_STATE_CHANGED, state="COPYING")["ts"])
    caught_up = float(daemon.first(MSG_CAUGHT_UP)["ts"])
    in_copy = [s for s in samples if s["state"] == "COPYING" and not s["copy_done"]]
    out: dict[str, Any] = {
        "replica": replica is not None,
        "rows": rows,
        "copy_threads": threads,
        "end_to_end_s": round(daemon.ended_at - daemon.started_at, 3),
        "copy_phase_s": round(caught_up - copying, 3),
        "samples": len(samples),
        "copy_samples": len(in_copy),
    }
    if replica is not None:
        lags = [float(s["lag_s"]) for s in in_copy if s["lag_s"] is not None]
        own = [float(s["own_lag_s"]) for s in in_copy if s["own_lag_s"] is not None]
        out.update(
            {
                "peak_lag_s": round(max(lags), 3) if lags else None,
                "median_lag_s": round(statistics.median(lags), 3) if lags else None,
                "own_peak_lag_s": round(max(own), 3) if own else None,
                "peak_lag_whole_move_s": round(
                    max((float(s["lag_s"]) for s in samples if s["lag_s"] is not None), default=0.0), 3
                ),
                "held_copy_s": round(sum(SAMPLE_S for s in in_copy if s["holds_copy"]), 1),
            }
        )
    return out


def bench_replica(
    pair: LocalPair, workdir: Path, rows: int, threads: int = DEFAULT_THREADS, repeats: int = DEFAULT_REPEATS
) -> dict[str, Any]:
    """``repeats`` pairs of moves, alternately without and with the replica watched, and one more
    without; the figures. The replica is stopped at the end (its files under ``workdir``)."""
    replica = start_replica(workdir / "replica", pair.target)
    plain: list[dict[str, Any]] = []
    watched: list[dict[str, Any]] = []
    try:
        for i in range(1, repeats + 1):
            plain.append(sampled_move(pair, workdir, f"bench_rp_none{i}", rows, threads, None))
            watched.append(sampled_move(pair, workdir, f"bench_rp_watched{i}", rows, threads, replica))
        plain.append(sampled_move(pair, workdir, f"bench_rp_none{repeats + 1}", rows, threads, None))
        # The replica ends identical to the target (else the figures mean nothing).
        position = str(pair.target.execute("SELECT @@global.gtid_binlog_pos")[0][0])
        if replica.execute(f"SELECT MASTER_GTID_WAIT('{position}', {CATCH_UP_S})")[0][0] != 0:
            raise BenchError(f"the replica did not reach the target's position {position}")
        for i in range(1, repeats + 1):
            db = f"bench_rp_watched{i}_dst"
            if table_digest(pair.target, db, TABLE) != table_digest(replica, db, TABLE):
                raise BenchError(f"the replica's {db}.{TABLE} differs from the target's")
    finally:
        replica.stop()
        shutil.rmtree(workdir / "replica", ignore_errors=True)
    reference = statistics.median(r["end_to_end_s"] for r in plain)
    with_replica = statistics.median(r["end_to_end_s"] for r in watched)
    peaks = [r["peak_lag_s"] for r in watched if r["peak_lag_s"] is not None]
    own = [r["own_peak_lag_s"] for r in watched if r["own_peak_lag_s"] is not None]
    target = MAX_REPLICA_LAG_S + TARGET_CHUNK_S
    return {
        "rows": rows,
        "copy_threads": threads,
        "repeats": repeats,
        "max_replica_lag_s": MAX_REPLICA_LAG_S,
        "chunk_s": TARGET_CHUNK_S,
        "target_peak_lag_s": target,
        "peak_lag_s": max(peaks) if peaks else None,  # the highest of every watched move
        "own_peak_lag_s": max(own) if own else None,
        "under_target": len(peaks) == len(watched) and max(peaks) <= target,
        "end_to_end_s": round(with_replica, 3),  # medians
        "reference_end_to_end_s": round(reference, 3),
        "cost_ratio": round(with_replica / reference, 3) if reference else None,
        "held_copy_s": [r["held_copy_s"] for r in watched],
        "runs": [r for pair_ in zip(plain, watched, strict=False) for r in pair_] + [plain[-1]],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the part alone on a pair of its own: ``python -m bench.replica --rows N --threads 4``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-replica-"))
    pair = start_pair(root=root / "servers")
    try:
        grant_mover(pair, SCHEMA_GRANT)
        workdir = root / "work"
        workdir.mkdir()
        print(json.dumps(bench_replica(pair, workdir, args.rows, args.threads, args.repeats), indent=2))
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
