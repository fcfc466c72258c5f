"""Interactive sessions, the engine's capability under libSQL's streams: a held connection counted in its pool,
expiry (idle and lifetime) by the reaper, signed single-use batons bound to their login, concurrent use, handover
between middleware instances (as between workers), another host's batons, fork safety, shutdown, and SQLite on the
event loop while a session holds the write lock."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.core import Request, SQLHTTPCore
from sqlhttp_middleware.options import Target

from .support import Client, Reply
from .support.clients import host_app_asgi, make_wsgi_client
from .support.hrana import CLOSE, TOKEN, execute, pipeline, results, rows

MakeClient = Callable[..., Client]
COUNT_SLOWLY = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000) "
                "SELECT count(*) FROM c")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)")
    return path


def options(database: Path, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"targets": {"lite": Target(f"sqlite:///{database}", api_keys={"edge": TOKEN, "other": "other-token"})},
            "session_dir": str(tmp_path / "sessions"), "rate_limit_storage": "memory", **extra}


@pytest.fixture
def make(database: Path, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def build(**extra: Any) -> Client:
        client = make_wsgi_client(options(database, tmp_path, **extra))
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def opened(client: Client, *requests: dict[str, Any], token: str = TOKEN) -> str:
    """Open a stream with ``requests`` (no close); its baton."""
    reply = pipeline(client, list(requests), token=token)
    assert all(r["type"] == "ok" for r in results(reply)), reply.body
    baton = reply.json()["baton"]
    assert isinstance(baton, str)
    return baton


def code(reply: Reply) -> str:
    assert reply.headers["content-type"] == "application/json"
    return str(reply.json()["code"])


def count_rows(database: Path) -> int:
    with sqlite3.connect(database, timeout=2) as connection:
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- holding a connection -----------------------------------------------------------------------------------------

def test_a_session_holds_one_pooled_connection_counted_in_the_pool(make: Callable[..., Client]) -> None:
    client = make(pool_size=1, pool_timeout=0.3)
    baton = opened(client, execute("BEGIN"), execute("INSERT INTO t (note) VALUES ('held')"))
    assert client.core.pool_stats()["checked_out"] == 1
    busy = pipeline(client, [execute("SELECT 1"), CLOSE])
    assert busy.status == 503 and code(busy) == "POOL_TIMEOUT"
    # Another API key: still the target's one database login, so the same pool.
    again = pipeline(client, [execute("SELECT 1"), CLOSE], token="other-token")
    assert again.status == 503
    done = pipeline(client, [execute("COMMIT"), CLOSE], baton)
    assert done.json()["baton"] is None
    assert client.core.pool_stats()["checked_out"] == 0
    assert rows(results(pipeline(client, [execute("SELECT note FROM t"), CLOSE]))[0]) == [["held"]]


def test_an_idle_session_is_expired_by_the_reaper(make: Callable[..., Client], database: Path) -> None:
    client = make(session_idle_timeout=0.3)
    baton = opened(client, execute("BEGIN IMMEDIATE"), execute("INSERT INTO t (note) VALUES ('never')"))
    assert client.core.sessions.count() == 1
    assert eventually(lambda: client.core.sessions.count() == 0)  # nobody asked: the reaper did it
    assert client.core.pool_stats()["checked_out"] == 0
    late = pipeline(client, [execute("COMMIT")], baton)
    assert late.status == 400 and code(late) == "STREAM_EXPIRED"
    with sqlite3.connect(database, timeout=0.5) as connection:  # rolled back: the write lock is free
        connection.execute("BEGIN IMMEDIATE")
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_no_session_outlives_its_lifetime_however_busy(make: Callable[..., Client]) -> None:
    client = make(session_idle_timeout=10, session_max_lifetime=0.6)
    baton = opened(client, execute("SELECT 1"))
    started = time.monotonic()
    while time.monotonic() - started < 0.4:
        reply = pipeline(client, [execute("SELECT 1")], baton)
        assert reply.status == 200
        baton = reply.json()["baton"]
        time.sleep(0.05)
    deadline = time.monotonic() + 3
    while (reply := pipeline(client, [execute("SELECT 1")], baton)).status == 200 and time.monotonic() < deadline:
        baton = reply.json()["baton"]
        time.sleep(0.05)
    assert reply.status == 400 and code(reply) == "STREAM_EXPIRED"
    assert time.monotonic() - started >= 0.6
    assert client.core.sessions.count() == 0


def test_closing_answers_a_null_baton_and_frees_the_session(make: Callable[..., Client]) -> None:
    client = make()
    baton = opened(client, execute("SELECT 1"))
    closed = pipeline(client, [execute("SELECT 2"), CLOSE], baton)
    assert closed.json()["baton"] is None and client.core.sessions.count() == 0
    assert code(pipeline(client, [execute("SELECT 3")], closed.json()["baton"] or baton)) == "STREAM_EXPIRED"


# -- batons -------------------------------------------------------------------------------------------------------

def test_batons_are_single_use_and_bound_to_their_login(make: Callable[..., Client]) -> None:
    client = make()
    first = opened(client, execute("BEGIN"), execute("INSERT INTO t (note) VALUES ('mine')"))
    second = pipeline(client, [execute("SELECT 1")], first).json()["baton"]
    assert second != first
    assert code(pipeline(client, [execute("SELECT 1")], first)) == "BATON_REUSED"
    stolen = pipeline(client, [execute("DELETE FROM t")], second, token="other-token")
    assert stolen.status == 400 and code(stolen) == "BATON_INVALID"
    parts = second.split(".")
    later = ".".join([*parts[:3], "3", parts[4]])  # the next answer's number, with this one's signature
    for forged in (second[:-3] + "AAA", "not-a-baton", later, "a.b.c.d.e"):
        assert code(pipeline(client, [execute("SELECT 1")], forged)) == "BATON_INVALID", forged
    # None of that touched the session: its owner goes on with the latest baton.
    rest = results(pipeline(client, [execute("SELECT note FROM t"), execute("COMMIT"), CLOSE], second))
    assert rows(rest[0]) == [["mine"]]


def test_another_hosts_baton_says_whose_it_is(make: Callable[..., Client]) -> None:
    here = make(session_host="alpha", session_secret="shared")
    there = make(session_host="beta", session_secret="shared")
    baton = opened(here, execute("SELECT 1"))
    elsewhere = pipeline(there, [execute("SELECT 1")], baton)
    assert elsewhere.status == 400 and code(elsewhere) == "STREAM_ELSEWHERE"
    assert "'alpha'" in elsewhere.json()["message"]


def test_concurrent_use_of_one_session_is_refused(make: Callable[..., Client]) -> None:
    client = make(statement_timeout=30)
    baton = opened(client, execute("SELECT 1"))
    slow: list[Reply] = []
    runner = threading.Thread(target=lambda: slow.append(pipeline(client, [execute(COUNT_SLOWLY)], baton)))
    runner.start()
    assert eventually(lambda: client.core.sessions._sessions and all(
        s.lock.locked() for s in client.core.sessions._sessions.values()), 5)
    meanwhile = pipeline(client, [execute("SELECT 2")], baton)
    runner.join()
    assert meanwhile.status == 409 and code(meanwhile) == "STREAM_BUSY"
    assert slow[0].status == 200 and rows(results(slow[0])[0]) == [[3000000]]


# -- many workers -------------------------------------------------------------------------------------------------

def test_a_session_is_reached_from_another_instance_and_gone_with_its_owner(
        make: Callable[..., Client], database: Path) -> None:
    owner, other = make(), make()  # two workers' middleware: one session directory, one key
    baton = opened(owner, execute("BEGIN IMMEDIATE"), execute("INSERT INTO t (note) VALUES ('handed')"))
    assert other.core.sessions.count() == 0
    handed = pipeline(other, [execute("SELECT count(*) FROM t")], baton)
    assert rows(results(handed)[0]) == [[1]]  # it ran in the owner's transaction
    baton = handed.json()["baton"]
    assert baton.split(".")[1] == owner.core.sessions.worker  # the owner keeps signing
    owner.core.close()  # the owner goes away (a worker that exits); its transaction is rolled back
    gone = pipeline(other, [execute("COMMIT")], baton)
    assert gone.status == 400 and code(gone) == "STREAM_EXPIRED"
    assert count_rows(database) == 0


def test_the_session_directory_must_be_private(database: Path, tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    client = make_wsgi_client(options(database, tmp_path, session_dir=str(shared)))
    try:
        refused = pipeline(client, [execute("SELECT 1")])
        assert refused.status == 500 and "session directory" in refused.json()["message"]
        assert str(shared) not in refused.body.decode()
        assert pipeline(client, [execute("SELECT 1"), CLOSE]).status == 200  # stateless work needs none
    finally:
        client.close()


def test_a_forked_child_starts_with_no_sessions(make: Callable[..., Client]) -> None:
    client = make()
    baton = opened(client, execute("SELECT 1"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        status = 1
        try:
            sessions = client.core.sessions
            fresh = pipeline(client, [execute("SELECT 2")])
            child_baton = fresh.json()["baton"]
            status = 0 if (fresh.status == 200 and child_baton.split(".")[1].startswith(f"{os.getpid()}-")
                           and sessions.count() == 1) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rows(results(pipeline(client, [execute("SELECT 3"), CLOSE], baton))[0]) == [[3]]


def test_closing_the_middleware_rolls_back_its_sessions(database: Path, tmp_path: Path) -> None:
    client = make_wsgi_client(options(database, tmp_path))
    opened(client, execute("BEGIN IMMEDIATE"), execute("INSERT INTO t (note) VALUES ('shutdown')"))
    client.close()
    with sqlite3.connect(database, timeout=0.5) as connection:
        connection.execute("BEGIN IMMEDIATE")
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert not any((tmp_path / "sessions").glob("*.sock"))


def test_metrics_count_sessions(database: Path, tmp_path: Path) -> None:
    core = SQLHTTPCore(**options(database, tmp_path, metrics_path="/sql/metrics", session_idle_timeout=0.2))
    try:
        def post(body: bytes) -> Any:
            return core.handle(Request("POST", "/sql/lite/v2/pipeline", {
                "content-type": "application/json", "authorization": f"Bearer {TOKEN}"}, body, "127.0.0.1"))

        import json

        baton = json.loads(post(b'{"baton":null,"requests":[]}').body)["baton"]
        page = core.handle(Request("GET", "/sql/metrics", {}, b"")).body.decode()
        assert 'sqlhttp_sessions{target="lite"} 1.0' in page
        post(json.dumps({"baton": baton, "requests": [CLOSE]}).encode())
        opened_again = json.loads(post(b'{"baton":null,"requests":[]}').body)["baton"]
        assert opened_again and eventually(lambda: core.sessions.count() == 0)
        page = core.handle(Request("GET", "/sql/metrics", {}, b"")).body.decode()
        assert 'sqlhttp_sessions{target="lite"} 0.0' in page
        assert 'sqlhttp_sessions_ended_total{reason="closed",target="lite"}' in page
        assert 'sqlhttp_sessions_ended_total{reason="expired",target="lite"}' in page
    finally:
        core.close()


# -- SQLite on the event loop -------------------------------------------------------------------------------------

def test_the_event_loop_never_waits_on_a_sessions_write_lock(
        database: Path, tmp_path: Path, portal: BlockingPortal) -> None:
    # Connections for the session, the writer waiting for its lock (on a thread), and the reads.
    middleware = ASGIMiddleware(host_app_asgi, **options(database, tmp_path, connect_timeout=10, pool_size=3))
    transport = httpx.ASGITransport(app=middleware)  # type: ignore[arg-type]
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            async def post(body: dict[str, Any]) -> Any:
                return (await http.post("/sql/lite/v2/pipeline", json=body, headers=headers)).json()

            held = await post({"baton": None, "requests": [execute("BEGIN IMMEDIATE"),
                                                            execute("INSERT INTO t (note) VALUES ('first')")]})
            order: list[str] = []

            async def write() -> None:  # one statement that opens and closes: run on the loop if it can
                answer = await post({"baton": None, "requests": [execute("INSERT INTO t (note) VALUES ('second')"),
                                                                 CLOSE]})
                order.append("write")
                order.append(answer["results"][0]["type"])

            writer = asyncio.create_task(write())
            await asyncio.sleep(0.2)
            ticks = 0
            for _ in range(5):  # the loop goes on while the write waits for the lock on a thread
                await post({"baton": None, "requests": [execute("SELECT 1"), CLOSE]})
                ticks += 1
            order.append("reads")
            committed = await post({"baton": held["baton"], "requests": [execute("COMMIT"), CLOSE]})
            order.append(committed["results"][0]["type"])
            await writer
            return {"order": order, "ticks": ticks}

    try:
        outcome = portal.call(scenario)
    finally:
        middleware.close()
    assert outcome == {"order": ["reads", "ok", "write", "ok"], "ticks": 5}
    assert count_rows(database) == 2
