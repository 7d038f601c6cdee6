"""The allow-list of binlog event types: what the move reproduces, what is harmless, what stops it.

Every event type number a server can send (0-255) has one rule here. The stream (both its own
framing and the library path) looks each event's type up before anything of it is used: a
REPRODUCED type is translated (row changes, commit boundaries, screened statements), a HARMLESS
one is passed over for the reason given, and every other type, including numbers no server we know
writes, stops the move with exit 3 (:func:`refusal`) before anything of its transaction is applied.
The default is refusal: a type is only passed over once someone has written down why that is safe.

MariaDB's compressed events (``log_bin_compress=ON``) are reproduced by inflating them
(:func:`inflate`) into the uncompressed event they stand for, which then goes through exactly the
same screening and decoding as that type. Pure: no I/O.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from tablemover.errors import UnreproducibleEvent


class Disposition(enum.Enum):
    """What the move does with an event type."""

    REPRODUCED = "reproduced"  # translated into what the target must get (or screened, then applied)
    HARMLESS = "harmless"  # carries nothing the target must get; passed over for the stated reason
    REFUSED = "refused"  # stops the move (exit 3) before anything of its transaction is applied


@dataclass(frozen=True, slots=True)
class EventRule:
    """One event type: its name, disposition, and why (or, when refused, what writes it and the fix)."""

    code: int
    name: str
    disposition: Disposition
    reason: str  # REPRODUCED: how; HARMLESS: why it may be passed over; REFUSED: the setting that writes it
    fix: str = ""  # REFUSED: what the operator can do


_START_OVER = "then start the move over: `tablemover discard -c FILE --yes`, then `tablemover run -c FILE`"
_STATEMENT_CONTEXT = (
    "context of a statement-logged query that follows it; that query is screened and stops the move "
    "if it writes a moved table"
)
_PRE_5_0 = "a binlog written by MySQL 4.x or 5.0 betas (old LOAD DATA / start events)"
_REPLAY_FROM_NEWER = "use a source version tablemover supports (MariaDB 10.6+, MySQL 8.0+)"

_R, _H, _X = Disposition.REPRODUCED, Disposition.HARMLESS, Disposition.REFUSED

_KNOWN: tuple[EventRule, ...] = (
    EventRule(0, "UNKNOWN_EVENT", _X, "never written by a server", _REPLAY_FROM_NEWER),
    EventRule(1, "START_EVENT_V3", _X, _PRE_5_0, _REPLAY_FROM_NEWER),
    EventRule(
        2,
        "QUERY_EVENT",
        _R,
        "BEGIN/COMMIT/ROLLBACK bound transactions; any other statement is "
        "screened and stops the move when it changes a moved table (statement-logged rows, DDL, TRUNCATE)",
    ),
    EventRule(3, "STOP_EVENT", _H, "the source shut down; marks the end of a binlog file, carries no change"),
    EventRule(4, "ROTATE_EVENT", _H, "names the next binlog file; the library resets its table-id map on it"),
    EventRule(5, "INTVAR_EVENT", _H, _STATEMENT_CONTEXT),
    EventRule(6, "LOAD_EVENT", _X, _PRE_5_0, _REPLAY_FROM_NEWER),
    EventRule(7, "SLAVE_EVENT", _X, "never written by a server", _REPLAY_FROM_NEWER),
    EventRule(8, "CREATE_FILE_EVENT", _X, _PRE_5_0, _REPLAY_FROM_NEWER),
    EventRule(
        9,
        "APPEND_BLOCK_EVENT",
        _H,
        "data of a statement-logged LOAD DATA; its EXECUTE_LOAD_QUERY "
        "event is screened and stops the move if it loads a moved table",
    ),
    EventRule(10, "EXEC_LOAD_EVENT", _X, _PRE_5_0, _REPLAY_FROM_NEWER),
    EventRule(11, "DELETE_FILE_EVENT", _H, "discards the data of a failed statement-logged LOAD DATA"),
    EventRule(12, "NEW_LOAD_EVENT", _X, _PRE_5_0, _REPLAY_FROM_NEWER),
    EventRule(13, "RAND_EVENT", _H, _STATEMENT_CONTEXT),
    EventRule(14, "USER_VAR_EVENT", _H, _STATEMENT_CONTEXT),
    EventRule(
        15,
        "FORMAT_DESCRIPTION_EVENT",
        _H,
        "header of a binlog file (event post-header lengths, "
        "checksum algorithm); the library reads it, it carries no change",
    ),
    EventRule(16, "XID_EVENT", _R, "the commit of an InnoDB transaction: its rows are applied as one unit"),
    EventRule(
        17,
        "BEGIN_LOAD_QUERY_EVENT",
        _H,
        "data of a statement-logged LOAD DATA; its "
        "EXECUTE_LOAD_QUERY event is screened and stops the move if it loads a moved table",
    ),
    EventRule(
        18,
        "EXECUTE_LOAD_QUERY_EVENT",
        _R,
        "a statement-logged LOAD DATA: screened like a "
        "QUERY_EVENT, stops the move when it loads a moved table",
    ),
    EventRule(19, "TABLE_MAP_EVENT", _R, "maps a table id to a table for the row events that follow"),
    EventRule(20, "PRE_GA_WRITE_ROWS_EVENT", _X, "MySQL 5.1 beta row events", _REPLAY_FROM_NEWER),
    EventRule(21, "PRE_GA_UPDATE_ROWS_EVENT", _X, "MySQL 5.1 beta row events", _REPLAY_FROM_NEWER),
    EventRule(22, "PRE_GA_DELETE_ROWS_EVENT", _X, "MySQL 5.1 beta row events", _REPLAY_FROM_NEWER),
    EventRule(23, "WRITE_ROWS_EVENT_V1", _R, "inserted rows (full images required)"),
    EventRule(24, "UPDATE_ROWS_EVENT_V1", _R, "updated rows (full before and after images required)"),
    EventRule(25, "DELETE_ROWS_EVENT_V1", _R, "deleted rows (full images required)"),
    EventRule(
        26,
        "INCIDENT_EVENT",
        _X,
        "the source wrote an incident: changes are missing from its binlog "
        "(e.g. a binlog write failed, or a non-transactional change could not be logged)",
        "the binlog no longer holds every change; find the incident in the source's error log, "
        + _START_OVER,
    ),
    EventRule(27, "HEARTBEAT_LOG_EVENT", _H, "keep-alive of the binlog connection; carries no change"),
    EventRule(28, "IGNORABLE_LOG_EVENT", _H, "flagged by the server as safe for any replica to ignore"),
    EventRule(
        29,
        "ROWS_QUERY_LOG_EVENT",
        _H,
        "the text of the statement whose row events follow (binlog_rows_query_log_events=ON); informational",
    ),
    EventRule(30, "WRITE_ROWS_EVENT", _R, "inserted rows, v2 (full images required)"),
    EventRule(31, "UPDATE_ROWS_EVENT", _R, "updated rows, v2 (full before and after images required)"),
    EventRule(32, "DELETE_ROWS_EVENT", _R, "deleted rows, v2 (full images required)"),
    EventRule(
        33, "GTID_LOG_EVENT", _R, "MySQL: a transaction starts; its GTID is the checkpoint at its commit"
    ),
    EventRule(
        34,
        "ANONYMOUS_GTID_LOG_EVENT",
        _X,
        "a MySQL transaction without a GTID (gtid_mode is not ON: "
        "OFF_PERMISSIVE or ON_PERMISSIVE let anonymous transactions through)",
        "set gtid_mode=ON and enforce_gtid_consistency=ON on the source, " + _START_OVER,
    ),
    EventRule(
        35,
        "PREVIOUS_GTIDS_LOG_EVENT",
        _H,
        "header of a MySQL binlog file: the GTIDs of the earlier files; carries no change",
    ),
    EventRule(
        36, "TRANSACTION_CONTEXT_EVENT", _H, "MySQL group replication's certification data; carries no change"
    ),
    EventRule(37, "VIEW_CHANGE_EVENT", _H, "MySQL group replication's membership change; carries no change"),
    EventRule(
        38,
        "XA_PREPARE_LOG_EVENT",
        _R,
        "XA PREPARE ends the first part of an XA transaction: its rows are held back and applied "
        "only with a later XA COMMIT, dropped with XA ROLLBACK (stream.Translator)",
    ),
    EventRule(
        39,
        "PARTIAL_UPDATE_ROWS_EVENT",
        _X,
        "binlog_row_value_options=PARTIAL_JSON: a MySQL UPDATE "
        "of a JSON column logged as a diff, not as the full after image",
        "SET GLOBAL binlog_row_value_options='' (and in every session that sets it), " + _START_OVER,
    ),
    EventRule(
        40,
        "TRANSACTION_PAYLOAD_EVENT",
        _X,
        "binlog_transaction_compression=ON: a MySQL transaction logged as one zstd-compressed payload",
        "SET GLOBAL binlog_transaction_compression=OFF (and in every session that sets it), " + _START_OVER,
    ),
    EventRule(
        41,
        "HEARTBEAT_LOG_EVENT_V2",
        _H,
        "keep-alive of the binlog connection (MySQL 8.0.26+); carries no change",
    ),
    EventRule(
        42,
        "GTID_TAGGED_LOG_EVENT",
        _X,
        "a MySQL 8.3+ tagged GTID: a session ran SET gtid_next='AUTOMATIC:<tag>' or "
        "'<uuid>:<tag>:<n>' (tags already in gtid_executed from before the move are fine; a new "
        "tagged transaction is not reproduced)",
        "stop the sessions or tools that set a tagged gtid_next on the source while the move runs "
        "(they need TRANSACTION_GTID_TAG), " + _START_OVER,
    ),
    EventRule(
        160,
        "ANNOTATE_ROWS_EVENT",
        _H,
        "MariaDB: the text of the statement whose row events follow "
        "(binlog_annotate_row_events); informational",
    ),
    EventRule(
        161,
        "BINLOG_CHECKPOINT_EVENT",
        _H,
        "MariaDB: which binlog files crash recovery needs; carries no change",
    ),
    EventRule(
        162,
        "GTID_EVENT",
        _R,
        "MariaDB: a transaction (or standalone statement) starts; its GTID is the checkpoint at its commit",
    ),
    EventRule(
        163,
        "GTID_LIST_EVENT",
        _H,
        "header of a MariaDB binlog file: the GTID state at its start; carries no change",
    ),
    EventRule(
        164,
        "START_ENCRYPTION_EVENT",
        _H,
        "MariaDB binlog encryption starts in the file; the source sends the events decrypted",
    ),
    EventRule(
        165,
        "QUERY_COMPRESSED_EVENT",
        _R,
        "MariaDB log_bin_compress=ON: inflated (zlib) into the "
        "QUERY_EVENT it stands for, then screened as one",
    ),
    EventRule(
        166,
        "WRITE_ROWS_COMPRESSED_EVENT_V1",
        _R,
        "MariaDB log_bin_compress=ON: inflated into WRITE_ROWS_EVENT_V1, then decoded as one",
    ),
    EventRule(
        167,
        "UPDATE_ROWS_COMPRESSED_EVENT_V1",
        _R,
        "MariaDB log_bin_compress=ON: inflated into UPDATE_ROWS_EVENT_V1, then decoded as one",
    ),
    EventRule(
        168,
        "DELETE_ROWS_COMPRESSED_EVENT_V1",
        _R,
        "MariaDB log_bin_compress=ON: inflated into DELETE_ROWS_EVENT_V1, then decoded as one",
    ),
    EventRule(
        169,
        "WRITE_ROWS_COMPRESSED_EVENT",
        _R,
        "MariaDB log_bin_compress=ON: inflated into WRITE_ROWS_EVENT (v2), then decoded as one",
    ),
    EventRule(
        170,
        "UPDATE_ROWS_COMPRESSED_EVENT",
        _R,
        "MariaDB log_bin_compress=ON: inflated into UPDATE_ROWS_EVENT (v2), then decoded as one",
    ),
    EventRule(
        171,
        "DELETE_ROWS_COMPRESSED_EVENT",
        _R,
        "MariaDB log_bin_compress=ON: inflated into DELETE_ROWS_EVENT (v2), then decoded as one",
    ),
)


def _unknown(code: int) -> EventRule:
    return EventRule(
        code,
        f"event type {code}",
        _X,
        "an event type tablemover does not know (a newer server version, or a feature that writes it)",
        "find out which server feature writes it and switch that off for the move, or use a tablemover "
        "that knows the type; " + _START_OVER,
    )


# Every type number 0-255, indexed by the number: an unknown number is refused.
RULES: tuple[EventRule, ...] = tuple(
    next((r for r in _KNOWN if r.code == code), None) or _unknown(code) for code in range(256)
)

REFUSED_TYPES: frozenset[int] = frozenset(r.code for r in RULES if r.disposition is _X)
HARMLESS_TYPES: frozenset[int] = frozenset(r.code for r in RULES if r.disposition is _H)
REPRODUCED_TYPES: frozenset[int] = frozenset(r.code for r in RULES if r.disposition is _R)

# Refused only when the event's table is a moved one (the table id is where a rows event has it);
# the same event on any other table is counted and passed over like that table's other row events.
TABLE_SCOPED_TYPES: frozenset[int] = frozenset({39})

# MariaDB's compressed event types -> the uncompressed type each stands for.
COMPRESSED_TYPES: dict[int, int] = {165: 2, 166: 23, 167: 24, 168: 25, 169: 30, 170: 31, 171: 32}

EXECUTE_LOAD_QUERY_TYPE = 18
ROWS_TYPES = frozenset({23, 24, 25, 30, 31, 32})
_UPDATE_TYPES = frozenset({24, 31})
_QUERY_POST_HEADER = 13  # thread id 4, exec time 4, db length 1, error code 2, status vars length 2
_EXECUTE_LOAD_POST_HEADER = 26  # the query's 13, then file id 4, start 4, end 4, dup handling 1
_HEADER_END = 20  # OK byte + the 19-byte common header
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def rule(code: int) -> EventRule:
    """The rule of an event type number."""
    return RULES[code]


# --------------------------------------------------------------------------- MySQL tagged GTIDs

GTID_TAGGED_TYPE = 42
_TAGGED_UUID, _TAGGED_GNO, _TAGGED_TAG = 1, 2, 3  # field ids of Gtid_event (control_events.h)


def tagged_gtid(body: bytes) -> str:
    """``uuid:tag:gno`` of a GTID_TAGGED_LOG_EVENT's body (the bytes after the common header).

    MySQL 8.3+ writes this event with its serialization library (libs/mysql/serialization/
    readme.md, "Message format specification")::

        message ::= serialization_version  size  last_non_ignorable_field_id  { field_id field_data }

    the version one byte, every other number a variable-length integer (:func:`_varlen`), fields in
    ascending id order, a field left out when it has its default. Gtid_event's fields
    (libs/mysql/binlog/event/control_events.h, ``define_fields``) are 0 gtid_flags, 1 the source
    UUID (16 bytes, each a varlen integer), 2 gno (signed varlen), 3 tag (string: varlen length,
    bytes), then 4 last_committed, 5 sequence_number, 6 immediate and 7 original commit timestamp,
    8 transaction length, 9 immediate and 10 original server version, 11 commit group ticket, which
    the refusal does not need: reading stops after the tag. Raises ValueError on bytes that do not
    follow the format (the caller refuses the event all the same, naming what it knows).
    """
    reader = _VarlenReader(body)
    reader.pos = 1  # the serialization version
    size = reader.unsigned()
    if not reader.pos < size <= len(body):  # the size counts the whole message, from the version byte
        raise ValueError(f"a message of {size} bytes in an event body of {len(body)}")
    reader.end = size
    reader.unsigned()  # last_non_ignorable_field_id
    uuid = b""
    gno: int | None = None
    tag = ""
    while reader.pos < reader.end:
        field = reader.unsigned()
        if field == 0:
            reader.unsigned()  # gtid_flags
        elif field == _TAGGED_UUID:
            uuid = bytes(reader.unsigned() & 0xFF for _ in range(16))
        elif field == _TAGGED_GNO:
            gno = reader.signed()
        elif field == _TAGGED_TAG:
            length = reader.unsigned()
            if length > 32 or reader.pos + length > reader.end:
                raise ValueError(f"a tag of {length} bytes")
            tag = body[reader.pos : reader.pos + length].decode("ascii")
            reader.pos += length
            break
        else:
            break
    if len(uuid) != 16 or gno is None or not tag:
        raise ValueError("no source UUID, gno and tag in the event")
    h = uuid.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}:{tag}:{gno}"


class _VarlenReader:
    """Variable-length integers of MySQL's serialization library, read from ``data``.

    1 to 9 bytes, little-endian; the number of trailing one bits of the first byte, plus one, is
    the number of bytes; after them a zero bit, then the value (with 9 bytes the whole 64 bits
    follow the first byte). A signed value is stored as ``x << 1`` (``x >= 0``) or
    ``(-(x + 1) << 1) | 1``.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def unsigned(self) -> int:
        if self.pos >= self.end:
            raise ValueError("the message ends inside a number")
        first = self.data[self.pos]
        count = 1
        while count < 9 and first >> (count - 1) & 1:
            count += 1
        if self.pos + count > self.end:
            raise ValueError("the message ends inside a number")
        raw = int.from_bytes(self.data[self.pos : self.pos + count], "little")
        self.pos += count
        return raw >> 8 if count == 9 else raw >> count

    def signed(self) -> int:
        raw = self.unsigned()
        return -(raw >> 1) - 1 if raw & 1 else raw >> 1


