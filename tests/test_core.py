"""The core without a web framework: the neutral request path, and a bug's answer."""

from __future__ import annotations

import json
import logging

import pytest

from sqlhttp_middleware.core import Request, SQLHTTPCore

from .support import Database, targets_for


def request(db: Database, sql: str, **headers: str) -> Request:
    body = json.dumps(db.body(sql)).encode()
    return Request("POST", "/sql", {"content-type": "application/json", **headers}, body)


def test_handle_checks_the_head_and_size_itself(sqlite_database: Database) -> None:
    core = SQLHTTPCore(targets=targets_for(sqlite_database), max_body_bytes=500)
    assert json.loads(core.handle(request(sqlite_database, "select 1 as one")).body) == [{"one": 1}]
    refused = core.handle(Request("GET", "/sql", {}, b""))
    assert refused.status == 405
    too_big = core.handle(request(sqlite_database, "select '" + "x" * 600 + "'"))
    assert too_big.status == 413 and json.loads(too_big.body)["code"] == "PAYLOAD_TOO_LARGE"
    core.close()


def test_a_bug_answers_500_without_a_traceback(sqlite_database: Database, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    core = SQLHTTPCore(targets=targets_for(sqlite_database))

    def broken(work: object, login: object, builder: object, **options: object) -> None:
        raise RuntimeError("secret internal detail at /srv/app.py")

    monkeypatch.setattr(core.executor, "run", broken)
    with caplog.at_level(logging.ERROR, logger="sqlhttp_middleware"):
        response = core.handle(request(sqlite_database, "select 1"))
    body = json.loads(response.body)
    assert response.status == 500
    assert body == {"statusCode": 500, "code": "INTERNAL_ERROR", "error": "Internal Server Error",
                    "message": "the server failed to answer this query"}
    assert "secret" not in response.body.decode()
    assert "secret internal detail" in caplog.text  # the operator still sees what broke
    core.close()
