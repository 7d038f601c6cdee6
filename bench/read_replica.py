"""Reading from a replica (issue #24; bench/README.md "Reading from a replica").

A third ``mariadbd`` replicates the pair's source with GTID (``log_slave_updates`` on, from the
source's position when the part starts: every schema the part writes is created after that), the
move's ``[replica]`` in half of the runs. Both it and the source count rows read per table and per
user (``userstat``, switched on for the part on the source). Two measurements, each alternating
runs without and with ``[replica]`` on the same servers, so a machine that slows down during the
part moves both (in the order without, with, with, without, ...):

* **load** (``load``): a fresh ``load_rows``-row sysbench table moved to DONE (copy, checksum gate,
  cutover) while :class:`bench.outage.LightWriter` writes to it at ``write_rate``/s on the primary.
  Per run, over the daemon's start to its exit: the primary's CPU seconds (``/proc/<pid>/stat``
  utime + stime of its ``mariadbd``) and the rows it read of the moved table (``TABLE_STATISTICS``
  of the schema, under either name: the writer's ``UPDATE`` by id reads one row each), the rows the
  move user read on that server, any table (``USER_STATISTICS``); the same on the replica.
  (MariaDB 10.11 has no ``Innodb_rows_read`` any more; the per-table and per-user counters say
  more anyway.) The replica replicates the writes in every run: what changes is only where the
  move reads. Before the
  moves the writer runs alone for ``LOAD_ONLY_S`` seconds: the primary's CPU per second of the write
  load, subtracted from each run's to give the move's own share (``primary_cpu_move_s``).
* **outage** (``outage``): ``cutovers`` small moves each way (the ``outage`` part's: ``cutover_rows``
  rows under the same writer and rate), alternated, the outage taken as bench/outage.py takes it: the
  daemon's ``cutover outage`` line (RENAME to the on-success hook, the drain included), and the
  writer's view (``app_blocked_ms``). With ``[replica]`` the drain has to wait until the replica has
  executed the RENAME and its binlog carries it to the daemon. The replica's lag at the cutover is
  the daemon's own GTID-measured ``read_replica.lag_s`` in the last ``status`` sample (every
  ``SAMPLE_S``) before the state reached ``RENAMED``; ``drain_ms`` is the daemon's ``drained`` line.
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

from bench.common import (
    MSG_DRAINED,
    MSG_GATE,
    MSG_OUTAGE,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    create_filled_table,
    median,
    percentile,
    process_cpu_s,
    socket_path,
    status,
)
from bench.outage import LightWriter, write_hook
from tablemover.local.mariadb import (
    LocalMariaDB,
    LocalPair,
    grant_mover,
    grant_reader,
    pair_config,
    replicate,
    start_pair,
)

DEFAULT_LOAD_ROWS = 200_000
DEFAULT_REPEATS = 2  # load runs each way, alternated
DEFAULT_CUTOVERS = 6  # small moves each way, alternated
DEFAULT_CUTOVER_ROWS = 5_000
DEFAULT_WRITE_RATE = 200
LOAD_ONLY_S = 3.0
SAMPLE_S = 0.1
RUN_TIMEOUT_S = 600.0
CATCH_UP_S = 120
SCHEMA_GRANT = "bench\\_%"
MOVER = "mover"  # tablemover.local.mariadb's move user


def start_read_replica(root: Path, source: LocalMariaDB) -> LocalMariaDB:
    """A GTID replica of ``source`` from its position now, counting rows read (userstat), the move
    user able to read a move from it."""
    replica = LocalMariaDB(
        root, server_id=15, extra_args=("--skip-slave-start", "--report-host=127.0.0.1", "--userstat=ON")
    )
    replica.install()
    replica.start()
    try:
        replicate(replica, source)
        grant_reader(replica)
    except BaseException:
        replica.stop()
        raise
    return replica


def caught_up(replica: LocalMariaDB, source: LocalMariaDB) -> None:
    """Wait until ``replica`` has executed everything ``source`` has (both runs start level)."""
    position = str(source.execute("SELECT @@global.gtid_binlog_pos")[0][0] or "")
    if replica.execute(f"SELECT MASTER_GTID_WAIT('{position}', {CATCH_UP_S})")[0][0] != 0:
        raise BenchError(f"the read replica did not reach the source's position {position}")


def server_cpu_s(server: LocalMariaDB) -> float:
    """CPU seconds the server's ``mariadbd`` has used so far."""
    return process_cpu_s(server.process.pid) if server.process is not None else 0.0


