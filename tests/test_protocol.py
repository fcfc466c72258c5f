"""The wire format, through every mount and against every database: requests, answers, bindings and errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlhttp_middleware.errors import all_error_classes
from sqlhttp_middleware.protocols.polyscale.encode import error_body

from .support import Client, Database, make_core_client, targets_for


def assert_error(reply: Any, status: int, code: str) -> dict[str, Any]:
    """Every failure answers in the one shape, with no trace of a traceback, URL or password."""
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    body: dict[str, Any] = reply.json()
    assert body["statusCode"] == status
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    text = reply.body.decode()
    for leak in ("Traceback", "://", "p@ss", "File \""):
        assert leak not in text, text
    return body


@pytest.fixture
def core_client() -> Iterator[Callable[..., Client]]:
    """Checks that only parse a body run once, against the core: no mount changes a body."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        made.append(make_core_client(options))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def table(db: Database) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    key = "id integer primary key" if db.family == "sqlite" else (
        "id serial primary key" if db.family == "postgresql" else "id integer auto_increment primary key"
    )
    db.run(f"create table {name} ({key}, name varchar(50) unique, qty integer)")
    yield name
    db.run(f"drop table {name}")


# -- success ------------------------------------------------------------------------------------------------------


def test_select_answers_array_of_row_objects(client: Client, db: Database) -> None:
    reply = client.query(db, "select 1 as one")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == [{"one": 1}]


def test_statement_without_rows_answers_empty_array(client: Client, db: Database, table: str) -> None:
    reply = client.query(db, f"insert into {table} (name, qty) values ('a', 1)")
    assert reply.status == 200
    assert reply.json() == []
    assert db.run(f"select name, qty from {table}") == [("a", 1)]  # committed: seen from another connection


def test_positional_and_named_bindings(client: Client, db: Database, table: str) -> None:
    assert client.query(db, f"insert into {table} (name, qty) values (?, ?)", ["pear", 3]).status == 200
    assert client.query(db, f"insert into {table} (name, qty) values (:n, :q)", {"n": "fig", "q": 5}).status == 200
    reply = client.query(db, f"select name, qty from {table} where qty > :min order by qty", {"min": 2})
    assert reply.json() == [{"name": "pear", "qty": 3}, {"name": "fig", "qty": 5}]


def test_list_binding_expands_in_list(client: Client, db: Database, table: str) -> None:
    for name, qty in [("a", 1), ("b", 2), ("c", 3)]:
        client.query(db, f"insert into {table} (name, qty) values (?, ?)", [name, qty])
    reply = client.query(db, f"select name from {table} where qty in (?) order by name", [[1, 3]])
    assert reply.json() == [{"name": "a"}, {"name": "c"}]
    assert client.query(db, f"select name from {table} where qty in (?)", [[]]).json() == []


def test_identifier_bindings_are_quoted_by_the_dialect(client: Client, db: Database, table: str) -> None:
    client.query(db, f"insert into {table} (name, qty) values ('x', 7)")
    reply = client.query(db, "select ?? from ?? where ?? = ?", ["qty", table, "name", "x"])
    assert reply.json() == [{"qty": 7}]
    reply = client.query(db, "select :col: from :tbl:", {"col": "name", "tbl": table})
    assert reply.json() == [{"name": "x"}]


def test_binding_values_never_become_sql(client: Client, db: Database, table: str) -> None:
    evil = "x'); drop table " + table + "; --"
    assert client.query(db, f"insert into {table} (name) values (?)", [evil]).status == 200
    assert client.query(db, f"select name from {table}").json() == [{"name": evil}]


def test_question_mark_and_colon_inside_literals_are_not_bindings(client: Client, db: Database) -> None:
    reply = client.query(db, "select 'a?b :c' as s, ? as v", ["x"])
    assert reply.json() == [{"s": "a?b :c", "v": "x"}]


def test_percent_signs_survive(client: Client, db: Database) -> None:
    reply = client.query(db, "select '100%' as p, ? as v", ["5%"])
    assert reply.json() == [{"p": "100%", "v": "5%"}]


def test_full_shape_reports_columns_count_and_insert_id(client: Client, db: Database, table: str) -> None:
    reply = client.query(db, f"insert into {table} (name, qty) values ('a', 1)", shape="full")
    body = reply.json()
    assert body["rows"] == [] and body["columns"] == [] and body["rowCount"] == 1
    if db.family == "postgresql":
        assert body["lastInsertId"] is None  # PostgreSQL has none: use RETURNING
    else:
        assert isinstance(body["lastInsertId"], int) and body["lastInsertId"] >= 1
    client.query(db, f"insert into {table} (name, qty) values ('b', 2)")
    body = client.query(db, f"update {table} set qty = qty + 1", shape="full").json()
    assert body["rowCount"] == 2
    body = client.query(db, f"select id, name from {table} order by id", shape="full", rowMode="array").json()
    assert [column["name"] for column in body["columns"]] == ["id", "name"]
    assert all(column["type"] for column in body["columns"])
    assert [row[1] for row in body["rows"]] == ["a", "b"]
    assert body["rowCount"] == 2


