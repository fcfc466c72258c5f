"""Running one statement: bind, check out a connection, execute, fetch, encode, and leave nothing behind.

Connections run in autocommit mode, so a single statement commits on success and undoes itself on failure without
the extra BEGIN/COMMIT round trips. If the statement itself opened a transaction (``BEGIN``), it is rolled back
before the connection goes back to the pool: the client has no later request in which to finish it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.engine import Dialect

from . import errors
from .bindings import compile_sql
from .dialects import DialectSupport, dialect_support
from .encoding import encode_row, encode_value
from .engines import EngineCache, Lease
from .options import ResolvedTarget

__all__ = ["Query", "Result", "Runner"]


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


@dataclass(frozen=True)
class Result:
    columns: list[str]
    types: list[str | None]
    rows: list[list[Any]]  # already JSON-safe
    row_count: int | None
    last_insert_id: Any

    def document(self, query: Query) -> Any:
        rows: list[Any] = self.rows
        if query.row_mode == "object":
            names = self.columns
            rows = [dict(zip(names, row, strict=True)) for row in rows]
        if query.shape == "rows":
            return rows
        return {
            "columns": [{"name": name, "type": kind} for name, kind in zip(self.columns, self.types, strict=True)],
            "rows": rows,
            "rowCount": self.row_count,
            "lastInsertId": encode_value(self.last_insert_id),
        }


class Runner:
    """Executes queries against the targets of one middleware instance."""

    def __init__(self, engines: EngineCache, targets: Mapping[str, ResolvedTarget]) -> None:
        self._engines = engines
        # The quoting rules of each target's dialect, for identifier bindings; no connection needed. Built with
        # the qmark paramstyle so quoting does not double '%' (compile_sql does that once, for the whole text).
        self._dialects: dict[str, Dialect] = {
            name: t.url.get_dialect()(paramstyle="qmark") for name, t in targets.items()  # type: ignore[call-arg]
        }

    def run(self, query: Query) -> Result:
        target = query.target
        support = dialect_support(target.family)
        sql, params = compile_sql(
            query.sql,
            query.bindings,
            dialect=target.family,  # type: ignore[arg-type]
            paramstyle=support.paramstyle,  # type: ignore[arg-type]
            quote_identifier=self._dialects[target.name].identifier_preparer.quote_identifier,
        )
        if target.family == "sqlite" and not target.check_user(query.username, query.password):
            raise errors.AuthenticationFailed(
                f"authentication failed for user {query.username!r} on target {target.name!r}"
            )
        with self._engines.connection(target, query.username, query.password, query.database) as lease:
            return self._execute(lease, support, sql, params)

    def _execute(self, lease: Lease, support: DialectSupport, sql: str, params: list[Any]) -> Result:
        connection = lease.dbapi_connection
        dbapi_error: type[BaseException] = lease.entry.engine.dialect.loaded_dbapi.Error
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            description = cursor.description
            if description is None:
                columns: list[str] = []
                raw_rows: list[Any] = []
                row_count = cursor.rowcount if cursor.rowcount >= 0 else None
            else:
                columns = [column[0] for column in description]
                raw_rows = cursor.fetchall()
                row_count = len(raw_rows)
            types = support.column_types(cursor, raw_rows) if description is not None else []
            result = Result(
                columns=columns,
                types=types,
                rows=[encode_row(row) for row in raw_rows],
                row_count=row_count,
                last_insert_id=support.last_insert_id(cursor),
            )
        except dbapi_error as exc:
            if lease.entry.engine.dialect.is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                lease.broken = True
                raise errors.DatabaseUnavailable(
                    "the connection to the database was lost while running the statement; "
                    "it may or may not have been applied",
                ) from None
            self._leave_no_transaction(lease, support)
            raise support.translate_error(exc) from None
        finally:
            try:
                cursor.close()
            except dbapi_error:
                lease.broken = True
        self._leave_no_transaction(lease, support)
        return result

    @staticmethod
    def _leave_no_transaction(lease: Lease, support: DialectSupport) -> None:
        connection = lease.dbapi_connection
        try:
            if support.in_transaction(connection):
                connection.rollback()
        except Exception:
            lease.broken = True
