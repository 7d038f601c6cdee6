"""Unit tests for the compiled row decoders (tablemover.rowcodec) against the library's decoding.

Random tables (every type rowcodec decodes, with random metadata, NULLs, generated and key columns)
and random row images are decoded twice: by mysql-replication with stream.py's patches followed by
RowDecoder (what the stream does without rowcodec), and by the compiled decoder. The row changes
must be equal, value for value and type for type. tests/integration/test_rowcodec_differential.py
does the same on real binlog events of a real server.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql.protocol import MysqlPacket
from pymysqlreplication.column import Column as LibColumn
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from tablemover import rowcodec
from tablemover.changes import Op, RowChange
from tablemover.decode import RowDecoder
from tablemover.flavor import Flavor
from tablemover.gtid import MariaDBPosition
from tablemover.schema import Column, Index, TableSchema
from tablemover.stream import Translator, fill_column_metadata

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


# --------------------------------------------------------------------------- random tables


@dataclass
class Spec:
    """One random column: the library's view (table map), ours (inspection), and its values."""

    lib: dict[str, Any]
    data_type: str
    column_type: str
    charset: str | None
    values: st.SearchStrategy[bytes]  # the encoded value as it sits in a row image
    key_ok: bool = False  # may be (part of) the chunk key


def _int_spec(draw: st.DrawFn) -> Spec:
    t, name, size = draw(
        st.sampled_from(
            [
                (FIELD_TYPE.TINY, "tinyint", 1),
                (FIELD_TYPE.SHORT, "smallint", 2),
                (FIELD_TYPE.INT24, "mediumint", 3),
                (FIELD_TYPE.LONG, "int", 4),
                (FIELD_TYPE.LONGLONG, "bigint", 8),
            ]
        )
    )
    unsigned = draw(st.booleans())
    column_type = f"{name}(11)" + (" unsigned" if unsigned else "")
    values = st.binary(min_size=size, max_size=size)
    return Spec({"type": t, "unsigned": unsigned}, name, column_type, None, values, key_ok=True)


