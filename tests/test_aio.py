"""What the ASGI adapter runs on the event loop: PostgreSQL with psycopg's async connections (``async_postgres``),
with the same answers as the thread-pool path and pools with the same rules; SQLite within ``inline_budget``, moved
to a thread (undone and run again) past it; and the blocking parts of a request sent to threads."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal

from sqlhttp_middleware.auth import AuthContext
from sqlhttp_middleware.core import SQLHTTPCore
from sqlhttp_middleware.errors import PoolTimeout
from sqlhttp_middleware.options import Options

from .support import Client, Database, make_asgi_client, targets_for

STATEMENTS = [
    ("select 1 as one, 'x'::text as t, 9007199254740993::bigint as big, 1.50::numeric as n", None, {}),
    ("select now()::date - date '2024-01-01' > 0 as later, '{1,2}'::int[] as a, '{\"k\": 1}'::jsonb as j", None, {}),
    ("select g as n, repeat('x', g) as s from generate_series(1, 1200) g", None, {"shape": "full"}),
    ("select ?::int + ? as sum", [1, 2], {"rowMode": "array"}),
    ("select * from no_such_table", None, {}),
    ("select 1; select 2", None, {}),
    ("select 1/0", None, {}),
]


def test_postgres_answers_on_the_loop_exactly_as_on_threads(portal: BlockingPortal, pg_database: Database) -> None:
    on_loop = make_asgi_client({"targets": targets_for(pg_database)}, portal)
    on_threads = make_asgi_client({"targets": targets_for(pg_database), "async_postgres": False}, portal)
    try:
        for sql, bindings, extra in STATEMENTS:
            a = on_loop.query(pg_database, sql, bindings, **extra)
            b = on_threads.query(pg_database, sql, bindings, **extra)
            assert (a.status, a.body) == (b.status, b.body), sql
        assert on_loop.core.aio.stats() == {"engines": 1, "open_connections": 1, "checked_out": 0}
        assert on_loop.core.engines.stats()["engines"] == 0  # nothing went through the thread-pool engines
        assert on_threads.core.aio is None
    finally:
        on_loop.close()
        on_threads.close()


def test_insert_returning_through_the_loop(portal: BlockingPortal, pg_database: Database) -> None:
    table = f"r_{uuid.uuid4().hex[:10]}"
    pg_database.run(f"create table {table} (id serial primary key, v text)")
    client = make_asgi_client({"targets": targets_for(pg_database)}, portal)
    try:
        reply = client.query(pg_database, f"insert into {table} (v) values (?), (?) returning id, v", ["a", "b"])
        assert reply.json() == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    finally:
        client.close()
        pg_database.run(f"drop table {table}")


def test_blocking_steps_run_on_threads_and_the_query_on_the_loop(portal: BlockingPortal, pg_database: Database,
                                                                  redis_url: str) -> None:
    threads: list[str] = []

    def authorize(context: AuthContext) -> bool:
        threads.append(threading.current_thread().name)
        return True

    client = make_asgi_client({"targets": targets_for(pg_database), "authorize": authorize,
                               "rate_limit_storage": redis_url, "rate_limit": 1000,
                               "rate_limit_namespace": f"aio-{uuid.uuid4().hex}"}, portal)
    try:
        reply = client.query(pg_database, "select 1 as one")
        assert reply.json() == [{"one": 1}]
        assert reply.headers["ratelimit"].startswith('"mount";r=999')  # counted in Redis
        assert threads and threads[0].startswith("sqlhttp")  # the hook ran on the middleware's threads
        assert client.core.aio.stats()["engines"] == 1  # and the query on the loop
    finally:
        client.close()


# -- the pool itself ----------------------------------------------------------------------------------------------


def test_pool_serves_waiters_in_order_and_a_cancelled_waiter_gives_nothing_away(pg_database: Database) -> None:
    core = SQLHTTPCore(targets=targets_for(pg_database), rate_limit_storage="memory", pool_size=1,
                       pool_timeout=2)
    options: Options = core.options
    from sqlhttp_middleware.engine.work import Login

    login = Login(pg_database.username, pg_database.password, pg_database.database)

    async def scenario() -> list[Any]:
        assert core.aio is not None
        loop = asyncio.get_running_loop()
        pool = core.aio._pool(loop, options.targets[pg_database.key], login)
        held = await pool.acquire(loop)
        order: list[str] = []

        async def wait(name: str) -> None:
            connection = await pool.acquire(loop)
            order.append(name)
            pool.release(connection, healthy=True)

        first = asyncio.create_task(wait("first"))
        gone = asyncio.create_task(wait("gone"))
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client went away while waiting
        await asyncio.sleep(0.05)
        pool.release(held, healthy=True)
        await asyncio.gather(first, second)
        with pytest.raises(asyncio.CancelledError):
            await gone
        result = [order, pool.open, len(pool._waiters)]
        # A pool whose only connection is held answers PoolTimeout after pool_timeout, not never.
        held = await pool.acquire(loop)
        options_timeout = asyncio.create_task(pool.acquire(loop))
        with pytest.raises(PoolTimeout):
            await options_timeout
        pool.release(held, healthy=False)  # a broken connection is closed, and its slot freed
        result.append(pool.open)
        core.close()
        return result

    order, opened, waiting, after = asyncio.run(scenario())
    assert order == ["first", "second"]
    assert (opened, waiting, after) == (1, 0, 0)


# -- SQLite on the loop, within its budget ------------------------------------------------------------------------


def _recording_runs(client: Client) -> list[tuple[int, float | None]]:
    """(thread, budget) of every statement the core runs through the sync runner."""
    calls: list[tuple[int, float | None]] = []
    original = client.core.executor.run

    def recording(work: Any, login: Any, builder: Any, *, budget: float | None = None) -> Any:
        calls.append((threading.get_ident(), budget))
        return original(work, login, builder, budget=budget)

    client.core.executor.run = recording
    return calls


COUNT_TO = "with recursive c(x) as (select 1 union all select x + 1 from c where x < {n}) "


def test_sqlite_runs_on_the_loop_and_past_its_budget_on_a_thread(portal: BlockingPortal,
                                                                   sqlite_database: Database) -> None:
    client = make_asgi_client({"targets": targets_for(sqlite_database)}, portal)
    loop_thread = portal.call(_current_thread)
    calls = _recording_runs(client)
    try:
        assert client.query(sqlite_database, "select 1 as one").json() == [{"one": 1}]
        assert calls == [(loop_thread, 0.002)]  # on the loop, nothing else needed
        calls.clear()
        reply = client.query(sqlite_database, COUNT_TO.format(n=2_000_000) + "select count(*) as n from c")
        assert reply.json() == [{"n": 2_000_000}]
        assert [budget for _, budget in calls] == [0.002, None]  # stopped at its budget, then run on a thread
        assert calls[0][0] == loop_thread and calls[1][0] != loop_thread
    finally:
        client.close()


async def _current_thread() -> int:
    return threading.get_ident()


def test_a_write_past_its_budget_is_undone_and_applied_once(portal: BlockingPortal,
                                                            sqlite_database: Database) -> None:
    table = f"w_{uuid.uuid4().hex[:10]}"
    sqlite_database.run(f"create table {table} (v integer)")
    client = make_asgi_client({"targets": targets_for(sqlite_database)}, portal)
    calls = _recording_runs(client)
    try:
        reply = client.query(sqlite_database, f"insert into {table} (v) " + COUNT_TO.format(n=300_000)
                             + "select x from c", shape="full")
        assert reply.status == 200, reply.body
        assert reply.json()["rowCount"] == 300_000
        assert [budget for _, budget in calls] == [0.002, None]  # it did outgrow the loop's budget
        assert sqlite_database.run(f"select count(*), sum(v) from {table}") == [(300_000, 300_000 * 300_001 // 2)]
    finally:
        client.close()
        sqlite_database.run(f"drop table {table}")


def test_a_locked_sqlite_database_never_holds_the_loop(portal: BlockingPortal, sqlite_database: Database) -> None:
    import sqlite3

    table = f"l_{uuid.uuid4().hex[:10]}"
    sqlite_database.run(f"create table {table} (v integer)")
    path = str(sqlite_database.admin_url).removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin immediate")  # a writer elsewhere holds the lock
    client = make_asgi_client({"targets": targets_for(sqlite_database)}, portal)
    calls = _recording_runs(client)
    replies: list[Any] = []
    writer = threading.Thread(target=lambda: replies.append(
        client.query(sqlite_database, f"insert into {table} (v) values (1)")))
    try:
        writer.start()
        deadline = threading.Event()
        while not client.core.pool_stats()["checked_out"] and not deadline.wait(0.01):
            pass  # the insert has met the lock and waits for it on a thread
        assert client.query(sqlite_database, "select 2 as two").json() == [{"two": 2}]
        assert writer.is_alive()  # the loop answered while the insert was still waiting
        assert [budget for _, budget in calls[:2]] == [0.002, None]  # locked on the loop: moved to a thread
        holder.execute("commit")
        writer.join(10)
        assert replies[0].status == 200, replies[0].body
        assert sqlite_database.run(f"select v from {table}") == [(1,)]
    finally:
        holder.close()
        client.close()
        sqlite_database.run(f"drop table {table}")
