"""The OpenAPI document: served at ``openapi_path`` with the configured endpoint path, and the endpoint answers as
it says.

schemathesis (4.x) loads the document from the running WSGI middleware, so these tests also prove that it is
served, and sends requests to a real SQLite target:

* requests generated from the document, valid and invalid (``GenerationMode.POSITIVE`` / ``NEGATIVE``): they name
  no configured target or break the request schema, so each must be refused with a documented 4xx;
* requests that reach the database: a generated valid request with the target's name and login put in (now and
  then a wrong one), and, one test per statement, SQL with bindings that fit it, chosen to lead to rows, the full
  shape, binding and SQL errors, several statements, a constraint violation, a result over ``max_rows`` and a
  timeout; and the generated SQL and bindings as they come.

Every answer must have a documented status, content type, body and headers, and be no 5xx: except 504
``STATEMENT_TIMEOUT`` and 507 ``RESULT_TOO_LARGE``, which statements here provoke on purpose.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client as WSGIClient
from werkzeug.test import TestResponse

from sqlhttp_middleware.errors import all_error_classes
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware

from .support import Database, host_app_wsgi, targets_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
TABLE = "openapi_items"
MAX_ROWS = 20


def shipped_document() -> dict[str, Any]:
    shipped = files("sqlhttp_middleware.protocols.polyscale").joinpath("openapi.json")
    document: dict[str, Any] = json.loads(shipped.read_text("utf-8"))
    return document


@pytest.fixture(scope="module")
def middleware(sqlite_database: Database) -> Iterator[SQLHTTPMiddleware]:
    sqlite_database.run(f"drop table if exists {TABLE}")
    sqlite_database.run(f"create table {TABLE} (id integer primary key, name text not null unique)")
    app = SQLHTTPMiddleware(
        None,
        targets=targets_for(sqlite_database),
        openapi_path="/openapi.json",
        rate_limit=0,  # generated floods are not throttled
        rate_limit_storage="memory",
        max_rows=MAX_ROWS,  # reachable, for 507 and "truncated": true
        statement_timeout=0.25,  # reachable, for 504, cheaply
    )
    yield app
    app.close()
    sqlite_database.run(f"drop table if exists {TABLE}")


@pytest.fixture(scope="module")
def operation(middleware: SQLHTTPMiddleware) -> Any:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", middleware)
    return schema["/sql"]["POST"]


@pytest.fixture(scope="module")
def database_operation(middleware: SQLHTTPMiddleware) -> Any:
    """The same, except that not_a_server_error admits 504 and 507: STATEMENTS provoke them on purpose, and they
    are documented answers (STATEMENT_TIMEOUT, RESULT_TOO_LARGE). 500 and 503 still fail it."""
    config = schemathesis.Config.from_dict(
        {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "504", "507"]}}}
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", middleware, config=config)
    return schema["/sql"]["POST"]


def login(database: Database) -> dict[str, str]:
    return {"cacheId": database.key, "provider": database.provider, "username": database.username,
            "password": database.password}


def outcome(response: Any) -> str:
    """``200 rows``, ``200 full``, or the status and error code of an answer (schemathesis' or werkzeug's)."""
    try:
        body = response.get_json() if isinstance(response, TestResponse) else response.json()
    except ValueError:
        return f"{response.status_code} (not JSON)"
    if response.status_code == 200:
        return "200 full" if isinstance(body, dict) else "200 rows"
    return f"{response.status_code} {body.get('code') if isinstance(body, dict) else '?'}"


def integers_in(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from integers_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from integers_in(item)


# -- the document itself --------------------------------------------------------------------------------------------


def test_the_document_names_every_error_code_under_its_status() -> None:
    document = shipped_document()
    [path] = document["paths"]
    responses = document["paths"][path]["post"]["responses"]
    schemas = document["components"]["schemas"]
    expected: dict[int, set[str]] = {}
    for cls in all_error_classes(sessions=False):
        expected.setdefault(cls.status, set()).add(cls.code)
    documented = {int(status): set(schemas[f"Error{status}"]["allOf"][1]["properties"]["code"]["enum"])
                  for status in responses if status != "200"}
    assert documented == expected
    polyscale = {cls.code for cls in all_error_classes(sessions=False)}  # it has no sessions, so no stream errors
    assert set(schemas["Error"]["properties"]["code"]["enum"]) == polyscale
    for status in documented:
        assert responses[str(status)] == {"$ref": f"#/components/responses/{_response_name(document, status)}"}


def _response_name(document: dict[str, Any], status: int) -> str:
    for name, response in document["components"]["responses"].items():
        if response["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/Error{status}"}:
            return str(name)
    raise AssertionError(f"no response for {status}")


def test_the_document_is_served_at_the_configured_path(sqlite_database: Database) -> None:
    app = SQLHTTPMiddleware(host_app_wsgi, targets=targets_for(sqlite_database), path="/db/sql",
                            openapi_path="/db/openapi.json", rate_limit_storage="memory")
    try:
        client = WSGIClient(app)
        response = client.get("/db/openapi.json")
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        served = response.get_json()
        assert list(served["paths"]) == ["/db/sql"]
        shipped = shipped_document()
        assert served["paths"]["/db/sql"] == shipped["paths"]["/sql"]
        assert {k: v for k, v in served.items() if k != "paths"} == {k: v for k, v in shipped.items() if k != "paths"}
        assert client.head("/db/openapi.json").status_code == 200

        schema = schemathesis.openapi.from_wsgi("/db/openapi.json", app)
        operation = schema["/db/sql"]["POST"]
        refused = client.post("/db/openapi.json", data=b"{}", content_type="application/json")
        assert refused.status_code == 405
        assert refused.get_json()["code"] == "METHOD_NOT_ALLOWED"
        assert refused.headers["Allow"] == "GET, HEAD"
        operation.Case(body={}).validate_response(refused, checks=CHECKS)
        # The endpoint itself is where the document says, and refuses GET in the documented shape.
        not_post = client.get("/db/sql")
        assert (not_post.status_code, not_post.headers["Allow"]) == (405, "POST")
        operation.Case(body={}).validate_response(not_post, checks=CHECKS)
    finally:
        app.close()


def test_without_openapi_path_the_host_app_answers(sqlite_database: Database) -> None:
    app = SQLHTTPMiddleware(host_app_wsgi, targets=targets_for(sqlite_database), rate_limit_storage="memory")
    try:
        response = WSGIClient(app).get("/openapi.json")
        assert response.status_code == 200
        assert response.get_data() == b"host app: GET /openapi.json"
    finally:
        app.close()


# -- the endpoint answers as documented -----------------------------------------------------------------------------


def raw(middleware: SQLHTTPMiddleware, method: str, body: bytes, content_type: str | None) -> TestResponse:
    headers = {"Content-Type": content_type} if content_type else {}
    return WSGIClient(middleware).open("/sql", method=method, data=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "body", "content_type", "expected"),
    [
        ("GET", b"", None, "405 METHOD_NOT_ALLOWED"),
        ("PUT", b"{}", "application/json", "405 METHOD_NOT_ALLOWED"),
        ("POST", b"{}", "text/plain", "415 UNSUPPORTED_MEDIA_TYPE"),
        ("POST", b"{}", None, "415 UNSUPPORTED_MEDIA_TYPE"),
        ("POST", b"{", "application/json", "400 INVALID_JSON"),
        ("POST", b"[]", "application/json", "400 INVALID_REQUEST"),
        ("POST", b'{"x": "' + b"a" * 1_048_577 + b'"}', "application/json", "413 PAYLOAD_TOO_LARGE"),
    ],
)
def test_refusals_before_the_body_is_parsed_conform(
    middleware: SQLHTTPMiddleware, operation: Any, method: str, body: bytes, content_type: str | None, expected: str
) -> None:
    response = raw(middleware, method, body, content_type)
    assert outcome(response) == expected
    operation.Case(body={}).validate_response(response, checks=CHECKS)


def test_generated_requests_are_refused_as_documented(operation: Any) -> None:
    """Requests generated from the document, valid ones and invalid ones; none names a configured target."""
    seen: Counter[str] = Counter()
    strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                         operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @FUZZ
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS, additional_checks=[negative_data_rejection])
        seen[outcome(response)] += 1
        assert 400 <= response.status_code < 500, outcome(response)

    run()
    print("generated:", sum(seen.values()), dict(seen.most_common()))
    assert "404 TARGET_NOT_FOUND" in seen and "400 INVALID_REQUEST" in seen


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
COUNTED = f"with recursive c(x) as (select 1 union all select x + 1 from c where x < {MAX_ROWS + 5}) select x from c"
ENDLESS = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
KEEP = object()
GENERATED = st.just(KEEP)  # keep the generated bindings: they rarely fit, so mostly BINDING_ERROR
# Statements that reach every answer a SQLite target gives, each with bindings that fit it (None: no bindings).
STATEMENTS = [
    pytest.param("select 1 as one", st.none(), id="rows"),
    pytest.param("select ? as a, ? as b", st.lists(SCALARS, min_size=2, max_size=2), id="positional"),
    pytest.param("select :x as x, :y as y, :x as again", st.fixed_dictionaries({"x": SCALARS, "y": SCALARS}),
                 id="named"),
    pytest.param(f"select * from {TABLE} where id in (?) or name in (?)",
                 st.tuples(st.lists(st.integers(1, 50), max_size=5), st.lists(st.text(max_size=5), max_size=5))
                 .map(list), id="lists"),
    pytest.param(f"select ?? from {TABLE}", st.sampled_from([[["id", "name as label"]], ["name"], [["nope"]]]),
                 id="identifiers"),
    pytest.param(f"insert into {TABLE} (name) values (?)", st.lists(SCALARS, min_size=1, max_size=1),
                 id="insert"),  # 200 with lastInsertId, or 409 (unique, not null)
    pytest.param(f"update {TABLE} set name = :name where id = :id",
                 st.fixed_dictionaries({"name": SCALARS, "id": st.integers(1, 50)}), id="update"),
    pytest.param(f"delete from {TABLE} where id > ?", st.lists(st.integers(0, 50), min_size=1, max_size=1),
                 id="delete"),
    pytest.param("select 1; select 2", st.none(), id="multiple-statements"),
    pytest.param("select * from no_such_table", st.none(), id="sql-error"),
    pytest.param("select ? as a", GENERATED, id="generated-bindings"),
    pytest.param(COUNTED, st.none(), id="too-many-rows"),  # 507 in the rows shape, truncated in the full one
    pytest.param(ENDLESS, st.none(), id="timeout"),  # 504 after statement_timeout
    pytest.param(None, GENERATED, id="generated-sql"),  # the generated SQL: mostly SQL_ERROR
]


@st.composite
def requests_to_the_database(draw: st.DrawFn, operation: Any, database: Database, sql: str | None,
                             bindings: st.SearchStrategy[Any]) -> Any:
    """A generated valid request, with the target's name and login put in, and ``sql`` and its bindings."""
    generated: dict[str, Any] = draw(operation.as_strategy(generation_mode=GenerationMode.POSITIVE)).body
    body = {**generated, **login(database)}
    if draw(st.integers(0, 9)) == 5:  # now and then a wrong login, under a generated username so that "lite" is
        body["username"] = generated["username"] + "-x"  # never throttled by the failed-login brake
    if sql is not None:
        body["sql"] = sql
    drawn = draw(bindings)
    if drawn is None:
        body.pop("bindings", None)
    elif drawn is not KEEP:
        body["bindings"] = drawn
    return operation.Case(body=body)


