"""Decode row events of moved tables straight from the binlog packet, one compiled decoder per table.

mysql-replication decodes a row image value by value: a Python method call, a ``struct.unpack`` and
a dict entry per column, then :class:`~tablemover.decode.RowDecoder` turns the dict into our tuple.
Here a table's decoder is generated once per table map from the column types and metadata of the
TABLE_MAP event (as the library read them, with ``stream.fill_column_metadata``'s additions) and
our own inspection of the table (which columns are written, which fix-ups they get), and compiled
to Python code that reads a whole row image in one pass: when the image has no NULLs, each run of
fixed-width columns is one ``struct.unpack_from`` call, strings are slices, and the result is the
writable-column tuple the writer gets, built directly.

The values must be exactly what the library path produces (``tests/unit/test_rowcodec.py`` and
``tests/integration/test_rowcodec_differential.py`` compare both on real binlog events), including
its quirks: TIMESTAMP 0 reads as 1970-01-01, YEAR 0 as 1900 (decode.py turns both back into zero
values, on either path), strings stay raw bytes (keys too), BINARY(N) is padded back to N bytes. Types whose
decoding we do not reproduce (old-style TIME/DATETIME/TIMESTAMP, GEOMETRY, MySQL's binary JSON, ...)
make :func:`compile_codec` return the reason instead of a decoder, and that table's events are left
to the library.

The value helpers at the top (:func:`time2_value` and friends) are shared with ``stream.py``'s
patches of the library's readers, so both paths compute temporal values with the same code.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from tablemover.changes import Op, RowChange
from tablemover.decode import Fix, FixKind, RowDecoder, binary_width
from tablemover.schema import Column

# --------------------------------------------------------------------------- value helpers

FRACTION_BYTES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3}  # fsp -> bytes of a temporal fraction
_FSP_SCALE = (10**6, 10**5, 10**4, 10**3, 10**2, 10, 1)  # fsp -> microseconds per unit
_EPOCH = dt.datetime(1970, 1, 1)
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # decimal digits -> bytes of a packed decimal group


def fraction_micros(raw: bytes, fsp: int) -> int:
    """Microseconds of a temporal fraction, as the library's ``RowsEvent.__read_fsp`` computes them.

    The bytes are read as a signed big-endian number (as the library does; valid values are never
    negative) in units of 10^-(fsp rounded up to even).
    """
    if not raw:
        return 0
    micro = int.from_bytes(raw, "big", signed=True)
    if fsp % 2:
        micro = int(micro / 10)  # the library's rounding (towards zero), kept verbatim
    return micro * _FSP_SCALE[fsp]


def date_value(packed: int) -> dt.date | str:
    """A DATE from its 3-byte little-endian value; a date with zero parts as the server's text.

    The library turns any date with a zero part into None ("out of date range"); MariaDB's default
    sql_mode stores '2024-05-00' and '0000-00-00' happily, and we must write back exactly that.
    """
    year, month, day = packed >> 9, (packed >> 5) & 0x0F, packed & 0x1F
    try:
        return dt.date(year, month, day)
    except ValueError:
        return f"{year:04d}-{month:02d}-{day:02d}"


def datetime2_value(raw: bytes, fsp: int) -> dt.datetime | str:
    """A DATETIME(fsp) from its 5 big-endian bytes and fraction; zero parts as the server's text."""
    if fsp:
        data = int.from_bytes(raw[:5], "big")
        micro = fraction_micros(raw[5:], fsp)
    else:  # DATETIME without fraction: the common case, no slicing
        data = int.from_bytes(raw, "big")
        micro = 0
    year, month = divmod((data >> 22) & 0x1FFFF, 13)
    day, hour = (data >> 17) & 0x1F, (data >> 12) & 0x1F
    minute, second = (data >> 6) & 0x3F, data & 0x3F
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        return text + (f".{micro:06d}"[: fsp + 1] if fsp else "")


def timestamp2_value(raw: bytes, fsp: int) -> dt.datetime:
    """A TIMESTAMP(fsp) as the library returns it: naive UTC, seconds read as a signed int.

    The library's ``utcfromtimestamp(secs)`` is exactly the epoch plus ``secs`` seconds; the zero
    timestamp comes back as 1970-01-01 00:00:00, as it always has.
    """
    value = _EPOCH + dt.timedelta(seconds=int.from_bytes(raw[:4], "big", signed=True))
    micro = fraction_micros(raw[4:], fsp)
    if micro > 0:
        value = value.replace(microsecond=micro)
    return value


