"""Every event type number 0-255 through both decoders: reproduced, harmless, or refused; never skipped.

Each type is fed, as a minimal packet inside an open transaction, through the real stream code with
the real mysql-replication reader on a connection that replays bytes: once through the native
framing (``_pump_native``) and once through the library path (``_pump_library``). The expected
outcome of each number is written out here, independently of the allow-list in events.py, so
dropping a type from the allow-list, or passing over one that should stop the move, fails a case.
Event bytes follow the documented formats (MySQL libbinlogevents, MariaDB log_event.cc).
"""

from __future__ import annotations

import queue
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from pymysqlreplication.column import Column as LibColumn
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.table import Table
from test_native_framing import connection, frame

from tablemover import events, stream
from tablemover.changes import Commit, Op, RowChange
from tablemover.decode import RowDecoder
from tablemover.errors import SchemaChanged, UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition, MySQLGtidSet
from tablemover.schema import Column, Index, TableSchema

MOVED_ID, OTHER_ID, NEW_ID = 7, 8, 9
EOF = b"\xfe\x00\x00\x02\x00"
SID = bytes(range(16))
SID_TEXT = "00010203-0405-0607-0809-0a0b0c0d0e0f"


def event(kind: int, body: bytes, *, server_id: int = 1) -> bytes:
    """A binlog event packet: OK byte, 19-byte header, body, 4 checksum bytes."""
    size = 19 + len(body) + 4
    return b"\x00" + struct.pack("<IBIIIH", 0, kind, server_id, size, 0, 0) + body + b"\xcc" * 4


def mariadb_gtid(seq: int) -> bytes:
    return event(162, struct.pack("<QIB", seq, 0, 0) + bytes(6))


def compress(raw: bytes) -> bytes:
    """MariaDB's compressed buffer: 0x80 | length bytes, the length (big-endian), zlib."""
    n = 1 if len(raw) < 0x100 else 2
    return bytes([0x80 | n]) + len(raw).to_bytes(n, "big") + zlib.compress(raw)


def rows_body(kind: int, table_id: int = MOVED_ID, *, compressed: bool = False) -> bytes:
    """A rows event of a one-INT-column table: id 41 (UPDATE: 41 -> 42)."""
    plain = events.COMPRESSED_TYPES.get(kind, kind)
    post = table_id.to_bytes(6, "little") + b"\x01\x00"  # table id, flags (STMT_END)
    if plain >= 30 or kind == 39:
        post += b"\x02\x00"  # v2: no extra data
    update = plain in (24, 31, 39)
    head = b"\x01" + b"\x01" + (b"\x01" if update else b"")  # one column; present bitmap(s)
    image = b"\x00" + struct.pack("<i", 41)
    rows = image + (b"\x00" + struct.pack("<i", 42) if update else b"")
    return post + head + (compress(rows) if compressed else rows)


def query_body(query: bytes, schema: bytes = b"app", *, compressed: bool = False) -> bytes:
    post = struct.pack("<IIBHH", 1, 0, len(schema), 0, 0)
    return post + schema + b"\x00" + (compress(query) if compressed else query)


def load_body(table: str) -> bytes:
    post = struct.pack("<IIBHH", 1, 0, 3, 0, 0) + struct.pack("<IIIB", 1, 0, 0, 0)
    return post + b"app\x00" + f"LOAD DATA INFILE '/tmp/x' INTO TABLE {table}".encode()


def table_map_body(table_id: int) -> bytes:
    post = table_id.to_bytes(6, "little") + b"\x01\x00"
    return post + b"\x03app\x00\x01t\x00" + b"\x01" + bytes([FIELD_TYPE.LONG]) + b"\x00" + b"\x00"


