"""Lossless JSON encoding of database values.

JSON has no int64, decimal, date or bytes, and JavaScript numbers lose integers past 2**53. Every value a driver
returns goes through :func:`encode_value`, which maps it to something JSON can carry without losing information:

=====================  ==========================================================
Python value           JSON
=====================  ==========================================================
None, str              null, string
bool                   true / false
int                    number while ``|n| <= 2**53 - 1``, else a decimal string
float                  number; NaN and infinities as ``"NaN"``, ``"Infinity"``
Decimal                string of its digits, never in scientific notation (``"0.0000001"``, ``"NaN"``)
orjson.Fragment        embedded as is: JSON the database wrote (PostgreSQL's json, jsonb), numbers exact
datetime, date, time   ISO 8601 string (offset kept when the value has one)
timedelta              ISO 8601 duration string, e.g. ``"P1DT2H3M4.5S"``
bytes                  base64 string (standard alphabet, padded)
UUID                   canonical string
list, tuple            array, each element encoded by these rules
dict                   object, each value encoded by these rules
anything else          ``str(value)`` (IP addresses, ranges, money, ...)
=====================  ==========================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["MAX_SAFE_INTEGER", "encode_value", "iso_duration"]

MAX_SAFE_INTEGER = 2**53 - 1


def _int(value: int) -> int | str:
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def iso_duration(value: dt.timedelta) -> str:
    """Format a timedelta as an ISO 8601 duration (``P1DT2H3M4.5S``, ``-PT1S``, ``PT0S``)."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days, seconds, micro = value.days, value.seconds, value.microseconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = sign + "P" + (f"{days}D" if days else "")
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if secs or micro or not (days or hours or minutes):
        clock += f"{secs}.{micro:06d}".rstrip("0").rstrip(".") + "S" if micro else f"{secs}S"
    return text + ("T" + clock if clock else "")


def _time(value: dt.time) -> str:
    return value.isoformat()


def _datetime(value: dt.datetime) -> str:
    return value.isoformat()


def _decimal(value: Decimal) -> str:
    # str() writes 1E-7 for Decimal("0.0000001") and 1E+3 for a decimal with a positive exponent; "f" keeps the
    # digits as the database wrote them (and "NaN", "Infinity", "-Infinity" as they are).
    return format(value, "f")


def _list(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [encode_value(item) for item in value]


def _dict(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(key): encode_value(item) for key, item in value.items()}


def _identity(value: Any) -> Any:
    return value


# Exact-type dispatch: a dict lookup per value is far cheaper than an isinstance chain.
_ENCODERS: dict[type, Callable[[Any], Any]] = {
    type(None): _identity,
    str: _identity,
    bool: _identity,
    int: _int,
    float: _float,
    Decimal: _decimal,
    orjson.Fragment: _identity,
    dt.datetime: _datetime,
    dt.date: dt.date.isoformat,
    dt.time: _time,
    dt.timedelta: iso_duration,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    uuid.UUID: str,
    list: _list,
    tuple: _list,
    dict: _dict,
}

# Subclasses (a driver's own int or str type, pendulum datetimes, ...) are matched by isinstance, in this order.
_FALLBACKS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (bool, _identity),
    (int, _int),
    (float, _float),
    (str, str),
    (Decimal, _decimal),
    (dt.datetime, _datetime),
    (dt.date, dt.date.isoformat),
    (dt.time, _time),
    (dt.timedelta, iso_duration),
    ((bytes, bytearray, memoryview), _bytes),
    (uuid.UUID, str),
    ((list, tuple), _list),
    (dict, _dict),
)


def encode_value(value: Any) -> Any:
    """Map one database value to a JSON-safe value, losing nothing (see the module table)."""
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    for kind, fallback in _FALLBACKS:
        if isinstance(value, kind):
            return fallback(value)
    return str(value)
