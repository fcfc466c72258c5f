"""What every dialect answers: the interface the request path is written against, and its defaults."""

from __future__ import annotations

import re
import select
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .. import errors

if TYPE_CHECKING:
    from ..engine.work import Column, Statement, Transaction

__all__ = [
    "CursorInfo", "DialectSupport", "NumberedErrors", "Session", "auth_failed", "error_number", "fetch_batches",
    "first_keyword", "isolation_sql",
]

FATAL = re.compile(r"FATAL:\s+(.*)")


# TCP keepalives on every database connection: a dead peer is noticed after IDLE + INTERVAL * COUNT seconds.
KEEPALIVE_IDLE = 15
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3


def keep_alive(sock: Any) -> None:
    """Turn TCP keepalives on for ``sock`` with the figures above (where the platform has them)."""
    import socket

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                        ("TCP_KEEPCNT", KEEPALIVE_COUNT)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


@dataclass(frozen=True)
class Session:
    """What every checkout makes sure of, so nothing a previous request set can outlive it."""

    timeout: float  # seconds, this request's (a request may ask for less than its target's)
    read_only: bool
    deadline: float  # time.monotonic() by which the statement must be done
    target_timeout: float = 0.0  # seconds, the target's: what a session keeps between requests
    inline: bool = False  # on the event loop, within a budget: never wait for a lock
    busy_timeout: float = 0.0  # seconds a statement on a thread may wait for a lock (SQLite)


class DialectSupport:
    family: ClassVar[str]
    paramstyle: ClassVar[str] = "format"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {}

    def adjust_connect(self, cparams: dict[str, Any]) -> None:
        """Last changes to the driver's connect() arguments."""

    def on_connect(self, dbapi_connection: Any, read_only: bool, timeout: float) -> None:
        """Once for each new connection, with its target's read-only mode and statement timeout."""

    def prepare_session(self, dbapi_connection: Any, session: Session, server: Any) -> None:
        """At every checkout: the statement timeout and read-only mode, enforced by the database."""

    def end_session(self, dbapi_connection: Any, session: Session) -> None:
        """After the statement, whatever happened."""

    def execute(self, dbapi_connection: Any, statement: Statement, batch: int,
                text_values: bool = False) -> tuple[Any, Iterator[Any]]:
        """Run the statement; return its cursor and an iterator over batches of rows (empty without a result)."""
        cursor = dbapi_connection.cursor()
        params = statement.params
        cursor.execute(statement.sql, params if isinstance(params, dict) else list(params))
        return cursor, fetch_batches(cursor, batch)

    def begin(self, transaction: Transaction, read_only: bool) -> list[str]:
        """The statements that open a batch's transaction. ``read_only``: the target's, which nothing overrides."""
        if transaction.deferrable:
            raise errors.BadRequest("deferrable transactions are PostgreSQL's; leave the option out here")
        return ["BEGIN"]

    # Whether in_transaction() tells the truth, so a batch can see a statement that ended its transaction.
    tracks_transactions: ClassVar[bool] = True

    def columns(self, cursor: Any) -> list[Column]:
        from ..engine.work import Column

        return [Column(str(column[0])) for column in cursor.description or ()]

    def command(self, cursor: Any) -> str | None:
        """The database's own word for what the statement did (PostgreSQL's command tag), where it has one."""
        return None

    def names(self, cursor: Any) -> list[str]:
        description = cursor.description
        return [column[0] for column in description] if description else []

    def abandon(self, lease: Any, cursor: Any, batches: Iterator[Any]) -> None:
        """Stop reading a result before its end (a cap was reached) without reading the rest."""
        cursor.close()

    def needs_watchdog(self, server: Any) -> bool:
        """True where the database's own timeout does not cover every statement."""
        return False

    def kill_query(self, dbapi_connection: Any, engine: Any) -> None:
        """Stop the statement ``dbapi_connection`` is running (the watchdog's action)."""

    def row_count(self, cursor: Any) -> int | None:
        rowcount = getattr(cursor, "rowcount", -1)
        return int(rowcount) if rowcount is not None and rowcount >= 0 else None

    def is_timeout(self, exc: BaseException) -> bool:
        return False

    def is_read_only_refusal(self, exc: BaseException) -> bool:
        return False

    def is_busy(self, exc: BaseException) -> bool:
        """The database is locked by another writer (SQLite)."""
        return False

    def is_multiple_statements(self, exc: BaseException) -> bool:
        return False

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [None for _ in cursor.description]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        return False

    def socket_fd(self, dbapi_connection: Any) -> int | None:
        """The connection's socket, to spot a server that went away while the connection sat idle."""
        return None

    def is_alive(self, dbapi_connection: Any) -> bool:
        """False when an idle connection's socket is readable: the server closed it or sent an error.

        An idle connection has nothing to read; data or EOF on its socket means the server restarted or killed
        the session. poll() with a zero timeout costs one system call, unlike a ping's round trip.
        """
        try:
            fd = self.socket_fd(dbapi_connection)
        except (OSError, ValueError, AttributeError):
            return False
        if fd is None:
            return True
        if fd < 0:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)

    def last_insert_id(self, cursor: Any) -> int | None:
        return None

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        return errors.DatabaseUnavailable(f"could not connect to the database of target {target!r}; try again later")

    def translate_error(self, exc: BaseException, timeout: float = 0.0) -> errors.SQLHTTPError:
        error = self._classify(exc, timeout)
        error.database_code, error.database_message = self.error_code(exc), self.error_message(exc)
        return error

    def _classify(self, exc: BaseException, timeout: float) -> errors.SQLHTTPError:
        message = self.error_message(exc)
        if self.is_timeout(exc):
            return errors.StatementTimeout(
                f"the statement ran longer than its timeout of {timeout:g} s and was cancelled")
        if self.is_multiple_statements(exc):
            return errors.MultipleStatements("send one statement per request; this one holds several")
        if self.is_read_only_refusal(exc):
            return errors.ReadOnlyTarget(f"this target is read-only: {message}")
        kind: type[errors.DatabaseError] = errors.DatabaseError
        if self.is_integrity_error(exc):
            kind = errors.ConstraintViolation
        return kind(message)

    def is_integrity_error(self, exc: BaseException) -> bool:
        return type(exc).__name__ == "IntegrityError" or any(
            cls.__name__ == "IntegrityError" for cls in type(exc).__mro__
        )

    def error_code(self, exc: BaseException) -> str | None:
        return None

    def error_message(self, exc: BaseException) -> str:
        return str(exc).strip() or type(exc).__name__