def test_row_mode_array_in_rows_shape(client: Client, db: Database) -> None:
    assert client.query(db, "select 1 as a, 2 as b", rowMode="array").json() == [[1, 2]]


def test_failed_statement_leaves_nothing_behind(client: Client, db: Database, table: str) -> None:
    client.query(db, f"insert into {table} (name, qty) values ('dup', 1)")
    reply = client.query(db, f"insert into {table} (name, qty) values ('new', 1), ('dup', 2)")
    body = assert_error(reply, 409, "CONSTRAINT_VIOLATION")
    assert body["database"]["code"]
    assert db.run(f"select name from {table} order by name") == [("dup",)]


def test_transaction_opened_by_a_statement_is_rolled_back(client: Client, db: Database, table: str) -> None:
    begin = "begin" if db.family != "mysql" else "start transaction"
    assert client.query(db, begin).status == 200
    # The next request may land on the same pooled connection: it must not run inside that transaction.
    assert client.query(db, f"insert into {table} (name) values ('kept')").status == 200
    assert db.run(f"select name from {table}") == [("kept",)]


# -- errors -------------------------------------------------------------------------------------------------------


def test_sql_error_carries_the_databases_own_code(client: Client, db: Database) -> None:
    body = assert_error(client.query(db, "select * from no_such_table"), 400, "SQL_ERROR")
    expected = {"postgresql": "42P01", "mysql": "1146", "sqlite": "SQLITE_ERROR"}[db.family]
    assert body["database"]["code"] == expected
    assert "no_such_table" in body["database"]["message"]


@pytest.mark.parametrize(
    ("sql", "bindings", "fragment"),
    [
        ("select ?, ?", [1], "2"),
        ("select ?", [1, 2], "2"),
        ("select :a", {"b": 1}, "a"),
        ("select :a", {"a": {"nested": 1}}, "a"),
    ],
)
def test_binding_mismatch_is_a_400_that_says_so(
    client: Client, db: Database, sql: str, bindings: Any, fragment: str
) -> None:
    body = assert_error(client.query(db, sql, bindings), 400, "BINDING_ERROR")
    assert fragment in body["message"]


def test_unknown_target_is_404(client: Client, db: Database) -> None:
    body = db.body("select 1")
    body["cacheId"] = "nope"
    assert "nope" in assert_error(client.post(body), 404, "TARGET_NOT_FOUND")["message"]


def test_provider_must_match_target(client: Client, db: Database) -> None:
    body = db.body("select 1")
    body["provider"] = "mssql"
    assert_error(client.post(body), 400, "PROVIDER_MISMATCH")


def test_mysql_and_mariadb_providers_are_interchangeable(make_client: Callable[..., Client],
                                                         maria_database: Database) -> None:
    client = make_client(targets=targets_for(maria_database))
    for provider in ("mysql", "mariadb"):
        body = maria_database.body("select 1 as one")
        body["provider"] = provider
        assert client.post(body).json() == [{"one": 1}]


def test_wrong_password_is_401(client: Client, db: Database) -> None:
    body = db.body("select 1")
    body["password"] = "wrong"
    assert_error(client.post(body), 401, "AUTHENTICATION_FAILED")


def test_unknown_user_is_401(client: Client, db: Database) -> None:
    body = db.body("select 1")
    body["username"] = "nobody_" + uuid.uuid4().hex[:6]
    assert_error(client.post(body), 401, "AUTHENTICATION_FAILED")


def test_wrong_password_after_right_one_is_still_401(client: Client, db: Database) -> None:
    assert client.query(db, "select 1 as one").status == 200  # warms a pool with the right password
    body = db.body("select 1")
    body["password"] = db.password + "x"
    assert_error(client.post(body), 401, "AUTHENTICATION_FAILED")
    assert client.query(db, "select 1 as one").status == 200


def test_unknown_database_is_404(make_client: Callable[..., Client], pg_database: Database,
                                 maria_database: Database) -> None:
    client = make_client(targets=targets_for(pg_database, maria_database))
    for database in (pg_database, maria_database):
        body = database.body("select 1")
        body["database"] = "sqlhttp_test_no_such_db"  # within the MariaDB login's grant, so it may learn it is absent
        assert_error(client.post(body), 404, "UNKNOWN_DATABASE")