def _string_spec(draw: st.DrawFn) -> Spec:
    t = draw(st.sampled_from([FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING, FIELD_TYPE.BLOB]))
    charset = draw(st.sampled_from(["utf8mb4", "latin1", "binary", "cp1251"]))
    if t == FIELD_TYPE.BLOB:
        length_size = draw(st.integers(1, 4))
        lib: dict[str, Any] = {"type": t, "length_size": length_size}
        limit = 300 if length_size > 1 else 255
        names = {1: "tiny", 2: "", 3: "medium", 4: "long"}
        data_type = names[length_size] + ("blob" if charset == "binary" else "text")
        prefix = length_size
    else:
        max_length = draw(st.sampled_from([4, 60, 255, 256, 480, 3000]))
        lib = {"type": t, "max_length": max_length}
        limit = min(max_length, 300)
        textual = charset != "binary"
        if t == FIELD_TYPE.VARCHAR:
            data_type = "varchar" if textual else "varbinary"
        else:
            data_type = "char" if textual else "binary"
        prefix = 2 if max_length > 255 else 1
    # Text in the charset and any bytes (keys and values stay bytes, whatever the charset).
    codec = {"utf8mb4": "utf-8", "latin1": "cp1252", "cp1251": "cp1251"}.get(charset)

    def encode(raw: bytes) -> bytes:
        return len(raw).to_bytes(prefix, "little") + raw

    if codec is None:
        values = st.binary(max_size=limit).map(encode)
    else:
        text = st.text(st.characters(codec="latin-1" if codec != "utf-8" else None), max_size=limit // 4)
        encodable = text.map(lambda s, c=codec: s.encode(c, "ignore")[:limit])  # type: ignore[misc]
        values = (encodable | st.binary(max_size=limit)).map(encode)
    # BINARY(N) gets its width: both decoders pad a value back to N bytes (the binlog strips them).
    column_type = f"binary({lib['max_length']})" if data_type == "binary" else data_type
    return Spec(lib, data_type, column_type, None if charset == "binary" else charset, values, key_ok=True)


def _temporal_spec(draw: st.DrawFn) -> Spec:
    t = draw(
        st.sampled_from([FIELD_TYPE.DATE, FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIME2])
    )
    if t == FIELD_TYPE.DATE:
        return Spec({"type": t}, "date", "date", None, st.binary(min_size=3, max_size=3))
    fsp = draw(st.integers(0, 6))
    frac_bytes = rowcodec.FRACTION_BYTES.get(fsp, 0)
    # Fractions as the server stores them: a count of 10^-(2 * frac_bytes) seconds.
    fraction = st.integers(0, 10 ** (2 * frac_bytes) - 1).map(lambda f: f.to_bytes(frac_bytes, "big"))
    base = {FIELD_TYPE.DATETIME2: 5, FIELD_TYPE.TIMESTAMP2: 4, FIELD_TYPE.TIME2: 3}[t]
    if t == FIELD_TYPE.TIMESTAMP2:
        seconds = st.integers(-(2**31), 2**31 - 1).map(lambda s: s.to_bytes(4, "big", signed=True))
    else:
        seconds = st.binary(min_size=base, max_size=base)
    name = {FIELD_TYPE.DATETIME2: "datetime", FIELD_TYPE.TIMESTAMP2: "timestamp", FIELD_TYPE.TIME2: "time"}[t]
    values = st.tuples(seconds, fraction).map(lambda p: p[0] + p[1])
    return Spec({"type": t, "fsp": fsp}, name, f"{name}({fsp})", None, values)


def encode_decimal(negative: bool, digits: str, frac: str, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin, independently of the decoders under test."""
    integral = precision - scale
    digits, frac = digits.rjust(integral, "0"), frac.ljust(scale, "0")
    lead, trail = integral % 9, scale % 9
    out = bytearray()
    if lead:
        out += int(digits[:lead]).to_bytes(_DIG2BYTES[lead], "big")
    for g in range(integral // 9):
        out += int(digits[lead + 9 * g : lead + 9 * g + 9]).to_bytes(4, "big")
    for g in range(scale // 9):
        out += int(frac[9 * g : 9 * g + 9]).to_bytes(4, "big")
    if trail:
        out += int(frac[scale - trail :]).to_bytes(_DIG2BYTES[trail], "big")
    out[0] ^= 0x80
    return bytes(b ^ 0xFF for b in out) if negative else bytes(out)


def _decimal_spec(draw: st.DrawFn) -> Spec:
    precision = draw(st.integers(1, 65))
    scale = draw(st.integers(0, min(precision, 30)))
    integral = precision - scale
    values = st.builds(
        encode_decimal,
        st.booleans(),
        st.text("0123456789", min_size=integral, max_size=integral),
        st.text("0123456789", min_size=scale, max_size=scale),
        st.just(precision),
        st.just(scale),
    )
    lib = {"type": FIELD_TYPE.NEWDECIMAL, "precision": precision, "decimals": scale}
    return Spec(lib, "decimal", f"decimal({precision},{scale})", None, values, key_ok=True)


def _members(draw: st.DrawFn, most: int) -> list[str]:
    count = draw(st.integers(1, most))
    return [f"m{i}" if i % 3 else f"é{i}'x" for i in range(count)]


def _quoted(members: list[str]) -> str:
    return ",".join("'" + m.replace("'", "''") + "'" for m in members)


def _enum_spec(draw: st.DrawFn) -> Spec:
    members = _members(draw, 300)
    size = 1 if len(members) < 256 else 2
    values = st.integers(0, len(members)).map(lambda i: i.to_bytes(size, "little"))
    lib = {"type": FIELD_TYPE.ENUM, "size": size, "enum_values": ["", *members]}
    return Spec(lib, "enum", f"enum({_quoted(members)})", "utf8mb4", values)


def _set_spec(draw: st.DrawFn) -> Spec:
    members = _members(draw, 64)
    size = {1: 1, 2: 2, 3: 3, 4: 4}.get((len(members) + 7) // 8, 8)
    values = st.integers(0, 2 ** (8 * size) - 1).map(lambda m: m.to_bytes(size, "little"))
    # With FULL metadata the binlog's member list is the table's; a member whose name the library
    # cannot decode becomes '', and then the order of ours decides: reversing exercises that path.
    binlog_members = draw(st.sampled_from([members, members[::-1]]))
    lib = {"type": FIELD_TYPE.SET, "size": size, "set_values": binlog_members}
    return Spec(lib, "set", f"set({_quoted(members)})", "utf8mb4", values)


def _bit_spec(draw: st.DrawFn) -> Spec:
    bits = draw(st.integers(1, 64))
    nbytes = (bits + 7) // 8
    lib = {"type": FIELD_TYPE.BIT, "bits": bits, "bytes": nbytes}
    return Spec(lib, "bit", f"bit({bits})", None, st.binary(min_size=nbytes, max_size=nbytes))


def _float_spec(draw: st.DrawFn) -> Spec:
    if draw(st.booleans()):
        values = st.floats(width=32, allow_nan=False).map(lambda f: struct.pack("<f", f))
        return Spec({"type": FIELD_TYPE.FLOAT, "size": 4}, "float", "float", None, values)
    values = st.floats(allow_nan=False).map(lambda f: struct.pack("<d", f))
    return Spec({"type": FIELD_TYPE.DOUBLE, "size": 8}, "double", "double", None, values)


def _year_spec(draw: st.DrawFn) -> Spec:
    return Spec({"type": FIELD_TYPE.YEAR}, "year", "year(4)", None, st.binary(min_size=1, max_size=1))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    kind = draw(
        st.sampled_from(
            [
                _int_spec,
                _string_spec,
                _temporal_spec,
                _decimal_spec,
                _enum_spec,
                _set_spec,
                _bit_spec,
                _float_spec,
                _year_spec,
            ]
        )
    )
    return kind(draw)


@dataclass
class RandomTable:
    lib_columns: list[LibColumn]
    decoder: RowDecoder
    values: list[st.SearchStrategy[bytes]]
    nullable: list[bool]


@st.composite
def tables(draw: st.DrawFn) -> RandomTable:
    columns = draw(st.lists(specs(), min_size=1, max_size=12))
    keyed = [i for i, s in enumerate(columns) if s.key_ok]
    key = draw(st.lists(st.sampled_from(keyed), min_size=1, max_size=2, unique=True)) if keyed else []
    ours, lib_columns, nullable = [], [], []
    minimal = draw(st.booleans())  # binlog_row_metadata=MINIMAL: no signedness nor members
    for i, spec in enumerate(columns):
        generated = i not in key and draw(st.integers(0, 5)) == 0
        is_null_ok = i not in key and draw(st.booleans())
        nullable.append(is_null_ok)
        ours.append(Column(f"c{i}", i, spec.data_type, spec.column_type, is_null_ok, generated, spec.charset))
        lib = LibColumn(
            **{"name": f"c{i}", "unsigned": False, "enum_values": None, "set_values": None, **spec.lib}
        )
        if minimal:
            lib.unsigned, lib.enum_values, lib.set_values = False, None, None
        lib_columns.append(lib)
    indexes = (Index("PRIMARY", tuple(f"c{i}" for i in key), True, False),) if key else ()
    schema = TableSchema("app", "t", tuple(ours), indexes, "", (), ())
    decoder = RowDecoder(schema)
    fill_column_metadata(lib_columns, decoder)  # what the stream does before decoding either way
    return RandomTable(lib_columns, decoder, [s.values for s in columns], nullable)


@st.composite
def images(draw: st.DrawFn, table: RandomTable) -> bytes:
    """One full row image: the NULL bitmap, then every non-NULL value."""
    nulls = [ok and draw(st.integers(0, 3)) == 0 for ok in table.nullable]
    bitmap = sum(1 << i for i, null in enumerate(nulls) if null)
    out = bitmap.to_bytes((len(nulls) + 7) // 8, "little")
    for null, values in zip(nulls, table.values, strict=True):
        if not null:
            out += draw(values)
    return out


# --------------------------------------------------------------------------- the two decoders


def library_changes(table: RandomTable, kind: int, body: bytes) -> list[Any]:
    """Decode ``body`` as the stream does without rowcodec: the library (patched), then RowDecoder."""
    cls = {23: WriteRowsEvent, 24: UpdateRowsEvent, 25: DeleteRowsEvent}[kind]
    ev: Any = cls.__new__(cls)
    wrapper: Any = BinLogPacketWrapper.__new__(BinLogPacketWrapper)
    wrapper.packet = MysqlPacket(body, "utf8")
    wrapper.read_bytes = 0
    wrapper._BinLogPacketWrapper__data_buffer = b""
    full = b"\xff" * ((len(table.lib_columns) + 7) // 8)
    ev.__dict__.update(
        packet=wrapper,
        event_type=kind,
        event_size=len(body),
        complete=True,
        table_id=1,
        table_map={1: Table(1, "app", "t", table.lib_columns)},
        columns=table.lib_columns,
        schema="app",
        table="t",
        _ctl_connection=None,
        _ignore_decode_errors=False,
        columns_present_bitmap=full,
        columns_present_bitmap2=full,
        _RowsEvent__none_sources={},
        _RowsEvent__rows=None,
        _RowsEvent__use_column_name_cache=False,
        _RowsEvent__enable_logging=False,
    )
    tr = Translator("app", {"t": table.decoder}, Flavor.MARIADB, "tag", MariaDBPosition())
    tr.gtid_event("0-1-1", False)  # rows are only taken inside a transaction
    tr.rows_event("t", rowcodec.ROWS_EVENT_OPS[kind], ev.rows)
    return tr.items


def outcome(decode: Any) -> tuple[str, Any]:
    """A decoder's result, or the kind of error it raised (both paths must agree on that too)."""
    try:
        return "ok", decode()
    except Exception as exc:
        return "error", type(exc).__name__


@given(st.data())
@FUZZ
def test_compiled_decoder_matches_the_library(data: st.DataObject) -> None:
    table = data.draw(tables())
    codec = rowcodec.compile_codec("t", table.lib_columns, table.decoder)
    assert isinstance(codec, rowcodec.TableCodec), codec
    kind = data.draw(st.sampled_from([23, 24, 25]))
    count = data.draw(st.integers(1, 4)) * (2 if kind == 24 else 1)
    body = b"".join(data.draw(images(table)) for _ in range(count))
    native = outcome(lambda: codec.decode(rowcodec.ROWS_EVENT_OPS[kind], body, 0, len(body)))
    library = outcome(lambda: library_changes(table, kind, body))
    assert native == library
    if native[0] == "ok":  # equal values must also be values of the same types (1 == 1.0 == True)
        assert [_types(c) for c in native[1]] == [_types(c) for c in library[1]]


def _types(change: RowChange) -> tuple[Any, ...]:
    return tuple(
        tuple(type(v) for v in row) if row is not None else None for row in (change.before, change.after)
    )


# --------------------------------------------------------------------------- fixed cases


def _table(*columns: tuple[dict[str, Any], Column]) -> tuple[list[LibColumn], RowDecoder]:
    lib = [
        LibColumn(**{"name": c.name, "unsigned": False, "enum_values": None, "set_values": None, **kw})
        for kw, c in columns
    ]
    schema = TableSchema(
        "app",
        "t",
        tuple(c for _, c in columns),
        (Index("PRIMARY", (columns[0][1].name,), True, False),),
        "",
        (),
        (),
    )
    return lib, RowDecoder(schema)


ID = ({"type": FIELD_TYPE.LONG}, Column("id", 0, "int", "int(11)", False, False, None))


@pytest.mark.parametrize(
    ("lib", "reason"),
    [
        ({"type": FIELD_TYPE.GEOMETRY, "length_size": 4}, "column type 255"),
        ({"type": FIELD_TYPE.JSON, "length_size": 4}, "column type 245"),
        ({"type": FIELD_TYPE.TIME}, "column type 11"),
        ({"type": FIELD_TYPE.DATETIME}, "column type 12"),
        ({"type": FIELD_TYPE.TIMESTAMP}, "column type 7"),
        ({"type": FIELD_TYPE.VAR_STRING, "max_length": 10}, "column type 253"),
        ({"type": FIELD_TYPE.DATETIME2, "fsp": 7}, "fractional precision 7"),
        ({"type": FIELD_TYPE.ENUM, "size": 1}, "ENUM without its members"),
    ],
)
def test_types_left_to_the_library(lib: dict[str, Any], reason: str) -> None:
    lib_columns, decoder = _table(ID, (lib, Column("x", 1, "x", "x", True, False, None)))
    result = rowcodec.compile_codec("t", lib_columns, decoder)
    assert result == f"column x: {reason}"


def test_bit_or_set_without_our_fix_is_left_to_the_library() -> None:
    # Our inspection says "varchar" where the binlog says BIT/SET: the table changed under us.
    for lib in ({"type": FIELD_TYPE.BIT, "bits": 3, "bytes": 1}, {"type": FIELD_TYPE.SET, "size": 1}):
        lib_columns, decoder = _table(
            ID, (lib, Column("x", 1, "varchar", "varchar(3)", True, False, "utf8mb4"))
        )
        assert isinstance(rowcodec.compile_codec("t", lib_columns, decoder), str)


def test_column_count_mismatch_is_left_to_the_library() -> None:
    lib_columns, decoder = _table(ID)
    result = rowcodec.compile_codec("t", [*lib_columns, LibColumn(type=FIELD_TYPE.LONG)], decoder)
    assert result == "2 columns in the table map, 1 in our inspection"


def test_mysql_json_column_is_left_to_the_library() -> None:
    lib_columns, decoder = _table(
        ID, ({"type": FIELD_TYPE.BLOB, "length_size": 4}, Column("j", 1, "json", "json", True, False, None))
    )
    assert rowcodec.compile_codec("t", lib_columns, decoder) == "column j: JSON"


def test_truncated_or_overlong_images_raise() -> None:
    lib_columns, decoder = _table(
        ID,
        (
            {"type": FIELD_TYPE.VARCHAR, "max_length": 40},
            Column("v", 1, "varchar", "varchar(10)", True, False, None),
        ),
    )
    codec = rowcodec.compile_codec("t", lib_columns, decoder)
    assert isinstance(codec, rowcodec.TableCodec)
    image = b"\x00" + struct.pack("<i", 7) + b"\x03abc"
    assert codec.insert(image, 0, len(image)) == [RowChange("t", Op.INSERT, None, (7, b"abc"))]
    with pytest.raises(rowcodec.DecodeMismatch):
        codec.insert(image[:-1], 0, len(image) - 1)  # the string runs past the end
    with pytest.raises(struct.error):
        codec.insert(image[:3], 0, 3)
    with pytest.raises(struct.error):
        codec.insert(image + b"\x00", 0, len(image) + 1)  # a second image cut short


def test_generated_code_reads_null_free_runs_in_one_struct_call() -> None:
    lib_columns, decoder = _table(
        ID,
        ({"type": FIELD_TYPE.LONGLONG}, Column("b", 1, "bigint", "bigint(20)", True, False, None)),
        ({"type": FIELD_TYPE.DOUBLE}, Column("d", 2, "double", "double", True, False, None)),
    )
    codec = rowcodec.compile_codec("t", lib_columns, decoder)
    assert isinstance(codec, rowcodec.TableCodec)
    first_image = codec.source.split("if not nb:")[1].split("else:")[0]
    assert first_image.count("(data, p)") == 1  # id, b and d: one unpack_from with '<iqd'


def test_set_text_orders_members_by_our_definition() -> None:
    ours = rowcodec.SetText(["b", "a", "c"], lambda members: ",".join(sorted(members)))
    assert ours(0b011) == "a,b"
    assert ours(0) == ""
    in_order = rowcodec.SetText(["x", "y", "z"], None)
    assert in_order(0b101) == "x,z"
    assert in_order(0b1000) == ""  # a bit past the members: no member, as the library reads it


@pytest.mark.parametrize(
    ("raw", "fsp", "expected"),
    [
        (bytes.fromhex("800000"), 0, dt.timedelta(0)),
        (bytes.fromhex("7fffff"), 0, -dt.timedelta(seconds=1)),
        (bytes.fromhex("7fffffce"), 2, -dt.timedelta(microseconds=500000)),
        (bytes.fromhex("800000000001"), 6, dt.timedelta(microseconds=1)),
    ],
)
def test_time2_values(raw: bytes, fsp: int, expected: dt.timedelta) -> None:
    assert rowcodec.time2_value(raw, fsp) == expected


def test_zero_dates_keep_the_servers_text() -> None:
    assert rowcodec.date_value((2024 << 9) | (5 << 5)) == "2024-05-00"
    assert rowcodec.date_value(0) == "0000-00-00"
    zero = bytes(5) + (123400).to_bytes(3, "big")
    assert rowcodec.datetime2_value(zero, 5) == "0000-00-00 00:00:00.12340"
    assert rowcodec.timestamp2_value(bytes(4), 0) == dt.datetime(1970, 1, 1)  # as the library reads 0


@given(
    st.booleans(),
    st.integers(1, 65).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, min(p, 30)))),
    st.data(),
)
@FUZZ
def test_decimal_round_trip(negative: bool, shape: tuple[int, int], data: st.DataObject) -> None:
    precision, scale = shape
    digits = data.draw(st.text("0123456789", min_size=precision - scale, max_size=precision - scale))
    frac = data.draw(st.text("0123456789", min_size=scale, max_size=scale))
    raw = encode_decimal(negative, digits, frac, precision, scale)
    layout = rowcodec.DecimalLayout.of(precision, scale)
    assert layout.size == len(raw)
    value = rowcodec.decimal_value(raw, layout)
    expected = decimal.Decimal(("-" if negative else "") + (digits or "0") + "." + (frac or "0"))
    assert value == expected


