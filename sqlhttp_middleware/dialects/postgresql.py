"""PostgreSQL through psycopg 3 (its values, per protocol: :mod:`.pg_values`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from .base import (
    FATAL,
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    DialectSupport,
    Session,
    auth_failed,
    fetch_batches,
    first_keyword,
    isolation_sql,
)
from .pg_values import array_catalog, exact_adapters, text_adapters

if TYPE_CHECKING:
    from ..engine.work import Column, Statement, Transaction

# Statements that return rows are streamed (libpq's chunked-rows mode), so an oversized result is never held in
# memory whole; the others run with a plain execute.
_ROW_KEYWORDS = frozenset({"select", "with", "values", "table", "show", "explain", "fetch"})
_SESSION_SQL = (
    "SELECT set_config('statement_timeout', %s, false), set_config('default_transaction_read_only', %s, false)"
)
_READ_ONLY = b"default_transaction_read_only"
# The fields of PostgreSQL's ErrorResponse, as node-postgres names them, and psycopg's names for them.
_DIAGNOSTICS = (
    ("severity", "severity"), ("detail", "message_detail"), ("hint", "message_hint"),
    ("position", "statement_position"), ("internalPosition", "internal_position"),
    ("internalQuery", "internal_query"), ("where", "context"), ("schema", "schema_name"), ("table", "table_name"),
    ("column", "column_name"), ("dataType", "datatype_name"), ("constraint", "constraint_name"),
    ("file", "source_file"), ("line", "source_line"), ("routine", "source_function"),
)


@functools.cache
def cursor_class(*, asynchronous: bool = False, numeric: bool = False, text: bool = False) -> type:
    """The cursor class for one way of running a statement, sync or async.

    Every class sends one statement with the extended query protocol, even without parameters: psycopg sends a
    statement without parameters with the simple query protocol, which runs every statement in the text.
    ``numeric``: the SQL uses PostgreSQL's own ``$1`` placeholders (psycopg's raw cursor), bound as text of an
    unknown type, which the server casts as node-postgres's are. ``text``: values are PostgreSQL's text output;
    otherwise values are exact (:func:`exact_adapters`).
    Every class also keeps the command tag of a streamed statement (``statusmessage``), which psycopg discards.
    These override private methods of psycopg's; the test suite pins the behaviour on every psycopg release.
    """
    import psycopg
    from psycopg import pq
    from psycopg.generators import fetch

    tuples = (pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)
    done = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)

    class Mixin:
        _conn: Any
        _pgconn: Any
        _tx: Any
        _adapters: Any

        def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]
            if text:
                self._adapters = psycopg.adapt.AdaptersMap(text_adapters())
            else:
                self._adapters = exact_adapters(connection)

        def _execute_send(self, query: Any, *, force_extended: bool = False, binary: bool | None = None) -> None:
            if numeric:
                # Declare no parameter types in Parse, as node-postgres does: the server infers each, and a value
                # too many answers the server's own 08P01, not "could not determine data type of parameter".
                query.types = None
            super()._execute_send(query, force_extended=True, binary=binary)  # type: ignore[misc]

        def _stream_fetchone_gen(self, first: bool) -> Any:
            res = yield from fetch(self._pgconn)
            if res is None:
                return None
            status = res.status
            if res.command_status:  # libpq's chunked mode tags the last chunk; single-row mode the final result
                self._statusmessage = res.command_status
            if status in tuples:
                self.pgresult = res
                self._tx.set_pgresult(res, set_loaders=first)
                if first:
                    self._make_row = self._make_row_maker()  # type: ignore[attr-defined]
                return res
            if status in done:
                if first and status == pq.ExecStatus.TUPLES_OK:  # no rows: still say which columns
                    self.pgresult = res
                    self._tx.set_pgresult(res, set_loaders=True)
                while res:  # end of the single-row results
                    res = yield from fetch(self._pgconn)
                if status != pq.ExecStatus.TUPLES_OK:
                    raise psycopg.ProgrammingError("the operation in stream() didn't produce a result")
                return None
            return self._raise_for_result(res)  # type: ignore[attr-defined]

    if asynchronous:
        base: type = psycopg.AsyncRawCursor if numeric else psycopg.AsyncCursor
    else:
        base = psycopg.RawCursor if numeric else psycopg.Cursor
    name = f"{'Async' if asynchronous else ''}{'Raw' if numeric else ''}{'Text' if text else ''}Cursor"
    return type(name, (Mixin, base), {})


def _single_statement_cursor() -> type:
    return cursor_class()


def async_single_statement_cursor() -> type:
    return cursor_class(asynchronous=True)


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
    """The statement timeout is held by a cancel request sent at the deadline (on a thread of its own, or a task on
    the event loop), which no ``SET statement_timeout`` can switch off; the session's own
    ``statement_timeout``, set to the target's when the connection opens, is a second line. The read-only mode is
    the session's ``default_transaction_read_only``, re-applied whenever PostgreSQL reports that a request changed it.
    """

    family = "postgresql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "sqlhttp-middleware",
            "client_encoding": "UTF8",  # as node-postgres asks: text arrives as UTF-8 whatever the database's is
            # A peer that died (or a path that went black) is noticed in about 30 s, not the system's 2 hours.
            "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE, "keepalives_interval": KEEPALIVE_INTERVAL,
            "keepalives_count": KEEPALIVE_COUNT,
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

    def execute(self, dbapi_connection: Any, statement: Statement, batch: int,
                text_values: bool = False) -> tuple[Any, Iterator[Any]]:
        sql, params = statement.sql, list(statement.params)
        numeric = statement.paramstyle == "numeric"
        if not text_values:
            catalog = array_catalog(dbapi_connection)
            lookup = catalog.query()
            if lookup is not None:
                with dbapi_connection.cursor() as reader:
                    reader.execute(*lookup)
                    catalog.store(reader.fetchall())
        if numeric or text_values:
            cursor = cursor_class(numeric=numeric, text=text_values)(dbapi_connection)
        else:
            cursor = dbapi_connection.cursor()
        if first_keyword(sql) not in _ROW_KEYWORDS:
            cursor.execute(sql, params)  # INSERT ... RETURNING and the like: rows, read from the client's buffer
            return cursor, fetch_batches(cursor, batch)
        return cursor, _stream(cursor, sql, params, batch)

    def begin(self, transaction: Transaction, read_only: bool) -> list[str]:
        return begin_statements(transaction, read_only)

    def columns(self, cursor: Any) -> list[Column]:
        return pg_columns(cursor)

    def command(self, cursor: Any) -> str | None:
        return cursor.statusmessage  # type: ignore[no-any-return]

    def names(self, cursor: Any) -> list[str]:
        # Straight from the result, without the Column objects psycopg's description builds at every call.
        result = cursor.pgresult
        if result is None or not result.nfields:
            return []
        return [result.fname(index).decode("utf-8", "replace") for index in range(result.nfields)]

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

    def translate_error(self, exc: BaseException, timeout: float = 0.0) -> errors.SQLHTTPError:
        error = super().translate_error(exc, timeout)
        error.sqlstate = getattr(exc, "sqlstate", None)
        diag = getattr(exc, "diag", None)
        if diag is not None:
            error.diagnostics = {field: getattr(diag, attribute, None) for field, attribute in _DIAGNOSTICS}
        return error

    def error_message(self, exc: BaseException) -> str:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        return str(primary) if primary else super().error_message(exc)


def begin_statements(transaction: Transaction, read_only: bool) -> list[str]:
    """BEGIN with the batch's options. A read-only target's batch is always READ ONLY, and its snapshot is taken
    at once: before the first snapshot, PostgreSQL lets ``SET TRANSACTION READ WRITE`` undo READ ONLY."""
    modes = [isolation_sql(transaction)] if transaction.isolation else []
    if read_only or transaction.read_only:
        modes.append("READ ONLY")
    elif transaction.read_only is False:
        modes.append("READ WRITE")
    if transaction.deferrable is not None:
        modes.append("DEFERRABLE" if transaction.deferrable else "NOT DEFERRABLE")
    statements = ["BEGIN " + ", ".join(modes) if modes else "BEGIN"]
    if read_only:
        statements.append("SELECT 1")
    return statements


def pg_columns(cursor: Any) -> list[Column]:
    """Each column with its type OID and the rest of what PostgreSQL's RowDescription says of it."""
    from ..engine.work import Column

    result = cursor.pgresult
    if result is None:
        return []
    return [
        Column(result.fname(index).decode("utf-8", "replace"), result.ftype(index), result.ftable(index),
               result.ftablecol(index), result.fsize(index), result.fmod(index))
        for index in range(result.nfields)
    ]


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
