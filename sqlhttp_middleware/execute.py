"""Running one statement: bind, check out a connection, prepare its session, execute, stream and encode the rows
within the caps, and leave nothing behind.

Connections run in autocommit mode, so a single statement commits on success and undoes itself on failure without
the extra BEGIN/COMMIT round trips. If the statement itself opened a transaction (``BEGIN``), it is rolled back
before the connection goes back to the pool: the client has no later request in which to finish it.

Every checkout re-applies the statement timeout and the read-only mode in the database session, so nothing a
previous request set (``SET statement_timeout = 0``) outlives it. Rows are read in batches and encoded as they come;
reading stops at ``max_rows`` rows or ``max_response_bytes`` bytes, so an oversized result is never held whole.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy.engine import Dialect

from . import errors
from .bindings import compile_sql
from .dialects import DialectSupport, dialect_support
from .dialects.base import Session
from .encoding import encode_value
from .engines import EngineCache, Lease
from .options import Options, ResolvedTarget
from .watchdog import Watchdog

__all__ = ["Limits", "Login", "Query", "Runner"]

BATCH = 500  # rows fetched and encoded at a time
WATCHDOG_GRACE = 1.0  # seconds the database's own timeout gets before the watchdog steps in


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


# Values orjson writes exactly as our type table says: in a typed column (PostgreSQL, MySQL, SQL Server) whose first
# value is one of these, the others are too, and no Python code has to touch them.
_NATIVE = frozenset({str, bool, dt.datetime, dt.date, uuid.UUID})


def column_converters(batch: list[Any], width: int, *, typed: bool) -> list[tuple[int, Callable[[Any], Any]]]:
    """(column index, encoder) for the columns whose values need Python's help to become lossless JSON."""
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index in range(width):
        first = next((row[index] for row in batch if row[index] is not None), None)
        if not (typed and type(first) in _NATIVE):
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

    def run(self, query: Query, login: Login) -> bytes:
        """The JSON answer to ``query``, run with the database ``login``, or an :class:`errors.SQLHTTPError`."""
        target = query.target
        support = dialect_support(target.family)
        sql, params = compile_sql(
            query.sql,
            query.bindings,
            dialect=target.family,  # type: ignore[arg-type]
            paramstyle=support.paramstyle,  # type: ignore[arg-type]
            quote_identifier=self._dialects[target.name].identifier_preparer.quote_identifier,
        )
        limits = self.limits[target.name]
        with self._engines.connection(target, login.username, login.password, login.database) as lease:
            return self._execute(lease, support, sql, params, query, limits)

    def _execute(self, lease: Lease, support: DialectSupport, sql: str, params: list[Any], query: Query,
                 limits: Limits) -> bytes:
        connection = lease.dbapi_connection
        engine = lease.entry.engine
        dbapi_error: type[BaseException] = engine.dialect.loaded_dbapi.Error
        timeout = min(limits.timeout, query.timeout) if query.timeout else limits.timeout
        session = Session(timeout=timeout, read_only=limits.read_only, deadline=time.monotonic() + timeout)
        watch: int | None = None
        cursor: Any = None
        try:
            support.prepare_session(connection, session, engine.dialect)
            if support.needs_watchdog(engine.dialect):
                watch = self._watchdog.arm(session.deadline + WATCHDOG_GRACE,
                                           lambda: support.kill_query(connection, engine))
            cursor, batches = support.execute(connection, sql, params, BATCH)
            columns, types, rows = self._read(lease, support, cursor, batches, query, limits)
            body = self._document(query, limits, support, cursor, columns, types, rows)
        except dbapi_error as exc:
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
            self._close(lease, support, cursor, dbapi_error)
        self._leave_no_transaction(lease, support)
        return body

    @staticmethod
    def _read(lease: Lease, support: DialectSupport, cursor: Any, batches: Iterator[Any], query: Query,
              limits: Limits) -> tuple[list[str], list[str | None], _Rows]:
        rows = _Rows([], 0, 0, False)
        columns: list[str] | None = None
        types: list[str | None] = []
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        as_objects = query.row_mode == "object"
        for batch in batches:
            if columns is None:
                columns = [column[0] for column in cursor.description]
                types = support.column_types(cursor, batch)
                converters = column_converters(batch, len(columns), typed=support.family != "sqlite")
            shaped = [_shape(row, converters, columns, as_objects) for row in batch]
            # One orjson call for the whole batch while it fits; row by row only to find where a cap cuts it.
            chunk = orjson.dumps(shaped)[1:-1]
            if rows.count + len(shaped) <= limits.max_rows and rows.size + len(chunk) + 1 <= limits.max_bytes:
                if chunk:
                    rows.pieces.append(chunk)
                rows.count += len(shaped)
                rows.size += len(chunk) + 1
                continue
            for value in shaped:
                piece = orjson.dumps(value)
                if rows.count >= limits.max_rows or rows.size + len(piece) + 1 > limits.max_bytes:
                    rows.truncated = True
                    break
                rows.pieces.append(piece)
                rows.count += 1
                rows.size += len(piece) + 1
            support.abandon(lease, cursor, batches)
            break
        if columns is None:
            description = cursor.description
            columns = [column[0] for column in description] if description else []
            types = support.column_types(cursor, []) if description else []
        return columns, types, rows

    @staticmethod
    def _document(query: Query, limits: Limits, support: DialectSupport, cursor: Any, columns: list[str],
                  types: list[str | None], rows: _Rows) -> bytes:
        array = b"[" + b",".join(rows.pieces) + b"]"
        if query.shape == "rows":
            if rows.truncated:
                raise errors.ResultTooLarge(
                    f"the result is larger than this target's limit of {limits.max_rows} rows or "
                    f"{limits.max_bytes} bytes; add a LIMIT, or ask for \"shape\": \"full\" to receive the first "
                    "rows marked truncated",
                    maxRows=limits.max_rows,
                    maxBytes=limits.max_bytes,
                )
            return array
        row_count = rows.count if columns else support.row_count(cursor)
        return b"".join([
            b'{"columns":',
            orjson.dumps([{"name": name, "type": kind} for name, kind in zip(columns, types, strict=True)]),
            b',"rows":', array,
            b',"rowCount":', orjson.dumps(row_count),
            b',"lastInsertId":', orjson.dumps(encode_value(support.last_insert_id(cursor))),
            b',"truncated":', b"true" if rows.truncated else b"false",
            b"}",
        ])

    @staticmethod
    def _close(lease: Lease, support: DialectSupport, cursor: Any, dbapi_error: type[BaseException]) -> None:
        try:
            support.end_session(lease.dbapi_connection)
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
