"""Django: system checks, targets reused from DATABASES, the sync and async middleware, CSRF, host routes unchanged
through Django's real WSGI and ASGI handlers, database work off the event loop, and the example project."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, RequestFactory
from django.test import Client as DjangoTestClient
from django.test.utils import override_settings
from sqlalchemy.engine import make_url

from sqlhttp_middleware.core import Request, Response
from sqlhttp_middleware.django.conf import database_target, get_core
from sqlhttp_middleware.django.middleware import SQLHTTPMiddleware
from sqlhttp_middleware.options import OPTIONS, Target

from .support import PASSWORD, ROOT, SQLITE_PASSWORD, SQLITE_USER, Client, Database, serving, table_rows, targets_for
from .support.django import CSRF, DJANGO_MIDDLEWARE, MIDDLEWARE, OURS, host_view, make_django_client

SECRET = "s3cret-Django-pw"  # must never appear in a check's message
T = TypeVar("T")


def sqlhttp_messages() -> list[CheckMessage]:
    return [message for message in run_checks() if str(message.id).startswith("sqlhttp.")]


@contextlib.contextmanager
def databases(**entries: dict[str, Any]) -> Iterator[None]:
    """override_settings(DATABASES=...). Django warns that its connections do not follow; only our conf reads them."""
    # Django's own connection handler needs a "default"; the dummy backend never connects.
    override = override_settings(DATABASES={"default": {"ENGINE": "django.db.backends.dummy"}, **entries})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES", UserWarning)
        override.enable()
    try:
        yield
    finally:
        override.disable()


@pytest.fixture
def django_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Make clients over the Django mount: sync or async, as the (indirect) parameter says."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        client = make_django_client(options, asynchronous=request.param)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        for close in client.closers:
            close()


both = pytest.mark.parametrize("django_client", [False, True], ids=["sync", "async"], indirect=True)


def pg_entry(db: Database, **extra: Any) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.postgresql", "NAME": db.database, "USER": db.username,
            "PASSWORD": db.password, "HOST": "127.0.0.1", "PORT": "5432", **extra}


def sqlite_path(db: Database) -> str:
    return str(db.admin_url).removeprefix("sqlite:///")


# -- system checks ------------------------------------------------------------------------------------------------


def test_a_good_setting_passes_every_check(sqlite_database: Database) -> None:
    setting = {"TARGETS": targets_for(sqlite_database), "PATH": "/db", "POOL_TIMEOUT": 3}
    with override_settings(SQLHTTP=setting):
        assert sqlhttp_messages() == []
    main = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "app", "PASSWORD": SECRET}
    with databases(main=main), override_settings(SQLHTTP={"TARGETS": {"m": {"DATABASE": "main"}}}):
        assert sqlhttp_messages() == []


@pytest.mark.parametrize(
    ("setting", "check_id", "fragment"),
    [
        (["TARGETS"], "sqlhttp.E001", "must be a dict"),
        ({"PATH": "/sql"}, "sqlhttp.E001", "TARGETS"),
        ({"TARGETS": {"pg": "postgresql://127.0.0.1"}, "POOL_SIZ": 3}, "sqlhttp.E002", "'POOL_SIZ'"),
        ({"TARGETS": {"pg": "postgresql://127.0.0.1"}, "pool_size": 3}, "sqlhttp.E002", "'pool_size'"),
        ({"TARGETS": {"pg": "postgresql://127.0.0.1"}, "POOL_SIZE": 0}, "sqlhttp.E003", "pool_size"),
        ({"TARGETS": {"pg": "postgresql://127.0.0.1"}, "PATH": "sql"}, "sqlhttp.E003", "path"),
        ({"TARGETS": {}}, "sqlhttp.E003", "targets"),
        ({"TARGETS": {"pg": f"postgresql://app:{SECRET}@127.0.0.1"}}, "sqlhttp.E003", "login"),
        ({"TARGETS": {"x": {"DATABASE": "nope"}}}, "sqlhttp.E004", "'nope'"),
        ({"TARGETS": {"x": {"DATABASE": "oracle"}}}, "sqlhttp.E004", "django.db.backends.oracle"),
        ({"TARGETS": {"x": {"DATABASE": "lite"}}}, "sqlhttp.E004", "USERS"),
        ({"TARGETS": {"x": {"DATABASE": "memory", "USERS": {"a": "b"}}}}, "sqlhttp.E004", "in-memory"),
        ({"TARGETS": {"x": {"DATABASE": "test-memory", "USERS": {"a": "b"}}}}, "sqlhttp.E004", "in-memory"),
        ({"TARGETS": {"x": {"DATABASE": "socket"}}}, "sqlhttp.E004", "Unix socket"),
        ({"TARGETS": {"x": {"DATABASE": "pg", "PASSWORD": SECRET}}}, "sqlhttp.E004", "'PASSWORD'"),
        ({"TARGETS": {"x": {"DATABASE": "pg", "USERS": {"a": "b"}}}}, "sqlhttp.E003", "users"),
    ],
)
def test_each_check_fires_for_its_bad_setting(setting: Any, check_id: str, fragment: str) -> None:
    login = {"USER": "app", "PASSWORD": SECRET}
    entries = {
        "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", **login},
        "oracle": {"ENGINE": "django.db.backends.oracle", "NAME": "app", **login},
        "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/app.db", **login},
        "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "test-memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:memorydb?mode=memory&cache=shared"},
        "socket": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "/var/run/postgresql", **login},
    }
    with databases(**entries), override_settings(SQLHTTP=setting):
        messages = sqlhttp_messages()
        assert [message.id for message in messages] == [check_id]
        assert all(message.is_serious() for message in messages)
        text = f"{messages[0].msg} {messages[0].hint}"
        assert fragment in text
        assert SECRET not in text and "s3cret" not in text
        # Servers that never run the checks: the middleware refuses to load, with the same message.
        with pytest.raises(ImproperlyConfigured) as caught:
            SQLHTTPMiddleware(host_view)
        assert str(caught.value).startswith(f"({check_id}) {messages[0].msg}")
        assert SECRET not in str(caught.value)


def test_missing_setting_is_e001() -> None:
    with override_settings():
        from django.conf import settings

        del settings.SQLHTTP
        assert [(message.id, message.msg) for message in sqlhttp_messages()] == [("sqlhttp.E001", "SQLHTTP is not set")]


def test_lower_case_key_gets_a_hint() -> None:
    with override_settings(SQLHTTP={"TARGETS": {"pg": "postgresql://127.0.0.1"}, "pool_size": 3}):
        [message] = sqlhttp_messages()
        assert "Did you mean 'POOL_SIZE'?" in str(message.hint)


class CustomMiddleware(SQLHTTPMiddleware):
    """A project's own subclass counts as the middleware (W001 stays quiet)."""


