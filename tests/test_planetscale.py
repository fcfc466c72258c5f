"""PlanetScale's HTTP API on every mount (WSGI, ASGI, Django sync and async), on MariaDB: the paths (the mount's,
and the origin's root only when asked), the answer's shape (Vitess types, the database's own bytes, NULL as -1,
counts as strings, a session on every answer), SQL errors inside a 200 with errno and SQLSTATE, our refusals as
non-2xx JSON, sessions from BEGIN to COMMIT, and the protections. The real driver: test_planetscale_driver.py."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from sqlhttp_middleware.options import ConfigurationError, Options, Target

from .support import Client, Database, Reply

MakeClient = Callable[..., Client]
EXECUTE = "/psdb.v1alpha1.Database/Execute"


def basic(database: Database, password: str | None = None) -> dict[str, str]:
    # The driver sends its URL's user and password as they stand there: percent-encoded.
    secret = password if password is not None else database.password
    login = f"{quote(database.username, safe='')}:{quote(secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}


@pytest.fixture
def url(maria_database: Database) -> str:
    return f"mariadb://127.0.0.1:3306/{maria_database.database}"


@pytest.fixture
def client(make_client: MakeClient, url: str) -> Client:
    return make_client(targets={"maria": url}, planetscale_root=True)


def execute(client: Client, database: Database, sql: str, session: Any = None, path: str = EXECUTE,
            password: str | None = None) -> Reply:
    return client.post({"query": sql, "session": session}, path=path, headers=basic(database, password))


def answer(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    body: dict[str, Any] = reply.json()
    assert isinstance(body["session"], dict) and isinstance(body["timing"], float)
    return body


def decoded(row: dict[str, Any]) -> list[bytes | None]:
    data, offset, values = base64.b64decode(row["values"]), 0, []
    for length in map(int, row["lengths"]):
        if length < 0:
            values.append(None)
            continue
        values.append(data[offset:offset + length])
        offset += length
    return values


@pytest.fixture
def table(maria_database: Database) -> Iterator[str]:
    name = f"ps_{uuid.uuid4().hex[:8]}"
    maria_database.run(f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20) UNIQUE)")
    yield name
    maria_database.run(f"DROP TABLE IF EXISTS {name}")


# -- paths --------------------------------------------------------------------------------------------------------

def test_the_root_is_served_only_when_asked(make_client: MakeClient, maria_database: Database, url: str) -> None:
    off = make_client(targets={"maria": url})
    reply = execute(off, maria_database, "SELECT 1")
    assert reply.status == 200 and reply.body.startswith(b"host app")  # the host app's page, not ours
    under = execute(off, maria_database, "SELECT 1", path="/sql" + EXECUTE)
    assert answer(under)["result"]["rows"] == [{"lengths": ["1"], "values": "MQ=="}]
    named = execute(off, maria_database, "SELECT 2", path="/sql/maria" + EXECUTE)
    assert answer(named)["result"]["rows"] == [{"lengths": ["1"], "values": "Mg=="}]
    missing = execute(off, maria_database, "SELECT 2", path="/sql/nope" + EXECUTE)
    assert missing.status == 404 and missing.json()["error"]["code"] == "not_found"


def test_which_target_the_root_serves_is_checked(url: str) -> None:
    with pytest.raises(ConfigurationError, match="planetscale_target"):
        Options.from_kwargs(targets={"a": url, "b": url}, planetscale_root=True)
    with pytest.raises(ConfigurationError, match="planetscale_target"):
        Options.from_kwargs(targets={"a": url, "pg": "postgresql://127.0.0.1:5432"}, planetscale_target="pg")
    assert Options.from_kwargs(targets={"a": url, "b": url}, planetscale_root=True,
                               planetscale_target="b").planetscale_target == "b"


def test_non_mysql_targets_and_targets_without_a_database(make_client: MakeClient, maria_database: Database,
                                                           url: str) -> None:
    client = make_client(targets={"maria": url, "bare": "mariadb://127.0.0.1:3306",
                                  "pg": "postgresql://127.0.0.1:5432"})
    bare = execute(client, maria_database, "SELECT 1", path="/sql/bare" + EXECUTE)
    assert bare.status == 400 and "names no database" in bare.json()["error"]["message"]
    pg = execute(client, maria_database, "SELECT 1", path="/sql/pg" + EXECUTE)
    assert pg.status == 400 and "MySQL" in pg.json()["error"]["message"]


# -- the answer ---------------------------------------------------------------------------------------------------

def test_fields_carry_vitess_types_and_rows_the_databases_bytes(client: Client, maria_database: Database) -> None:
    body = answer(execute(client, maria_database, (
        "SELECT CAST(-9223372036854775808 AS SIGNED) AS i64, CAST(18446744073709551615 AS UNSIGNED) AS u64, "
        "1.50 AS d, 'é' AS s, x'00ff' AS b, "
        "NULL AS n, CAST('2024-01-02 03:04:05.678' AS DATETIME(3)) AS dt, CAST(1e300 AS DOUBLE) AS f, "
        "'a%b' AS pct")))
    assert body["session"] == {"signature": "", "vitessSession": {"autocommit": True}}
    fields = {field["name"]: field for field in body["result"]["fields"]}
    names = ("i64", "u64", "d", "s", "b", "n", "dt", "f", "pct")
    assert [fields[n].get("type") for n in names] == [
        "INT64", "UINT64", "DECIMAL", "VARCHAR", "VARBINARY", None, "DATETIME", "FLOAT64", "VARCHAR"]
    assert fields["b"]["charset"] == 63 and fields["s"]["charset"] != 63
    assert fields["d"]["decimals"] == 2
    (row,) = body["result"]["rows"]
    assert decoded(row) == [b"-9223372036854775808", b"18446744073709551615", b"1.50", "é".encode(), b"\x00\xff",
                            None, b"2024-01-02 03:04:05.678", b"1e300", b"a%b"]
    assert row["lengths"][5] == "-1"


def test_writes_answer_counts_as_strings(client: Client, maria_database: Database, table: str) -> None:
    insert = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('a'), ('b')"))
    assert insert["result"] == {"rowsAffected": "2", "insertId": "1"}
    update = answer(execute(client, maria_database, f"UPDATE {table} SET v = concat(v, '!') WHERE id = 2"))
    assert update["result"] == {"rowsAffected": "1"}
    assert answer(execute(client, maria_database, f"UPDATE {table} SET v = v WHERE id = 99"))["result"] == {}


def test_sql_errors_answer_200_with_errno_and_sqlstate(client: Client, maria_database: Database,
                                                       table: str) -> None:
    execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('dup')")
    for sql, code, number, state in (
            (f"INSERT INTO {table} (v) VALUES ('dup')", "ALREADY_EXISTS", 1062, "23000"),
            ("SELECT * FROM no_such_table", "NOT_FOUND", 1146, "42S02"),
            ("SELEC 1", "INVALID_ARGUMENT", 1064, "42000"),
            (f"SELECT nope FROM {table}", "INVALID_ARGUMENT", 1054, "42S22")):
        body = answer(execute(client, maria_database, sql))
        assert "result" not in body and body["error"]["code"] == code, body
        assert body["error"]["message"].endswith(f"(errno {number}) (sqlstate {state})")


def test_our_refusals_are_non_2xx_json_errors(make_client: MakeClient, maria_database: Database, url: str) -> None:
    client = make_client(targets={"maria": url}, planetscale_root=True, rate_limit=4, max_rows=2)
    wrong = execute(client, maria_database, "SELECT 1", password="wrong")
    assert wrong.status == 401 and wrong.json() == {"error": {
        "code": "unauthenticated", "message": f"authentication failed for user {maria_database.username!r} on "
                                              "target 'maria'"}}
    assert maria_database.password not in wrong.body.decode()
    no_login = client.post({"query": "SELECT 1"}, path=EXECUTE)
    assert no_login.status == 401 and "Basic" in no_login.json()["error"]["message"]
    capped = execute(client, maria_database, "SELECT 1 UNION SELECT 2 UNION SELECT 3")
    assert capped.status == 507 and capped.json()["error"]["code"] == "resource_exhausted"
    bad = client.post(b"[]", path=EXECUTE, headers=basic(maria_database))
    assert bad.status == 400 and bad.json()["error"]["code"] == "invalid_argument"
    limited = execute(client, maria_database, "SELECT 1")
    assert limited.status == 429 and limited.json()["error"]["code"] == "resource_exhausted"


def test_one_statement_per_request_and_no_local_files(client: Client, maria_database: Database) -> None:
    many = answer(execute(client, maria_database, "SELECT 1; SELECT 2"))
    assert many["error"]["message"].endswith("(errno 1064) (sqlstate 42000)")
    local = answer(execute(client, maria_database, "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"))
    assert "error" in local and "(errno" in local["error"]["message"]


def test_create_session(client: Client, maria_database: Database) -> None:
    created = client.post({}, path="/psdb.v1alpha1.Database/CreateSession", headers=basic(maria_database))
    assert created.status == 200 and created.json() == {"session": {"signature": "",
                                                                    "vitessSession": {"autocommit": True}}}
    refused = client.post({}, path="/psdb.v1alpha1.Database/CreateSession", headers=basic(maria_database, "no"))
    assert refused.status == 401


# -- sessions -----------------------------------------------------------------------------------------------------

def test_a_transaction_is_a_session_from_begin_to_commit(client: Client, maria_database: Database,
                                                         table: str) -> None:
    begun = answer(execute(client, maria_database, "BEGIN"))
    session = begun["session"]
    assert session["signature"] and session["vitessSession"] == {"autocommit": False, "inTransaction": True}
    inserted = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('tx')", session))
    assert inserted["session"]["signature"] != session["signature"]  # a new one with every answer
    outside = answer(execute(client, maria_database, f"SELECT count(*) FROM {table}"))
    assert decoded(outside["result"]["rows"][0]) == [b"0"]  # not committed yet
    inside = answer(execute(client, maria_database, f"SELECT count(*) FROM {table}", inserted["session"]))
    assert decoded(inside["result"]["rows"][0]) == [b"1"]
    reused = execute(client, maria_database, "SELECT 1", session)
    assert reused.status == 400 and reused.json()["error"]["code"] == "invalid_argument"
    committed = answer(execute(client, maria_database, "COMMIT", inside["session"]))
    assert committed["session"] == {"signature": "", "vitessSession": {"autocommit": True}}
    after = answer(execute(client, maria_database, f"SELECT count(*) FROM {table}"))
    assert decoded(after["result"]["rows"][0]) == [b"1"]
    assert client.core.sessions.count() == 0


def test_rollback_and_savepoints(client: Client, maria_database: Database, table: str) -> None:
    session = answer(execute(client, maria_database, "START TRANSACTION"))["session"]
    for sql in (f"INSERT INTO {table} (v) VALUES ('kept')", "SAVEPOINT sp1", f"INSERT INTO {table} (v) VALUES ('x')",
                "ROLLBACK TO SAVEPOINT sp1", "RELEASE SAVEPOINT sp1"):
        body = answer(execute(client, maria_database, sql, session))
        assert "error" not in body, (sql, body)
        session = body["session"]
        assert session["signature"], sql  # ROLLBACK TO keeps the transaction
    rows = answer(execute(client, maria_database, f"SELECT v FROM {table}", session))
    assert [decoded(r) for r in rows["result"]["rows"]] == [[b"kept"]]
    assert answer(execute(client, maria_database, "ROLLBACK", rows["session"]))["session"]["signature"] == ""
    assert decoded(answer(execute(client, maria_database, f"SELECT count(*) FROM {table}"))["result"]["rows"][0]) \
        == [b"0"]


def test_a_set_keeps_its_session_and_never_leaks_into_the_pool(client: Client, maria_database: Database) -> None:
    # Kysely's and Prisma's way: SET TRANSACTION ISOLATION LEVEL, then BEGIN, on one connection.
    session = answer(execute(client, maria_database, "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"))[
        "session"]
    assert session["signature"]
    session = answer(execute(client, maria_database, "BEGIN", session))["session"]
    level = answer(execute(client, maria_database, "SELECT @@tx_isolation", session))
    assert decoded(level["result"]["rows"][0]) == [b"SERIALIZABLE"]
    answer(execute(client, maria_database, "COMMIT", level["session"]))
    assert client.core.sessions.count() == 0
    # The connection that SET changed was closed, not pooled: the next request starts from the defaults.
    for _ in range(3):
        fresh = answer(execute(client, maria_database, "SELECT @@tx_isolation"))
        assert decoded(fresh["result"]["rows"][0]) == [b"REPEATABLE-READ"]


def test_another_login_cannot_continue_a_session(client: Client, maria_database: Database, table: str) -> None:
    session = answer(execute(client, maria_database, "BEGIN"))["session"]
    stolen = client.post({"query": f"DELETE FROM {table}", "session": session}, path=EXECUTE,
                         headers={"Authorization": "Basic " + base64.b64encode(b"root:").decode()})
    assert stolen.status == 400 and "another login" in stolen.json()["error"]["message"]
    assert answer(execute(client, maria_database, "ROLLBACK", session))["session"]["signature"] == ""


def test_a_read_only_target_begins_but_never_writes(make_client: MakeClient, maria_database: Database,
                                                    url: str, table: str) -> None:
    client = make_client(targets={"maria": Target(url, read_only=True)}, planetscale_root=True)
    session = answer(execute(client, maria_database, "BEGIN"))["session"]
    write = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('no')", session))
    assert write["error"]["code"] == "FAILED_PRECONDITION" and "(errno 1792)" in write["error"]["message"]
    answer(execute(client, maria_database, "ROLLBACK", write["session"]))
    alone = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('no')"))
    assert "(errno 1792)" in alone["error"]["message"]


def test_a_statement_timeout_answers_inside_the_200(make_client: MakeClient, maria_database: Database,
                                                     url: str) -> None:
    client = make_client(targets={"maria": Target(url, statement_timeout=0.3)}, planetscale_root=True)
    body = answer(execute(client, maria_database, "SELECT SLEEP(5)"))
    # MariaDB's max_statement_time stops it (SLEEP answers 1 when interrupted; other statements fail with 1969).
    assert body.get("error") or decoded(body["result"]["rows"][0]) == [b"1"]
    slow = answer(execute(client, maria_database, "SELECT count(*) FROM information_schema.columns a, "
                                                  "information_schema.columns b, information_schema.columns c"))
    assert slow["error"]["code"] == "DEADLINE_EXCEEDED" and "(errno 1969)" in slow["error"]["message"]


def test_set_transaction_holds_nothing_and_reaches_the_next_begin(client: Client, maria_database: Database,
                                                                  table: str) -> None:
    # Prisma's adapter sends SET TRANSACTION on one driver connection and BEGIN on another: nothing may wait for it.
    carried = answer(execute(client, maria_database, "SET TRANSACTION READ ONLY"))["session"]
    assert carried["signature"] == "" and carried["vitessSession"]["nextTransaction"] == "SET TRANSACTION READ ONLY"
    assert client.core.sessions.count() == 0 and client.core.pool_stats()["checked_out"] == 0
    begun = answer(execute(client, maria_database, "BEGIN", carried))["session"]  # Kysely's way: the same connection
    write = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('no')", begun))
    assert "(errno 1792)" in write["error"]["message"]  # the transaction is read-only, as set
    answer(execute(client, maria_database, "ROLLBACK", write["session"]))
    forged = {"signature": "", "vitessSession": {"nextTransaction": "SET TRANSACTION READ ONLY; DROP TABLE x"}}
    begun = answer(execute(client, maria_database, "BEGIN", forged))["session"]  # only its own words travel
    inserted = answer(execute(client, maria_database, f"INSERT INTO {table} (v) VALUES ('yes')", begun))
    assert "error" not in inserted
    answer(execute(client, maria_database, "ROLLBACK", inserted["session"]))