def time2_value(raw: bytes, fsp: int) -> dt.timedelta:
    """A TIME(fsp) from its 3 big-endian bytes and fraction, negative values included.

    MySQL's TIME2 packs the integer part and the fraction as one big-endian value with an offset,
    negative values in two's complement across both parts (sql/my_time.cc,
    my_time_packed_from_binary); the library negates only the integer part.
    """
    frac_bytes = len(raw) - 3
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


class DecimalLayout:
    """Where the digit groups of a packed DECIMAL(precision, scale) lie, and how to read them.

    A packed DECIMAL is big-endian digit groups (the integer part's leading digits, whole 9-digit
    groups, then the fraction's), with the sign in the inverted top bit and every byte inverted for
    a negative value. The library reads each group as a signed number (after flipping the sign bit)
    and XORs it with -1 when negative; that equals reading it signed from the inverted bytes, which
    is what ``decimal_value`` does, all groups from one integer.
    """

    __slots__ = (
        "_flip",
        "_format",
        "_groups",
        "_invert",
        "frac_digits",
        "frac_groups",
        "int_digits",
        "int_groups",
        "size",
    )

    def __init__(self, int_digits: int, int_groups: int, frac_groups: int, frac_digits: int) -> None:
        self.int_digits = int_digits  # leading integer digits outside whole 9-digit groups
        self.int_groups = int_groups  # whole 9-digit integer groups
        self.frac_groups = frac_groups  # whole 9-digit fraction groups
        self.frac_digits = frac_digits  # trailing fraction digits outside whole groups
        sizes = [_DIG2BYTES[int_digits], *[4] * (int_groups + frac_groups), _DIG2BYTES[frac_digits]]
        self.size = sum(sizes)  # bytes of one packed value
        bits = 8 * self.size
        self._flip = 1 << (bits - 1)  # the sign bit
        self._invert = (1 << bits) - 1
        groups: list[tuple[int, int, int]] = []  # (shift, width in bits) of each group, first first
        shift = bits
        for size in sizes:
            if size:
                shift -= 8 * size
                groups.append((shift, (1 << 8 * size) - 1, 1 << (8 * size - 1)))
        self._groups = tuple(groups)
        # The library's text: str() of the leading group, 9 digits a whole group, the trailing
        # fraction group padded to its digit count; "{}" first for the sign.
        self._format = (
            "{}"
            + ("{}" if int_digits else "")
            + "{:09d}" * int_groups
            + "."
            + "{:09d}" * frac_groups
            + (f"{{:0{frac_digits}d}}" if frac_digits else "")
        )

    @classmethod
    def of(cls, precision: int, scale: int) -> DecimalLayout:
        """The layout of DECIMAL(precision, scale)."""
        integral = precision - scale
        return cls(integral % 9, integral // 9, scale // 9, scale % 9)

    def value(self, raw: bytes) -> decimal.Decimal:
        """The Decimal the library makes of ``raw``: the same digit text, so the same Decimal."""
        n = int.from_bytes(raw, "big") ^ self._flip
        sign = ""
        if n & self._flip:  # the stored sign bit was 0: negative, every byte inverted
            n ^= self._invert
            sign = "-"
        values = []
        for shift, mask, half in self._groups:
            group = n >> shift & mask
            values.append(group - (half << 1) if group >= half else group)  # signed, as read
        return decimal.Decimal(self._format.format(sign, *values))


def decimal_value(raw: bytes, layout: DecimalLayout) -> decimal.Decimal:
    """A packed DECIMAL as the library decodes it (see :class:`DecimalLayout`)."""
    return layout.value(raw)


class SetText:
    """A SET bitmask -> its members' text in definition order, as the library path ends up with it.

    The library gives a Python set of the members whose bits are set (None, restored to '', when
    none is); ``decode._set`` joins them in our inspection's member order. When the binlog's member
    list is ours (always, unless a member's name failed to decode), that is the members in bit order.
    """

    _CACHE_LIMIT = 4096  # distinct masks remembered; a SET has at most 64 members

    def __init__(self, members: Sequence[str], fix: Callable[[Any], Any] | None) -> None:
        self._members = tuple(members)
        self._fix = fix  # None: our member order is the binlog's, bit order is definition order
        self._cache: dict[int, Any] = {}

    def __call__(self, mask: int) -> Any:
        """The column's value for ``mask``."""
        found = self._cache.get(mask)
        if found is not None:
            return found
        chosen = [m for i, m in enumerate(self._members) if mask >> i & 1]
        if not chosen:
            text: Any = ""
        elif self._fix is None:
            text = ",".join(chosen)
        else:
            text = self._fix(set(chosen))
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[mask] = text
        return text


# --------------------------------------------------------------------------- rows event framing

# Row event type -> what it does. v1 is what MariaDB writes, v2 MySQL 5.6+.
ROWS_EVENT_OPS = {23: Op.INSERT, 24: Op.UPDATE, 25: Op.DELETE, 30: Op.INSERT, 31: Op.UPDATE, 32: Op.DELETE}
_V1_POST_HEADER = 8  # table id (6), flags (2)
_V2_POST_HEADER = 10  # ... and the length of the extra data (2)
_EVENT_SIZE = struct.Struct("<I")
_EXTRA_LEN = struct.Struct("<H")


# Where the parts of a rows event lie in its packet (``data[0]`` is the OK byte): the column count
# the event gives, the columns-present bitmap (of the before image for UPDATE), UPDATE's bitmap of
# the after image (else None), and the offsets of the first row image and of the end of the last
# one (the checksum, if any, follows). A plain tuple: this is built for every row event.
RowsLayout = tuple[int, bytes, bytes | None, int, int]


def table_id_of(data: bytes) -> int:
    """The table id of a TABLE_MAP or rows event packet."""
    return int.from_bytes(data[20:26], "little")


def rows_layout(data: bytes, event_type: int, post_header_len: int, checksum_len: int) -> RowsLayout | None:
    """Parse a rows event's header; None when its layout is one we leave to the library.

    Left to the library: a v2 event with extra data (NDB or partition info), a column count of 251
    or more (a multi-byte length code), a declared post-header shorter than the one we know (the
    library raises for it), and any size inconsistency.
    """
    v2 = event_type >= 30
    if post_header_len < (_V2_POST_HEADER if v2 else _V1_POST_HEADER):
        return None
    if v2 and _EXTRA_LEN.unpack_from(data, 28)[0] != 2:
        return None
    p = 20 + post_header_len
    count = data[p]
    if count >= 251:
        return None
    p += 1
    width = (count + 7) >> 3
    present = data[p : p + width]
    p += width
    present_after = None
    if event_type == 24 or event_type == 31:  # UPDATE: a second bitmap, for the after image
        present_after = data[p : p + width]
        p += width
    event_size = _EVENT_SIZE.unpack_from(data, 10)[0]
    end = 1 + event_size - checksum_len
    if event_size + 1 != len(data) or p > end:
        return None
    return count, present, present_after, p, end


class DecodeMismatch(ValueError):
    """A row image did not end where the event says; the library decodes that event instead."""


# --------------------------------------------------------------------------- column plans


@dataclass(frozen=True)
class _Plan:
    """How to read one column: fixed-width (``fmt``) or length-prefixed (``length_bytes``).

    ``expr`` turns what was read into the final value: ``{a}``/``{b}`` are the values ``fmt``
    unpacks to, ``{r}`` the bytes of a length-prefixed value.
    """

    fmt: str = ""  # struct codes, little-endian; "" for a length-prefixed value
    length_bytes: int = 0
    expr: str = "{a}"
    names: tuple[tuple[str, Any], ...] = ()  # what expr refers to

    @property
    def width(self) -> int:
        """Bytes of a fixed-width value."""
        return struct.calcsize("<" + self.fmt)

    @property
    def arity(self) -> int:
        """How many values ``fmt`` unpacks to."""
        return len(struct.unpack("<" + self.fmt, bytes(self.width)))


_INTS = {
    FIELD_TYPE.TINY: ("b", "B"),
    FIELD_TYPE.SHORT: ("h", "H"),
    FIELD_TYPE.LONG: ("i", "I"),
    FIELD_TYPE.LONGLONG: ("q", "Q"),
}
_LE_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _library_plan(i: int, col: Any) -> _Plan | str:
    """The plan that yields the library's value for column ``i`` (before our fix-ups), or why not."""
    t = col.type
    if t in _INTS:
        return _Plan(_INTS[t][1 if col.unsigned else 0])
    if t == FIELD_TYPE.INT24:
        return _Plan("HB" if col.unsigned else "Hb", expr="({a} | {b} << 16)")
    if t == FIELD_TYPE.FLOAT:
        return _Plan("f")
    if t == FIELD_TYPE.DOUBLE:
        return _Plan("d")
    if t == FIELD_TYPE.YEAR:
        return _Plan("B", expr="({a} + 1900)")
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING):
        return _Plan(length_bytes=2 if col.max_length > 255 else 1, expr="{r}")
    if t == FIELD_TYPE.BLOB:
        if col.length_size not in (1, 2, 3, 4):
            return f"BLOB with a {col.length_size}-byte length"
        return _Plan(length_bytes=col.length_size, expr="{r}")
    if t == FIELD_TYPE.DATE:
        return _Plan("HB", expr="_date({a} | {b} << 16)")
    if t in (FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP2, FIELD_TYPE.TIME2):
        fsp = col.fsp
        if not isinstance(fsp, int) or not 0 <= fsp <= 6:
            return f"fractional precision {fsp!r}"
        base = {FIELD_TYPE.DATETIME2: 5, FIELD_TYPE.TIMESTAMP2: 4, FIELD_TYPE.TIME2: 3}[t]
        helper = {
            FIELD_TYPE.DATETIME2: "_datetime2",
            FIELD_TYPE.TIMESTAMP2: "_timestamp2",
            FIELD_TYPE.TIME2: "_time2",
        }[t]
        return _Plan(f"{base + FRACTION_BYTES.get(fsp, 0)}s", expr=f"{helper}({{a}}, {fsp})")
    if t == FIELD_TYPE.NEWDECIMAL:
        precision, scale = col.precision, col.decimals
        if not 0 < precision <= 65 or not 0 <= scale <= min(precision, 38):
            return f"DECIMAL({precision},{scale})"
        layout = DecimalLayout.of(precision, scale)
        return _Plan(f"{layout.size}s", expr=f"D{i}({{a}})", names=((f"D{i}", layout.value),))
    if t == FIELD_TYPE.ENUM:
        if col.size not in (1, 2):
            return f"ENUM of {col.size} bytes"
        if not col.enum_values:
            return "ENUM without its members"  # the library would return None: leave it to it
        return _Plan(_LE_CODES[col.size], expr=f"E{i}[{{a}}]", names=((f"E{i}", tuple(col.enum_values)),))
    if t == FIELD_TYPE.BIT:
        return _Plan(f"{col.bytes}s", expr=f'(int.from_bytes({{a}}, "big") & {(1 << col.bits) - 1})')
    return f"column type {t}"


