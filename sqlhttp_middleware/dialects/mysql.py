"""MySQL and MariaDB through PyMySQL."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from .. import errors
from .base import NumberedErrors, Session, auth_failed, error_number, fetch_batches, isolation_sql, keep_alive

if TYPE_CHECKING:
    from ..engine.work import Statement, Transaction


class MySQLSupport(NumberedErrors):
    family = "mysql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        # read_timeout bounds the handshake too (PyMySQL's connect_timeout covers only the TCP connect): a frozen
        # server that accepted the connection cannot hold it for the system's TCP timeouts. It is lifted once
        # connected (on_connect): statements are bounded by the deadlines (engine/deadline.py).
        # utf8mb4 whatever the target's URL says: in a narrower character set the server would answer '?' for
        # what it cannot hold, silently.
        return {"connect_timeout": connect_timeout, "read_timeout": connect_timeout, "write_timeout": connect_timeout,
                "conv": value_conversions(), "local_infile": False, "charset": "utf8mb4"}

    def on_connect(self, dbapi_connection: Any, read_only: bool, timeout: float) -> None:
        dbapi_connection._read_timeout = dbapi_connection._write_timeout = None
        sock = dbapi_connection._sock
        if sock is not None:
            sock.settimeout(None)
            dbapi_connection._current_timeout = None
            if sock.family != socket.AF_UNIX:
                keep_alive(sock)


    def adjust_connect(self, cparams: dict[str, Any]) -> None:
        # PyMySQL sends a str password encoded as Latin-1, so 'wörd' would not match a password the server hashed
        # from UTF-8, and '✓' could not be sent at all. Bytes are sent as they are.
        if isinstance(cparams.get("password"), str):
            cparams["password"] = cparams["password"].encode("utf-8")

    def prepare_session(self, dbapi_connection: Any, session: Session, server: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            if getattr(server, "is_mariadb", False):
                # MariaDB's max_statement_time covers every statement, not only SELECT.
                cursor.execute("SET SESSION max_statement_time = %s, SESSION tx_read_only = %s",
                               (session.timeout, int(session.read_only)))
            else:
                # MySQL's max_execution_time covers only SELECT: the watchdog covers the rest.
                cursor.execute("SET SESSION max_execution_time = %s, SESSION transaction_read_only = %s",
                               (max(1, round(session.timeout * 1000)), int(session.read_only)))

    def begin(self, transaction: Transaction, read_only: bool) -> list[str]:
        # A read-only target's batch is READ ONLY whatever it asks: a READ WRITE would override the session's mode.
        super().begin(transaction, read_only)
        statements = [f"SET TRANSACTION {isolation_sql(transaction)}"] if transaction.isolation else []
        if read_only or transaction.read_only:
            statements.append("START TRANSACTION READ ONLY")
        else:
            statements.append("START TRANSACTION READ WRITE" if transaction.read_only is False else "START TRANSACTION")
        return statements

    def needs_watchdog(self, server: Any) -> bool:
        return not getattr(server, "is_mariadb", False)

    def kill_query(self, dbapi_connection: Any, engine: Any) -> None:
        """From a connection of its own: stop what ``dbapi_connection`` is running (the watchdog's action)."""
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self.adjust_connect(cparams)
        cparams.update(connect_timeout=2, read_timeout=2, write_timeout=2)  # a server that does not answer
        killer = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            with killer.cursor() as cursor:
                cursor.execute("KILL QUERY %s", (dbapi_connection.thread_id(),))
        finally:
            killer.close()

    def execute(self, dbapi_connection: Any, statement: Statement, batch: int,
                text_values: bool = False) -> tuple[Any, Iterator[Any]]:
        import pymysql.cursors

        # Unbuffered: rows are read from the socket as they are consumed, never all at once.
        cursor = dbapi_connection.cursor(pymysql.cursors.SSCursor)
        # Only the DB-API's %s style is formatted; SQL that comes whole (PlanetScale's driver inlines its values)
        # keeps its % signs as they are.
        params = list(statement.params) if statement.paramstyle == "format" else None
        if not text_values:
            cursor.execute(statement.sql, params)
            return cursor, fetch_batches(cursor, batch)
        # Values as the server sent them: bytes, undecoded (the converters are chosen as the result starts).
        decoders, use_unicode = dbapi_connection.decoders, dbapi_connection.use_unicode
        dbapi_connection.decoders, dbapi_connection.use_unicode = {}, False
        try:
            cursor.execute(statement.sql, params)
        finally:
            dbapi_connection.decoders, dbapi_connection.use_unicode = decoders, use_unicode
        return cursor, fetch_batches(cursor, batch)

    def abandon(self, lease: Any, cursor: Any, batches: Iterator[Any]) -> None:
        # Reading the rest to reuse the connection could take as long as the result is large: drop the connection
        # instead. PyMySQL would try to read the rest when the cursor and result are collected, so detach them.
        result = getattr(cursor, "_result", None)
        if result is not None:
            result.unbuffered_active = False
        cursor.connection = None
        lease.broken = True

    def is_timeout(self, exc: BaseException) -> bool:
        return error_number(exc) in (1969, 3024, 1317)

    def is_read_only_refusal(self, exc: BaseException) -> bool:
        return error_number(exc) == 1792

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        # The wire type alone does not say whether a string column holds text or bytes (TEXT and BLOB are both
        # type 252), which decides whether its values are strings or base64: the field's character set does.
        fields = getattr(getattr(cursor, "_result", None), "fields", None)
        if not fields or len(fields) != len(cursor.description):
            return [_MYSQL_TYPES.get(column[1], str(column[1])) for column in cursor.description]
        return [_field_type(field) for field in fields]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        from pymysql.constants import SERVER_STATUS

        return bool(dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    def socket_fd(self, dbapi_connection: Any) -> int | None:
        sock = dbapi_connection._sock
        return -1 if sock is None else int(sock.fileno())

    def last_insert_id(self, cursor: Any) -> int | None:
        return int(cursor.lastrowid) if cursor.lastrowid else None

    def row_count(self, cursor: Any) -> int | None:
        return int(cursor.rowcount) if cursor.rowcount is not None and cursor.rowcount >= 0 else None

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        code = error_number(exc)
        if code in (1045, 1698):
            return auth_failed(target, username)
        if code == 1049:
            return errors.UnknownDatabase(f"{self.error_message(exc)} on target {target!r}")
        if code in (1044, 1227):
            return errors.PermissionDenied(self.error_message(exc))
        return super().translate_connect_error(exc, target, username)

    def translate_error(self, exc: BaseException, timeout: float = 0.0) -> errors.SQLHTTPError:
        error = super().translate_error(exc, timeout)
        error.sqlstate = error.sqlstate or getattr(exc, "sqlstate", None)  # PyMySQL 1.2 keeps the packet's
        return error

    def error_message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        if len(args) >= 2 and isinstance(args[1], str):
            return args[1]
        return super().error_message(exc)


def _field_type(field: Any) -> str:
    code = field.type_code
    if code in _STRING_TYPES:
        if field.flags & _ENUM_FLAG:
            return "enum"
        if field.flags & _SET_FLAG:
            return "set"
        return _STRING_TYPES[code][field.charsetnr == _BINARY_CHARSET]
    return _MYSQL_TYPES.get(code, str(code))


_BINARY_CHARSET, _ENUM_FLAG, _SET_FLAG = 63, 256, 2048
_STRING_TYPES: dict[int, tuple[str, str]] = {  # (text, binary)
    15: ("varchar", "varbinary"), 253: ("varchar", "varbinary"), 254: ("char", "binary"), 249: ("tinytext", "tinyblob"),
    250: ("mediumtext", "mediumblob"), 251: ("longtext", "longblob"), 252: ("text", "blob"),
}
_MYSQL_TYPES: dict[int, str] = {
    0: "decimal", 1: "tinyint", 2: "smallint", 3: "int", 4: "float", 5: "double", 6: "null", 7: "timestamp",
    8: "bigint", 9: "mediumint", 10: "date", 11: "time", 12: "datetime", 13: "year", 15: "varchar", 16: "bit",
    245: "json", 246: "decimal", 247: "enum", 248: "set", 249: "tinyblob", 250: "mediumblob", 251: "longblob",
    252: "blob", 253: "varchar", 254: "char", 255: "geometry",
}


# -- values: what PyMySQL makes of the server's text ------------------------------------------------------------
#
# The text protocol sends every value as the server's own text (what CAST(value AS CHAR) gives). Each conversion
# below keeps that text, or turns it into a value the encoder writes exactly; none rounds or reinterprets it.


def value_conversions() -> dict[Any, Any]:
    """PyMySQL's ``conv``: its defaults, with the conversions that would lose or respell a value replaced."""
    import pymysql.converters
    from pymysql.constants import FIELD_TYPE

    conversions: dict[Any, Any] = dict(pymysql.converters.conversions)
    # Kept as the server's text (no conversion at all):
    # - DECIMAL: exact digits, never Python's scientific notation ('1E-30').
    # - FLOAT: MariaDB sends 6 significant digits ('1.23457' for 1.2345678), so no number is known to be exact.
    # - TIME: may be beyond a time of day ('838:59:59', '-00:00:01'); within one, the text is ISO 8601 already.
    # - ENUM, SET: PyMySQL would make a SET a Python set; the server's text is 'a,b'.
    # - DATE: ISO 8601 when it is a real date; zero and invalid dates the SQL mode allows ('0000-00-00',
    #   '2024-02-30') stay as sent too.
    for field_type in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL, FIELD_TYPE.FLOAT, FIELD_TYPE.TIME,
                       FIELD_TYPE.ENUM, FIELD_TYPE.SET, FIELD_TYPE.DATE):
        conversions.pop(field_type, None)
    # DOUBLE's text is the shortest that reads back as the same double: float() is exact.
    conversions[FIELD_TYPE.DOUBLE] = float
    conversions[FIELD_TYPE.DATETIME] = conversions[FIELD_TYPE.TIMESTAMP] = datetime_text
    # MySQL's JSON type arrives as text, which travels as nested JSON, embedded verbatim. (MariaDB's JSON is
    # LONGTEXT, indistinguishable on the wire, and stays the server's text, a string.)
    conversions[FIELD_TYPE.JSON] = exact_json
    return conversions


def datetime_text(text: str) -> str:
    """A DATETIME or TIMESTAMP as ISO 8601 with the server's own digits ('2024-01-02T03:04:05.120'); a zero or
    invalid one ('0000-00-00 00:00:00') stays the server's text."""
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    return f"{text[:10]}T{text[11:]}"


def exact_json(text: str | bytes) -> Any:
    """MySQL JSON embedded as the server wrote it (an ``orjson.Fragment``): no parser rounds its numbers
    (18446744073709551616, 0.1000000000000000000001 stay as they are), the way PostgreSQL's json is answered."""
    return orjson.Fragment(text)