def format_description_body() -> bytes:
    lengths = bytearray(171)
    for kind, length in {2: 13, 18: 26, 19: 8, 23: 8, 24: 8, 25: 8, 30: 10, 31: 10, 32: 10, 165: 13}.items():
        lengths[kind - 1] = length
    for kind in (166, 167, 168):
        lengths[kind - 1] = 8
    for kind in (169, 170, 171):
        lengths[kind - 1] = 10
    version = b"10.11.19-MariaDB".ljust(50, b"\x00")
    return struct.pack("<H", 4) + version + struct.pack("<IB", 0, 19) + bytes(lengths) + b"\x01"


def mysql_gtid_body() -> bytes:
    return b"\x01" + SID + struct.pack("<Q", 77) + b"\x02" + struct.pack("<QQ", 0, 1)


def xa_prepare_body() -> bytes:
    """XA_PREPARE_LOG_EVENT: one_phase, formatID, gtrid and bqual lengths, then the XID's bytes."""
    return b"\x00" + struct.pack("<iii", 1, 3, 2) + b"gtrbq"


def transaction_payload_body() -> bytes:
    """TRANSACTION_PAYLOAD_EVENT: (type, length, value) header fields, end marker, zstd payload."""
    payload = b"\x28\xb5\x2f\xfd" + bytes(8)  # a zstd frame's magic number; never decompressed
    fields = bytes([2, 1, 0])  # compression type: ZSTD (0)
    fields += bytes([1, 1, len(payload)]) + bytes([3, 1, 64])  # payload size, uncompressed size
    return fields + b"\x00" + payload


# ------------------------------------------------------------------------------ the expectations

# Passed over: nothing reaches the translator, nothing raises, the transaction stays open.
HARMLESS = {3, 4, 5, 9, 11, 13, 14, 15, 17, 27, 28, 29, 35, 36, 37, 41, 160, 161, 163, 164}

# Bodies for the types whose bytes the library parses (the rest carry 16 zero bytes).
BODIES: dict[int, bytes] = {
    2: query_body(b"TRUNCATE TABLE t"),
    4: struct.pack("<Q", 4) + b"bin.000002",
    15: format_description_body(),
    16: struct.pack("<Q", 1234),
    18: load_body("t"),
    19: table_map_body(NEW_ID),
    27: b"bin.000001",
    33: mysql_gtid_body(),
    38: xa_prepare_body(),
    39: rows_body(39),
    40: transaction_payload_body(),
    162: struct.pack("<QIB", 6, 0, 0) + bytes(6),
    165: query_body(b"TRUNCATE TABLE t /* compressed */", compressed=True),
    **{k: rows_body(k) for k in events.ROWS_TYPES},
    **{k: rows_body(k, compressed=True) for k in (166, 167, 168, 169, 170, 171)},
}

INSERTED = [RowChange("t", Op.INSERT, None, (41,))]
UPDATED = [RowChange("t", Op.UPDATE, (41,), (42,))]
DELETED = [RowChange("t", Op.DELETE, (41,), None)]


class Run:
    """What one run of the stream made of a wire: items handed on, translator and reader after."""

    def __init__(self, items: list[Any], translator: stream.Translator, reader: Any) -> None:
        self.items, self.translator, self.reader = items, translator, reader


def refused_statement(word: str) -> Callable[[Run | Exception], bool]:
    return lambda r: isinstance(r, UnreproducibleEvent) and word in str(r) and "(type" not in str(r)


# Reproduced: each has an effect the translator or the library's state shows.
EFFECTS: dict[int, Callable[[Run | Exception], bool]] = {
    2: lambda r: isinstance(r, SchemaChanged) and "TRUNCATE" in str(r) and "0-1-5" in str(r),
    16: lambda r: isinstance(r, Run) and r.items == [Commit("0-1-5")],
    18: refused_statement("binlog_format=STATEMENT or MIXED"),
    19: lambda r: isinstance(r, Run) and NEW_ID in r.reader.table_map and r.items == [],
    # A GTID while a transaction is open is a shape the move does not reproduce (Translator).
    33: lambda r: isinstance(r, UnreproducibleEvent) and "starts while transaction 0-1-5" in str(r),
    162: lambda r: isinstance(r, UnreproducibleEvent) and "starts while transaction 0-1-5" in str(r),
    # XA PREPARE of a transaction without moved rows commits it (nothing to hold back).
    38: lambda r: isinstance(r, Run) and r.items == [Commit("0-1-5")],
    165: lambda r: isinstance(r, SchemaChanged) and "TRUNCATE" in str(r),
    **{k: (lambda want: lambda r: isinstance(r, Run) and r.items == want)(v) for k, v in {
        23: INSERTED, 24: UPDATED, 25: DELETED, 30: INSERTED, 31: UPDATED, 32: DELETED,
        166: INSERTED, 167: UPDATED, 168: DELETED, 169: INSERTED, 170: UPDATED, 171: DELETED,
    }.items()},
}  # fmt: skip


