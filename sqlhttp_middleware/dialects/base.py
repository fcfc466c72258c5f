"""What every dialect answers: the interface the request path is written against, and its defaults."""

from __future__ import annotations

import re
import select
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import errors

__all__ = [
    "DialectSupport", "NumberedErrors", "Session", "auth_failed", "error_number", "fetch_batches", "first_keyword",
]

FATAL = re.compile(r"FATAL:\s+(.*)")


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
    watchdog_grace: ClassVar[float] = 1.0  # seconds the database's own timeout gets before the watchdog steps in

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

    def execute(self, dbapi_connection: Any, sql: str, params: list[Any], batch: int) -> tuple[Any, Iterator[Any]]:
        """Run the statement; return its cursor and an iterator over batches of rows (empty without a result)."""
        cursor = dbapi_connection.cursor()
        cursor.execute(sql, params)
        return cursor, fetch_batches(cursor, batch)

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
        code, message = self.error_code(exc), self.error_message(exc)
        info: dict[str, Any] = {"code": code, "message": message}
        if self.is_timeout(exc):
            return errors.StatementTimeout(
                f"the statement ran longer than its timeout of {timeout:g} s and was cancelled", database=info
            )
        if self.is_multiple_statements(exc):
            return errors.MultipleStatements(
                "send one statement per request; this one holds several", database=info
            )
        if self.is_read_only_refusal(exc):
            return errors.ReadOnlyTarget(f"this target is read-only: {message}", database=info)
        kind: type[errors.DatabaseError] = errors.DatabaseError
        if self.is_integrity_error(exc):
            kind = errors.ConstraintViolation
        return kind(message, database=info)

    def is_integrity_error(self, exc: BaseException) -> bool:
        return type(exc).__name__ == "IntegrityError" or any(
            cls.__name__ == "IntegrityError" for cls in type(exc).__mro__
        )

    def error_code(self, exc: BaseException) -> str | None:
        return None

    def error_message(self, exc: BaseException) -> str:
        return str(exc).strip() or type(exc).__name__


def _auth_failed(target: str, username: str) -> errors.AuthenticationFailed:
    # One message for a wrong password and an unknown user, so answers cannot be used to enumerate logins.
    return errors.AuthenticationFailed(f"authentication failed for user {username!r} on target {target!r}")


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
