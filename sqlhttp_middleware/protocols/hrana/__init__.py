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
from dataclasses import dataclass
from typing import Any

import orjson

from ... import errors
from ...engine.work import Body, Claim, Limits, Statement, Stream, Work
from ...http import Request, Response
from ...options import Options, ResolvedTarget
from ..base import Protocol, json_object
from .pipeline import Cursor, Pipeline

__all__ = ["CURSOR", "Cursor", "Hrana", "Pipeline", "pipeline_path"]

CURSOR = "hrana-cursor"  # the name a handed-over v3/cursor request goes by

_REQUEST_TYPES = frozenset({"execute", "batch", "sequence", "describe", "store_sql", "close_sql", "close",
                            "get_autocommit"})
_V3_ONLY = frozenset({"get_autocommit"})


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
