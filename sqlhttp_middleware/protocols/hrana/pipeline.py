"""Hrana's requests, run in order on a stream: ``execute``, ``batch`` with its conditions, ``sequence``,
``describe``, stored SQL, ``close`` and ``get_autocommit``; and ``v3/cursor``'s batch answered as lines. Each request
answers ``ok`` or ``error`` on its own; the stream goes on."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import orjson

from ... import errors
from ...engine.rows import RowPieces
from ...engine.streams import StreamConnection
from ...engine.work import Body, Limits, Statement
from ...sqltext import problem
from .values import CursorStep, StatementResult, argument

__all__ = ["Cursor", "Pipeline", "split_statements"]

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
