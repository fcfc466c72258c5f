"""Django for the test process, configured once on import, and a :class:`Client` over the Django mount.

Settings are process-wide, so one Django client is open at a time: ``make_django_client`` overrides ``SQLHTTP`` for
its options until its closer runs. This module is also the test ``ROOT_URLCONF``: a catch-all host view answering
``host app: {METHOD} {path}`` as the WSGI and ASGI host apps do, plus routes for the identity tests.

Importing this module configures Django, so ``tests.support`` does not import it: import it as
``from .support.django import ...`` where Django is wanted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import django
from anyio.from_thread import start_blocking_portal
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient
from django.test import Client as DjangoTestClient
from django.test.utils import override_settings
from django.urls import path, re_path

from sqlhttp_middleware.core import SQLHTTPCore
from sqlhttp_middleware.django.conf import get_core

from .clients import Client, Reply

OURS = "sqlhttp_middleware.django.middleware.SQLHTTPMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
DJANGO_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    CSRF,
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = [DJANGO_MIDDLEWARE[0], OURS, *DJANGO_MIDDLEWARE[1:]]  # ours right after SecurityMiddleware
PLACEHOLDER = {"TARGETS": {"placeholder": "postgresql://127.0.0.1:5432"}}  # valid; each client overrides it


# -- the test urlconf ---------------------------------------------------------------------------------------------


def host_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"host app: {request.method} {request.path}".encode(), content_type="text/plain")


def headers_view(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b'{"made": "here"}', status=201, content_type="application/json")
    response["X-Host"] = "yes"
    response["Cache-Control"] = "max-age=60"
    response.set_cookie("flavour", "oat", httponly=True)
    return response


def stream_sync_view(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        for number in range(5):
            yield f"{number}\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def stream_async_view(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for number in range(5):
            yield f"{number}\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


urlpatterns = [
    path("headers", headers_view),
    path("stream/sync", stream_sync_view),
    path("stream/async", stream_async_view),
    re_path(r"^.*$", host_view),
]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["sqlhttp_middleware.django"],
        MIDDLEWARE=MIDDLEWARE,
        DATABASES={},
        SQLHTTP=PLACEHOLDER,
        USE_TZ=True,
    )
    django.setup()


# -- a client over the Django mount -------------------------------------------------------------------------------


class DjangoMount:
    """What the shared tests reach as ``client.middleware``: the core the current settings built."""

    @property
    def core(self) -> SQLHTTPCore:
        return get_core()


_open = threading.Lock()  # held while a Django client is open: settings are process-wide


def _nothing() -> None:
    pass


def make_django_client(options: dict[str, Any], *, asynchronous: bool = False) -> Client:
    """A :class:`Client` over Django's test client (``AsyncClient`` when ``asynchronous``).

    ``send`` may be called from several threads at once. The async client runs every request on one event loop of
    its own (a blocking portal, closed with the client), as an ASGI server runs a process's requests: the core's
    async pools belong to one loop.
    """
    if not _open.acquire(blocking=False):
        raise RuntimeError("a Django client is already open; close it first (settings are process-wide)")
    override = override_settings(SQLHTTP={name.upper(): value for name, value in options.items()})
    override.enable()
    try:
        core = get_core()  # a bad option fails here, as it does when the other mounts are built
    except BaseException:
        override.disable()
        _open.release()
        raise
    loop = contextlib.ExitStack()
    portal = loop.enter_context(start_blocking_portal()) if asynchronous else None
    if portal is not None:
        # The threads Django's async handler runs its sync parts on (signals, response.close): the loop's default
        # executor and asgiref's thread-sensitive one. Started now, with the server, so that a test counting the
        # threads requests leave behind counts only the middleware's, as it does on the ASGI mount.
        portal.call(sync_to_async(_nothing, thread_sensitive=False))
        portal.call(sync_to_async(_nothing))
    http = AsyncClient() if asynchronous else DjangoTestClient()

    def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        extra = {name: value for name, value in headers.items() if name.lower() != "content-type"}
        content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), None)
        kwargs: dict[str, Any] = {}
        if content_type is not None:
            # Django's clients set Content-Type only when there is a body; set it as a header when there is none.
            if body:
                kwargs["content_type"] = content_type
            else:
                extra["Content-Type"] = content_type
        if portal is not None:
            response = portal.call(partial(http.generic, method, path, body, headers=extra, **kwargs))
            content = response.content
        else:
            response = http.generic(method, path, body, headers=extra, **kwargs)
            content = b"".join(response.streaming_content) if response.streaming else response.content
        return Reply(response.status_code, {name.lower(): value for name, value in response.items()}, content)

    def close() -> None:
        try:
            override.disable()  # the setting changes back: the core built for these options is closed
            core.close()
            loop.close()
        finally:
            _open.release()

    return Client("django-async" if asynchronous else "django", send, DjangoMount(), [close])
