"""MySQL 8.3+ tagged GTIDs (issue #21): carried in the position, refused as new transactions.

No MySQL 8.4 server runs here, so the bytes are built from the documented formats: the GTID set
encoding of the binlog dump request (sql/rpl_gtid_set.cc, ``Gtid_set::encode`` and
``encode_nsids_format``) and the GTID_TAGGED_LOG_EVENT body (libs/mysql/serialization/readme.md,
"Message format specification" and "Variable-length integers"; the field ids of Gtid_event in
libs/mysql/binlog/event/control_events.h).
"""

from __future__ import annotations

import struct
from typing import Any

import pymysqlreplication.binlogstream
import pytest
from pymysqlreplication.gtid import GtidSet as LibraryGtidSet
from test_event_allowlist import SID, SID_TEXT, event, mysql_gtid_body, query_body, run

from tablemover import events, stream
from tablemover.errors import UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.gtid import MySQLGtidSet
from tablemover.preflight.gtid_tags import gtid_tag_report

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_BYTES = bytes.fromhex("3e11fa4771ca11e19e33c80aa9429562")
UUID2 = "4e11fa47-71ca-11e1-9e33-c80aa9429562"


# --------------------------------------------------------------------------- the GTID set encoding


def test_an_untagged_set_encodes_byte_for_byte_as_the_library_did() -> None:
    text = f"{UUID}:1-5:7,{UUID2}:3-9:11-12:20"
    assert MySQLGtidSet.parse(text).encode() == LibraryGtidSet(text).encoded()
    assert MySQLGtidSet.parse("").encode() == LibraryGtidSet("").encoded() == bytes(8)


def test_a_tagged_set_encodes_in_mysqls_tagged_format() -> None:
    encoded = MySQLGtidSet.parse(f"{UUID}:1-5:AUDIT:7").encode()
    expected = (
        # header: format 1 in the top byte and repeated in the low byte, 2 sources in between
        bytes([0x01, 0x02, 0, 0, 0, 0, 0, 0x01])
        # the untagged source: UUID, empty tag (length 0), 1 interval [1, 6)
        + UUID_BYTES + b"\x00" + struct.pack("<QQQ", 1, 1, 6)
        # the tagged source: UUID, tag "audit" (length 5 as a varlen integer: 5 << 1), [7, 8)
        + UUID_BYTES + b"\x0aaudit" + struct.pack("<QQQ", 1, 7, 8)
    )  # fmt: skip
    assert encoded == expected
    assert struct.unpack_from("<Q", encoded)[0] == 1 << 56 | 2 << 8 | 1


def test_the_librarys_parser_rejects_tags_which_is_why_the_dump_request_uses_ours() -> None:
    with pytest.raises(ValueError):
        LibraryGtidSet(f"{UUID}:1-5:audit:7")
    assert pymysqlreplication.binlogstream.GtidSet is stream._DumpGtidSet


class _Cursor:
    def __init__(self, conn: _DumpConnection) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Any = None) -> None:
        self.conn.statements.append(sql)

    def fetchone(self) -> tuple[str, str]:
        return ("binlog_checksum", "CRC32")

    def close(self) -> None:
        pass


class _DumpConnection:
    """Takes the statements and the dump request the library sends when the stream starts."""

    def __init__(self, **settings: Any) -> None:
        self.statements: list[str] = []
        self.written: list[bytes] = []
        self._next_seq_id = 0

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def _write_bytes(self, data: bytes) -> None:
        self.written.append(data)


def _dump_request(position: str) -> bytes:
    connections: list[_DumpConnection] = []

    def wrapper(**settings: Any) -> _DumpConnection:
        connections.append(_DumpConnection(**settings))
        return connections[-1]

    reader = stream._Reader(
        connection_settings={},
        pymysql_wrapper=wrapper,
        server_id=99,
        blocking=True,
        is_mariadb=False,
        auto_position=position,
        only_events=list(stream.READER_EVENTS),
    )
    stream._original_connect(reader)  # the library's own code that builds COM_BINLOG_DUMP_GTID
    (request,) = connections[0].written
    return request


def test_the_dump_request_carries_a_tagged_position() -> None:
    position = f"{UUID}:1-5:audit:7,{UUID2}:1-3"
    request = _dump_request(position)
    encoded = MySQLGtidSet.parse(position).encode()
    assert request[4] == 0x1E  # COM_BINLOG_DUMP_GTID
    assert request.endswith(struct.pack("<I", len(encoded)) + encoded)
    assert struct.unpack_from("<i", request)[0] == len(request) - 4  # the packet's length prefix


def test_the_dump_request_of_an_untagged_position_is_unchanged() -> None:
    position = f"{UUID}:1-5,{UUID2}:1-3"
    encoded = LibraryGtidSet(position).encoded()
    assert _dump_request(position).endswith(struct.pack("<I", len(encoded)) + encoded)


# --------------------------------------------------------------------------- GTID_TAGGED_LOG_EVENT


def varlen(value: int) -> bytes:
    """An unsigned varlen integer as the serialization library writes it (readme.md's examples)."""
    for count in range(1, 9):
        if value < 1 << (7 * count):
            return ((value << count) | ((1 << (count - 1)) - 1)).to_bytes(count, "little")
    return b"\xff" + value.to_bytes(8, "little")


