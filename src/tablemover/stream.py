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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pymysql
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream
from pymysql.constants.CR import CR_SERVER_LOST
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import binlogstream as _binlogstream
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from tablemover import events, gtid, mysqljson, rowcodec, tls
from tablemover.changes import Commit, Op, RowChange, StreamBatch
from tablemover.config import ServerSection
from tablemover.decode import RowDecoder, UnreproducibleValue
from tablemover.errors import BinlogPurged, SchemaChanged, StreamError, UnreproducibleEvent, XAUnresolved
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.redact import digest
from tablemover.statements import ChangeKind, TableChange, changes_any

MARIADB_GTID_FL_STANDALONE = 0x01
MARIADB_GTID_FL_PREPARED_XA = 0x40  # the group is an XA transaction that ends in XA PREPARE
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


_original_read_binary_json = BinLogPacketWrapper.read_binary_json


def _raw_json(self: Any, size: int, is_partial: bool) -> Any:
    # MySQL's binary JSON, undecoded: decode.py renders it exactly (mysqljson) or refuses it. The
    # library's parser raises TypeError on a DECIMAL or DATETIME inside a document (and would
    # on every resume). A partial update (PARTIAL_JSON) keeps the library's reader.
    if is_partial:
        return _original_read_binary_json(self, size, is_partial)
    return mysqljson.read_raw(self, size)


BinLogPacketWrapper.read_binary_json = _raw_json
Table.__init__ = _table_init
Table.data = property(_table_data)
RowsEvent._RowsEvent__read_string = _raw_string
RowsEvent._RowsEvent__read_time2 = _time2
RowsEvent._RowsEvent__read_date = _date
RowsEvent._RowsEvent__read_datetime2 = _datetime2


class _DumpGtidSet:
    """Stands in for the library's ``GtidSet`` where its MySQL dump request encodes the position.

    The library builds ``GtidSet(auto_position)`` there only to send ``encoded()`` with the
    COM_BINLOG_DUMP_GTID request, and its parser rejects MySQL 8.3+ tagged GTIDs
    (``uuid:tag:1-5``): a source whose gtid_executed holds one would kill the stream thread with a
    ValueError, on every resume. Our own GtidSet parses and encodes tags as the server does
    (:meth:`gtid.MySQLGtidSet.encode`); an untagged set encodes byte for byte as the library's.
    """

    def __init__(self, text: str) -> None:
        self._encoded = gtid.MySQLGtidSet.parse(text).encode()

    @property
    def encoded_length(self) -> int:
        """Bytes of the encoded set (the library sends it as the payload's length)."""
        return len(self._encoded)

    def encoded(self) -> bytes:
        """The encoded set."""
        return self._encoded


_binlogstream.GtidSet = _DumpGtidSet  # the only use of GtidSet in binlogstream is the dump request
_original_connect = BinLogStreamReader._BinLogStreamReader__connect_to_stream


XID_EVENT_TYPE = 16
TABLE_MAP_EVENT_TYPE = 19
MARIADB_GTID_EVENT_TYPE = 162
_MARIADB_GTID = struct.Struct("<QIB")  # seq_no, domain_id, flags: the start of the event body
_UINT32 = struct.Struct("<I")
_MARIADB_GTID_TEXT = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)").fullmatch  # what MariaDBGtid.parse takes
_MAX_PACKET = 0xFFFFFF  # a protocol packet of this length continues in the next one


_UNREAD = object()  # no format description looked at yet

# What the stream does with each event type (index: the type number), from the allow-list in
# events.py. PASS: the library handles it (parses what the translator needs, or drops a harmless
# type); the others are ours on both paths. The native pump splits PASS by whether the library
# must see the packet (_NativeFraming.actions).
_PASS, _REFUSE, _INFLATE, _ROWS, _SCOPED, _LOAD, _DELEGATE, _SKIP = range(8)


def _action(code: int) -> int:
    if code in events.COMPRESSED_TYPES:
        return _INFLATE
    if code in events.TABLE_SCOPED_TYPES:
        return _SCOPED
    if code in events.REFUSED_TYPES:
        return _REFUSE
    if code in events.ROWS_TYPES:
        return _ROWS
    if code == events.EXECUTE_LOAD_QUERY_TYPE:
        return _LOAD
    return _PASS


