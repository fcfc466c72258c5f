"""Shared fixtures: real databases, and one client fixture parametrized over every mount.

Each test session creates its own PostgreSQL and MariaDB databases (sqlalchemy-utils) and drops them at the end.
Logins use the password-checked roles that ``scripts/prepare-databases.sh`` creates. A database that cannot be
reached skips its tests on a developer's machine, and fails them under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
import webtest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy_utils import create_database, drop_database
from werkzeug.middleware.lint import LintMiddleware

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

PASSWORD = os.environ.get("SQLHTTP_TEST_PASSWORD", "p@ss:/#%?wörd✓")  # the same default as scripts/prepare-databases.sh
PG_USER = os.environ.get("SQLHTTP_TEST_PG_USER", "sqlhttp_test")
MYSQL_USER = os.environ.get("SQLHTTP_TEST_MYSQL_USER", "sqlhttp_test")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
SQLITE_USER, SQLITE_PASSWORD = "lite", "lite-secret"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parent.parent


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}); start it (see README)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Database:
    """One real database the tests can reach, through the endpoint and directly."""

    key: str  # the target name (cacheId)
    family: str
    provider: str
    username: str
    password: str
    database: str
    admin_url: str | sqlalchemy.URL  # direct SQLAlchemy URL, for setting up fixtures and checking effects

    def body(self, sql: str, bindings: Any = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "cacheId": self.key, "username": self.username, "password": self.password,
            "database": self.database, "provider": self.provider, "sql": sql,
        }
        if bindings is not None:
            body["bindings"] = bindings
        body.update(extra)
        return body

    def admin(self) -> sqlalchemy.Engine:
        return sqlalchemy.create_engine(self.admin_url, poolclass=sqlalchemy.pool.NullPool)

    def run(self, sql: str, **params: Any) -> list[Any]:
        """Run SQL directly (not through the endpoint) and return its rows."""
        engine = self.admin()
        try:
            with engine.begin() as connection:
                result = connection.exec_driver_sql(sql, params) if params else connection.exec_driver_sql(sql)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Database]:
    name = f"sqlhttp_test_{uuid.uuid4().hex[:8]}"
    try:
        create_database(PG_ADMIN + name)
    except Exception as exc:
        unavailable("PostgreSQL on 127.0.0.1:5432", exc)
    admin = sqlalchemy.create_engine(PG_ADMIN + name, poolclass=sqlalchemy.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"ALTER DATABASE {name} OWNER TO {PG_USER}")
        connection.exec_driver_sql(f"ALTER SCHEMA public OWNER TO {PG_USER}")
    admin.dispose()
    owner = sqlalchemy.URL.create("postgresql+psycopg", PG_USER, PASSWORD, "127.0.0.1", 5432, name)
    yield Database("pg", "postgresql", "postgres", PG_USER, PASSWORD, name, owner)
    _terminate_pg(name)
    drop_database(PG_ADMIN + name)


def _terminate_pg(name: str) -> None:
    admin = sqlalchemy.create_engine(PG_ADMIN + "postgres", poolclass=sqlalchemy.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(n)s AND pid <> pg_backend_pid()",
            {"n": name},
        )
    admin.dispose()


@pytest.fixture(scope="session")
def maria_database() -> Iterator[Database]:
    name = f"sqlhttp_test_{uuid.uuid4().hex[:8]}"
    try:
        create_database(MYSQL_ADMIN + name + "?charset=utf8mb4")
    except Exception as exc:
        unavailable("MariaDB on 127.0.0.1:3306", exc)
    url = MYSQL_ADMIN + name + "?charset=utf8mb4"
    yield Database("maria", "mysql", "mariadb", MYSQL_USER, PASSWORD, name, url)
    drop_database(url)


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    path = tmp_path_factory.mktemp("sqlite") / "test.db"
    return Database("lite", "sqlite", "sqlite", SQLITE_USER, SQLITE_PASSWORD, "main", f"sqlite:///{path}")


DATABASES = ["pg", "maria", "lite"]


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest) -> Database:
    fixture = {"pg": "pg_database", "maria": "maria_database", "lite": "sqlite_database"}[request.param]
    database: Database = request.getfixturevalue(fixture)
    return database


def targets_for(*databases: Database) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for database in databases:
        if database.family == "postgresql":
            targets[database.key] = "postgresql://127.0.0.1:5432"
        elif database.family == "mysql":
            targets[database.key] = "mariadb://127.0.0.1:3306"
        else:
            path = str(database.admin_url).removeprefix("sqlite:///")
            targets[database.key] = Target(f"sqlite:///{path}", users={SQLITE_USER: SQLITE_PASSWORD})
    return targets


# -- one client over every mount --------------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as blocking_portal:
        yield blocking_portal


MOUNTS = ["wsgi", "asgi", "django", "django-async"]


@pytest.fixture(params=MOUNTS)
def make_client(request: pytest.FixtureRequest, portal: BlockingPortal) -> Iterator[Callable[..., Client]]:
    """Build a client over a middleware with the given options, on the parametrized mount.

    Django's settings are process-wide, so a test makes one client at a time on the Django mounts.
    """
    made: list[Client] = []

    def make(**options: Any) -> Client:
        # Counts (rate limit, failed logins) kept per middleware, so tests cannot see each other's; the tests of
        # shared storage say so explicitly.
        options.setdefault("rate_limit_storage", "memory")
        if request.param == "wsgi":
            client = make_wsgi_client(options)
        elif request.param == "asgi":
            client = make_asgi_client(options, portal)
        else:
            from .django_support import make_django_client

            client = make_django_client(options, asynchronous=request.param == "django-async")
        made.append(client)
        return client

    yield make
    for client in made:
        for close in client.closers:
            close()


@pytest.fixture
def client(make_client: Callable[..., Client], db: Database) -> Client:
    """A client whose middleware serves the parametrized database as its only target."""
    return make_client(targets=targets_for(db))