def moved_table() -> tuple[Table, RowDecoder]:
    lib = [LibColumn(type=FIELD_TYPE.LONG, name="id", unsigned=False, enum_values=None, set_values=None)]
    ours = Column("id", 0, "int", "int(11)", False, False, None)
    schema = TableSchema("app", "t", (ours,), (Index("PRIMARY", ("id",), True, False),), "", (), ())
    return Table(MOVED_ID, "app", "t", lib), RowDecoder(schema)


class _Ctl:
    charset = "utf8mb4"

    def _get_dbms(self) -> str:
        return "mariadb"

    def close(self) -> None:
        pass


class _MySQLCtl(_Ctl):
    def _get_dbms(self) -> str:
        return "mysql"


def run(wire_events: list[bytes], *, native: bool, mysql: bool = False) -> Run:
    """Feed packets through the stream (native framing or library path) as the dump sends them.

    ``mysql``: a MySQL source (its GTID sets), else MariaDB.
    """
    table, decoder = moved_table()
    settings = stream.StreamSettings(
        server=None,  # type: ignore[arg-type]  # never connects
        flavor=Flavor.MYSQL if mysql else Flavor.MARIADB,
        server_id=1,
        database="app",
        own_rename_tag="tm-rename",
        native_decode=native,
    )
    start = MySQLGtidSet.parse(f"{SID_TEXT}:1-76") if mysql else MariaDBPosition.parse("0-1-1")
    s = stream.BinlogStream(settings, {"t": decoder}, start, None)  # type: ignore[arg-type]
    s._handover = queue.Queue()
    reader = stream._Reader(
        connection_settings={},
        server_id=1,
        blocking=False,
        is_mariadb=not mysql,
        only_events=list(stream.READER_EVENTS),
        freeze_schema=True,
    )
    conn = connection(frame([*wire_events, EOF]))
    conn.close = lambda: None
    reader._stream_connection = conn
    reader._ctl_connection = _MySQLCtl() if mysql else _Ctl()
    reader._BinLogStreamReader__connected_stream = True
    reader._BinLogStreamReader__connected_ctl = True
    reader._BinLogStreamReader__use_checksum = True
    reader.table_map = {
        MOVED_ID: table,
        OTHER_ID: Table(OTHER_ID, "app", "other", [LibColumn(type=FIELD_TYPE.LONG, name="id")]),
    }
    reader._tm_screen = s._screen_packet
    reader._tm_watch()
    s._pump(reader)
    items: list[Any] = []
    while not s._handover.empty():
        items += s._handover.get_nowait().items
    return Run(items + list(s.translator.items), s.translator, reader)


