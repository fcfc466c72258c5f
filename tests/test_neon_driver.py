"""The real ``@neondatabase/serverless`` driver (HTTP mode), from npm, through node, against real servers: gunicorn
(WSGI, two workers) and uvicorn (ASGI). Tagged templates and ``query()``, ``fullResults``, ``arrayMode``,
``transaction([...])`` with its options, a failing statement rolling back the ones before it, errors with their
SQLSTATE, and a wrong password."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from .support import ROOT, Database, node_with, serving

SCRIPT = ROOT / "tests" / "js" / "neon-driver.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@neondatabase/serverless")


@pytest.fixture(scope="module", params=["wsgi-gunicorn", "asgi-uvicorn"])
def outcome(request: pytest.FixtureRequest, node: str, pg_database: Database) -> Iterator[dict[str, Any]]:
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    login = f"{quote(pg_database.username, safe='')}:{quote(pg_database.password, safe='')}"
    with serving(request.param, env) as url:
        payload = {
            "endpoint": f"{url}/sql",
            "connectionString": f"postgresql://{login}@pg/{pg_database.database}",
            "wrongPasswordString": f"postgresql://{quote(pg_database.username, safe='')}:nope@pg/"
                                   f"{pg_database.database}",
            "table": f"neon_driver_{uuid.uuid4().hex[:8]}",
        }
        done = subprocess.run([node, str(SCRIPT)], input=json.dumps(payload).encode(), capture_output=True,
                              cwd=ROOT, timeout=120, check=True)
    yield json.loads(done.stdout)


def ok(outcome: dict[str, Any], step: str) -> Any:
    assert "ok" in outcome[step], outcome[step]
    return outcome[step]["ok"]


def error(outcome: dict[str, Any], step: str) -> dict[str, Any]:
    assert "error" in outcome[step], outcome[step]
    failure: dict[str, Any] = outcome[step]["error"]
    return failure


def test_tagged_templates_bind_parameters(outcome: dict[str, Any]) -> None:
    assert ok(outcome, "template") == [{"answer": 42, "quote": "it's", "nothing": None}]
    assert ok(outcome, "dates") == {"ts": "2024-01-02T03:04:05.678Z", "tsIsDate": True,
                                    "d": "2024-01-02T00:00:00.000Z"}


def test_query_keeps_big_integers_and_decimals_exact(outcome: dict[str, Any]) -> None:
    assert ok(outcome, "query") == [{"big": "9007199254740993", "price": "1.10"}]


def test_full_results_and_array_mode(outcome: dict[str, Any]) -> None:
    full = ok(outcome, "fullResults")
    assert full == {"command": "SELECT", "rowCount": 3, "rows": [{"n": 1}, {"n": 2}, {"n": 3}],
                    "fields": [["n", 23]]}
    assert ok(outcome, "arrayMode") == [[1, "b"]]


def test_transactions_commit_together_with_their_options(outcome: dict[str, Any]) -> None:
    ok(outcome, "create")
    assert ok(outcome, "transaction") == [[], [{"id": 2, "note": "two"}], [{"n": 2}]]
    assert ok(outcome, "transactionOptions") == [[{"iso": "repeatable read", "ro": "on"}]]
    assert error(outcome, "readOnlyRefuses")["code"] == "25006"


def test_a_failing_statement_rolls_back_the_ones_before_it(outcome: dict[str, Any]) -> None:
    failure = error(outcome, "rollback")
    assert failure["isNeonDbError"] and failure["code"] == "23505" and failure["constraint"]
    assert ok(outcome, "afterRollback") == [{"id": 1}, {"id": 2}]  # 3 was rolled back with the duplicate 1


def test_errors_carry_their_sqlstate(outcome: dict[str, Any]) -> None:
    syntax = error(outcome, "syntaxError")
    assert syntax["isNeonDbError"] and syntax["code"] == "42601" and syntax["position"] == "1"
    missing = error(outcome, "missingTable")
    assert missing["code"] == "42P01" and "no_such_table_here" in missing["message"]


def test_a_wrong_password_is_a_clear_error(outcome: dict[str, Any]) -> None:
    failure = error(outcome, "wrongPassword")
    assert failure["isNeonDbError"] and failure["code"] == "28P01"
    assert "authentication failed" in failure["message"] and "nope" not in failure["message"]
    ok(outcome, "drop")
