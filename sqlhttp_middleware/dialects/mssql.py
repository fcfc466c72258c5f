"""SQL Server through pymssql."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import errors
from .base import NumberedErrors, Session, auth_failed, error_number, isolation_sql

if TYPE_CHECKING:
    from ..engine.work import Transaction


class MSSQLSupport(NumberedErrors):
    """SQL Server through pymssql (FreeTDS, bundled in its wheel). No SQL Server runs in our test suite."""

    family = "mssql"

    def connect_args(self, connect_timeout: float) -> dict[str, Any]:
        return {"login_timeout": max(1, round(connect_timeout))}

    def column_types(self, cursor: Any, rows: list[Any]) -> list[str | None]:
        return [_MSSQL_TYPES.get(column[1]) for column in cursor.description]

    def prepare_session(self, dbapi_connection: Any, session: Session, server: Any) -> None:
        # pymssql's per-connection query timeout, in whole seconds (its _mssql connection owns it).
        inner = getattr(dbapi_connection, "_conn", None)
        if inner is not None:
            inner.query_timeout = max(1, math.ceil(session.timeout))

    tracks_transactions = False

    def in_transaction(self, dbapi_connection: Any) -> bool:
        return False  # autocommit mode; an explicit BEGIN TRANSACTION is undone by the rollback on error paths

    def begin(self, transaction: Transaction, read_only: bool) -> list[str]:
        super().begin(transaction, read_only)
        if read_only or transaction.read_only:
            raise errors.BadRequest("SQL Server has no read-only transactions; send the batch without read-only")
        isolation = [f"SET TRANSACTION {isolation_sql(transaction)}"] if transaction.isolation else []
        return [*isolation, "BEGIN TRANSACTION"]

    def translate_connect_error(self, exc: BaseException, target: str, username: str) -> errors.SQLHTTPError:
        if error_number(exc) == 18456:
            return auth_failed(target, username)
        if error_number(exc) == 4060:
            return errors.UnknownDatabase(f"cannot open the requested database on target {target!r}")
        return super().translate_connect_error(exc, target, username)

    def error_message(self, exc: BaseException) -> str:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        if len(args) >= 2:
            text = args[1].decode("utf-8", "replace") if isinstance(args[1], bytes) else str(args[1])
            # pymssql appends "DB-Lib error message ..." lines that repeat the server's text with host details.
            return text.split("DB-Lib error message", 1)[0].strip() or "the statement failed"
        return super().error_message(exc)


_MSSQL_TYPES: dict[int, str] = {1: "string", 2: "binary", 3: "number", 4: "datetime", 5: "decimal"}
