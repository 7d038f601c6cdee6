"""Stream decoding micro-benchmark: the binlog stream thread alone, on recorded events, no writer.

Run as ``.venv/bin/python -m bench.decode [--transactions N] [--metadata FULL|MINIMAL] [--rounds R]``.
It starts one private ``mariadbd`` (never the system server), writes the same small-transaction
workload as ``bench.run``'s ``binlog`` part (half ``UPDATE c`` by id, a quarter ``DELETE`` +
``INSERT`` in one transaction, a quarter ``INSERT``, seeded) to a sysbench-shaped table, and records
the raw binlog packets the server sends a GTID dump from the workload's start. The server is then
stopped: every timing replays the same recorded bytes from memory through pymysql's own packet
reader, so the figures measure parsing and translation only (no network, no server, no writer).
``--save FILE`` keeps the recording; ``--load FILE`` replays one without starting a server.

Timed, in interleaved rounds, on the same bytes; the figure is the best round's CPU seconds of this
process (the stream thread, and the pool's threads for the prototype; steadier than wall time on a
shared machine), wall time and the worker processes' CPU seconds are reported beside it:

* ``parse_only``: a bare mysql-replication reader with ``bench.run``'s reference options (the
  daemon's ``freeze_schema`` and decoding patches, the same event types), touching ``.rows`` of every
  row event; ``bench.run``'s ``binlog.parse_only_events_per_s`` is this reader on a live socket.
* ``stream_library``: tablemover's stream thread (``BinlogStream._pump``: framing, translation into
  row changes and commit markers, batching) with every event decoded by the library, as before
  ``rowcodec`` (``native_decode=False``).
* ``stream_native``: the same with the native framing and compiled row decoders (the default).
* ``workers_N`` (``--workers 2,4``): a prototype of decoding row-event bodies in N worker processes
  while this thread frames and translates, order restored before the batches are formed (see
  docs/benchmarks.md, "Stream decoding"); not what the daemon runs. One worker is ``stream_native``.

Every stream variant must produce the same batches as ``stream_library`` (row changes, commit
markers, event counts, final position) and count the events parse-only counts; the benchmark fails
otherwise. Output: a table and ``bench-results/decode.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import pickle
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql.connections
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

from bench.common import TABLE, BenchError, create_filled_table, gtid_pos, process_cpu_s
from bench.copyapply import generate_workload
from tablemover import rowcodec, stream
from tablemover.changes import RowChange, StreamBatch
from tablemover.config import ServerSection
from tablemover.decode import RowDecoder
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition
from tablemover.local.mariadb import LocalMariaDB
from tablemover.schema import Column, Index, TableSchema

DEFAULT_TRANSACTIONS = 20_000
DEFAULT_TABLE_ROWS = 20_000
DEFAULT_ROUNDS = 5
DEFAULT_OUT = "bench-results/decode.json"
DATABASE = "bench_decode"
RECORD_SERVER_ID = 424_243
EOF_PACKET = b"\xfe\x00\x00\x02\x00"


# --- recording ----------------------------------------------------------------------------------


@dataclass
class Recording:
    """The packets a GTID dump sent from ``start`` through the commit of ``end``."""

    packets: list[bytes]
    start: str
    end: str
    metadata: str  # the server's binlog_row_metadata
    schema: TableSchema
    column_names: list[str]  # what the library asks information_schema for under MINIMAL


def sbtest_schema(database: str) -> TableSchema:
    """The sbtest table as tablemover's inspection describes it (bench.common.create_sbtest_sql)."""
    columns = (
        Column("id", 0, "int", "int(11)", False, False, None),
        Column("k", 1, "int", "int(11)", False, False, None),
        Column("c", 2, "char", "char(120)", False, False, "utf8mb4"),
        Column("pad", 3, "char", "char(60)", False, False, "utf8mb4"),
    )
    indexes = (Index("PRIMARY", ("id",), True, False), Index("k_1", ("k",), False, False))
    return TableSchema(database, TABLE, columns, indexes, "", (), ())


def write_workload(server: LocalMariaDB, db: str, id_range: int, transactions: int) -> None:
    """bench.run's binlog workload (same mix, same seed), from one autocommit client."""
    generate_workload(server, db, TABLE, id_range, transactions)


