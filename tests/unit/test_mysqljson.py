"""MySQL binary JSON (sql-common/json_binary.h) to exact JSON text, or a refusal (tablemover.mysqljson).

No MySQL server runs here, so the documents are built from the documented format: a few by hand,
byte for byte, and random ones by the small encoder below (written from json_binary.h, as MySQL
lays documents out: small containers when they fit, keys sorted by length then bytes). Documents
without opaque values are also decoded by mysql-replication's parser, which must agree.
"""

from __future__ import annotations

import json
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysqlreplication.packet import BinLogPacketWrapper, parse_json

from tablemover.changes import Op
from tablemover.decode import RowDecoder, UnreproducibleValue
from tablemover.errors import UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.gtid import parse_position
from tablemover.mysqljson import RawJson, UnrepresentableJson, to_text
from tablemover.schema import Column, Index, TableSchema
from tablemover.stream import Translator

# --------------------------------------------------------------------------- a reference encoder


def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _scalar(value: Any) -> tuple[int, bytes]:
    if value is None:
        return 0x04, b"\x00"
    if value is True:
        return 0x04, b"\x01"
    if value is False:
        return 0x04, b"\x02"
    if isinstance(value, int):
        if -(2**15) <= value < 2**15:
            return 0x05, struct.pack("<h", value)
        if -(2**31) <= value < 2**31:
            return 0x07, struct.pack("<i", value)
        if -(2**63) <= value < 2**63:
            return 0x09, struct.pack("<q", value)
        return 0x0A, struct.pack("<Q", value)
    if isinstance(value, float):
        return 0x0B, struct.pack("<d", value)
    if isinstance(value, str):
        raw = value.encode()
        return 0x0C, _varlen(len(raw)) + raw
    raise TypeError(value)


def encode(value: Any, large: bool = False) -> tuple[int, bytes]:
    """(type, bytes) of a value, containers small unless ``large``."""
    if isinstance(value, dict | list):
        return _container(value, large)
    return _scalar(value)


def _container(value: dict[str, Any] | list[Any], large: bool) -> tuple[int, bytes]:
    is_object = isinstance(value, dict)
    width = 4 if large else 2
    pack = "<I" if large else "<H"
    items = sorted(value.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode())) if is_object else None
    values = [v for _, v in items] if items is not None else list(value)  # type: ignore[union-attr]
    keys = [k.encode() for k, _ in items] if items is not None else []
    count = len(values)
    header = 2 * width + (count * (width + 2) if is_object else 0) + count * (1 + width)
    body = bytearray()
    key_entries = bytearray()
    for k in keys:
        key_entries += struct.pack(pack, header + len(body)) + struct.pack("<H", len(k))
        body += k
    value_entries = bytearray()
    for v in values:
        kind, data = encode(v, large)
        inlined = kind == 0x04 or kind in (0x05, 0x06) or (large and kind in (0x07, 0x08))
        if inlined:
            value_entries += bytes([kind]) + data.ljust(width, b"\x00")
        else:
            value_entries += bytes([kind]) + struct.pack(pack, header + len(body))
            body += data
    size = header + len(body)
    kind = (0x01 if large else 0x00) if is_object else (0x03 if large else 0x02)
    return kind, struct.pack(pack, count) + struct.pack(pack, size) + key_entries + value_entries + body


def document(value: Any, large: bool = False) -> bytes:
    kind, data = encode(value, large)
    return bytes([kind]) + data


# --------------------------------------------------------------------------- documented bytes


def test_hand_assembled_documents() -> None:
    # {"a": 1}: small object, 1 element, size 12; key entry (offset 11, length 1); value entry
    # int16 inlined; then the key.
    doc = bytes.fromhex("0001000c000b00010005010061")
    assert to_text(doc) == '{"a": 1}'
    # [true, "x"]: small array of 2, size 12; literal inlined, string at offset 10.
    doc = bytes.fromhex("0202000c000401000c0a000178")
    assert to_text(doc) == '[true, "x"]'
    assert to_text(bytes.fromhex("0400")) == "null"
    assert to_text(b"") == "null"  # an empty value reads as the null literal in MySQL
    assert to_text(bytes.fromhex("0a") + struct.pack("<Q", 2**64 - 1)) == "18446744073709551615"
    assert to_text(bytes.fromhex("09") + struct.pack("<q", -(2**63))) == "-9223372036854775808"


@pytest.mark.parametrize(
    "value",
    [
        2**53 + 1,  # no double holds it: the text must be the integer
        -(2**53) - 1,
        2**64 - 1,
        0.1,
        1.0,  # a double with an integral value stays a double: '1.0', not '1'
        1e300,
        -0.0,
        5e-324,
        'é 😀 "quoted" \\ \n',
        "",
        {},
        [],
        {"b": [1, {"c": None}], "a": "x", "long key": 70000, "n": -40000},
        [[[[[]]]]],
    ],
)
@pytest.mark.parametrize("large", [False, True])
def test_values_become_exact_text(value: Any, large: bool) -> None:
    text = to_text(document(value, large))
    assert json.loads(text) == value
    if isinstance(value, float):
        assert float(text) == value and ("." in text or "e" in text)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@given(_json, st.booleans())
