"""A corpus of bad input: each case, the status and code it gets; afterwards the database and the process are intact.
And nothing ever leaks a password (URL-special and non-ASCII), a connection URL or a traceback: not in answers,
logs, exception reprs or the objects a debugger would print."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlhttp_middleware.options import Target

from .support import Client, Database, targets_for

BIG = "x" * (2 * 1024 * 1024)


def corpus(db: Database) -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    """(name, method, body, headers, status, code)."""
    good = db.body("select 1")
    json_headers = {"Content-Type": "application/json"}

    def with_(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        ("get", "GET", b"", {}, 405, "METHOD_NOT_ALLOWED"),
        ("form post", "POST", b"sql=select+1", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "UNSUPPORTED_MEDIA_TYPE"),
        ("text/plain", "POST", json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415,
         "UNSUPPORTED_MEDIA_TYPE"),
        ("2 MiB body", "POST", with_(sql=BIG), json_headers, 413, "PAYLOAD_TOO_LARGE"),
        ("not json", "POST", b"{'single': 'quotes'}", json_headers, 400, "INVALID_JSON"),
        ("truncated json", "POST", json.dumps(good).encode()[:-5], json_headers, 400, "INVALID_JSON"),
        ("invalid utf-8", "POST", b'{"sql": "\xff\xfe"}', json_headers, 400, "INVALID_JSON"),
        ("json array", "POST", b"[]", json_headers, 400, "INVALID_REQUEST"),
        ("json null", "POST", b"null", json_headers, 400, "INVALID_REQUEST"),
        ("deeply nested", "POST", b"[" * 100_000 + b"]" * 100_000, json_headers, 400, "INVALID_JSON"),
        ("number sql", "POST", with_(sql=1), json_headers, 400, "INVALID_REQUEST"),
        ("empty sql", "POST", with_(sql=""), json_headers, 400, "INVALID_REQUEST"),
        # libpq would silently cut the text at the NUL: "delete from t\x00 where id = 1" would delete every row.
        ("nul in sql", "POST", with_(sql="select 1\x00; drop table t"), json_headers, 400, "INVALID_REQUEST"),
        ("bindings string", "POST", with_(bindings="1"), json_headers, 400, "INVALID_REQUEST"),
        ("binding object value", "POST", with_(sql="select ?", bindings=[{"a": 1}]), json_headers, 400,
         "BINDING_ERROR"),
        ("binding nested list", "POST", with_(sql="select ?", bindings=[[[1]]]), json_headers, 400,
         "BINDING_ERROR"),
        ("too many bindings", "POST", with_(sql="select ?", bindings=[1, 2]), json_headers, 400, "BINDING_ERROR"),
        ("too few bindings", "POST", with_(sql="select ?, ?", bindings=[1]), json_headers, 400, "BINDING_ERROR"),
        ("unknown name", "POST", with_(sql="select :a", bindings={"b": 1}), json_headers, 400, "BINDING_ERROR"),
        ("identifier not a string", "POST", with_(sql="select ??", bindings=[1]), json_headers, 400,
         "BINDING_ERROR"),
        ("unknown target", "POST", with_(cacheId="../../etc/passwd"), json_headers, 404, "TARGET_NOT_FOUND"),
        ("wrong provider", "POST", with_(provider="oracle"), json_headers, 400, "PROVIDER_MISMATCH"),
        ("bad shape", "POST", with_(shape="xml"), json_headers, 400, "INVALID_REQUEST"),
        ("negative timeout", "POST", with_(timeout=-1), json_headers, 400, "INVALID_REQUEST"),
        ("timeout as text", "POST", with_(timeout="5"), json_headers, 400, "INVALID_REQUEST"),
        ("syntax error", "POST", with_(sql="selec 1"), json_headers, 400, "SQL_ERROR"),
        ("two statements", "POST", with_(sql="select 1; select 2"), json_headers, 400,
         "SQL_ERROR" if db.family == "mysql" else "MULTIPLE_STATEMENTS"),
        ("wrong password", "POST", with_(password="nope"), json_headers, 401, "AUTHENTICATION_FAILED"),
        # JSON integers arrive exactly, however long: PostgreSQL and MariaDB take 10^40 as an exact numeric;
        # SQLite cannot hold an integer beyond 64 bits and refuses it, naming the binding.
        ("huge integer binding", "POST", with_(sql="select ? as v", bindings=[10**40]), json_headers,
         400 if db.family == "sqlite" else 200, "BINDING_ERROR" if db.family == "sqlite" else ""),
    ]


@pytest.fixture
def sentinel(db: Database) -> Iterator[str]:
    name = f"sentinel_{uuid.uuid4().hex[:8]}"
    db.run(f"create table {name} (id integer primary key, v varchar(20))")
    db.run(f"insert into {name} values (1, 'intact')")
    yield name
    db.run(f"drop table {name}")


def test_bad_input_corpus(make_client: Callable[..., Client], db: Database, sentinel: str) -> None:
    client = make_client(targets=targets_for(db), login_attempts=0)
    threads_before = threading.active_count()
    outcomes = {}
    for name, method, raw, headers, status, code in corpus(db):
        reply = client.request(method, "/sql", raw, headers)
        outcomes[name] = reply.status
        assert reply.status == status, (name, reply.body[:300])
        if status >= 400:
            answer = reply.json()
            assert answer["code"] == code and answer["statusCode"] == status, name
            assert "Traceback" not in reply.body.decode("utf-8", "replace"), name
    # The database and the process are intact.
    assert db.run(f"select id, v from {sentinel}") == [(1, "intact")]
    assert client.query(db, f"select v from {sentinel}").json() == [{"v": "intact"}]
    assert client.core.pool_stats()["checked_out"] == 0  # every connection went back
    assert threading.active_count() <= threads_before + 4  # reaper, watchdog and two executor threads at most


# -- leaks --------------------------------------------------------------------------------------------------------


def secrets_of(password: str) -> list[str]:
    return [password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password),
            password.encode().decode("latin-1")]


def test_nothing_leaks_a_password_or_url(make_client: Callable[..., Client], pg_database: Database,
                                         caplog: pytest.LogCaptureFixture) -> None:
    password = pg_database.password  # contains @:/#%? and non-ASCII
    assert any(not c.isascii() for c in password) and "@" in password and "%" in password
    held = f"postgresql://{pg_database.username}:{urllib.parse.quote(password, safe='')}@127.0.0.1:5432/"
    targets = {
        "pg": "postgresql://127.0.0.1:5432",
        "held": Target(held + pg_database.database, users={"edge": "edge-password"}),
        "down": Target(f"postgresql://{pg_database.username}:{urllib.parse.quote(password, safe='')}"
                       "@127.0.0.1:1/x", users={"edge": "edge-password"}),
    }
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client = make_client(targets=targets, connect_timeout=1)
        requests = [
            pg_database.body("select 1"),  # right password, the database's own login
            {**pg_database.body("select 1"), "password": password + "x"},  # wrong
            {**pg_database.body("select * from nowhere")},  # an SQL error
            {**pg_database.body("select 1"), "cacheId": "held", "username": "edge", "password": "edge-password"},
            {**pg_database.body("select 1"), "cacheId": "down", "username": "edge", "password": "edge-password"},
            {**pg_database.body("select 1", [password])},  # the password as a binding value is the client's data
        ]
        for request in requests[:-1]:
            reply = client.post(request)
            seen.append(reply.body.decode("utf-8", "replace"))
            seen.extend(f"{name}: {value}" for name, value in reply.headers.items())
        core = client.core
        seen.extend([repr(core.options), repr(core.options.targets), str(core.options.targets["held"]),
                     repr(core.engines.registry.pools()), repr(core.executor.limits)])
        seen.extend(repr(entry.engine) for entry in core.engines.registry.pools())
    seen.append(caplog.text)
    everything = "\n".join(seen)
    for secret in secrets_of(password):
        assert secret not in everything
    assert "127.0.0.1:1" not in everything and "Traceback" not in "\n".join(seen[:-1])
