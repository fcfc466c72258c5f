"""What differs between databases: drivers, column type names, transaction state, liveness and error mapping.

The request path is written once against :class:`DialectSupport`; one subclass per dialect family answers the
questions whose answer depends on the driver. Driver modules are imported lazily, so a deployment installs only the
drivers of the databases it serves.
"""

from __future__ import annotations

import re
import select
from typing import Any, ClassVar

from . import errors

__all__ = ["DialectSupport", "dialect_support"]

_FATAL = re.compile(r"FATAL:\s+(.*)")


class DialectSupport:
    family: ClassVar[str]
    paramstyle: ClassVar[str] = "format"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {}

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

    def translate_error(self, exc: BaseException) -> errors.SQLHTTPError:
        code, message = self.error_code(exc), self.error_message(exc)
        kind: type[errors.DatabaseError] = errors.DatabaseError
        if self.is_integrity_error(exc):
            kind = errors.ConstraintViolation
        info: dict[str, Any] = {"code": code, "message": message}
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


class PostgreSQLSupport(DialectSupport):
    family = "postgresql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {"connect_timeout": max(1, round(connect_timeout)), "application_name": "sqlhttp-middleware"}

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [column.type_display for column in cursor.description]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(dbapi_connection.info.transaction_status != TransactionStatus.IDLE)

    def socket_fd(self, dbapi_connection: Any) -> int | None:
        return -1 if dbapi_connection.closed else int(dbapi_connection.fileno())

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        match = _FATAL.search(str(exc))
        if match is None:
            return super().translate_connect_error(exc, target, username)
        fatal = match.group(1).strip()
        if (
            "authentication failed" in fatal
            or re.search(r'role ".*" does not exist', fatal)
            or "no pg_hba.conf entry" in fatal
        ):
            return _auth_failed(target, username)
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


class MySQLSupport(DialectSupport):
    family = "mysql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        import pymysql.converters
        from pymysql.constants import FIELD_TYPE

        conversions = dict(pymysql.converters.conversions)
        # TIME as a time of day, not a timedelta, when it is one; out-of-range TIMEs stay the server's string.
        conversions[FIELD_TYPE.TIME] = pymysql.converters.convert_time
        # MySQL's JSON type arrives as text; parse it so it travels as nested JSON. (MariaDB's JSON is LONGTEXT,
        # indistinguishable on the wire, and stays a string.)
        import orjson

        conversions[FIELD_TYPE.JSON] = orjson.loads
        return {"connect_timeout": connect_timeout, "conv": conversions, "local_infile": False}

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [_MYSQL_TYPES.get(column[1], str(column[1])) for column in cursor.description]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        from pymysql.constants import SERVER_STATUS

        return bool(dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    def socket_fd(self, dbapi_connection: Any) -> int | None:
        sock = dbapi_connection._sock
        return -1 if sock is None else int(sock.fileno())

    def last_insert_id(self, cursor: Any) -> int | None:
        return int(cursor.lastrowid) if cursor.lastrowid else None

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        code = self._errno(exc)
        if code in (1045, 1698):
            return _auth_failed(target, username)
        if code == 1049:
            return errors.UnknownDatabase(f"{self.error_message(exc)} on target {target!r}")
        if code in (1044, 1227):
            return errors.PermissionDenied(self.error_message(exc))
        return super().translate_connect_error(exc, target, username)

    @staticmethod
    def _errno(exc: BaseException) -> int | None:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def error_code(self, exc: BaseException) -> str | None:
        code = self._errno(exc)
        return None if code is None else str(code)

    def error_message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        if len(args) >= 2 and isinstance(args[1], str):
            return args[1]
        return super().error_message(exc)


_MYSQL_TYPES: dict[int, str] = {
    0: "decimal", 1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double", 6: "null", 7: "timestamp",
    8: "bigint", 9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year", 15: "varchar", 16: "bit",
    245: "json", 246: "decimal", 247: "enum", 248: "set", 249: "tinyblob", 250: "mediumblob", 251: "longblob",
    252: "blob", 253: "varchar", 254: "char", 255: "geometry",
}


class SQLiteSupport(DialectSupport):
    family = "sqlite"
    paramstyle = "qmark"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        # Pooled connections move between threads; each is used by one request at a time.
        return {"check_same_thread": False, "timeout": connect_timeout}

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        # sqlite3 reports no column types; report the storage class of the first non-null value.
        types: list[str | None] = []
        for index in range(len(cursor.description)):
            value = next((row[index] for row in rows if row[index] is not None), None)
            types.append(_SQLITE_TYPES.get(type(value)))
        return types

    def in_transaction(self, dbapi_connection: Any) -> bool:
        return bool(dbapi_connection.in_transaction)

    def last_insert_id(self, cursor: Any) -> int | None:
        return int(cursor.lastrowid) if cursor.lastrowid else None

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        return errors.DatabaseUnavailable(f"could not open the database file of target {target!r}")

    def error_code(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlite_errorname", None)


_SQLITE_TYPES: dict[type, str] = {int: "integer", float: "real", str: "text", bytes: "blob"}


class MSSQLSupport(DialectSupport):
    """SQL Server through pymssql (FreeTDS, bundled in its wheel). No SQL Server runs in our test suite."""

    family = "mssql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {"login_timeout": max(1, round(connect_timeout))}

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [_MSSQL_TYPES.get(column[1]) for column in cursor.description]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        return False  # autocommit mode; an explicit BEGIN TRANSACTION is undone by the rollback on error paths

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        if self._number(exc) == 18456:
            return _auth_failed(target, username)
        if self._number(exc) == 4060:
            return errors.UnknownDatabase(f"cannot open the requested database on target {target!r}")
        return super().translate_connect_error(exc, target, username)

    @staticmethod
    def _number(exc: BaseException) -> int | None:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def error_code(self, exc: BaseException) -> str | None:
        number = self._number(exc)
        return None if number is None else str(number)

    def error_message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        if len(args) >= 2:
            text = args[1].decode("utf-8", "replace") if isinstance(args[1], bytes) else str(args[1])
            # pymssql appends "DB-Lib error message ..." lines that repeat the server's text with host details.
            return text.split("DB-Lib error message", 1)[0].strip() or "the statement failed"
        return super().error_message(exc)


_MSSQL_TYPES: dict[int, str] = {1: "string", 2: "binary", 3: "number", 4: "datetime", 5: "decimal"}


_SUPPORT: dict[str, DialectSupport] = {
    support.family: support
    for support in (PostgreSQLSupport(), MySQLSupport(), SQLiteSupport(), MSSQLSupport())
}


def dialect_support(family: str) -> DialectSupport:
    return _SUPPORT[family]
