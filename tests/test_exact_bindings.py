"""Numbers in bindings arrive exactly as sent (issue 12): integers beyond 2**53 and 2**64 reach PostgreSQL and
MariaDB as those integers, SQLite refuses one beyond its 64-bit range with a 400 naming the binding, and floats
stay floats; on the WSGI and ASGI mounts (the core's sync and async paths)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sqlhttp_middleware import errors
from sqlhttp_middleware.protocols.base import json_object

from .support import Client, Database, targets_for

BIG = [2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**40 + 1, -(10**70) - 3]
SQLITE_FITS = [n for n in BIG if -(2**63) <= n < 2**63]
# The binding as text, computed by the database: equal to str(n) only if the database got n itself.
AS_TEXT = {"postgresql": "SELECT CAST(? AS text) AS v", "mysql": "SELECT CAST(? AS char) AS v",
           "sqlite": "SELECT CAST(? AS text) AS v, typeof(?) AS t"}


@pytest.fixture
def client(make_engine_client: Callable[..., Client], db: Database) -> Client:
    return make_engine_client(targets=targets_for(db))


def raw_body(db: Database, sql: str, bindings_json: str) -> bytes:
    """A request body with the bindings written out by hand, so no JSON encoder rounds them on the way."""
    body = json.dumps(db.body(sql, rowMode="array"))
    return (body[:-1] + f', "bindings": {bindings_json}}}').encode()


# --- the request's parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", BIG)
def test_the_parser_keeps_every_integer_exact(number: int) -> None:
    document = json_object(b'{"bindings": [%d, {"n": [%d]}], "sql": "12345678901234567890"}' % (number, number))
    assert document["bindings"][0] == number and type(document["bindings"][0]) is int
    assert document["bindings"][1] == {"n": [number]}


@pytest.mark.parametrize("token", [b"1.0", b"0.1", b"1e19", b"18446744073709551616.0", b"1.8446744073709552e19",
                                   b"-0.0", b"0.12345678901234567890123", b"1e-320"])
def test_floats_stay_floats_parsed_as_doubles(token: bytes) -> None:
    for padding in (b"", b', "pad": 10000000000000000000000'):  # the fast path, and the exact one
        value = json_object(b'{"v": ' + token + padding + b"}")["v"]
        assert type(value) is float and value == float(token)


def test_a_number_beyond_a_double_is_still_invalid_json() -> None:
    with pytest.raises(errors.InvalidJSON):
        json_object(b'{"v": ' + b"1" * 400 + b"}")
    with pytest.raises(errors.InvalidJSON):
        json_object(b'{"v": 1e400, "w": 10000000000000000000000}')


def test_a_long_digit_run_in_a_string_changes_nothing() -> None:
    document = json_object(b'{"sql": "select 123456789012345678901234567890", "bindings": [1, 2.5, true, null]}')
    assert document == {"sql": "select 123456789012345678901234567890", "bindings": [1, 2.5, True, None]}


# --- on the databases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", BIG)
def test_a_big_integer_reaches_the_database_exactly(client: Client, db: Database, number: int) -> None:
    sql = AS_TEXT[db.family]
    count = sql.count("?")
    reply = client.post(raw_body(db, sql, json.dumps([number] * count)))
    if db.family == "sqlite" and number not in SQLITE_FITS:
        assert reply.status == 400, reply.json()
        assert reply.json()["code"] == "BINDING_ERROR"
        assert "binding #1" in reply.json()["message"] and "64-bit" in reply.json()["message"]
        return
    assert reply.status == 200, reply.json()
    row = reply.json()[0]
    assert row[0] == str(number)
    if db.family == "sqlite":
        assert row[1] == "integer"


def test_sqlite_stores_an_integer_or_refuses_never_a_real(
    make_engine_client: Callable[..., Client], sqlite_database: Database
) -> None:
    db = sqlite_database
    client = make_engine_client(targets=targets_for(db))
    table = f"exact_{uuid.uuid4().hex[:8]}"
    db.run(f"CREATE TABLE {table} (n)")
    for number in (2**63 - 1, -(2**63)):
        assert client.post(raw_body(db, f"INSERT INTO {table} VALUES (?)", f"[{number}]")).status == 200
    for sql, bindings, label in [
        (f"INSERT INTO {table} VALUES (?)", f"[{2**64}]", "#1"),
        (f"INSERT INTO {table} VALUES (:n)", f'{{"n": {2**63}}}', ":n"),
        (f"SELECT * FROM {table} WHERE n IN (?) AND n <> ?", f"[[1, {-(2**63) - 1}], 2]", "#1"),
        ("SELECT ?, ?", f"[1, {10**300}]", "#2"),
    ]:
        reply = client.post(raw_body(db, sql, bindings))
        assert reply.status == 400, reply.json()
        message = reply.json()["message"]
        assert f"binding {label} is the integer" in message and "send it as a string" in message
        assert len(message) < 250  # a 301-digit number is shortened
    assert db.run(f"SELECT n, typeof(n) FROM {table} ORDER BY n") == [(-(2**63), "integer"), (2**63 - 1, "integer")]


@pytest.mark.parametrize("token", ["1.0", "1e19", "18446744073709551616.0", "0.1"])
def test_a_float_binding_stays_a_float(client: Client, db: Database, token: str) -> None:
    sql = {"postgresql": "SELECT pg_typeof(?)::text", "mysql": "SELECT ? + 0 = ?",
           "sqlite": "SELECT typeof(?)"}[db.family]
    bindings = f"[{token}, {float(token)!r}]" if db.family == "mysql" else f"[{token}]"
    reply = client.post(raw_body(db, sql + ", '12345678901234567890'", bindings))
    assert reply.status == 200, reply.json()
    value = reply.json()[0][0]
    assert value == {"postgresql": "double precision", "mysql": 1, "sqlite": "real"}[db.family]


@pytest.mark.parametrize("fixture", ["pg_database", "maria_database"])  # SQLite's columns have no range
def test_out_of_a_columns_range_is_the_databases_own_400(
    make_engine_client: Callable[..., Client], request: pytest.FixtureRequest, fixture: str
) -> None:
    db: Database = request.getfixturevalue(fixture)
    client = make_engine_client(targets=targets_for(db))
    table = f"exact_{uuid.uuid4().hex[:8]}"
    db.run(f"CREATE TABLE {table} (n bigint)")
    reply = client.post(raw_body(db, f"INSERT INTO {table} VALUES (?)", f"[{2**64}]"))
    assert 400 <= reply.status < 500, reply.json()
    assert "range" in reply.json()["message"].lower()
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0


def test_types_of_the_exact_path_match_the_fast_one() -> None:
    body: dict[str, Any] = {"a": [1, -1, 0.5, True, None, "x", {"b": [2**63 - 1]}]}
    fast = json_object(json.dumps(body).encode())
    exact = json_object(json.dumps({**body, "pad": 2**64}).encode())
    assert fast == {k: v for k, v in exact.items() if k != "pad"}
    assert [type(v) for v in fast["a"]] == [type(v) for v in exact["a"]]
