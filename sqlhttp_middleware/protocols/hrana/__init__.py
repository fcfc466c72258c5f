"""libSQL's Hrana over HTTP, versions 2 and 3 in JSON, as ``@libsql/client`` speaks it, for SQLite targets.

The client's URL is ``http://your.app{mount}/TARGET/`` (with the trailing slash: the client resolves ``v2/pipeline``
against it, which replaces the last segment of a URL without one). It posts pipelines to
``{mount}/TARGET/v2/pipeline`` (or ``v3/pipeline``): a baton naming its stream (null opens one) and requests run in
order on that stream's connection, each answering ``ok`` or ``error`` in a 200 reply. A pipeline that ends with
``close`` (``execute()``, ``batch()``, ``executeMultiple()``) holds nothing afterwards; one that does not
(``transaction()``) keeps its stream as a session (:mod:`~sqlhttp_middleware.engine.sessions`), continued by the
baton of its answer. ``GET v2`` and ``GET v3`` answer 200 as sqld does; the protobuf encoding is not served, and its
probe answers 404, so a v3 client keeps to JSON. See ``docs/protocols/libsql.md``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ... import errors
from ...engine.rows import RowPieces
from ...engine.streams import StreamConnection
from ...engine.work import Body, Claim, Limits, Statement, Stream, Work
from ...http import Request, Response
from ...options import Options, ResolvedTarget
from ...sqltext import problem
from ..base import Protocol, json_object
from .values import CursorStep, StatementResult, argument

__all__ = ["CURSOR", "Cursor", "Hrana", "Pipeline", "pipeline_path"]

CURSOR = "hrana-cursor"  # the name a handed-over v3/cursor request goes by

_REQUEST_TYPES = frozenset({"execute", "batch", "sequence", "describe", "store_sql", "close_sql", "close",
                            "get_autocommit"})
_V3_ONLY = frozenset({"get_autocommit"})
_MAX_STORED_SQL = 150
_READONLY_BEGIN = re.compile(r"\s*BEGIN\s+(?:TRANSACTION\s+)?READONLY\s*;?\s*\Z", re.IGNORECASE)
_WRITE_BEGIN = re.compile(r"\s*BEGIN\s+(?:IMMEDIATE|EXCLUSIVE)\b", re.IGNORECASE)
_EXPLAIN = re.compile(r"\s*EXPLAIN\b", re.IGNORECASE)
_SELECT_LIKE = re.compile(r"\s*(?:SELECT|WITH|VALUES)\b", re.IGNORECASE)
# Parameters, past quoted text and comments: ?, ?NNN, :name, @name, $name.
_TOKENS = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|\Z)"
    r"|(\?\d*|[:@$][A-Za-z_][A-Za-z0-9_$]*(?:::[A-Za-z0-9_]+)*)", re.DOTALL)
# Codes the client exposes for our own refusals inside a pipeline (a statement's errors carry SQLite's own).
_CODES: dict[type[errors.SQLHTTPError], str] = {
    errors.BindingError: "ARGS_INVALID",
    errors.ResultTooLarge: "RESPONSE_TOO_LARGE",
    errors.StatementTimeout: "SQLITE_INTERRUPT",
    errors.MultipleStatements: "SQL_MANY_STATEMENTS",
}


def pipeline_path(mount: str) -> re.Pattern[str]:
    """The paths Hrana's clients use under ``mount``: TARGET/v2, TARGET/v3/pipeline, ..."""
    return re.compile(re.escape(mount) + r"/(?:([^/]+)/)?(v2|v3|v3-protobuf)(?:/(pipeline|cursor))?")


@dataclass(frozen=True)
class HranaRequest:
    work: Work
    program: Pipeline