@pytest.mark.parametrize(
    ("middleware", "warned"),
    [(MIDDLEWARE, False), (DJANGO_MIDDLEWARE, True), ([f"{__name__}.CustomMiddleware"], False),
     (["no.such.Middleware"], True)],
)
def test_w001_when_the_middleware_is_missing(middleware: list[str], warned: bool) -> None:
    with override_settings(MIDDLEWARE=middleware):
        messages = sqlhttp_messages()
    assert [message.id for message in messages] == (["sqlhttp.W001"] if warned else [])
    assert all(not message.is_serious() for message in messages)


@pytest.mark.parametrize("handler", [WSGIHandler, ASGIHandler])
def test_both_handlers_refuse_to_start_with_a_bad_setting(handler: type[Any]) -> None:
    with override_settings(SQLHTTP={"TARGETS": {"pg": "postgresql://127.0.0.1"}, "MAX_ENGINES": -1}):
        [message] = sqlhttp_messages()
        with pytest.raises(ImproperlyConfigured, match=r"^\(sqlhttp\.E003\) SQLHTTP: max_engines"):
            handler()  # Django loads the middleware when its handler is created, at start-up
        assert message.id == "sqlhttp.E003"


def test_docs_list_every_key_and_check() -> None:
    rows = table_rows("docs/django.md")
    keys = {row[0].strip("`"): row[1].strip("`") for row in rows if row[0].strip("`").isupper()}
    assert keys == {option.name.upper(): option.name for option in OPTIONS}
    documented_ids = {row[0].strip("`") for row in rows if row[0].startswith("`sqlhttp.")}
    assert documented_ids == {"sqlhttp.E001", "sqlhttp.E002", "sqlhttp.E003", "sqlhttp.E004", "sqlhttp.W001"}


