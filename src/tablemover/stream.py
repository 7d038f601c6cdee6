"""Tail the source binlog from a GTID position in a worker thread and hand batches to the writer.

mysql-replication is synchronous, so its reader runs in a thread. It hands batches over through a
small bounded queue that a task on the event loop forwards into the writer's bounded anyio memory
stream: when the writer falls behind, both fill up, the thread blocks on ``put`` and stops reading
(back-pressure), so memory stays bounded however far behind we are. The thread never waits for the
event loop to answer a handover (that round trip, and the GIL ping-pong it causes, cost about a
sixth of the thread's time); it only wakes the forwarding task when that task sleeps on an empty
queue.

What the library does that we must not let happen:
* on error 2006/2013 it silently reconnects *at the original start position*; we refuse that and
  reconnect ourselves at the last commit boundary we saw, counting attempts and giving up after a bound;
* it decodes strings with a guessed charset when the binlog carries none (binlog_row_metadata=MINIMAL),
  which fails or corrupts non-utf8 data; we take the raw bytes and let the target reinterpret them;
* it decodes negative TIME values with fractional seconds wrongly;
* without FULL metadata it knows no ENUM/SET members nor signedness and returns None or wrong
  values; we fill those in from our own inspection before a row event is decoded.

Two patches are for speed only: ``Table.__init__`` and ``Table.data`` (see ``_table_init``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pymysql
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from tablemover import gtid
from tablemover.changes import Commit, Op, RowChange, StreamBatch
from tablemover.config import ServerSection
from tablemover.decode import RowDecoder
from tablemover.errors import BinlogPurged, SchemaChanged, StreamError, UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.statements import ChangeKind, TableChange, changes_any

MARIADB_GTID_FL_STANDALONE = 0x01
ER_BINLOG_FATAL = 1236  # the server cannot send the binlog from our position (purged, or diverged)
HANDOVER_SLOTS = 4  # batches between the thread and the writer's inbox (which bounds the rest)


def _raw_string(self: Any, size: int, column: Any) -> bytes:
    # Raw bytes are exact in every charset: the writer sends them as _binary literals and the
    # target stores them unconverted. Decoding here could only lose information.
    return bytes(self.packet.read_length_coded_pascal_string(size))


def _time2(self: Any, column: Any) -> dt.timedelta:
    # MySQL's TIME2 packs the integer part and the fraction as one big-endian value with an offset,
    # negative values in two's complement across both parts (sql/my_time.cc,
    # my_time_packed_from_binary); the library negates only the integer part.
    fsp = column.fsp or 0
    frac_bytes = (fsp + 1) // 2
    raw = self.packet.read(3 + frac_bytes)
    if frac_bytes == 3:
        packed = int.from_bytes(raw, "big") - 0x800000000000
    else:
        intpart = int.from_bytes(raw[:3], "big") - 0x800000
        frac = int.from_bytes(raw[3:], "big") if frac_bytes else 0  # unsigned, as MySQL reads it
        scale = {0: 0, 1: 0x100, 2: 0x10000}[frac_bytes]
        if intpart < 0 and frac:
            intpart += 1
            frac -= scale
        packed = (intpart << 24) + frac * (10000 if frac_bytes == 1 else 100)
    sign = -1 if packed < 0 else 1
    packed = abs(packed)
    hms, micro = packed >> 24, packed & 0xFFFFFF
    hours, minutes, seconds = (hms >> 12) & 0x3FF, (hms >> 6) & 0x3F, hms & 0x3F
    return sign * dt.timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micro)


def _date(self: Any) -> dt.date | str:
    # The library turns any date with a zero part into None ("out of date range"); MariaDB's default
    # sql_mode stores '2024-05-00' and '0000-00-00' happily, and we must write back exactly that.
    raw = self.packet.read_uint24()
    year, month, day = raw >> 9, (raw >> 5) & 0x0F, raw & 0x1F
    try:
        return dt.date(year, month, day)
    except ValueError:
        return f"{year:04d}-{month:02d}-{day:02d}"


def _datetime2(self: Any, column: Any) -> dt.datetime | str:
    # Same as _date for DATETIME(n): values with zero parts come back as the server's text.
    data = int.from_bytes(self.packet.read(5), "big")
    year, month = divmod((data >> 22) & 0x1FFFF, 13)
    day, hour = (data >> 17) & 0x1F, (data >> 12) & 0x1F
    minute, second = (data >> 6) & 0x3F, data & 0x3F
    micro = self._RowsEvent__read_fsp(column)
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        return text + (f".{micro:06d}"[: column.fsp + 1] if column.fsp else "")


def _table_init(
    self: Any,
    table_id: int,
    schema: str,
    table: str,
    columns: list[Any],
    primary_key: Any = None,
    column_name_flag: bool = False,
) -> None:
    # The library's own builds a dict of every attribute of every column (twice) to find the
    # primary key, on every table map event, i.e. once or twice per transaction: a tenth of the
    # stream thread's time under a small-transaction load. Same result, read off the attributes.
    if primary_key is None:
        names = [c.name for c in columns if getattr(c, "is_primary", False)]
        primary_key = "" if not names else names[0] if len(names) == 1 else tuple(names)
    self.__dict__.update(
        table_id=table_id,
        schema=schema,
        table=table,
        columns=columns,
        primary_key=primary_key,
        column_name_flag=column_name_flag,
    )


def _table_data(self: Any) -> dict[str, Any]:
    # Read by every row event (for its primary key); the library copies the attributes each time.
    return self.__dict__  # type: ignore[no-any-return]


Table.__init__ = _table_init
Table.data = property(_table_data)
RowsEvent._RowsEvent__read_string = _raw_string
RowsEvent._RowsEvent__read_time2 = _time2
RowsEvent._RowsEvent__read_date = _date
RowsEvent._RowsEvent__read_datetime2 = _datetime2

_original_connect = BinLogStreamReader._BinLogStreamReader__connect_to_stream


class StreamLost(Exception):
    """The binlog connection dropped; we reconnect ourselves at the last commit boundary."""


class _Reader(BinLogStreamReader):  # type: ignore[misc]
    """A reader that connects once and raises instead of silently reconnecting."""

    _tm_connected = False

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._tm_connected:
            raise StreamLost("binlog connection lost")
        self._tm_connected = True
        _original_connect(self)


@dataclass
class Translator:
    """Turns binlog events into row changes and commit markers; pure, no I/O.

    A transaction's GTID is emitted as a :class:`Commit` only at its commit boundary (Xid, COMMIT,
    or the end of a standalone statement such as DDL), never at its GTID event: the writer may only
    count a transaction as applied once all of its rows are (spec rule 6).
    """

    database: str
    decoders: Mapping[str, RowDecoder]
    flavor: Flavor
    own_rename_tag: str  # the comment our cutover RENAME carries; not a foreign DDL
    position: gtid.GtidPosition  # through the last commit boundary seen
    items: list[RowChange | Commit] = field(default_factory=list)
    events: int = 0
    urgent: bool = False  # hand the pending items over now, whatever the batch age
    _gtid: str | None = None
    _standalone: bool = False
    _last_commit_index: int = 0  # items[:this] end at a commit boundary

    def gtid_event(self, gtid_text: str, standalone: bool) -> None:
        """A transaction starts."""
        self.events += 1
        self._gtid = gtid_text
        # MySQL writes BEGIN after the GTID for multi-statement transactions; MariaDB flags
        # standalone (DDL) groups instead. Assume standalone until BEGIN says otherwise on MySQL.
        self._standalone = standalone

    def query_event(self, query: str, schema: str) -> None:
        """BEGIN, COMMIT, ROLLBACK or a statement (DDL) that is its own transaction."""
        self.events += 1
        text = query.strip().rstrip(";").strip().upper()
        if text in ("BEGIN", "START TRANSACTION"):
            self._standalone = False
            return
        if text in ("COMMIT", "ROLLBACK"):
            self._commit()
            return
        if self.own_rename_tag not in query:
            self._screen_statement(query, schema)
        if self._standalone:
            self._commit()
            if self.own_rename_tag in query:
                # Our cutover RENAME: the source's writes are blocked until the writer has it, so
                # it must not wait for the batch age or the next heartbeat (50 ms of outage).
                self.urgent = True

    def xid_event(self) -> None:
        """An InnoDB transaction committed."""
        self.events += 1
        self._commit()

    def rows_event(self, table: str, op: Op, rows: list[dict[str, Any]]) -> None:
        """Row images of one row event; ``table`` is known to be a moved table."""
        self.events += 1
        decoder = self.decoders[table]
        if op is Op.INSERT:
            self.items.extend(
                RowChange(table, op, None, decoder.row(r["values"], r.get("none_sources"))) for r in rows
            )
        elif op is Op.DELETE:
            self.items.extend(
                RowChange(table, op, decoder.row(r["values"], r.get("none_sources")), None) for r in rows
            )
        else:
            self.items.extend(
                RowChange(
                    table,
                    op,
                    decoder.row(r["before_values"], r.get("before_none_sources")),
                    decoder.row(r["after_values"], r.get("after_none_sources")),
                )
                for r in rows
            )

    def _commit(self) -> None:
        if self._gtid is None:
            # Events before the first GTID we see belong to a transaction that started before our
            # start position; they were covered by it.
            return
        self.items.append(Commit(self._gtid))
        self.position = gtid.advance(self.position, self._gtid)
        self._gtid = None
        self._last_commit_index = len(self.items)

    def _screen_statement(self, query: str, schema: str) -> None:
        """Stop at a statement that changes a moved table: rows in statement form, TRUNCATE, DDL.

        Decided by parsing the statement (statements.py), so a table that is only read (``CREATE
        TABLE x LIKE moved``), a name in a comment or a same-named table elsewhere passes.
        """
        change = changes_any(query, schema, self.database, self.decoders)
        if change is not None:
            raise _refusal_for_statement(change, self.database, self._gtid or "?", query)

    def partial_image(self, table: str, op: Op) -> None:
        """A row event of a moved table whose images do not carry every column: refuse it."""
        raise UnreproducibleEvent(
            f"transaction {self._gtid or '?'} changes moved table {self.database}.{table} with a "
            f"partial row image ({op.name} event without every column). A session wrote it with "
            "binlog_row_image=MINIMAL or NOBLOB; applying it would write the missing columns as NULL. "
            "Nothing of that transaction was applied. Set binlog_row_image=FULL for every session "
            "that writes the moved tables (global and per session), then start the move over: "
            "`tablemover discard -c FILE --yes`, then `tablemover run -c FILE`.",
            gtid=self._gtid or "",
            table=f"{self.database}.{table}",
            statement="",
        )

    @property
    def pending_complete(self) -> int:
        """How many buffered items end at a commit boundary (safe to hand over as a unit)."""
        return self._last_commit_index

    def take(self, *, partial: bool = False) -> StreamBatch | None:
        """Hand over buffered items: through the last commit, or everything when ``partial``."""
        cut = len(self.items) if partial else self._last_commit_index
        if cut == 0 and self.events == 0:
            return None
        batch = StreamBatch(self.items[:cut], self.events)
        self.urgent = False
        del self.items[:cut]
        self._last_commit_index = 0 if partial else self._last_commit_index - cut
        self.events = 0
        return batch

    def rewind(self) -> None:
        """Forget a half-read transaction after a reconnect; it is read again from its start."""
        del self.items[self._last_commit_index :]
        self._gtid = None


@dataclass
class StreamSettings:
    """Everything the stream thread needs, captured before it starts."""

    server: ServerSection
    flavor: Flavor
    server_id: int
    database: str
    own_rename_tag: str
    report_host: str = ""  # shown in SHOW REPLICA HOSTS, so an id clash names the move
    heartbeat_s: float = 0.05
    max_reconnects: int = 10
    batch_items: int = 2000
    batch_age_s: float = 0.005


class BinlogStream:
    """Runs the reader thread; stop it with :meth:`stop`."""

    def __init__(
        self,
        settings: StreamSettings,
        decoders: Mapping[str, RowDecoder],
        start: gtid.GtidPosition,
        send: MemoryObjectSendStream[StreamBatch],
    ) -> None:
        self.settings = settings
        self.translator = Translator(
            settings.database, decoders, settings.flavor, settings.own_rename_tag, start
        )
        self._send = send
        self._stop = threading.Event()
        self._reader: _Reader | None = None
        self.reconnects = 0
        self._flowing = False  # an event arrived since the last (re)connect
        self._handover: queue.Queue[StreamBatch] = queue.Queue(maxsize=HANDOVER_SLOTS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forwarder_idle = False  # the forwarding task sleeps on an empty queue
        self._wake = anyio.Event()
        self._finished = False  # the thread has ended; forward what is queued, then end

    async def forward(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Move batches from the thread's queue into the writer's inbox until the thread ends."""
        self._loop = asyncio.get_running_loop()
        task_status.started()
        while True:
            try:
                batch = self._handover.get_nowait()
            except queue.Empty:
                if self._finished:
                    return
                self._wake = anyio.Event()
                self._forwarder_idle = True
                # Look again after announcing the sleep: a batch put before the thread could see
                # the announcement would otherwise wait for the next one.
                if not self._handover.empty() or self._finished:
                    self._forwarder_idle = False
                    continue
                await self._wake.wait()
                continue
            await self._send.send(batch)

    def finish(self) -> None:
        """Called on the event loop once the thread has ended: the forwarder drains and returns."""
        self._finished = True
        self._wake.set()

    def _wake_forwarder(self) -> None:
        self._wake.set()

    async def close_sender(self) -> None:
        """Close our end of the writer's inbox (the writer ends when every sender has closed)."""
        await self._send.aclose()

    def stop(self) -> None:
        """Ask the thread to finish; a blocked read is broken by closing its connection."""
        self._stop.set()
        reader = self._reader
        if reader is not None:
            with contextlib.suppress(AttributeError, OSError):
                reader._stream_connection._sock.shutdown(2)

    def _open(self) -> _Reader:
        s = self.settings
        conn: dict[str, Any] = {
            "user": s.server.user,
            "password": s.server.resolved_password(),
            "connect_timeout": s.server.connect_timeout_s,
            "charset": "utf8mb4",
        }
        if s.server.socket:
            conn["unix_socket"] = s.server.socket
        else:
            conn["host"], conn["port"] = s.server.host, s.server.port
        is_mariadb = s.flavor is Flavor.MARIADB
        return _Reader(
            connection_settings=conn,
            server_id=s.server_id,
            blocking=True,
            resume_stream=True,
            is_mariadb=is_mariadb,
            auto_position=str(self.translator.position),
            only_events=[
                MariadbGtidEvent if is_mariadb else GtidEvent,
                QueryEvent,
                XidEvent,
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                HeartbeatLogEvent,
                RotateEvent,
            ],
            only_schemas=None,
            only_tables=None,
            slave_heartbeat=s.heartbeat_s,
            report_slave=s.report_host or None,
            enable_logging=False,
            use_column_name_cache=True,
            # A table map is parsed once per table id, not once per row event (a fifth of the
            # thread's time under sysbench). Safe: the server gives a table a new id when its
            # definition changes, and DDL on a moved table stops the move anyway.
            freeze_schema=True,
        )

    def run(self) -> None:
        """Thread body: read, translate, hand over; reconnect within the bound on connection loss."""
        attempts = 0
        while not self._stop.is_set():
            self.translator.rewind()
            try:
                self._reader = self._open()
                self._pump(self._reader)
                attempts = 0
            except (StreamLost, pymysql.err.OperationalError, OSError) as exc:
                if self._stop.is_set():
                    break
                if isinstance(exc, pymysql.err.MySQLError) and exc.args and exc.args[0] == ER_BINLOG_FATAL:
                    raise _binlog_gone(self.settings, str(self.translator.position), exc) from exc
                if self._flowing:
                    # Events came through since the last drop: a new outage, with a fresh budget.
                    attempts = 0
                    self._flowing = False
                attempts += 1
                self.reconnects += 1
                event("binlog connection lost; reconnecting", error=str(exc), attempt=attempts)
                if attempts > self.settings.max_reconnects:
                    raise StreamError(
                        f"the binlog stream from {self.settings.server.address} failed {attempts} times in "
                        f"a row (last error: {exc}). The move is resumable: fix the connection and run again."
                    ) from exc
                time.sleep(min(0.1 * 2**attempts, 5.0))
            finally:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None

    def _pump(self, reader: _Reader) -> None:
        tr = self.translator
        db = self.settings.database
        tables = tr.decoders
        first_pending = 0.0
        for ev in reader:
            if self._stop.is_set():
                return
            self._flowing = True
            if isinstance(ev, RowsEvent):
                if ev.schema == db and ev.table in tables:
                    # Every table map event brings new column objects; fill each set once. (The
                    # mark lives on the objects: an id() of a freed list may come back.)
                    columns = ev.columns
                    if columns and not getattr(columns[0], "_tm_filled", False):
                        fill_column_metadata(columns, tables[ev.table])
                        columns[0]._tm_filled = True
                    op = (
                        Op.INSERT
                        if isinstance(ev, WriteRowsEvent)
                        else (Op.DELETE if isinstance(ev, DeleteRowsEvent) else Op.UPDATE)
                    )
                    # Screened before ev.rows decodes anything: a session with binlog_row_image
                    # MINIMAL/NOBLOB leaves columns out, and they must not be applied as NULL.
                    width = ev.number_of_columns
                    if not full_image(ev.columns_present_bitmap, width) or (
                        op is Op.UPDATE and not full_image(ev.columns_present_bitmap2, width)
                    ):
                        tr.partial_image(ev.table, op)
                    tr.rows_event(ev.table, op, ev.rows)
                else:
                    tr.events += 1
            elif isinstance(ev, MariadbGtidEvent):
                tr.gtid_event(ev.gtid, bool(ev.flags & MARIADB_GTID_FL_STANDALONE))
            elif isinstance(ev, GtidEvent):
                tr.gtid_event(ev.gtid, True)
            elif isinstance(ev, XidEvent):
                tr.xid_event()
            elif isinstance(ev, QueryEvent):
                tr.query_event(_text(ev.query), _text(ev.schema))
            now = time.monotonic()
            if tr.items and not first_pending:
                first_pending = now
            heartbeat = isinstance(ev, HeartbeatLogEvent)
            if len(tr.items) >= self.settings.batch_items * 4:
                # A huge transaction: hand it over in parts; the writer keeps its target
                # transaction open until the commit marker arrives.
                self._hand_over(tr.take(partial=True))
                first_pending = 0.0
            elif tr.pending_complete and (
                heartbeat
                or tr.urgent
                or tr.pending_complete >= self.settings.batch_items
                or now - first_pending >= self.settings.batch_age_s
            ):
                self._hand_over(tr.take())
                first_pending = time.monotonic() if tr.items else 0.0
            elif heartbeat and tr.events:
                # Idle binlog: still report events consumed (other tables) so the position moves.
                self._hand_over(tr.take())

    def _hand_over(self, batch: StreamBatch | None) -> None:
        if batch is None:
            return
        while True:
            try:
                self._handover.put(batch, timeout=0.1)
                break
            except queue.Full:
                if self._stop.is_set():
                    return  # stopping: an unsent batch is read again on resume
        if self._forwarder_idle:
            self._forwarder_idle = False
            assert self._loop is not None, "forward() runs before the thread starts"
            self._loop.call_soon_threadsafe(self._wake_forwarder)