def record(transactions: int, table_rows: int, metadata: str) -> Recording:
    """Start a server, write the workload, record the binlog packets of it, stop the server."""
    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-decode-"))
    server = LocalMariaDB(root / "source", server_id=1, row_metadata=metadata)
    try:
        server.install()
        server.start()
        create_filled_table(server, DATABASE, table_rows)
        start = gtid_pos(server)
        write_workload(server, DATABASE, table_rows, transactions)
        end = gtid_pos(server)
        packets = _record_packets(server, start, end)
        names = [
            str(r[0])
            for r in server.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                f"WHERE TABLE_SCHEMA='{DATABASE}' AND TABLE_NAME='{TABLE}' ORDER BY ORDINAL_POSITION"
            )
        ]
        return Recording(packets, start, end, metadata, sbtest_schema(DATABASE), names)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _record_packets(server: LocalMariaDB, start: str, end: str) -> list[bytes]:
    packets: list[bytes] = []

    class Recorder(BinLogStreamReader):  # type: ignore[misc]
        """Keeps the payload of every packet the dump connection reads."""

        def _BinLogStreamReader__connect_to_stream(self) -> None:
            super()._BinLogStreamReader__connect_to_stream()
            conn = self._stream_connection
            read_packet = conn._read_packet

            def keep(*args: Any, **kwargs: Any) -> Any:
                packet = read_packet(*args, **kwargs)
                packets.append(bytes(packet._data))
                return packet

            conn._read_packet = keep

    reader = Recorder(
        connection_settings={
            "unix_socket": server.socket,
            "user": "root",
            "password": "",
            "charset": "utf8mb4",
        },
        server_id=RECORD_SERVER_ID,
        blocking=True,
        is_mariadb=True,
        auto_position=start,
        only_events=[MariadbGtidEvent, XidEvent],
        enable_logging=False,
        freeze_schema=True,
    )
    current = ""
    try:
        for ev in reader:
            if isinstance(ev, MariadbGtidEvent):
                current = str(ev.gtid)
            elif isinstance(ev, XidEvent) and current == end:
                break
    finally:
        reader.close()
    return packets


# --- replay -------------------------------------------------------------------------------------


def wire_bytes(packets: Sequence[bytes]) -> bytes:
    """The packets as the server sent them: 3-byte length, sequence number, payload; then EOF."""
    out = bytearray()
    seq = 1  # the dump command was packet 0
    for payload in [*packets, EOF_PACKET]:
        out += struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload
        seq = (seq + 1) & 0xFF
    return bytes(out)


class _NoSocket:
    def settimeout(self, timeout: float | None) -> None:
        """pymysql sets its read timeout on the socket; nothing to do here."""


def replay_connection(wire: bytes) -> Any:
    """A pymysql connection whose socket reads are the recorded bytes (its own packet reader runs)."""
    conn: Any = pymysql.connections.Connection.__new__(pymysql.connections.Connection)
    conn._rfile = io.BufferedReader(io.BytesIO(wire), 65536)
    conn._sock = _NoSocket()
    conn._read_timeout = conn._current_timeout = None
    conn._next_seq_id = 1
    conn.encoding = "utf8"
    conn._result = None
    conn.close = lambda: None
    return conn


class _Cursor:
    def __init__(self, recording: Recording) -> None:
        self._recording = recording

    def execute(self, query: str, args: Any = None) -> None:
        """Answered from the recording."""

    def fetchone(self) -> dict[str, str]:
        return {"Value": self._recording.metadata}

    def fetchall(self) -> list[tuple[str]]:
        return [(name,) for name in self._recording.column_names]

    def close(self) -> None:
        """Nothing to close."""


class _Control:
    """The library's control connection: server version, row metadata, column names."""

    charset = "utf8mb4"

    def __init__(self, recording: Recording) -> None:
        self._recording = recording
        self._get_dbms: Callable[[], str] | None = None  # the reader sets its own

    def get_server_info(self) -> str:
        return "10.11-MariaDB (recorded)"

    def cursor(self) -> _Cursor:
        return _Cursor(self._recording)

    def close(self) -> None:
        """Nothing to close."""


