"""MySQL's binary JSON (the value of a JSON column in a row event) to JSON text, exactly or not at all.

mysql-replication parses these values into Python objects, and fails on what Python's JSON has no
place for: a DECIMAL, DATE, TIME, DATETIME or TIMESTAMP inside a document (MySQL keeps them as
"opaque" values of their SQL type) raises a TypeError deep in the stream thread, on every resume.
JSON text cannot carry those values either: the target would parse ``1.50`` as a DOUBLE and
``"2024-01-01"`` as a string, so ``JSON_TYPE()`` and comparisons would differ from the source. So
this module renders what text reproduces exactly (objects, arrays, literals, 16/32/64-bit signed
and unsigned integers, doubles, strings) and raises :class:`UnrepresentableJson` naming the path and
type of anything else; the caller stops the move with that (exit 3) before the transaction applies.

The format (MySQL's ``sql-common/json_binary.h``; the same since 5.7)::

    doc      ::= type value
    type     ::= 0x00 small object | 0x01 large object | 0x02 small array | 0x03 large array
               | 0x04 literal | 0x05 int16 | 0x06 uint16 | 0x07 int32 | 0x08 uint32
               | 0x09 int64 | 0x0a uint64 | 0x0b double | 0x0c string | 0x0f opaque
    object   ::= count size key-entry* value-entry* key* value*   (count, size: 2 bytes small, 4 large)
    array    ::= count size value-entry* value*
    key-entry   ::= key-offset (2/4 bytes) key-length (2 bytes)
    value-entry ::= type offset-or-inlined-value (2/4 bytes)
    string   ::= data-length (1-5 bytes, 7 bits each, low first) utf8mb4-data
    opaque   ::= field-type (1 byte) data-length utf8mb4-data

All integers are little-endian; offsets count from the first byte after the object's or array's
type byte. Literals and 16-bit integers are inlined in a value entry, and so are 32-bit integers in
a large object or array. An empty value (length 0) is the JSON null literal (MySQL reads it so: a
NOT NULL JSON column added by ALTER TABLE holds it).
"""

from __future__ import annotations

import json
import struct
from typing import Any

SMALL_OBJECT, LARGE_OBJECT, SMALL_ARRAY, LARGE_ARRAY = 0x00, 0x01, 0x02, 0x03
LITERAL, INT16, UINT16, INT32, UINT32, INT64, UINT64, DOUBLE, STRING, OPAQUE = (
    0x04,
    0x05,
    0x06,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x0B,
    0x0C,
    0x0F,
)
_LITERALS = {0x00: "null", 0x01: "true", 0x02: "false"}
_FIXED = {
    INT16: struct.Struct("<h"),
    UINT16: struct.Struct("<H"),
    INT32: struct.Struct("<i"),
    UINT32: struct.Struct("<I"),
    INT64: struct.Struct("<q"),
    UINT64: struct.Struct("<Q"),
    DOUBLE: struct.Struct("<d"),
}
# MySQL field types an opaque value names (include/field_types.h), for the refusal's message.
OPAQUE_TYPES = {
    0: "DECIMAL",
    7: "TIMESTAMP",
    10: "DATE",
    11: "TIME",
    12: "DATETIME",
    14: "DATE",
    15: "VARCHAR",
    16: "BIT",
    245: "JSON",
    246: "DECIMAL",
    249: "TINYBLOB",
    250: "MEDIUMBLOB",
    251: "LONGBLOB",
    252: "BLOB",
    253: "VAR_STRING",
    254: "STRING",
    255: "GEOMETRY",
}
_MAX_DEPTH = 100  # MySQL's own limit on JSON nesting


class UnrepresentableJson(ValueError):
    """A binary JSON value that JSON text cannot reproduce exactly, or bytes that are no JSON value."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason} at {path}")
        self.path = path
        self.reason = reason


class RawJson(bytes):
    """The undecoded bytes of a binary JSON value, as the stream's reader hands them over."""

    __slots__ = ()


def to_text(data: bytes) -> str:
    """The JSON text of one binary JSON value; raises :class:`UnrepresentableJson`."""
    if not data:
        return "null"
    return _JsonReader(bytes(data)).value(data[0], 1, len(data), "$", 0)


