"""Benchmark tablemover against same-run references (spec section 10).

Run as ``.venv/bin/python -m bench.run [--rows N] [--out FILE]``. It starts its own private source and
target ``mariadbd`` under a temporary directory (never the system server), measures, writes JSON and
prints a short table. Each figure is paired with a reference taken in the same run on the same
servers, so the *ratios* are comparable across machines while the absolute rates are not:

* ``copy``: rows/s of ``tablemover run`` copying a sysbench-shaped table with no concurrent writes,
  against the target server's own ``INSERT INTO t2 SELECT * FROM t1`` rate for the same rows.
* ``binlog``: events/s that ``tablemover run`` parses *and applies* from a backlog of small
  transactions, against a bare mysql-replication reader that only parses the same events.
* ``machine``: what the numbers were measured on.

Benchmarks report; they do not judge. The exit status is non-zero only when a ``tablemover run``
fails or a moved table does not match its source afterwards (then the figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tablemover.local.mariadb import (
    MOVER_PASSWORD,
    MOVER_USER,
    LocalMariaDB,
    LocalPair,
    grant_mover,
    pair_config,
    start_pair,
)

DEFAULT_ROWS = 200_000
DEFAULT_OUT = "bench-results/bench.json"
DEFAULT_BINLOG_ROWS = 20_000
DEFAULT_TRANSACTIONS = 20_000
SCHEMA_GRANT = "bench\\_%"  # every schema the benchmark creates starts with bench_
TABLE = "sbtest1"
COPY_TARGET_RATIO = 0.6
BINLOG_TARGET_RATIO = 0.7
RUN_TIMEOUT_S = 900.0
PARSE_SERVER_ID = 424_242  # the bare reader's replica id; distinct from the daemon's derived one
PARSE_IDLE_TIMEOUT_S = 30

MSG_STATE_CHANGED = "state changed"
MSG_RESUMING = "resuming move from checkpoint"
MSG_CAUGHT_UP = "copy complete and caught up"


class BenchError(RuntimeError):
    """A measurement could not be taken (a run failed, or its result is wrong)."""


# --- helpers ------------------------------------------------------------------------------------


def create_sbtest_sql(table: str) -> str:
    """The sysbench ``sbtest`` table definition."""
    return (
        f"CREATE TABLE `{table}` ("
        "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "k INT NOT NULL DEFAULT 0, "
        "c CHAR(120) NOT NULL DEFAULT '', "
        "pad CHAR(60) NOT NULL DEFAULT '', "
        "KEY k_1 (k)) ENGINE=InnoDB"
    )


def fill_sbtest_sql(table: str, rows: int) -> str:
    """Fill ``table`` with ``rows`` deterministic rows; the same statement gives the same data anywhere."""
    return (
        f"INSERT INTO `{table}` (id, k, c, pad) "
        f"SELECT seq, (seq * 7919) % {rows} + 1, "
        "LEFT(CONCAT(SHA2(seq, 256), SHA2(seq + 1000000007, 256)), 119), "
        "LEFT(SHA2(seq * 3, 256), 59) "
        f"FROM seq_1_to_{rows}"
    )


def content_digest(server: LocalMariaDB, db: str, table: str) -> tuple[int, int]:
    """(row count, order-independent checksum) of a sbtest-shaped table, to compare source and target."""
    rows = server.execute(
        f"SELECT COUNT(*), COALESCE(BIT_XOR(CRC32(CONCAT_WS('|', id, k, c, pad))), 0) FROM `{db}`.`{table}`"
    )
    count, digest = rows[0]
    return int(str(count)), int(str(digest))


def gtid_pos(server: LocalMariaDB) -> str:
    """The server's current binlog GTID position (where a new stream would start)."""
    return str(server.execute("SELECT @@global.gtid_binlog_pos")[0][0] or "")


def write_config(pair: LocalPair, workdir: Path, name: str, database: str, tables: list[str]) -> Path:
    """A move config for ``database.tables`` into ``<database>_dst``; returns its path."""
    move = {"name": name, "database": database, "target_database": f"{database}_dst", "tables": tables}
    text = pair_config(pair, workdir, move, control={"socket": str(workdir / f"{name}.sock")})
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