# -- targets reused from DATABASES ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ({"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "db.internal", "PORT": "6432"},
         "postgresql://db.internal:6432/shop"),
        ({"ENGINE": "django.contrib.gis.db.backends.postgis", "NAME": "geo", "HOST": "", "PORT": ""},
         "postgresql://127.0.0.1/geo"),
        ({"ENGINE": "django.db.backends.mysql", "NAME": "shop", "PORT": 3307}, "mysql://127.0.0.1:3307/shop"),
        ({"ENGINE": "django.db.backends.postgresql", "NAME": "a/b c", "HOST": "::1"}, "postgresql://[::1]/a/b c"),
    ],
)
def test_database_target_urls_never_carry_the_login(entry: dict[str, Any], url: str) -> None:
    target = database_target({"DATABASE": "d"}, {"d": {**entry, "USER": "app", "PASSWORD": SECRET}})
    assert target == Target(url)
    parsed = make_url(target.url)
    assert (parsed.username, parsed.password, parsed.database) == (None, None, entry["NAME"])


@both
def test_target_reuses_a_postgres_databases_entry(django_client: Any, pg_database: Database) -> None:
    with databases(pg=pg_entry(pg_database)):
        client = django_client(targets={"pg": {"DATABASE": "pg"}})
        target = client.core.options.targets["pg"]
        assert (target.url.username, target.url.password, target.fixed_database) == (None, None, pg_database.database)
        reply = client.query(pg_database, "select current_database() as db, current_user as who")
        assert reply.json() == [{"db": pg_database.database, "who": pg_database.username}]
        # The DATABASES login is not used: the client's own one is checked by PostgreSQL.
        body = pg_database.body("select 1")
        body["password"] = "not-" + PASSWORD
        assert client.post(body).json()["code"] == "AUTHENTICATION_FAILED"
        body = pg_database.body("select 1")
        body["database"] = "postgres"
        assert client.post(body).json()["code"] == "DATABASE_NOT_ALLOWED"


@both
def test_target_reuses_a_sqlite_databases_entry_with_users(django_client: Any, sqlite_database: Database) -> None:
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": Path(sqlite_path(sqlite_database))}
    with databases(lite=entry):
        client = django_client(targets={"lite": {"DATABASE": "lite", "USERS": {SQLITE_USER: SQLITE_PASSWORD},
                                                  "PROVIDERS": ["postgres"]}})
        assert client.query(sqlite_database, "select 1 as one").json() == [{"one": 1}]
        body = sqlite_database.body("select 1 as one", provider="postgres")  # what PolyScale's client sends
        assert client.post(body).json() == [{"one": 1}]
        body["username"] = "someone"
        assert client.post(body).json()["code"] == "AUTHENTICATION_FAILED"


def test_a_databases_change_rebuilds_the_core(sqlite_database: Database, tmp_path: Path) -> None:
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path(sqlite_database)}
    with databases(lite=entry), override_settings(SQLHTTP={"TARGETS": {"lite": {"DATABASE": "lite",
                                                                                  "USERS": {"u": "p"}}}}):
        first = get_core()
        with databases(lite={**entry, "NAME": str(tmp_path / "other.db")}):
            assert get_core() is not first
            assert str(get_core().options.targets["lite"].url.database) == str(tmp_path / "other.db")


# -- the middleware, sync and async -------------------------------------------------------------------------------


