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

Most events never become the library's event objects, though (about six times faster, see
docs/benchmarks.md, "Stream decoding"): the thread frames the packets off the connection itself
(``_NativeFraming``) and translates MariaDB GTID and Xid events and the row events of moved tables
directly, the latter with a decoder compiled once per table map (``rowcodec``). Every other event the
library would return, and the row events of a table with a column type rowcodec leaves alone, go
to the library as the packets they are, in stream order, so the translator sees the same sequence
either way. ``native_decode=False`` (``TABLEMOVER_NATIVE_DECODE=0``) leaves every event to the library.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import queue
import re
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pymysql
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from pymysql.constants.CR import CR_SERVER_LOST
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from tablemover import gtid, rowcodec
from tablemover.changes import Commit, Op, RowChange, StreamBatch
from tablemover.config import ServerSection
from tablemover.decode import RowDecoder
from tablemover.errors import BinlogPurged, SchemaChanged, StreamError, UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.statements import ChangeKind, TableChange, changes_any

MARIADB_GTID_FL_STANDALONE = 0x01
NATIVE_DECODE_ENV = "TABLEMOVER_NATIVE_DECODE"  # "0": every event decoded by the library
ER_BINLOG_FATAL = 1236  # the server cannot send the binlog from our position (purged, or diverged)
HANDOVER_SLOTS = 4  # batches between the thread and the writer's inbox (which bounds the rest)


def _raw_string(self: Any, size: int, column: Any) -> bytes:
    # Raw bytes are exact in every charset: the writer sends them as _binary literals and the
    # target stores them unconverted. Decoding here could only lose information.
    return bytes(self.packet.read_length_coded_pascal_string(size))