def library_decimal(raw: bytes, precision: int, scale: int) -> Any:
    """The library's own DECIMAL reader on ``raw``."""
    ev: Any = WriteRowsEvent.__new__(WriteRowsEvent)
    wrapper: Any = BinLogPacketWrapper.__new__(BinLogPacketWrapper)
    wrapper.packet = MysqlPacket(raw, "utf8")
    wrapper.read_bytes = 0
    wrapper._BinLogPacketWrapper__data_buffer = b""
    ev.packet = wrapper
    return ev._RowsEvent__read_new_decimal(LibColumn(precision=precision, decimals=scale))


@given(st.integers(1, 65).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, min(p, 30)))), st.data())
@FUZZ
def test_decimal_matches_the_library_on_any_bytes(shape: tuple[int, int], data: st.DataObject) -> None:
    # Valid or not (a group with its top bit set, digits past 999999999): the same Decimal or error.
    precision, scale = shape
    layout = rowcodec.DecimalLayout.of(precision, scale)
    raw = data.draw(st.binary(min_size=layout.size, max_size=layout.size))
    ours = outcome(lambda: rowcodec.decimal_value(raw, layout))
    theirs = outcome(lambda: library_decimal(raw, precision, scale))
    assert ours == theirs
    assert repr(ours) == repr(theirs)