@dataclass
class RunResult:
    """One finished ``tablemover run``: its wall time and its JSON log lines."""

    wall_s: float
    lines: list[dict[str, Any]]

    def first(self, msg: str, **fields: Any) -> dict[str, Any]:
        """The first log line with message ``msg`` whose fields equal ``fields``."""
        for line in self.lines:
            if line.get("msg") == msg and all(line.get(k) == v for k, v in fields.items()):
                return line
        raise BenchError(f"tablemover run logged no {msg!r} line with {fields}")


def run_tablemover(config: Path, label: str) -> RunResult:
    """Run ``tablemover run -c config`` to completion; raise :class:`BenchError` (with its log) on failure."""
    # Any TABLEMOVER_* variable would change the run (config overrides, fault injection): drop them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEMOVER_")}
    # Stop once copied and caught up: the cutover is not what is measured here, and the binlog
    # benchmark resumes the same move afterwards.
    cmd = [
        sys.executable,
        "-m",
        "tablemover",
        "--log-format",
        "json",
        "run",
        "--stop-before-cutover",
        "-c",
        str(config),
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        tail = _tail(
            exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
        )
        raise BenchError(
            f"tablemover run ({label}) did not finish within {RUN_TIMEOUT_S:.0f} s:\n{tail}"
        ) from exc
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"tablemover run ({label}) exited {proc.returncode}:\n{_tail(proc.stderr)}")
    lines: list[dict[str, Any]] = []
    for raw in proc.stderr.splitlines():
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue  # a library's stray non-JSON output
        if isinstance(parsed, dict):
            lines.append(parsed)
    return RunResult(wall, lines)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


# --- measurements -------------------------------------------------------------------------------


def bench_copy(pair: LocalPair, workdir: Path, rows: int) -> dict[str, Any]:
    """Copy rate of ``tablemover run`` vs the target's own ``INSERT ... SELECT`` of the same rows."""
    db = "bench_copy"
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
    pair.source.execute(
        f"CREATE DATABASE `{db}`", f"USE `{db}`", create_sbtest_sql(TABLE), fill_sbtest_sql(TABLE, rows)
    )
    result = run_tablemover(write_config(pair, workdir, "bench_copy", db, [TABLE]), "copy")
    copying = result.first(MSG_STATE_CHANGED, state="COPYING")
    done = result.first(MSG_CAUGHT_UP)
    copy_phase_s = float(done["ts"]) - float(copying["ts"])
    if content_digest(pair.source, db, TABLE) != content_digest(pair.target, f"{db}_dst", TABLE):
        raise BenchError(f"after the copy run, {db}_dst.{TABLE} on the target differs from the source")

    rows_per_s = _rate(rows, copy_phase_s)
    reference_rows_per_s = _rate(rows, reference_s)
    return {
        "rows": rows,
        "rows_copied": int(done.get("rows_copied", 0)),
        "total_wall_s": round(result.wall_s, 3),
        "copy_phase_s": round(copy_phase_s, 3),
        "rows_per_s": round(rows_per_s),
        "reference_s": round(reference_s, 3),
        "reference_rows_per_s": round(reference_rows_per_s),
        "ratio": round(_rate(rows_per_s, reference_rows_per_s), 3),
        "target_ratio": COPY_TARGET_RATIO,
    }


def generate_workload(server: LocalMariaDB, db: str, table: str, id_range: int, transactions: int) -> float:
    """Run ``transactions`` small sysbench-like write transactions from one client; returns seconds.

    Half update ``c`` by id, a quarter delete a row and insert it again (two statements, one
    transaction), a quarter insert a new row. Seeded, so every run writes the same binlog.
    """
    rng = random.Random(20240601)
    conn = server.admin(db)  # autocommit: a single statement is its own transaction
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            for _ in range(transactions):
                kind = rng.random()
                row_id = rng.randint(1, id_range)
                c = rng.randbytes(60).hex()[:119]
                if kind < 0.5:
                    cur.execute(f"UPDATE `{table}` SET c = %s WHERE id = %s", (c, row_id))
                elif kind < 0.75:
                    cur.execute("BEGIN")
                    cur.execute(f"DELETE FROM `{table}` WHERE id = %s", (row_id,))
                    cur.execute(
                        f"INSERT INTO `{table}` (id, k, c, pad) VALUES (%s, %s, %s, %s)",
                        (row_id, rng.randint(1, id_range), c, rng.randbytes(30).hex()[:59]),
                    )
                    cur.execute("COMMIT")
                else:
                    cur.execute(
                        f"INSERT INTO `{table}` (k, c, pad) VALUES (%s, %s, %s)",
                        (rng.randint(1, id_range), c, rng.randbytes(30).hex()[:59]),
                    )
            return time.perf_counter() - started
    finally:
        conn.close()