def refusal(code: int, gtid: str, position: str, *, table: str = "", detail: str = "") -> UnreproducibleEvent:
    """The exit-3 error for an event of a refused type (``code``) in transaction ``gtid``."""
    r = RULES[code]
    where = f"transaction {gtid}" if gtid else f"the transaction after position {position}"
    on = f" on moved table {table}" if table else ""
    extra = f" ({detail})" if detail else ""
    return UnreproducibleEvent(
        f"{where} holds a {r.name} event (type {code}){on}{extra}, which tablemover does not reproduce: "
        f"{r.reason}. Nothing of that transaction was applied. Fix: {r.fix}.",
        gtid=gtid,
        table=table,
        statement=r.name,
    )


class CompressedEventError(ValueError):
    """A compressed event whose bytes are not what MariaDB writes (the stream refuses it)."""


def inflate(data: bytes, post_header_len: int, checksum_len: int) -> bytes:
    """The uncompressed event a MariaDB compressed event stands for, as a packet (OK byte first).

    MariaDB compresses the query text of a QUERY_COMPRESSED_EVENT, and the row images of a
    compressed rows event (after the column count and bitmaps), with zlib behind a header byte:
    ``0x80 | algorithm << 4 | n`` and then the uncompressed length in ``n`` big-endian bytes
    (log_event.cc, binlog_buf_compress). The result has the plain type and event size in its
    header and keeps the checksum bytes, which nothing verifies after this point.
    """
    kind = data[5]
    plain = COMPRESSED_TYPES[kind]
    end = len(data) - checksum_len
    if plain == 2:
        p = _HEADER_END + post_header_len
        if post_header_len < _QUERY_POST_HEADER or p > end:
            raise CompressedEventError(f"post-header of {post_header_len} bytes")
        db_len = data[_HEADER_END + 8]
        status_len = _U16.unpack_from(data, _HEADER_END + 11)[0]
        p += status_len + db_len + 1  # the status variables, the default database and its NUL
    else:
        p = _HEADER_END + post_header_len
        if plain >= 30:
            if post_header_len < 10 or p > end:
                raise CompressedEventError(f"post-header of {post_header_len} bytes")
            p += _U16.unpack_from(data, _HEADER_END + 8)[0] - 2  # the v2 extra data
        width, p = _packed_int(data, p)
        bitmap = (width + 7) >> 3
        p += 2 * bitmap if plain in _UPDATE_TYPES else bitmap
    if p >= end:
        raise CompressedEventError("no compressed part")
    body = _uncompress(data[p:end])
    out = bytearray(data[:p])
    out += body
    out += data[end:]
    out[5] = plain
    _U32.pack_into(out, 10, len(out) - 1)  # the event size (the packet less its OK byte)
    return bytes(out)