def outcome(kind: int, *, native: bool, body: bytes | None = None) -> Run | Exception:
    packet = event(kind, BODIES.get(kind, bytes(16)) if body is None else body)
    try:
        return run([mariadb_gtid(5), packet], native=native)
    except UnreproducibleEvent as exc:
        return exc


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
@pytest.mark.parametrize("kind", range(256))
def test_every_event_type_is_reproduced_harmless_or_refused(kind: int, native: bool) -> None:
    result = outcome(kind, native=native)
    if kind in EFFECTS:
        assert EFFECTS[kind](result), result
        assert events.rule(kind).disposition is events.Disposition.REPRODUCED
    elif kind in HARMLESS:
        assert isinstance(result, Run), result
        assert result.items == [] and result.translator.current_gtid == "0-1-5", "nothing of it is applied"
        assert events.rule(kind).disposition is events.Disposition.HARMLESS
        assert events.rule(kind).reason
    else:
        # Stopped, naming the type, the open transaction and what writes it.
        assert isinstance(result, UnreproducibleEvent), f"type {kind} was passed over: {result}"
        assert f"(type {kind})" in str(result) and "0-1-5" in str(result) and result.gtid == "0-1-5"
        assert events.rule(kind).disposition is events.Disposition.REFUSED and events.rule(kind).fix


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_the_baseline_transaction_is_open_and_empty(native: bool) -> None:
    result = run([mariadb_gtid(5)], native=native)
    assert result.items == [] and result.translator.current_gtid == "0-1-5"
    assert run([mariadb_gtid(5), event(16, BODIES[16])], native=native).items == [Commit("0-1-5")]


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_table_scoped_events_of_other_tables_pass(native: bool) -> None:
    # PARTIAL_UPDATE_ROWS of a table that is not moved: counted with that table's events.
    result = outcome(39, native=native, body=rows_body(39, OTHER_ID))
    assert isinstance(result, Run) and result.items == []
    refused = outcome(39, native=native)
    assert isinstance(refused, UnreproducibleEvent) and "binlog_row_value_options=PARTIAL_JSON" in str(
        refused
    )
    assert "app.t" in str(refused)


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_statement_logged_load_of_another_table_passes(native: bool) -> None:
    result = outcome(18, native=native, body=load_body("other"))
    assert isinstance(result, Run) and result.items == []


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_rows_of_an_unmapped_table_id_are_refused(native: bool) -> None:
    result = outcome(23, native=native, body=rows_body(23, 99))
    assert isinstance(result, UnreproducibleEvent) and "not mapped" in str(result)


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_a_compressed_event_that_does_not_inflate_is_refused(native: bool) -> None:
    body = bytearray(rows_body(166, compressed=True))
    body[-3] ^= 0xFF  # corrupt the zlib stream
    result = outcome(166, native=native, body=bytes(body))
    assert isinstance(result, UnreproducibleEvent) and "log_bin_compress" in str(result)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (39, "binlog_row_value_options=PARTIAL_JSON"),
        (40, "binlog_transaction_compression=ON"),
        (42, "tagged GTID"),
        (34, "gtid_mode=ON"),
        (26, "incident"),
    ],
)
def test_mysql_only_events_are_refused_with_the_setting_and_the_fix(kind: int, words: str) -> None:
    rule = events.rule(kind)
    message = str(events.refusal(kind, "3e11fa47-71ca-11e1-9e33-c80aa9429562:23", "pos"))
    assert words in message and rule.fix in message and rule.name in message


def test_every_reproduced_type_has_a_handler_on_the_native_path() -> None:
    # The native pump decodes GTID, Xid and rows events inline; every other reproduced type must
    # reach the library (delegated) or a screen of ours, never the harmless pass-over.
    allowed = frozenset({2, 4, 15, 16, 19, 27, 33, 38, 162, 23, 24, 25, 30, 31, 32})
    framing = stream._NativeFraming(None, allowed, 162, True, {}, "app")  # type: ignore[arg-type]
    for kind in events.REPRODUCED_TYPES:
        assert framing.actions[kind] != stream._SKIP, kind


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
@pytest.mark.parametrize(("kind", "words"), [(40, "binlog_transaction_compression=ON")])
def test_a_mysql_transaction_is_refused_naming_its_gtid(native: bool, kind: int, words: str) -> None:
    wire = [event(33, mysql_gtid_body()), event(2, query_body(b"BEGIN")), event(kind, BODIES[kind])]
    with pytest.raises(UnreproducibleEvent) as caught:
        run(wire, native=native)
    assert f"transaction {SID_TEXT}:77" in str(caught.value) and words in str(caught.value)
    assert caught.value.gtid == f"{SID_TEXT}:77"
