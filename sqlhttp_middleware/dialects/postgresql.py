"""PostgreSQL through psycopg 3."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from .. import errors
from .base import FATAL, DialectSupport, Session, auth_failed, fetch_batches, first_keyword

# Statements that return rows are streamed (libpq's chunked-rows mode), so an oversized result is never held in
# memory whole; the others run with a plain execute.
_ROW_KEYWORDS = frozenset({"select", "with", "values", "table", "show", "explain", "fetch"})
_SESSION_SQL = (
    "SELECT set_config('statement_timeout', %s, false), set_config('default_transaction_read_only', %s, false)"
)
_READ_ONLY = b"default_transaction_read_only"


@functools.cache
def _single_statement_cursor() -> type:
    import psycopg

    class SingleStatementCursor(psycopg.Cursor):
        """Always the extended query protocol, which runs one statement, even when there are no parameters.

        psycopg sends a statement without parameters with the simple query protocol, which runs every statement
        in the text. This overrides a private method; the test suite pins the behaviour on every psycopg release.
        """

        def _execute_send(self, query: Any, *, force_extended: bool = False, binary: bool | None = None) -> None:
            super()._execute_send(query, force_extended=True, binary=binary)

    return SingleStatementCursor


@functools.cache
def async_single_statement_cursor() -> type:
    """:func:`_single_statement_cursor` for psycopg's async connections (the method overridden is the same)."""
    import psycopg

    class AsyncSingleStatementCursor(psycopg.AsyncCursor):
        def _execute_send(self, query: Any, *, force_extended: bool = False, binary: bool | None = None) -> None:
            super()._execute_send(query, force_extended=True, binary=binary)

    return AsyncSingleStatementCursor


def session_arguments(timeout: float, read_only: bool) -> list[str]:
    return [str(max(1, round(timeout * 1000))), "on" if read_only else "off"]


def needs_arming(dbapi_connection: Any, session: Session) -> bool:
    """True when the session's read-only mode may not be the target's.

    PostgreSQL 14 and later report ``default_transaction_read_only`` to the client whenever it changes (a
    ParameterStatus message, read by libpq with the statement's answer), so a request that turned it off is seen
    without a round trip. Older servers report nothing: the session is re-armed at every checkout.
    """
    reported = dbapi_connection.pgconn.parameter_status(_READ_ONLY)
    return reported is None or reported != (b"on" if session.read_only else b"off")


class PostgreSQLSupport(DialectSupport):
    """The statement timeout is held by a cancel request sent at the deadline (the watchdog's, or the event loop's
    timer on the async path), which no ``SET statement_timeout`` can switch off; the session's own
    ``statement_timeout``, set to the target's when the connection opens, is a second line. The read-only mode is
    the session's ``default_transaction_read_only``, re-applied whenever PostgreSQL reports that a request changed it.
    """

    family = "postgresql"
    watchdog_grace = 0.0

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "sqlhttp-middleware",
            "cursor_factory": _single_statement_cursor(),
        }

    def on_connect(self, dbapi_connection: Any, read_only: bool, timeout: float) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(_SESSION_SQL, session_arguments(timeout, read_only))

    def prepare_session(self, dbapi_connection: Any, session: Session, server: Any) -> None:
        if needs_arming(dbapi_connection, session):
            self.on_connect(dbapi_connection, session.read_only, session.target_timeout)

    def needs_watchdog(self, server: Any) -> bool:
        return True

    def kill_query(self, dbapi_connection: Any, engine: Any) -> None:
        dbapi_connection.cancel_safe(timeout=5.0)

    def execute(self, dbapi_connection: Any, sql: str, params: list[Any], batch: int) -> tuple[Any, Iterator[Any]]:
        cursor = dbapi_connection.cursor()
        if first_keyword(sql) not in _ROW_KEYWORDS:
            cursor.execute(sql, params)  # INSERT ... RETURNING and the like: rows, read from the client's buffer
            return cursor, fetch_batches(cursor, batch)
        return cursor, _stream(cursor, sql, params, batch)

    def abandon(self, lease: Any, cursor: Any, batches: Iterator[Any]) -> None:
        # Closing psycopg's stream cancels the query on the server and discards what is in flight.
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        cursor.close()

    def is_timeout(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) == "57014"

    def is_read_only_refusal(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) == "25006"

    def is_multiple_statements(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) == "42601" and "multiple commands" in str(exc)

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [column.type_display for column in cursor.description]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(dbapi_connection.info.transaction_status != TransactionStatus.IDLE)

    def socket_fd(self, dbapi_connection: Any) -> int | None:
        return -1 if dbapi_connection.closed else int(dbapi_connection.fileno())

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        match = FATAL.search(str(exc))
        if match is None:
            return super().translate_connect_error(exc, target, username)
        fatal = match.group(1).strip()
        if (
            "authentication failed" in fatal
            or re.search(r'role ".*" does not exist', fatal)
            or "no pg_hba.conf entry" in fatal
        ):
            return auth_failed(target, username)
        if re.search(r'database ".*" does not exist', fatal):
            return errors.UnknownDatabase(f"{fatal} on target {target!r}")
        if "not permitted to log in" in fatal or "permission denied" in fatal:
            return errors.PermissionDenied(fatal)
        return errors.DatabaseUnavailable(f"the database of target {target!r} refused the connection: {fatal}")

    def error_code(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlstate", None)

    def error_message(self, exc: BaseException) -> str:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        return str(primary) if primary else super().error_message(exc)


def _stream(cursor: Any, sql: str, params: list[Any], batch: int) -> Iterator[Any]:
    import psycopg

    rows: list[Any] = []
    stream = cursor.stream(sql, params, size=batch)
    try:
        for row in stream:
            rows.append(row)
            if len(rows) >= batch:
                yield rows
                rows = []
    except psycopg.ProgrammingError as error:
        # A WITH ... INSERT without RETURNING produces no result set: it ran, there is just nothing to read.
        if "didn't produce a result" not in str(error):
            raise
    finally:
        stream.close()
    if rows:
        yield rows