def signed(value: int) -> bytes:
    return varlen(value << 1 if value >= 0 else (-(value + 1) << 1) | 1)


def test_varlen_matches_the_documented_examples() -> None:
    # readme.md: 65535 unsigned is "00000111 11111111 11111011" (big-endian display).
    assert varlen(65535) == bytes([0b11111011, 0b11111111, 0b00000111])
    # signed 65535 is "00001111 11111111 11110011", -65535 "... 11101011", -65536 "... 11111011"
    assert signed(65535) == bytes([0b11110011, 0b11111111, 0b00001111])
    assert signed(-65535) == bytes([0b11101011, 0b11111111, 0b00001111])
    assert signed(-65536) == bytes([0b11111011, 0b11111111, 0b00001111])


def tagged_gtid_body(uuid: bytes, tag: str, gno: int) -> bytes:
    """A GTID_TAGGED_LOG_EVENT body: version, size, last non-ignorable field id, Gtid_event's fields."""
    fields = (
        varlen(0) + varlen(0)  # 0 gtid_flags
        + varlen(1) + b"".join(varlen(b) for b in uuid)  # 1 source UUID: 16 varlen bytes
        + varlen(2) + signed(gno)  # 2 gno
        + varlen(3) + varlen(len(tag)) + tag.encode()  # 3 tag
        + varlen(4) + signed(41) + varlen(5) + signed(42)  # 4 last_committed, 5 sequence_number
        + varlen(6) + varlen(1_733_450_000_000_000)  # 6 immediate_commit_timestamp (microseconds)
        + varlen(8) + varlen(312)  # 8 transaction_length (7 left out: same as 6)
        + varlen(9) + varlen(80403)  # 9 immediate_server_version (10 left out: same as 9)
        + varlen(11) + varlen(0)  # 11 commit_group_ticket
    )  # fmt: skip
    head = varlen(9)  # last non-ignorable field id
    # The size counts the whole message, the version byte and the size's own bytes included.
    size = 1 + len(head) + len(fields) + 1
    size += len(varlen(size)) - 1
    return b"\x02" + varlen(size) + head + fields  # 0x02: serialization version 1, as a varlen


def test_a_tagged_gtid_event_decodes_to_its_gtid() -> None:
    body = tagged_gtid_body(UUID_BYTES, "audit", 23)
    assert events.tagged_gtid(body) == f"{UUID}:audit:23"
    assert events.tagged_gtid(body + b"\xcc" * 4) == f"{UUID}:audit:23"  # checksum bytes after it
    big = tagged_gtid_body(bytes(range(240, 256)), "a_b_c_0123456789abcdef0123456789", 2**63 - 2)
    assert (
        events.tagged_gtid(big)
        == "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff:a_b_c_0123456789abcdef0123456789:9223372036854775806"
    )


def test_a_body_that_does_not_follow_the_format_is_not_guessed() -> None:
    body = tagged_gtid_body(UUID_BYTES, "audit", 23)
    for broken in (b"", bytes(16), body[:20], body[:-9]):
        with pytest.raises(ValueError):
            events.tagged_gtid(broken)


@pytest.mark.parametrize("native", [True, False], ids=["native", "library"])
def test_a_tagged_transaction_is_refused_naming_its_own_gtid(native: bool) -> None:
    # An untagged MySQL transaction commits, then a tagged one starts: refused before anything of
    # it is read, naming uuid:tag:gno, the setting that writes it and the fix.
    wire = [
        event(33, mysql_gtid_body()),
        event(2, query_body(b"BEGIN")),
        event(16, struct.pack("<Q", 1)),
        event(42, tagged_gtid_body(UUID_BYTES, "audit", 23)),
        event(2, query_body(b"BEGIN")),
    ]
    with pytest.raises(UnreproducibleEvent) as caught:
        run(wire, native=native, mysql=True)
    message = str(caught.value)
    assert caught.value.gtid == f"{UUID}:audit:23" and caught.value.exit_code == 3
    assert f"transaction {UUID}:audit:23 holds a GTID_TAGGED_LOG_EVENT event (type 42)" in message
    assert "gtid_next" in message and "discard" in message
    assert SID_TEXT not in message and SID  # the committed transaction before it is not blamed


# --------------------------------------------------------------------------- preflight


def test_preflight_reports_tags_and_what_the_move_does_with_them() -> None:
    problems, note = gtid_tag_report(
        Flavor.MYSQL, f"{UUID}:1-5:audit:7:backup:1-2,\n{UUID2}:1-3", "source db:3306"
    )
    assert problems == []
    assert "tags audit, backup" in note and "carries them" in note and "exit 3" in note
    assert "TRANSACTION_GTID_TAG" in note


def test_preflight_is_silent_without_tags_and_on_mariadb() -> None:
    assert gtid_tag_report(Flavor.MYSQL, f"{UUID}:1-5", "source") == ([], "")
    assert gtid_tag_report(Flavor.MYSQL, "", "source") == ([], "")
    assert gtid_tag_report(Flavor.MARIADB, "0-1-5", "source") == ([], "")


def test_preflight_refuses_a_gtid_executed_the_move_cannot_read() -> None:
    problems, note = gtid_tag_report(Flavor.MYSQL, f"{UUID}:1-5:Bad-Tag:7", "source db:3306")
    assert len(problems) == 1 and "source db:3306: gtid_executed cannot be read" in problems[0]
    assert note == ""
