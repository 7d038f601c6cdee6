"""Unit tests for the stream's own packet framing (tablemover.stream._NativeFraming).

The framing replaces pymysql's ``_read_packet`` plus the library's EOF and OK-packet handling for
the binlog connection; on the same bytes it must return the same payloads and fail the same way
(error class, error number, the connection force-closed), which these tests check against pymysql
itself. The hand-back of a packet to the library (``delegate``) is tested with a stand-in reader.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.protocol import MysqlPacket

from tablemover import stream

MAX = 0xFFFFFF


def frame(payloads: list[bytes], first_seq: int = 1) -> bytes:
    """Payloads as the server sends them: 3-byte length, sequence number, bytes (split at 16 MiB)."""
    out = bytearray()
    seq = first_seq
    for payload in payloads:
        rest = payload
        while True:
            part, rest = rest[:MAX], rest[MAX:]
            out += struct.pack("<I", len(part))[:3] + bytes([seq]) + part
            seq = (seq + 1) & 0xFF
            if len(part) < MAX:
                break
    return bytes(out)


class _Socket:
    def settimeout(self, timeout: float | None) -> None:
        pass


class BrokenFile(io.RawIOBase):
    """A socket file that fails after ``good`` bytes."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data, self._good, self._pos = data, good, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._good:
            raise ConnectionResetError(104, "Connection reset by peer")
        n = min(len(buffer), self._good - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def connection(wire: bytes, *, broken_after: int | None = None) -> Any:
    """A pymysql connection reading ``wire``; ``forced`` counts its force-closes."""
    conn: Any = pymysql.connections.Connection.__new__(pymysql.connections.Connection)
    raw: Any = io.BytesIO(wire) if broken_after is None else BrokenFile(wire, broken_after)
    conn._rfile = io.BufferedReader(raw, 16)
    conn._sock = _Socket()
    conn._read_timeout = conn._current_timeout = None
    conn._next_seq_id = 1
    conn.encoding = "utf8"
    conn._result = None
    conn.forced = 0

    def force_close() -> None:
        conn.forced += 1

    conn._force_close = force_close
    return conn


class StandIn:
    """The parts of the library's reader the framing uses."""

    def __init__(self, conn: Any) -> None:
        self._stream_connection = conn
        self._BinLogStreamReader__use_checksum = True
        self._BinLogStreamReader__post_header_lengths = None
        self.table_map: dict[int, Any] = {}
        self.closed = 0
        self.fetched: list[bytes] = []
        self.result: Callable[[], Any] = lambda: "event"

    def close(self) -> None:
        self.closed += 1

    def fetchone(self) -> Any:
        # What the library's fetchone does with the packet: read it, parse it, maybe read on.
        packet = self._stream_connection._read_packet()
        self.fetched.append(packet._data)
        return self.result()


def framing(conn: Any) -> tuple[stream._NativeFraming, StandIn]:
    reader = StandIn(conn)
    f = stream._NativeFraming(reader, frozenset({2, 4}), 162, True, {}, "app")  # type: ignore[arg-type]
    f.attach()
    return f, reader


def pymysql_view(wire: bytes, count: int) -> list[Any]:
    """What pymysql's own reader and the library's fetchone make of the first ``count`` packets."""
    conn = connection(wire)
    out: list[Any] = []
    for _ in range(count):
        try:
            packet = conn._read_packet()
        except pymysql.err.MySQLError as exc:
            out.append((type(exc), exc.args[0], conn.forced))
            break
        if packet.is_eof_packet():
            out.append(None)
            break
        if packet.is_ok_packet():
            out.append(packet._data)
    return out


def framing_view(wire: bytes, count: int) -> list[Any]:
    f, reader = framing(connection(wire))
    out: list[Any] = []
    for _ in range(count):
        try:
            data = f.read_packet()
        except pymysql.err.MySQLError as exc:
            out.append((type(exc), exc.args[0], reader._stream_connection.forced))
            break
        out.append(data)
        if data is None:
            assert reader.closed == 1
            break
    return out


EVENT = b"\x00" + bytes(19) + b"body"
ERROR_1236 = b"\xff" + (1236).to_bytes(2, "little") + b"#HY000Could not find first log file name"
EOF = b"\xfe\x00\x00\x02\x00"


@pytest.mark.parametrize(
    "payloads",
    [
        [EVENT, EVENT + b"2", EOF],
        [EVENT, b"\x05 not an event", EVENT + b"3", EOF],  # skipped, as the library skips it
        [b"\x00short", EOF],  # an OK byte but shorter than an OK packet: skipped as well
        [EVENT, ERROR_1236],  # the server cannot send its binlog from our position
        [b"\xff" + (1045).to_bytes(2, "little") + b"#28000Access denied"],
        [EVENT, b"\x00" + bytes(19) + b"x" * (MAX + 10), EVENT, EOF],  # continued in a second packet
        [b"\x00" + bytes(MAX - 1), EOF],  # exactly 16 MiB: an empty continuation packet follows
    ],
    ids=["events", "skip-non-event", "skip-short", "error-1236", "error-1045", "continued", "exact-16mib"],
)
def test_framing_reads_what_pymysql_reads(payloads: list[bytes]) -> None:
    wire = frame(payloads)
    assert framing_view(wire, len(payloads) + 1) == pymysql_view(wire, len(payloads) + 1)


@pytest.mark.parametrize("first_seq", [0, 2, 200])
def test_wrong_sequence_number_fails_as_in_pymysql(first_seq: int) -> None:
    wire = frame([EVENT], first_seq=first_seq)
    view = framing_view(wire, 1)
    assert view == pymysql_view(wire, 1)
    error_class = pymysql.err.OperationalError if first_seq == 0 else pymysql.err.InternalError
    assert view[0][0] is error_class and view[0][2] == 1  # the connection was force-closed


@pytest.mark.parametrize("cut", [0, 2, 4, 10])
def test_connection_closed_mid_packet_is_error_2013(cut: int) -> None:
    wire = frame([EVENT])[:cut]
    assert framing_view(wire, 1) == [(pymysql.err.OperationalError, 2013, 1)] == pymysql_view(wire, 1)


def test_socket_error_is_error_2013() -> None:
    wire = frame([EVENT, EVENT])
    f, reader = framing(connection(wire, broken_after=len(wire) - 3))
    assert f.read_packet() == EVENT
    with pytest.raises(pymysql.err.OperationalError) as caught:
        f.read_packet()
    assert caught.value.args[0] == 2013 and "Connection reset" in caught.value.args[1]
    assert reader._stream_connection.forced == 1


@given(st.lists(st.binary(max_size=64).map(lambda b: b"\x00" + bytes(19) + b), max_size=40))
@settings(max_examples=50, deadline=None)
def test_sequence_numbers_wrap(payloads: list[bytes]) -> None:
    wire = frame([*payloads, EOF], first_seq=250)
    conn = connection(wire)
    conn._next_seq_id = 250
    f, _reader = framing(conn)
    assert [f.read_packet() for _ in payloads] == payloads
    assert f.read_packet() is None


def test_delegate_serves_the_packet_to_the_library_once() -> None:
    conn = connection(frame([EVENT, EVENT + b"next"]))
    f, reader = framing(conn)
    assert f.read_packet() == EVENT
    assert f.delegate(b"\x00handed back") == "event"
    assert reader.fetched == [b"\x00handed back"]
    assert conn._next_seq_id == 2  # pymysql's count follows ours, were it to read on
    assert "_read_packet" not in vars(conn)  # the hand-back hook is gone

    def reads_on() -> Any:
        # The library consumed the packet (a table map, say) and loops to read the next one.
        return reader.fetchone()

    reader.result = reads_on
    assert f.delegate(b"\x00table map") is None
    assert reader.fetched[-1] == b"\x00table map"
    assert f.read_packet() == EVENT + b"next"  # the next packet is still ours, unread


def test_delegate_restores_the_reader_when_the_library_raises() -> None:
    conn = connection(frame([EVENT]))
    f, reader = framing(conn)

    def fails() -> Any:
        raise ValueError("bad event")

    reader.result = fails
    with pytest.raises(ValueError, match="bad event"):
        f.delegate(b"\x00x")
    assert "_read_packet" not in vars(conn)
    assert isinstance(conn._read_packet(), MysqlPacket)  # pymysql's own reader is back


def test_layout_uses_the_declared_post_header_length() -> None:
    f, reader = framing(connection(b""))
    packet = b"\x00" + bytes(4) + b"\x17" + bytes(4) + (39).to_bytes(4, "little") + bytes(6)
    packet += (7).to_bytes(6, "little") + b"\x00\x00" + b"\xee\xee" + b"\x01\x01" + b"ROWS" + bytes(4)
    assert f.layout(packet, 23) is None  # the library's default of 8: the column count is 0xee
    reader._BinLogStreamReader__post_header_lengths = [0] * 22 + [10]
    assert f.layout(packet, 23) == (1, b"\x01", None, 32, 36)
