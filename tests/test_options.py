"""Configuration fails at start-up with a message naming the setting; MS SQL Server as far as it goes without one."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from sqlhttp_middleware import errors
from sqlhttp_middleware.core import Request, SQLHTTPCore
from sqlhttp_middleware.dialects import dialect_support
from sqlhttp_middleware.encoding import encode_value, iso_duration
from sqlhttp_middleware.options import ConfigurationError, Target, parse_targets
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware

PG = {"pg": "postgresql://127.0.0.1:5432"}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "targets"),
        ({"targets": {}}, "targets"),
        ({"targets": {"x": "not a url"}}, "targets['x']"),
        ({"targets": {"x": "oracle://h/db"}}, "unsupported database 'oracle'"),
        ({"targets": {"x": "postgresql://user:secret@h:5432"}}, "anyone reaching the endpoint"),
        ({"targets": {"x": "postgresql:///db"}}, "needs a host"),
        ({"targets": {"x": "sqlite:///f.db"}}, "declare users"),
        ({"targets": {"x": "sqlite://"}}, "file path"),
        ({"targets": {"x": Target("sqlite:///f.db", users={"u": ""})}}, "must be non-empty strings"),
        ({"targets": {"x": Target("postgresql://h", users={"u": "p"})}}, "URL carries the database login"),
        ({"targets": {"x": Target("postgresql://h", api_keys={"k": "p"})}}, "URL carries the database login"),
        ({"targets": PG, "authorize": "not callable"}, "authorize"),
        ({"targets": PG, "login_attempts": -1}, "login_attempts"),
        ({"targets": PG, "openapi_path": "/sql"}, "openapi_path"),
        ({"targets": PG, "metrics_path": "/metrics/"}, "metrics_path"),
        ({"targets": PG, "health_path": "/sql"}, "health_path"),
        ({"targets": PG, "health_path": "/health", "metrics_path": "/health/ready"}, "readiness path"),
        ({"targets": PG, "request_id_header": "X Request"}, "request_id_header"),
        ({"targets": PG, "deadline_grace": 0}, "deadline_grace"),
        ({"targets": PG, "max_sql_bytes": 0}, "max_sql_bytes"),
        ({"targets": PG, "body_timeout": -1}, "body_timeout"),
        ({"targets": PG, "slow_statement_log": -1}, "slow_statement_log"),
        ({"targets": PG, "rate_limit_slots": -1}, "rate_limit_slots"),
        ({"targets": {"x": 5}}, "URL string or a Target"),
        ({"targets": {"": "postgresql://h"}}, "must be non-empty strings"),
        ({"targets": PG, "path": "sql"}, "path"),
        ({"targets": PG, "path": "/sql/"}, "path"),
        ({"targets": PG, "pool_size": 0}, "pool_size"),
        ({"targets": PG, "pool_size": True}, "pool_size"),
        ({"targets": PG, "pool_timeout": -1}, "pool_timeout"),
        ({"targets": PG, "idle_timeout": "60"}, "idle_timeout"),
        ({"targets": PG, "max_engines": 1.5}, "max_engines"),
        ({"targets": PG, "pool_sise": 2}, "pool_sise"),
    ],
)
def test_bad_settings_fail_at_start_up(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SQLHTTPCore(**options)
    assert fragment in str(caught.value)
    assert "secret" not in str(caught.value)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        SQLHTTPMiddleware(None, PG)  # type: ignore[misc]


def test_parse_targets() -> None:
    assert parse_targets("a=postgresql://h:1 b=mariadb://h:2") == {"a": "postgresql://h:1", "b": "mariadb://h:2"}
    with pytest.raises(ConfigurationError, match="entry 2"):
        parse_targets("a=postgresql://h postgresql://u:secret@h")
    with pytest.raises(ConfigurationError, match="twice"):
        parse_targets("a=postgresql://h a=postgresql://h")


def test_defaults_are_polyscales() -> None:
    core = SQLHTTPCore(targets=PG)
    assert (core.options.pool_size, core.options.idle_timeout, core.options.path) == (2, 60.0, "/sql")
    core.close()


# -- MS SQL Server, without a server ------------------------------------------------------------------------------

MSSQL = {"ms": "mssql://127.0.0.1:1"}  # nothing listens on port 1


def mssql_request(sql: str, bindings: Any = None) -> Request:
    body = {"cacheId": "ms", "username": "sa", "password": "pw", "database": "master", "provider": "mssql",
            "sql": sql, "bindings": bindings}
    return Request("POST", "/sql", {"content-type": "application/json"}, json.dumps(body).encode())


def test_mssql_target_uses_pymssql_and_brackets() -> None:
    core = SQLHTTPCore(targets=MSSQL, connect_timeout=1)
    target = core.options.targets["ms"]
    assert target.url.drivername == "mssql+pymssql" and target.providers == frozenset({"mssql"})
    from sqlhttp_middleware.bindings import compile_sql

    quote = target.url.get_dialect()().identifier_preparer.quote_identifier
    sql, params = compile_sql("select ?? from t where a = ?", ["my col", 1], dialect="mssql",
                              paramstyle="format", quote_identifier=quote)
    assert sql == "select [my col] from t where a = %s" and params == [1]
    core.close()


def test_mssql_unreachable_server_is_503_without_host_details() -> None:
    core = SQLHTTPCore(targets=MSSQL, connect_timeout=1)
    response = core.handle(mssql_request("select 1"))
    body = json.loads(response.body)
    assert response.status == 503 and body["code"] == "DATABASE_UNAVAILABLE"
    assert "127.0.0.1" not in body["message"] and "DB-Lib" not in body["message"]
    core.close()


class FakeMSSQLError(Exception):
    """pymssql's error shape: (number, message bytes)."""


def test_mssql_error_translation() -> None:
    support = dialect_support("mssql")
    login = support.translate_connect_error(FakeMSSQLError(18456, b"Login failed for user 'sa'."), "ms", "sa")
    assert isinstance(login, errors.AuthenticationFailed)
    unknown = support.translate_connect_error(FakeMSSQLError(4060, b"Cannot open database"), "ms", "sa")
    assert isinstance(unknown, errors.UnknownDatabase)
    error = support.translate_error(
        FakeMSSQLError(208, b"Invalid object name 'nope'.DB-Lib error message 20018, severity 16: host 10.0.0.5")
    )
    assert (error.database_code, error.database_message) == ("208", "Invalid object name 'nope'.")


# -- encoding -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2**53 - 1, 2**53 - 1),
        (-(2**53) + 1, -(2**53) + 1),
        (2**53, str(2**53)),
        (Decimal("1.10"), "1.10"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(days=2), "P2D"),
        (dt.timedelta(hours=1, microseconds=5), "PT1H0.000005S"),
        (dt.timedelta(days=-1, seconds=86399), "-PT1S"),
        (dt.time(1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "01:02:03-05:00"),
        (bytearray(b"\x00"), "AA=="),
        (memoryview(b"\x01"), "AQ=="),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ((1, 2**60), [1, str(2**60)]),
        ({"k": [Decimal("2")]}, {"k": ["2"]}),
        (type("MyInt", (int,), {})(2**60), str(2**60)),
        (object.__new__(type("Opaque", (), {"__str__": lambda self: "opaque"})), "opaque"),
    ],
)
def test_encode_value(value: Any, expected: Any) -> None:
    assert encode_value(value) == expected


def test_iso_duration_round_numbers() -> None:
    assert iso_duration(dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500)) == "P1DT2H3M4.5S"
