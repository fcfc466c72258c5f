"""Host apps for the real-server tests: a plain WSGI app and a plain ASGI app, each with /sql mounted.

Options come from the SQLHTTP_* environment variables, as in the examples; SQLHTTP_TEST_SQLITE adds a SQLite target
``lite`` (login lite / lite-secret, or the API key lite-token for libSQL's client) over that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.env import options_from_env
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

OPTIONS = options_from_env()
if os.environ.get("SQLHTTP_TEST_SQLITE"):
    OPTIONS.setdefault("targets", {})["lite"] = Target(
        f"sqlite:///{os.environ['SQLHTTP_TEST_SQLITE']}", users={"lite": "lite-secret"},
        api_keys={"edge": "lite-token"},
    )


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


wsgi_app = WSGIMiddleware(_host_wsgi, **OPTIONS)
asgi_app = ASGIMiddleware(_host_asgi, **OPTIONS)
