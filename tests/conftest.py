"""Shared fixtures: real databases, and one client fixture parametrized over every mount.

Each test session creates its own PostgreSQL and MariaDB databases (sqlalchemy-utils) and drops them at the end.
The helpers these fixtures are built from live in ``tests.support``; test modules import them from there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy_utils import create_database, drop_database

from sqlhttp_middleware.core import SQLHTTPCore

from . import support
from .support import (
    DATABASES,
    ENGINE_PATHS,
    MOUNTS,
    MYSQL_ADMIN,
    MYSQL_USER,
    PASSWORD,
    PG_ADMIN,
    PG_USER,
    SQLITE_PASSWORD,
    SQLITE_USER,
    Client,
    Database,
    make_asgi_client,
    make_wsgi_client,
    targets_for,
    terminate_pg_sessions,
    unavailable,
)


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
    terminate_pg_sessions(name)
    drop_database(PG_ADMIN + name)


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


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest) -> Database:
    fixture = {"pg": "pg_database", "maria": "maria_database", "lite": "sqlite_database"}[request.param]
    database: Database = request.getfixturevalue(fixture)
    return database


@pytest.fixture(name="redis_url")
def reachable_redis_url() -> str:
    """The machine's Redis (skips the test, or fails it in CI, when Redis does not answer)."""
    return support.redis_url()


# -- one client over every mount --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as blocking_portal:
        yield blocking_portal


def _client_factory(kind: str, portal: BlockingPortal) -> tuple[Callable[..., Client], list[Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        # Counts (rate limit, failed logins) kept per middleware, so tests cannot see each other's; the tests of
        # shared storage say so explicitly.
        options.setdefault("rate_limit_storage", "memory")
        if kind == "wsgi":
            client = make_wsgi_client(options)
        elif kind == "asgi":
            client = make_asgi_client(options, portal)
        else:
            from .support.django import make_django_client  # here: importing it configures Django

            client = make_django_client(options, asynchronous=kind == "django-async")
        made.append(client)
        return client

    return make, made


@pytest.fixture(params=MOUNTS)
def make_client(request: pytest.FixtureRequest, portal: BlockingPortal) -> Iterator[Callable[..., Client]]:
    """Build a client over a middleware with the given options, on the parametrized mount.

    Django's settings are process-wide, so a test makes one client at a time on the Django mounts.
    """
    make, made = _client_factory(request.param, portal)
    yield make
    for client in made:
        for close in client.closers:
            close()


@pytest.fixture(params=ENGINE_PATHS)
def make_engine_client(request: pytest.FixtureRequest, portal: BlockingPortal) -> Iterator[Callable[..., Client]]:
    """:func:`make_client` on the WSGI and ASGI mounts only: the sync and the async paths through the core, which
    the Django mounts run too. For behaviour of the engine (pools, deadlines, caps, batches), not of a mount."""
    make, made = _client_factory(request.param, portal)
    yield make
    for client in made:
        for close in client.closers:
            close()


@pytest.fixture
def client(make_client: Callable[..., Client], db: Database) -> Client:
    """A client whose middleware serves the parametrized database as its only target."""
    return make_client(targets=targets_for(db))


@pytest.fixture
def make_core() -> Iterator[Callable[..., SQLHTTPCore]]:
    """Build cores (no mount around them) with the given options; closed after the test."""
    made: list[SQLHTTPCore] = []

    def make(**options: Any) -> SQLHTTPCore:
        core = SQLHTTPCore(**{"rate_limit_storage": "memory", **options})
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()
