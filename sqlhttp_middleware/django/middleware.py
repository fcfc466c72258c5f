"""Django adapter: ``"sqlhttp_middleware.django.middleware.SQLHTTPMiddleware"`` in ``MIDDLEWARE``.

It only translates a Django request to the core's neutral :class:`Request` and the core's :class:`Response` to an
``HttpResponse``. Every other path goes to the rest of the stack untouched. The endpoint is matched against
``request.path_info``, so a mount under ``SCRIPT_NAME`` is respected, and it answers before any view runs, so
``CsrfViewMiddleware`` never sees it, wherever it stands.

Both sync- and async-capable. Under WSGI the request's thread runs :meth:`SQLHTTPCore.handle`. Under ASGI the
event loop runs :meth:`SQLHTTPCore.handle_async`, as the pure ASGI middleware does: PostgreSQL queries on the loop
(psycopg async, ``async_postgres``), and whatever may block (other databases, a Redis round trip, a password hash,
the ``authorize`` hook) on a bounded thread pool of our own, never through ``sync_to_async``'s one thread-sensitive
thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from .._process import current_pid
from ..core import Request, Response, SQLHTTPCore
from .conf import get_core

__all__ = ["SQLHTTPMiddleware"]

GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
T = TypeVar("T")


class SQLHTTPMiddleware:
    """Answer the SQL endpoint configured by ``settings.SQLHTTP``; pass everything else on."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        # Django builds its middleware when the WSGI or ASGI handler is created, at start-up: a bad setting fails
        # there (ImproperlyConfigured, with the system check's message), even under servers that skip the checks.
        get_core()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_for = (0, 0)  # (pid, threads) it was made for
        self._executor_lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        core = get_core()
        if not core.matches(request.path_info):
            return self.get_response(request)
        answer = _prepare(core, request)
        return _to_django(answer if isinstance(answer, Response) else core.handle(answer, head_checked=True))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        core = get_core()
        if not core.matches(request.path_info):
            return await cast("Awaitable[HttpResponseBase]", self.get_response(request))
        answer = _prepare(core, request)
        if isinstance(answer, Request):
            loop = asyncio.get_running_loop()
            pool = self._pool(core.options.executor_threads)

            def offload(call: Callable[[], T]) -> Awaitable[T]:
                return loop.run_in_executor(pool, call)

            answer = await core.handle_async(answer, offload)
        return _to_django(answer)

    def _pool(self, threads: int) -> ThreadPoolExecutor:
        # Made on first use; again after a fork (a parent's threads do not exist in its children) and when a changed
        # setting resized it. A replaced pool is not shut down under requests still queued on it: once unreferenced,
        # its idle threads exit.
        wanted = (current_pid(), threads)
        with self._executor_lock:
            if self._executor is None or self._executor_for != wanted:
                self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sqlhttp")
                self._executor_for = wanted
            return self._executor


def _prepare(core: SQLHTTPCore, request: HttpRequest) -> Request | Response:
    """The core's request, or the answer refusing it before more than ``max_body_bytes + 1`` bytes are read."""
    # ALLOWED_HOSTS guards this endpoint as it guards the site (DNS rebinding): raises DisallowedHost, a 400.
    request.get_host()
    method = (request.method or "GET").upper()
    headers = {name.lower(): value for name, value in request.headers.items()}
    refused = core.check_head(method, headers, request.path_info)
    if refused is not None:
        return refused
    limit = core.options.max_body_bytes
    # An earlier middleware may have read request.body; Django keeps it. Otherwise read no more than we accept,
    # and bypass DATA_UPLOAD_MAX_MEMORY_SIZE, which request.body would enforce: max_body_bytes is the limit here.
    body = request.body if getattr(request, "_body", None) is not None else request.read(limit + 1)
    if len(body) > limit:
        return core.error_response(core.too_large(), headers, request.path_info)
    return Request(method, request.path_info, headers, body, request.META.get("REMOTE_ADDR"))


def _to_django(answer: Response) -> HttpResponse:
    content_type = dict(answer.headers).get("content-type")
    body = answer.body
    response = HttpResponse(body, status=answer.status, content_type=content_type)
    for name, value in answer.headers:
        response.headers["-".join(part.capitalize() for part in name.split("-"))] = value
    response.headers["Content-Length"] = str(len(body))
    return response