def test_target_with_a_database_in_its_url_serves_only_that_one(make_client: Callable[..., Client],
                                                               pg_database: Database) -> None:
    client = make_client(targets={"pg": f"postgresql://127.0.0.1:5432/{pg_database.database}"})
    assert client.query(pg_database, "select 1 as one").json() == [{"one": 1}]
    body = pg_database.body("select 1")
    body["database"] = "postgres"
    assert_error(client.post(body), 403, "DATABASE_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        (b"{not json", 400, "INVALID_JSON", "JSON"),
        (b"[1, 2]", 400, "INVALID_REQUEST", "object"),
        (b'{"cacheId": "lite"}', 400, "INVALID_REQUEST", "username"),
        (b"", 400, "INVALID_JSON", "JSON"),
    ],
)
def test_malformed_bodies(core_client: Callable[..., Client], sqlite_database: Database,
                          body: bytes, status: int, code: str, fragment: str) -> None:
    client = core_client(targets=targets_for(sqlite_database))
    assert fragment in assert_error(client.post(body), status, code)["message"]


@pytest.mark.parametrize("field", ["cacheId", "username", "password", "database", "provider", "sql"])
@pytest.mark.parametrize("value", [None, "", 5, ["x"]])
def test_each_required_field_is_checked(core_client: Callable[..., Client], sqlite_database: Database,
                                        field: str, value: Any) -> None:
    client = core_client(targets=targets_for(sqlite_database))
    body = sqlite_database.body("select 1")
    if value is None:
        del body[field]
    else:
        body[field] = value
    assert assert_error(client.post(body), 400, "INVALID_REQUEST")["field"] == field


@pytest.mark.parametrize(("field", "value"), [("bindings", "x"), ("bindings", 3), ("shape", "tall"),
                                              ("rowMode", "columns")])
def test_optional_fields_are_checked(core_client: Callable[..., Client], sqlite_database: Database,
                                     field: str, value: Any) -> None:
    client = core_client(targets=targets_for(sqlite_database))
    body = sqlite_database.body("select 1")
    body[field] = value
    assert assert_error(client.post(body), 400, "INVALID_REQUEST")["field"] == field


def test_wrong_method_is_405_with_allow(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    for method in ("GET", "PUT", "DELETE"):
        reply = client.request(method, "/sql")
        assert_error(reply, 405, "METHOD_NOT_ALLOWED")
        assert reply.headers["allow"] == "POST"


def test_non_json_body_is_415(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    reply = client.request("POST", "/sql", b"sql=select+1", {"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(reply, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_error(client.request("POST", "/sql", b"{}"), 415, "UNSUPPORTED_MEDIA_TYPE")
    reply = client.post(sqlite_database.body("select 1 as one"),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert reply.json() == [{"one": 1}]


def test_oversized_body_is_413(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), max_body_bytes=200)
    reply = client.post(sqlite_database.body("select '" + "x" * 300 + "'"))
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE")
    assert client.post(sqlite_database.body("select 1 as one")).json() == [{"one": 1}]


def test_sqlite_checks_its_declared_users(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    body = sqlite_database.body("select 1")
    body["username"] = "someone"
    assert_error(client.post(body), 401, "AUTHENTICATION_FAILED")
    body = sqlite_database.body("select 1 as one")
    body["database"] = "anything"  # SQLite has no databases by name
    assert client.post(body).json() == [{"one": 1}]


def test_every_error_code_is_distinct_and_well_formed() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    for cls in all_error_classes():
        body = json.loads(error_body(cls("message")))
        assert set(body) == {"statusCode", "code", "error", "message"}
        assert 400 <= body["statusCode"] < 600


# -- mounting -----------------------------------------------------------------------------------------------------


def test_other_paths_reach_the_host_app(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    for method, path in [("GET", "/"), ("POST", "/sql/more"), ("GET", "/sqlx"), ("GET", "/api/sql")]:
        reply = client.request(method, path)
        assert reply.status == 200
        assert reply.body == f"host app: {method} {path}".encode()


def test_custom_path(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), path="/db/query")
    assert client.post(sqlite_database.body("select 1 as one"), path="/db/query").json() == [{"one": 1}]
    assert client.post(sqlite_database.body("select 1 as one")).body.startswith(b"host app")


def test_identifier_with_percent_sign(client: Client, db: Database) -> None:
    reply = client.query(db, "select 1 as ??, '5%' as ??", ["rate%", "p"])
    assert reply.json() == [{"rate%": 1, "p": "5%"}]
