"""End to end in a real edge runtime: a Cloudflare Worker in workerd (through miniflare) that cannot open TCP reaches
PostgreSQL only over HTTP, through the Flask example's /sql, with PolyScale's client and with Neon's driver.

``tests/js/edge-run.mjs`` bundles ``tests/js/edge-worker.mjs`` with esbuild, starts one Miniflare for this module and
calls the Worker's steps in order; each test checks one step's answer. The Worker's outbound traffic goes through a
second Worker that only forwards ``fetch()``, so ``connect()`` from ``cloudflare:sockets`` fails in it; the same
script under miniflare's default outbound (the control) does open a socket to the database.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from .support import ROOT, Database, node_with, serving

RUNNER = ROOT / "tests" / "js" / "edge-run.mjs"
PACKAGES = ["miniflare", "esbuild", "@polyscale/serverless-js", "@neondatabase/serverless"]
PG_ADDRESS = "127.0.0.1:5432"


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(*PACKAGES)


@pytest.fixture(scope="module")
def flask_url(pg_database: Database) -> Iterator[str]:
    env = {"SQLHTTP_TARGETS": f"pg=postgresql://{PG_ADDRESS}",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving("flask-gunicorn", env) as url:
        yield url


@pytest.fixture(scope="module")
def table(pg_database: Database) -> Iterator[str]:
    name = f"edge_{uuid.uuid4().hex[:12]}"  # the Worker creates it, through the endpoint
    yield name
    pg_database.run(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def edge(node: str, flask_url: str, table: str, pg_database: Database) -> dict[str, Any]:
    """Every step's answer, from one node process and one Miniflare."""
    payload = {"sqlUrl": flask_url, "target": pg_database.key, "user": pg_database.username,
               "password": pg_database.password, "database": pg_database.database, "table": table,
               "pgAddress": PG_ADDRESS}
    done = subprocess.run([node, str(RUNNER)], input=json.dumps(payload).encode(), capture_output=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def ok(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer
    return answer["ok"]


def test_the_worker_runs_in_workerd_beside_the_flask_example(edge: dict[str, Any]) -> None:
    runtime = ok(edge["runtime"])
    assert runtime["userAgent"] == "Cloudflare-Workers"
    assert (runtime["process"], runtime["require"]) == ("undefined", "undefined")  # no Node: no node:net, no pg
    assert runtime["host"] == {"status": 200, "body": {"app": "flask-example", "ok": True}}


def test_tcp_to_the_database_fails_inside_the_worker(edge: dict[str, Any]) -> None:
    assert edge["tcp"] == {"error": {"name": "TypeError", "message": "Incoming CONNECT on a worker not supported"}}
    assert ok(edge["controlTcp"]) == "opened"  # the database was there: only the egress route stops the socket


def test_neon_driver_in_the_worker(edge: dict[str, Any]) -> None:
    neon = ok(edge["neonSetup"])
    assert neon["sum"] == [{"n": 42, "s": "edge"}]
    inserted, counted = neon["inserted"], neon["counted"]
    assert inserted == [
        {"id": 1, "name": "Łódź", "price": "1.50", "added": "2024-01-02T03:04:05.678Z", "tags": ["a,b", "c"],
         "meta": {"k": [1, None]}},
        {"id": 2, "name": "plain", "price": "1234.00", "added": "2024-02-29T12:00:00.000Z", "tags": [], "meta": {}},
    ]
    assert counted == [{"n": "2"}]  # in the same transaction as the insert; count(*) is int8, so a string
    assert neon["missing"] == {"name": "NeonDbError", "code": "42P01",
                               "message": 'relation "no_such_table_in_the_edge_test" does not exist'}


def test_polyscale_client_in_the_worker(edge: dict[str, Any]) -> None:
    polyscale = ok(edge["polyscale"])
    assert polyscale["sum"] == [{"n": 42, "s": "edge"}]
    assert polyscale["inserted"] == [{"id": 3, "name": "via polyscale"}]
    assert polyscale["selected"] == [
        {"id": 1, "name": "Łódź", "price": "1.50", "tags": ["a,b", "c"]},
        {"id": 2, "name": "plain", "price": "1234.00", "tags": []},
        {"id": 3, "name": "via polyscale", "price": "9.99", "tags": ["x"]},
    ]
    assert polyscale["named"] == [{"name": "Łódź"}]


def test_both_clients_and_postgresql_agree(edge: dict[str, Any], table: str, pg_database: Database) -> None:
    rows = pg_database.run(f"SELECT id, name, price::text, tags FROM {table} ORDER BY id")
    expected = [{"id": id_, "name": name, "price": price, "tags": tags} for id_, name, price, tags in rows]
    assert ok(edge["neonRead"]) == expected  # Neon's driver reads what PolyScale's client wrote
    assert ok(edge["polyscale"])["selected"] == expected
    added = [moment for (moment,) in pg_database.run(f"SELECT added FROM {table} ORDER BY id")]
    assert added == [  # aware datetimes compare as instants, whatever the session's time zone
        datetime(2024, 1, 2, 3, 4, 5, 678000, timezone.utc), datetime(2024, 2, 29, 12, tzinfo=timezone.utc),
        datetime(2024, 3, 1, tzinfo=timezone.utc)]