def parse_only(server: LocalMariaDB, db: str, table: str, start_gtid: str, end_gtid: str) -> dict[str, float]:
    """Read the binlog from ``start_gtid`` through the commit of ``end_gtid`` with a bare mysql-replication
    reader; return the event count and the seconds it took (connecting included, as for the daemon).

    The reader asks for the event types the daemon's stream asks for (so its count matches what the
    daemon reports as ``events_applied``) and touches ``.rows`` of every row event so rows are
    really decoded. ``tablemover.stream`` is imported so its decoding patches apply, as in the daemon.

    It reads in blocking mode and stops at ``end_gtid``'s commit, like the daemon stops once caught up.
    Non-blocking mode (``blocking=False``, read until the server's EOF) is not usable here: MariaDB
    10.11 resets a non-blocking GTID dump connection part-way through (deterministically, after about
    900 events of this workload), and the library then silently reconnects at the start position
    forever.
    """
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

    import tablemover.stream  # noqa: F401  (patches RowsEvent decoding, as in the daemon)

    class Reader(BinLogStreamReader):  # type: ignore[misc]
        """The library's reader, except that a lost connection raises instead of silently
        reconnecting at the start position (which would re-read the binlog forever)."""

        connected = False

        def _BinLogStreamReader__connect_to_stream(self) -> None:
            if self.connected:
                raise BenchError("the parse-only binlog connection was lost (or idled out before end_gtid)")
            self.connected = True
            super()._BinLogStreamReader__connect_to_stream()

    events = row_events = rows = 0
    current_gtid = ""
    reached_end = False
    started = time.perf_counter()
    reader = Reader(
        connection_settings={
            "host": "127.0.0.1",
            "port": server.port,
            "user": MOVER_USER,
            "password": MOVER_PASSWORD,
            "charset": "utf8mb4",
            "read_timeout": PARSE_IDLE_TIMEOUT_S,  # a blocking read past the end must not hang forever
        },
        server_id=PARSE_SERVER_ID,
        blocking=True,
        is_mariadb=True,
        auto_position=start_gtid,
        only_schemas=[db],
        only_tables=[table],
        only_events=[
            MariadbGtidEvent,
            QueryEvent,
            XidEvent,
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
        ],
        enable_logging=False,
    )
    try:
        for ev in reader:
            events += 1
            if isinstance(ev, RowsEvent):
                row_events += 1
                rows += len(ev.rows)
            elif isinstance(ev, MariadbGtidEvent):
                current_gtid = str(ev.gtid)
            elif isinstance(ev, XidEvent) and current_gtid == end_gtid:
                reached_end = True
                break
    finally:
        reader.close()
    seconds = time.perf_counter() - started
    if not reached_end:
        raise BenchError(f"the parse-only reader ended before the commit of {end_gtid}")
    return {"events": events, "row_events": row_events, "rows": rows, "seconds": seconds}


