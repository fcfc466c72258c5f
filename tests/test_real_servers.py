"""End to end: real servers (gunicorn for WSGI, uvicorn for ASGI) driven by the real @polyscale/serverless-js client.

The client runs in node from node_modules (installed by `make test`), exactly as edge code would use it.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, Database, node_with, serving

NODE_SCRIPT = ROOT / "tests" / "js" / "run-queries.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@polyscale/serverless-js")


TARGETS = "pg=postgresql://127.0.0.1:5432 maria=mariadb://127.0.0.1:3306"
HOST_ROUTE = {
    "wsgi-gunicorn": ("/", b"host wsgi app"),
    "asgi-uvicorn": ("/", b"host asgi app"),
    "flask-gunicorn": ("/api/status", b'{"app":"flask-example","ok":true}\n'),
    "django-gunicorn": ("/api/status", b'{"app": "django-example", "ok": true}'),
    "django-uvicorn": ("/api/status", b'{"app": "django-example", "ok": true}'),
    "fastapi-uvicorn": ("/api/status", b'{"app":"fastapi-example","ok":true}'),
    "standalone-cli": ("/sql", None),
}


@pytest.fixture(scope="module", params=list(HOST_ROUTE))
def server(request: pytest.FixtureRequest, pg_database: Database, maria_database: Database) -> Iterator[str]:
    # A namespace of its own: failed-login counts in /dev/shm must not carry over from an earlier run.
    env = {"SQLHTTP_TARGETS": TARGETS, "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving(request.param, env) as url:
        yield url


def run_client(node: str, endpoint: str, connection: dict[str, str], queries: list[dict[str, Any]]) -> list[Any]:
    payload = json.dumps({"endpoint": endpoint, "connection": connection, "queries": queries})
    done = subprocess.run([node, str(NODE_SCRIPT)], input=payload.encode(), capture_output=True, cwd=ROOT,
                          timeout=60, check=True)
    outcomes: list[Any] = json.loads(done.stdout)
    return outcomes


@pytest.mark.parametrize("provider", ["postgres", "mysql", "mariadb"])
def test_polyscale_client_against_a_real_server(node: str, server: str, provider: str,
                                                pg_database: Database, maria_database: Database) -> None:
    db = pg_database if provider == "postgres" else maria_database
    connection = {"cacheId": db.key, "username": db.username, "password": db.password,
                  "database": db.database, "provider": provider}
    outcomes = run_client(node, server, connection, [
        {"sql": "SELECT 1 AS one;"},
        {"sql": "SELECT ? AS a, ? AS b, ? AS c", "bindings": [41, "forty-two", True]},
        {"sql": "SELECT :name AS name, :n + 1 AS next", "bindings": {"name": "Peter", "n": 9}},
        {"sql": "SELECT 9007199254740993 AS big"},
        {"sql": "SELECT * FROM no_such_table"},
        {"sql": "SELECT ?", "bindings": [1, 2]},
    ])
    assert outcomes[0] == {"ok": [{"one": 1}]}
    a, b, c = outcomes[1]["ok"][0].values()
    assert (a, b) == (41, "forty-two") and c in (True, 1)
    assert outcomes[2] == {"ok": [{"name": "Peter", "next": 10}]}
    assert outcomes[3] == {"ok": [{"big": "9007199254740993"}]}
    error = outcomes[4]["error"]  # the client throws the JSON error body as it is
    assert set(error) >= {"statusCode", "code", "error", "message"}
    assert (error["statusCode"], error["code"], error["error"]) == (400, "SQL_ERROR", "Bad Request")
    assert error["database"]["code"] == ("42P01" if provider == "postgres" else "1146")
    assert outcomes[5]["error"]["code"] == "BINDING_ERROR"


def test_wrong_password_through_the_client(node: str, server: str, pg_database: Database) -> None:
    connection = {"cacheId": "pg", "username": pg_database.username, "password": "not-the-password",
                  "database": pg_database.database, "provider": "postgres"}
    [outcome] = run_client(node, server, connection, [{"sql": "SELECT 1"}])
    assert outcome["error"]["statusCode"] == 401
    assert outcome["error"]["code"] == "AUTHENTICATION_FAILED"


def test_host_route_and_endpoint_errors(server: str, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["server"]
    path, expected = HOST_ROUTE[kind]
    if expected is not None:
        with urllib.request.urlopen(server + path, timeout=5) as response:
            assert response.status == 200
            assert response.read() == expected
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(server + "/sql", method="GET"), timeout=5)
    assert caught.value.code == 405
    assert json.loads(caught.value.read())["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("kind", ["flask-gunicorn", "fastapi-uvicorn"])
def test_examples_fall_back_to_the_sqlite_demo(node: str, kind: str, tmp_path: Path) -> None:
    env = {"SQLHTTP_TARGETS": "", "SQLHTTP_DEMO_DB": str(tmp_path / "demo.db")}
    with serving(kind, env) as url:
        connection = {"cacheId": "demo", "username": "demo", "password": "demo", "database": "shop",
                      "provider": "postgres"}
        [outcome] = run_client(node, url, connection,
                               [{"sql": "SELECT count(*) AS n FROM customers WHERE country = ?", "bindings": ["US"]}])
    assert outcome == {"ok": [{"n": 4}]}
