"""Pure ASGI adapter: ``app.add_middleware(SQLHTTPMiddleware, targets={...})``.

Every scope that is not an HTTP request to the endpoint (other paths, ``lifespan``, ``websocket``) goes to the
wrapped app untouched. The body is read with a ``receive`` loop that stops at the size limit and at
``body_timeout`` (408). PostgreSQL queries run on the event loop with psycopg's async connections
(``async_postgres``); blocking work (other databases, a Redis round trip, a password hash, the ``authorize`` hook)
runs on a bounded thread pool of our own, in the request's context. A client that goes away (``http.disconnect``)
aborts its request's statement; a client that does not take the answer within ``send_timeout`` is dropped, and each
piece of an answer is released once the server has taken it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from typing_extensions import Unpack

from . import errors
from ._process import current_pid
from .core import Request, Response, SQLHTTPCore
from .engine.deadline import Abort, current_abort, ticker_for
from .options import OptionKeywords

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["SQLHTTPMiddleware"]

logger = logging.getLogger("sqlhttp_middleware")


class SQLHTTPMiddleware:
    """Serve the SQL endpoint in front of ``app`` (or alone, answering 404 elsewhere, when ``app`` is None)."""

    def __init__(self, app: ASGIApp | None, **options: Unpack[OptionKeywords]) -> None:
        self.app = app
        self.core = SQLHTTPCore(**options)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else ""
        if not self.core.matches(path):
            if self.app is not None:
                await self.app(scope, receive, send)
            else:
                await self._alone(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope["method"].upper()
        response = self.core.check_head(method, headers, path)
        clock = _Clock(self.core.options)
        try:
            if response is None:
                response = await self._answer(scope, method, path, headers, receive, clock)
                if response is None:
                    return  # the client went away before its request was whole: nobody to answer
            clock.sending()
            try:
                await _send(response, send)
            except asyncio.CancelledError:
                if not clock.caught():
                    raise
                logger.warning("sqlhttp-middleware: the client did not take the answer within %g s; dropped it",
                               self.core.options.send_timeout)
        finally:
            clock.stop()

    async def _answer(self, scope: Scope, method: str, path: str, headers: dict[str, str], receive: Receive,
                      clock: _Clock) -> Response | None:
        """Read the body (within ``body_timeout``) and answer it; None if the client went away first. If it goes
        away while its statement runs (``http.disconnect``), the statement is stopped."""
        options = self.core.options
        try:
            body = await _read_body(receive, options.max_body_bytes)
        except asyncio.CancelledError:
            if not clock.caught():
                raise
            return self.core.error_response(errors.RequestTimeout(
                f"the request body did not arrive within {options.body_timeout:g} s"), headers, path)
        if body is _GONE:
            return None
        if body is None:
            return self.core.error_response(self.core.too_large(), headers, path)
        client = scope.get("client")
        request = Request(method, path, headers, body, client[0] if client else None)
        abort = Abort()
        token = current_abort.set(abort)
        clock.handling(_DisconnectWatch(receive, abort))
        try:
            return await self.core.handle_async(request, self._offload)
        finally:
            current_abort.reset(token)

    def _offload(self, call: Callable[[], Any]) -> Awaitable[Any]:
        # In the request's context, so that the thread sees its Abort.
        return asyncio.get_running_loop().run_in_executor(self._pool(), contextvars.copy_context().run, call)

    def _pool(self) -> ThreadPoolExecutor:
        # Created on first use, and again after a fork: a parent's threads do not exist in its children.
        if self._executor is None or self._executor_pid != current_pid():
            self._executor = ThreadPoolExecutor(self.core.options.executor_threads, thread_name_prefix="sqlhttp")
            self._executor_pid = current_pid()
        return self._executor

    async def _alone(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await _send(self.core.not_found(), send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.core.close()


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        return path[len(root_path):]
    return path


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


_GONE = b"<gone>"  # a sentinel, told apart by identity


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The body, None as soon as it passes ``limit`` bytes, or ``_GONE`` if the client went away first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


_WATCH_AFTER = 0.05  # seconds a request runs before its client is watched for going away

_BODY, _HANDLING, _SENDING, _DONE = range(4)


class _Clock:
    """The request's deadlines, watched by the loop's :class:`Ticker` (no timer of its own): the body's, the start
    of the disconnect watch once the request has run :data:`_WATCH_AFTER` seconds, and the send's. At a deadline it
    cancels the request's task; :meth:`caught` tells that cancellation from any other and takes it back."""

    __slots__ = ("_body_at", "_phase", "_send_at", "_send_timeout", "_task", "_ticker", "_watch", "_watch_at",
                 "expired")

    def __init__(self, options: Any) -> None:
        now = time.monotonic()
        self._task = asyncio.current_task()
        self._body_at = now + options.body_timeout
        self._watch_at = now + _WATCH_AFTER
        self._send_timeout = options.send_timeout
        self._send_at = 0.0
        self._phase = _BODY
        self._watch: _DisconnectWatch | None = None
        self.expired = False
        self._ticker = ticker_for(asyncio.get_running_loop())
        self._ticker.add(self)

    def tick(self, now: float) -> None:
        phase = self._phase
        if phase == _HANDLING:
            if self._watch is not None and now >= self._watch_at:
                self._watch.start()
        elif (phase == _BODY and now >= self._body_at) or (phase == _SENDING and now >= self._send_at):
            self.expired = True
            self._ticker.discard(self)
            if self._task is not None:
                self._task.cancel()

    def handling(self, watch: _DisconnectWatch) -> None:
        self._phase = _HANDLING
        self._watch = watch

    def sending(self) -> None:
        self._phase = _SENDING
        self._send_at = time.monotonic() + self._send_timeout
        if self._watch is not None:
            self._watch.stop()

    def caught(self) -> bool:
        """After a CancelledError: True if it was this clock's deadline (the cancellation is taken back)."""
        if not self.expired or self._task is None:
            return False
        self.expired = False
        self._task.uncancel()
        return True

    def stop(self) -> None:
        self._phase = _DONE
        self._ticker.discard(self)
        if self._watch is not None:
            self._watch.stop()


class _DisconnectWatch:
    """Waits for ``http.disconnect`` and aborts the request's work when it comes."""

    __slots__ = ("_abort", "_receive", "_task")

    def __init__(self, receive: Receive, abort: Abort) -> None:
        self._receive, self._abort = receive, abort
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._abort.abort()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _send(response: Response, send: Send) -> None:
    """Send the answer, releasing each piece once the server has taken it, so a slow reader holds no more than
    what is still to go."""
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    headers.append((b"content-length", str(response.length).encode("latin-1")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    parts = response.parts
    if len(parts) <= 1:
        await send({"type": "http.response.body", "body": parts[0] if parts else b"", "more_body": False})
        return
    parts.reverse()  # popped from the end: each piece is freed once sent
    response.parts = []
    while parts:
        part = parts.pop()
        await send({"type": "http.response.body", "body": part, "more_body": bool(parts)})
        del part