def _binlog_gone(settings: StreamSettings, position: str, exc: BaseException) -> BinlogPurged:
    detail = exc.args[1] if len(exc.args) > 1 else str(exc)
    return BinlogPurged(
        f"the source {settings.server.address} cannot send its binlog from position {position!r} "
        f"(error 1236: {detail}). The binlogs this move must resume from were purged (or the source's "
        "GTID history no longer contains them), so the changes in between are lost to the move; "
        "reconnecting cannot fix that. Start the move over: `tablemover discard -c FILE --yes`, then "
        "`tablemover run -c FILE`; and keep binlogs longer than a move may be stopped "
        "(binlog_expire_logs_seconds)."
    )


def _refusal_for_statement(
    change: TableChange, database: str, gtid_text: str, query: str
) -> UnreproducibleEvent:
    """The exit-3 refusal for a statement that changes a moved table, worded for its kind."""
    table = f"{database}.{change.table}" if change.table else f"every table of {database}"
    shown = " ".join(query.split())
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    start_over = (
        "Nothing of that transaction was applied; the move must start over: "
        "`tablemover discard -c FILE --yes`, then `tablemover run -c FILE`."
    )
    if change.kind is ChangeKind.ROWS:
        return UnreproducibleEvent(
            f"transaction {gtid_text} writes moved table {table} as a statement ({shown!r}): a session "
            "ran with binlog_format=STATEMENT or MIXED, so the binlog holds no row images to apply. "
            "Set binlog_format=ROW for every session that writes the moved tables (check the "
            f"application's connection settings and SET SESSION statements). {start_over}",
            gtid=gtid_text,
            table=table,
            statement=shown,
        )
    what = "TRUNCATE (which writes no row events)" if change.kind is ChangeKind.TRUNCATE else "DDL"
    return SchemaChanged(
        f"transaction {gtid_text} runs {what} on moved table {table}: {shown!r}. tablemover cannot "
        "follow schema changes, so the target would diverge. Run the schema change before or after "
        f"the move, not during it. {start_over}",
        gtid=gtid_text,
        table=table,
        statement=shown,
    )


