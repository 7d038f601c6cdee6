"""Unit tests for tablemover.keycodec: lossless JSON round trips of (composite) unique-key values.

The checkpoint's ``progress`` column stores each table's last copied key through ``json.dumps``; a
value that comes back even slightly different (a dropped trailing zero, a rounded float, a lost
microsecond) would make the copier resume at the wrong place.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.keycodec import KeyValue, decode_key, decode_value, encode_key, encode_value

FAST = settings(max_examples=150, deadline=None)


def through_json(value: KeyValue) -> KeyValue:
    return decode_value(json.loads(json.dumps(encode_value(value))))


def identical(a: Any, b: Any) -> bool:
    """Equal *and* indistinguishable: same type, same digits, same float bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, Decimal):
        return str(a) == str(b) and a.as_tuple() == b.as_tuple()
    if isinstance(a, dt.datetime):
        return bool(a == b) and a.isoformat() == b.isoformat()
    return bool(a == b)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        2**64 - 1,
        -(2**63),
        2**63 - 1,
        "",
        "orders",
        "näive ☃ 𝄞 😀",  # utf8mb4, astral plane included
        "\x00tab\tnew\nline",
        b"",
        b"\x00",
        b"\x00\x01\xff\x00",
        bytes(range(256)),
        Decimal("1.50"),
        Decimal("0.000"),
        Decimal("-0"),
        Decimal("-12345678901234567890.123456789012345678"),
        Decimal("1E+3"),
        0.0,
        -0.0,
        1.5,
        0.1,
        5e-324,  # smallest subnormal
        2.2250738585072009e-308,  # largest subnormal
        1.7976931348623157e308,
        -math.inf,
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.datetime(1, 1, 1, 0, 0, 0, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.date(2024, 2, 29),
        dt.date(1, 1, 1),
        dt.timedelta(0),
        dt.timedelta(hours=838, minutes=59, seconds=59),
        dt.timedelta(hours=-838, minutes=-59, seconds=-59),
        dt.timedelta(microseconds=-1),
        -dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=400500),
        dt.timedelta(days=-1, seconds=86399, microseconds=999999),
        None,
    ],
)
def test_round_trip_examples(value: KeyValue) -> None:
    assert identical(through_json(value), value), (value, encode_value(value))


def test_decimal_keeps_trailing_zeros() -> None:
    out = through_json(Decimal("1.50"))
    assert isinstance(out, Decimal)
    assert str(out) == "1.50"
    assert encode_value(Decimal("1.50")) == {"dec": "1.50"}


def test_negative_zero_float_keeps_its_sign() -> None:
    out = through_json(-0.0)
    assert isinstance(out, float)
    assert math.copysign(1.0, out) == -1.0


def test_datetime_keeps_microseconds() -> None:
    out = through_json(dt.datetime(2024, 1, 1, 0, 0, 0, 1))
    assert isinstance(out, dt.datetime)
    assert out.microsecond == 1


def test_date_stays_a_date_not_a_datetime() -> None:
    out = through_json(dt.date(2024, 5, 6))
    assert type(out) is dt.date
    assert encode_value(dt.date(2024, 5, 6)) == {"date": "2024-05-06"}
    assert encode_value(dt.datetime(2024, 5, 6)) == {"dt": "2024-05-06T00:00:00"}


def test_ints_stay_plain_json_numbers() -> None:
    assert json.dumps(encode_value(2**64 - 1)) == "18446744073709551615"
    assert json.dumps(encode_value(-(2**63))) == "-9223372036854775808"


def test_strings_and_none_stay_native() -> None:
    assert encode_value("x") == "x"
    assert encode_value(None) is None


def test_bytearray_encodes_as_bytes() -> None:
    raw: Any = bytearray(b"\x00a\x00")  # the driver may hand over a bytearray; not in KeyValue
    assert through_json(raw) == b"\x00a\x00"
    assert type(through_json(raw)) is bytes


def test_timedelta_encoding_is_total_microseconds() -> None:
    assert encode_value(dt.timedelta(seconds=-1, microseconds=500000)) == {"time_us": -500000}
    assert encode_value(dt.timedelta(days=1, microseconds=1)) == {"time_us": 86_400_000_001}


# --------------------------------------------------------------------------- composite keys


