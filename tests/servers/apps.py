"""Host apps for the real-server tests: a plain WSGI app and a plain ASGI app, each with /sql mounted.

Options come from the SQLHTTP_* environment variables, as in the examples; SQLHTTP_TEST_SQLITE adds a SQLite target
``lite`` (login lite / lite-secret, or the API key lite-token for libSQL's client) over that file;
SQLHTTP_TEST_CACHE (seconds) turns the result cache on for every target, with that TTL.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.env import options_from_env
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

OPTIONS = options_from_env()
if os.environ.get("SQLHTTP_TEST_SQLITE"):
    OPTIONS.setdefault("targets", {})["lite"] = Target(
        f"sqlite:///{os.environ['SQLHTTP_TEST_SQLITE']}", users={"lite": "lite-secret"},
        api_keys={"edge": "lite-token", "other": "lite-other"},
    )
if os.environ.get("SQLHTTP_TEST_CACHE"):
    OPTIONS["targets"] = {
        name: replace(spec if isinstance(spec, Target) else Target(spec), cache=float(os.environ["SQLHTTP_TEST_CACHE"]))
        for name, spec in OPTIONS["targets"].items()
    }


def _host_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = b"host wsgi app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def _host_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b"host asgi app"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _worker_wsgi(app: Any) -> Any:
    """Every answer says which worker (process id) gave it, in X-Test-Worker, so tests can see requests spread."""
    worker = str(os.getpid())

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            return start_response(status, [*headers, ("X-Test-Worker", worker)], *args)

        return app(environ, start)

    return wrapped


def _worker_asgi(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-test-worker", str(os.getpid()).encode())]}
            await send(message)

        await app(scope, receive, sending)

    return wrapped


wsgi_app = _worker_wsgi(WSGIMiddleware(_host_wsgi, **OPTIONS))
asgi_app = _worker_asgi(ASGIMiddleware(_host_asgi, **OPTIONS))