# The library's event classes the translator takes (the reader's only_events).
READER_EVENTS = (
    MariadbGtidEvent,
    GtidEvent,
    QueryEvent,
    XidEvent,
    XAPrepareEvent,  # XA PREPARE ends an XA transaction's first part (Translator)
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    HeartbeatLogEvent,
    RotateEvent,
)
_ACTIONS: tuple[int, ...] = tuple(_action(code) for code in range(256))
# Rows events with this table id carry no rows: an end-of-statement marker (~0 in 6 bytes).
_DUMMY_TABLE_ID = 0xFFFFFFFFFFFF
# Post-header lengths to assume for types a format description does not declare.
_DEFAULT_POST_HEADER = {2: 13, 18: 26, 165: 13, 166: 8, 167: 8, 168: 8, 169: 10, 170: 10, 171: 10}


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
        # What the pump does with each type it does not decode inline (see _PASS): a type the
        # library parses goes to it, any other allowed type is passed over here.
        self.actions = tuple(
            (_DELEGATE if code in allowed_types else _SKIP) if action == _PASS else action
            for code, action in enumerate(_ACTIONS)
        )

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

        # The reader our screen installed on the connection (``_Reader._tm_watch``), if any, is put
        # back afterwards: the library reads through it should it ever read on its own again.
        previous = vars(conn).get("_read_packet")
        conn._read_packet = serve
        try:
            return self._reader.fetchone()
        except _Drained:
            return None
        finally:
            if previous is None:
                del conn._read_packet
            else:
                conn._read_packet = previous

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

    def post_header(self, kind: int) -> int:
        """The post-header length of an event type, as the format description declares it."""
        return _post_header(self._reader, kind)

    @property
    def checksum_len(self) -> int:
        """Bytes of checksum at the end of every event."""
        return self._checksum_len

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


def _post_header(reader: Any, kind: int) -> int:
    lengths = reader._BinLogStreamReader__post_header_lengths
    if lengths and kind <= len(lengths):
        return int(lengths[kind - 1])
    return _DEFAULT_POST_HEADER.get(kind, 10 if kind >= 30 else 8)


class StreamLost(Exception):
    """The binlog connection dropped; we reconnect ourselves at the last commit boundary."""


class _Reader(BinLogStreamReader):  # type: ignore[misc]
    """A reader that connects once and raises instead of silently reconnecting."""

    _tm_connected = False
    # Looks at every event packet before the library does (BinlogStream._screen_packet): refuses a
    # type the allow-list does not pass, inflates a compressed one. None: nothing is screened.
    _tm_screen: Callable[[Any, bytes], bytes] | None = None

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._tm_connected:
            raise StreamLost("binlog connection lost")
        self._tm_connected = True
        _original_connect(self)
        self._tm_watch()

    def _tm_watch(self) -> None:
        """Put the screen between the binlog connection and the library (after the dump request).

        The library drops every event type it was not asked for, and maps unknown types to an event
        it drops too; reading every packet here first is what makes the allow-list hold on the
        library path (the native pump screens the packets it reads itself).
        """
        screen = self._tm_screen
        if screen is None:
            return
        conn = self._stream_connection
        read = conn._read_packet

        def screened(packet_type: Any = MysqlPacket) -> Any:
            packet = read(packet_type)
            data = packet._data
            if len(data) >= 20 and data[0] == 0:  # an event (OK byte + header), not EOF or error
                checked = screen(self, data)
                if checked is not data:
                    packet = packet_type(checked, conn.encoding)
            return packet

        conn._read_packet = screened


# Row changes a transaction may keep un-handed-over while the binlog has not yet said whether they
# stand (an open savepoint, an XA transaction before its outcome): about 12x the stream's overflow
# at the default batch size, a few hundred MB at most.
HOLD_LIMIT = 100_000
_IDENTIFIER = r"(`(?:[^`]|``)+`|[^\s`;]+)"
_SAVEPOINT = re.compile(r"SAVEPOINT\s+" + _IDENTIFIER, re.IGNORECASE).fullmatch
_ROLLBACK_TO = re.compile(
    r"ROLLBACK(?:\s+WORK)?\s+TO\s+(?:SAVEPOINT\s+)?" + _IDENTIFIER, re.IGNORECASE
).fullmatch
_RELEASE = re.compile(r"RELEASE\s+SAVEPOINT\s+" + _IDENTIFIER, re.IGNORECASE).fullmatch
_XA_STATEMENT = re.compile(
    r"XA\s+(START|BEGIN|END|COMMIT|ROLLBACK|PREPARE)\s+(.+?)", re.IGNORECASE | re.DOTALL
).fullmatch
_XA_TAIL = re.compile(r"\s+(ONE\s+PHASE|JOIN|RESUME|SUSPEND(?:\s+FOR\s+MIGRATE)?)$", re.IGNORECASE)
_XID_HEX = re.compile(r"X'([0-9A-Fa-f]*)'\s*,\s*X'([0-9A-Fa-f]*)'\s*,\s*([0-9]+)").fullmatch
_DISCARD = "`tablemover discard -c FILE --yes`, then `tablemover run -c FILE`"


