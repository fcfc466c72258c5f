"""Neon's SQL-over-HTTP protocol, as ``@neondatabase/serverless`` speaks it in HTTP mode (``neon()``), for
PostgreSQL targets.

Requests arrive at the mount's path and are told apart by their ``Neon-Connection-String`` header,
``postgresql://USER:PASSWORD@TARGET/DATABASE``, whose host names the target (never a host we connect to). The body
is ``{"query": ..., "params": [...]}`` with ``$1`` parameters bound server-side as text, or a batch
``{"queries": [...]}`` run in one transaction under the ``Neon-Batch-*`` headers. Every value comes back as
PostgreSQL's own text output with its type OID, so the driver's type parsers see exactly what node-postgres sees
over TCP. SQL errors answer 400 with the SQLSTATE in ``code`` and the server's fields, the one status on which
the driver reads the body. See ``docs/protocols/neon.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from ... import errors
from ...engine.rows import RowPieces, answer, too_large
from ...engine.work import Body, Claim, Column, Isolation, Limits, ResultInfo, Statement, Transaction, Work
from ...http import JSON_HEADERS, Request, Response
from ..base import Protocol, json_object

__all__ = ["Neon", "NeonQuery", "NeonResult", "pg_text_param"]

CONNECTION_STRING = "neon-connection-string"
_BATCH_HEADERS = ("neon-batch-isolation-level", "neon-batch-read-only", "neon-batch-deferrable")
_ISOLATION: dict[str, Isolation] = {
    "ReadUncommitted": "read uncommitted", "ReadCommitted": "read committed",
    "RepeatableRead": "repeatable read", "Serializable": "serializable",
}
_BODY_FIELDS = ("severity", "detail", "hint", "position", "internalPosition", "internalQuery", "where", "schema",
                "table", "column", "dataType", "constraint", "file", "line", "routine")
# Our refusals that Neon's own server answers 400 (and the SQLSTATE PostgreSQL would give, where it has one).
_FOUR_HUNDRED: dict[type[errors.SQLHTTPError], str] = {
    errors.AuthenticationFailed: "28P01",
    errors.UnknownDatabase: "3D000",
    errors.PermissionDenied: "42501",
    errors.TargetNotFound: "",
    errors.BadRequest: "",
}


@dataclass(frozen=True)
class NeonQuery:
    work: Work
    array_modes: tuple[bool, ...]  # per statement: rows as arrays (the driver's way) or as objects
    batch: bool
    echo: tuple[tuple[str, str], ...] = ()  # the batch headers, echoed on success as Neon's server does


class Neon(Protocol[NeonQuery]):
    name = "neon"
    media_types = frozenset({"application/json", "text/plain"})  # the driver sets no Content-Type: text/plain
    request_headers = (CONNECTION_STRING, "neon-raw-text-output", "neon-array-mode", *_BATCH_HEADERS)
    exposed_headers = _BATCH_HEADERS
    cache_headers = ("authorization", CONNECTION_STRING, "neon-raw-text-output", "neon-array-mode", *_BATCH_HEADERS)

    def claims(self, headers: Mapping[str, str]) -> bool:
        return CONNECTION_STRING in headers

    _last: tuple[str, tuple[Claim, str]] = ("", (Claim("", "", ""), ""))  # most requests repeat the one before

    def parse(self, request: Request) -> NeonQuery:
        headers = request.headers
        text = headers.get(CONNECTION_STRING, "")
        last, parsed = self._last
        if text != last or not last:
            parsed = _connection_string(text)
            self._last = (text, parsed)
        claim, target_name = parsed
        target = self.options.targets.get(target_name)
        if target is None:
            raise errors.TargetNotFound(f"no target named {target_name!r} is configured (the connection string's "
                                        "host names the target)")
        if target.family != "postgresql":
            raise errors.BadRequest(f"target {target.name!r} is not PostgreSQL; Neon's driver speaks PostgreSQL only")
        if target.fixed_database is not None and claim.database != target.fixed_database:
            raise errors.DatabaseNotAllowed(
                f"target {target.name!r} serves only the database {target.fixed_database!r}")
        document = json_object(request.body, "a JSON object with 'query' or 'queries'")
        array_mode = _flag(headers, "neon-array-mode", default=False)
        if "queries" in document:
            queries = document["queries"]
            if not isinstance(queries, list):
                raise errors.BadRequest("the field 'queries' must be an array of {query, params} objects")
            statements, modes = [], []
            for index, item in enumerate(queries):
                if not isinstance(item, dict):
                    raise errors.BadRequest(f"queries[{index}] must be an object with 'query'")
                statements.append(_statement(item, f"queries[{index}]"))
                mode = item.get("arrayMode", array_mode)
                if not isinstance(mode, bool):
                    raise errors.BadRequest(f"queries[{index}].arrayMode must be true or false")
                modes.append(mode)
            transaction, echo = _transaction(headers)
            work = Work(target, claim, tuple(statements), transaction, text_values=True)
            return NeonQuery(work, tuple(modes), batch=True, echo=echo)
        work = Work(target, claim, (_statement(document, "the body"),), text_values=True)
        return NeonQuery(work, (array_mode,), batch=False)

    def builder(self, parsed: NeonQuery, limits: Limits) -> NeonResult:
        return NeonResult(parsed, limits)

    def respond(self, parsed: NeonQuery, body: Body) -> Response:
        return Response(200, body, [*JSON_HEADERS, *parsed.echo])

    def error_body(self, error: errors.SQLHTTPError) -> tuple[int, bytes]:
        status, code = error.status, error.sqlstate or ""
        if isinstance(error, errors.DatabaseError):
            status = 400  # with PostgreSQL's own SQLSTATE, which translate_error kept
        else:
            for kind, state in _FOUR_HUNDRED.items():
                if isinstance(error, kind):
                    status, code = 400, code or state
                    break
        body: dict[str, Any] = {"message": error.message, "code": code}
        diagnostics = error.diagnostics or {}
        for name in _BODY_FIELDS:
            body[name] = diagnostics.get(name)
        return status, orjson.dumps(body)


class NeonResult:
    """Neon's result objects: ``fields`` with type OIDs, rows of PostgreSQL text values, the command and its
    row count; one object, or ``{"results": [...]}`` for a batch."""

    def __init__(self, query: NeonQuery, limits: Limits) -> None:
        self.query, self.limits = query, limits
        self.rows = RowPieces(limits)
        self._names: list[str] = []
        self._fields = b"[]"
        self._array = True
        self._parts: list[list[bytes]] = []

    def begin(self, index: int, result: ResultInfo) -> None:
        columns = result.columns()
        self._names = [column.name for column in columns]
        self._array = self.query.array_modes[index]
        self._fields = _fields(tuple(columns))

    def add(self, rows: list[Any]) -> bool:
        if self._array:
            return self.rows.add(rows)  # tuples of str and None: orjson writes them as they are
        names = self._names
        return self.rows.add([dict(zip(names, row, strict=True)) for row in rows])

    def end(self, result: ResultInfo) -> None:
        if self.rows.truncated:
            raise too_large(self.limits)
        tag = result.command() or ""
        words = tag.split(" ")
        count_word = words[2] if words[0] == "INSERT" and len(words) > 2 else (words[1] if len(words) > 1 else "")
        self._parts.append([
            b'{"fields":', self._fields, b',"rows":[', *self.rows.take(),
            b'],"command":', orjson.dumps(words[0]),
            b',"rowCount":', count_word.encode() if count_word.isdigit() else b"null",
            b',"rowAsArray":', b"true" if self._array else b"false", b"}",
        ])

    def finish(self) -> Body:
        statements, self._parts = self._parts, []
        return answer(statements, self.query.batch, self.rows)


@functools.lru_cache(maxsize=512)
def _fields(columns: tuple[Column, ...]) -> bytes:
    """``fields`` as JSON; most statements a client sends come back with the same columns."""
    return orjson.dumps([
        {"name": c.name, "dataTypeID": c.type_oid, "tableID": c.table_oid, "columnID": c.column_number,
         "dataTypeSize": c.size, "dataTypeModifier": c.modifier, "format": "text"}
        for c in columns
    ])


def _connection_string(text: str) -> tuple[Claim, str]:
    """The login and target of ``postgresql://USER:PASSWORD@TARGET/DATABASE`` (the host's case kept)."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise errors.BadRequest("the Neon-Connection-String header must be postgresql://USER:PASSWORD@TARGET/DB")
    authority, _, tail = rest.partition("/")
    database = _unquote(tail.split("?", 1)[0].split("#", 1)[0])
    userinfo, at, host = authority.rpartition("@")
    if not at:
        raise errors.BadRequest("the connection string names no user: postgresql://USER:PASSWORD@TARGET/DB")
    username, _, password = userinfo.partition(":")
    host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    if not username or not host or not database:
        raise errors.BadRequest("the connection string needs a user, a target (its host) and a database: "
                                "postgresql://USER:PASSWORD@TARGET/DB")
    return Claim(_unquote(username), _unquote(password), database), _unquote(host)