def _skip_plan(i: int, col: Any) -> _Plan | str:
    """Read past a column we do not write (a generated one): only its width matters."""
    if col.type == FIELD_TYPE.SET:
        if not 1 <= col.size <= 8:
            return f"SET of {col.size} bytes"
        return _Plan(f"{col.size}s", expr="None")
    if col.type == FIELD_TYPE.ENUM and not col.enum_values:
        col = copy.copy(col)  # members do not matter for a value we skip; its width does
        col.enum_values = ["(unused)"]
    plan = _library_plan(i, col)
    if isinstance(plan, str):
        return plan
    return _Plan(plan.fmt, plan.length_bytes, "None")


def _column_plan(i: int, col: Any, fix: tuple[FixKind, Fix] | None, ours: Column) -> _Plan | str:
    """The plan for column ``i`` including the fix-up ``RowDecoder`` applies to it, or why not."""
    if ours.generated:
        return _skip_plan(i, col)
    kind = fix[0] if fix is not None else None
    if col.type == FIELD_TYPE.SET:
        # The library's value (a set, or None for no member, which RowDecoder restores to '') only
        # ever reaches the writer through decode._set; we produce its result directly.
        if fix is None or kind is not FixKind.SET or not col.set_values or not 1 <= col.size <= 8:
            return "SET without its members"
        code = _LE_CODES.get(col.size)
        mask = "{a}" if code else 'int.from_bytes({a}, "little")'
        members = list(col.set_values)
        same_order = members == list(ours.enum_values) and len(set(members)) == len(members)
        text = SetText(members, None if same_order else fix[1])
        return _Plan(code or f"{col.size}s", expr=f"J{i}({mask})", names=((f"J{i}", text),))
    if col.type == FIELD_TYPE.BIT and kind is not FixKind.BIT:
        return "BIT without the int fix-up"  # the library's value would be a '0101' string
    plan = _library_plan(i, col)
    if isinstance(plan, str) or fix is None:
        return plan
    if kind is FixKind.BIT and col.type == FIELD_TYPE.BIT:
        return plan  # decode._bit turns the library's '0101' into the int we already produce
    if kind is FixKind.PAD_BINARY and plan.length_bytes:
        # decode._pad_binary, fused: the binlog strips BINARY(N)'s trailing 0x00 bytes.
        width = binary_width(ours)
        return _Plan(length_bytes=plan.length_bytes, expr=f"{{r}}.ljust({width}, b'\\x00')")
    if kind is FixKind.JSON:
        return "JSON"  # MySQL's binary JSON: the library's decoder, then decode._json_value
    # Any other pairing: the library's value through the same fix function RowDecoder applies.
    function = fix[1]
    return _Plan(plan.fmt, plan.length_bytes, f"F{i}({plan.expr})", (*plan.names, (f"F{i}", function)))