def counters(server: LocalMariaDB, db: str) -> dict[str, float]:
    """What the part compares before and after a move on one server."""
    table = server.execute(
        "SELECT COALESCE(SUM(ROWS_READ), 0) FROM information_schema.TABLE_STATISTICS "
        f"WHERE TABLE_SCHEMA = '{db}'"
    )
    user = server.execute(
        f"SELECT COALESCE(SUM(ROWS_READ), 0) FROM information_schema.USER_STATISTICS WHERE USER = '{MOVER}'"
    )
    return {
        "cpu_s": server_cpu_s(server),
        "table_rows_read": float(str(table[0][0])),
        "mover_rows_read": float(str(user[0][0])),
    }


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """``after - before`` per key (CPU to 0.01 s, rows whole)."""
    return {k: round(after[k] - before[k], 2 if k == "cpu_s" else None) for k in after}


def move_config(
    pair: LocalPair, workdir: Path, db: str, replica: LocalMariaDB | None, hooks: Path | None = None
) -> Path:
    """A move of ``db.sbtest1`` into ``<db>_dst``, reading from ``replica`` when given."""
    move: dict[str, Any] = {
        "name": db,
        "database": db,
        "target_database": f"{db}_dst",
        "state_database": f"{db}_state",  # dropped with the part's schemas
        "tables": [TABLE],
    }
    if hooks is not None:
        move["hooks_dir"] = str(hooks)
    sections: dict[str, dict[str, Any]] = {"control": {"socket": socket_path(workdir, db)}}
    if replica is not None:
        sections["replica"] = {"host": "127.0.0.1", "port": replica.port}
    path = workdir / f"{db}.toml"
    path.write_text(pair_config(pair, workdir, move, **sections))
    return path


def sampled_run(daemon: Daemon, sock: str, what: str) -> list[dict[str, Any]]:
    """Sample the daemon's ``status`` every :data:`SAMPLE_S` until it exits (0, else
    :class:`BenchError`); the samples: time, state, where it reads, the read replica's lag."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while daemon.poll() is None:
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: tablemover run did not finish within {RUN_TIMEOUT_S:.0f} s")
            doc = status(sock) or {}
            reading = doc.get("read_replica") or {}
            samples.append(
                {
                    "t": time.time(),
                    "state": doc.get("state"),
                    "reading_from": doc.get("reading_from") or "",
                    "lag_s": reading.get("lag_s"),
                }
            )
            time.sleep(SAMPLE_S)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    if daemon.returncode != 0:
        raise BenchError(f"{what}: tablemover run exited {daemon.returncode}:\n{daemon.tail()}")
    return samples


def read_where(samples: list[dict[str, Any]], replica: LocalMariaDB | None, what: str) -> str:
    """Where the run read (status's ``reading_from``); a :class:`BenchError` when not where it should."""
    seen = {s["reading_from"] for s in samples if s["reading_from"]}
    want = f"replica 127.0.0.1:{replica.port}" if replica is not None else "source "
    if not seen or not all(s.startswith(want) for s in seen):
        raise BenchError(f"{what}: read from {sorted(seen) or 'nowhere reported'}, expected {want.strip()}")
    return sorted(seen)[0]


def load_only_cpu_per_s(pair: LocalPair, rows: int, rate: int) -> float:
    """The primary's CPU seconds per second under the writer alone (no move)."""
    db = "bench_rr_loadonly"
    create_filled_table(pair.source, db, rows)
    writer = LightWriter(pair.source.socket, db, rows, rate, seed=0).start()
    try:
        time.sleep(0.5)  # the writer's connection and first writes
        before, started = server_cpu_s(pair.source), time.monotonic()
        time.sleep(LOAD_ONLY_S)
        used, took = server_cpu_s(pair.source) - before, time.monotonic() - started
    finally:
        writer.stop()
    if writer.error:
        raise BenchError(f"the write load failed: {writer.error}")
    pair.source.execute(f"DROP DATABASE `{db}`")
    return used / took


def loaded_move(
    pair: LocalPair,
    replica: LocalMariaDB,
    workdir: Path,
    db: str,
    rows: int,
    write_rate: int,
    use_replica: bool,
) -> dict[str, Any]:
    """Move a fresh ``rows``-row table to DONE under the writer, reading from ``replica`` or not;
    the primary's and the replica's CPU and rows read over the move."""
    create_filled_table(pair.source, db, rows)
    caught_up(replica, pair.source)
    reads_from = replica if use_replica else None
    config = move_config(pair, workdir, db, reads_from)
    writer = LightWriter(pair.source.socket, db, rows, write_rate, seed=rows).start()
    primary_before, replica_before = counters(pair.source, db), counters(replica, db)
    daemon = Daemon(config, workdir / f"{db}.log").start()
    try:
        samples = sampled_run(daemon, socket_path(workdir, db), db)
        primary_after, replica_after = counters(pair.source, db), counters(replica, db)
    finally:
        writer.stop()
    if writer.error:
        raise BenchError(f"{db}: the write load failed: {writer.error}")
    check_equal(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), f"after the {db} move")
    gate = daemon.find(MSG_GATE) or {}
    lags = [float(s["lag_s"]) for s in samples if s["lag_s"] is not None]
    return {
        "replica": use_replica,
        "reading_from": read_where(samples, reads_from, db),
        "rows": rows,
        "wall_s": round(daemon.ended_at - daemon.started_at, 3),
        "daemon_cpu_s": round(daemon.cpu_total_s, 2),
        "writes_committed": writer.commits,
        "gate_rows": gate.get("rows"),
        "primary": delta(primary_after, primary_before),
        "replica_server": delta(replica_after, replica_before),
        "read_replica_lag_max_s": round(max(lags), 3) if lags else None,
    }


