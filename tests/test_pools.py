"""Pooling against real servers: two connections at most, waiting, timeouts, idle reaping, the engine bound,
failed logins, a database that drops our connections, and fork safety."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from .support import Client, Database, kill_our_connections, make_wsgi_client, server_connections, targets_for


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    """The engine's behaviour, on the WSGI and ASGI mounts (its sync and async paths); the Django mounts run the
    same paths, and what is theirs is tested in test_django.py."""
    return make_engine_client


@pytest.fixture(params=["pg", "maria"])
def netdb(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue({"pg": "pg_database", "maria": "maria_database"}[request.param])
    return database


def sleep_sql(db: Database, seconds: float) -> str:
    return f"select pg_sleep({seconds}) as s" if db.family == "postgresql" else f"select sleep({seconds}) as s"


def in_threads(count: int, work: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        results[index] = work()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_never_more_than_pool_size_connections(make_client: Callable[..., Client], netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb), pool_timeout=10)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server_connections(netdb))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        replies = in_threads(6, lambda: client.query(netdb, sleep_sql(netdb, 0.2)))
    finally:
        done.set()
        watcher.join()
    assert [reply.status for reply in replies] == [200] * 6  # the four that found the pool busy waited
    assert peak == 2
    assert client.core.pool_stats()["open_connections"] <= 2


def test_busy_pool_answers_503_after_the_pool_timeout(make_client: Callable[..., Client],
                                                      netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb), pool_timeout=0.3)
    holders = threading.Thread(target=in_threads, args=(2, lambda: client.query(netdb, sleep_sql(netdb, 1.5))))
    holders.start()
    deadline = time.monotonic() + 5
    while client.core.pool_stats().get("checked_out", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    reply = client.query(netdb, "select 1 as one")
    holders.join()
    assert reply.status == 503
    body = reply.json()
    assert body["code"] == "POOL_TIMEOUT" and body["statusCode"] == 503
    assert reply.headers["retry-after"] == "1"
    assert client.query(netdb, "select 1 as one").json() == [{"one": 1}]


def test_idle_connections_are_reaped(make_client: Callable[..., Client], netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb), idle_timeout=0.3)
    in_threads(2, lambda: client.query(netdb, sleep_sql(netdb, 0.1)))
    assert client.core.pool_stats()["open_connections"] == 2
    assert server_connections(netdb) == 2
    deadline = time.monotonic() + 5
    while server_connections(netdb) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_connections(netdb) == 0
    assert client.core.pool_stats() == {"engines": 1, "open_connections": 0, "checked_out": 0}
    assert client.query(netdb, "select 1 as one").json() == [{"one": 1}]  # and the pool reconnects


def test_unused_engines_are_disposed(make_client: Callable[..., Client], netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb), idle_timeout=0.2, engine_idle_timeout=0.4)
    client.query(netdb, "select 1")
    assert client.core.pool_stats()["engines"] == 1
    deadline = time.monotonic() + 5
    while client.core.pool_stats()["engines"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.core.pool_stats()["engines"] == 0


def test_engine_cache_is_bounded(make_client: Callable[..., Client], pg_database: Database) -> None:
    client = make_client(targets=targets_for(pg_database), max_engines=2)
    for database in (pg_database.database, "postgres", "test", pg_database.database):
        body = pg_database.body("select current_database() as db")
        body["database"] = database
        assert client.post(body).json() == [{"db": database}]
    stats = client.core.pool_stats()
    assert stats["engines"] == 2
    assert stats["open_connections"] <= 2  # the evicted engine's connection was closed
    admin_count = pg_database.run(
        f"select count(*) from pg_stat_activity where usename = '{pg_database.username}' "
        "and application_name = 'sqlhttp-middleware'"
    )[0][0]
    assert admin_count <= 2


def test_failed_logins_do_not_fill_the_cache(make_client: Callable[..., Client], netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb))
    assert client.query(netdb, "select 1 as one").status == 200
    for attempt in range(10):
        body = netdb.body("select 1")
        body["password"] = f"wrong-{attempt}"
        assert client.post(body).status == 401
    assert client.core.pool_stats()["engines"] == 1


def test_connections_dropped_by_the_server_cost_no_error(make_client: Callable[..., Client],
                                                         netdb: Database) -> None:
    """What a database restart does to a pool: every idle connection is closed under it."""
    client = make_client(targets=targets_for(netdb))
    in_threads(2, lambda: client.query(netdb, sleep_sql(netdb, 0.1)))
    assert kill_our_connections(netdb) == 2
    time.sleep(0.2)
    for _ in range(3):
        assert client.query(netdb, "select 1 as one").json() == [{"one": 1}]


def test_forked_child_gets_its_own_connections(pg_database: Database) -> None:
    """Fork safety belongs to the engine cache both mounts share; checked through the WSGI one."""
    client = make_wsgi_client({"targets": targets_for(pg_database)})
    first = client.query(pg_database, "select pg_backend_pid() as pid").json()[0]["pid"]
    pid = os.fork()
    if pid == 0:  # the child: a forking server's worker
        code = 1
        try:
            reply = client.core.handle(_request(pg_database))
            child_pid = reply.body.decode()
            code = 0 if reply.status == 200 and str(first) not in child_pid else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pooled connection survived the child (it was not closed by the child's cleanup).
    assert client.query(pg_database, "select pg_backend_pid() as pid").json()[0]["pid"] == first
    client.middleware.close()


def test_connection_lost_mid_statement_is_503_and_not_reused(make_client: Callable[..., Client],
                                                            netdb: Database) -> None:
    client = make_client(targets=targets_for(netdb))
    suicide = "select pg_terminate_backend(pg_backend_pid())" if netdb.family == "postgresql" else (
        "kill connection_id()"
    )
    reply = client.query(netdb, suicide)
    assert reply.status == 503, reply.body
    assert reply.json()["code"] == "DATABASE_UNAVAILABLE"
    for _ in range(3):
        assert client.query(netdb, "select 1 as one").json() == [{"one": 1}]


def test_unreachable_database_is_503(make_client: Callable[..., Client], pg_database: Database) -> None:
    client = make_client(targets={"pg": "postgresql://127.0.0.1:1", "maria": "mariadb://127.0.0.1:1"},
                         connect_timeout=1)
    for key, provider in (("pg", "postgres"), ("maria", "mariadb")):
        body = pg_database.body("select 1")
        body.update(cacheId=key, provider=provider)
        reply = client.post(body)
        assert reply.status == 503 and reply.json()["code"] == "DATABASE_UNAVAILABLE"
        assert "127.0.0.1" not in reply.json()["message"]


def test_login_not_permitted_is_403(make_client: Callable[..., Client], pg_database: Database) -> None:
    role = "sqlhttp_nologin"
    admin = Database("pg", "postgresql", "postgres", "postgres", "", "postgres",
                     "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin.run(f"drop role if exists {role}")
    admin.run(f"create role {role} nologin")
    try:
        client = make_client(targets=targets_for(pg_database))
        body = pg_database.body("select 1")
        body["username"] = role
        reply = client.post(body)
        assert reply.status == 403 and reply.json()["code"] == "PERMISSION_DENIED"
    finally:
        admin.run(f"drop role {role}")
def _request(db: Database) -> Any:
    import json

    from sqlhttp_middleware.core import Request

    body = json.dumps(db.body("select pg_backend_pid() as pid")).encode()
    return Request("POST", "/sql", {"content-type": "application/json"}, body)
