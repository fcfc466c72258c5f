"""The access log: one JSON line per answer at the endpoint with its request id, protocol, target, status and
duration; request ids taken from a trusted header when they look like ids and made up otherwise, answered as
X-Request-Id on every mount; past ``slow_statement_log``, the statement's shape without its values; and never a
password, a connection string or a value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from sqlhttp_middleware.core import Request, SQLHTTPCore

from .support import Client, Database, targets_for

ACCESS = "sqlhttp_middleware.access"
MADE_UP = re.compile(r"[0-9a-f]{16}")


def post(core: SQLHTTPCore, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return core.handle(Request("POST", "/sql", {"content-type": "application/json", **headers}, raw, "127.0.0.1"))


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == ACCESS]


def test_one_line_per_answer_with_its_fields(make_core: Callable[..., SQLHTTPCore], pg_database: Database,
                                             caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(pg_database), slow_statement_log=0)
    caplog.set_level(logging.INFO, logger=ACCESS)
    answers = [post(core, pg_database.body("select 1 as one")),
               post(core, pg_database.body("select * from no_such_table")),
               core.handle(Request("GET", "/sql", {}, b""))]
    logged = lines(caplog)
    assert [line["status"] for line in logged] == [200, 400, 405]
    assert set(logged[0]) == {"request_id", "protocol", "target", "status", "duration_ms"}
    assert {key: logged[0][key] for key in ("protocol", "target")} == {"protocol": "polyscale", "target": "pg"}
    assert 0 < logged[0]["duration_ms"] < 10_000
    assert logged[1]["code"] == "SQL_ERROR" and "statement" not in logged[1]  # slow_statement_log 0: never
    assert logged[2]["target"] == "" and logged[2]["code"] == "METHOD_NOT_ALLOWED"
    ids = [dict(answer.headers)["x-request-id"] for answer in answers]
    assert ids == [line["request_id"] for line in logged]
    assert all(MADE_UP.fullmatch(request_id) for request_id in ids) and len(set(ids)) == 3
    record = next(record for record in caplog.records if record.name == ACCESS)
    assert record.levelno == logging.INFO and record.sqlhttp == logged[0]  # type: ignore[attr-defined]


def test_the_request_id_comes_from_the_trusted_header_when_it_looks_like_one(
        make_core: Callable[..., SQLHTTPCore], sqlite_database: Database, caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(sqlite_database), request_id_header="X-Request-Id")
    caplog.set_level(logging.INFO, logger=ACCESS)
    body = sqlite_database.body("select 1 as one")
    given = "4bf92f35-77b3.4d:1_a"
    unsafe = ["has space", "a" * 129, "quote\"d", "new\nline", "", "é"]
    answers = [post(core, body, **{"x-request-id": given}), *(post(core, body, **{"x-request-id": value})
                                                               for value in unsafe)]
    ids = [dict(answer.headers)["x-request-id"] for answer in answers]
    assert ids[0] == given and lines(caplog)[0]["request_id"] == given
    assert all(MADE_UP.fullmatch(request_id) for request_id in ids[1:]), ids
    assert [line["request_id"] for line in lines(caplog)] == ids
    untrusted = make_core(targets=targets_for(sqlite_database))  # no request_id_header: a client's is ignored
    assert MADE_UP.fullmatch(dict(post(untrusted, body, **{"x-request-id": given}).headers)["x-request-id"])


def test_every_mount_answers_the_request_id(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), request_id_header="X-Trace",
                         cors_origins=["https://app.example"])
    assert MADE_UP.fullmatch(client.query(sqlite_database, "select 1 as one").headers["x-request-id"])
    answered = client.post(sqlite_database.body("select 1"), headers={"X-Trace": "trace-1",
                                                                      "Origin": "https://app.example"})
    assert answered.headers["x-request-id"] == "trace-1"
    assert "X-Request-Id" in answered.headers["access-control-expose-headers"].title()  # browsers may read it
    refused = client.request("GET", "/sql", headers={"X-Trace": "trace-2"})  # refused at the head
    assert refused.status == 405 and refused.headers["x-request-id"] == "trace-2"
    preflight = client.request("OPTIONS", "/sql", headers={"X-Trace": "trace-3", "Origin": "https://app.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204 and preflight.headers["x-request-id"] == "trace-3"


def test_a_slow_statement_is_logged_by_its_shape_without_values(
        make_core: Callable[..., SQLHTTPCore], pg_database: Database, caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(pg_database), slow_statement_log=0.05)
    caplog.set_level(logging.INFO, logger=ACCESS)
    sql = "select pg_sleep(0.06), 'hunter2' as pw, 4242 as n, ? as bound /* note: tiger */ -- lion"
    assert post(core, pg_database.body(sql, ["bound-secret"])).status == 200
    assert post(core, pg_database.body("select 'quick-secret' as s")).status == 200  # under the threshold
    batch = pg_database.body("")
    del batch["sql"]
    batch["batch"] = [{"sql": "select pg_sleep(0.06)"}, {"sql": "select ? as s", "bindings": ["batch-secret"]}]
    assert post(core, batch).status == 200
    slow, quick, batched = lines(caplog)
    assert slow["statement"] == "select pg_sleep(?), ? as pw, ? as n, %s as bound"
    assert "statement" not in quick
    assert batched["statement"] == "select pg_sleep(?); select %s as s"
    for value in ("hunter2", "4242", "bound-secret", "tiger", "lion", "quick-secret", "batch-secret"):
        assert value not in caplog.text, value


def test_a_long_batch_is_shown_in_part(make_core: Callable[..., SQLHTTPCore], sqlite_database: Database,
                                       caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(sqlite_database), slow_statement_log=1e-9)
    caplog.set_level(logging.INFO, logger=ACCESS)
    batch = sqlite_database.body("")
    del batch["sql"]
    batch["batch"] = [{"sql": f"select {n} as a_rather_long_column_name_number_{n}"} for n in range(40)]
    assert post(core, batch).status == 200
    [line] = lines(caplog)
    assert len(line["statement"]) == 1000 and line["statement"].endswith("...")
    assert line["statement"].startswith("select ? as a_rather_long_column_name_number_0; select ? as")


def test_a_body_the_adapter_refused_is_logged_without_a_duration(
        make_core: Callable[..., SQLHTTPCore], pg_database: Database, caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(pg_database), request_id_header="x-request-id")
    caplog.set_level(logging.INFO, logger=ACCESS)
    answer = core.error_response(core.too_large(), {"neon-connection-string": "postgresql://u:p@pg/db",
                                                    "x-request-id": "late-1"})
    assert answer.status == 413 and dict(answer.headers)["x-request-id"] == "late-1"
    assert lines(caplog) == [{"request_id": "late-1", "protocol": "neon", "target": "", "status": 413,
                              "code": "PAYLOAD_TOO_LARGE"}]
    assert "x-request-id" not in dict(core.not_found().headers)  # not an answer at the endpoint: not logged
    assert len(lines(caplog)) == 1


def test_no_password_or_connection_string_is_ever_logged(
        make_core: Callable[..., SQLHTTPCore], pg_database: Database, caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(pg_database), slow_statement_log=1e-9)
    caplog.set_level(logging.DEBUG, logger="sqlhttp_middleware")
    assert post(core, pg_database.body("select 1 as one")).status == 200
    assert post(core, pg_database.body("select 1 as one", password="wrong-pass-9")).status == 401
    connection = (f"postgresql://{pg_database.username}:{quote(pg_database.password, safe='')}@pg/"
                  f"{pg_database.database}")
    neon = core.handle(Request("POST", "/sql", {"neon-connection-string": connection, "content-type": "text/plain"},
                               b'{"query": "select $1::text as t", "params": ["neon-value"]}', "127.0.0.1"))
    assert neon.status == 200
    logged = lines(caplog)
    assert [(line["protocol"], line["status"]) for line in logged] == [
        ("polyscale", 200), ("polyscale", 401), ("neon", 200)]
    assert logged[2]["statement"] == "select $1::text as t"
    for secret in (pg_database.password, quote(pg_database.password, safe=""), "wrong-pass-9", "neon-value"):
        assert secret not in caplog.text, secret  # in no log line of ours, at any level
    access = "\n".join(record.getMessage() for record in caplog.records if record.name == ACCESS)
    for where in ("postgresql://", "127.0.0.1", pg_database.username):
        assert where not in access, where


def test_nothing_is_built_while_the_logger_is_off(make_core: Callable[..., SQLHTTPCore], sqlite_database: Database,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(targets=targets_for(sqlite_database), slow_statement_log=1e-9)
    caplog.set_level(logging.WARNING, logger=ACCESS)
    answer = post(core, sqlite_database.body("select 1 as one"))
    assert answer.status == 200 and MADE_UP.fullmatch(dict(answer.headers)["x-request-id"])
    assert lines(caplog) == []