def cutover(
    pair: LocalPair,
    replica: LocalMariaDB,
    workdir: Path,
    number: int,
    rows: int,
    write_rate: int,
    use_replica: bool,
) -> dict[str, Any]:
    """One complete small move under the writer (bench/outage.py's), reading from ``replica`` or not."""
    db = f"bench_rr_cut_{'r' if use_replica else 'p'}{number}"
    create_filled_table(pair.source, db, rows)
    caught_up(replica, pair.source)
    hooks, stamp = workdir / f"{db}-hooks", workdir / f"{db}-hook-started"
    write_hook(hooks, stamp)
    reads_from = replica if use_replica else None
    config = move_config(pair, workdir, db, reads_from, hooks)
    writer = LightWriter(pair.source.socket, db, rows, write_rate, seed=number).start()
    daemon = Daemon(config, workdir / f"{db}.log").start()
    try:
        samples = sampled_run(daemon, socket_path(workdir, db), db)
    finally:
        writer.stop()
    if writer.error:
        raise BenchError(f"{db}: the write load failed: {writer.error}")
    check_equal(pair, (db, f"_{TABLE}_moved"), (f"{db}_dst", TABLE), f"after the {db} move")
    outage = daemon.first(MSG_OUTAGE)
    drained = daemon.find(MSG_DRAINED) or {}
    hook_started = float(stamp.read_text().strip()) if stamp.exists() else None
    app_blocked_ms = (
        round((hook_started - writer.first_missing_sent_at) * 1000)
        if hook_started is not None and writer.first_missing_sent_at is not None
        else None
    )
    before_rename = [
        s for s in samples if s["state"] in ("COPYING", "CUTOVER_STARTED") and s["lag_s"] is not None
    ]
    return {
        "replica": use_replica,
        "reading_from": read_where(samples, reads_from, db),
        "outage_ms": int(outage["outage_ms"]),
        "lock_wait_ms": outage.get("lock_wait_ms"),
        "drain_ms": drained.get("waited_ms"),
        "app_blocked_ms": app_blocked_ms,
        "lag_at_cutover_s": before_rename[-1]["lag_s"] if before_rename else None,
        "writes_committed": writer.commits,
        "run_wall_s": round(daemon.ended_at - daemon.started_at, 3),
    }


def abba(number: int) -> tuple[bool, bool]:
    """Whether the runs of pair ``number`` (from 1) read from the replica: without then with, then
    with then without, ...: a machine that gets busier or quieter during the part (others share
    it) weighs on both sides alike."""
    return (False, True) if number % 2 else (True, False)


