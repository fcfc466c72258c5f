"""Running one statement: bind, check out a connection, prepare its session, execute, stream and encode the rows
within the caps, and leave nothing behind.

Connections run in autocommit mode, so a single statement commits on success and undoes itself on failure without
the extra BEGIN/COMMIT round trips. If the statement itself opened a transaction (``BEGIN``), it is rolled back
before the connection goes back to the pool: the client has no later request in which to finish it.

Every checkout makes sure of the statement timeout and the read-only mode of the database session, so nothing a
previous request set (``SET statement_timeout = 0``) outlives it (see each dialect's ``prepare_session``).

Rows are read in batches and encoded as they come (:class:`Collector`, shared with the async path); reading stops
at ``max_rows`` rows or ``max_response_bytes`` bytes, so an oversized result is never held whole.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from sqlalchemy.engine import Dialect

from . import errors
from .bindings import compile_sql
from .dialects import DialectSupport, dialect_support
from .dialects.base import Session
from .encoding import MAX_SAFE_INTEGER, encode_value
from .engines import EngineCache, Lease
from .options import Options, ResolvedTarget
from .watchdog import Watchdog

__all__ = ["Body", "Collector", "Limits", "Login", "Query", "Runner", "document"]

BATCH = 500  # rows fetched and encoded at a time
_ONE_PIECE = 64 * 1024  # answers smaller than this are sent as one byte string

Body = bytes | list[bytes]  # an answer: one byte string, or pieces to send one after the other


@dataclass(frozen=True)
class Query:
    target: ResolvedTarget
    username: str
    password: str
    database: str
    sql: str
    bindings: list[Any] | dict[str, Any] | None
    shape: Literal["rows", "full"] = "rows"
    row_mode: Literal["object", "array"] = "object"
    timeout: float | None = None  # the client's own, lower than the target's


@dataclass(frozen=True)
class Login:
    """The database login a query runs with: the client's own, or the one its target's URL holds."""

    username: str
    password: str = field(repr=False)
    database: str


@dataclass(frozen=True)
class Limits:
    timeout: float
    max_rows: int
    max_bytes: int
    read_only: bool


@dataclass
class _Rows:
    pieces: list[bytes]
    count: int
    size: int
    truncated: bool


# Values orjson writes exactly as our type table says, so no Python code has to touch them.
_NATIVE = frozenset({type(None), str, bool, dt.datetime, dt.date, uuid.UUID})
_NUMBERS = frozenset({type(None), int, bool, float})


def column_converters(batch: list[Any], width: int) -> list[tuple[int, Callable[[Any], Any]]]:
    """(column index, encoder) for the columns of this batch whose values need Python's help to become lossless
    JSON. A column is looked at whole (SQLite's columns may mix types from row to row): strings, booleans, dates,
    timestamps and UUIDs go to orjson as they are, and so do integers within 2^53 and finite floats; anything
    else (a larger integer, NaN, a decimal, bytes, JSON, an array) goes through :func:`encode_value`."""
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index in range(width):
        column = [row[index] for row in batch]
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
    return dict(zip(columns, row, strict=True)) if as_objects else row


class Runner:
    """Executes queries against the targets of one middleware instance."""

    def __init__(self, engines: EngineCache, options: Options) -> None:
        self._engines = engines
        targets: Mapping[str, ResolvedTarget] = options.targets
        # The quoting rules of each target's dialect, for identifier bindings; no connection needed. Built with
        # the qmark paramstyle so quoting does not double '%' (compile_sql does that once, for the whole text).
        self._dialects: dict[str, Dialect] = {
            name: t.url.get_dialect()(paramstyle="qmark") for name, t in targets.items()  # type: ignore[call-arg]
        }
        self.limits = {
            name: Limits(
                timeout=t.statement_timeout or options.statement_timeout,
                max_rows=t.max_rows or options.max_rows,
                max_bytes=t.max_response_bytes or options.max_response_bytes,
                read_only=t.read_only,
            )
            for name, t in targets.items()
        }
        self._watchdog = Watchdog()
        self._busy_timeout = options.connect_timeout  # sqlite3's timeout, as the engines connect with it

    def compile(self, query: Query) -> tuple[DialectSupport, str, list[Any]]:
        """The query's dialect, and its SQL and parameters in the driver's paramstyle."""
        target = query.target
        support = dialect_support(target.family)
        sql, params = compile_sql(
            query.sql,
            query.bindings,
            dialect=target.family,  # type: ignore[arg-type]
            paramstyle=support.paramstyle,  # type: ignore[arg-type]
            quote_identifier=self._dialects[target.name].identifier_preparer.quote_identifier,
        )
        return support, sql, params

    def session(self, query: Query) -> Session:
        """The timeout and read-only mode this query runs under; its deadline starts now."""
        limits = self.limits[query.target.name]
        timeout = min(limits.timeout, query.timeout) if query.timeout else limits.timeout
        return Session(timeout=timeout, read_only=limits.read_only, deadline=time.monotonic() + timeout,
                       target_timeout=limits.timeout, busy_timeout=self._busy_timeout)

    def run(self, query: Query, login: Login, *, budget: float | None = None) -> Body:
        """The JSON answer to ``query``, run with the database ``login``, or an :class:`errors.SQLHTTPError`.

        With a ``budget`` (SQLite on the event loop), a statement that runs longer, or finds the database locked,
        is interrupted, undone by SQLite, and :class:`errors.RunElsewhere` raised: run it again on a thread.
        """
        support, sql, params = self.compile(query)
        with self._engines.connection(query.target, login.username, login.password, login.database) as lease:
            return self._execute(lease, support, sql, params, query, budget)

    def _execute(self, lease: Lease, support: DialectSupport, sql: str, params: list[Any], query: Query,
                 budget: float | None = None) -> Body:
        connection = lease.dbapi_connection
        engine = lease.entry.engine
        dbapi_error: type[BaseException] = engine.dialect.loaded_dbapi.Error
        limits = self.limits[query.target.name]
        session = self.session(query)
        statement_deadline = session.deadline
        if budget is not None:
            session = replace(session, inline=True, deadline=min(statement_deadline, time.monotonic() + budget))
        timeout = session.timeout
        watch: int | None = None
        cursor: Any = None
        try:
            support.prepare_session(connection, session, engine.dialect)
            if support.needs_watchdog(engine.dialect):
                watch = self._watchdog.arm(session.deadline + support.watchdog_grace,
                                           lambda: support.kill_query(connection, engine))
            cursor, batches = support.execute(connection, sql, params, BATCH)
            collector = Collector(support, cursor, query, limits)
            for batch in batches:
                if not collector.add(batch):
                    support.abandon(lease, cursor, batches)
                    break
            body = collector.document()
        except dbapi_error as exc:
            if session.inline and (support.is_busy(exc) or (
                    support.is_timeout(exc) and time.monotonic() < statement_deadline)):
                self._leave_no_transaction(lease, support)
                raise errors.RunElsewhere from None
            if engine.dialect.is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                lease.broken = True
                raise errors.DatabaseUnavailable(
                    "the connection to the database was lost while running the statement; "
                    "it may or may not have been applied",
                ) from None
            self._leave_no_transaction(lease, support)
            raise support.translate_error(exc, timeout) from None
        finally:
            if watch is not None:
                self._watchdog.disarm(watch)
            self._close(lease, support, session, cursor, dbapi_error)
        self._leave_no_transaction(lease, support)
        return body

    @staticmethod
    def _close(lease: Lease, support: DialectSupport, session: Session, cursor: Any,
               dbapi_error: type[BaseException]) -> None:
        try:
            support.end_session(lease.dbapi_connection, session)
            if cursor is not None and not lease.broken:
                cursor.close()
        except dbapi_error:
            lease.broken = True

    @staticmethod
    def _leave_no_transaction(lease: Lease, support: DialectSupport) -> None:
        if lease.broken:
            return
        connection = lease.dbapi_connection
        try:
            if support.in_transaction(connection):
                connection.rollback()
        except Exception:
            lease.broken = True


class Collector:
    """Encodes a result a batch at a time within the caps; the same for every driver, sync or async."""

    def __init__(self, support: DialectSupport, cursor: Any, query: Query, limits: Limits) -> None:
        self.support, self.cursor, self.query, self.limits = support, cursor, query, limits
        self.rows = _Rows([], 0, 0, False)
        self.columns: list[str] | None = None
        self.types: list[str | None] = []
        self._as_objects = query.row_mode == "object"

    def add(self, batch: list[Any]) -> bool:
        """Take a batch of rows. False: a cap was reached, read no further."""
        if self.columns is None:
            self.columns = [column[0] for column in self.cursor.description]
            if self.query.shape == "full":  # only the full shape names the types
                self.types = self.support.column_types(self.cursor, batch)
        converters, columns = column_converters(batch, len(self.columns)), self.columns
        if converters:
            shaped = [_shape(row, converters, columns, self._as_objects) for row in batch]
        elif self._as_objects:
            shaped = [dict(zip(columns, row, strict=True)) for row in batch]
        else:
            shaped = batch  # tuples or lists: orjson writes both as arrays
        rows, limits = self.rows, self.limits
        # One orjson call for the whole batch while it fits; row by row only to find where a cap cuts it. Each
        # piece carries the comma that separates it from the one before.
        comma = b"," if rows.pieces else b""
        chunk = orjson.dumps(shaped)[1:-1]
        if rows.count + len(shaped) <= limits.max_rows and rows.size + len(chunk) + 1 <= limits.max_bytes:
            if chunk:
                rows.pieces.append(comma + chunk)
            rows.count += len(shaped)
            rows.size += len(chunk) + 1
            return True
        accepted: list[bytes] = []
        for value in shaped:
            piece = orjson.dumps(value)
            if rows.count >= limits.max_rows or rows.size + len(piece) + 1 > limits.max_bytes:
                rows.truncated = True
                break
            accepted.append(piece)
            rows.count += 1
            rows.size += len(piece) + 1
        if accepted:
            rows.pieces.append(comma + b",".join(accepted))
        return False

    def document(self) -> Body:
        """The answer's bytes, in the shape the query asked for (or ResultTooLarge)."""
        if self.columns is None:
            description = self.cursor.description
            self.columns = [column[0] for column in description] if description else []
            self.types = self.support.column_types(self.cursor, []) if description else []
        elif self.query.shape == "full" and not self.types:
            self.types = self.support.column_types(self.cursor, [])
        return document(self.query, self.limits, self.support, self.cursor, self.columns, self.types, self.rows)


def document(query: Query, limits: Limits, support: DialectSupport, cursor: Any, columns: list[str],
             types: list[str | None], rows: _Rows) -> Body:
    """The answer in the shape the query asked for. A small one comes as one byte string; a large one as the
    encoded batches themselves, which the adapters send one after the other, so the rows are never copied into
    one more buffer (the peak stays near the size of the answer)."""
    if query.shape == "rows" and rows.truncated:
        raise errors.ResultTooLarge(
            f"the result is larger than this target's limit of {limits.max_rows} rows or "
            f"{limits.max_bytes} bytes; add a LIMIT, or ask for \"shape\": \"full\" to receive the first "
            "rows marked truncated",
            maxRows=limits.max_rows,
            maxBytes=limits.max_bytes,
        )
    if query.shape == "rows":
        parts = [b"[", *rows.pieces, b"]"]
    else:
        row_count = rows.count if columns else support.row_count(cursor)
        parts = [
            b'{"columns":',
            orjson.dumps([{"name": name, "type": kind} for name, kind in zip(columns, types, strict=True)]),
            b',"rows":[', *rows.pieces,
            b'],"rowCount":', orjson.dumps(row_count),
            b',"lastInsertId":', orjson.dumps(encode_value(support.last_insert_id(cursor))),
            b',"truncated":', b"true" if rows.truncated else b"false",
            b"}",
        ]
    rows.pieces.clear()
    return b"".join(parts) if rows.size < _ONE_PIECE else parts