def test_composite_key_round_trip() -> None:
    key: tuple[KeyValue, ...] = (
        7,
        "ä",
        b"\x00\x01",
        Decimal("2.10"),
        -0.0,
        dt.datetime(2020, 2, 2, 2, 2, 2, 20),
        dt.date(2020, 2, 2),
        dt.timedelta(microseconds=-5),
        None,
    )
    encoded = encode_key(key)
    assert isinstance(encoded, list)
    out = decode_key(json.loads(json.dumps(encoded)))
    assert out is not None
    assert len(out) == len(key)
    assert all(identical(a, b) for a, b in zip(out, key, strict=True))
    assert isinstance(out, tuple)


def test_none_key() -> None:
    assert encode_key(None) is None
    assert decode_key(None) is None


def test_empty_key() -> None:
    assert encode_key(()) == []
    assert decode_key([]) == ()


# --------------------------------------------------------------------------- errors


class _Odd:
    pass


@pytest.mark.parametrize(
    "value",
    [True, False, object(), _Odd(), dt.time(1, 2, 3), complex(1, 2), [1], (1,), {"a": 1}, {1}],
)
def test_encode_rejects_unsupported_types(value: Any) -> None:
    with pytest.raises(TypeError):
        encode_value(value)


def test_encode_key_rejects_unsupported_member() -> None:
    with pytest.raises(TypeError):
        encode_key([1, True])


@pytest.mark.parametrize(
    "obj",
    [
        True,
        False,
        1.5,
        [],
        [1],
        {},
        {"nope": "1"},
        {"DEC": "1"},
        {"dec": "1", "b64": "AA=="},
        {"dt": "2024-01-01", "extra": 1},
    ],
)
def test_decode_rejects_bad_shapes_and_tags(obj: Any) -> None:
    with pytest.raises(ValueError, match="not an encoded key value"):
        decode_value(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"dt": "yesterday"},
        {"date": "2024-13-01"},
        {"time_us": "lots"},
        {"float": "zz"},
        {"b64": "!!!"},
        {"dec": "one point five"},
    ],
    ids=["dt", "date", "time_us", "float", "b64", "dec"],
)
def test_decode_rejects_malformed_payloads_with_value_error(obj: Any) -> None:
    """A corrupt checkpoint payload is reported as ValueError like any other undecodable value."""
    with pytest.raises(ValueError):
        decode_value(obj)


# --------------------------------------------------------------------------- properties

key_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.floats(allow_nan=False),
    st.datetimes(),
    st.dates(),
    st.timedeltas(),
)


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
@FAST
def test_int_property(value: int) -> None:
    assert identical(through_json(value), value)


@given(st.text())
@FAST
def test_str_property(value: str) -> None:
    assert identical(through_json(value), value)


@given(st.binary())
@FAST
def test_bytes_property(value: bytes) -> None:
    assert identical(through_json(value), value)


@given(st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(places=3, allow_nan=False))
@FAST
def test_decimal_property(value: Decimal) -> None:
    assert identical(through_json(value), value)


@given(st.floats(allow_nan=False))
@FAST
def test_float_property(value: float) -> None:
    assert identical(through_json(value), value)


@given(st.datetimes())
@FAST
def test_datetime_property(value: dt.datetime) -> None:
    assert identical(through_json(value), value)


@given(st.dates())
@FAST
def test_date_property(value: dt.date) -> None:
    assert identical(through_json(value), value)


@given(st.timedeltas())
@FAST
def test_timedelta_property(value: dt.timedelta) -> None:
    assert identical(through_json(value), value)


@given(st.lists(key_values, min_size=1, max_size=4))
@FAST
def test_composite_key_property(values: list[KeyValue]) -> None:
    out = decode_key(json.loads(json.dumps(encode_key(values))))
    assert out is not None
    assert len(out) == len(values)
    for a, b in zip(out, values, strict=True):
        assert identical(a, b), (a, b)


def test_character_keys_read_as_bytes_survive_the_checkpoint() -> None:
    # The copier reads character key columns as their stored bytes (sql.Col.read); the checkpoint
    # keeps them exactly, whatever the charset (latin1's five bytes cp1252 lacks, UTF-16, a NUL).
    key = (b"\x81\x8d\x8f\x90\x9d", "é".encode("utf-16-be"), b"a\x00 ", 7)
    stored = json.loads(json.dumps(encode_key(key)))
    assert decode_key(stored) == key
    # A key a release before this one stored as text still reads back as text (sql.Col.marker
    # converts it from the connection's utf8mb4 just the same).
    assert decode_key(["café", 1]) == ("café", 1)