_full_bitmaps: dict[int, bytes] = {}


def full_image(bitmap: bytes, columns: int) -> bool:
    """True when a row event's column bitmap names every one of ``columns`` columns."""
    expected = _full_bitmaps.get(columns)
    if expected is None:
        whole, rest = divmod(columns, 8)
        expected = b"\xff" * whole + (bytes([(1 << rest) - 1]) if rest else b"")
        _full_bitmaps[columns] = expected
    return bytes(bitmap) == expected


def fill_column_metadata(columns: list[Any], decoder: RowDecoder) -> None:
    """Give the library's column objects what binlog_row_metadata=MINIMAL leaves out.

    Row events are decoded lazily, on first access to ``.rows``, so filling the shared table-map
    columns first is enough. Only absent facts are filled: FULL metadata stays authoritative.
    """
    for lib_col, ours in zip(columns, decoder.schema.columns, strict=False):
        if ours.data_type == "enum" and not lib_col.enum_values:
            lib_col.enum_values = ["", *ours.enum_values]  # index 0 is the invalid-value member ''
        elif ours.data_type == "set" and not lib_col.set_values:
            lib_col.set_values = list(ours.enum_values)
        if ours.int_bits is not None and ours.unsigned:
            lib_col.unsigned = True


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def start_position_sql(flavor: Flavor) -> str:
    """Query that reads the source's current GTID position (where a new stream starts)."""
    return "SELECT @@global.gtid_binlog_pos" if flavor is Flavor.MARIADB else "SELECT @@global.gtid_executed"