def bench_binlog(pair: LocalPair, workdir: Path, table_rows: int, transactions: int) -> dict[str, Any]:
    """Parse+apply rate of ``tablemover run`` on a binlog backlog vs a parse-only reader of the same events.

    The move is first run to completion on the filled table (its copy is then done and its checkpoint
    sits at the source's position), then the workload is written, then a second ``tablemover run``
    resumes with nothing left to copy and only the backlog to stream and apply. The pre-filled rows
    are thereby outside the measured binlog range, and the run is deterministic (no race between the
    workload and the daemon).
    """
    db = "bench_binlog"
    pair.source.execute(
        f"CREATE DATABASE `{db}`", f"USE `{db}`", create_sbtest_sql(TABLE), fill_sbtest_sql(TABLE, table_rows)
    )
    config = write_config(pair, workdir, "bench_binlog", db, [TABLE])
    first = run_tablemover(config, "binlog, initial copy")
    events_before = int(first.first(MSG_CAUGHT_UP).get("events_applied", 0))

    start_gtid = gtid_pos(pair.source)
    write_s = generate_workload(pair.source, db, TABLE, table_rows, transactions)
    end_gtid = gtid_pos(pair.source)

    parsed = parse_only(pair.source, db, TABLE, start_gtid, end_gtid)

    second = run_tablemover(config, "binlog, apply backlog")
    resumed = second.first(MSG_RESUMING)
    done = second.first(MSG_CAUGHT_UP)
    apply_s = float(done["ts"]) - float(resumed["ts"])
    events_applied = int(done.get("events_applied", 0)) - events_before
    if content_digest(pair.source, db, TABLE) != content_digest(pair.target, f"{db}_dst", TABLE):
        raise BenchError(f"after the apply run, {db}_dst.{TABLE} on the target differs from the source")

    apply_rate = _rate(events_applied, apply_s)
    parse_rate = _rate(parsed["events"], parsed["seconds"])
    return {
        "table_rows": table_rows,
        "transactions": transactions,
        "source_write_s": round(write_s, 3),
        "source_write_tps": round(_rate(transactions, write_s)),
        "start_gtid": start_gtid,
        "end_gtid": end_gtid,
        "checkpoint_gtid": str(resumed.get("applied_gtid", "")),
        "parse_only_events": int(parsed["events"]),
        "parse_only_row_events": int(parsed["row_events"]),
        "parse_only_rows": int(parsed["rows"]),
        "parse_only_s": round(parsed["seconds"], 3),
        "parse_only_events_per_s": round(parse_rate),
        "events_applied": events_applied,
        "apply_s": round(apply_s, 3),
        "apply_total_wall_s": round(second.wall_s, 3),
        "apply_events_per_s": round(apply_rate),
        "ratio": round(_rate(apply_rate, parse_rate), 3),
        "target_ratio": BINLOG_TARGET_RATIO,
    }


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


def format_table(results: dict[str, Any]) -> str:
    """A short aligned summary of ``results``."""
    copy, binlog, machine = results["copy"], results["binlog"], results["machine"]
    rows = [
        ("benchmark", "measured", "reference", "ratio", "target"),
        (
            "copy",
            f"{copy['rows_per_s']:,} rows/s",
            f"{copy['reference_rows_per_s']:,} rows/s",
            f"{copy['ratio']:.3f}",
            f">= {copy['target_ratio']}",
        ),
        (
            "binlog",
            f"{binlog['apply_events_per_s']:,} events/s",
            f"{binlog['parse_only_events_per_s']:,} events/s",
            f"{binlog['ratio']:.3f}",
            f">= {binlog['target_ratio']}",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"copy:   {copy['rows']:,} rows, copy phase {copy['copy_phase_s']} s "
        f"(run wall {copy['total_wall_s']} s), reference INSERT...SELECT {copy['reference_s']} s"
    )
    lines.append(
        f"binlog: {binlog['transactions']:,} txns written at {binlog['source_write_tps']:,} tps; "
        f"{binlog['events_applied']:,} events applied in {binlog['apply_s']} s, "
        f"{binlog['parse_only_events']:,} parsed in {binlog['parse_only_s']} s"
    )
    lines.append(
        f"machine: {machine['nproc']} x {machine['cpu_model']}, {machine['mem_total_mb']} MB, "
        f"Python {machine['python']}, MariaDB {machine['mariadbd']}"
    )
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the copy benchmark's table")
    p.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
    p.add_argument("--binlog-rows", type=int, default=DEFAULT_BINLOG_ROWS, help="rows in the binlog table")
    p.add_argument(
        "--transactions", type=int, default=DEFAULT_TRANSACTIONS, help="write transactions in the backlog"
    )
    args = p.parse_args(argv)
    for name in ("rows", "binlog_rows", "transactions"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Start a server pair, run every benchmark, write the JSON and print the table."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-"))
    pair: LocalPair | None = None
    try:
        workdir = root / "work"
        workdir.mkdir()
        print("starting source and target servers ...", file=sys.stderr)
        pair = start_pair(row_metadata="FULL", root=root / "servers")
        grant_mover(pair, SCHEMA_GRANT)
        results: dict[str, Any] = {"machine": machine_info(pair)}
        print(f"copy: {args.rows:,} rows ...", file=sys.stderr)
        results["copy"] = bench_copy(pair, workdir, args.rows)
        print(f"binlog: {args.transactions:,} transactions ...", file=sys.stderr)
        results["binlog"] = bench_binlog(pair, workdir, args.binlog_rows, args.transactions)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if pair is not None:
            pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["machine"]["bench_wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"\nwrote {out} ({results['machine']['bench_wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
