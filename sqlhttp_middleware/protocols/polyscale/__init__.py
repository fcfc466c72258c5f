"""PolyScale's Serverless API format: ``POST {mount}`` with a JSON body naming the target (``cacheId``), the login,
the provider and the SQL with knex bindings; rows back as JSON.

A batch (our addition, for clients other than PolyScale's): ``"batch": [{"sql": ..., "bindings": ...}, ...]``
instead of ``"sql"``, with ``"isolationLevel"``, ``"readOnly"`` and ``"deferrable"`` (PostgreSQL), run in one
transaction; the answer is ``{"results": [...]}``, one result per statement in the asked shape, or the error with
the index of the statement that failed (``"statement"``). See ``docs/protocols/polyscale.md``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Dialect

from ... import errors
from ...bindings import compile_sql
from ...dialects import dialect_support
from ...engine.work import ISOLATION_LEVELS, Claim, Limits, Statement, Transaction, Work
from ...http import Request
from ...options import Options, ResolvedTarget
from ..base import Protocol, json_object
from .encode import PolyScaleQuery, PolyScaleResult, error_body
from .openapi import openapi_document

__all__ = ["PolyScale", "PolyScaleQuery", "openapi_document"]

_STRING_FIELDS = ("cacheId", "username", "password", "database", "provider")
_SHAPES = ("rows", "full")
_ROW_MODES = ("object", "array")


class PolyScale(Protocol[PolyScaleQuery]):
    name = "polyscale"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        # The quoting rules of each target's dialect, for identifier bindings; no connection needed. Built with
        # the qmark paramstyle so quoting does not double '%' (compile_sql does that once, for the whole text).
        self._dialects: dict[str, Dialect] = {
            name: t.url.get_dialect()(paramstyle="qmark")  # type: ignore[call-arg]
            for name, t in options.targets.items()
        }

    def parse(self, request: Request) -> PolyScaleQuery:
        document = json_object(request.body)
        for name in _STRING_FIELDS:
            value = document.get(name)
            if type(value) is not str or not value:
                _string(document, name)  # says what is wrong with it
        batch = document.get("batch")
        if batch is not None and "sql" in document:
            raise errors.BadRequest("send either 'sql' or 'batch', not both", field="batch")
        if batch is None:
            sources = [(_sql(document.get("sql"), "sql"), document.get("bindings"))]
        else:
            if not isinstance(batch, list) or not batch:
                raise errors.BadRequest("the field 'batch' must be a non-empty array of {sql, bindings} objects",
                                        field="batch")
            sources = []
            for index, item in enumerate(batch):
                if not isinstance(item, dict):
                    raise errors.BadRequest(f"batch[{index}] must be an object with 'sql'", field="batch")
                sources.append((_sql(item.get("sql"), f"batch[{index}].sql"), item.get("bindings")))
        for _, bindings in sources:
            if bindings is not None and not isinstance(bindings, (list, dict)):
                raise errors.BadRequest("the field 'bindings' must be an array or an object", field="bindings")
        shape = document.get("shape", "rows")
        if shape not in _SHAPES:
            raise errors.BadRequest("the field 'shape' must be \"rows\" or \"full\"", field="shape")
        row_mode = document.get("rowMode", "object")
        if row_mode not in _ROW_MODES:
            raise errors.BadRequest("the field 'rowMode' must be \"object\" or \"array\"", field="rowMode")
        timeout = document.get("timeout")
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < 1e9
        ):
            raise errors.BadRequest("the field 'timeout' must be a positive number of seconds", field="timeout")
        transaction = _transaction(document) if batch is not None else None

        target = self.options.targets.get(document["cacheId"])
        if target is None:
            raise errors.TargetNotFound(f"no target named {document['cacheId']!r} is configured")
        provider = document["provider"]
        if provider not in target.providers:
            expected = " or ".join(sorted(target.providers))
            raise errors.ProviderMismatch(
                f"target {target.name!r} is {expected}, but the request says provider {provider!r}"
            )
        database = document["database"]
        if target.fixed_database is not None and database != target.fixed_database:
            raise errors.DatabaseNotAllowed(
                f"target {target.name!r} serves only the database {target.fixed_database!r}"
            )
        statements = []
        for index, (sql, bindings) in enumerate(sources):
            try:
                statements.append(self.compile(target, sql, bindings))
            except errors.SQLHTTPError as error:
                if batch is not None:
                    error.statement = index
                raise
        work = Work(
            target=target,
            claim=Claim(document["username"], document["password"], database),
            statements=tuple(statements),
            transaction=transaction,
            timeout=timeout,
        )
        cache = document.get("cache", True)
        if not isinstance(cache, bool):
            raise errors.BadRequest("the field 'cache' must be true or false", field="cache")
        return PolyScaleQuery(work, shape, row_mode, batch=batch is not None, cache=cache)

    def compile(self, target: ResolvedTarget, sql: str, bindings: Any) -> Statement:
        """knex's ``sql`` and ``bindings`` as a statement in the target driver's paramstyle."""
        support = dialect_support(target.family)
        text, params = compile_sql(
            sql,
            bindings,
            dialect=target.family,  # type: ignore[arg-type]
            paramstyle=support.paramstyle,  # type: ignore[arg-type]
            quote_identifier=(
                _backticks if target.family == "sqlite"
                else self._dialects[target.name].identifier_preparer.quote_identifier
            ),
        )
        return Statement(text, params, support.paramstyle)  # type: ignore[arg-type]

    def builder(self, parsed: PolyScaleQuery, limits: Limits) -> PolyScaleResult:
        return PolyScaleResult(parsed, limits)

    def error_body(self, error: errors.SQLHTTPError) -> tuple[int, bytes]:
        return error.status, error_body(error)


def _backticks(name: str) -> str:
    # SQLite identifiers are quoted as knex quotes them: SQLite reads a double-quoted name that matches no column as
    # a string, so a misspelt identifier binding would select its own name instead of failing; a backticked one
    # is always an identifier.
    return "`" + name.replace("`", "``") + "`"


def _string(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        raise errors.BadRequest(f"the field {name!r} is missing", field=name)
    if not isinstance(value, str) or not value:
        raise errors.BadRequest(f"the field {name!r} must be a non-empty string", field=name)
    return value


def _sql(value: Any, name: str) -> str:
    if value is None:
        raise errors.BadRequest(f"the field {name!r} is missing", field=name.split("[", 1)[0])
    if not isinstance(value, str) or not value:
        raise errors.BadRequest(f"the field {name!r} must be a non-empty string", field=name.split("[", 1)[0])
    if "\x00" in value:
        # libpq ends the text at a NUL, silently: "delete from t\x00 where id = 1" would delete every row.
        raise errors.BadRequest(f"the field {name!r} contains a NUL character", field=name.split("[", 1)[0])
    return value


def _transaction(document: dict[str, Any]) -> Transaction:
    isolation = document.get("isolationLevel")
    if isolation is not None:
        if not isinstance(isolation, str) or isolation.lower() not in ISOLATION_LEVELS:
            raise errors.BadRequest("the field 'isolationLevel' must be one of " + ", ".join(
                f'"{level}"' for level in ISOLATION_LEVELS), field="isolationLevel")
        isolation = isolation.lower()
    flags = {}
    for name in ("readOnly", "deferrable"):
        value = document.get(name)
        if value is not None and not isinstance(value, bool):
            raise errors.BadRequest(f"the field {name!r} must be true or false", field=name)
        flags[name] = value
    return Transaction(isolation, flags["readOnly"], flags["deferrable"])  # type: ignore[arg-type]
