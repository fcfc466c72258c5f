"""The private PostgreSQL and MariaDB servers of ``tests/support/private.py``, which fault tests start, freeze and stop.

Each is taken through its life: it answers; frozen, a client with a 1 s timeout gets no answer; thawed, it answers
again (the very query that was waiting, for PostgreSQL); stopped, connecting is refused and no process of it is
left; started again, after a clean stop and after a crash, its data is still there. The shared servers on 5432 and
3306 are never touched. Missing binaries skip these tests on a developer's machine and fail them under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import psycopg
import pymysql
import pytest

from .support import make_core_client
from .support.private import PORT_RANGE, PrivateMariaDB, PrivatePostgres, private_mariadb, private_postgres, started

private_pg = private_postgres("private_pg")
private_maria = private_mariadb("private_maria")


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def assert_own_port(server: PrivatePostgres | PrivateMariaDB) -> None:
    assert PORT_RANGE[0] <= server.port <= PORT_RANGE[1] < 32768
    assert f"127.0.0.1:{server.port}" in server.url
    assert server.target.endswith(f"127.0.0.1:{server.port}")


def assert_stopped(server: PrivatePostgres | PrivateMariaDB) -> None:
    assert not server.running
    assert server.pids() == []  # the postmaster and every backend, or mysqld: nothing left
    assert_refused(server.port)


def pg_kept(server: PrivatePostgres) -> list[Any]:
    with server.connect() as connection:
        return list(connection.execute("SELECT v FROM kept").fetchall())


def maria_kept(server: PrivateMariaDB) -> tuple[Any, ...]:
    with contextlib.closing(server.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT v FROM kept")
        return tuple(cursor.fetchall())


def test_private_postgres(private_pg: PrivatePostgres) -> None:
    pg = private_pg
    assert_own_port(pg)
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/test"
    with pg.connect(autocommit=True) as connection:
        assert connection.execute("SELECT current_user, current_database()").fetchone() == ("postgres", "test")
        assert connection.execute("SHOW port").fetchone() == (str(pg.port),)
        connection.execute("CREATE TABLE kept (v text)")
        connection.execute("INSERT INTO kept VALUES ('survives')")
    # The kind of login the middleware makes: a role whose password is checked.
    login: dict[str, Any] = {"host": pg.host, "port": pg.port, "user": pg.login_user, "dbname": pg.database}
    with psycopg.connect(password=pg.login_password, connect_timeout=5, **login) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(password="wrong", connect_timeout=5, **login)

    waiting = pg.connect(autocommit=True)
    answers: list[Any] = []
    pg.freeze()
    try:
        assert pg.frozen and len(pg.pids()) > 1  # the postmaster and its children, all stopped
        query = threading.Thread(target=lambda: answers.append(waiting.execute("SELECT 42").fetchone()), daemon=True)
        query.start()
        query.join(1.0)
        assert query.is_alive() and answers == []  # no answer within 1 s
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            pg.connect(connect_timeout=1)  # psycopg waits 2 s at the least
        assert time.monotonic() - started < 5
    finally:
        pg.thaw()
    query.join(5)
    assert answers == [(42,)]  # the waiting query is answered once thawed
    waiting.close()
    assert pg_kept(pg) == [("survives",)]

    pg.stop()
    assert_stopped(pg)
    with pytest.raises(psycopg.OperationalError, match="refused"):
        pg.connect()
    pg.start()
    assert pg_kept(pg) == [("survives",)]
    with pg.connect(autocommit=True) as connection:
        connection.execute("INSERT INTO kept VALUES ('committed before the crash')")
    pg.kill()
    assert_stopped(pg)
    pg.restart()  # from stopped: just a start, which recovers from the crash
    assert pg_kept(pg) == [("survives",), ("committed before the crash",)]


def test_private_mariadb(private_maria: PrivateMariaDB) -> None:
    maria = private_maria
    assert_own_port(maria)
    assert maria.url == f"mariadb://root@127.0.0.1:{maria.port}/test"
    with contextlib.closing(maria.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_user(), database(), @@port")
        assert cursor.fetchone() == ("root@127.0.0.1", "test", maria.port)
        cursor.execute("CREATE TABLE kept (v varchar(40))")
        cursor.execute("INSERT INTO kept VALUES ('survives')")
    login: dict[str, Any] = {"host": maria.host, "port": maria.port, "user": maria.login_user, "database": "test"}
    with contextlib.closing(pymysql.connect(password=maria.login_password.encode(), **login)) as connection:
        assert connection.cursor().execute("SELECT 1") == 1
    with pytest.raises(pymysql.OperationalError) as refused:
        pymysql.connect(password="wrong", **login)
    assert refused.value.args[0] == 1045  # access denied

    waiting = maria.connect(read_timeout=1)
    maria.freeze()
    try:
        assert maria.frozen
        started = time.monotonic()
        with pytest.raises(pymysql.OperationalError):
            waiting.cursor().execute("SELECT 42")  # no answer within its 1 s read timeout
        assert 0.9 < time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(pymysql.OperationalError):
            maria.connect(connect_timeout=1, read_timeout=1)  # connected, but no greeting comes
        assert time.monotonic() - started < 3
    finally:
        maria.thaw()
    with contextlib.closing(maria.connect(read_timeout=1)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 42")
        assert cursor.fetchone() == (42,)
    assert maria_kept(maria) == (("survives",),)

    maria.stop()
    assert_stopped(maria)
    with pytest.raises(pymysql.OperationalError) as refused:
        maria.connect()
    assert refused.value.args[0] == 2003  # can't connect
    maria.start()
    assert maria_kept(maria) == (("survives",),)
    with contextlib.closing(maria.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO kept VALUES ('committed before the crash')")
    maria.kill()
    assert_stopped(maria)
    maria.restart()
    assert maria_kept(maria) == (("survives",), ("committed before the crash",))


def test_the_middleware_reaches_them(private_pg: PrivatePostgres, private_maria: PrivateMariaDB) -> None:
    """Their ``target`` and ``database_for()`` serve as the shared servers' do, password-checked logins included."""
    private_pg.ensure_running()
    private_maria.ensure_running()
    client = make_core_client({"targets": {"pg": private_pg.target, "maria": private_maria.target}})
    try:
        for database in (private_pg.database_for("pg"), private_maria.database_for("maria")):
            reply = client.query(database, "select 1 as one")
            assert (reply.status, reply.json()) == (200, [{"one": 1}]), reply.body
            assert database.run("select 2") == [(2,)]
            assert client.post(database.body("select 1", password="wrong")).status != 200
    finally:
        client.close()


def test_frozen_servers_are_cleaned_up() -> None:
    """Leaving a context frozen still ends every process and removes the data directory."""
    with started(PrivatePostgres) as server:
        server.freeze()
        pids, directory = server.pids(), server.dir
    assert pids and all(not _alive(pid) for pid in pids)
    assert not directory.exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
