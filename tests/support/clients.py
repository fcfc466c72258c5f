"""One client API over every mount: a :class:`Client` sends a request and gets a :class:`Reply`, whether the
middleware is mounted under WSGI (webtest, through werkzeug's ``LintMiddleware``), ASGI (httpx's ``ASGITransport``)
or Django (``support.django``). The host apps answer ``host app: {METHOD} {path}`` for every path that is not ours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import webtest
from anyio.from_thread import BlockingPortal
from werkzeug.middleware.lint import LintMiddleware

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.core import Request, SQLHTTPCore
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

from .databases import Database

MOUNTS = ["wsgi", "asgi", "django", "django-async"]
ENGINE_PATHS = ["wsgi", "asgi"]  # the core's sync and async paths; the Django mounts run the same two


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def host_app_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"host app: {environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def host_app_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = f"host app: {scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Client:
    """Talks to a mounted middleware the way a real client would; same API whatever the mount."""

    kind: str
    send: Callable[[str, str, bytes, dict[str, str]], Reply]
    middleware: Any
    closers: list[Callable[[], None]] = field(default_factory=list)

    def post(self, body: Any, *, path: str = "/sql", headers: dict[str, str] | None = None) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        return self.send("POST", path, raw, merged)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        return self.send(method, path, body, headers or {})

    def query(self, database: Database, sql: str, bindings: Any = None, **extra: Any) -> Reply:
        return self.post(database.body(sql, bindings, **extra))

    def close(self) -> None:
        for closer in self.closers:
            closer()

    @property
    def core(self) -> Any:
        return self.middleware.core


def make_core_client(options: dict[str, Any]) -> Client:
    """The core alone, with no mount around it: for checks that only parse a body, which no mount changes."""
    core = SQLHTTPCore(**{"rate_limit_storage": "memory", **options})

    def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        response = core.handle(Request(method, path, {k.lower(): v for k, v in headers.items()}, body, "127.0.0.1"))
        return Reply(response.status, dict(response.headers), response.body)

    return Client("core", send, SimpleNamespace(core=core), [core.close])


def make_wsgi_client(options: dict[str, Any], app: Any = host_app_wsgi) -> Client:
    middleware = WSGIMiddleware(app, **{"rate_limit_storage": "memory", **options})
    test_app = webtest.TestApp(LintMiddleware(middleware))

    def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        response = test_app.request(path, method=method, body=body, headers=headers, expect_errors=True)
        return Reply(response.status_int, {k.lower(): v for k, v in response.headers.items()}, response.body)

    return Client("wsgi", send, middleware, [middleware.close])


def make_asgi_client(options: dict[str, Any], portal: BlockingPortal, app: Any = host_app_asgi) -> Client:
    middleware = ASGIMiddleware(app, **{"rate_limit_storage": "memory", **options})
    transport = httpx.ASGITransport(app=middleware)  # type: ignore[arg-type]

    async def _send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.request(method, path, content=body, headers=headers)
            return Reply(response.status_code, dict(response.headers), response.content)

    def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        return portal.call(_send, method, path, body, headers)

    return Client("asgi", send, middleware, [middleware.close])


def make_engine_clients(options: dict[str, Any], portal: BlockingPortal) -> list[Client]:
    """One client on each engine path (WSGI: the sync path; ASGI: the event loop), over the same options."""
    return [make_wsgi_client(options), make_asgi_client(options, portal)]


def rows_on_every_path(clients: list[Client], database: Database, sql: str, **extra: Any) -> list[Any]:
    """The rows the endpoint answers ``sql`` with, asserting every client got a 200 and the same bytes."""
    replies = [client.query(database, sql, **extra) for client in clients]
    for reply in replies:
        assert reply.status == 200, reply.body
    assert all(reply.body == replies[0].body for reply in replies), "the engine paths differ"
    body = replies[0].json()
    rows: list[Any] = body["rows"] if extra.get("shape") == "full" else body
    return rows
