"""What a request may do: one statement, a statement timeout the client cannot switch off, result caps, read-only
targets enforced by the database (with a corpus of escapes), and SQLite files clients cannot reach."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlhttp_middleware.dialects import dialect_support
from sqlhttp_middleware.options import Target

from .support import Client, Database, kill_our_connections, server_connections, targets_for


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    """The engine's behaviour, on the WSGI and ASGI mounts (its sync and async paths); the Django mounts run the
    same paths, and what is theirs is tested in test_django.py."""
    return make_engine_client


@pytest.fixture
def table(db: Database) -> Iterator[str]:
    name = f"s_{uuid.uuid4().hex[:10]}"
    db.run(f"create table {name} (id integer primary key, name varchar(50))")
    db.run(f"insert into {name} (id, name) values (1, 'kept')")
    yield name
    db.run(f"drop table if exists {name}")


def with_options(db: Database, **target_options: Any) -> dict[str, Any]:
    """Targets for ``db`` whose target carries ``target_options`` (read_only, statement_timeout, caps)."""
    spec = targets_for(db)[db.key]
    if isinstance(spec, str):
        return {db.key: Target(spec, **target_options)}
    return {db.key: Target(spec.url, users=spec.users, **target_options)}


# -- one statement ------------------------------------------------------------------------------------------------

MULTI = [
    "select 1; delete from {t}",
    "select 1;delete from {t}",
    "select ';'; delete from {t}",
    "select 1 /* ; */; delete from {t}",
    "delete from {t}; select 1",
    "select 1; -- only a comment after\n delete from {t}",
]


@pytest.mark.parametrize("sql", MULTI)
def test_a_second_statement_is_refused_and_nothing_runs(client: Client, db: Database, table: str, sql: str) -> None:
    reply = client.query(db, sql.format(t=table))
    assert reply.status == 400, reply.body
    expected = "SQL_ERROR" if db.family == "mysql" else "MULTIPLE_STATEMENTS"  # MySQL: the server's syntax error
    assert reply.json()["code"] == expected
    assert db.run(f"select name from {table}") == [("kept",)]


def test_one_statement_with_a_trailing_semicolon_is_fine(client: Client, db: Database) -> None:
    assert client.query(db, "select 1 as one;").json() == [{"one": 1}]


# -- statement timeout --------------------------------------------------------------------------------------------

SLOW = {
    "postgresql": "select pg_sleep(5)",
    "mysql": "select sleep(5)",
    "sqlite": "with recursive r(n) as (select 1 union all select n + 1 from r) select count(*) from r",
}


def test_statement_timeout_cancels_on_the_server(make_client: Callable[..., Client], db: Database) -> None:
    client = make_client(targets=with_options(db, statement_timeout=0.5))
    started = time.monotonic()
    reply = client.query(db, SLOW[db.family])
    assert reply.status == 504, reply.body
    assert reply.json()["code"] == "STATEMENT_TIMEOUT"
    assert time.monotonic() - started < 4.5  # cancelled, not run to its end
    if db.family != "sqlite":
        activity = (
            "select count(*) from pg_stat_activity where usename = %(user)s and state = 'active' "
            "and query like %(pattern)s and pid <> pg_backend_pid()"
            if db.family == "postgresql"
            else "select count(*) from information_schema.processlist where user = %(user)s and info like %(pattern)s"
        )
        assert db.run(activity, user=db.username, pattern="%sleep(5)%")[0][0] == 0  # gone from the server
    assert client.query(db, "select 1 as one").json() == [{"one": 1}]


def test_a_request_can_lower_its_timeout_not_raise_it(make_client: Callable[..., Client], db: Database) -> None:
    client = make_client(targets=targets_for(db), statement_timeout=30)
    assert client.query(db, SLOW[db.family], timeout=0.4).status == 504
    assert client.query(db, "select 1 as one", timeout=1e6).status == 200


def test_a_client_cannot_switch_the_timeout_off(make_client: Callable[..., Client], netdb: Database) -> None:
    client = make_client(targets=with_options(netdb, statement_timeout=0.5), pool_size=1)
    off = "set statement_timeout = 0" if netdb.family == "postgresql" else "set session max_statement_time = 0"
    assert client.query(netdb, off).status == 200
    assert client.query(netdb, SLOW[netdb.family]).status == 504  # the same pooled connection, re-armed


def test_watchdog_kills_what_the_server_does_not(maria_database: Database) -> None:
    """MySQL's max_execution_time covers only SELECT; the watchdog's KILL QUERY covers the rest. Driven here on
    MariaDB directly, since no MySQL server runs in this suite."""
    import threading

    import pymysql
    import sqlalchemy

    engine = sqlalchemy.create_engine(sqlalchemy.URL.create(
        "mariadb+pymysql", maria_database.username, maria_database.password, "127.0.0.1", 3306,
        maria_database.database), connect_args={"password": maria_database.password.encode()})
    raw = engine.raw_connection()
    try:
        connection = raw.dbapi_connection
        timer = threading.Timer(0.3, dialect_support("mysql").kill_query, args=(connection, engine))
        timer.start()
        started = time.monotonic()
        with connection.cursor() as cursor, pytest.raises(pymysql.err.OperationalError) as caught:  # type: ignore[union-attr]
            cursor.execute("select sleep(5)")
        assert caught.value.args[0] == 1317  # "Query execution was interrupted": mapped to STATEMENT_TIMEOUT
        assert time.monotonic() - started < 4
        assert dialect_support("mysql").is_timeout(caught.value)
        timer.join()
    finally:
        raw.close()
        engine.dispose()


@pytest.fixture(params=["pg", "maria"])
def netdb(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue({"pg": "pg_database", "maria": "maria_database"}[request.param])
    return database


# -- result caps --------------------------------------------------------------------------------------------------

MANY = {
    "postgresql": "select n from generate_series(1, 2000000) as n",
    "mysql": "select seq as n from seq_1_to_2000000",
    "sqlite": "with recursive r(n) as (select 1 union all select n + 1 from r limit 2000000) select n from r",
}


def test_row_cap(make_client: Callable[..., Client], db: Database) -> None:
    client = make_client(targets=with_options(db, max_rows=10))
    reply = client.query(db, MANY[db.family])
    assert reply.status == 507, reply.body
    body = reply.json()
    assert body["code"] == "RESULT_TOO_LARGE" and body["maxRows"] == 10
    full = client.query(db, MANY[db.family], shape="full", rowMode="array").json()
    assert full["truncated"] is True and full["rows"] == [[n] for n in range(1, 11)] and full["rowCount"] == 10
    assert client.query(db, "select 1 as one", shape="full").json()["truncated"] is False
    assert client.query(db, "select 1 as one").json() == [{"one": 1}]  # the connection is healthy (or replaced)


def test_byte_cap(make_client: Callable[..., Client], db: Database) -> None:
    client = make_client(targets=with_options(db, max_response_bytes=100))
    reply = client.query(db, MANY[db.family], shape="full")
    body = reply.json()
    assert body["truncated"] is True
    assert len(json.dumps(body["rows"], separators=(",", ":"))) - 2 <= 100
    assert 0 < body["rowCount"] < 20
    assert client.query(db, MANY[db.family]).status == 507


# -- read-only targets --------------------------------------------------------------------------------------------

ESCAPES = {
    "postgresql": [
        "insert into {t} (id, name) values (2, 'x')",
        "update {t} set name = 'changed'",
        "delete from {t}",
        "drop table {t}",
        "create table {t}_new (a int)",
        "select nextval('{t}_seq')",
        "start transaction read write",
        "set default_transaction_read_only = off",
        "set transaction read write",
        "copy {t} from program 'true'",
        "copy (select 1) to program 'cat'",
        "with x as (insert into {t} (id, name) values (3, 'cte') returning 1) select * from x",
        "do $$ begin insert into {t} (id, name) values (4, 'do'); end $$",
        "select set_config('default_transaction_read_only', 'off', false)",
    ],
    "mysql": [
        "insert into {t} (id, name) values (2, 'x')",
        "update {t} set name = 'changed'",
        "delete from {t}",
        "create table {t}_new (a int)",
        "start transaction read write",
        "set session transaction read write",
        "set session tx_read_only = 0",
        "select * from {t} into outfile '/tmp/sqlhttp-escape-{u}'",
        "load data local infile '/etc/hostname' into table {t}",
    ],
    "sqlite": [
        "insert into {t} (id, name) values (2, 'x')",
        "update {t} set name = 'changed'",
        "delete from {t}",
        "drop table {t}",
        "create table {t}_new (a int)",
        "pragma query_only = 0",
        "pragma query_only = off",
        "attach database '/tmp/sqlhttp-escape-{u}.db' as other",
        "vacuum into '/tmp/sqlhttp-escape-{u}.db'",
    ],
}


def test_read_only_targets_hold_against_a_corpus_of_escapes(make_client: Callable[..., Client], db: Database,
                                                            table: str) -> None:
    if db.family == "postgresql":
        db.run(f"create sequence {table}_seq")
    client = make_client(targets=with_options(db, read_only=True), pool_size=1)
    unique = uuid.uuid4().hex[:8]
    outcomes = {}
    for escape in ESCAPES[db.family]:
        sql = escape.format(t=table, u=unique)
        outcomes[sql] = client.query(db, sql).status
        # Whatever the escape did to its session, the next statement on the same connection still cannot write.
        follow_up = client.query(db, f"insert into {table} (id, name) values (9, 'after')")
        assert follow_up.status != 200, (sql, follow_up.body)
    # Only statements that change the session may answer 200, and the next checkout undoes them (checked above).
    session_only = ("set ", "start transaction", "pragma query_only", "select set_config")
    answered = [sql for sql, status in outcomes.items() if status == 200]
    assert all(sql.startswith(session_only) for sql in answered), answered
    assert db.run(f"select id, name from {table}") == [(1, "kept")]
    assert client.query(db, f"select name from {table}").json() == [{"name": "kept"}]
    assert not os.path.exists(f"/tmp/sqlhttp-escape-{unique}") and not os.path.exists(
        f"/tmp/sqlhttp-escape-{unique}.db")
    if db.family == "postgresql":
        assert db.run(f"select last_value, is_called from {table}_seq") == [(1, False)]
        db.run(f"drop sequence {table}_seq")
    refused = {sql: status for sql, status in outcomes.items() if status != 200}
    assert all(status in (400, 403) for status in refused.values()), refused


def test_sqlite_clients_cannot_attach_files(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    reply = client.query(sqlite_database, "attach database '/tmp/sqlhttp-attach.db' as other")
    assert reply.status == 400 and "not authorized" in reply.json()["message"]
    assert client.query(sqlite_database, "select 1 as one").json() == [{"one": 1}]


def test_killed_connections_do_not_weaken_read_only(make_client: Callable[..., Client], netdb: Database) -> None:
    name = f"s_{uuid.uuid4().hex[:10]}"
    netdb.run(f"create table {name} (id integer primary key)")
    try:
        client = make_client(targets=with_options(netdb, read_only=True))
        assert client.query(netdb, f"select count(*) as n from {name}").status == 200
        kill_our_connections(netdb)
        assert client.query(netdb, f"insert into {name} values (1)").status == 403  # a fresh connection, re-armed
        assert server_connections(netdb) >= 1
    finally:
        netdb.run(f"drop table {name}")