class Hrana(Protocol[HranaRequest]):
    name = "hrana"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.paths = pipeline_path(options.path)

    def probe(self, method: str, path: str) -> Response | None:
        """The version probes (``GET v2``, ``GET v3``), and what answers before a body: None for a pipeline."""
        match = self.paths.fullmatch(path)
        assert match is not None
        target, version, endpoint = match.groups()
        if version == "v3-protobuf":
            raise errors.NotFound("the protobuf encoding is not served here; use the JSON endpoints (v2/pipeline "
                                  "or v3/pipeline)")
        if target is None:
            raise errors.NotFound(f"the client's URL must name the target and end with a slash: "
                                  f"http://HOST{self.options.path}/TARGET/")
        if endpoint is None:
            if method not in ("GET", "HEAD"):
                raise errors.MethodNotAllowed(f"{method} is not allowed here; GET it", headers={"Allow": "GET"})
            return Response(200, b"Hello, this is sqlhttp-middleware speaking Hrana over HTTP\n",
                            [("content-type", "text/plain")])
        if endpoint == "cursor" and version != "v3":
            raise errors.NotFound("cursors are Hrana 3's: POST v3/cursor")
        if method != "POST":
            raise errors.MethodNotAllowed(f"{method} is not allowed on a pipeline; POST it",
                                          headers={"Allow": "POST"})
        return None

    def parse(self, request: Request) -> HranaRequest:
        match = self.paths.fullmatch(request.path)
        assert match is not None
        target_name, version = match.group(1), match.group(2)
        target = self.options.targets.get(target_name)
        if target is None:
            raise errors.TargetNotFound(f"no target named {target_name!r} is configured (the URL's path names it)")
        if target.family != "sqlite":
            raise errors.BadRequest(f"target {target.name!r} is not SQLite; libSQL's client speaks SQLite only")
        if not target.api_keys:
            raise errors.AuthenticationFailed(
                f"target {target.name!r} has no API keys: libSQL's client authenticates with Authorization: Bearer "
                "<key>, so give the target api_keys")
        credential = request.headers.get("authorization", "")
        if match.group(3) == "cursor":
            return self.read_cursor(target, request.body, credential)
        return self.read(target, request.body, credential, 3 if version == "v3" else 2)

    def read(self, target: ResolvedTarget, body: bytes, credential: str, version: int = 3) -> HranaRequest:
        """The work of a pipeline's body (also where a handed-over request is read again)."""
        document = json_object(body, "a JSON object with 'baton' and 'requests'")
        baton = document.get("baton")
        if baton is not None and (not isinstance(baton, str) or not baton):
            raise errors.BadRequest("'baton' must be a string, or null to open a stream")
        requests = document.get("requests")
        if not isinstance(requests, list):
            raise errors.BadRequest("'requests' must be an array of stream requests")
        statements: list[Statement] = []
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or item.get("type") not in _REQUEST_TYPES:
                raise errors.BadRequest(f"requests[{index}]: unknown request type; one of "
                                        + ", ".join(sorted(_REQUEST_TYPES)))
            if version == 2 and item["type"] in _V3_ONLY:
                raise errors.BadRequest(f"requests[{index}]: {item['type']} needs Hrana 3 (v3/pipeline)")
            for sql in _texts(item):
                statements.append(Statement(sql))
        closes = any(item["type"] == "close" for item in requests)
        # One statement that opens and closes its stream may run on the event loop, and run again on a thread.
        single = (baton is None and closes and len(statements) == 1 and len(requests) <= 2
                  and requests[0]["type"] == "execute")
        stream = Stream(baton, closes, credential=credential, protocol=self.name, payload=body, inline=single)
        work = Work(target, Claim("", "", ""), tuple(statements), stream=stream)
        return HranaRequest(work, Pipeline(requests, self.options.max_sql_bytes))

    def read_cursor(self, target: ResolvedTarget, body: bytes, credential: str) -> HranaRequest:
        """The work of a ``v3/cursor`` body: one batch, answered as lines of entries."""
        document = json_object(body, "a JSON object with 'baton' and 'batch'")
        baton = document.get("baton")
        if baton is not None and (not isinstance(baton, str) or not baton):
            raise errors.BadRequest("'baton' must be a string, or null to open a stream")
        batch = {"type": "batch", "batch": document.get("batch")}
        stream = Stream(baton, False, credential=credential, protocol=CURSOR, payload=body)
        work = Work(target, Claim("", "", ""), tuple(Statement(sql) for sql in _texts(batch)), stream=stream)
        return HranaRequest(work, Cursor([batch], self.options.max_sql_bytes))

    def respond(self, parsed: HranaRequest, body: Body) -> Response:
        if isinstance(parsed.program, Cursor):
            return Response(200, body, [("content-type", "text/plain"), ("cache-control", "no-store")])
        return super().respond(parsed, body)

    def builder(self, parsed: HranaRequest, limits: Limits) -> Pipeline:
        parsed.program.limits = limits
        return parsed.program

    def error_body(self, error: errors.SQLHTTPError) -> tuple[int, bytes]:
        status = error.status
        if isinstance(error, errors.DatabaseError):
            status = 400
        return status, orjson.dumps({"message": error.message, "code": error.code})