@settings(max_examples=200, deadline=None)
def test_random_documents_match_the_library_and_round_trip(value: Any, large: bool) -> None:
    doc = document(value, large)
    text = to_text(doc)
    assert json.loads(text) == value
    library = parse_json(doc[0], doc[1:])

    def debytes(obj: Any) -> Any:
        if isinstance(obj, bytes):
            return obj.decode()
        if isinstance(obj, dict):
            return {debytes(k): debytes(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [debytes(v) for v in obj]
        return obj

    assert json.loads(text) == debytes(library)


# --------------------------------------------------------------------------- opaque values


def _opaque(field_type: int, payload: bytes) -> bytes:
    return bytes([0x0F, field_type]) + _varlen(len(payload)) + payload


@pytest.mark.parametrize(
    ("field_type", "name"),
    [(246, "DECIMAL"), (10, "DATE"), (11, "TIME"), (12, "DATETIME"), (7, "TIMESTAMP"), (252, "BLOB")],
)
def test_opaque_values_are_refused_with_their_type_and_path(field_type: int, name: str) -> None:
    # The payload's content does not matter: JSON text cannot carry any opaque value exactly.
    opaque = _opaque(field_type, b"\x0a\x02\x80\x00\x00\x00")
    # {"price": <opaque>}: small object, 1 element; value entry points after the key.
    key = b"price"
    header = 4 + 4 + 3
    doc = (
        b"\x00"
        + struct.pack("<HH", 1, header + len(key) + len(opaque) - 1)
        + struct.pack("<HH", header, len(key))
        + b"\x0f"
        + struct.pack("<H", header + len(key))
        + key
        + opaque[1:]
    )
    with pytest.raises(UnrepresentableJson, match=rf"{name} value inside a JSON document.* at \$\.\"price\""):
        to_text(doc)
    with pytest.raises(UnrepresentableJson, match=name):
        to_text(opaque)


@pytest.mark.parametrize(
    "doc",
    [
        bytes.fromhex("0005000c00"),  # claims 5 elements in 12 bytes of 5 given
        bytes.fromhex("0c05") + b"ab",  # a string longer than the document
        bytes.fromhex("0447"),  # no such literal
        bytes.fromhex("0d00"),  # no such type
        bytes.fromhex("0cffffffffff"),  # a length of more than 5 bytes
    ],
)
def test_corrupt_documents_are_refused(doc: bytes) -> None:
    with pytest.raises(UnrepresentableJson):
        to_text(doc)


# --------------------------------------------------------------------------- through the decoder


SCHEMA = TableSchema(
    "app",
    "t",
    (
        Column("id", 0, "int", "int(11)", False, False, None),
        Column("j", 1, "json", "json", True, False, None),
    ),
    (Index("PRIMARY", ("id",), True, False),),
    "",
    (),
    (),
)


def test_decoder_writes_raw_json_as_text_and_refuses_opaque() -> None:
    dec = RowDecoder(SCHEMA)
    assert dec.row({"id": 1, "j": RawJson(document({"n": 2**64 - 1}))}) == (1, '{"n": 18446744073709551615}')
    assert dec.row({"id": 1, "j": None}) == (1, None)
    with pytest.raises(UnreproducibleValue, match="column j: a DECIMAL value"):
        dec.row({"id": 1, "j": RawJson(_opaque(246, b"\x05\x02\x81\x0d"))})
    # What the library's own parser would hand over for an opaque value: refused, not guessed.
    with pytest.raises(UnreproducibleValue, match="column j"):
        dec.row({"id": 1, "j": {b"price": Decimal("1.50")}})


def test_translator_stops_the_move_naming_table_column_and_gtid() -> None:
    tr = Translator("app", {"t": RowDecoder(SCHEMA)}, Flavor.MYSQL, "tag", parse_position(Flavor.MYSQL, ""))
    gtid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
    tr.gtid_event(gtid, False)
    tr.query_event("BEGIN", "app")
    image = {"values": {"id": 1, "j": RawJson(_opaque(12, b"\x00" * 8))}}
    with pytest.raises(UnreproducibleEvent, match=rf"{gtid}.*app\.t.*column j: a DATETIME value") as info:
        tr.rows_event("t", Op.INSERT, [image])
    assert info.value.gtid == gtid and info.value.table == "app.t"
    assert info.value.exit_code == 3
    assert not tr.items  # nothing of the transaction reaches the writer


class _Packet:
    """The two reads the library's JSON reader makes of a row image."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read_uint_by_size(self, size: int) -> int:
        self.pos += size
        return int.from_bytes(self.data[self.pos - size : self.pos], "little")

    def read(self, n: int) -> bytes:
        self.pos += n
        return self.data[self.pos - n : self.pos]


def test_the_stream_hands_json_columns_over_undecoded() -> None:
    # stream.py replaces the library's reader (whose parser raises TypeError on opaque values).
    import tablemover.stream  # noqa: F401  (installs the reader)

    doc = _opaque(246, b"\x05\x02\x81\x0d")
    packet = _Packet(len(doc).to_bytes(4, "little") + doc + b"rest")
    value = BinLogPacketWrapper.read_binary_json(packet, 4, False)
    assert isinstance(value, RawJson) and value == doc and packet.pos == 4 + len(doc)
    empty = _Packet(b"\x00\x00")
    assert BinLogPacketWrapper.read_binary_json(empty, 2, False) == b""  # renders as null
    assert to_text(BinLogPacketWrapper.read_binary_json(empty, 0, False)) == "null"