# --------------------------------------------------------------------------- code generation


def _length_expr(size: int) -> str:
    parts = ["data[p]", "data[p + 1] << 8", "data[p + 2] << 16", "data[p + 3] << 24"]
    return " | ".join(parts[:size])


class _Writer:
    """Accumulates generated statements with indentation, and the names they refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self._counter = 0

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def unpacker(self, fmt: str) -> str:
        name = self.fresh("S")
        self.names[name] = struct.Struct("<" + fmt).unpack_from
        return name


def _read_fixed(w: _Writer, indent: int, plans: Sequence[tuple[int, _Plan]]) -> None:
    """One struct call for a run of fixed-width columns, then each column's expression."""
    fmt = "".join(plan.fmt for _, plan in plans)
    outs: list[list[str]] = [[w.fresh("x") for _ in range(plan.arity)] for _, plan in plans]
    targets = [name for group in outs for name in group]
    w.emit(indent, f"{', '.join(targets)}, = {w.unpacker(fmt)}(data, p)")
    w.emit(indent, f"p += {struct.calcsize('<' + fmt)}")
    for (i, plan), group in zip(plans, outs, strict=True):
        w.emit(indent, f"v{i} = " + plan.expr.format(a=group[0], b=group[-1]))


def _read_prefixed(w: _Writer, indent: int, i: int, plan: _Plan) -> None:
    w.emit(indent, f"n = {_length_expr(plan.length_bytes)}")
    w.emit(indent, f"p += {plan.length_bytes}")
    w.emit(indent, f"v{i} = " + plan.expr.format(r="data[p : p + n]"))
    w.emit(indent, "p += n")