def replaying(base: type, recording: Recording, wire: bytes) -> type:
    """A subclass of the reader class ``base`` that connects to the recording instead of a server."""

    class Replaying(base):  # type: ignore[misc]
        def _BinLogStreamReader__connect_to_stream(self) -> None:
            self._stream_connection = replay_connection(wire)
            self._BinLogStreamReader__use_checksum = True  # MariaDB's default binlog_checksum=CRC32
            self._BinLogStreamReader__connected_stream = True

        def _BinLogStreamReader__connect_to_ctl(self) -> None:
            self._ctl_connection = _Control(recording)
            self._ctl_connection._get_dbms = self._BinLogStreamReader__get_dbms
            self._BinLogStreamReader__connected_ctl = True
            self._BinLogStreamReader__optional_meta_data = recording.metadata == "FULL"

    return Replaying


# --- the measured variants ----------------------------------------------------------------------


@dataclass
class Result:
    """What one timed run produced."""

    cpu_s: float  # of this process: the stream thread and, for the prototype, the pool's threads
    wall_s: float
    events: int
    output: Any = None
    worker_cpu_s: float = 0.0  # of the worker processes, if any


def run_parse_only(recording: Recording, wire: bytes) -> Result:
    """bench.run's parse-only reference reader, on the recording."""
    reader = replaying(BinLogStreamReader, recording, wire)(
        connection_settings={},
        server_id=RECORD_SERVER_ID,
        blocking=True,
        is_mariadb=True,
        auto_position=recording.start,
        only_schemas=[recording.schema.database],
        only_tables=[recording.schema.name],
        only_events=[
            MariadbGtidEvent,
            QueryEvent,
            XidEvent,
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
        ],
        enable_logging=False,
        freeze_schema=True,
    )
    events = rows = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for ev in reader:
        events += 1
        if isinstance(ev, RowsEvent):
            rows += len(ev.rows)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Result(cpu, wall, events, rows)


class _ReplayStream(stream.BinlogStream):
    """The daemon's stream thread reading the recording, handing batches to a list."""

    def __init__(self, recording: Recording, wire: bytes, native: bool) -> None:
        settings = stream.StreamSettings(
            server=ServerSection(),
            flavor=Flavor.MARIADB,
            server_id=RECORD_SERVER_ID,
            database=recording.schema.database,
            own_rename_tag="tablemover bench",
            native_decode=native,
        )
        decoders = {recording.schema.name: RowDecoder(recording.schema)}
        super().__init__(settings, decoders, MariaDBPosition.parse(recording.start), None)  # type: ignore[arg-type]
        self._recording = recording
        self._wire = wire
        self.batches: list[StreamBatch] = []

    def _open(self) -> stream._Reader:
        reader = super()._open()
        reader.__class__ = replaying(stream._Reader, self._recording, self._wire)
        return reader

    def _hand_over(self, batch: StreamBatch | None) -> None:
        if batch is not None:
            self.batches.append(batch)


def run_stream(recording: Recording, wire: bytes, native: bool) -> Result:
    """The stream thread's pump over the whole recording."""
    replay = _ReplayStream(recording, wire, native)
    reader = replay._open()
    wall, cpu = time.perf_counter(), time.process_time()
    replay._pump(reader)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rest = replay.translator.take(partial=True)
    if rest is not None:
        replay.batches.append(rest)
    events = sum(b.events for b in replay.batches)
    items = [item for b in replay.batches for item in b.items]
    return Result(cpu, wall, events, (items, str(replay.translator.position)))


# --- the multi-process prototype ----------------------------------------------------------------

_WORKER_DECODERS: dict[int, rowcodec.RowsFunction] = {}


def _worker_init(table: str, columns: Any, schema: TableSchema) -> None:
    """Compile the table's decoder in the worker (generated code does not travel between processes)."""
    codec = rowcodec.compile_codec(table, columns, RowDecoder(schema))
    if not isinstance(codec, rowcodec.TableCodec):
        raise BenchError(f"no compiled decoder for {table}: {codec}")
    by_op = {"INSERT": codec.insert, "UPDATE": codec.update, "DELETE": codec.delete}
    for kind, op in rowcodec.ROWS_EVENT_OPS.items():
        _WORKER_DECODERS[kind] = by_op[op.name]


def _worker_decode(chunk: list[tuple[int, bytes, int, int]]) -> list[list[tuple[Any, Any]]]:
    """Decode the row events of a chunk; plain (before, after) tuples travel back, not objects."""
    return [
        [(c.before, c.after) for c in _WORKER_DECODERS[kind](data, start, end)]
        for kind, data, start, end in chunk
    ]


