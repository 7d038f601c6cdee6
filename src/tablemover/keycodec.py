"""Lossless JSON encoding of unique-key values for the checkpoint's ``progress`` column.

JSON has no bytes, decimals, dates or 64-bit-safe numbers for every reader, so each non-native
value is tagged: ``{"dec": "1.50"}``, ``{"b64": "..."}``, ``{"dt": "2024-01-01T00:00:00.123456"}``.
Ints stay JSON numbers (Python's json is exact for unsigned 64-bit values).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

KeyValue = int | str | bytes | Decimal | float | dt.datetime | dt.date | dt.timedelta | None


def encode_value(value: KeyValue) -> Any:
    """One key value to a JSON-compatible object."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("boolean key values are not produced by the driver")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if isinstance(value, float):
        return {"float": value.hex()}
    if isinstance(value, bytes | bytearray):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.timedelta):
        # TIME columns arrive as timedelta; microseconds keep fractional seconds exact.
        return {"time_us": (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds}
    raise TypeError(f"cannot encode key value of type {type(value).__name__}")


def decode_value(obj: Any) -> KeyValue:
    """Inverse of :func:`encode_value`."""
    if obj is None or (isinstance(obj, str | int) and not isinstance(obj, bool)):
        return obj
    if isinstance(obj, dict) and len(obj) == 1:
        ((tag, raw),) = obj.items()
        if tag == "dec":
            try:
                return Decimal(raw)
            except InvalidOperation as exc:
                raise ValueError(f"not a decimal key value: {raw!r}") from exc
        if tag == "float":
            return float.fromhex(raw)
        if tag == "b64":
            try:
                return base64.b64decode(raw, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"not a base64 key value: {raw!r}") from exc
        if tag == "dt":
            return dt.datetime.fromisoformat(raw)
        if tag == "date":
            return dt.date.fromisoformat(raw)
        if tag == "time_us":
            return dt.timedelta(microseconds=int(raw))
    raise ValueError(f"not an encoded key value: {obj!r}")


def encode_key(values: Sequence[KeyValue] | None) -> list[Any] | None:
    """A whole (possibly composite) key."""
    return None if values is None else [encode_value(v) for v in values]


def decode_key(obj: Sequence[Any] | None) -> tuple[KeyValue, ...] | None:
    """Inverse of :func:`encode_key`."""
    return None if obj is None else tuple(decode_value(v) for v in obj)
