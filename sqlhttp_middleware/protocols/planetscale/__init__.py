"""PlanetScale's HTTP API, as ``@planetscale/database`` speaks it, for MySQL and MariaDB targets.

The driver posts ``{"query": ..., "session": ...}`` to the absolute path ``/psdb.v1alpha1.Database/Execute`` at
its URL's origin, with ``Authorization: Basic`` carrying the database login; it inlines every value into the SQL
text itself, with MySQL's escaping (its contract: the one-statement rule still holds, multi-statements stay off).
Answering at the origin's root is opt-in (``planetscale_root``, serving ``planetscale_target``, by default the
only MySQL/MariaDB target); the same endpoints answer under the mount as ``{mount}/psdb.v1alpha1.Database/...``
and ``{mount}/TARGET/psdb.v1alpha1.Database/...`` for a driver given a ``fetch`` that rewrites the path.

Rows come back as the database's own bytes (``lengths`` and base64 ``values``, NULL as ``-1``) with Vitess type
names, so the driver's casts see what they see from PlanetScale. SQL errors answer 200 with ``error`` (a vtrpc code
and a message carrying ``(errno N) (sqlstate S)``); our own refusals answer non-2xx with ``error``.

``BEGIN`` (or ``START TRANSACTION``, or a ``SET`` whose effect must last) opens a session
(:mod:`~sqlhttp_middleware.engine.sessions`): one pooled connection, continued by the signed ``session`` every
answer carries, until ``COMMIT`` or ``ROLLBACK``. See ``docs/protocols/planetscale.md``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from ... import errors
from ...dialects.base import first_keyword
from ...engine.rows import too_large
from ...engine.streams import StreamConnection
from ...engine.work import Body, Claim, Limits, ResultInfo, Statement, Stream, Work
from ...http import Request
from ...options import Options, ResolvedTarget
from ..base import Protocol, json_object

__all__ = ["PREFIX", "PlanetScale", "ServerlessResult"]

PREFIX = "/psdb.v1alpha1.Database/"
_METHODS = frozenset({"Execute", "CreateSession"})
_OPENS = frozenset({"begin", "start", "set"})  # statements whose effect outlives them: they open a session
_ENDS = re.compile(r"\s*(?:COMMIT|ROLLBACK)\b(?!\s+(?:WORK\s+)?TO\b)", re.IGNORECASE)
_STATELESS = {"signature": "", "vitessSession": {"autocommit": True}}
# SET TRANSACTION (the next transaction's isolation or access mode) holds nothing: it travels in the session the
# answer carries, and runs right before the BEGIN that comes with it. Only its own words may travel.
_SET_TRANSACTION = re.compile(r"\s*SET\s+TRANSACTION\s+[A-Za-z ,]+;?\s*\Z", re.IGNORECASE)

# connect-rpc codes for our own refusals (non-2xx), by HTTP status.
_CONNECT_CODES = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
                  405: "unimplemented", 408: "deadline_exceeded", 409: "aborted", 413: "resource_exhausted",
                  415: "invalid_argument", 429: "resource_exhausted", 503: "unavailable",
                  504: "deadline_exceeded", 507: "resource_exhausted"}
# vtrpc codes for the database's errors (inside a 200), by MySQL error number (as Vitess maps them).
_VTRPC: dict[int, str] = {
    1062: "ALREADY_EXISTS", 1050: "ALREADY_EXISTS", 1146: "NOT_FOUND", 1049: "NOT_FOUND", 1051: "NOT_FOUND",
    1064: "INVALID_ARGUMENT", 1054: "INVALID_ARGUMENT", 1048: "INVALID_ARGUMENT", 1406: "INVALID_ARGUMENT",
    1264: "INVALID_ARGUMENT", 1366: "INVALID_ARGUMENT", 1292: "INVALID_ARGUMENT", 1364: "INVALID_ARGUMENT",
    1136: "INVALID_ARGUMENT", 1110: "INVALID_ARGUMENT", 1690: "INVALID_ARGUMENT", 3140: "INVALID_ARGUMENT",
    4025: "INVALID_ARGUMENT", 3819: "INVALID_ARGUMENT", 1305: "NOT_FOUND", 1091: "INVALID_ARGUMENT",
    1045: "UNAUTHENTICATED", 1044: "PERMISSION_DENIED", 1142: "PERMISSION_DENIED", 1143: "PERMISSION_DENIED",
    1227: "PERMISSION_DENIED", 1213: "ABORTED", 1205: "DEADLINE_EXCEEDED", 3024: "DEADLINE_EXCEEDED",
    1969: "DEADLINE_EXCEEDED", 1317: "CANCELED", 1792: "FAILED_PRECONDITION", 1451: "FAILED_PRECONDITION",
    1452: "FAILED_PRECONDITION", 1568: "FAILED_PRECONDITION", 1105: "UNKNOWN",
}


@dataclass(frozen=True)
class PlanetScaleQuery:
    work: Work
    program: ServerlessResult
    method: str


class PlanetScale(Protocol[PlanetScaleQuery]):
    name = "planetscale"

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.mount = options.path.rstrip("/")
        self.root = options.planetscale_root
        self.default = _default_target(options)
        self.paths = re.compile(r"(?:" + re.escape(self.mount) + r"(?:/([^/]+))?)?" + re.escape(PREFIX)
                                + r"(Execute|CreateSession)")

    def serves(self, path: str) -> bool:
        match = self.paths.fullmatch(path)
        if match is None:
            return False
        return self.root or path.startswith(self.mount + "/")

    def parse(self, request: Request) -> PlanetScaleQuery:
        match = self.paths.fullmatch(request.path)
        assert match is not None
        name, method = match.group(1) or self.default, match.group(2)
        if not name:
            raise errors.TargetNotFound("no target is named: send to {mount}/TARGET/psdb.v1alpha1.Database/..., or "
                                        "set planetscale_target")
        target = self.options.targets.get(name)
        if target is None:
            raise errors.TargetNotFound(f"no target named {name!r} is configured")
        if target.family != "mysql":
            raise errors.BadRequest(f"target {target.name!r} is not MySQL or MariaDB; PlanetScale's driver speaks "
                                    "MySQL only (it inlines values with MySQL's escaping)")
        database = target.fixed_database
        if not database:
            raise errors.BadRequest(f"target {target.name!r} names no database in its URL, and PlanetScale's driver "
                                    "sends none: add one (mysql://host:3306/DATABASE)")
        credential = request.headers.get("authorization", "")
        username, password = _basic(credential)
        claim = Claim(username, password, database)
        if method == "CreateSession":  # a fresh session: the login checked, nothing held
            parsed = self.read(target, b'{"query": "DO 0"}', credential, claim)
            parsed.program.created = True
            return parsed
        return self.read(target, request.body, credential, claim)

    def read(self, target: ResolvedTarget, body: bytes, credential: str, claim: Claim | None = None
             ) -> PlanetScaleQuery:
        """The work of an Execute body (also where a handed-over request is read again)."""
        if claim is None:
            username, password = _basic(credential)
            claim = Claim(username, password, target.fixed_database or "")
        document = json_object(body, "a JSON object with 'query'")
        sql = document.get("query")
        if not isinstance(sql, str) or not sql.strip():
            raise errors.BadRequest("'query' must be a non-empty string of SQL")
        session = document.get("session")
        baton, pending = None, ""
        if session is not None:
            if not isinstance(session, dict):
                raise errors.BadRequest("'session' must be an object, or null")
            signature = session.get("signature")
            if signature not in (None, "") and not isinstance(signature, str):
                raise errors.BadRequest("'session.signature' must be a string")
            baton = signature or None
            carried = (session.get("vitessSession") or {}).get("nextTransaction", "")
            if isinstance(carried, str) and _SET_TRANSACTION.match(carried):
                pending = carried
        keyword = first_keyword(sql)
        if baton is None and _SET_TRANSACTION.match(sql):
            program = ServerlessResult(sql, True)
            program.deferred = sql  # answered at once, run before the next BEGIN
            stream = Stream(None, True, credential=credential, protocol=self.name, payload=body)
            return PlanetScaleQuery(Work(target, claim, (Statement(sql, (), "qmark"),), text_values=True,
                                         stream=stream), program, "Execute")
        closes = keyword not in _OPENS if baton is None else _ENDS.match(sql) is not None
        stream = Stream(baton, closes, credential=credential, protocol=self.name, payload=body,
                        inline=baton is None and closes)
        work = Work(target, claim, (Statement(sql, (), "qmark"),), text_values=True, stream=stream)
        program = ServerlessResult(sql, closes)
        if pending and keyword in ("begin", "start"):
            program.before = pending
        return PlanetScaleQuery(work, program, "Execute")

    def builder(self, parsed: PlanetScaleQuery, limits: Limits) -> ServerlessResult:
        parsed.program.limits = limits
        return parsed.program

    def error_body(self, error: errors.SQLHTTPError) -> tuple[int, bytes]:
        code = _CONNECT_CODES.get(error.status, "internal" if error.status >= 500 else "invalid_argument")
        return error.status, orjson.dumps({"error": {"code": code, "message": error.message}})


def _default_target(options: Options) -> str:
    if options.planetscale_target:
        return options.planetscale_target
    mysql = [name for name, t in options.targets.items() if t.family == "mysql"]
    return mysql[0] if len(mysql) == 1 else ""


def _basic(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise errors.AuthenticationFailed("send the database login as Authorization: Basic (the driver's URL "
                                          "carries it: http://USER:PASSWORD@host)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.AuthenticationFailed("the Authorization header is not valid Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise errors.AuthenticationFailed("the Basic credentials need a user name and a password")
    # The driver takes them from its URL, where they stay percent-encoded.
    return unquote(username), unquote(password)


class ServerlessResult:
    """One statement's answer in the driver's shape: the StreamProgram the engine runs on the session."""

    def __init__(self, sql: str, closes: bool) -> None:
        self.sql = sql
        self.closes = closes
        self.limits: Limits | None = None
        self.created = False  # answers CreateSession: the session alone
        self.deferred = ""  # a SET TRANSACTION, carried in the answer's session to the next BEGIN
        self.before = ""  # the SET TRANSACTION to run before this BEGIN
        self._result: bytes = b"{}"
        self._error: bytes | None = None
        self._in_transaction = False
        self._started = 0.0
        self._fields = b""
        self._rows: list[bytes] = []
        self._count = 0
        self._size = 0

    @property
    def closed(self) -> bool:
        return self.closes

    def run(self, stream: StreamConnection) -> None:
        self._started = time.perf_counter()
        self._fields, self._rows, self._count, self._size = b"", [], 0, 0
        if self.deferred:
            return  # nothing runs now: see finish()
        try:
            if self.before:
                stream.execute(0, Statement(self.before, (), "qmark"), ServerlessResult(self.before, False))
            stream.execute(0, Statement(self.sql, (), "qmark"), self, prepare=not self.before)
        except errors.SQLHTTPError as error:
            if error.database_code is None and not isinstance(error, errors.StatementTimeout):
                raise  # ours (a cap, a refusal): answered as the driver's non-2xx error
            self._error = _database_error(error)
        self._in_transaction = stream.in_transaction

    # -- the ResultBuilder side -----------------------------------------------------------------------------------

    def begin(self, index: int, result: ResultInfo) -> None:
        names = result.names
        if not names:
            return  # no result set: the counts are the answer
        fields = getattr(result, "driver_fields", lambda: None)()
        self._fields = orjson.dumps([_field(f) for f in fields] if fields and len(fields) == len(names)
                                    else [{"name": name} for name in names])

    def add(self, rows: list[Any]) -> bool:
        assert self.limits is not None
        limits = self.limits
        for row in rows:
            lengths, values = [], []
            for value in row:
                if value is None:
                    lengths.append("-1")
                else:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    lengths.append(str(len(data)))
                    values.append(data)
            encoded = orjson.dumps({"lengths": lengths, "values": base64.b64encode(b"".join(values)).decode()})
            self._count += 1
            self._size += len(encoded) + 1
            if self._count > limits.max_rows or self._size > limits.max_bytes:
                raise too_large(limits)
            self._rows.append(encoded)
        return True

    def end(self, result: ResultInfo) -> None:
        parts = {}
        if self._fields:
            self._result = b'{"fields":' + self._fields + b',"rows":[' + b",".join(self._rows) + b"]}"
            return
        affected = result.row_count()
        insert_id = result.last_insert_id()
        if affected:
            parts["rowsAffected"] = str(affected)
        if insert_id:
            parts["insertId"] = str(insert_id)
        self._result = orjson.dumps(parts)

    def finish(self, baton: str | None = None) -> Body:
        if self.deferred:
            session: dict[str, Any] = {"signature": "", "vitessSession": {"autocommit": True,
                                                                          "nextTransaction": self.deferred}}
            return b'{"session":' + orjson.dumps(session) + b',"result":{},"timing":0.0}'
        session = _STATELESS if baton is None else {
            "signature": baton, "vitessSession": {"autocommit": not self._in_transaction,
                                                  "inTransaction": self._in_transaction}}
        timing = orjson.dumps(round(time.perf_counter() - self._started, 6))
        head = b'{"session":' + orjson.dumps(session)
        if self.created and self._error is None:
            return head + b"}"
        if self._error is not None:
            return head + b',"error":' + self._error + b',"timing":' + timing + b"}"
        return head + b',"result":' + self._result + b',"timing":' + timing + b"}"


def _database_error(error: errors.SQLHTTPError) -> bytes:
    code = error.database_code
    number = int(code) if code is not None and code.isdigit() else None
    vtrpc = _VTRPC.get(number, "UNKNOWN") if number is not None else "DEADLINE_EXCEEDED"
    message = error.database_message or error.message
    if number is not None:
        message = f"{message} (errno {number}) (sqlstate {error.sqlstate or 'HY000'})"
    return orjson.dumps({"code": vtrpc, "message": message})


# MySQL's column types as Vitess names them (query.Type), by the protocol's type code.
_INTEGERS = {1: "INT8", 2: "INT16", 9: "INT24", 3: "INT32", 8: "INT64"}
_TYPES = {0: "DECIMAL", 246: "DECIMAL", 4: "FLOAT32", 5: "FLOAT64", 7: "TIMESTAMP", 10: "DATE", 14: "DATE",
          11: "TIME", 12: "DATETIME", 13: "YEAR", 16: "BIT", 245: "JSON", 247: "ENUM", 248: "SET", 255: "GEOMETRY"}
_UNSIGNED, _ENUM, _SET, _BINARY = 32, 256, 2048, 63


def _vitess_type(field: Any) -> str | None:
    code, flags, charset = field.type_code, field.flags, field.charsetnr
    if code in _INTEGERS:
        name = _INTEGERS[code]
        return "U" + name if flags & _UNSIGNED else name
    if code == 6:
        return None  # NULL_TYPE, Vitess's zero value: left out, as protojson leaves zero values out
    if code in (15, 253):
        return "VARBINARY" if charset == _BINARY else "VARCHAR"
    if code == 254:
        if flags & _ENUM:
            return "ENUM"
        if flags & _SET:
            return "SET"
        return "BINARY" if charset == _BINARY else "CHAR"
    if code in (249, 250, 251, 252):
        return "BLOB" if charset == _BINARY else "TEXT"
    return _TYPES.get(code, "VARCHAR")


def _field(field: Any) -> dict[str, Any]:
    """The metadata the driver and the ORMs read; zero values left out, as PlanetScale's protojson does."""
    entry: dict[str, Any] = {"name": _text(field.name)}
    kind = _vitess_type(field)
    for key, value in (("type", kind), ("table", _text(field.table_name)), ("orgTable", _text(field.org_table)),
                       ("database", _text(field.db)), ("orgName", _text(field.org_name)),
                       ("columnLength", field.length),
                       ("charset", field.charsetnr), ("decimals", field.scale if field.scale < 31 else 0),
                       ("flags", field.flags)):
        if value:
            entry[key] = value
    return entry


def _text(name: Any) -> str:
    """A name from a field packet: PyMySQL leaves some undecoded while a result's values are read as bytes."""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")
