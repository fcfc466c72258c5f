"""The lean wait of the event-loop PostgreSQL path (engine/waiting.py), against a real server: a socket kept
registered between queries, a full send buffer, a request that goes away mid-query, a server that closes an idle
connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from sqlhttp_middleware.dialects.postgresql import cursor_class
from sqlhttp_middleware.engine.waiting import loop_connection_class, unregister

from .support import PG_ADMIN, Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def connect(db: Database, name: str) -> Any:
    url = db.admin_url
    assert not isinstance(url, str)
    return await loop_connection_class().connect(
        host="127.0.0.1", port=5432, user=url.username, password=url.password, dbname=url.database,
        application_name=name, autocommit=True, cursor_factory=cursor_class(asynchronous=True))


def running(name: str) -> list[Any]:
    with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql") + "postgres", autocommit=True) as admin:
        return admin.execute("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s AND "
                             "state = 'active'", [name]).fetchall()


async def test_the_socket_stays_registered_between_queries(pg_database: Database) -> None:
    connection = await connect(pg_database, "wait-registered")
    try:
        cursor = connection.cursor()
        await cursor.execute("SELECT 1")
        fd = connection._sqlhttp_fd
        assert fd == connection.pgconn.socket >= 0
        for n in range(20):
            await asyncio.sleep(0)  # the loop runs between queries, as between requests
            await cursor.execute("SELECT %s::int", [n])
            assert await cursor.fetchall() == [(n,)]
            assert connection._sqlhttp_fd == fd  # never let go and taken again
    finally:
        unregister(connection)
        await connection.close()


async def test_a_full_send_buffer_falls_back_to_psycopgs_wait(pg_database: Database) -> None:
    connection = await connect(pg_database, "wait-big-send")
    try:
        big = "x" * (24 * 1024 * 1024)  # far more than a socket's send buffer: the send must wait to be writable
        cursor = connection.cursor()
        await cursor.execute("SELECT length(%s)", [big])
        assert await cursor.fetchall() == [(len(big),)]
        await cursor.execute("SELECT 2")  # and the fast path is back for the next query
        assert await cursor.fetchall() == [(2,)] and connection._sqlhttp_fd >= 0
    finally:
        unregister(connection)
        await connection.close()


async def test_a_request_that_goes_away_cancels_its_query(pg_database: Database) -> None:
    name = "wait-cancelled"
    connection = await connect(pg_database, name)
    try:
        cursor = connection.cursor()
        task = asyncio.ensure_future(cursor.execute("SELECT pg_sleep(30)"))
        deadline = time.monotonic() + 5
        while not running(name) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert running(name), "the query never started"
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5
        assert running(name) == []  # gone from the server, not left to sleep its 30 s
        assert connection._sqlhttp_fd == -1
        await cursor.execute("SELECT 3")  # the connection is usable again
        assert await cursor.fetchall() == [(3,)]
    finally:
        unregister(connection)
        await connection.close()


async def test_an_idle_socket_the_server_closed_is_let_go(pg_database: Database) -> None:
    name = "wait-killed-idle"
    connection = await connect(pg_database, name)
    try:
        await connection.execute("SELECT 1")
        assert connection._sqlhttp_fd >= 0
        with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg", "postgresql") + "postgres",
                             autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          [name])
        deadline = time.monotonic() + 5
        while connection._sqlhttp_fd >= 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop sees the socket readable while nobody waits on it
        assert connection._sqlhttp_fd == -1  # let go, so the loop does not spin on it
        with pytest.raises(psycopg.OperationalError):
            await connection.execute("SELECT 1")
    finally:
        unregister(connection)
        await connection.close()
