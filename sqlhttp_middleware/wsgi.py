"""WSGI adapter: translate a WSGI call to the core's neutral request and back.

``app.wsgi_app = SQLHTTPMiddleware(app.wsgi_app, targets={...})``. Every path but the endpoint's goes to the wrapped
app untouched. The endpoint path is matched against ``PATH_INFO``, so a mount under ``SCRIPT_NAME`` is respected.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any

from typing_extensions import Unpack

from . import errors
from .core import Request, Response, SQLHTTPCore
from .engine.deadline import Abort, ClientWatch, current_abort, shut_down
from .options import OptionKeywords

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
else:
    StartResponse = Callable[..., Any]
    WSGIApplication = Callable[..., Iterable[bytes]]
    WSGIEnvironment = dict[str, Any]

__all__ = ["SQLHTTPMiddleware"]

_CHUNK = 64 * 1024


class SQLHTTPMiddleware:
    """Serve the SQL endpoint in front of ``app`` (or alone, answering 404 elsewhere, when ``app`` is None)."""

    def __init__(self, app: WSGIApplication | None, **options: Unpack[OptionKeywords]) -> None:
        self.app = app
        self.core = SQLHTTPCore(**options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.core.matches(environ.get("PATH_INFO", "")):  # every other request: a set lookup or two
            if self.app is None:
                return _send(self.core.not_found(), start_response)
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        headers = _headers(environ)
        refused = self.core.check_head(method, headers, environ.get("PATH_INFO", ""))
        if refused is not None:
            return _send(refused, start_response)
        fd = _client_fd(environ)
        body = self._read_body(environ, headers, fd)
        path = environ.get("PATH_INFO", "")
        if body is None:
            return _send(self.core.error_response(self.core.too_large(), headers, path), start_response)
        if body is _LATE:
            timeout = self.core.options.body_timeout
            late = errors.RequestTimeout(f"the request body did not arrive within {timeout:g} s")
            return _send(self.core.error_response(late, headers, path), start_response)
        request = Request(method, path, headers, body, environ.get("REMOTE_ADDR"))
        if fd < 0:
            return _send(self.core.handle(request, head_checked=True), start_response)
        # The server hands us the client's socket: if the client goes away, its statement is stopped.
        abort = Abort()
        token = current_abort.set(abort)
        watch = ClientWatch(self.core.executor.watchdog, fd, abort)
        try:
            return _send(self.core.handle(request, head_checked=True), start_response)
        finally:
            watch.close()
            current_abort.reset(token)

    def _read_body(self, environ: WSGIEnvironment, headers: dict[str, str], fd: int) -> bytes | None:
        """The body; ``_LATE`` if it did not arrive within ``body_timeout``, which is enforced where the server
        hands us its socket ``fd`` (gunicorn, werkzeug; -1 elsewhere): at the deadline the socket is shut down for
        reading, so the blocked read returns."""
        limit = self.core.options.max_body_bytes
        if fd < 0 or headers.get("content-length") == "0":
            return _read_body(environ, headers, limit)
        watchdog = self.core.executor.watchdog
        late: list[bool] = []

        def stop_reading() -> None:
            late.append(True)
            shut_down(fd, socket.SHUT_RD)  # the answer can still be written

        handle = watchdog.arm(time.monotonic() + self.core.options.body_timeout, stop_reading)
        try:
            body = _read_body(environ, headers, limit)
        finally:
            watchdog.disarm(handle)
        return _LATE if late else body

    def close(self) -> None:
        self.core.close()


_LATE = b"<late>"  # a sentinel, told apart by identity


def _client_fd(environ: WSGIEnvironment) -> int:
    """The client's socket, where the server hands it over (gunicorn, werkzeug); -1 elsewhere."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    fileno = getattr(sock, "fileno", None)
    try:
        return int(fileno()) if fileno is not None else -1
    except OSError:
        return -1



def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def _read_body(environ: WSGIEnvironment, headers: dict[str, str], limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (never reading more than ``limit + 1``)."""
    stream: IO[bytes] = environ["wsgi.input"]
    declared = headers.get("content-length")
    if declared is not None:
        return stream.read(int(declared)) if int(declared) else b""
    if not environ.get("wsgi.input_terminated"):
        return b""  # PEP 3333: without a length, reading to EOF is only safe on a terminated stream
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


def _send(response: Response, start_response: StartResponse) -> Iterable[bytes]:
    headers = [*response.headers, ("content-length", str(response.length))]
    start_response(f"{response.status} {HTTPStatus(response.status).phrase}", _title(headers))
    return response.parts


def _title(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("-".join(part.capitalize() for part in name.split("-")), value) for name, value in headers]