class _WorkerStream(_ReplayStream):
    """The daemon's native pump, except that row events are decoded in worker processes.

    Each row event of the moved table is screened here as in the daemon, then leaves a placeholder
    (an empty list) in the translator's items and joins the current chunk. A full chunk goes to the
    pool; once more than ``2 * workers`` chunks are in flight the oldest is awaited and its row
    changes fill its placeholders. Chunks are awaited strictly in submission order, and a real
    writer would be handed a batch only once its placeholders are filled, so the order it sees is
    the binlog's. Here the batches are flattened at the end.
    """

    def __init__(self, recording: Recording, wire: bytes, pool: Any, workers: int, chunk: int) -> None:
        super().__init__(recording, wire, True)
        self._pool = pool
        self._window = 2 * workers
        self._chunk_size = chunk
        self._chunk: list[tuple[int, bytes, int, int]] = []
        self._slots: list[tuple[list[RowChange], Any]] = []
        self._in_flight: list[tuple[Any, list[tuple[list[RowChange], Any]]]] = []

    def _rows_packet(self, framing: stream._NativeFraming, data: bytes, kind: int) -> Any:
        tr = self.translator
        plan = framing.plan(data)
        if plan is None:
            return None
        if not plan.moved:
            tr.events += 1
            return True
        layout = framing.layout(data, kind)
        if layout is None or layout[0] != plan.width or not plan.decoders:
            raise BenchError("the prototype decodes only what the native path decodes")
        columns, present, present_after, start, end = layout
        op = rowcodec.ROWS_EVENT_OPS[kind]
        if not stream.full_image(present, columns) or (
            present_after is not None and not stream.full_image(present_after, columns)
        ):
            tr.partial_image(plan.name, op)
        slot: list[RowChange] = []
        tr.events += 1
        tr.items.append(slot)  # type: ignore[arg-type]
        self._slots.append((slot, op))
        self._chunk.append((kind, data, start, end))
        if len(self._chunk) >= self._chunk_size:
            self.submit()
            while len(self._in_flight) > self._window:
                self.collect_oldest()
        return True

    def submit(self) -> None:
        if self._chunk:
            self._in_flight.append((self._pool.apply_async(_worker_decode, (self._chunk,)), self._slots))
            self._chunk, self._slots = [], []

    def collect_oldest(self) -> None:
        job, slots = self._in_flight.pop(0)
        for (slot, op), rows in zip(slots, job.get(), strict=True):
            slot.extend([RowChange(TABLE, op, before, after) for before, after in rows])

    def drain(self) -> None:
        self.submit()
        while self._in_flight:
            self.collect_oldest()


def table_map_columns(recording: Recording, wire: bytes) -> Any:
    """The library's column objects of the moved table (after the MINIMAL fill-in), from one run."""
    replay = _ReplayStream(recording, wire, True)
    reader = replay._open()
    replay._pump(reader)
    for table in reader.table_map.values():
        if table.table == recording.schema.name:
            return table.columns
    raise BenchError("the recording holds no table map of the moved table")


def run_workers(recording: Recording, wire: bytes, pool: Any, workers: int, chunk: int) -> Result:
    """The native pump with row events decoded by ``workers`` processes (see _WorkerStream)."""
    replay = _WorkerStream(recording, wire, pool, workers, chunk)
    reader = replay._open()
    pids = [process.pid for process in pool._pool]
    workers_cpu = sum(process_cpu_s(pid) for pid in pids)
    wall, cpu = time.perf_counter(), time.process_time()
    replay._pump(reader)
    replay.drain()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    workers_cpu = sum(process_cpu_s(pid) for pid in pids) - workers_cpu
    rest = replay.translator.take(partial=True)
    if rest is not None:
        replay.batches.append(rest)
    items: list[Any] = []
    for batch in replay.batches:
        for item in batch.items:
            if isinstance(item, list):
                items.extend(item)
            else:
                items.append(item)
    events = sum(b.events for b in replay.batches)
    return Result(cpu, wall, events, (items, str(replay.translator.position)), workers_cpu)


# --- report -------------------------------------------------------------------------------------


