"""The real ``@libsql/client`` (Hrana over HTTP), from npm, through node, against real servers with four workers
each: gunicorn ``-w 4`` (WSGI) and uvicorn ``--workers 4`` (ASGI). Every request goes on a new connection, so the
requests of one interactive transaction land on different workers and must still reach its connection.

``execute`` with typed, named and 64-bit arguments, ``batch`` in each mode with a failing step rolling the batch
back, ``executeMultiple``, ``migrate``, ``transaction()`` with commit and rollback, an expired session, a replayed,
forged and borrowed baton, and wrong keys."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, node_with, serving

SCRIPT = ROOT / "tests" / "js" / "libsql-client.mjs"
IDLE = 2


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@libsql/client")


def server_env(tmp: Path) -> dict[str, str]:
    return {"SQLHTTP_TEST_SQLITE": str(tmp / "lite.db"), "SQLHTTP_SESSION_IDLE_TIMEOUT": str(IDLE),
            "SQLHTTP_SESSION_DIR": str(tmp / "sessions"),
            "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}


@pytest.fixture(scope="module", params=[("wsgi-gunicorn", ["--workers", "4"]), ("asgi-uvicorn", ["--workers", "4"])],
                ids=["gunicorn-w4", "uvicorn-w4"])
def run(request: pytest.FixtureRequest, node: str, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[dict[str, Any], Path]]:
    kind, args = request.param
    tmp = tmp_path_factory.mktemp("libsql")
    with serving(kind, server_env(tmp), args) as url:
        payload = {"url": f"{url}/sql/lite/", "token": "lite-token", "otherToken": "lite-other",
                   "table": f"libsql_{uuid.uuid4().hex[:8]}", "idleTimeout": IDLE}
        done = subprocess.run([node, str(SCRIPT)], input=json.dumps(payload).encode(), capture_output=True,
                              cwd=ROOT, timeout=180, check=True)
        yield json.loads(done.stdout), tmp / "lite.db"


def ok(outcome: dict[str, Any], step: str) -> Any:
    assert "ok" in outcome[step], outcome[step]
    return outcome[step]["ok"]


def error(outcome: dict[str, Any], step: str) -> dict[str, Any]:
    assert "error" in outcome[step], outcome[step]
    failure: dict[str, Any] = outcome[step]["error"]
    return failure


def test_execute_types_and_names(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    result = ok(outcome, "execute")
    assert result["columns"] == ["n", "t", "b", "absent", "f"]
    assert result["rows"] == [{"n": 41, "t": "it's", "b": [0, 1, 255], "absent": None, "f": 1.5}]
    assert ok(outcome, "named") == [{"a": 1, "b": "two", "c": None}]
    # Integers travel as strings: exact at 64 bits with intMode "string", and refused by the client past 2**53
    # in the default mode (its own RangeError, as against sqld).
    assert ok(outcome, "bigint") == [{"big": "9007199254740993", "max": "9223372036854775807"}]
    assert error(outcome, "tooBig")["name"] == "RangeError"


def test_writes_and_errors_with_sqlite_codes(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    assert ok(outcome, "insert") == {"rowsAffected": 1, "lastInsertRowid": "1n"}
    constraint = error(outcome, "constraint")
    assert constraint["isLibsqlError"] and constraint["code"] == "SQLITE_CONSTRAINT_UNIQUE"
    assert "UNIQUE constraint failed" in constraint["message"]
    assert error(outcome, "syntax")["code"] == "SQLITE_ERROR"


def test_batches_in_each_mode(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    assert ok(outcome, "batch_write") == [[], [{"n": 2}]]
    assert ok(outcome, "batch_read") == [[{"n": 2}], [{"m": 2}]]
    assert ok(outcome, "batch_deferred") == [[], [{"n": 3}]]
    refused = error(outcome, "batch_read_refuses_write")
    assert refused["code"] == "SQLITE_READONLY" and refused["statementIndex"] == 0
    rolled = ok(outcome, "batch_rollback")
    assert rolled["error"]["code"] == "SQLITE_CONSTRAINT_UNIQUE" and rolled["error"]["statementIndex"] == 1
    assert rolled["before"] == rolled["after"] == 3  # the step before the failing one was rolled back


def test_execute_multiple_and_migrate(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    assert ok(outcome, "executeMultiple") == [{"x": "a;b"}, {"x": "c"}]
    assert ok(outcome, "migrate") == [0, 1]


def test_interactive_transactions_across_workers(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    committed = ok(outcome, "transaction_commit")
    assert committed["inside"] == 2 and committed["after"] == 2 and committed["closed"]
    assert committed["failed"]["code"] == "SQLITE_CONSTRAINT_UNIQUE"  # a failed statement leaves the transaction
    rolled = ok(outcome, "transaction_rollback")
    assert rolled["inside"] == 2 and rolled["after"] == 0
    read = ok(outcome, "transaction_read")
    assert read["n"] == 5 and read["write"]["code"] == "SQLITE_READONLY"
    assert ok(outcome, "transaction_batch") == [{"n": 1}]
    workers = outcome["transactionWorkers"]
    for name in ("commit", "rollback"):
        assert len(workers[name]) == 5 and all(workers[name]), workers
    # Five requests on new connections over four workers: one transaction's requests reached at least two.
    assert max(len(set(workers["commit"])), len(set(workers["rollback"]))) >= 2, workers


def test_an_idle_session_expires_and_rolls_back(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    expired = ok(outcome, "expired")
    assert expired["late"]["code"] == "STREAM_EXPIRED"
    assert expired["kept"] == 0


def test_batons_are_single_use_signed_and_bound_to_their_login(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    batons = ok(outcome, "batons")
    assert batons["opened"]["status"] == 200 and batons["opened"]["hasBaton"]
    assert batons["next"] == {"status": 200, "differs": True}
    for name, code in (("replayed", "BATON_REUSED"), ("forged", "BATON_INVALID"), ("borrowed", "BATON_INVALID")):
        # The client reads a non-2xx answer's error only with exactly application/json.
        assert batons[name] == {"status": 400, "type": "application/json", "code": code, "baton": None}, name
    # None of them disturbed the session: its owner continues it with the latest baton, and closes it.
    assert batons["owner"]["status"] == 200 and batons["owner"]["baton"] is None
    assert batons["owner"]["six"] == {"type": "integer", "value": "6"}


def test_wrong_keys(run: tuple[dict[str, Any], Path]) -> None:
    outcome, _ = run
    assert error(outcome, "wrongKey")["code"] == "AUTHENTICATION_FAILED"
    assert error(outcome, "noKey")["code"] == "AUTHENTICATION_FAILED"


def test_the_database_file_is_intact(run: tuple[dict[str, Any], Path]) -> None:
    _, path = run
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