def xid_text(format_id: int, gtrid: bytes, bqual: bytes) -> str:
    """An XA transaction id as the server writes it in the binlog: ``X'gtrid',X'bqual',formatID``."""
    return f"X'{gtrid.hex()}',X'{bqual.hex()}',{format_id}"


def _xid_key(text: str) -> str:
    """The XA id of a statement's text, spelled as :func:`xid_text` does (hex in lower case)."""
    found = _XID_HEX(text.strip())
    if found is None:
        return " ".join(text.split())
    gtrid, bqual, format_id = found.groups()
    return f"X'{gtrid.lower()}',X'{bqual.lower()}',{int(format_id)}"


def _xid_shown(key: str) -> str:
    """The XA id for a message: the binlog's spelling, plus the gtrid as typed when it is text."""
    found = _XID_HEX(key)
    if found is None:
        return key
    try:
        readable = bytes.fromhex(found.group(1)).decode("ascii")
    except (UnicodeDecodeError, ValueError):
        return key
    return f"{key} (XA START '{readable}')" if readable.isprintable() else key


def _savepoint_name(identifier: str) -> str:
    """A savepoint's name as the server compares it: unquoted, case-insensitive."""
    if identifier.startswith("`"):
        identifier = identifier[1:-1].replace("``", "`")
    return identifier.casefold()


@dataclass(slots=True)
class _PreparedXA:
    """An XA transaction with rows of moved tables, prepared; the binlog has not logged its outcome.

    Its row changes are ``items[start:end]``. Nothing from ``start`` on is handed over, and the GTIDs
    of what follows it are kept out of the position, until the outcome is read: so a checkpoint
    never passes the prepare, and a restart reads the prepared transaction again.
    """

    xid: str
    gtid: str
    start: int
    end: int


