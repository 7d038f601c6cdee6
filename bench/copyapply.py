"""The copy and binlog measurements: a timed copy, a binlog backlog applied by a resumed daemon, and
the parse-only reader of the same events (bench/README.md, "Copy and binlog").

``bench.run``'s ``copy`` and ``binlog`` parts and :mod:`bench.tls` (the same figures over TLS beside
plain) both run them; ``server_keys`` are extra keys for both server sections of the move (the TLS
keys), also used by the parse-only reader's connection.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench.common import (
    MSG_CAUGHT_UP,
    MSG_RESUMING,
    MSG_STATE_CHANGED,
    TABLE,
    BenchError,
    ServerKeys,
    check_equal,
    create_filled_table,
    gtid_pos,
    preflight_tls,
    rate,
    run_tablemover,
    wall_s,
    write_config,
)
from tablemover import tls
from tablemover.config import ServerSection
from tablemover.local.mariadb import MOVER_PASSWORD, MOVER_USER, LocalMariaDB, LocalPair

BINLOG_TARGET_RATIO = 0.7
PARSE_SERVER_ID = 424_242  # the bare reader's replica id; distinct from the daemon's derived one
PARSE_IDLE_TIMEOUT_S = 30


def mover_section(server: LocalMariaDB, server_keys: ServerKeys | None = None) -> ServerSection:
    """The ``[source]``/``[target]`` section the bench's configs give the move user for ``server``
    (TCP on loopback, as :func:`tablemover.local.mariadb.pair_config` writes it), with ``server_keys``."""
    return ServerSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": server.port,
            "user": MOVER_USER,
            "password": MOVER_PASSWORD,
            **(server_keys or {}),
        }
    )


def timed_copy(
    pair: LocalPair,
    workdir: Path,
    db: str,
    rows: int,
    server_keys: ServerKeys | None = None,
    copy_threads: int = 1,
) -> dict[str, Any]:
    """Move a fresh ``rows``-row table of schema ``db`` (no concurrent writes) until copied and caught
    up; its copy phase, wall time and the daemon's peak RSS. The target must equal the source after.

    ``server_keys`` go into both server sections of the move's config (the ``tls`` part's TLS keys).
    ``copy_threads`` 1 (the copy figures' serial copy, what they were always measured with) unless
    asked: the default of 0 would follow the machine's cores."""
    create_filled_table(pair.source, db, rows)
    config = write_config(pair, workdir, db, db, [TABLE], server_keys=server_keys, copy_threads=copy_threads)
    daemon = run_tablemover(config, db)
    copying = daemon.first(MSG_STATE_CHANGED, state="COPYING")
    done = daemon.first(MSG_CAUGHT_UP)
    copy_phase_s = float(done["ts"]) - float(copying["ts"])
    check_equal(pair, (db, TABLE), (f"{db}_dst", TABLE), f"after the {db} run")
    return {
        "rows": rows,
        "rows_copied": int(done.get("rows_copied", 0)),
        "total_wall_s": round(wall_s(daemon), 3),
        "copy_phase_s": round(copy_phase_s, 3),
        "rows_per_s": round(rate(rows, copy_phase_s)),
        "peak_rss_mb": daemon.peak_rss_mb,
        "tls": preflight_tls(daemon),
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


def parse_only(
    server: LocalMariaDB,
    db: str,
    table: str,
    start_gtid: str,
    end_gtid: str,
    server_keys: ServerKeys | None = None,
) -> dict[str, float]:
    """Read the binlog from ``start_gtid`` through the commit of ``end_gtid`` with a bare mysql-replication
    reader; return the event count and the seconds it took (connecting included, as for the daemon).

    The reader asks for the event types the daemon's stream asks for (so its count matches what the
    daemon reports as ``events_applied``) and touches ``.rows`` of every row event so rows are
    really decoded. ``tablemover.stream`` is imported so its decoding patches apply, as in the daemon.

    It connects as the daemon's stream does, through :func:`tablemover.tls.pymysql_connector` with
    ``server_keys`` (the ``tls`` part's TLS keys; none: the config defaults, as the daemon's), so the
    reference pays for the same transport as the measured run.

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

    section = mover_section(server, server_keys)
    events = row_events = rows = 0
    current_gtid = ""
    reached_end = False
    started = time.perf_counter()
    reader = Reader(
        connection_settings={
            "host": section.host,
            "port": section.port,
            "user": section.user,
            "password": section.password.get_secret_value(),
            "charset": "utf8mb4",
            "read_timeout": PARSE_IDLE_TIMEOUT_S,  # a blocking read past the end must not hang forever
        },
        pymysql_wrapper=tls.pymysql_connector(section, "source", "binlog"),
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
        freeze_schema=True,  # as the daemon's reader: a table map is parsed once per table id
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


def bench_binlog(
    pair: LocalPair,
    workdir: Path,
    table_rows: int,
    transactions: int,
    db: str = "bench_binlog",
    server_keys: ServerKeys | None = None,
) -> dict[str, Any]:
    """Parse+apply rate of ``tablemover run`` on a binlog backlog vs a parse-only reader of the same events.

    The move is first run to completion on the filled table (its copy is then done and its checkpoint
    sits at the source's position), then the workload is written, then a second ``tablemover run``
    resumes with nothing left to copy and only the backlog to stream and apply. The pre-filled rows
    are thereby outside the measured binlog range, and the run is deterministic (no race between the
    workload and the daemon).

    ``server_keys`` go into both server sections of the move's config and into the parse-only reader's
    connection (the ``tls`` part).
    """
    create_filled_table(pair.source, db, table_rows)
    config = write_config(pair, workdir, db, db, [TABLE], server_keys=server_keys)
    first = run_tablemover(config, f"{db}, initial copy")
    events_before = int(first.first(MSG_CAUGHT_UP).get("events_applied", 0))

    start_gtid = gtid_pos(pair.source)
    write_s = generate_workload(pair.source, db, TABLE, table_rows, transactions)
    end_gtid = gtid_pos(pair.source)

    parsed = parse_only(pair.source, db, TABLE, start_gtid, end_gtid, server_keys)

    second = run_tablemover(config, f"{db}, apply backlog")
    resumed = second.first(MSG_RESUMING)
    done = second.first(MSG_CAUGHT_UP)
    apply_s = float(done["ts"]) - float(resumed["ts"])
    events_applied = int(done.get("events_applied", 0)) - events_before
    check_equal(pair, (db, TABLE), (f"{db}_dst", TABLE), "after the apply run")

    apply_rate = rate(events_applied, apply_s)
    parse_rate = rate(parsed["events"], parsed["seconds"])
    return {
        "table_rows": table_rows,
        "transactions": transactions,
        "source_write_s": round(write_s, 3),
        "source_write_tps": round(rate(transactions, write_s)),
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
        "apply_total_wall_s": round(wall_s(second), 3),
        "apply_events_per_s": round(apply_rate),
        "ratio": round(rate(apply_rate, parse_rate), 3),
        "target_ratio": BINLOG_TARGET_RATIO,
        "tls": preflight_tls(second),
    }