class _JsonReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def _need(self, start: int, size: int, end: int, path: str) -> None:
        if start < 0 or start + size > end:
            raise UnrepresentableJson(path, "a JSON value runs past its end (corrupt or truncated bytes)")

    def value(self, kind: int, start: int, end: int, path: str, depth: int) -> str:
        """The text of a value of type ``kind`` stored at ``data[start:end]``."""
        if depth > _MAX_DEPTH:
            raise UnrepresentableJson(path, "JSON nested deeper than MySQL allows")
        if kind in (SMALL_OBJECT, LARGE_OBJECT, SMALL_ARRAY, LARGE_ARRAY):
            return self._container(kind, start, end, path, depth)
        if kind == LITERAL:
            self._need(start, 1, end, path)
            return self._literal(self.data[start], path)
        if kind in _FIXED:
            fmt = _FIXED[kind]
            self._need(start, fmt.size, end, path)
            return self._number(kind, fmt.unpack_from(self.data, start)[0], path)
        if kind == STRING:
            length, start = self._varlen(start, end, path)
            self._need(start, length, end, path)
            return self._string(self.data[start : start + length], path)
        if kind == OPAQUE:
            self._need(start, 1, end, path)
            field_type = self.data[start]
            name = OPAQUE_TYPES.get(field_type, f"MySQL field type {field_type}")
            raise UnrepresentableJson(
                path,
                f"a {name} value inside a JSON document (an opaque value, which JSON text cannot "
                "carry: the target would store it as a number or string of another JSON type)",
            )
        raise UnrepresentableJson(path, f"unknown JSON value type 0x{kind:02x}")

    def _literal(self, byte: int, path: str) -> str:
        text = _LITERALS.get(byte)
        if text is None:
            raise UnrepresentableJson(path, f"unknown JSON literal 0x{byte:02x}")
        return text

    def _number(self, kind: int, number: float, path: str) -> str:
        if kind != DOUBLE:
            return str(number)
        if number != number or number in (float("inf"), float("-inf")):
            raise UnrepresentableJson(path, "a JSON double that is not finite")
        # repr is the shortest text that reads back as the same double; MySQL's parser rounds
        # correctly, and a text with a '.' or an exponent stays a DOUBLE there.
        text = repr(float(number))
        return text if any(c in text for c in ".en") else text + ".0"

    def _string(self, raw: bytes, path: str) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnrepresentableJson(path, f"a JSON string that is not UTF-8 ({exc})") from None
        return json.dumps(text, ensure_ascii=False)

    def _varlen(self, start: int, end: int, path: str) -> tuple[int, int]:
        length = 0
        for i in range(5):
            self._need(start + i, 1, end, path)
            byte = self.data[start + i]
            length |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return length, start + i + 1
        raise UnrepresentableJson(path, "a JSON string length longer than 5 bytes")

    def _container(self, kind: int, start: int, end: int, path: str, depth: int) -> str:
        large = kind in (LARGE_OBJECT, LARGE_ARRAY)
        is_object = kind in (SMALL_OBJECT, LARGE_OBJECT)
        width = 4 if large else 2
        unpack = struct.Struct("<I" if large else "<H").unpack_from
        self._need(start, 2 * width, end, path)
        count = unpack(self.data, start)[0]
        size = unpack(self.data, start + width)[0]
        self._need(start, size, end, path)
        limit = start + size  # offsets are relative to start and stay inside the container
        key_entries = start + 2 * width
        value_entries = key_entries + (count * (width + 2) if is_object else 0)
        entry = 1 + width
        self._need(value_entries, count * entry, limit, path)
        parts: list[str] = []
        for i in range(count):
            key_text = ""
            if is_object:
                at = key_entries + i * (width + 2)
                key_offset = unpack(self.data, at)[0]
                key_length = struct.unpack_from("<H", self.data, at + width)[0]
                self._need(start + key_offset, key_length, limit, path)
                key_text = self._string(self.data[start + key_offset : start + key_offset + key_length], path)
            at = value_entries + i * entry
            inner_kind = self.data[at]
            inner_path = f"{path}.{key_text}" if is_object else f"{path}[{i}]"
            if inner_kind in (LITERAL, INT16, UINT16) or (large and inner_kind in (INT32, UINT32)):
                text = self.value(inner_kind, at + 1, at + 1 + width, inner_path, depth + 1)
            else:
                offset = unpack(self.data, at + 1)[0]
                text = self.value(inner_kind, start + offset, limit, inner_path, depth + 1)
            parts.append(f"{key_text}: {text}" if is_object else text)
        return ("{" + ", ".join(parts) + "}") if is_object else ("[" + ", ".join(parts) + "]")


def read_raw(packet: Any, size: int) -> RawJson | None:
    """What the patched library reader returns for a non-partial JSON column: the value's bytes."""
    length = packet.read_uint_by_size(size)
    return RawJson(packet.read(length))
