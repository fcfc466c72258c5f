"""The real services the tests reach: PostgreSQL, MariaDB, SQLite and Redis, their logins, and targets over them.

Logins use the password-checked roles that ``scripts/prepare-databases.sh`` creates. A service that cannot be
reached skips its tests on a developer's machine, and fails them under ``CI=true`` (:func:`unavailable`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy

from sqlhttp_middleware.options import Target

PASSWORD = os.environ.get("SQLHTTP_TEST_PASSWORD", "p@ss:/#%?wörd✓")  # the same default as scripts/prepare-databases.sh
PG_USER = os.environ.get("SQLHTTP_TEST_PG_USER", "sqlhttp_test")
MYSQL_USER = os.environ.get("SQLHTTP_TEST_MYSQL_USER", "sqlhttp_test")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
SQLITE_USER, SQLITE_PASSWORD = "lite", "lite-secret"
REDIS_URL = "redis://127.0.0.1:6379/0"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parent.parent.parent
DATABASES = ["pg", "maria", "lite"]  # the keys the ``db`` fixture is parametrized over


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


def terminate_pg_sessions(name: str) -> None:
    """End every other session on PostgreSQL database ``name``, so that it can be dropped."""
    admin = sqlalchemy.create_engine(PG_ADMIN + "postgres", poolclass=sqlalchemy.pool.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(n)s AND pid <> pg_backend_pid()",
            {"n": name},
        )
    admin.dispose()


def targets_for(*databases: Database) -> dict[str, Any]:
    """The ``targets`` option that serves ``databases`` under their keys."""
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


def redis_url() -> str:
    """The URL of the machine's Redis, once it answers a ping (else the test is skipped, or fails in CI)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable("Redis on 127.0.0.1:6379", exc)
    return REDIS_URL