# --------------------------------------------------------------------------- rows event layout


def _rows_packet(kind: int, columns: int, body: bytes, *, extra: bytes = b"", checksum: bool = True) -> bytes:
    post = (21).to_bytes(6, "little") + b"\x01\x00"
    if kind >= 30:
        post += (2 + len(extra)).to_bytes(2, "little") + extra
    bitmap = b"\xff" * ((columns + 7) // 8)
    payload = post + bytes([columns]) + bitmap + (bitmap if kind in (24, 31) else b"") + body
    size = 19 + len(payload) + (4 if checksum else 0)
    header = (
        b"\x00" + bytes(4) + bytes([kind]) + (1).to_bytes(4, "little") + size.to_bytes(4, "little") + bytes(6)
    )
    return header + payload + (b"\xaa\xbb\xcc\xdd" if checksum else b"")


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("kind", [23, 24, 25, 30, 31, 32])
def test_rows_layout(kind: int, checksum: bool) -> None:
    packet = _rows_packet(kind, 9, b"IMAGES", checksum=checksum)
    assert rowcodec.table_id_of(packet) == 21
    post_header = 10 if kind >= 30 else 8
    layout = rowcodec.rows_layout(packet, kind, post_header, 4 if checksum else 0)
    assert layout is not None
    columns, present, present_after, start, end = layout
    assert (columns, present) == (9, b"\xff\xff")
    assert present_after == (b"\xff\xff" if kind in (24, 31) else None)
    assert packet[start:end] == b"IMAGES"


def test_rows_layout_leaves_odd_events_to_the_library() -> None:
    v2_extra = _rows_packet(30, 2, b"x", extra=b"\x01\x02\x00")  # partition info
    assert rowcodec.rows_layout(v2_extra, 30, 10, 4) is None
    assert rowcodec.rows_layout(_rows_packet(23, 2, b"x"), 23, 6, 4) is None  # shorter post-header
    wide = _rows_packet(23, 2, b"x")
    wide = wide[:28] + bytes([252]) + wide[29:]  # a 2-byte column count: 251 columns or more
    assert rowcodec.rows_layout(wide, 23, 8, 4) is None
    assert rowcodec.rows_layout(_rows_packet(23, 2, b"x") + b"junk", 23, 8, 4) is None


def test_binary_padding_is_fused_and_matches_the_library() -> None:
    # BINARY(16) (UUID bytes) as key and value: the binlog holds them without trailing 0x00 bytes.
    key = Column("k", 0, "binary", "binary(16)", False, False, None)
    value = Column("v", 1, "binary", "binary(4)", True, False, None)
    lib = [
        LibColumn.__new__(LibColumn),
        LibColumn.__new__(LibColumn),
    ]
    for c, n in zip(lib, (16, 4), strict=True):
        c.__dict__.update(type=FIELD_TYPE.STRING, max_length=n, name=None, unsigned=False)
    schema = TableSchema("app", "t", (key, value), (Index("PRIMARY", ("k",), True, False),), "", (), ())
    decoder = RowDecoder(schema)
    codec = rowcodec.compile_codec("t", lib, decoder)
    assert not isinstance(codec, str), codec
    assert ".ljust(16, b'\\x00')" in codec.source
    body = b"\x00" + b"\x02\xab\xcd" + b"\x00"  # null bitmap, k = ab cd, v = '' (4 zero bytes)
    (change,) = codec.decode(Op.INSERT, body, 0, len(body))
    assert change.after == (b"\xab\xcd" + bytes(14), bytes(4))
    assert decoder.row({"k": b"\xab\xcd", "v": b""}) == change.after