def summarise(name: str, runs: list[Result]) -> dict[str, Any]:
    """Best and median of a variant's rounds (by this process's CPU time)."""
    best = min(runs, key=lambda r: r.cpu_s)
    events = best.events
    return {
        "variant": name,
        "events": events,
        "cpu_s_best": round(best.cpu_s, 4),
        "cpu_s_median": round(statistics.median(r.cpu_s for r in runs), 4),
        "wall_s_best": round(min(r.wall_s for r in runs), 4),
        "worker_cpu_s": round(best.worker_cpu_s, 4),
        "events_per_cpu_s": round(events / best.cpu_s),
        "events_per_wall_s": round(events / min(r.wall_s for r in runs)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Record (or load) the workload, time every variant in interleaved rounds, print and save."""
    p = argparse.ArgumentParser(prog="python -m bench.decode", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--transactions", type=int, default=DEFAULT_TRANSACTIONS)
    p.add_argument("--table-rows", type=int, default=DEFAULT_TABLE_ROWS)
    p.add_argument("--metadata", choices=["FULL", "MINIMAL"], default="FULL")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument("--workers", default="", help="comma-separated worker counts for the prototype, e.g. 2,4")
    p.add_argument("--chunk", type=int, default=64, help="row events per chunk sent to a worker")
    p.add_argument("--save", help="keep the recording in this file")
    p.add_argument("--load", help="replay this recording instead of starting a server")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)

    if args.load:
        recording = Recording(**pickle.loads(Path(args.load).read_bytes()))
    else:
        print(f"recording {args.transactions:,} transactions ({args.metadata}) ...", file=sys.stderr)
        recording = record(args.transactions, args.table_rows, args.metadata)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        # A plain dict: a pickled Recording would name this module as __main__.
        Path(args.save).write_bytes(pickle.dumps(vars(recording)))
    wire = wire_bytes(recording.packets)
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    variants: dict[str, Callable[[], Result]] = {
        "parse_only": lambda: run_parse_only(recording, wire),
        "stream_library": lambda: run_stream(recording, wire, False),
        "stream_native": lambda: run_stream(recording, wire, True),
    }
    pools: list[Any] = []
    if worker_counts:
        columns = table_map_columns(recording, wire)
        context = multiprocessing.get_context("fork")
        for n in worker_counts:
            # Started (and their decoders compiled) before timing: a daemon would start them once.
            pool = context.Pool(n, _worker_init, (recording.schema.name, columns, recording.schema))
            pool.map(abs, range(n * 4))
            pools.append(pool)
            variants[f"workers_{n}"] = lambda n=n, pool=pool: run_workers(  # type: ignore[misc]
                recording, wire, pool, n, args.chunk
            )
    runs: dict[str, list[Result]] = {name: [] for name in variants}
    try:
        for round_no in range(args.rounds):
            for name, run in variants.items():
                runs[name].append(run())
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for pool in pools:
            pool.terminate()

    reference = runs["stream_library"][0].output
    for name in variants:
        if name.startswith(("stream_native", "workers_")) and runs[name][0].output != reference:
            raise BenchError(f"{name} produced other batches than the library path")
        if name != "parse_only" and runs[name][0].events != runs["parse_only"][0].events:
            raise BenchError(
                f"{name} counted {runs[name][0].events} events, parse-only {runs['parse_only'][0].events}"
            )

    table = [summarise(name, r) for name, r in runs.items()]
    parse, library = table[0], table[1]
    for row in table:
        row["x_parse_only_cpu"] = round(parse["cpu_s_best"] / row["cpu_s_best"], 2)
        row["x_parse_only_wall"] = round(parse["wall_s_best"] / row["wall_s_best"], 2)
        row["x_stream_library_cpu"] = round(library["cpu_s_best"] / row["cpu_s_best"], 2)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": multiprocessing.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "workload": {
            "transactions": len([p for p in recording.packets if len(p) > 5 and p[5] == 16]),
            "packets": len(recording.packets),
            "metadata": recording.metadata,
            "rows": runs["parse_only"][0].output,
            "rounds": args.rounds,
        },
        "variants": table,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{'variant':<15} {'events':>7} {'cpu s':>7} {'wall s':>7} {'worker cpu s':>12} "
        f"{'events/cpu-s':>12} {'x parse (cpu)':>13} {'x parse (wall)':>14} {'x library':>9}"
    )
    for row in table:
        print(
            f"{row['variant']:<15} {row['events']:>7,} {row['cpu_s_best']:>7.3f} "
            f"{row['wall_s_best']:>7.3f} {row['worker_cpu_s']:>12.3f} {row['events_per_cpu_s']:>12,} "
            f"{row['x_parse_only_cpu']:>13.2f} {row['x_parse_only_wall']:>14.2f} "
            f"{row['x_stream_library_cpu']:>9.2f}"
        )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
