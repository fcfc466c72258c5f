"""Hrana's typed values, both ways, and its statement results.

SQLite values go out as ``{"type": ..., ...}`` objects: integers as strings (a JavaScript number cannot hold 64
bits), floats as JSON numbers (an infinity as ``1e999``, which JSON parsers read back as one), text as it is, blobs
in base64; a TEXT value that is not UTF-8 goes as the blob of its bytes. Arguments come back the same way.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

import orjson

from ... import errors
from ...engine.rows import RowPieces, too_large
from ...engine.work import ResultInfo

__all__ = ["CursorStep", "StatementResult", "argument", "encode_row"]

_NULL = {"type": "null"}
_POSITIVE_INFINITY = orjson.Fragment(b"1e999")
_NEGATIVE_INFINITY = orjson.Fragment(b"-1e999")
_INT64 = (-(2**63), 2**63)
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _float(value: float) -> dict[str, Any]:
    if math.isfinite(value):
        return {"type": "float", "value": value}
    return {"type": "float", "value": _POSITIVE_INFINITY if value > 0 else _NEGATIVE_INFINITY}


def _blob(value: bytes) -> dict[str, Any]:
    return {"type": "blob", "base64": base64.b64encode(value).rstrip(b"=").decode()}


_ENCODERS: dict[type, Any] = {
    int: lambda value: {"type": "integer", "value": str(value)},
    float: _float,
    str: lambda value: {"type": "text", "value": value},
    bytes: _blob,
}


def encode_row(row: tuple[Any, ...]) -> list[dict[str, Any]]:
    encoders = _ENCODERS
    return [_NULL if value is None else encoders[type(value)](value) for value in row]


def argument(value: Any, where: str) -> Any:
    """A Hrana value as the Python value sqlite3 binds, or BindingError naming what is wrong with it."""
    if not isinstance(value, dict):
        raise errors.BindingError(f"{where}: a value is an object with a 'type'")
    kind = value.get("type")
    if kind == "null":
        return None
    if kind == "integer":
        raw = value.get("value")
        if (isinstance(raw, str) and _INTEGER.fullmatch(raw)) or type(raw) is int:
            number = int(raw)
            if _INT64[0] <= number < _INT64[1]:
                return number
        raise errors.BindingError(f"{where}: an integer's value is a string of a 64-bit integer")
    if kind == "float":
        raw = value.get("value")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise errors.BindingError(f"{where}: a float's value is a number")
    if kind == "text":
        raw = value.get("value")
        if isinstance(raw, str):
            return raw
        raise errors.BindingError(f"{where}: a text's value is a string")
    if kind == "blob":
        raw = value.get("base64")
        if isinstance(raw, str):
            try:
                return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
            except (binascii.Error, ValueError):
                pass
        raise errors.BindingError(f"{where}: a blob's base64 is not valid base64")
    raise errors.BindingError(f"{where}: unknown value type {kind!r} (null, integer, float, text or blob)")


class StatementResult:
    """A ResultBuilder for one statement: ``cols``, ``rows`` (within the answer's caps), the counts."""

    __slots__ = ("body", "cols", "rows", "started", "want_rows")

    def __init__(self, rows: RowPieces, want_rows: bool) -> None:
        self.rows = rows
        self.want_rows = want_rows
        self.cols = b"[]"
        self.body = b""
        self.started = (rows.total, rows.size)  # what the answer held before this statement

    def begin(self, index: int, result: ResultInfo) -> None:
        self.cols = orjson.dumps([{"name": name, "decltype": None} for name in result.names])

    def add(self, rows: list[Any]) -> bool:
        if not self.want_rows:
            return True
        return self.rows.add([encode_row(row) for row in rows])

    def end(self, result: ResultInfo) -> None:
        rows = self.rows
        pieces = rows.take()
        if rows.truncated:
            # This statement's rows are not in the answer: the next statement may still fit what is left.
            rows.truncated = False
            rows.total, rows.size = self.started
            raise too_large(rows.limits, "add a LIMIT, or read the rows in pages")
        count = result.row_count() or 0
        rowid = result.last_insert_id()
        self.body = b"".join((
            b'{"cols":', self.cols, b',"rows":[', *pieces, b'],"affected_row_count":', str(count).encode(),
            b',"last_insert_rowid":', b"null" if rowid is None else b'"%d"' % rowid, b"}",
        ))

    def finish(self) -> bytes:
        return self.body


class CursorStep:
    """A ResultBuilder for one step of a cursor: its ``step_begin``, ``row`` and ``step_end`` lines, within the
    answer's caps."""

    __slots__ = ("body", "index", "lines", "rows", "want_rows")

    def __init__(self, rows: RowPieces, index: int) -> None:
        self.rows = rows  # only its counts and limits: the lines are the rows
        self.index = index
        self.want_rows = True
        self.lines: list[bytes] = []
        self.body = b""

    def begin(self, index: int, result: ResultInfo) -> None:
        cols = [{"name": name, "decltype": None} for name in result.names]
        self.lines.append(orjson.dumps({"type": "step_begin", "step": self.index, "cols": cols}))

    def add(self, rows: list[Any]) -> bool:
        if not self.want_rows:
            return True
        counts, limits = self.rows, self.rows.limits
        for row in rows:
            line = b'{"type":"row","row":' + orjson.dumps(encode_row(row)) + b"}"
            if counts.total >= limits.max_rows or counts.size + len(line) + 1 > limits.max_bytes:
                raise too_large(limits, "add a LIMIT, or read the rows in pages")
            counts.total += 1
            counts.size += len(line) + 1
            self.lines.append(line)
        return True

    def end(self, result: ResultInfo) -> None:
        rowid = result.last_insert_id()
        self.lines.append(b'{"type":"step_end","affected_row_count":%d,"last_insert_rowid":%s}' % (
            result.row_count() or 0, b"null" if rowid is None else b'"%d"' % rowid))

    def finish(self) -> bytes:
        return b""