def _texts(item: dict[str, Any]) -> list[str]:
    """The SQL texts a request carries, for the authorize hook and the logs."""
    kind = item["type"]
    if kind == "execute":
        stmt = item.get("stmt")
        return [stmt["sql"]] if isinstance(stmt, dict) and isinstance(stmt.get("sql"), str) else []
    if kind == "batch":
        batch = item.get("batch")
        steps = batch.get("steps") if isinstance(batch, dict) else None
        if not isinstance(steps, list):
            return []
        return [s["stmt"]["sql"] for s in steps if isinstance(s, dict) and isinstance(s.get("stmt"), dict)
                and isinstance(s["stmt"].get("sql"), str)]
    if kind in ("sequence", "describe", "store_sql") and isinstance(item.get("sql"), str):
        return [item["sql"]]
    return []


class Pipeline:
    """A pipeline's requests, run in order on the stream; the StreamProgram the engine runs."""

    def __init__(self, requests: list[dict[str, Any]], max_sql_bytes: int) -> None:
        self.requests = requests
        self.max_sql_bytes = max_sql_bytes
        self.limits: Limits | None = None
        self.closed = False
        self._results: list[bytes] = []
        self._rows: RowPieces | None = None

    # -- running --------------------------------------------------------------------------------------------------

    def run(self, stream: StreamConnection) -> None:
        assert self.limits is not None
        self._rows = RowPieces(self.limits)
        self._results = []
        stored: dict[int, str] = stream.state.setdefault("sql", {})
        for item in self.requests:
            kind = item["type"]
            try:
                if self.closed:
                    raise errors.BadRequest("the stream is closed: no request may follow 'close'")
                response = getattr(self, "_" + kind)(stream, item, stored)
            except errors.SQLHTTPError as error:
                self._results.append(b'{"type":"error","error":' + _error(error) + b"}")
            else:
                self._results.append(b'{"type":"ok","response":' + response + b"}")

    def finish(self, baton: str | None) -> Body:
        return b"".join((b'{"baton":', orjson.dumps(baton), b',"base_url":null,"results":[',
                         b",".join(self._results), b"]}"))

    # -- the requests ---------------------------------------------------------------------------------------------

    def _execute(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        return b'{"type":"execute","result":' + self._statement(stream, item.get("stmt"), stored, 0) + b"}"

    def _batch(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        results: list[bytes] = []
        failures: list[bytes] = []
        steps = _Steps(item, stream)
        for index, stmt in steps:
            if stmt is None:  # its condition was false
                results.append(b"null")
                failures.append(b"null")
                continue
            try:
                results.append(self._statement(stream, stmt, stored, index))
            except errors.SQLHTTPError as error:
                steps.record(False)
                results.append(b"null")
                failures.append(_error(error))
            else:
                steps.record(True)
                failures.append(b"null")
        return b"".join((b'{"type":"batch","result":{"step_results":[', b",".join(results),
                         b'],"step_errors":[', b",".join(failures), b"]}}"))

    def _sequence(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        text = _sql_of(item, stored)
        for index, sql in enumerate(split_statements(text)):
            self._run(stream, Statement(sql), index, StatementResult(self._rows_pieces(), False))
        return b'{"type":"sequence"}'

    def _describe(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        sql = _sql_of(item, stored)
        unfit = problem(sql, "sqlite", self.max_sql_bytes)
        if unfit is not None:
            raise errors.BadRequest(unfit)
        connection = stream.lease.dbapi_connection
        params = _parameters(sql)
        # Nothing runs: EXPLAIN only compiles, and the columns come from a wrapper that reads no row. The
        # parameters are bound to NULL, as sqlite3 insists they all be bound.
        nulls: list[None] | dict[str, None] = (
            {name[1:]: None for name in params if name is not None}
            if params and all(name is not None and name[0] != "?" for name in params) else [None] * len(params))
        explain = bool(_EXPLAIN.match(sql))
        try:
            opcodes: list[str] = []
            if explain:  # changes nothing: running it lists the program of the statement it explains
                connection.execute(sql, nulls).close()
            else:
                opcodes = [row[1] for row in connection.execute("EXPLAIN " + sql, nulls).fetchall()]
            names: list[str] = []
            if _SELECT_LIKE.match(sql):
                cursor = connection.execute(f"SELECT * FROM ({sql.rstrip().rstrip(';')}) LIMIT 0", nulls)
                names = [column[0] for column in cursor.description or ()]
                cursor.close()
        except sqlite3.Error as exc:
            raise stream.support.translate_error(exc) from None
        readonly = not any(op in _WRITES for op in opcodes)
        return orjson.dumps({"type": "describe", "result": {
            "params": [{"name": name} for name in params], "cols": [{"name": n, "decltype": None} for n in names],
            "is_explain": explain, "is_readonly": readonly}})

    def _store_sql(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        sql_id, sql = item.get("sql_id"), item.get("sql")
        if type(sql_id) is not int or not isinstance(sql, str):
            raise errors.BadRequest("store_sql takes an integer 'sql_id' and a string 'sql'")
        if sql_id in stored:
            raise errors.BadRequest(f"an SQL text with id {sql_id} is already stored on this stream")
        if len(stored) >= _MAX_STORED_SQL:
            raise errors.BadRequest(f"a stream stores at most {_MAX_STORED_SQL} SQL texts; close_sql some")
        unfit = problem(sql, "sqlite", self.max_sql_bytes)
        if unfit is not None:
            raise errors.BadRequest(unfit)
        stored[sql_id] = sql
        return b'{"type":"store_sql"}'

    def _close_sql(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        stored.pop(item.get("sql_id"), None)  # type: ignore[arg-type]
        return b'{"type":"close_sql"}'

    def _close(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        self.closed = True
        return b'{"type":"close"}'

    def _get_autocommit(self, stream: StreamConnection, item: dict[str, Any], stored: dict[int, str]) -> bytes:
        return b'{"type":"get_autocommit","is_autocommit":' + (b"false" if stream.in_transaction else b"true") + b"}"

    # -- statements -----------------------------------------------------------------------------------------------

    def _rows_pieces(self) -> RowPieces:
        assert self._rows is not None
        return self._rows

    def _statement(self, stream: StreamConnection, stmt: Any, stored: dict[int, str], index: int,
                   builder: StatementResult | CursorStep | None = None) -> bytes:
        if not isinstance(stmt, dict):
            raise errors.BadRequest("a statement is an object with 'sql' or 'sql_id'")
        sql = _sql_of(stmt, stored)
        args, named = stmt.get("args") or [], stmt.get("named_args") or []
        if not isinstance(args, list) or not isinstance(named, list):
            raise errors.BindingError("'args' and 'named_args' are arrays")
        params: list[Any] | dict[str, Any]
        if named:
            if args:
                raise errors.BindingError("send positional or named arguments, not both in one statement")
            params = {}
            for position, pair in enumerate(named):
                if not isinstance(pair, dict) or not isinstance(pair.get("name"), str) or not pair["name"]:
                    raise errors.BindingError(f"named_args[{position}] is {{'name': ..., 'value': ...}}")
                name = pair["name"]
                params[name[1:] if name[0] in ":@$" else name] = argument(pair.get("value"),
                                                                         f"named argument {name!r}")
        else:
            params = [argument(value, f"argument {position + 1}") for position, value in enumerate(args)]
        want_rows = stmt.get("want_rows", True) is not False
        if stream.target.read_only and _WRITE_BEGIN.match(sql):
            sql = "BEGIN DEFERRED"  # a read-only target's transactions may read, never write (nor lock)
        elif _READONLY_BEGIN.match(sql):  # libSQL's BEGIN TRANSACTION READONLY: SQLite reads READONLY as a name
            if not stream.in_transaction:
                stream.read_only_transaction = True
            sql = "BEGIN DEFERRED"
        if builder is None:
            builder = StatementResult(self._rows_pieces(), want_rows)
        builder.want_rows = want_rows
        self._run(stream, Statement(sql, params, "qmark"), index, builder)
        return builder.body

    def _run(self, stream: StreamConnection, statement: Statement, index: int,
             builder: StatementResult | CursorStep) -> None:
        unfit = problem(statement.sql, "sqlite", self.max_sql_bytes)
        if unfit is not None:
            raise errors.BadRequest(unfit)
        stream.execute(index, statement, builder)


def _sql_of(item: dict[str, Any], stored: dict[int, str]) -> str:
    sql, sql_id = item.get("sql"), item.get("sql_id")
    if isinstance(sql, str) and sql_id is None:
        return sql
    if sql is None and type(sql_id) is int:
        if sql_id not in stored:
            raise errors.BadRequest(f"no SQL text with id {sql_id} is stored on this stream")
        return stored[sql_id]
    raise errors.BadRequest("give exactly one of 'sql' (a string) and 'sql_id' (an integer)")


class _Steps:
    """A batch's steps in order: ``(index, stmt)``, with None for a step whose condition is false, each condition
    evaluated on the outcomes so far, which the caller reports with :meth:`record` for every step it runs."""

    def __init__(self, item: dict[str, Any], stream: StreamConnection) -> None:
        batch = item.get("batch")
        steps = batch.get("steps") if isinstance(batch, dict) else None
        if not isinstance(steps, list):
            raise errors.BadRequest("a batch is {'steps': [...]}")
        self.steps = steps
        self.stream = stream
        self.outcomes: list[bool | None] = []  # per step: True ok, False error, None skipped

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for index, step in enumerate(self.steps):
            if not isinstance(step, dict):
                raise errors.BadRequest(f"batch step {index} is not an object")
            condition = step.get("condition")
            if condition is not None and not self._holds(condition):
                self.outcomes.append(None)
                yield index, None
            else:
                yield index, step.get("stmt")

    def record(self, ok: bool) -> None:
        self.outcomes.append(ok)

    def _holds(self, condition: Any) -> bool:
        if not isinstance(condition, dict):
            raise errors.BadRequest("a batch condition is an object with a 'type'")
        kind = condition.get("type")
        if kind in ("ok", "error"):
            step = condition.get("step")
            if type(step) is not int or not 0 <= step < len(self.outcomes):
                raise errors.BadRequest("a condition's 'step' names an earlier step of the batch")
            return self.outcomes[step] is (kind == "ok")
        if kind == "not":
            return not self._holds(condition.get("cond"))
        if kind in ("and", "or"):
            conds = condition.get("conds")
            if not isinstance(conds, list):
                raise errors.BadRequest(f"an '{kind}' condition has 'conds': [...]")
            values = [self._holds(c) for c in conds]
            return all(values) if kind == "and" else any(values)
        if kind == "is_autocommit":
            return not self.stream.in_transaction
        raise errors.BadRequest(f"unknown condition type {kind!r} (ok, error, not, and, or, is_autocommit)")


class Cursor(Pipeline):
    """``v3/cursor``: one batch, answered as lines: the baton, then ``step_begin``, ``row``, ``step_end`` or
    ``step_error`` entries, and an ``error`` entry if the batch itself fails. The lines are written once the batch
    has run, not while it runs: a stream held open while the client reads would hold its pooled connection (and on
    SQLite its read snapshot, or the write lock) for as long as the client takes, past every deadline and cap."""

    def run(self, stream: StreamConnection) -> None:
        assert self.limits is not None
        self._rows = RowPieces(self.limits)
        self._results = []
        stored: dict[int, str] = stream.state.setdefault("sql", {})
        try:
            steps = _Steps(self.requests[0], stream)
            for index, stmt in steps:
                if stmt is None:
                    continue
                builder = CursorStep(self._rows, index)
                try:
                    self._statement(stream, stmt, stored, index, builder)
                except errors.SQLHTTPError as error:
                    steps.record(False)
                    self._results.extend(builder.lines)  # what it sent before failing, as a streaming server would
                    self._results.append(b'{"type":"step_error","step":%d,"error":%s}' % (index, _error(error)))
                else:
                    steps.record(True)
                    self._results.extend(builder.lines)
        except errors.SQLHTTPError as error:
            self._results.append(b'{"type":"error","error":' + _error(error) + b"}")

    def finish(self, baton: str | None) -> Body:
        head = b'{"baton":' + orjson.dumps(baton) + b',"base_url":null}'
        return b"\n".join((head, *self._results)) + b"\n"


def _error(error: errors.SQLHTTPError) -> bytes:
    code = error.database_code
    message = error.message
    if isinstance(error, errors.StatementTimeout):
        code = "SQLITE_INTERRUPT"
    elif code is not None:
        message = f"SQLite error: {error.database_message or error.message}"
    else:
        code = _CODES.get(type(error), error.code)
        if isinstance(error, errors.DatabaseError) and "binding" in message.lower():
            code = "ARGS_INVALID"
    return orjson.dumps({"message": message, "code": code})


def split_statements(text: str) -> list[str]:
    """``text`` cut into its statements at the semicolons that end one (not those in strings, comments or a
    trigger's body), as SQLite itself reads it."""
    statements: list[str] = []
    current = ""
    for piece in text.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    if current.strip(" \t\r\n;"):
        statements.append(current[:-1])
    return [s for s in statements if s.strip(" \t\r\n;")]


def _parameters(sql: str) -> list[str | None]:
    """The statement's parameters, by SQLite's numbering: ``?`` nameless, ``?NNN`` and names as written."""
    slots: list[str | None] = []
    named: dict[str, int] = {}
    for match in _TOKENS.finditer(sql):
        token = match.group(1)
        if token is None:
            continue
        if len(token) == 1:  # a bare ?
            slots.append(None)
        elif token.startswith("?"):
            number = int(token[1:])
            while len(slots) < number:
                slots.append(None)
            slots[number - 1] = token
        elif token not in named:
            named[token] = len(slots)
            slots.append(token)
    return slots


# Opcodes that change the database (what sqlite3_stmt_readonly looks for, as EXPLAIN shows it).
_WRITES = frozenset({"OpenWrite", "Insert", "Delete", "IdxInsert", "IdxDelete", "CreateBtree", "Destroy", "Clear",
                     "DropTable", "DropIndex", "DropTrigger", "ParseSchema", "SetCookie", "Vacuum", "IncrVacuum",
                     "JournalMode", "InsertInt"})
