"""Keep-up against native MariaDB replication of the same table under the same sysbench load.

Two runs, one after the other, each on a fresh schema with a freshly prepared sysbench table of the
same size, under the same load: ``sysbench oltp_write_only --threads=T --rate=0 --time=S`` with the
same ``--rand-seed``, on the source with the throwaway servers' relaxed commit settings
(``sync_binlog=0``, ``innodb_flush_log_at_trx_commit=2``):

1. ``tablemover``: a move of the table held before its cutover (:func:`bench.keepup.sysbench_move`),
   the daemon applying to the target server;
2. ``native``: a third ``mariadbd`` (server_id 3, the same settings as the target: binlog and
   ``log_slave_updates`` on, relaxed commits), started for this run and stopped after it, replicating
   from the source with ``replicate_do_table=<db>.sbtest1``, ``CHANGE MASTER TO ...
   MASTER_USE_GTID=slave_pos`` and ``START SLAVE`` from the source's position before the schema was
   created (so the replica gets the table by replicating its creation and fill). Default replica
   settings otherwise: one SQL thread (``slave_parallel_threads=0``), as the daemon has one writer.

Why one after the other and not both at once against one source: this machine has two cores, and
both appliers are CPU-bound; running them together would make each one's figure depend on how the
kernel shared the cores between the daemon and the replica's SQL thread, not on how fast either
applies. Run separately, each gets the same machine with the same other processes (source, sysbench,
one applying server). The price is that the two loads are equal in shape (same command, seed, table
size) but not transaction for transaction: sysbench commits as fast as the source lets it, which
depends on how much CPU the applier leaves it; the keep-up ratio (applied over committed during the
load) is what normalises that, and both committed rates are reported.

Both are measured by :func:`bench.keepup.measure_load` against the same source samples: lag, the
keep-up ratio and the catch-up time (load end until the applied position, the daemon's committed
``applied_gtid`` or the replica's ``@@gtid_slave_pos``, covers the source's final
``@@gtid_binlog_pos``). Targets for tablemover: catch-up < 2 s and a keep-up ratio >= 0.95 of
native's.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pymysql
from loadkit import sysbench_cmd, sysbench_prepare

from bench.common import (
    TABLE,
    BenchError,
    content_digest,
    gtid_pos,
    parse_position,
    rate,
)
from bench.keepup import Applied, SysbenchLoad, measure_load, sysbench_move
from tablemover.local.mariadb import LocalMariaDB, LocalPair

DB_TABLEMOVER = "bench_native_tm"
DB_NATIVE = "bench_native_rpl"
REPLICA_SERVER_ID = 3
REPL_USER, REPL_PASSWORD = "bench_repl", "bench-repl-pass"
SETTLE_TIMEOUT_S = 300  # the replica applying the table's creation and fill before the load
CATCH_UP_TARGET_S = 2.0
VS_NATIVE_TARGET = 0.95
METHOD = (
    "sequential: the tablemover run, then the native run, each on a fresh schema with a freshly "
    "prepared table of the same size under the same sysbench command and seed (not simultaneous: "
    "on 2 cores two CPU-bound appliers would measure how the kernel shared the cores between them)"
)


class ReplicaApplier:
    """A native replica, read through ``@@gtid_slave_pos`` (a :class:`bench.keepup.Applier`)."""

    def __init__(self, replica: LocalMariaDB) -> None:
        self.replica = replica
        self.conn = replica.admin()

    def applied(self) -> Applied:
        """The replica's applied position; a stopped SQL or IO thread is a :class:`BenchError`."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT @@global.gtid_slave_pos, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                "WHERE VARIABLE_NAME = 'SLAVE_RUNNING'"
            )
            row = cur.fetchone()
        if row is None or str(row[1]).upper() != "ON":
            raise BenchError(f"the native replica stopped replicating: {slave_error(self.replica)}")
        return Applied(parse_position(str(row[0] or "")))

    def pids(self) -> dict[str, int]:
        """The replica server."""
        process = self.replica.process
        return {"replica_mariadbd": process.pid if process is not None else -1}

    def close(self) -> None:
        """Close its connection."""
        self.conn.close()


def slave_error(replica: LocalMariaDB) -> str:
    """The replica's replication threads' state and last errors, for an error message."""
    conn = replica.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
    finally:
        conn.close()
    if row is None:
        return "no replication configured"
    status = dict(zip(names, row, strict=False))
    keys = ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error", "Gtid_IO_Pos")
    return ", ".join(f"{k}={status.get(k)!r}" for k in keys)