@both
def test_queries_and_errors_through_the_django_clients(django_client: Any, sqlite_database: Database) -> None:
    client = django_client(targets=targets_for(sqlite_database), max_body_bytes=300)
    reply = client.query(sqlite_database, "select ? as a", ["x"])
    assert (reply.status, reply.headers["content-type"], reply.json()) == (200, "application/json", [{"a": "x"}])
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["content-length"] == str(len(reply.body))
    reply = client.request("GET", "/sql")
    assert (reply.status, reply.headers["allow"], reply.json()["code"]) == (405, "POST", "METHOD_NOT_ALLOWED")
    assert client.request("POST", "/sql", b"{}").json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert client.post(b"").json()["code"] == "INVALID_JSON"
    reply = client.query(sqlite_database, "select '" + "x" * 400 + "'")
    assert (reply.status, reply.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    reply = client.request("GET", "/sqlx")
    assert (reply.status, reply.body) == (200, b"host app: GET /sqlx")


@both
def test_override_settings_swaps_the_targets(django_client: Any, sqlite_database: Database,
                                             tmp_path: Path) -> None:
    client = django_client(targets=targets_for(sqlite_database))
    assert client.query(sqlite_database, "select 1 as one").status == 200
    first = client.core
    assert first.engines.stats()["engines"] == 1
    other = Target(f"sqlite:///{tmp_path / 'other.db'}", users={"o": "p"})
    with override_settings(SQLHTTP={"TARGETS": {"other": other}, "PATH": "/db"}):
        assert client.core is not first
        assert first.engines.stats()["engines"] == 0  # the replaced core closed its pools
        body = {"cacheId": "other", "username": "o", "password": "p", "database": "x", "provider": "sqlite",
                "sql": "select 2 as two"}
        assert client.post(body, path="/db").json() == [{"two": 2}]
        assert client.query(sqlite_database, "select 1").body == b"host app: POST /sql"
    assert client.query(sqlite_database, "select 1 as one").json() == [{"one": 1}]


def test_script_name_is_respected(sqlite_database: Database) -> None:
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    with override_settings(SQLHTTP={"TARGETS": targets_for(sqlite_database)}):
        handler = WSGIHandler()
        status, _, content = wsgi_exchange(handler, "POST", "/sql", body, SCRIPT_NAME="/mount")
        assert (status, json.loads(content)) == ("200 OK", [{"one": 1}])
        status, _, content = wsgi_exchange(handler, "GET", "/mount/sql")
        assert content == b"host app: GET /mount/sql"  # not the endpoint: PATH_INFO is /mount/sql


@pytest.mark.parametrize("order", ["ours-first", "csrf-first"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_csrf_middleware_does_not_block_the_endpoint(sqlite_database: Database, order: str,
                                                     asynchronous: bool) -> None:
    others = [name for name in DJANGO_MIDDLEWARE if name != CSRF]
    middleware = [OURS, CSRF, *others] if order == "ours-first" else [CSRF, OURS, *others]
    body = json.dumps(sqlite_database.body("select 1 as one"))
    with override_settings(MIDDLEWARE=middleware, SQLHTTP={"TARGETS": targets_for(sqlite_database)}):
        if asynchronous:
            http: Any = AsyncClient(enforce_csrf_checks=True)
            endpoint = asyncio.run(http.post("/sql", body, content_type="application/json"))
            host = asyncio.run(http.post("/form", {"a": "b"}))
        else:
            http = DjangoTestClient(enforce_csrf_checks=True)
            endpoint = http.post("/sql", body, content_type="application/json")
            host = http.post("/form", {"a": "b"})
    assert (endpoint.status_code, json.loads(endpoint.content)) == (200, [{"one": 1}])
    assert host.status_code == 403  # CSRF protection is on, for the host's own views


@both
def test_disallowed_host_is_refused_before_the_core(django_client: Any, sqlite_database: Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client = django_client(targets=targets_for(sqlite_database))
    calls: list[Request] = []

    async def handle_async(request: Request, offload: Any) -> Response:
        calls.append(request)
        raise AssertionError("the core was reached")

    monkeypatch.setattr(client.core, "handle", calls.append)
    monkeypatch.setattr(client.core, "handle_async", handle_async)
    reply = client.post(sqlite_database.body("select 1"), headers={"Host": "attacker.example"})
    assert reply.status == 400 and calls == []


def test_async_work_runs_on_our_bounded_pool_off_the_loop(sqlite_database: Database,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What the async path hands off (here every SQLite statement: ``inline_budget`` 0) runs on the middleware's own
    pool of ``executor_threads`` threads: not on the loop's thread, not on ``sync_to_async``'s, never more at once."""
    threads: list[threading.Thread] = []
    running, peak, lock = 0, 0, threading.Lock()

    class Recording(ThreadPoolExecutor):
        def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
            def run() -> T:
                nonlocal running, peak
                with lock:
                    threads.append(threading.current_thread())
                    running += 1
                    peak = max(peak, running)
                try:
                    time.sleep(0.1)
                    return fn(*args, **kwargs)
                finally:
                    with lock:
                        running -= 1

            return super().submit(run)

    monkeypatch.setattr("sqlhttp_middleware.django.middleware.ThreadPoolExecutor", Recording)
    # pool_size 4: the core lets four requests at the threads, so only the executor can hold them to two.
    client = make_django_client({"targets": targets_for(sqlite_database), "executor_threads": 2, "pool_size": 4,
                                 "inline_budget": 0}, asynchronous=True)
    try:
        body = json.dumps(sqlite_database.body("select 1 as one"))
        http = AsyncClient()

        async def six() -> tuple[int, list[Any]]:
            replies = await asyncio.gather(*(http.post("/sql", body, content_type="application/json")
                                             for _ in range(6)))
            return threading.get_ident(), replies

        loop_thread, replies = asyncio.run(six())
        assert [json.loads(reply.content) for reply in replies] == [[{"one": 1}]] * 6
        assert len(threads) == 6  # every statement was handed off, here
        assert loop_thread not in {thread.ident for thread in threads}
        assert all(thread.name.startswith("sqlhttp") for thread in threads)  # ours, not sync_to_async's
        assert len({thread.ident for thread in threads}) <= 2 and peak == 2
    finally:
        client.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_under_asgi_postgresql_runs_on_the_event_loop(pg_database: Database, sqlite_database: Database,
                                                      asynchronous: bool) -> None:
    """In async mode the middleware takes the core's async path: PostgreSQL through psycopg's async pools on the
    loop (``core.aio``), SQLite through the sync engines, both answering as in sync mode, where ``core.aio`` is
    never used."""
    client = make_django_client({"targets": targets_for(pg_database, sqlite_database)}, asynchronous=asynchronous)
    try:
        aio = client.core.aio
        assert aio is not None  # async_postgres is on by default
        ran_on: list[str] = []
        run = aio.run

        async def recording(*args: Any, **kwargs: Any) -> Any:
            ran_on.append(threading.current_thread().name)
            return await run(*args, **kwargs)

        aio.run = recording
        reply = client.query(pg_database, "select 1 as one, current_user as who")
        assert (reply.status, reply.json()) == (200, [{"one": 1, "who": pg_database.username}])
        reply = client.query(sqlite_database, "select 2 as two")
        assert (reply.status, reply.json()) == (200, [{"two": 2}])
        if asynchronous:
            assert len(ran_on) == 1 and not ran_on[0].startswith("sqlhttp")  # awaited on the loop's own thread
            assert aio.stats()["engines"] == 1  # the async pool for the PostgreSQL login
        else:
            assert ran_on == [] and aio.stats()["engines"] == 0
    finally:
        client.close()


def test_body_is_read_at_most_limit_plus_one(sqlite_database: Database) -> None:
    with override_settings(SQLHTTP={"TARGETS": targets_for(sqlite_database), "MAX_BODY_BYTES": 100}):
        request = RequestFactory().post("/sql", b"{" + b" " * 10_000 + b"}", content_type="application/json")
        del request.META["CONTENT_LENGTH"]  # no declared length: only reading tells
        asked: list[int] = []
        stream = io.BytesIO(b"{" + b" " * 10_000 + b"}")

        def read(size: int = -1) -> bytes:
            asked.append(size)
            return stream.read(size)

        request._stream = type("Stream", (), {"read": staticmethod(read)})()  # type: ignore[attr-defined]
        response: Any = SQLHTTPMiddleware(host_view)(request)
        assert response.status_code == 413
        assert asked == [101] and stream.tell() == 101


def test_a_body_read_by_an_earlier_middleware_is_used(sqlite_database: Database) -> None:
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    with override_settings(SQLHTTP={"TARGETS": targets_for(sqlite_database)}, DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        request = RequestFactory().post("/sql", body, content_type="application/json")
        assert request.body == body
        response: Any = SQLHTTPMiddleware(host_view)(request)
        assert json.loads(response.content) == [{"one": 1}]
    # Django's own DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to the endpoint; max_body_bytes does.
    with override_settings(SQLHTTP={"TARGETS": targets_for(sqlite_database)}, DATA_UPLOAD_MAX_MEMORY_SIZE=10):
        request = RequestFactory().post("/sql", body, content_type="application/json")
        response = SQLHTTPMiddleware(host_view)(request)
        assert json.loads(response.content) == [{"one": 1}]


# -- host routes through Django's real handlers: the same bytes with and without the middleware ---------------------


def wsgi_exchange(handler: WSGIHandler, method: str, path: str, body: bytes = b"",
                  **environ: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request through a WSGI callable: (status line, header list, body bytes), as a server would send them."""
    base: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_HOST": "testserver", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        base.update(CONTENT_LENGTH=str(len(body)), CONTENT_TYPE="application/json")
    base.update(environ)
    started: list[Any] = []
    result = handler(base, lambda status, headers, exc_info=None: started.append((status, headers)))
    try:
        content = b"".join(result)
    finally:
        result.close()  # type: ignore[attr-defined]
    return started[0][0], started[0][1], content


async def asgi_exchange(handler: ASGIHandler, method: str, path: str, body: bytes = b"",
                        headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    """One request through an ASGI app: every message it sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []
    chunks = [body[:len(body) // 2], body[len(body) // 2:]]

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    return sent


HOST_REQUESTS = [("GET", "/"), ("GET", "/headers"), ("POST", "/sqlx"), ("GET", "/sql/more"), ("PUT", "/x/sql")]


def test_wsgi_host_routes_are_byte_for_byte_unchanged() -> None:
    with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
        bare = WSGIHandler()
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        mounted = WSGIHandler()
    for method, path in [*HOST_REQUESTS, ("GET", "/stream/sync")]:
        assert wsgi_exchange(mounted, method, path) == wsgi_exchange(bare, method, path), path
    status, _, content = wsgi_exchange(mounted, "GET", "/stream/sync")
    assert (status, content) == ("200 OK", b"0\n1\n2\n3\n4\n")
    assert ("X-Host", "yes") in wsgi_exchange(mounted, "GET", "/headers")[1]


def test_asgi_host_routes_are_byte_for_byte_unchanged() -> None:
    with override_settings(MIDDLEWARE=DJANGO_MIDDLEWARE):
        bare = ASGIHandler()
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        mounted = ASGIHandler()
    for method, path in [*HOST_REQUESTS, ("GET", "/stream/async")]:
        assert asyncio.run(asgi_exchange(mounted, method, path)) == asyncio.run(asgi_exchange(bare, method, path))
    messages = asyncio.run(asgi_exchange(mounted, "GET", "/stream/async"))
    assert b"".join(message.get("body", b"") for message in messages[1:]) == b"0\n1\n2\n3\n4\n"


def test_asgi_handler_serves_the_endpoint_and_enforces_the_limit_without_a_length(sqlite_database: Database) -> None:
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    json_type = [(b"content-type", b"application/json")]
    with override_settings(SQLHTTP={"TARGETS": targets_for(sqlite_database), "MAX_BODY_BYTES": len(body)}):
        handler = ASGIHandler()
        start, *rest = asyncio.run(asgi_exchange(handler, "POST", "/sql", body, json_type))
        assert start["status"] == 200
        assert (b"Content-Type", b"application/json") in start["headers"]
        assert json.loads(b"".join(message.get("body", b"") for message in rest)) == [{"one": 1}]
        start, *rest = asyncio.run(asgi_exchange(handler, "POST", "/sql", body + b" ", json_type))
        assert start["status"] == 413


# -- the example project --------------------------------------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "django_app"


def run_example(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SQLHTTP_DEMO_DB": str(tmp_path / "demo.db"), **env}
    return subprocess.run([sys.executable, *args], cwd=EXAMPLE, env=clean, capture_output=True, text=True,
                          timeout=120, check=False)


def test_example_project_passes_its_checks(tmp_path: Path) -> None:
    done = run_example(tmp_path, "manage.py", "check", SQLHTTP_TARGETS="pg=postgresql://127.0.0.1:5432")
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
    done = run_example(tmp_path, "manage.py", "check")  # no targets: the SQLite demo
    assert done.returncode == 0, done.stderr


def test_example_project_rejects_a_bad_setting_at_start_up(tmp_path: Path) -> None:
    bad = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432", "SQLHTTP_POOL_SIZE": "0"}
    done = run_example(tmp_path, str(EXAMPLE / "manage.py"), "check", **bad)
    assert done.returncode != 0
    assert "sqlhttp.E003" in done.stderr and "pool_size" in done.stderr
    for module in ("project.wsgi", "project.asgi"):  # what gunicorn and uvicorn import, without the checks
        done = run_example(tmp_path, "-c", f"import {module}", **bad)
        assert done.returncode != 0
        assert "ImproperlyConfigured: (sqlhttp.E003) SQLHTTP: pool_size" in done.stderr


@pytest.mark.parametrize("kind", ["django-gunicorn", "django-uvicorn"])
def test_example_project_serves_the_sqlite_demo_under_a_real_server(kind: str, tmp_path: Path) -> None:

    demo = {"cacheId": "demo", "username": "demo", "password": "demo", "database": "shop", "provider": "postgres",
            "sql": "SELECT count(*) AS n FROM customers WHERE country = ?", "bindings": ["US"]}
    with serving(kind, {"SQLHTTP_TARGETS": "", "SQLHTTP_DEMO_DB": str(tmp_path / "demo.db")}) as url:
        request = urllib.request.Request(url + "/sql", json.dumps(demo).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == [{"n": 4}]
        with urllib.request.urlopen(url + "/api/status", timeout=10) as response:
            assert response.read() == b'{"app": "django-example", "ok": true}'
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert b"Django example" in response.read()