def _uncompress(part: bytes) -> bytes:
    head = part[0]
    lenlen = head & 0x07
    if head & 0x80 == 0 or (head >> 4) & 0x07 != 0 or not 1 <= lenlen <= 4 or len(part) <= 1 + lenlen:
        # 0x80 marks a compressed buffer; algorithm 0 is zlib, the only one MariaDB writes.
        raise CompressedEventError(f"header byte 0x{head:02x}")
    size = int.from_bytes(part[1 : 1 + lenlen], "big")
    try:
        body = zlib.decompress(part[1 + lenlen :])
    except zlib.error as exc:
        raise CompressedEventError(f"zlib: {exc}") from exc
    if len(body) != size:
        raise CompressedEventError(f"{len(body)} bytes inflated, {size} declared")
    return body


def _packed_int(data: bytes, p: int) -> tuple[int, int]:
    first = data[p]
    if first < 251:
        return first, p + 1
    if first == 252:
        return _U16.unpack_from(data, p + 1)[0], p + 3
    if first == 253:
        return int.from_bytes(data[p + 1 : p + 4], "little"), p + 4
    if first == 254:
        return int.from_bytes(data[p + 1 : p + 9], "little"), p + 9
    raise CompressedEventError(f"column count code {first}")


def execute_load_query(data: bytes, post_header_len: int, checksum_len: int) -> tuple[str, str]:
    """The default database and the statement of an EXECUTE_LOAD_QUERY event (LOAD DATA ...)."""
    post = max(post_header_len, _EXECUTE_LOAD_POST_HEADER)
    db_len = data[_HEADER_END + 8]
    status_len = _U16.unpack_from(data, _HEADER_END + 11)[0]
    p = _HEADER_END + post + status_len
    schema = data[p : p + db_len]
    query = data[p + db_len + 1 : len(data) - checksum_len]
    return schema.decode("utf-8", "replace"), query.decode("utf-8", "replace")
