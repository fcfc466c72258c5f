"""Host apps for the real-server tests: a plain WSGI app and a plain ASGI app, each with /sql mounted.

Targets come from SQLHTTP_TARGETS ("name=url name=url"), as in the examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.options import parse_targets
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

TARGETS = parse_targets(os.environ["SQLHTTP_TARGETS"])


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


wsgi_app = WSGIMiddleware(_host_wsgi, targets=TARGETS)
asgi_app = ASGIMiddleware(_host_asgi, targets=TARGETS)