def error_number(exc: BaseException) -> int | None:
    """The error number PyMySQL and pymssql put first in an exception's args."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class NumberedErrors(DialectSupport):
    """Drivers whose errors are ``(number, message)``: PyMySQL and pymssql."""

    def error_code(self, exc: BaseException) -> str | None:
        number = error_number(exc)
        return None if number is None else str(number)


def auth_failed(target: str, username: str) -> errors.AuthenticationFailed:
    # One message for a wrong password and an unknown user, so answers cannot be used to enumerate logins.
    return errors.AuthenticationFailed(f"authentication failed for user {username!r} on target {target!r}")




class CursorInfo:
    """What the engine tells a result builder about the statement a cursor ran; each answer computed on demand."""

    __slots__ = ("cursor", "support")

    def __init__(self, support: DialectSupport, cursor: Any) -> None:
        self.support, self.cursor = support, cursor

    @property
    def names(self) -> list[str]:
        return self.support.names(self.cursor)

    def columns(self) -> list[Column]:
        return self.support.columns(self.cursor)

    def type_names(self, rows: list[Any]) -> list[str | None]:
        return self.support.column_types(self.cursor, rows) if self.cursor.description else []

    def row_count(self) -> int | None:
        return self.support.row_count(self.cursor)

    def command(self) -> str | None:
        return self.support.command(self.cursor)

    def last_insert_id(self) -> int | None:
        return self.support.last_insert_id(self.cursor)

    def driver_fields(self) -> Any:
        """The driver's own column descriptions, where it has them (PyMySQL's field packets)."""
        return getattr(getattr(self.cursor, "_result", None), "fields", None)


def isolation_sql(transaction: Transaction) -> str:
    """``ISOLATION LEVEL ...`` as SQL spells it, or an empty string."""
    return f"ISOLATION LEVEL {transaction.isolation.upper()}" if transaction.isolation else ""


def fetch_batches(cursor: Any, size: int) -> Iterator[Any]:
    if cursor.description is None:
        return
    while batch := cursor.fetchmany(size):
        yield batch


_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)


def first_keyword(sql: str) -> str:
    """The statement's first keyword, lower-cased (leading blanks, comments and parentheses skipped)."""
    match = _FIRST_WORD.match(sql)
    return match.group(1).lower() if match else ""
