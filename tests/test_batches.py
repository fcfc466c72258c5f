"""Atomic batches in PolyScale's format, on every database and every mount: one transaction, all or nothing, with
its isolation level and read-only mode; the statement timeout and the caps cover the whole batch."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sqlhttp_middleware.options import Target

from .support import SQLITE_PASSWORD, SQLITE_USER, Client, Database, targets_for


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    """The engine's behaviour, on the WSGI and ASGI mounts (its sync and async paths); the Django mounts run the
    same paths, and what is theirs is tested in test_django.py."""
    return make_engine_client


def batch(db: Database, statements: list[Any], **extra: Any) -> dict[str, Any]:
    body = db.body("unused", **extra)
    del body["sql"]
    body["batch"] = [s if isinstance(s, dict) else {"sql": s} for s in statements]
    return body


@pytest.fixture
def table(db: Database) -> str:
    name = f"batch_{uuid.uuid4().hex[:8]}"
    db.run(f"CREATE TABLE {name} (id integer PRIMARY KEY, note varchar(20))")
    return name


def test_a_batch_answers_one_result_per_statement(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [
        {"sql": f"INSERT INTO {table} (id, note) VALUES (?, ?)", "bindings": [1, "one"]},
        {"sql": f"INSERT INTO {table} (id, note) VALUES (:id, :note)", "bindings": {"id": 2, "note": "two"}},
        f"SELECT id, note FROM {table} ORDER BY id",
    ]))
    assert reply.status == 200, reply.json()
    results = reply.json()["results"]
    assert results[2] == [{"id": 1, "note": "one"}, {"id": 2, "note": "two"}]
    assert results[0] == results[1] == []
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 2


def test_the_full_shape_names_row_counts(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [f"INSERT INTO {table} (id) VALUES (1)", f"SELECT id FROM {table}"],
                              shape="full", rowMode="array"))
    first, second = reply.json()["results"]
    assert first["rowCount"] == 1 and second["rows"] == [[1]] and second["truncated"] is False


def test_a_failure_rolls_everything_back_and_names_the_statement(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [
        f"INSERT INTO {table} (id) VALUES (1)",
        f"INSERT INTO {table} (id) VALUES (2)",
        f"INSERT INTO {table} (id) VALUES (1)",
        f"INSERT INTO {table} (id) VALUES (3)",
    ]))
    body = reply.json()
    assert reply.status == 409 and body["code"] == "CONSTRAINT_VIOLATION" and body["statement"] == 2
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0
    assert client.post(batch(db, [f"SELECT count(*) AS n FROM {table}"])).json() == {"results": [[{"n": 0}]]}


def test_a_binding_error_names_its_statement(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [f"INSERT INTO {table} (id) VALUES (1)",
                                   {"sql": "SELECT ?", "bindings": [1, 2]}]))
    assert reply.status == 400 and reply.json()["code"] == "BINDING_ERROR" and reply.json()["statement"] == 1
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0  # nothing ran


def test_a_batch_may_not_end_its_transaction(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [f"INSERT INTO {table} (id) VALUES (1)", "COMMIT"]))
    assert reply.status == 400 and reply.json()["statement"] == 1 and "one transaction" in reply.json()["message"]
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0


@pytest.mark.parametrize(("extra", "field"), [
    ({"isolationLevel": "snapshot"}, "isolationLevel"),
    ({"readOnly": "yes"}, "readOnly"),
    ({"deferrable": 1}, "deferrable"),
])
def test_batch_options_are_checked(client: Client, db: Database, extra: dict[str, Any], field: str) -> None:
    reply = client.post(batch(db, ["SELECT 1"], **extra))
    assert reply.status == 400 and reply.json()["field"] == field


def test_bad_batches_are_refused(client: Client, db: Database) -> None:
    for value in ([], "SELECT 1", [1], [{"bindings": []}]):
        reply = client.post(batch(db, []) | {"batch": value})
        assert reply.status == 400 and reply.json()["field"] == "batch", reply.json()
    both = batch(db, ["SELECT 1"]) | {"sql": "SELECT 1"}
    assert client.post(both).status == 400


def test_read_only_batches_read_and_never_write(client: Client, db: Database, table: str) -> None:
    reply = client.post(batch(db, [f"SELECT count(*) AS n FROM {table}"], readOnly=True))
    assert reply.json() == {"results": [[{"n": 0}]]}
    refused = client.post(batch(db, [f"INSERT INTO {table} (id) VALUES (1)"], readOnly=True))
    assert refused.status == 403 and refused.json()["code"] == "READ_ONLY", refused.json()
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0


@pytest.fixture(params=["pg", "maria"])
def netdb(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue({"pg": "pg_database", "maria": "maria_database"}[request.param])
    return database


@pytest.mark.parametrize(("level", "sees_new_rows"), [("read committed", True), ("repeatable read", False)])
def test_isolation_levels_are_applied(make_client: Callable[..., Client], netdb: Database, level: str,
                                      sees_new_rows: bool) -> None:
    """Seen in what the batch reads: a row committed elsewhere while it sleeps is visible to its second read under
    READ COMMITTED, and not under REPEATABLE READ. (SQLite's one level is serializable.)"""
    db, client = netdb, make_client(targets=targets_for(netdb))
    table = f"batch_{uuid.uuid4().hex[:8]}"
    db.run(f"CREATE TABLE {table} (id integer PRIMARY KEY)")
    sleep = "SELECT pg_sleep(0.6)" if db.family == "postgresql" else "SELECT SLEEP(0.6)"
    timer = threading.Timer(0.3, db.run, [f"INSERT INTO {table} (id) VALUES (7)"])
    timer.start()
    reply = client.post(batch(db, [f"SELECT count(*) AS n FROM {table}", sleep,
                                   f"SELECT count(*) AS n FROM {table}"], isolationLevel=level))
    timer.join()
    first, _, second = reply.json()["results"]
    assert first == [{"n": 0}] and second == [{"n": 1 if sees_new_rows else 0}]


def test_postgresql_reports_the_level_asked(make_client: Callable[..., Client], pg_database: Database) -> None:
    db, client = pg_database, make_client(targets=targets_for(pg_database))
    for level in ("read uncommitted", "read committed", "repeatable read", "serializable"):
        reply = client.post(batch(db, ["SELECT current_setting('transaction_isolation') AS level"],
                                  isolationLevel=level))
        assert reply.json() == {"results": [[{"level": level}]]}


def test_deferrable_is_postgresqls(client: Client, db: Database) -> None:
    reply = client.post(batch(db, ["SELECT 1 AS one"], isolationLevel="serializable", readOnly=True,
                              deferrable=True))
    if db.family == "postgresql":
        assert reply.json() == {"results": [[{"one": 1}]]}
    else:
        assert reply.status == 400 and "PostgreSQL" in reply.json()["message"]


def _read_only_targets(*databases: Database) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for database, spec in targets_for(*databases).items():
        if isinstance(spec, Target):
            targets[database] = Target(spec.url, users={SQLITE_USER: SQLITE_PASSWORD}, read_only=True)
        else:
            targets[database] = Target(spec, read_only=True)
    return targets


def test_a_read_only_target_stays_read_only_whatever_the_batch_asks(make_client: Callable[..., Client],
                                                                    db: Database, table: str) -> None:
    client = make_client(targets=_read_only_targets(db))
    escapes = {
        "postgresql": ["SET TRANSACTION READ WRITE", "SET default_transaction_read_only = off"],
        "mysql": ["SET SESSION transaction_read_only = 0", "SET TRANSACTION READ WRITE"],
        "sqlite": ["PRAGMA query_only = 0"],
    }[db.family]
    for escape in escapes:
        reply = client.post(batch(db, [escape, f"INSERT INTO {table} (id) VALUES (1)"], readOnly=False))
        assert reply.status in (400, 403), reply.json()
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0


def test_the_timeout_covers_the_whole_batch(make_client: Callable[..., Client], db: Database) -> None:
    sleep = {"postgresql": "SELECT pg_sleep(0.4)", "mysql": "SELECT SLEEP(0.4)",
             "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
                       "SELECT count(*) FROM c"}[db.family]
    client = make_client(targets=targets_for(db), statement_timeout=0.6)
    reply = client.post(batch(db, [sleep] * 4))
    assert reply.status == 504 and reply.json()["code"] == "STATEMENT_TIMEOUT", reply.json()
    assert client.query(db, "SELECT 1 AS one").json() == [{"one": 1}]  # the connection is healthy again


def test_caps_cover_the_whole_answer(make_client: Callable[..., Client], db: Database, table: str) -> None:
    client = make_client(targets=targets_for(db), max_rows=3)
    values = ", ".join(f"({n})" for n in range(1, 3))
    reply = client.post(batch(db, [f"INSERT INTO {table} (id) VALUES {values}", f"SELECT id FROM {table}",
                                   f"SELECT id FROM {table}"], shape="full"))
    assert reply.status == 507 and reply.json()["code"] == "RESULT_TOO_LARGE"
    assert db.run(f"SELECT count(*) FROM {table}")[0][0] == 0  # refused answers commit nothing