def _image(w: _Writer, indent: int, plans: Sequence[_Plan], keep: Sequence[int], target: str) -> None:
    """Statements that read one full row image at ``data[p:]`` into the tuple ``target``."""
    null_bytes = (len(plans) + 7) // 8
    if null_bytes == 1:
        w.emit(indent, "nb = data[p]")
    else:
        w.emit(indent, f'nb = int.from_bytes(data[p : p + {null_bytes}], "little")')
    w.emit(indent, f"p += {null_bytes}")
    # No NULL in the image (the common case): runs of fixed-width columns are read in one go.
    w.emit(indent, "if not nb:")
    run: list[tuple[int, _Plan]] = []
    for i, plan in enumerate(plans):
        if plan.fmt:
            run.append((i, plan))
            continue
        if run:
            _read_fixed(w, indent + 1, run)
            run = []
        _read_prefixed(w, indent + 1, i, plan)
    if run:
        _read_fixed(w, indent + 1, run)
    # Some NULLs: a NULL column has no bytes in the image.
    w.emit(indent, "else:")
    for i, plan in enumerate(plans):
        w.emit(indent + 1, f"if nb >> {i} & 1:")
        w.emit(indent + 2, f"v{i} = None")
        w.emit(indent + 1, "else:")
        if plan.fmt:
            _read_fixed(w, indent + 2, [(i, plan)])
        else:
            _read_prefixed(w, indent + 2, i, plan)
    values = "".join(f"v{i}, " for i in keep)
    w.emit(indent, f"{target} = ({values})")


