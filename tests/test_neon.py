"""Neon's HTTP protocol, request by request: what the parser accepts and refuses, the answers' shape, batches in one
transaction, errors in Neon's shape, and every protection of the PolyScale path.

Checks that only parse a body or shape an answer run against the core; what passes through an adapter (the
``Neon-*`` headers, ``text/plain`` bodies, CORS) runs on every mount. The real driver is driven in
``test_neon_driver.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from sqlhttp_middleware.core import Request, Response, SQLHTTPCore
from sqlhttp_middleware.options import Target

from .support import Client, Database, targets_for

NEON_FIELDS = {"message", "code", "severity", "detail", "hint", "position", "internalPosition", "internalQuery",
               "where", "schema", "table", "column", "dataType", "constraint", "file", "line", "routine"}


def connection_string(db: Database, *, target: str | None = None, password: str | None = None,
                      database: str | None = None) -> str:
    secret = db.password if password is None else password
    return (f"postgresql://{quote(db.username, safe='')}:{quote(secret, safe='')}@{target or db.key}/"
            f"{quote(database or db.database, safe='')}?application_name=test")


def neon_headers(db: Database, **extra: str) -> dict[str, str]:
    return {"neon-connection-string": connection_string(db), "neon-raw-text-output": "true",
            "neon-array-mode": "true", "content-type": "text/plain;charset=UTF-8", **extra}


def send(core: SQLHTTPCore, body: Any, headers: dict[str, str]) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return core.handle(Request("POST", "/sql", headers, raw, "127.0.0.1"))


def answer(response: Response) -> Any:
    return json.loads(response.body)


def assert_neon_error(response: Response, status: int, code: str, *words: str) -> dict[str, Any]:
    body = answer(response)
    assert response.status == status, body
    assert set(body) == NEON_FIELDS
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body
    return body  # type: ignore[no-any-return]




@pytest.fixture
def core(make_core: Callable[..., SQLHTTPCore], pg_database: Database) -> SQLHTTPCore:
    return make_core(targets=targets_for(pg_database))


# -- answers ------------------------------------------------------------------------------------------------------


def test_a_query_answers_fields_text_rows_command_and_count(core: SQLHTTPCore, pg_database: Database) -> None:
    response = send(core, {"query": "SELECT $1::int AS a, $2 AS b, 9007199254740993::int8 AS big, NULL::text AS n",
                           "params": ["41", "x"]}, neon_headers(pg_database))
    assert response.status == 200
    assert dict(response.headers)["content-type"] == "application/json"
    body = answer(response)
    assert body["rows"] == [["41", "x", "9007199254740993", None]]
    assert [(f["name"], f["dataTypeID"], f["dataTypeSize"], f["format"]) for f in body["fields"]] == [
        ("a", 23, 4, "text"), ("b", 25, -1, "text"), ("big", 20, 8, "text"), ("n", 25, -1, "text")]
    assert body["command"] == "SELECT" and body["rowCount"] == 1 and body["rowAsArray"] is True


def test_values_are_postgresql_text_output(core: SQLHTTPCore, pg_database: Database) -> None:
    sql = ("SELECT interval '1 month' AS i, 'infinity'::timestamptz AS inf, 'NaN'::numeric AS nan, "
           "'{1,NULL,3}'::int[] AS arr, '\\x01ff'::bytea AS b, '{\"a\": 1.000}'::jsonb AS j, true AS t, "
           "'[1,5)'::int4range AS r, '0.1'::float4 AS f, '10.0.0.1/8'::inet AS ip")
    body = answer(send(core, {"query": sql, "params": []}, neon_headers(pg_database)))
    assert body["rows"] == [["1 mon", "infinity", "NaN", "{1,NULL,3}", "\\x01ff", '{"a": 1.000}', "t", "[1,5)",
                             "0.1", "10.0.0.1/8"]]
    assert [f["dataTypeID"] for f in body["fields"]] == [1186, 1184, 1700, 1007, 17, 3802, 16, 3904, 700, 869]


def test_columns_name_their_table(core: SQLHTTPCore, pg_database: Database) -> None:
    pg_database.run("CREATE TABLE IF NOT EXISTS neon_described (id serial PRIMARY KEY, price numeric(10, 2))")
    body = answer(send(core, {"query": "SELECT id, price FROM neon_described", "params": []},
                       neon_headers(pg_database)))
    [table_oid] = pg_database.run("SELECT 'neon_described'::regclass::oid")[0]
    assert [(f["tableID"], f["columnID"]) for f in body["fields"]] == [(table_oid, 1), (table_oid, 2)]
    assert body["fields"][1]["dataTypeModifier"] == (10 << 16 | 2) + 4  # numeric(10, 2) as PostgreSQL encodes it
    assert body["rows"] == [] and body["rowCount"] == 0


def test_dml_and_ddl_answer_their_command_tags(core: SQLHTTPCore, pg_database: Database) -> None:
    headers = neon_headers(pg_database)
    created = answer(send(core, {"query": "CREATE TEMP TABLE neon_tmp (x int)"}, headers))
    assert (created["command"], created["rowCount"], created["fields"], created["rows"]) == ("CREATE", None, [], [])
    pg_database.run("CREATE TABLE IF NOT EXISTS neon_dml (x int)")
    inserted = answer(send(core, {"query": "INSERT INTO neon_dml VALUES ($1), ($2)", "params": ["1", "2"]}, headers))
    assert (inserted["command"], inserted["rowCount"], inserted["rows"]) == ("INSERT", 2, [])
    returned = answer(send(core, {"query": "INSERT INTO neon_dml VALUES (3) RETURNING x"}, headers))
    assert (returned["command"], returned["rowCount"], returned["rows"]) == ("INSERT", 1, [["3"]])
    updated = answer(send(core, {"query": "WITH u AS (UPDATE neon_dml SET x = x + 10 RETURNING x) SELECT * FROM u"},
                          headers))
    assert (updated["command"], updated["rowCount"]) == ("SELECT", 3)
    deleted = answer(send(core, {"query": "DELETE FROM neon_dml"}, headers))
    assert (deleted["command"], deleted["rowCount"]) == ("DELETE", 3)


def test_array_mode_off_answers_objects(core: SQLHTTPCore, pg_database: Database) -> None:
    body = answer(send(core, {"query": "SELECT 1 AS a, 'x' AS b"}, neon_headers(pg_database, **{
        "neon-array-mode": "false"})))
    assert body["rows"] == [{"a": "1", "b": "x"}] and body["rowAsArray"] is False


def test_parameters_take_json_values_as_postgresql_text(core: SQLHTTPCore, pg_database: Database) -> None:
    body = answer(send(core, {"query": "SELECT $1::int + 1, $2::bool, $3::text[], $4::jsonb, $5::numeric",
                              "params": [41, True, ["a", 'b"c', None], {"k": [1]}, 1.5]}, neon_headers(pg_database)))
    assert body["rows"] == [["42", "t", '{a,"b\\"c",NULL}', '{"k": [1]}', "1.5"]]


# -- batches ------------------------------------------------------------------------------------------------------


def test_a_batch_runs_in_one_transaction_with_its_options(core: SQLHTTPCore, pg_database: Database) -> None:
    headers = neon_headers(pg_database, **{"neon-batch-isolation-level": "Serializable",
                                           "neon-batch-read-only": "true", "neon-batch-deferrable": "true"})
    response = send(core, {"queries": [
        {"query": "SELECT current_setting('transaction_isolation')", "params": []},
        {"query": "SELECT current_setting('transaction_read_only'), current_setting('transaction_deferrable')"},
        {"query": "SELECT $1::int AS n", "params": ["7"]},
    ]}, headers)
    assert response.status == 200
    results = answer(response)["results"]
    assert [r["rows"] for r in results] == [[["serializable"]], [["on", "on"]], [["7"]]]
    echoed = dict(response.headers)
    assert echoed["neon-batch-isolation-level"] == "Serializable" and echoed["neon-batch-read-only"] == "true"


def test_a_failing_statement_rolls_the_batch_back(core: SQLHTTPCore, pg_database: Database) -> None:
    pg_database.run("CREATE TABLE IF NOT EXISTS neon_atomic (x int PRIMARY KEY)")
    pg_database.run("DELETE FROM neon_atomic")
    response = send(core, {"queries": [
        {"query": "INSERT INTO neon_atomic VALUES (1)", "params": []},
        {"query": "INSERT INTO neon_atomic VALUES (2)", "params": []},
        {"query": "INSERT INTO neon_atomic VALUES (1)", "params": []},
    ]}, neon_headers(pg_database))
    body = assert_neon_error(response, 400, "23505", "duplicate key")
    assert body["constraint"] == "neon_atomic_pkey" and body["table"] == "neon_atomic"
    assert pg_database.run("SELECT count(*) FROM neon_atomic") == [(0,)]
    ok = send(core, {"queries": [{"query": "INSERT INTO neon_atomic VALUES (1)"},
                                 {"query": "INSERT INTO neon_atomic VALUES (2) RETURNING x"}]},
              neon_headers(pg_database))
    assert [r["rowCount"] for r in answer(ok)["results"]] == [1, 1]
    assert pg_database.run("SELECT x FROM neon_atomic ORDER BY x") == [(1,), (2,)]


def test_a_batch_may_not_end_its_own_transaction(core: SQLHTTPCore, pg_database: Database) -> None:
    for control in ("COMMIT", "rollback", "BEGIN", "END", "start transaction"):
        response = send(core, {"queries": [{"query": "SELECT 1"}, {"query": control}]}, neon_headers(pg_database))
        assert_neon_error(response, 400, "", "statement 1", "one transaction")


def test_batch_headers_are_checked(core: SQLHTTPCore, pg_database: Database) -> None:
    response = send(core, {"queries": [{"query": "SELECT 1"}]},
                    neon_headers(pg_database, **{"neon-batch-isolation-level": "Snapshot"}))
    assert_neon_error(response, 400, "", "Neon-Batch-Isolation-Level")
    response = send(core, {"queries": [{"query": "SELECT 1"}]},
                    neon_headers(pg_database, **{"neon-batch-read-only": "yes"}))
    assert_neon_error(response, 400, "", "neon-batch-read-only")


# -- what is refused ----------------------------------------------------------------------------------------------


def test_sql_errors_carry_the_sqlstate_and_the_server_fields(core: SQLHTTPCore, pg_database: Database) -> None:
    body = assert_neon_error(send(core, {"query": "SELECT * FROM boom"}, neon_headers(pg_database)), 400, "42P01",
                             'relation "boom" does not exist')
    assert body["position"] == "15" and body["severity"] == "ERROR" and body["routine"]
    assert_neon_error(send(core, {"query": "SELECT 1; SELECT 2"}, neon_headers(pg_database)), 400, "42601",
                      "one statement")
    assert_neon_error(send(core, {"query": "SELECT $1::int", "params": []}, neon_headers(pg_database)), 400,
                      "08P01")


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", ["not valid JSON"]),
    ([1, 2], ["JSON object"]),
    ({"params": []}, ["'query'"]),
    ({"query": ""}, ["'query'"]),
    ({"query": "SELECT 1", "params": "1"}, ["'params'"]),
    ({"query": "SELECT $1", "params": ["a\x00b"]}, ["NUL"]),
    ({"query": "SELECT 1\x00"}, ["NUL"]),
    ({"queries": {"query": "SELECT 1"}}, ["'queries'"]),
    ({"queries": ["SELECT 1"]}, ["queries[0]"]),
    ({"queries": [{"query": "SELECT 1", "arrayMode": "yes"}]}, ["arrayMode"]),
])
def test_bad_bodies_answer_400_in_neon_shape(core: SQLHTTPCore, pg_database: Database, body: Any,
                                             words: list[str]) -> None:
    code = "22021" if body == {"query": "SELECT $1", "params": ["a\x00b"]} else ""  # PostgreSQL's code for it
    assert_neon_error(send(core, body, neon_headers(pg_database)), 400, code, *words)


@pytest.mark.parametrize(("string", "words"), [
    ("mysql://u:p@pg/db", ["postgresql://"]),
    ("postgresql://pg/db", ["no user"]),
    ("postgresql://u:p@pg/", ["a database"]),
    ("postgresql://u:p@nowhere/db", ["no target named 'nowhere'"]),
])
def test_bad_connection_strings_are_refused(core: SQLHTTPCore, pg_database: Database, string: str,
                                            words: list[str]) -> None:
    headers = {**neon_headers(pg_database), "neon-connection-string": string}
    body = assert_neon_error(send(core, {"query": "SELECT 1"}, headers), 400, "", *words)
    assert "p@" not in body["message"]  # the password is never echoed


def test_a_wrong_password_answers_28P01_and_is_braked(make_core: Callable[..., SQLHTTPCore],
                                                      pg_database: Database) -> None:
    core = make_core(targets=targets_for(pg_database), login_attempts=2)
    headers = {**neon_headers(pg_database), "neon-connection-string": connection_string(pg_database, password="no")}
    for _ in range(2):
        body = assert_neon_error(send(core, {"query": "SELECT 1"}, headers), 400, "28P01", "authentication failed")
        assert pg_database.password not in body["message"]
    throttled = send(core, {"query": "SELECT 1"}, headers)
    assert throttled.status == 429 and int(dict(throttled.headers)["retry-after"]) >= 1
    assert answer(throttled)["message"].startswith("too many failed logins")


def test_other_databases_are_not_neons(make_core: Callable[..., SQLHTTPCore], pg_database: Database,
                                       sqlite_database: Database) -> None:
    core = make_core(targets=targets_for(pg_database, sqlite_database))
    headers = {**neon_headers(pg_database), "neon-connection-string": connection_string(pg_database, target="lite")}
    assert_neon_error(send(core, {"query": "SELECT 1"}, headers), 400, "", "not PostgreSQL")


def test_a_target_with_a_fixed_database_serves_only_it(make_core: Callable[..., SQLHTTPCore],
                                                       pg_database: Database) -> None:
    core = make_core(targets={"pg": f"postgresql://127.0.0.1:5432/{pg_database.database}"})
    other = {**neon_headers(pg_database), "neon-connection-string": connection_string(pg_database, database="x")}
    assert_neon_error(send(core, {"query": "SELECT 1"}, other), 400, "42501", "serves only the database")
    assert answer(send(core, {"query": "SELECT 1"}, neon_headers(pg_database)))["rows"] == [["1"]]


def test_server_held_logins_are_checked_by_us(make_core: Callable[..., SQLHTTPCore], pg_database: Database) -> None:
    url = f"postgresql://{pg_database.username}:{quote(pg_database.password, safe='')}@127.0.0.1:5432/"
    core = make_core(targets={"pg": Target(url + pg_database.database, users={"edge": "edge-secret"},
                                           api_keys={"worker": "k-123"})})
    database = pg_database.database
    ok = {**neon_headers(pg_database), "neon-connection-string": f"postgresql://edge:edge-secret@pg/{database}"}
    assert answer(send(core, {"query": "SELECT current_user"}, ok))["rows"] == [[pg_database.username]]
    wrong = {**ok, "neon-connection-string": f"postgresql://edge:guess@pg/{database}"}
    assert_neon_error(send(core, {"query": "SELECT 1"}, wrong), 400, "28P01")
    keyed = {**wrong, "authorization": "Bearer k-123"}
    assert answer(send(core, {"query": "SELECT 1"}, keyed))["rows"] == [["1"]]


def test_read_only_targets_stay_read_only_in_batches(make_core: Callable[..., SQLHTTPCore],
                                                     pg_database: Database) -> None:
    pg_database.run("CREATE TABLE IF NOT EXISTS neon_ro (x int)")
    core = make_core(targets={"pg": Target("postgresql://127.0.0.1:5432", read_only=True)})
    assert_neon_error(send(core, {"query": "INSERT INTO neon_ro VALUES (1)"}, neon_headers(pg_database)), 400,
                      "25006", "read-only")
    writable = neon_headers(pg_database, **{"neon-batch-read-only": "false"})
    for queries in (
        [{"query": "INSERT INTO neon_ro VALUES (1)"}],
        [{"query": "SET TRANSACTION READ WRITE"}, {"query": "INSERT INTO neon_ro VALUES (1)"}],
        [{"query": "SET transaction_read_only = off"}, {"query": "INSERT INTO neon_ro VALUES (1)"}],
    ):
        response = send(core, {"queries": queries}, writable)
        assert response.status == 400 and answer(response)["code"] in ("25006", "25001"), answer(response)
    assert pg_database.run("SELECT count(*) FROM neon_ro") == [(0,)]
    reads = send(core, {"queries": [{"query": "SELECT count(*) FROM neon_ro"}]}, writable)
    assert answer(reads)["results"][0]["rows"] == [["0"]]


def test_the_statement_timeout_covers_a_whole_batch(make_core: Callable[..., SQLHTTPCore],
                                                    pg_database: Database) -> None:
    core = make_core(targets={"pg": Target("postgresql://127.0.0.1:5432", statement_timeout=0.6)})
    single = send(core, {"query": "SELECT pg_sleep(3)"}, neon_headers(pg_database))
    assert_neon_error(single, 400, "57014", "timeout of 0.6 s")
    batch = send(core, {"queries": [{"query": "SELECT pg_sleep(0.4)"}] * 3}, neon_headers(pg_database))
    assert_neon_error(batch, 400, "57014")
    assert answer(send(core, {"query": "SELECT 1"}, neon_headers(pg_database)))["rows"] == [["1"]]


def test_caps_answer_507(make_core: Callable[..., SQLHTTPCore], pg_database: Database) -> None:
    core = make_core(targets=targets_for(pg_database), max_rows=5)
    response = send(core, {"query": "SELECT generate_series(1, 10)"}, neon_headers(pg_database))
    assert response.status == 507 and "5 rows" in answer(response)["message"]
    batch = send(core, {"queries": [{"query": "SELECT generate_series(1, 3)"}] * 2}, neon_headers(pg_database))
    assert batch.status == 507  # the caps are the whole answer's
    assert answer(send(core, {"query": "SELECT generate_series(1, 5)"}, neon_headers(pg_database)))["rowCount"] == 5


def test_the_rate_limit_counts_neon_requests(make_core: Callable[..., SQLHTTPCore], pg_database: Database) -> None:
    core = make_core(targets=targets_for(pg_database), rate_limit=2)
    statuses = [send(core, {"query": "SELECT 1"}, neon_headers(pg_database)).status for _ in range(3)]
    assert statuses == [200, 200, 429]


# -- through every mount ------------------------------------------------------------------------------------------


@pytest.fixture
def neon_client(make_client: Callable[..., Client], pg_database: Database) -> Client:
    return make_client(targets=targets_for(pg_database), cors_origins=["https://app.example"])


def test_every_mount_serves_neon_text_plain_bodies(neon_client: Client, pg_database: Database) -> None:
    reply = neon_client.post({"query": "SELECT $1::int AS a", "params": ["5"]}, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Neon-Connection-String": connection_string(pg_database),
        "Neon-Raw-Text-Output": "true", "Neon-Array-Mode": "true"})
    assert reply.status == 200 and reply.json()["rows"] == [["5"]]
    batch = neon_client.post({"queries": [{"query": "SELECT 1"}]}, headers={
        "Content-Type": "text/plain;charset=UTF-8", "Neon-Connection-String": connection_string(pg_database),
        "Neon-Batch-Isolation-Level": "RepeatableRead"})
    assert batch.status == 200 and batch.headers["neon-batch-isolation-level"] == "RepeatableRead"


def test_text_plain_without_the_neon_header_is_refused(neon_client: Client, pg_database: Database) -> None:
    # A cross-site form may send text/plain without a preflight; without Neon's header it must not reach a database.
    reply = neon_client.post(pg_database.body("SELECT 1"), headers={"Content-Type": "text/plain"})
    assert reply.status == 415 and reply.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_cors_allows_the_neon_headers(neon_client: Client) -> None:
    reply = neon_client.request("OPTIONS", "/sql", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "neon-connection-string, neon-array-mode, neon-raw-text-output, "
                                          "neon-batch-isolation-level, neon-batch-read-only, neon-batch-deferrable"})
    assert reply.status == 204
    allowed = {name.strip() for name in reply.headers["access-control-allow-headers"].split(",")}
    assert {"neon-connection-string", "neon-batch-deferrable", "authorization"} <= allowed


def test_a_mount_answers_neon_errors_in_neon_shape(neon_client: Client, pg_database: Database) -> None:
    reply = neon_client.post({"query": "SELECT * FROM boom"}, headers={
        "Content-Type": "text/plain", "Neon-Connection-String": connection_string(pg_database),
        "Origin": "https://app.example"})
    assert reply.status == 400 and set(reply.json()) == NEON_FIELDS and reply.json()["code"] == "42P01"
    assert reply.headers["access-control-allow-origin"] == "https://app.example"


def test_a_read_only_batch_on_a_writable_target_says_so(core: SQLHTTPCore, pg_database: Database) -> None:
    response = send(core, {"queries": [{"query": "CREATE TEMP TABLE neon_ro_batch (x int)"}]},
                    neon_headers(pg_database, **{"neon-batch-read-only": "true"}))
    body = assert_neon_error(response, 400, "25006", "the batch is read-only")
    assert "target" not in body["message"]