def _time2(self: Any, column: Any) -> dt.timedelta:
    # The library negates only the integer part of a negative TIME(n); see rowcodec.time2_value.
    fsp = column.fsp or 0
    return rowcodec.time2_value(bytes(self.packet.read(3 + (fsp + 1) // 2)), fsp)


def _date(self: Any) -> dt.date | str:
    # The library turns any date with a zero part into None ("out of date range"); MariaDB's default
    # sql_mode stores '2024-05-00' and '0000-00-00' happily, and we must write back exactly that.
    return rowcodec.date_value(self.packet.read_uint24())


def _datetime2(self: Any, column: Any) -> dt.datetime | str:
    # Same as _date for DATETIME(n): values with zero parts come back as the server's text.
    fsp = column.fsp
    return rowcodec.datetime2_value(bytes(self.packet.read(5 + rowcodec.FRACTION_BYTES.get(fsp, 0))), fsp)


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


XID_EVENT_TYPE = 16
TABLE_MAP_EVENT_TYPE = 19
MARIADB_GTID_EVENT_TYPE = 162
_MARIADB_GTID = struct.Struct("<QIB")  # seq_no, domain_id, flags: the start of the event body
_UINT32 = struct.Struct("<I")
_MARIADB_GTID_TEXT = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)").fullmatch  # what MariaDBGtid.parse takes
_MAX_PACKET = 0xFFFFFF  # a protocol packet of this length continues in the next one


_UNREAD = object()  # no format description looked at yet


class _Drained(Exception):
    """The library consumed the packet we handed it without returning an event."""


@dataclass(slots=True)
class _TablePlan:
    """What to do with the row events of one table map."""

    table: Table  # the library's table map entry this plan was made for
    name: str
    moved: bool
    # Row event type -> the compiled decoder of its images; empty when the library decodes.
    decoders: dict[int, rowcodec.RowsFunction]
    width: int = 0  # columns of the table map, which every full row image holds


class _NativeFraming:
    """Reads binlog packets off the reader's connection without the library's per-event objects.

    This is pymysql's ``_read_packet`` and the library's ``fetchone`` minus their objects: the
    packet's bytes are read from the connection's buffered socket file, sequence numbers checked,
    EOF and error packets handled as they do. A packet the pump does not handle itself goes back to
    the library through :meth:`delegate`, which serves it to ``fetchone`` as if read from the
    socket, so the library's state (table maps, the format description, rotations) stays its own.
    """

    def __init__(
        self,
        reader: _Reader,
        allowed_types: frozenset[int],
        gtid_type: int,
        freeze: bool,
        decoders: Mapping[str, RowDecoder],
        database: str,
    ) -> None:
        self._reader = reader
        self.delegated = allowed_types  # event types the library parses (returned or consumed)
        self.gtid_type = gtid_type  # MariaDB GTID events, when the reader asks for them; else -1
        self._freeze = freeze
        self._decoders = decoders
        self._database = database
        self._conn: Any = None
        self._rfile: Any = None
        self.seq = 0
        self._checksum_len = 0
        self._plans: dict[int, _TablePlan] = {}
        self._table_map: dict[int, Table] | None = None
        self._post_headers: dict[int, int] = {}
        self._post_headers_of: Any = _UNREAD  # the library's list they were read from
        self._reported: set[tuple[str, str]] = set()

    @classmethod
    def of(cls, reader: _Reader, decoders: Mapping[str, RowDecoder], database: str) -> _NativeFraming | None:
        """Framing for ``reader``; None (decode with the library) when the library is not as we know it.

        The pump relies on private parts of mysql-replication (1.0.x): the allowed event classes,
        the event-type map, the post-header lengths. A reader with filters would also drop events
        this framing does not know to drop.
        """
        try:
            allowed = reader._BinLogStreamReader__allowed_events
            in_packet = reader._BinLogStreamReader__allowed_events_in_packet
            event_map = BinLogPacketWrapper._BinLogPacketWrapper__event_map
            freeze = bool(reader._BinLogStreamReader__freeze_schema)
            filters = (
                reader._BinLogStreamReader__only_tables,
                reader._BinLogStreamReader__ignored_tables,
                reader._BinLogStreamReader__only_schemas,
                reader._BinLogStreamReader__ignored_schemas,
                reader.skip_to_timestamp,
                reader.end_log_pos,
            )
            reader._BinLogStreamReader__post_header_lengths  # noqa: B018 - present, or AttributeError
        except AttributeError:
            return None
        needed = {XidEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent}
        if any(f is not None for f in filters) or not needed <= allowed:
            return None
        types = frozenset(t for t, cls in event_map.items() if cls in in_packet)
        gtid_type = MARIADB_GTID_EVENT_TYPE if MariadbGtidEvent in allowed else -1
        return cls(reader, types, gtid_type, freeze, decoders, database)

    def attach(self) -> None:
        """Take over the connection the library opened (after its first ``fetchone``)."""
        conn = self._reader._stream_connection
        self._conn = conn
        self._rfile = conn._rfile
        self.seq = conn._next_seq_id
        self._checksum_len = 4 if self._reader._BinLogStreamReader__use_checksum else 0

    def read_packet(self) -> bytes | None:
        """The next binlog event packet (OK byte first); None at the end of a non-blocking stream."""
        read = self._rfile.read
        while True:
            try:
                header = read(4)
                if len(header) < 4:
                    raise self._lost(None)
                if header[3] != self.seq:
                    raise self._out_of_sequence(header[3])
                self.seq = (self.seq + 1) & 0xFF
                length = header[0] | header[1] << 8 | header[2] << 16
                data: bytes = read(length)
                if len(data) < length:
                    raise self._lost(None)
                if length == _MAX_PACKET:
                    data = self._continued(data)
            except OSError as exc:
                raise self._lost(exc) from exc
            first = data[0]
            if first == 0 and len(data) >= 7:
                return data
            if first == 0xFF:
                self._conn._next_seq_id = self.seq
                MysqlPacket(data, self._conn.encoding).raise_for_error()
            if first == 0xFE and len(data) < 9:
                self._reader.close()  # what the library does at EOF
                return None
            # Anything else is no event; the library skips it too.

    def _continued(self, data: bytes) -> bytes:
        """A payload of 16 MiB or more: it continues in the following packets (as pymysql joins them)."""
        read = self._rfile.read
        parts = [data]
        while True:
            header = read(4)
            if len(header) < 4:
                raise self._lost(None)
            if header[3] != self.seq:
                raise self._out_of_sequence(header[3])
            self.seq = (self.seq + 1) & 0xFF
            length = header[0] | header[1] << 8 | header[2] << 16
            part = read(length)
            if len(part) < length:
                raise self._lost(None)
            parts.append(part)
            if length < _MAX_PACKET:
                return b"".join(parts)

    def _out_of_sequence(self, got: int) -> pymysql.err.MySQLError:
        self._conn._force_close()
        if got == 0:
            # MariaDB sends an error packet with sequence 0 when it shuts down (pymysql's reading).
            return pymysql.err.OperationalError(
                CR_SERVER_LOST, "Lost connection to MySQL server during query"
            )
        return pymysql.err.InternalError(f"Packet sequence number wrong - got {got} expected {self.seq}")

    def _lost(self, exc: OSError | None) -> pymysql.err.OperationalError:
        # As pymysql: the connection is closed and the loss is error 2013, which run() handles.
        self._conn._force_close()
        detail = f" ({exc})" if exc is not None else ""
        message = f"Lost connection to MySQL server during query{detail}"
        return pymysql.err.OperationalError(CR_SERVER_LOST, message)

    def delegate(self, data: bytes) -> Any:
        """Have the library parse this packet; its event, or None when it returns none for it."""
        conn = self._conn
        conn._next_seq_id = self.seq  # pymysql's count, were it to read on
        packet = MysqlPacket(data, conn.encoding)
        served = False

        def serve(*_args: Any, **_kwargs: Any) -> MysqlPacket:
            nonlocal served
            if served:
                # fetchone loops to the next packet when this one gave no event: that one is ours.
                raise _Drained
            served = True
            return packet

        conn._read_packet = serve
        try:
            return self._reader.fetchone()
        except _Drained:
            return None
        finally:
            del conn._read_packet

    def known_table(self, data: bytes) -> bool:
        """A TABLE_MAP the library skips: a table id it has already mapped, with freeze_schema."""
        return self._freeze and int.from_bytes(data[20:26], "little") in self._reader.table_map

    def layout(self, data: bytes, kind: int) -> rowcodec.RowsLayout | None:
        """Where the parts of a rows event lie (rowcodec.rows_layout), with the declared post-header."""
        lengths = self._reader._BinLogStreamReader__post_header_lengths
        if lengths is not self._post_headers_of:
            # A (new) format description: the library reads the post-header length of each event
            # type from it, falling back to the length it knows.
            self._post_headers_of = lengths
            self._post_headers = {
                t: int(lengths[t - 1]) if lengths and t <= len(lengths) else (10 if t >= 30 else 8)
                for t in rowcodec.ROWS_EVENT_OPS
            }
        return rowcodec.rows_layout(data, kind, self._post_headers[kind], self._checksum_len)

    def plan(self, data: bytes) -> _TablePlan | None:
        """The plan for a rows event's table; None when the library does not know its table id."""
        table_map = self._reader.table_map
        if table_map is not self._table_map:
            # A rotation gave the library a fresh map (table ids may be reused): start over.
            self._plans.clear()
            self._table_map = table_map
        table_id = int.from_bytes(data[20:26], "little")
        table = table_map.get(table_id)
        if table is None:
            return None
        plan = self._plans.get(table_id)
        if plan is None or plan.table is not table:
            plan = self._plans[table_id] = self._make_plan(table)
        return plan

    def _make_plan(self, table: Table) -> _TablePlan:
        name = table.table
        decoder = self._decoders.get(name) if table.schema == self._database else None
        if decoder is None:
            return _TablePlan(table, name, False, {})
        columns = table.columns
        if columns and not getattr(columns[0], "_tm_filled", False):
            fill_column_metadata(columns, decoder)
            columns[0]._tm_filled = True
        codec = rowcodec.compile_codec(name, columns, decoder)
        if isinstance(codec, str):
            self._report(name, "row events of this table are decoded by the library", reason=codec)
            return _TablePlan(table, name, True, {})
        by_op = {Op.INSERT: codec.insert, Op.UPDATE: codec.update, Op.DELETE: codec.delete}
        decoders = {t: by_op[op] for t, op in rowcodec.ROWS_EVENT_OPS.items()}
        return _TablePlan(table, name, True, decoders, codec.width)

    def mismatch(self, table: str, exc: Exception) -> None:
        """A row event that did not fit its compiled decoder; the library decodes it instead."""
        # A bug in rowcodec or a table changed under us; either way the library's reading stands.
        self._report(
            table,
            "native row decoding failed; the library decoded the event",
            logging.WARNING,
            error=repr(exc),
        )

    def _report(self, table: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        if (table, message) not in self._reported:  # once per table: these repeat for every event
            self._reported.add((table, message))
            event(message, level, table=f"{self._database}.{table}", **fields)


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


class Translator:
    """Turns binlog events into row changes and commit markers; pure, no I/O.

    A transaction's GTID is emitted as a :class:`Commit` only at its commit boundary (Xid, COMMIT,
    or the end of a standalone statement such as DDL), never at its GTID event: the writer may only
    count a transaction as applied once all of its rows are (spec rule 6).
    """

    def __init__(
        self,
        database: str,
        decoders: Mapping[str, RowDecoder],
        flavor: Flavor,
        own_rename_tag: str,
        position: gtid.GtidPosition,
        *,
        fold_names: bool = False,
    ) -> None:
        self.database = database
        self.fold_names = fold_names  # the server folds table names (lower_case_table_names=1)
        self.decoders = decoders
        self.flavor = flavor
        self.own_rename_tag = own_rename_tag  # the comment our cutover RENAME carries; not a foreign DDL
        self._position = position  # through the commit boundary before the GTIDs in _committed
        # GTIDs committed since _position was last brought up to date. Folding them in once per
        # batch instead of once per transaction saves parsing every GTID (a tenth of the stream).
        self._committed: list[str] = []
        self.items: list[RowChange | Commit] = []
        self.events = 0
        self.urgent = False  # hand the pending items over now, whatever the batch age
        self._gtid: str | None = None
        self._standalone = False
        self._last_commit_index = 0  # items[:this] end at a commit boundary

    @property
    def position(self) -> gtid.GtidPosition:
        """The source position through the last commit boundary seen."""
        self._fold()
        return self._position

    def _fold(self) -> None:
        if self._committed:
            self._position = _fold_gtids(self._position, self._committed)
            self._committed.clear()

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

    def row_changes(self, changes: list[RowChange]) -> None:
        """Row changes of one row event, already decoded against our schema (rowcodec)."""
        self.events += 1
        self.items.extend(changes)

    def _commit(self) -> None:
        if self._gtid is None:
            # Events before the first GTID we see belong to a transaction that started before our
            # start position; they were covered by it.
            return
        self.items.append(Commit(self._gtid))
        self._committed.append(self._gtid)
        self._gtid = None
        self._last_commit_index = len(self.items)

    def _screen_statement(self, query: str, schema: str) -> None:
        """Stop at a statement that changes a moved table: rows in statement form, TRUNCATE, DDL.

        Decided by parsing the statement (statements.py), so a table that is only read (``CREATE
        TABLE x LIKE moved``), a name in a comment or a same-named table elsewhere passes.
        """
        change = changes_any(query, schema, self.database, self.decoders, fold_case=self.fold_names)
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
        self._fold()  # the batch's GTIDs: they must not pile up between readings of position
        self.urgent = False
        del self.items[:cut]
        self._last_commit_index = 0 if partial else self._last_commit_index - cut
        self.events = 0
        return batch

    def rewind(self) -> None:
        """Forget a half-read transaction after a reconnect; it is read again from its start."""
        del self.items[self._last_commit_index :]
        self._gtid = None


def _fold_gtids(position: gtid.GtidPosition, committed: list[str]) -> gtid.GtidPosition:
    """``position`` advanced by each GTID of ``committed`` in turn (``gtid.advance``), parsed once.

    MariaDB: advancing keeps, per domain, a GTID whose seq is at least the current one, so a run of
    GTIDs ends at the last one with the highest seq of its domain; only that one is parsed into a
    GTID object. Anything unusual goes through ``gtid.advance`` one by one.
    """
    if isinstance(position, gtid.MariaDBPosition):
        winners: dict[int, tuple[int, int]] = {}  # domain -> (seq, server_id)
        for text in committed:
            match = _MARIADB_GTID_TEXT(text)
            if match is None:
                break
            domain, server_id, seq = match.groups()
            best = winners.get(int(domain))
            if best is None or int(seq) >= best[0]:
                winners[int(domain)] = (int(seq), int(server_id))
        else:
            for domain, (seq, server_id) in winners.items():
                position = position.advance(gtid.MariaDBGtid(domain, server_id, seq))
            return position
    for text in committed:
        position = gtid.advance(position, text)
    return position


@dataclass
class StreamSettings:
    """Everything the stream thread needs, captured before it starts."""

    server: ServerSection
    flavor: Flavor
    server_id: int
    database: str
    own_rename_tag: str
    report_host: str = ""
    # The server stores and compares table names in lower case (lower_case_table_names=1): its table
    # maps carry the folded name (which `database` and the decoders' keys are), a statement may
    # spell a moved table in any case.
    fold_names: bool = False  # shown in SHOW REPLICA HOSTS, so an id clash names the move
    heartbeat_s: float = 0.05
    max_reconnects: int = 10
    batch_items: int = 2000
    batch_age_s: float = 0.005
    # Frame packets and decode the common events ourselves (rowcodec); False: the library decodes
    # every event, as before. TABLEMOVER_NATIVE_DECODE=0 is the operator's way back to the library.
    native_decode: bool = field(default_factory=lambda: os.environ.get(NATIVE_DECODE_ENV, "1") != "0")


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
            settings.database,
            decoders,
            settings.flavor,
            settings.own_rename_tag,
            start,
            fold_names=settings.fold_names,
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
            except (StreamLost, pymysql.err.MySQLError, OSError, EOFError) as exc:
                # Any driver error of the binlog connection (a killed dump thread, a restarting
                # server, a half-read packet) is met by reconnecting; only 1236 is final.
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
                # Woken by stop(): a stopping daemon must not wait out the backoff.
                self._stop.wait(min(0.1 * 2**attempts, 5.0))
            finally:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None

    def _pump(self, reader: _Reader) -> None:
        native = (
            _NativeFraming.of(reader, self.translator.decoders, self.settings.database)
            if self.settings.native_decode
            else None
        )
        if native is None:
            self._pump_library(reader)
        else:
            self._pump_native(reader, native)

    def _pump_library(self, reader: _Reader) -> None:
        """Every event decoded by the library (the reference path, and the fallback)."""
        tr = self.translator
        first_pending = 0.0
        for ev in reader:
            if self._stop.is_set():
                return
            self._flowing = True
            heartbeat = self._translate(ev)
            now = time.monotonic()
            if tr.items and not first_pending:
                first_pending = now
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

    def _translate(self, ev: Any) -> bool:
        """Feed one library event to the translator; True for a heartbeat."""
        tr = self.translator
        if isinstance(ev, RowsEvent):
            tables = tr.decoders
            if ev.schema == self.settings.database and ev.table in tables:
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
        return isinstance(ev, HeartbeatLogEvent)

    def _pump_native(self, reader: _Reader, framing: _NativeFraming) -> None:
        """Frame packets ourselves and decode the common events natively; the library does the rest.

        Natively: MariaDB GTID and Xid events, TABLE_MAP events of known table ids (skipped, as
        the library does with freeze_schema), and row events of moved tables that have a compiled
        decoder (rowcodec). Every other event the library would return is handed to the library as
        the packet it is (``_NativeFraming.delegate``), in stream order, so the translator sees
        exactly the sequence the library path gives it. The hand-over rules are those of
        ``_pump_library``, checked after every event.
        """
        tr = self.translator
        items = tr.items  # mutated in place by the translator, never replaced
        stop = self._stop.is_set
        monotonic = time.monotonic
        batch_items = self.settings.batch_items
        overflow = batch_items * 4
        batch_age = self.settings.batch_age_s
        hand_over = self._hand_over
        first = reader.fetchone()  # connects; the library reads the server's preamble
        if first is None:
            return
        self._flowing = True
        framing.attach()
        first_pending = 0.0
        heartbeat = self._translate(first)
        read = framing.read_packet
        gtid_type = framing.gtid_type
        gtid_event = tr.gtid_event
        xid_event = tr.xid_event
        while True:
            if items and not first_pending:
                first_pending = monotonic()
            if len(items) >= overflow:
                hand_over(tr.take(partial=True))
                first_pending = 0.0
            elif tr.pending_complete and (
                heartbeat
                or tr.urgent
                or tr.pending_complete >= batch_items
                or monotonic() - first_pending >= batch_age
            ):
                hand_over(tr.take())
                first_pending = monotonic() if items else 0.0
            elif heartbeat and tr.events:
                hand_over(tr.take())
            heartbeat = False
            # The next event the library would have returned.
            while True:
                if stop():
                    return
                data = read()
                if data is None:
                    return  # end of the stream (never in blocking mode)
                kind = data[5]
                if kind == gtid_type:
                    seq_no, domain, flags = _MARIADB_GTID.unpack_from(data, 20)
                    server_id = _UINT32.unpack_from(data, 6)[0]
                    gtid_event(f"{domain}-{server_id}-{seq_no}", bool(flags & MARIADB_GTID_FL_STANDALONE))
                    break
                if kind == XID_EVENT_TYPE:
                    xid_event()
                    break
                if kind in rowcodec.ROWS_EVENT_OPS:
                    done = self._rows_packet(framing, data, kind)
                    if done is None:
                        continue
                    if done is not True:
                        heartbeat = self._translate(done)
                    break
                if kind == TABLE_MAP_EVENT_TYPE and framing.known_table(data):
                    continue  # freeze_schema: a known table id's map is not parsed again
                if kind not in framing.delegated:
                    continue  # an event type the library drops (not asked for)
                ev = framing.delegate(data)
                if ev is None:
                    continue  # the library consumed it (a table map, a format description, ...)
                heartbeat = self._translate(ev)
                break

    def _rows_packet(self, framing: _NativeFraming, data: bytes, kind: int) -> Any:
        """A rows event: True when translated here, None when skipped, else the library's event."""
        tr = self.translator
        plan = framing.plan(data)
        if plan is None:
            return None  # a table id the library does not know: it skips the event
        if not plan.moved:
            tr.events += 1  # another table's event: counted, not decoded
            return True
        decode = plan.decoders.get(kind)
        layout = framing.layout(data, kind) if decode is not None else None
        if decode is None or layout is None:
            return framing.delegate(data)
        columns, present, present_after, start, end = layout
        if columns != plan.width:
            return framing.delegate(data)  # what the library makes of it (SchemaChanged)
        # The same screening as the library path, before anything is decoded.
        if not full_image(present, columns) or (
            present_after is not None and not full_image(present_after, columns)
        ):
            tr.partial_image(plan.name, rowcodec.ROWS_EVENT_OPS[kind])
        try:
            changes = decode(data, start, end)
        except Exception as exc:  # bytes that do not fit the table: the library decides
            framing.mismatch(plan.name, exc)
            return framing.delegate(data)
        tr.row_changes(changes)
        return True

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
