"""PolyScale's answers: rows as objects or arrays of lossless JSON values (``shape: "rows"``), the full shape with
columns, row count, insert id and truncation (``shape: "full"``), one result per statement for a batch, and the
error shape ``{statusCode, code, error, message}``."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from itertools import repeat
from typing import Any, Literal

import orjson

from ... import errors
from ...encoding import MAX_SAFE_INTEGER, encode_value
from ...engine.rows import RowPieces, answer, too_large
from ...engine.work import Body, Limits, ResultInfo, Work

__all__ = ["PolyScaleQuery", "PolyScaleResult", "column_converters", "error_body"]


# Values orjson writes exactly as our type table says, so no Python code has to touch them.
_NATIVE = frozenset({type(None), str, bool, dt.datetime, dt.date, uuid.UUID, orjson.Fragment})
_NUMBERS = frozenset({type(None), int, bool, float})


@dataclass(frozen=True)
class PolyScaleQuery:
    """A parsed PolyScale request: the work, and the shape its answer takes."""

    work: Work
    shape: Literal["rows", "full"] = "rows"
    row_mode: Literal["object", "array"] = "object"
    batch: bool = False  # the body had "batch": answer {"results": [...]}
    cache: bool = True  # false: the body asked to skip the result cache ("cache": false)


def column_converters(batch: list[Any]) -> list[tuple[int, Callable[[Any], Any]]]:
    """(column index, encoder) for the columns of this batch whose values need Python's help to become lossless
    JSON. A column is looked at whole (SQLite's columns may mix types from row to row): strings, booleans, dates,
    timestamps and UUIDs go to orjson as they are, and so do integers within 2^53 and finite floats; anything
    else (a larger integer, NaN, a decimal, bytes, JSON, an array) goes through :func:`encode_value`."""
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index, column in enumerate(zip(*batch, strict=True)):  # one transposition in C, not a list per column
        kinds = set(map(type, column))
        if kinds <= _NATIVE:
            continue
        if kinds <= _NUMBERS:  # SQLite's NUMERIC columns mix integers and floats
            numbers = [value for value in column if value is not None] if type(None) in kinds else column
            integers = numbers if float not in kinds else [value for value in numbers if type(value) is not float]
            if (float not in kinds or all(map(math.isfinite, numbers))) and (
                not integers or (min(integers) >= -MAX_SAFE_INTEGER and max(integers) <= MAX_SAFE_INTEGER)
            ):
                continue
        converters.append((index, encode_value))
    return converters


def _shape(row: Any, converters: list[tuple[int, Callable[[Any], Any]]], columns: list[str],
           as_objects: bool) -> Any:
    if converters:
        row = list(row)
        for index, encode in converters:
            row[index] = encode(row[index])
    return dict(zip(columns, row, strict=False)) if as_objects else row


class PolyScaleResult:
    """The result builder of PolyScale's format, a batch at a time within the caps."""

    def __init__(self, query: PolyScaleQuery, limits: Limits) -> None:
        self.query, self.limits = query, limits
        self.rows = RowPieces(limits)
        self._as_objects = query.row_mode == "object"
        self._full = query.shape == "full"
        self._columns: list[str] = []
        self._types: list[str | None] | None = None
        self._parts: list[list[bytes]] = []
        self._info: ResultInfo | None = None

    def begin(self, index: int, result: ResultInfo) -> None:
        self._info = result
        self._columns = result.names
        self._types = None

    def add(self, rows: list[Any]) -> bool:
        columns = self._columns
        if self._full and self._types is None and self._info is not None:
            self._types = self._info.type_names(rows)  # only the full shape names the types (SQLite's from rows)
        converters = column_converters(rows)
        if converters:
            shaped = [_shape(row, converters, columns, self._as_objects) for row in rows]
        elif self._as_objects:
            # A row has as many values as the result has columns; map keeps the loop in C (a third faster than a
            # comprehension over zip(..., strict=True)).
            shaped = list(map(dict, map(zip, repeat(columns), rows)))
        else:
            shaped = rows  # tuples or lists: orjson writes both as arrays
        return self.rows.add(shaped)

    def end(self, result: ResultInfo) -> None:
        rows = self.rows
        if not self._full:
            if rows.truncated:
                raise too_large(self.limits, 'add a LIMIT, or ask for "shape": "full" to receive the first rows '
                                             "marked truncated")
            self._parts.append([b"[", *rows.take(), b"]"])
            return
        if rows.truncated and self.query.batch:
            raise too_large(self.limits, "a batch's answer is never truncated; add a LIMIT")
        if self._types is None:
            self._types = result.type_names([])
        columns = self._columns
        row_count = rows.count if columns else result.row_count()
        self._parts.append([
            b'{"columns":',
            orjson.dumps([{"name": name, "type": kind} for name, kind in zip(columns, self._types, strict=True)]),
            b',"rows":[', *rows.take(),
            b'],"rowCount":', orjson.dumps(row_count),
            b',"lastInsertId":', orjson.dumps(encode_value(result.last_insert_id())),
            b',"truncated":', b"true" if rows.truncated else b"false",
            b"}",
        ])

    def finish(self) -> Body:
        statements, self._parts = self._parts, []
        return answer(statements, self.query.batch, self.rows)


def error_body(error: errors.SQLHTTPError) -> bytes:
    """PolyScale's error shape; a batch's failure also names the statement (its index) that failed."""
    body: dict[str, Any] = {
        "statusCode": error.status,
        "code": error.code,
        "error": HTTPStatus(error.status).phrase,
        "message": error.message,
    }
    body.update(error.extra)  # what PolyScale's own parser attached, such as the field at fault
    if error.database_code is not None or error.database_message is not None:
        body["database"] = {"code": error.database_code, "message": error.database_message}
    if isinstance(error, errors.ResultTooLarge) and error.max_rows is not None:
        body["maxRows"], body["maxBytes"] = error.max_rows, error.max_bytes
    if error.statement is not None:
        body["statement"] = error.statement
    return orjson.dumps(body)