def _rows_function(name: str, plans: Sequence[_Plan], keep: Sequence[int], op: Op, w: _Writer) -> None:
    w.emit(0, f"def {name}(data, p, end):")
    w.emit(1, "out = []")
    w.emit(1, "add = out.append")
    w.emit(1, "while p < end:")
    if op is Op.UPDATE:
        _image(w, 2, plans, keep, "before")
        _image(w, 2, plans, keep, "after")
        w.emit(2, "add(RC(T, UPDATE, before, after))")
    else:
        _image(w, 2, plans, keep, "row")
        w.emit(2, "add(RC(T, INSERT, None, row))" if op is Op.INSERT else "add(RC(T, DELETE, row, None))")
    w.emit(1, "if p != end:")
    w.emit(2, "raise DecodeMismatch(f'row images end at {p}, the event at {end}')")
    w.emit(1, "return out")
    w.emit(0, "")


RowsFunction = Callable[[bytes, int, int], list[RowChange]]


@dataclass(frozen=True)
class TableCodec:
    """The compiled decoder of one table map's row events."""

    table: str
    width: int  # columns in the table map (and in every full row image)
    source: str  # the generated code, for tests and debugging
    insert: RowsFunction
    update: RowsFunction
    delete: RowsFunction

    def decode(self, op: Op, data: bytes, start: int, end: int) -> list[RowChange]:
        """The row changes of one event whose row images lie in ``data[start:end]``.

        Raises (DecodeMismatch, struct.error, IndexError, ...) when the bytes do not fit the table;
        nothing is decoded then, and the caller hands the event to the library.
        """
        if op is Op.INSERT:
            return self.insert(data, start, end)
        if op is Op.UPDATE:
            return self.update(data, start, end)
        return self.delete(data, start, end)


def compile_codec(table: str, columns: Sequence[Any], decoder: RowDecoder) -> TableCodec | str:
    """Generate and compile the row decoder of a table map, or return why the library must decode.

    ``columns`` are the library's column objects of the TABLE_MAP event, after
    ``stream.fill_column_metadata``; ``decoder`` is the table's RowDecoder (our inspection).
    """
    if len(columns) != decoder.width:
        return f"{len(columns)} columns in the table map, {decoder.width} in our inspection"
    writable = [c.ordinal for c in decoder.schema.writable_columns]
    fix_by_ordinal = {writable[i]: planned for i, planned in decoder.fix_plan.items()}
    plans: list[_Plan] = []
    for i, col in enumerate(columns):
        ours = decoder.schema.columns[i]
        plan = _column_plan(i, col, fix_by_ordinal.get(i), ours)
        if isinstance(plan, str):
            return f"column {ours.name}: {plan}"
        plans.append(plan)
    w = _Writer()
    for plan in plans:
        w.names.update(plan.names)
    for op in (Op.INSERT, Op.UPDATE, Op.DELETE):
        _rows_function(op.name.lower(), plans, writable, op, w)
    source = "\n".join(w.lines)
    namespace: dict[str, Any] = {
        **w.names,
        "RC": RowChange,
        "T": table,
        "INSERT": Op.INSERT,
        "UPDATE": Op.UPDATE,
        "DELETE": Op.DELETE,
        "DecodeMismatch": DecodeMismatch,
        "_date": date_value,
        "_datetime2": datetime2_value,
        "_timestamp2": timestamp2_value,
        "_time2": time2_value,
    }
    exec(compile(source, f"<rowcodec {table}>", "exec"), namespace)  # our own generated code
    return TableCodec(
        table, len(columns), source, namespace["insert"], namespace["update"], namespace["delete"]
    )