def _round(value: float, digits: int) -> float:
    """``value`` to ``digits`` decimals (a whole number for 0)."""
    return round(value, digits) if digits else round(value)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _med(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return median(values)


def load_figures(runs: list[dict[str, Any]], load_cpu_per_s: float) -> dict[str, Any]:
    """Medians of the load runs each way, the move's own share of the primary's CPU, the ratios."""
    for run in runs:
        run["primary_cpu_move_s"] = round(run["primary"]["cpu_s"] - load_cpu_per_s * run["wall_s"], 2)
    plain = [r for r in runs if not r["replica"]]
    via = [r for r in runs if r["replica"]]
    out: dict[str, Any] = {}
    for label, group in (("without_replica", plain), ("with_replica", via)):
        out[label] = {
            "wall_s": round(_med(group, "wall_s"), 3),
            "primary_cpu_s": round(_med(group, "primary", "cpu_s"), 2),
            "primary_cpu_move_s": round(_med(group, "primary_cpu_move_s"), 2),
            "primary_table_rows_read": round(_med(group, "primary", "table_rows_read")),
            "primary_mover_rows_read": round(_med(group, "primary", "mover_rows_read")),
            "replica_cpu_s": round(_med(group, "replica_server", "cpu_s"), 2),
            "replica_table_rows_read": round(_med(group, "replica_server", "table_rows_read")),
            "replica_mover_rows_read": round(_med(group, "replica_server", "mover_rows_read")),
            "writes_committed": round(_med(group, "writes_committed")),
        }
    w, wo = out["with_replica"], out["without_replica"]
    out["ratios_with_without"] = {
        key: _ratio(w[key], wo[key])
        for key in (
            "primary_cpu_s",
            "primary_cpu_move_s",
            "primary_table_rows_read",
            "primary_mover_rows_read",
            "wall_s",
        )
    }
    return out


# Per-cutover figure -> (its p50 key, its max key, decimals) in the part's JSON.
OUTAGE_KEYS = {
    "outage_ms": ("p50_ms", "max_ms", 0),
    "drain_ms": ("drain_p50_ms", "drain_max_ms", 0),
    "app_blocked_ms": ("app_blocked_p50_ms", "app_blocked_max_ms", 0),
    "lag_at_cutover_s": ("lag_at_cutover_p50_s", "lag_at_cutover_max_s", 3),
}


def outage_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 and max of the outage (and of the drain, the writer's view, the replica's lag) each way."""
    out: dict[str, Any] = {}
    for label, group in (
        ("without_replica", [r for r in runs if not r["replica"]]),
        ("with_replica", [r for r in runs if r["replica"]]),
    ):
        figures: dict[str, Any] = {"cutovers": len(group)}
        for key, (p50, top, digits) in OUTAGE_KEYS.items():
            values = [float(r[key]) for r in group if r[key] is not None]
            figures[key] = [_round(v, digits) for v in values]
            figures[p50] = _round(percentile(values, 50), digits) if values else None
            figures[top] = _round(max(values), digits) if values else None
        out[label] = figures
    w, wo = out["with_replica"], out["without_replica"]
    out["ratios_with_without"] = {
        key: _ratio(w[key], wo[key]) if w[key] is not None and wo[key] is not None else None
        for key in ("p50_ms", "max_ms")
    }
    return out


def bench_read_replica(
    pair: LocalPair,
    workdir: Path,
    load_rows: int = DEFAULT_LOAD_ROWS,
    cutovers: int = DEFAULT_CUTOVERS,
    cutover_rows: int = DEFAULT_CUTOVER_ROWS,
    write_rate: int = DEFAULT_WRITE_RATE,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, Any]:
    """Both measurements (``load_rows`` 0 or ``cutovers`` 0 skips one); the replica is stopped at
    the end (its files under ``workdir``) and the source's userstat switched off again."""
    replica = start_read_replica(workdir / "read-replica", pair.source)
    pair.source.execute("SET GLOBAL userstat = ON")
    out: dict[str, Any] = {"write_rate_per_s": write_rate}
    try:
        if load_rows:
            load_cpu = load_only_cpu_per_s(pair, load_rows // 10, write_rate)
            runs = []
            for i in range(1, repeats + 1):
                for use in abba(i):
                    db = f"bench_rr_load_{'r' if use else 'p'}{i}"
                    runs.append(loaded_move(pair, replica, workdir, db, load_rows, write_rate, use))
            out["load"] = {
                "rows": load_rows,
                "repeats": repeats,
                "primary_cpu_load_only_per_s": round(load_cpu, 3),
                **load_figures(runs, load_cpu),
                "runs": runs,
            }
        if cutovers:
            cuts = [
                cutover(pair, replica, workdir, n, cutover_rows, write_rate, use)
                for n in range(1, cutovers + 1)
                for use in abba(n)
            ]
            out["outage"] = {"table_rows": cutover_rows, **outage_figures(cuts), "runs": cuts}
    finally:
        pair.source.execute("SET GLOBAL userstat = OFF")
        replica.stop()
        shutil.rmtree(workdir / "read-replica", ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the part alone on a pair of its own: ``python -m bench.read_replica``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load-rows", type=int, default=DEFAULT_LOAD_ROWS)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    p.add_argument("--cutovers", type=int, default=DEFAULT_CUTOVERS)
    p.add_argument("--cutover-rows", type=int, default=DEFAULT_CUTOVER_ROWS)
    p.add_argument("--write-rate", type=int, default=DEFAULT_WRITE_RATE)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-read-replica-"))
    pair = start_pair(root=root / "servers")
    try:
        grant_mover(pair, SCHEMA_GRANT)
        workdir = root / "work"
        workdir.mkdir()
        result = bench_read_replica(
            pair, workdir, args.load_rows, args.cutovers, args.cutover_rows, args.write_rate, args.repeats
        )
        print(json.dumps(result, indent=2))
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
