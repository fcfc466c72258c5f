"""SQLite through the standard library's sqlite3."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import errors
from .base import DialectSupport, Session

if TYPE_CHECKING:
    from ..engine.work import Statement, Transaction


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

    def on_connect(self, dbapi_connection: Any, read_only: bool, timeout: float) -> None:
        # Clients never choose files: no ATTACH or DETACH, whatever the SQL says. A read-only target may not turn
        # query_only off. The authorizer runs inside SQLite, for every statement it prepares.
        def authorize(action: int, arg1: str | None, arg2: str | None, database: str | None,
                      trigger: str | None) -> int:
            if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
                return sqlite3.SQLITE_DENY
            if (read_only and action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() == "query_only"
                    and arg2 is not None and arg2.strip().lower() not in ("1", "on", "yes", "true")):
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        dbapi_connection.set_authorizer(authorize)
        dbapi_connection.text_factory = utf8_or_bytes
        # Foreign keys enforced, as sqld (libSQL's server) enforces them: SQLite's own default (off) is kept only for
        # compatibility with schemas of before 2009, and a client cannot turn it on for itself (the PRAGMA does
        # nothing inside a transaction, and outside one lasts only for one request's connection).
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    def prepare_session(self, dbapi_connection: Any, session: Session, server: Any) -> None:
        dbapi_connection.execute(f"PRAGMA query_only = {int(session.read_only)}")
        if session.inline:  # on the event loop: a locked database answers at once instead of blocking the loop
            dbapi_connection.execute("PRAGMA busy_timeout = 0")
        deadline = session.deadline
        clock = time.monotonic
        # Called every 1,000 virtual-machine instructions: a non-zero answer interrupts the statement, which SQLite
        # then undoes (in autocommit mode, the whole statement).
        dbapi_connection.set_progress_handler(lambda: clock() > deadline, 1000)

    def end_session(self, dbapi_connection: Any, session: Session) -> None:
        dbapi_connection.set_progress_handler(None, 0)
        if session.inline:
            dbapi_connection.execute(f"PRAGMA busy_timeout = {round(session.busy_timeout * 1000)}")

    def is_busy(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED")

    def is_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted"

    def is_read_only_refusal(self, exc: BaseException) -> bool:
        return "readonly database" in str(exc)

    def is_multiple_statements(self, exc: BaseException) -> bool:
        return "one statement at a time" in str(exc)

    def execute(self, dbapi_connection: Any, statement: Statement, batch: int,
                text_values: bool = False) -> tuple[Any, Iterator[Any]]:
        try:
            return super().execute(dbapi_connection, statement, batch)
        except OverflowError:
            # sqlite3 raises this (not an sqlite3.Error) for integers beyond 64 bits.
            raise errors.BindingError(
                "an integer binding is beyond SQLite's 64-bit range; send large numbers as strings"
            ) from None

    def begin(self, transaction: Transaction, read_only: bool) -> list[str]:
        # SQLite's transactions are serializable, which every isolation level asks at least. A writing batch takes
        # the write lock at once, so it cannot fail half-way to upgrade a read lock.
        super().begin(transaction, read_only)
        if read_only or transaction.read_only:
            return ["PRAGMA query_only = 1", "BEGIN DEFERRED"]  # the next checkout sets query_only back
        return ["BEGIN IMMEDIATE"]

    def in_transaction(self, dbapi_connection: Any) -> bool:
        return bool(dbapi_connection.in_transaction)

    def last_insert_id(self, cursor: Any) -> int | None:
        return int(cursor.lastrowid) if cursor.lastrowid else None

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        return errors.DatabaseUnavailable(f"could not open the database file of target {target!r}")

    def error_code(self, exc: BaseException) -> str | None:
        return getattr(exc, "sqlite_errorname", None)


def utf8_or_bytes(data: bytes) -> str | bytes:
    """A TEXT value: its string, or its bytes (answered in base64) when it is not UTF-8, as SQLite lets TEXT be
    (``CAST(x'ff' AS TEXT)``). sqlite3's own decoding would fail the whole result for that one value."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


_SQLITE_TYPES: dict[type, str] = {int: "integer", float: "real", str: "text", bytes: "blob"}
