"""Databases that fail, each a private instance this module starts, freezes (SIGSTOP), stops and starts again, on
the sync path (WSGI) and the async one (ASGI): every request answers by its deadline, the pool never starves, a
database that is down is spared, and the endpoint recovers on its own.

Run with ``-s`` for the figures that docs/reliability.md quotes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from .support import ROOT, Client, Database, free_port, node_with, serving, wait_until_serving
from .support.private import PrivateMariaDB, PrivatePostgres, private_mariadb, private_postgres

private_pg = private_postgres("private_pg")
private_maria = private_mariadb("private_maria")

TIMEOUT = 2.0  # statement_timeout
GRACE = 1.0  # deadline_grace
CONNECT = 2.0  # connect_timeout


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    return make_engine_client


@pytest.fixture(params=["pg", "maria"])
def server(request: pytest.FixtureRequest) -> Iterator[PrivatePostgres | PrivateMariaDB]:
    instance: PrivatePostgres | PrivateMariaDB = request.getfixturevalue(
        "private_pg" if request.param == "pg" else "private_maria")
    instance.ensure_running()
    yield instance
    instance.ensure_running()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def answering_again(client: Client, db: Database, sql: str, within: float = 5.0) -> tuple[Any, float]:
    """The first 200 answer to ``sql`` once the database is back, and how long it took to come."""
    back = time.monotonic()
    while (reply := client.query(db, sql)).status != 200:
        assert time.monotonic() - back < within, reply.body
        time.sleep(0.05)
    return reply, time.monotonic() - back


def faulty_client(make_client: Callable[..., Client], server: PrivatePostgres | PrivateMariaDB,
                  **options: Any) -> tuple[Client, Database]:
    db = server.database_for("db")
    client = make_client(targets={"db": server.target}, statement_timeout=TIMEOUT, deadline_grace=GRACE,
                         connect_timeout=CONNECT, reconnect_backoff=0.5, **options)
    return client, db


def test_a_frozen_database_answers_by_the_deadline_and_recovers(
        make_client: Callable[..., Client], server: PrivatePostgres | PrivateMariaDB) -> None:
    client, db = faulty_client(make_client, server)
    assert client.query(db, "select 1 as n").status == 200  # a warm pooled connection
    server.freeze()
    try:
        reply, took = timed(lambda: client.query(db, "select 2 as n"))
        assert reply.status == 504, reply.body
        assert reply.json()["code"] == "STATEMENT_TIMEOUT"
        assert "did not answer" in reply.json()["message"]
        assert TIMEOUT <= took <= TIMEOUT + GRACE + 0.5, took
        assert client.core.pool_stats()["checked_out"] == 0
        # The abandoned connection was closed; the next request must connect, which is bounded too.
        connecting, connect_took = timed(lambda: client.query(db, "select 3 as n"))
        assert connecting.status in (503, 504), connecting.body
        assert connect_took <= CONNECT + GRACE + 0.5, connect_took
        # The database is now known to be down: answers are fast 503s until the back-off's pause is over.
        fast, fast_took = timed(lambda: client.query(db, "select 4 as n"))
        assert fast.status == 503 and fast_took < 0.5, (fast.status, fast_took)
    finally:
        server.thaw()
    reply, recovered = answering_again(client, db, "select 5 as n")
    print(f"\n{client.kind} {server.kind} frozen: 504 after {took:.2f} s (deadline {TIMEOUT + GRACE:g} s), "
          f"a new connection gave up after {connect_took:.2f} s (connect_timeout {CONNECT:g} s), "
          f"then 503 in {fast_took * 1000:.0f} ms; answering again {recovered:.2f} s after the thaw")
    assert reply.json() == {"n": 5} or reply.json()[0] == {"n": 5} or "5" in reply.body.decode()


def test_a_frozen_batch_answers_by_its_deadline(make_client: Callable[..., Client],
                                                server: PrivatePostgres | PrivateMariaDB) -> None:
    client, db = faulty_client(make_client, server)
    body = db.body("unused")
    del body["sql"]
    body["batch"] = [{"sql": "select 1 as a"}, {"sql": "select 2 as b"}]
    assert client.post(body).status == 200
    server.freeze()
    try:
        reply, took = timed(lambda: client.post(body))
    finally:
        server.thaw()
    assert reply.status == 504, reply.body
    assert took <= TIMEOUT + GRACE + 0.5, took


def test_a_stopped_database_answers_fast_503s_and_a_restarted_one_is_used_again(
        make_client: Callable[..., Client], server: PrivatePostgres | PrivateMariaDB) -> None:
    client, db = faulty_client(make_client, server)
    assert client.query(db, "select 1 as n").status == 200
    server.stop()
    try:
        replies = []
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            replies.append(timed(lambda: client.query(db, "select 1 as n")))
        assert {reply.status for reply, _ in replies} == {503}
        slowest = max(took for _, took in replies)
        assert slowest < 1.0, slowest
    finally:
        server.start()
    _, recovered = answering_again(client, db, "select 1 as n")
    print(f"\n{client.kind} {server.kind} stopped: {len(replies)} answers in 1 s, all 503, slowest "
          f"{slowest * 1000:.0f} ms; answering again {recovered:.2f} s after the restart")
    # No stale connection is served after the restart: every request succeeds.
    assert all(client.query(db, "select 1 as n").status == 200 for _ in range(20))


def test_a_hung_target_delays_no_other(make_client: Callable[..., Client], private_pg: PrivatePostgres,
                                       pg_database: Database) -> None:
    """Two requests hang on a frozen target while a healthy target's statement times out on time."""
    private_pg.ensure_running()
    frozen = private_pg.database_for("frozen")
    healthy = pg_database
    targets = {"frozen": private_pg.target, healthy.key: "postgresql://127.0.0.1:5432"}
    client = make_client(targets=targets, statement_timeout=TIMEOUT, deadline_grace=GRACE, connect_timeout=CONNECT)
    assert client.query(frozen, "select 1 as n").status == 200
    assert client.query(frozen, "select 1 as n").status == 200
    private_pg.freeze()
    hung: list[tuple[Any, float]] = []
    try:
        threads = [threading.Thread(target=lambda: hung.append(timed(lambda: client.query(frozen, "select 1"))))
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        reply, took = timed(lambda: client.query(healthy, "select pg_sleep(10)", timeout=1))
        for thread in threads:
            thread.join(10)
    finally:
        private_pg.thaw()
    assert reply.status == 504 and took < 1.8, (reply.status, took)
    # 504 on a pooled connection; 503 for one that had to connect (bounded by connect_timeout).
    assert len(hung) == 2 and {r.status for r, _ in hung} <= {503, 504}, [r.status for r, _ in hung]
    assert max(t for _, t in hung) <= max(TIMEOUT + GRACE, CONNECT) + 0.7


def test_sigterm_drains_and_exits_within_the_drain_timeout(private_pg: PrivatePostgres) -> None:
    """A request stuck on a frozen database (its statement timeout far off) does not keep the standalone server
    alive past drain_timeout."""
    private_pg.ensure_running()
    db = private_pg.database_for("db")
    port = free_port()
    env = {**os.environ, "SQLHTTP_TARGETS": f"db={private_pg.target}", "SQLHTTP_STATEMENT_TIMEOUT": "60",
           "SQLHTTP_DRAIN_TIMEOUT": "2", "SQLHTTP_RATE_LIMIT_STORAGE": "memory",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    process = subprocess.Popen([sys.executable, "-m", "sqlhttp_middleware", "serve", "--port", str(port),
                                "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/sql"
        wait_until_serving(url, process)

        def ask() -> None:
            request = urllib.request.Request(url, json.dumps(db.body("select 1 as n")).encode(),
                                             {"Content-Type": "application/json"})
            with contextlib.suppress(OSError):
                urllib.request.urlopen(request, timeout=30).read()

        ask()  # a warm connection
        private_pg.freeze()
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        exited, took = timed(lambda: process.wait(15))
        print(f"\nSIGTERM with a request stuck on a frozen database: exited {took:.2f} s later (drain_timeout 2 s)")
        assert exited is not None
        assert took < 2 + 1.0, took  # the drain timeout, then cancel, close and exit
    finally:
        private_pg.thaw()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_the_real_clients_see_clear_errors_from_a_frozen_database(private_pg: PrivatePostgres) -> None:
    """What PolyScale's and Neon's npm clients make of the new failure paths, against uvicorn: the hard deadline's
    504, the back-off's 503, and refused SQL text; no URL, password or traceback in any of them."""
    private_pg.ensure_running()
    db = private_pg.database_for("db")
    node = node_with("@neondatabase/serverless", "@polyscale/serverless-js")
    env = {"SQLHTTP_TARGETS": f"db={private_pg.target}", "SQLHTTP_STATEMENT_TIMEOUT": str(TIMEOUT),
           "SQLHTTP_DEADLINE_GRACE": str(GRACE), "SQLHTTP_CONNECT_TIMEOUT": str(CONNECT),
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    login = f"{quote(db.username, safe='')}:{quote(db.password, safe='')}"

    def run(script: str, payload: dict[str, Any]) -> list[Any]:
        done = subprocess.run([node, str(ROOT / "tests" / "js" / script)], input=json.dumps(payload).encode(),
                              capture_output=True, cwd=ROOT, timeout=60, check=True)
        outcomes: list[Any] = json.loads(done.stdout)
        return outcomes

    with serving("asgi-uvicorn", env) as url:
        neon = {"endpoint": f"{url}/sql", "connectionString": f"postgresql://{login}@db/{db.database}"}
        polyscale = {"endpoint": url, "connection": {"cacheId": "db", "username": db.username,
                                                     "password": db.password, "database": db.database,
                                                     "provider": "postgres"}}
        warm = run("neon-one.mjs", {**neon, "queries": ["SELECT 1 AS n", "SELECT 1 /* never closed"]})
        assert warm[0] == {"ok": [{"n": 1}]}
        refused = warm[1]["error"]
        assert refused["isNeonDbError"] and "never closed" in refused["message"]
        private_pg.freeze()
        try:
            frozen = run("neon-one.mjs", {**neon, "queries": ["SELECT 2 AS n", "SELECT 3 AS n"]})
            down = run("run-queries.mjs", {**polyscale, "queries": [{"sql": "SELECT 4 AS n"}]})
        finally:
            private_pg.thaw()
    deadline, refused_fast = frozen[0]["error"], frozen[1]["error"]
    assert deadline["isNeonDbError"] and "did not answer within the statement timeout" in deadline["message"]
    # The next one needed a new connection: it gave up at connect_timeout (or, past it, the back-off said so).
    assert refused_fast["isNeonDbError"] and "HTTP status 503" in refused_fast["message"]
    assert "could not connect to the database" in refused_fast["message"] or \
        "could not be reached" in refused_fast["message"]
    polyscale_error = down[0]["error"]
    assert polyscale_error["statusCode"] == 503 and polyscale_error["code"] == "DATABASE_UNAVAILABLE"
    for failure in (refused, deadline, refused_fast, polyscale_error):
        text = json.dumps(failure)
        assert db.password not in text and "127.0.0.1" not in text and "Traceback" not in text