@pytest.mark.parametrize(("sql", "bindings"), STATEMENTS)
def test_requests_that_reach_the_database_answer_as_documented(
    database_operation: Any, sqlite_database: Database, sql: str | None, bindings: st.SearchStrategy[Any]
) -> None:
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=30 if sql is None else 10)
    @given(case=requests_to_the_database(database_operation, sqlite_database, sql, bindings))
    def run(case: Any) -> None:
        response = case.call()
        seen[outcome(response)] += 1
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 504:
            assert case.body["sql"] == ENDLESS or case.body.get("timeout") is not None, case.body
        if response.status_code == 507:
            assert case.body.get("shape", "rows") == "rows", case.body

    run()
    print(f"\n{sql!r}: {sum(seen.values())} {dict(seen.most_common())}")
    assert any(not key.startswith(("401", "429")) for key in seen), "no request got past the login"


def test_rate_limit_headers_conform(sqlite_database: Database) -> None:
    app = SQLHTTPMiddleware(None, targets=targets_for(sqlite_database), openapi_path="/openapi.json",
                            rate_limit=2, rate_limit_per_client=5, rate_limit_storage="memory")
    try:
        operation = schemathesis.openapi.from_wsgi("/openapi.json", app)["/sql"]["POST"]
        body: dict[str, Any] = {**login(sqlite_database), "database": "main", "sql": "select 1 as one"}
        answers = [operation.Case(body=body).call_and_validate(checks=CHECKS) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        for answer in answers[:2]:
            assert answer.headers["ratelimit-policy"] == ['"mount";q=2;w=60, "client";q=5;w=60']
            assert answer.headers["ratelimit"][0].startswith('"mount";r=')
        # Refused by the mount limit: the client limit was not reached, so only the mount's is reported.
        assert answers[2].headers["ratelimit-policy"] == ['"mount";q=2;w=60']
        assert int(answers[2].headers["retry-after"][0]) >= 1
        assert answers[2].json()["code"] == "RATE_LIMITED"
    finally:
        app.close()


def test_a_failed_login_brake_conforms(sqlite_database: Database, operation: Any) -> None:
    body = {**login(sqlite_database), "username": "brake", "password": "wrong", "database": "main", "sql": "select 1"}
    answers = [operation.Case(body=body).call_and_validate(checks=CHECKS) for _ in range(11)]
    assert [outcome(answer) for answer in answers] == ["401 AUTHENTICATION_FAILED"] * 10 + ["429 LOGIN_THROTTLED"]


def test_integer_binding_beyond_int64_is_a_client_error(operation: Any, sqlite_database: Database) -> None:
    """An integer SQLite cannot hold is the client's mistake (protocol.md: send large integers as strings): a 4xx
    in the error shape, never a 500. (Found by this file's fuzzing; fixed in the SQLite dialect.)"""
    body = {**login(sqlite_database), "database": "main", "sql": "select ? as a", "bindings": [2**63]}
    case = operation.Case(body=body)
    response = case.call()
    assert response.status_code == 400, outcome(response)
    case.validate_response(response, checks=CHECKS)