def start_replica(root: Path, db: str) -> LocalMariaDB:
    """A fresh third ``mariadbd`` filtering replication to ``db``.sbtest1 (not yet replicating)."""
    replica = LocalMariaDB(
        root,
        server_id=REPLICA_SERVER_ID,
        extra_args=("--skip-slave-start", f"--replicate-do-table={db}.{TABLE}"),
    )
    replica.install()
    replica.start()
    return replica


def replicate(
    pair: LocalPair,
    replica: LocalMariaDB,
    workdir: Path,
    sysbench: str,
    rows: int,
    seconds: int,
    sample_s: float,
    threads: int,
    seed: int,
) -> dict[str, Any]:
    """The native run (module docstring): replicate, prepare, load, catch up, compare."""
    source = pair.source
    source.execute(
        f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'",
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'",
    )
    start = gtid_pos(source)  # before the schema exists: the replica replicates its creation
    replica.execute(
        f"SET GLOBAL gtid_slave_pos = '{start}'",
        f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {source.port}, "
        f"MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}', MASTER_USE_GTID = slave_pos",
        "START SLAVE",
    )
    source.execute(f"CREATE DATABASE `{DB_NATIVE}`")
    cmd = sysbench_cmd(sysbench, source.socket, DB_NATIVE, rows, seconds, threads=threads, seed=seed)
    started = time.perf_counter()
    sysbench_prepare(cmd, DB_NATIVE)
    prepared = gtid_pos(source)
    try:
        waited = replica.execute(f"SELECT MASTER_GTID_WAIT('{prepared}', {SETTLE_TIMEOUT_S})")
    except pymysql.err.MySQLError as exc:
        raise BenchError(f"native: waiting for the replica failed: {exc}") from exc
    if str(waited[0][0]) != "0":
        raise BenchError(f"native: the replica did not apply the prepared table: {slave_error(replica)}")
    settle_s = time.perf_counter() - started

    applier = ReplicaApplier(replica)
    try:
        measured = measure_load(
            pair, SysbenchLoad(cmd, workdir / f"sysbench-{DB_NATIVE}.log"), applier, sample_s
        )
    except BenchError as exc:
        raise BenchError(f"native: {exc} ({slave_error(replica)})") from exc
    finally:
        applier.close()
    replica.execute("STOP SLAVE")
    src_digest, rpl_digest = (
        content_digest(source, DB_NATIVE, TABLE),
        content_digest(replica, DB_NATIVE, TABLE),
    )
    if src_digest != rpl_digest:
        raise BenchError(f"native: the replica's table {rpl_digest} differs from the source's {src_digest}")
    return {
        "table_rows": rows,
        "load": (
            f"sysbench oltp_write_only, 1 table, --threads={threads} --rate=0, {seconds} s, "
            f"--rand-seed={seed}"
        ),
        "replica": (
            f"mariadbd server_id={REPLICA_SERVER_ID}, replicate_do_table={DB_NATIVE}.{TABLE}, "
            "MASTER_USE_GTID=slave_pos, slave_parallel_threads=0, binlog + log_slave_updates on, "
            "innodb_flush_log_at_trx_commit=2, sync_binlog=0"
        ),
        "prepare_and_replicate_s": round(settle_s, 3),
        **measured,
        "verified_rows": src_digest[0],
    }


def bench_native(
    pair: LocalPair,
    workdir: Path,
    root: Path,
    sysbench: str,
    rows: int,
    seconds: int,
    sample_s: float,
    threads: int,
    seed: int,
) -> dict[str, Any]:
    """tablemover's keep-up and catch-up next to native replication's, same load (module docstring)."""
    tm = sysbench_move(
        pair, workdir, sysbench, DB_TABLEMOVER, rows, seconds, sample_s, threads=threads, seed=seed
    )
    replica = start_replica(root, DB_NATIVE)
    try:
        native = replicate(pair, replica, workdir, sysbench, rows, seconds, sample_s, threads, seed)
    finally:
        replica.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "method": METHOD,
        "tablemover": tm,
        "native": native,
        "tablemover_keepup_ratio": tm["keepup_ratio"],
        "native_keepup_ratio": native["keepup_ratio"],
        "keepup_vs_native": round(rate(tm["keepup_ratio"], native["keepup_ratio"]), 3),
        "tablemover_catch_up_s": tm["catch_up_s"],
        "native_catch_up_s": native["catch_up_s"],
        "catch_up_target_s": CATCH_UP_TARGET_S,
        "vs_native_target": VS_NATIVE_TARGET,
    }