def _unquote(text: str) -> str:
    return unquote(text) if "%" in text else text  # most parts have nothing to decode


def _flag(headers: Mapping[str, str], name: str, default: bool | None) -> Any:
    value = headers.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise errors.BadRequest(f"the {name} header must be true or false")
    return value.lower() == "true"


def _transaction(headers: Mapping[str, str]) -> tuple[Transaction, tuple[tuple[str, str], ...]]:
    level = headers.get("neon-batch-isolation-level")
    if level is not None and level not in _ISOLATION:
        raise errors.BadRequest("the Neon-Batch-Isolation-Level header must be one of " + ", ".join(_ISOLATION))
    transaction = Transaction(
        _ISOLATION[level] if level is not None else None,
        _flag(headers, "neon-batch-read-only", None),
        _flag(headers, "neon-batch-deferrable", None),
    )
    echo = tuple((name, headers[name]) for name in _BATCH_HEADERS if name in headers)
    return transaction, echo


def _statement(item: dict[str, Any], where: str) -> Statement:
    query = item.get("query")
    if not isinstance(query, str) or not query:
        raise errors.BadRequest(f"{where}: 'query' must be a non-empty string")
    if "\x00" in query:
        raise errors.BadRequest(f"{where}: 'query' contains a NUL character")
    params = item.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        raise errors.BadRequest(f"{where}: 'params' must be an array")
    try:
        values = [pg_text_param(value) for value in params]
    except ValueError as exc:
        error = errors.BindingError(f"{where}: {exc}")
        error.sqlstate = "22021"  # what PostgreSQL answers node-postgres for a NUL in a text parameter
        raise error from None
    return Statement(query, values, "numeric")


def pg_text_param(value: Any) -> str | None:
    """A parameter as the text PostgreSQL parses (what Neon's server does with raw JSON values): strings as they
    are, numbers and booleans as written, arrays as array literals, objects as JSON."""
    if value is None or isinstance(value, str):
        if isinstance(value, str) and "\x00" in value:
            raise ValueError('a parameter contains a NUL character (invalid byte sequence for encoding "UTF8": '
                             "0x00); PostgreSQL text cannot hold one")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "{" + ",".join(_array_element(item) for item in value) + "}"
    return orjson.dumps(value).decode()


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "{" + ",".join(_array_element(item) for item in value) + "}"
    text = pg_text_param(value)
    assert text is not None
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