class Translator:
    """Turns binlog events into row changes and commit markers; pure, no I/O.

    A transaction's GTID is emitted as a :class:`Commit` only at its commit boundary (Xid, COMMIT,
    or the end of a standalone statement such as DDL), never at its GTID event: the writer may only
    count a transaction as applied once all of its rows are (spec rule 6).

    Transactions are reproduced as the server committed them: the row changes of a transaction
    that ends in ROLLBACK are dropped, those after a savepoint the transaction rolls back to are
    dropped, and those of an XA transaction go out only with its XA COMMIT (XA ROLLBACK drops them).
    Until the binlog says whether such row changes stand they are not handed over. A transaction
    of any other shape (a GTID while one is open, rows outside a transaction, an XA outcome we did
    not see prepared while one is pending) stops the move: :class:`UnreproducibleEvent`.
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
        # Where the open transaction's items begin in ``items``; below 0 once a partial take has
        # handed some of them over (then they can no longer be taken back).
        self._txn_start = 0
        self._savepoints: list[tuple[str, int]] = []  # (name, index in items) of the open transaction
        self._xa: str | None = None  # the open transaction is XA ("" until its id is read)
        # Prepared XA transactions with rows of moved tables whose outcome is not read yet, oldest
        # first, and the GTIDs committed since the oldest one: kept out of the position till then.
        self._prepared: list[_PreparedXA] = []
        self._deferred: list[str] = []

    @property
    def position(self) -> gtid.GtidPosition:
        """The source position through the last commit boundary seen."""
        self._fold()
        return self._position

    def _fold(self) -> None:
        if self._committed:
            self._position = _fold_gtids(self._position, self._committed)
            self._committed.clear()

    def gtid_event(self, gtid_text: str, standalone: bool, *, xa: bool = False) -> None:
        """A transaction starts; ``xa``: MariaDB flags it as an XA transaction (FL_PREPARED_XA)."""
        self.events += 1
        if self._gtid is not None:
            # Each transaction ends (Xid, COMMIT, ROLLBACK, XA PREPARE, or its one statement)
            # before the next GTID; what we applied of this one would be guesswork.
            raise self._refusal(
                f"transaction {gtid_text} starts while transaction {self._gtid} has not ended (no "
                "commit, rollback or XA PREPARE was logged for it)",
                "The binlog holds a transaction shape tablemover does not reproduce",
            )
        self._gtid = gtid_text
        # MySQL writes BEGIN after the GTID for multi-statement transactions; MariaDB flags
        # standalone (DDL) groups instead. Assume standalone until BEGIN says otherwise on MySQL.
        self._standalone = standalone
        self._txn_start = len(self.items)
        self._xa = "" if xa else None

    def query_event(self, query: str, schema: str) -> None:
        """BEGIN, COMMIT, ROLLBACK, savepoints, XA statements, or a statement (DDL) of its own."""
        self.events += 1
        text = query.strip().rstrip(";").strip()
        upper = text.upper()
        if upper in ("BEGIN", "START TRANSACTION"):
            self._standalone = False
            return
        if upper == "COMMIT":
            self._commit()
            return
        if upper in ("ROLLBACK", "ROLLBACK WORK"):
            self._rollback()
            return
        if (
            self._gtid is not None
            and upper.startswith(("SAVEPOINT", "ROLLBACK", "RELEASE", "XA"))
            and self._transaction_statement(text)
        ):
            return
        if self.own_rename_tag not in query:
            self._screen_statement(query, schema)
        if self._standalone:
            self._commit()
            if self.own_rename_tag in query:
                # Our cutover RENAME: the source's writes are blocked until the writer has it, so
                # it must not wait for the batch age or the next heartbeat (50 ms of outage).
                self.urgent = True

    def _transaction_statement(self, text: str) -> bool:
        """A savepoint or XA statement of the open transaction, reproduced; False: not one of them."""
        found = _SAVEPOINT(text)
        if found is not None:
            name = _savepoint_name(found.group(1))
            # A savepoint of the same name replaces the older one (as the server does).
            self._savepoints = [s for s in self._savepoints if s[0] != name]
            self._savepoints.append((name, len(self.items)))
            return True
        found = _ROLLBACK_TO(text)
        if found is not None:
            self._rollback_to(_savepoint_name(found.group(1)), found.group(1))
            return True
        found = _RELEASE(text)
        if found is not None:
            name = _savepoint_name(found.group(1))
            for i, (known, _index) in enumerate(self._savepoints):
                if known == name:
                    del self._savepoints[i:]  # the server releases it and every later one
                    break
            return True
        found = _XA_STATEMENT(text)
        if found is None:
            return False
        verb = found.group(1).upper()
        rest = found.group(2).strip()
        tail = _XA_TAIL.search(rest)
        modifier = " ".join(tail.group(1).upper().split()) if tail else ""
        xid = _xid_key(rest[: tail.start()] if tail else rest)
        if verb in ("START", "BEGIN"):
            # MySQL: XA START opens the transaction (there is no BEGIN).
            self._standalone = False
            self._xa = xid
        elif verb == "END":
            if self._xa is not None:
                self._xa = xid
        elif verb == "COMMIT" and modifier == "ONE PHASE":
            self._commit()  # the XA transaction's own commit: its rows are applied with it
        elif verb in ("COMMIT", "ROLLBACK"):
            self._xa_outcome(xid, commit=verb == "COMMIT")
        else:
            raise self._refusal(
                f"transaction {self._gtid} logs XA {verb} {_xid_shown(xid)} as a statement, which "
                "tablemover does not reproduce",
                "The binlog holds a transaction shape tablemover does not reproduce",
                xid=xid,
            )
        return True

    def xid_event(self) -> None:
        """An InnoDB transaction committed."""
        self.events += 1
        self._commit()

    def xa_prepare_event(self, one_phase: bool, xid: str) -> None:
        """XA_PREPARE_LOG_EVENT (type 38): an XA transaction prepared (or, one phase, committed)."""
        self.events += 1
        if one_phase:
            self._commit()  # MySQL's XA COMMIT ... ONE PHASE: the transaction's commit
            return
        if self._gtid is None:
            return self._stray_boundary()
        if self._txn_start == len(self.items):
            # Nothing of a moved table in it: whatever its outcome, there is nothing to apply.
            self._commit()
            return
        if self._txn_start < 0:
            raise self._refusal(
                f"XA transaction {_xid_shown(xid)} (GTID {self._gtid}) has more row changes of moved "
                "tables than tablemover holds back until an XA outcome",
                "Nothing of it was applied",
                xid=xid,
            )
        self._prepared.append(_PreparedXA(xid, self._gtid, self._txn_start, len(self.items)))
        self._gtid = None
        self._savepoints.clear()
        self._xa = None

    def _xa_outcome(self, xid: str, *, commit: bool) -> None:
        """XA COMMIT or XA ROLLBACK of a prepared transaction: its group is this statement alone."""
        held = next((p for p in self._prepared if p.xid == xid), None)
        if held is None:
            # Not one we hold: its rows touched no moved table (committed at its prepare), or it
            # was prepared before our start position, and then the copy read its outcome (the
            # copy's locking read waits for a prepared transaction's row locks).
            self._commit()
            return
        # Its row changes stand (XA COMMIT) or not (XA ROLLBACK) at the place of its prepare, as
        # the source's binlog orders them: what committed in between cannot have touched its rows,
        # which the prepared transaction held locked.
        if commit:
            self.items.insert(held.end, Commit(held.gtid))
            shift = 1
        else:
            del self.items[held.start : held.end]
            self.items.insert(held.start, Commit(held.gtid))
            shift = 1 - (held.end - held.start)
        self._prepared.remove(held)
        for later in self._prepared:
            if later.start >= held.end:
                later.start += shift
                later.end += shift
        self._deferred.append(held.gtid)
        if not self._prepared:
            self._committed.extend(self._deferred)  # what was held back goes out now
            self._deferred.clear()
        self._commit()

    def rows_event(self, table: str, op: Op, rows: list[dict[str, Any]]) -> None:
        """Row images of one row event; ``table`` is known to be a moved table."""
        self.events += 1
        self._rows_inside(table)
        try:
            self._decode_rows(table, op, rows)
        except UnreproducibleValue as exc:
            raise UnreproducibleEvent(
                f"transaction {self._gtid or '?'} writes a value to moved table "
                f"{self.database}.{table} that tablemover cannot write exactly ({exc}). Nothing of "
                "that transaction was applied. Change the application so that it does not store "
                "such values in the moved table (or move the table another way), then start the "
                "move over: `tablemover discard -c FILE --yes`, then `tablemover run -c FILE`.",
                gtid=self._gtid or "",
                table=f"{self.database}.{table}",
                statement="",
            ) from exc

    def _decode_rows(self, table: str, op: Op, rows: list[dict[str, Any]]) -> None:
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
        if self._gtid is None or self._standalone:
            self._rows_inside(changes[0].table if changes else "?")
        self.items.extend(changes)

    def _rows_inside(self, table: str) -> None:
        """Row changes of a moved table belong inside a transaction (after BEGIN, before COMMIT)."""
        if self._gtid is not None and not self._standalone:
            return
        where = (
            f"in transaction {self._gtid}, which is a single statement (no BEGIN)"
            if self._gtid is not None
            else "outside any transaction (after a commit, before the next GTID)"
        )
        raise UnreproducibleEvent(
            f"the binlog holds row changes of moved table {self.database}.{table} {where}. That is "
            "not a transaction shape tablemover reproduces, and applying them could apply rows the "
            f"source never committed. Nothing of them was applied; the move must start over: {_DISCARD}.",
            gtid=self._gtid or "",
            table=f"{self.database}.{table}",
        )

    def _commit(self) -> None:
        gtid_text = self._gtid
        if gtid_text is None:
            return self._stray_boundary()
        self.items.append(Commit(gtid_text))
        if not self._prepared:
            self._committed.append(gtid_text)
            self._last_commit_index = len(self.items)
        else:
            # After a prepared XA transaction whose outcome is not logged yet: held back with it.
            self._deferred.append(gtid_text)
            if len(self.items) - self._prepared[0].start > HOLD_LIMIT:
                raise self._xa_pending(f"{len(self._deferred)} transactions followed it")
        self._gtid = None
        self._savepoints.clear()
        self._xa = None

    def _stray_boundary(self) -> None:
        # A commit with no transaction open. Before the first GTID since (re)connecting: the end
        # of a transaction that started before our start position, which covers it (the server
        # starts at a transaction boundary, so this is defensive). After one: MySQL 8's atomic
        # CREATE TABLE ... SELECT commits (Xid) after its statement, which ended it here already;
        # its rows are of a new table, never a moved one (those would be refused as rows outside
        # a transaction). Nothing is emitted either way.
        return None

    def _rollback(self) -> None:
        """A transaction logged with ROLLBACK: none of its row changes stand; its GTID is consumed."""
        if self._gtid is None:
            return self._stray_boundary()
        if self._txn_start < 0:
            raise self._refusal(
                f"transaction {self._gtid} ends in ROLLBACK after part of it was handed to the "
                "target writer (it is larger than the stream hands over at once)",
                "Nothing of it was committed on the target",
            )
        del self.items[self._txn_start :]
        self._commit()

    def _rollback_to(self, name: str, spelled: str) -> None:
        for i in range(len(self._savepoints) - 1, -1, -1):
            known, index = self._savepoints[i]
            if known != name:
                continue
            if index < 0:
                raise self._refusal(
                    f"transaction {self._gtid} rolls back to savepoint {spelled} after row changes "
                    "made since it were handed to the target writer (more than tablemover holds "
                    f"back, {HOLD_LIMIT})",
                    "Nothing of it was committed on the target",
                )
            del self.items[index:]  # the savepoint stays; later ones are gone (as on the server)
            del self._savepoints[i + 1 :]
            return
        raise self._refusal(
            f"transaction {self._gtid} rolls back to savepoint {spelled}, which it did not set in the binlog",
            "Nothing of it was applied",
        )

    def _refusal(self, what: str, applied: str, *, xid: str = "") -> UnreproducibleEvent:
        held = f"; XA id {_xid_shown(xid)}" if xid else ""
        return UnreproducibleEvent(
            f"{what}{held}. {applied}; the move must start over: {_DISCARD}. If this repeats, "
            "report it with the output of `mariadb-binlog --base64-output=decode-rows -v` for that "
            "GTID.",
            gtid=self._gtid or "",
        )

    def _xa_pending(self, why: str) -> XAUnresolved:
        """The refusal for a prepared XA transaction whose outcome is too far away to wait for."""
        held = self._prepared[0]
        return XAUnresolved(
            f"XA transaction {_xid_shown(held.xid)} (GTID {held.gtid}) changed moved tables and "
            f"was prepared, and its outcome is not in the binlog yet ({why}). Its changes may only "
            f"be applied with its XA COMMIT, and tablemover holds back at most {HOLD_LIMIT} changes "
            "after it while it waits, so the move stops here: nothing of it or after it was applied. "
            "Resolve it on the source (`XA RECOVER FORMAT='SQL'` lists it; XA COMMIT or XA ROLLBACK "
            f"it, or let its coordinator finish), then start the move over: {_DISCARD}.",
            xid=held.xid,
            gtid=held.gtid,
        )

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

    def _holdback(self) -> int:
        """How many leading items a partial take may hand over: none whose fate is still open.

        An XA transaction's row changes wait for its outcome (over HOLD_LIMIT: refused). Those after
        an open savepoint wait while they are few enough; past that they go, and a ROLLBACK TO
        that savepoint is refused instead.
        """
        cut = len(self.items)
        if self._prepared:
            oldest = self._prepared[0]
            if cut - oldest.start > HOLD_LIMIT:
                raise self._xa_pending(f"{len(self._deferred)} transactions followed it")
            cut = oldest.start
        elif self._xa is not None and self._gtid is not None:
            if self._txn_start < 0 or cut - self._txn_start > HOLD_LIMIT:
                raise self._refusal(
                    f"XA transaction {self._gtid} has more than {HOLD_LIMIT} row changes of moved "
                    "tables, more than tablemover holds back until its outcome",
                    "Nothing of it was applied",
                    xid=self._xa,
                )
            cut = self._txn_start
        for _name, index in self._savepoints:
            if index >= 0 and len(self.items) - index <= HOLD_LIMIT:
                cut = min(cut, index)
                break
        return cut

    def take(self, *, partial: bool = False) -> StreamBatch | None:
        """Hand over buffered items: through the last commit, or all it may when ``partial``."""
        cut = self._holdback() if partial else self._last_commit_index
        if cut == 0 and (self.events == 0 or (partial and self.items)):
            return None
        batch = StreamBatch(self.items[:cut], self.events)
        self._fold()  # the batch's GTIDs: they must not pile up between readings of position
        self.urgent = False
        del self.items[:cut]
        self._last_commit_index = max(self._last_commit_index - cut, 0)
        self._txn_start -= cut
        self._savepoints = [(name, index - cut) for name, index in self._savepoints]
        for held in self._prepared:
            held.start -= cut
            held.end -= cut
        self.events = 0
        return batch

    def rewind(self) -> None:
        """Forget a half-read transaction after a reconnect; it is read again from its start.

        So is a prepared XA transaction still waiting for its outcome, with everything after it:
        the position stayed before it, and the reconnected stream reads it all again.
        """
        del self.items[self._last_commit_index :]
        self._gtid = None
        self._savepoints.clear()
        self._xa = None
        self._prepared.clear()
        self._deferred.clear()

    @property
    def current_gtid(self) -> str:
        """The GTID of the transaction being read; '' between transactions (for refusals)."""
        return self._gtid or ""


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
    report_host: str = ""  # shown in SHOW REPLICA HOSTS, so an id clash names the move
    role: str = "source"  # which server section this is, for messages and the TLS state in `status`
    # The server stores and compares table names in lower case (lower_case_table_names=1): its table
    # maps carry the folded name (which `database` and the decoders' keys are), a statement may
    # spell a moved table in any case.
    fold_names: bool = False
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
        reader = _Reader(
            connection_settings=conn,
            # Both of the library's connections (the dump and its control connection) are opened
            # through tablemover.tls, with the server section's TLS settings.
            pymysql_wrapper=tls.pymysql_connector(s.server, s.role, "binlog"),
            server_id=s.server_id,
            blocking=True,
            resume_stream=True,
            is_mariadb=is_mariadb,
            auto_position=str(self.translator.position),
            # What the translator takes from the library. Every other type is screened before
            # the library sees it (_screen_packet, or the native pump): refused, or passed over
            # as the allow-list in events.py says.
            only_events=list(READER_EVENTS),
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
        reader._tm_screen = self._screen_packet
        return reader

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
            flags = ev.flags
            tr.gtid_event(
                ev.gtid,
                bool(flags & MARIADB_GTID_FL_STANDALONE),
                xa=bool(flags & MARIADB_GTID_FL_PREPARED_XA),
            )
        elif isinstance(ev, GtidEvent):
            tr.gtid_event(ev.gtid, True)
        elif isinstance(ev, XidEvent):
            tr.xid_event()
        elif isinstance(ev, QueryEvent):
            tr.query_event(_text(ev.query), _text(ev.schema))
        elif isinstance(ev, XAPrepareEvent):
            tr.xa_prepare_event(ev.one_phase, xid_text(ev.xid_format_id, ev.xid_gtrid, ev.xid_bqual))
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
        actions = framing.actions
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
                    gtid_event(
                        f"{domain}-{server_id}-{seq_no}",
                        bool(flags & MARIADB_GTID_FL_STANDALONE),
                        xa=bool(flags & MARIADB_GTID_FL_PREPARED_XA),
                    )
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
                action = actions[kind]
                if action == _DELEGATE:
                    ev = framing.delegate(data)
                    if ev is None:
                        continue  # the library consumed it (a table map, a format description, ...)
                    heartbeat = self._translate(ev)
                    break
                if action == _SKIP:
                    continue  # harmless by the allow-list: events.RULES[kind].reason says why
                done = self._screened_packet(framing, data, kind, action)
                if done is None:
                    continue
                if done is not True:
                    heartbeat = self._translate(done)
                break

    def _rows_packet(self, framing: _NativeFraming, data: bytes, kind: int) -> Any:
        """A rows event: True when translated here, None when skipped, else the library's event."""
        tr = self.translator
        plan = framing.plan(data)
        if plan is None:
            return self._unmapped(data, kind)
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

    def _screened_packet(self, framing: _NativeFraming, data: bytes, kind: int, action: int) -> Any:
        """An event the allow-list does not pass as it is: as :meth:`_rows_packet` returns."""
        tr = self.translator
        if action == _INFLATE:
            inflated = self._inflate(data, framing.post_header(kind), framing.checksum_len)
            plain = inflated[5]
            if plain in rowcodec.ROWS_EVENT_OPS:
                return self._rows_packet(framing, inflated, plain)
            return framing.delegate(inflated)  # a QUERY_EVENT, screened as every other one
        if action == _SCOPED:
            plan = framing.plan(data)
            if plan is None:
                return self._unmapped(data, kind)
            if plan.moved:
                raise self._refused(kind, plan.name)
            tr.events += 1  # another table's event: counted, not decoded
            return True
        if action == _LOAD:
            self._screen_load(data, framing.post_header(kind), framing.checksum_len)
            return True
        raise self._refused(kind, data=data)

    def _screen_packet(self, reader: Any, data: bytes) -> bytes:
        """The library path's screen (``_Reader._tm_watch``): the packet the library is to parse.

        Runs when the library reads the packet, so every event before it has been translated and
        the translator names the transaction it belongs to.
        """
        kind = data[5]
        action = _ACTIONS[kind]
        if action == _PASS:
            return data
        checksum_len = 4 if reader._BinLogStreamReader__use_checksum else 0
        if action == _INFLATE:
            data = self._inflate(data, _post_header(reader, kind), checksum_len)
            kind = data[5]
            action = _ACTIONS[kind]  # _ROWS, or _PASS for a QUERY_EVENT
        if action == _ROWS:
            if int.from_bytes(data[20:26], "little") not in reader.table_map:
                self._unmapped(data, kind)
            return data
        if action == _SCOPED:
            table = reader.table_map.get(int.from_bytes(data[20:26], "little"))
            if table is None:
                self._unmapped(data, kind)
            elif table.schema == self.settings.database and table.table in self.translator.decoders:
                raise self._refused(kind, table.table)
            return data  # the library drops it: another table's event
        if action == _LOAD:
            self._screen_load(data, _post_header(reader, kind), checksum_len)
            return data  # the library drops it (never asked for)
        if action == _PASS:
            return data
        raise self._refused(kind, data=data)

    def _refused(
        self, kind: int, table: str = "", detail: str = "", data: bytes = b""
    ) -> UnreproducibleEvent:
        tr = self.translator
        shown = f"{self.settings.database}.{table}" if table else ""
        gtid_text = tr.current_gtid
        if kind == events.GTID_TAGGED_TYPE and data:
            # The event is the GTID of the transaction it refuses: name that one (uuid:tag:gno).
            # Bytes that do not decode are refused all the same, under the transaction before.
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                gtid_text = events.tagged_gtid(data[20:])
        return events.refusal(kind, gtid_text, str(tr.position), table=shown, detail=detail)

    def _inflate(self, data: bytes, post_header_len: int, checksum_len: int) -> bytes:
        try:
            return events.inflate(data, post_header_len, checksum_len)
        except (events.CompressedEventError, IndexError, struct.error) as exc:
            raise self._refused_compressed(data[5], exc) from exc

    def _refused_compressed(self, kind: int, exc: Exception) -> UnreproducibleEvent:
        tr = self.translator
        name = events.rule(kind).name
        gtid_text = tr.current_gtid
        return UnreproducibleEvent(
            f"transaction {gtid_text or '?'} holds a {name} event (type {kind}, MariaDB "
            f"log_bin_compress=ON) that does not inflate as MariaDB writes it ({exc}). Nothing of that "
            "transaction was applied. Set log_bin_compress=OFF on the source and report the event "
            "(mysqlbinlog --hexdump); then start the move over: `tablemover discard -c FILE --yes`, "
            "then `tablemover run -c FILE`.",
            gtid=gtid_text,
            statement=name,
        )

    def _unmapped(self, data: bytes, kind: int) -> None:
        """A rows event whose table id no TABLE_MAP named: whose rows they are is unknown."""
        if int.from_bytes(data[20:26], "little") == _DUMMY_TABLE_ID:
            return None  # an end-of-statement marker: it carries no rows
        raise self._refused(
            kind, detail="its table id was not mapped by a TABLE_MAP event, so whose rows they are is unknown"
        )

    def _screen_load(self, data: bytes, post_header_len: int, checksum_len: int) -> None:
        """A statement-logged LOAD DATA: refused when it loads a moved table, else passed over."""
        tr = self.translator
        tr.events += 1
        schema, query = events.execute_load_query(data, post_header_len, checksum_len)
        change = changes_any(query, schema, self.settings.database, tr.decoders)
        if change is not None:
            raise _refusal_for_statement(change, self.settings.database, tr.current_gtid or "?", query)

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
    # The message reaches the log, status, the checkpoint and TABLEMOVER_ERROR: a session's
    # statement may carry secrets in its literals, so only its shape is shown.
    shown = digest(query)
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
