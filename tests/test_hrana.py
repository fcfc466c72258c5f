"""libSQL's Hrana over HTTP on every mount (WSGI, ASGI, Django sync and async): the paths and probes, every
request type, values both ways, batch conditions, stored SQL, errors in the protocol's own shape, and every
protection (read-only targets, the authorizer, statement timeouts per statement, caps, the rate limit, the login
brake). The real client and multi-worker servers are in test_libsql_client.py."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sqlhttp_middleware.options import Target

from .support import Client
from .support.hrana import CLOSE, TOKEN, execute, pipeline, results, rows, stmt, value

MakeClient = Callable[..., Client]


def lite(path: Path, **extra: Any) -> Target:
    return Target(f"sqlite:///{path}", api_keys={"edge": TOKEN, "other": "other-token"}, **extra)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "hrana.db"
    with sqlite3.connect(path) as connection:
        connection.executescript("""
            CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT UNIQUE, f REAL, b BLOB);
            INSERT INTO t (note, f, b) VALUES ('one', 1.5, x'00ff'), ('two', -0.0, NULL);
        """)
    return path


@pytest.fixture
def client(make_client: MakeClient, database: Path) -> Client:
    return make_client(targets={"lite": lite(database)})


def one(client: Client, *requests: dict[str, Any], version: str = "v2") -> list[dict[str, Any]]:
    answered = results(pipeline(client, [*requests, CLOSE], version=version))
    assert len(answered) == len(requests) + 1 and answered[-1] == {"type": "ok", "response": {"type": "close"}}
    return answered[:-1]


# -- paths and probes ---------------------------------------------------------------------------------------------

def test_version_probes_and_refused_encodings(client: Client) -> None:
    for version in ("v2", "v3"):
        reply = client.request("GET", f"/sql/lite/{version}")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    for path in ("/sql/lite/v3-protobuf", "/sql/lite/v3-protobuf/pipeline"):
        reply = client.request("GET" if path.endswith("protobuf") else "POST", path, b"x",
                               {"Content-Type": "application/x-protobuf"})
        assert reply.status == 404 and reply.headers["content-type"] == "application/json"
        assert "protobuf" in reply.json()["message"]
    cursor = client.post({"baton": None, "batch": {"steps": []}}, path="/sql/lite/v2/cursor",
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert cursor.status == 404 and "v3/cursor" in cursor.json()["message"]
    reply = client.request("GET", "/sql/lite/v2/pipeline")
    assert reply.status == 405 and reply.json()["code"] == "METHOD_NOT_ALLOWED"


def test_a_url_without_the_target_and_its_slash_is_told_so(client: Client) -> None:
    reply = client.post({"baton": None, "requests": []}, path="/sql/v2/pipeline")
    assert reply.status == 404
    assert "/sql/TARGET/" in reply.json()["message"]


def test_other_paths_under_the_mount_reach_the_host_app(client: Client) -> None:
    for path in ("/sql/lite/other", "/sql/lite/v2/other", "/sqlx/lite/v2/pipeline"):
        reply = client.request("GET", path)
        assert reply.status == 200 and reply.body.startswith(b"host app"), path


def test_unknown_and_non_sqlite_targets(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database), "pg": "postgresql://127.0.0.1:5432"})
    missing = pipeline(client, [execute("SELECT 1"), CLOSE], target="nope")
    assert missing.status == 404 and missing.json()["code"] == "TARGET_NOT_FOUND"
    pg = pipeline(client, [execute("SELECT 1"), CLOSE], target="pg")
    assert pg.status == 400 and "not SQLite" in pg.json()["message"]


def test_a_target_without_api_keys_says_what_the_client_needs(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": Target(f"sqlite:///{database}", users={"u": "p"})})
    refused = pipeline(client, [execute("SELECT 1"), CLOSE])
    assert refused.status == 401 and "api_keys" in refused.json()["message"]


def test_malformed_pipelines_are_refused_whole(client: Client) -> None:
    for body, words in ((b"{", "not valid JSON"), (b"[]", "JSON object"), (b'{"requests": 1}', "'requests'"),
                        (b'{"baton": 5, "requests": []}', "'baton'"),
                        (b'{"requests": [{"type": "explode"}]}', "unknown request type")):
        reply = client.post(body, path="/sql/lite/v2/pipeline", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status == 400 and reply.headers["content-type"] == "application/json", body
        assert words in reply.json()["message"], reply.json()


# -- values -------------------------------------------------------------------------------------------------------

def test_values_both_ways(client: Client) -> None:
    (result,) = one(client, {"type": "execute", "stmt": {
        "sql": "SELECT ?, ?, ?, ?, ?, ?, 9223372036854775807, -9223372036854775808, 1e999, -1e999, "
               "CAST(x'ff00' AS TEXT)",
        "args": [value(42), value(1.25), value("héllo\x00!"), value(b"\x00\x01\xff"), value(None),
                 {"type": "float", "value": 3}]}})
    encoded = result["response"]["result"]["rows"][0]
    assert encoded[0] == {"type": "integer", "value": "42"}
    assert encoded[1] == {"type": "float", "value": 1.25}
    assert encoded[2] == {"type": "text", "value": "héllo\x00!"}
    assert encoded[3] == {"type": "blob", "base64": "AAH/"}
    assert encoded[4] == {"type": "null"}
    assert encoded[5] == {"type": "float", "value": 3.0}  # every JS number is a float, and stays one
    assert encoded[6] == {"type": "integer", "value": "9223372036854775807"}
    assert encoded[7] == {"type": "integer", "value": "-9223372036854775808"}
    assert encoded[8]["value"] == math.inf and encoded[9]["value"] == -math.inf  # written 1e999: JSON has no inf
    assert encoded[10] == {"type": "blob", "base64": "/wA"}  # TEXT that is not UTF-8: its bytes


def test_infinities_are_written_as_numbers_json_reads_back(client: Client) -> None:
    reply = pipeline(client, [execute("SELECT 1e999"), CLOSE])
    assert b'{"type":"float","value":1e999}' in reply.body


def test_bad_arguments_fail_their_request_only(client: Client) -> None:
    bad = [{"type": "integer", "value": "1.5"}, {"type": "integer", "value": str(2**63)},
           {"type": "integer", "value": 7}, {"type": "blob", "base64": "!!"}, {"type": "date", "value": 1},
           {"type": "float", "value": "1"}, {"type": "text", "value": 1}, "plain"]
    requests = [{"type": "execute", "stmt": {"sql": "SELECT ?", "args": [arg]}} for arg in bad]
    answered = one(client, *requests, execute("SELECT 'after'"))
    for arg, result in zip(bad, answered, strict=False):
        if arg == {"type": "integer", "value": 7}:  # a JSON integer where a string is due: read exactly
            assert rows(result) == [[7]]
            continue
        assert result["type"] == "error" and result["error"]["code"] == "ARGS_INVALID", (arg, result)
    assert rows(answered[-1]) == [["after"]]


def test_named_arguments_with_each_prefix(client: Client) -> None:
    (result, guessed, mixed, missing, wrong) = one(
        client,
        execute("SELECT :a, @b, $c", **{":a": 1, "@b": "two", "$c": None}),
        execute("SELECT :a, @b", a=1, b=2),
        {"type": "execute", "stmt": {**stmt("SELECT ?, :a", 1), "named_args": [{"name": "a", "value": value(2)}]}},
        execute("SELECT :a, :b", a=1),
        execute("SELECT ?, ?", 1),
    )
    assert rows(result) == [[1, "two", None]]
    assert rows(guessed) == [[1, 2]]
    for failed in (mixed, missing, wrong):
        assert failed["type"] == "error" and failed["error"]["code"] == "ARGS_INVALID", failed


def test_want_rows_false_keeps_the_columns(client: Client) -> None:
    (result,) = one(client, {"type": "execute", "stmt": {"sql": "SELECT id, note FROM t", "want_rows": False}})
    answer = result["response"]["result"]
    assert answer["rows"] == [] and [c["name"] for c in answer["cols"]] == ["id", "note"]


def test_write_results(client: Client) -> None:
    insert, update, select = one(client, execute("INSERT INTO t (note) VALUES (?)", "three"),
                                 execute("UPDATE t SET f = 2 WHERE id < 3"), execute("SELECT count(*) FROM t"))
    assert insert["response"]["result"]["affected_row_count"] == 1
    assert insert["response"]["result"]["last_insert_rowid"] == "3"
    assert update["response"]["result"]["affected_row_count"] == 2
    assert rows(select) == [[3]]


# -- errors inside the answer -------------------------------------------------------------------------------------

def test_sql_errors_carry_sqlite_codes_and_the_rest_runs(client: Client) -> None:
    unique, syntax, missing, many, after = one(
        client, execute("INSERT INTO t (note) VALUES ('one')"), execute("SELEC 1"), execute("SELECT * FROM nope"),
        execute("SELECT 1; SELECT 2"), execute("SELECT 'still'"))
    assert unique["error"]["code"] == "SQLITE_CONSTRAINT_UNIQUE"
    assert unique["error"]["message"] == "SQLite error: UNIQUE constraint failed: t.note"
    assert syntax["error"]["code"] == "SQLITE_ERROR" and "syntax error" in syntax["error"]["message"]
    assert missing["error"]["message"] == "SQLite error: no such table: nope"
    assert many["error"]["code"] == "SQL_MANY_STATEMENTS"
    assert rows(after) == [["still"]]


def test_too_long_and_hostile_sql_is_refused_per_request(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database)}, max_sql_bytes=100)
    long, ok = one(client, execute("SELECT '" + "x" * 200 + "'"), execute("SELECT 1"))
    assert long["type"] == "error" and "longer than" in long["error"]["message"]
    assert rows(ok) == [[1]]


# -- batches ------------------------------------------------------------------------------------------------------

def test_batch_conditions(client: Client) -> None:
    steps = [
        {"stmt": stmt("SELECT 1")},                                                      # 0 ok
        {"stmt": stmt("SELEC")},                                                         # 1 error
        {"condition": {"type": "ok", "step": 0}, "stmt": stmt("SELECT 'ok0'")},         # 2 runs
        {"condition": {"type": "ok", "step": 1}, "stmt": stmt("SELECT 'ok1'")},         # 3 skipped
        {"condition": {"type": "error", "step": 1}, "stmt": stmt("SELECT 'err1'")},     # 4 runs
        {"condition": {"type": "not", "cond": {"type": "ok", "step": 3}}, "stmt": stmt("SELECT 'not'")},  # 5 runs
        {"condition": {"type": "and", "conds": [{"type": "ok", "step": 0}, {"type": "error", "step": 1}]},
         "stmt": stmt("SELECT 'and'")},                                                   # 6 runs
        {"condition": {"type": "or", "conds": [{"type": "ok", "step": 1}, {"type": "ok", "step": 3}]},
         "stmt": stmt("SELECT 'or'")},                                                    # 7 skipped
        {"condition": {"type": "and", "conds": []}, "stmt": stmt("SELECT 'empty and'")},  # 8 runs
        {"condition": {"type": "is_autocommit"}, "stmt": stmt("SELECT 'autocommit'")},   # 9 runs
    ]
    (result,) = one(client, {"type": "batch", "batch": {"steps": steps}}, version="v3")
    batch = result["response"]["result"]
    ran = [None if r is None else r["rows"][0][0]["value"] for r in batch["step_results"]]
    assert ran == [1 and "1", None, "ok0", None, "err1", "not", "and", None, "empty and", "autocommit"]
    assert [e is not None for e in batch["step_errors"]] == [False, True] + [False] * 8
    assert batch["step_errors"][1]["code"] == "SQLITE_ERROR"


def test_a_client_batch_rolls_back_on_a_failing_step(client: Client) -> None:
    # What @libsql/client sends for batch([...], "write").
    steps = [
        {"stmt": {**stmt("BEGIN IMMEDIATE"), "want_rows": False}},
        {"condition": {"type": "ok", "step": 0}, "stmt": stmt("INSERT INTO t (note) VALUES ('new')")},
        {"condition": {"type": "ok", "step": 1}, "stmt": stmt("INSERT INTO t (note) VALUES ('one')")},
        {"condition": {"type": "ok", "step": 2}, "stmt": {**stmt("COMMIT"), "want_rows": False}},
        {"condition": {"type": "not", "cond": {"type": "ok", "step": 3}}, "stmt": {**stmt("ROLLBACK"),
                                                                                    "want_rows": False}},
    ]
    (result, count) = one(client, {"type": "batch", "batch": {"steps": steps}}, execute("SELECT count(*) FROM t"))
    batch = result["response"]["result"]
    assert batch["step_errors"][2]["code"] == "SQLITE_CONSTRAINT_UNIQUE"
    assert batch["step_results"][3] is None and batch["step_results"][4] is not None
    assert rows(count) == [[2]]


def test_a_bad_condition_fails_the_batch_request(client: Client) -> None:
    (result,) = one(client, {"type": "batch", "batch": {"steps": [
        {"condition": {"type": "ok", "step": 5}, "stmt": stmt("SELECT 1")}]}})
    assert result["type"] == "error" and "earlier step" in result["error"]["message"]


# -- sequence, describe, stored SQL, autocommit -------------------------------------------------------------------

def test_sequence_runs_statements_and_stops_at_the_first_error(client: Client) -> None:
    script = ("CREATE TABLE s (x TEXT); INSERT INTO s VALUES ('a;b'); -- a comment; with a semicolon\n"
              "CREATE TRIGGER tr AFTER INSERT ON s BEGIN INSERT INTO s SELECT 'trig' WHERE new.x = 'c'; END;"
              "INSERT INTO s VALUES ('c')")
    broken = "INSERT INTO s VALUES ('d'); SELEC; INSERT INTO s VALUES ('e')"
    ok, failing, check = one(client, {"type": "sequence", "sql": script}, {"type": "sequence", "sql": broken},
                             execute("SELECT x FROM s ORDER BY x"))
    assert ok == {"type": "ok", "response": {"type": "sequence"}}
    assert failing["type"] == "error" and failing["error"]["code"] == "SQLITE_ERROR"
    assert rows(check) == [["a;b"], ["c"], ["d"], ["trig"]]


def test_describe(client: Client) -> None:
    select, insert, explain = one(
        client, {"type": "describe", "sql": "SELECT id, note AS n FROM t WHERE id > ? AND note = :name OR f = ?3"},
        {"type": "describe", "sql": "INSERT INTO t (note) VALUES (@note)"},
        {"type": "describe", "sql": "EXPLAIN SELECT 1"})
    described = select["response"]["result"]
    assert described["params"] == [{"name": None}, {"name": ":name"}, {"name": "?3"}]
    assert [c["name"] for c in described["cols"]] == ["id", "n"]
    assert described["is_readonly"] and not described["is_explain"]
    assert not insert["response"]["result"]["is_readonly"]
    assert insert["response"]["result"]["params"] == [{"name": "@note"}]
    assert explain["response"]["result"]["is_explain"]


def test_stored_sql(client: Client) -> None:
    answered = one(client, {"type": "store_sql", "sql_id": 1, "sql": "SELECT ? + 1"},
                   {"type": "execute", "stmt": {"sql_id": 1, "args": [value(41)]}},
                   {"type": "store_sql", "sql_id": 1, "sql": "SELECT 2"},
                   {"type": "batch", "batch": {"steps": [{"stmt": {"sql_id": 1, "args": [value(1)]}}]}},
                   {"type": "close_sql", "sql_id": 1},
                   {"type": "execute", "stmt": {"sql_id": 1}},
                   {"type": "execute", "stmt": {"sql": "SELECT 1", "sql_id": 1}})
    assert answered[0] == {"type": "ok", "response": {"type": "store_sql"}}
    assert rows(answered[1]) == [[42]]
    assert answered[2]["type"] == "error" and "already stored" in answered[2]["error"]["message"]
    assert answered[3]["response"]["result"]["step_results"][0]["rows"] == [[{"type": "integer", "value": "2"}]]
    assert answered[4] == {"type": "ok", "response": {"type": "close_sql"}}
    assert answered[5]["type"] == "error" and "no SQL text with id 1" in answered[5]["error"]["message"]
    assert answered[6]["type"] == "error" and "exactly one" in answered[6]["error"]["message"]


def test_get_autocommit_is_hrana_3(client: Client) -> None:
    v2 = pipeline(client, [{"type": "get_autocommit"}, CLOSE])
    assert v2.status == 400 and "Hrana 3" in v2.json()["message"]
    before, _, inside, _, after = one(client, {"type": "get_autocommit"}, execute("BEGIN"),
                                      {"type": "get_autocommit"}, execute("COMMIT"), {"type": "get_autocommit"},
                                      version="v3")
    assert [r["response"]["is_autocommit"] for r in (before, inside, after)] == [True, False, True]


def test_nothing_runs_after_close(client: Client) -> None:
    answered = results(pipeline(client, [CLOSE, execute("SELECT 1")]))
    assert answered[0]["type"] == "ok" and answered[1]["type"] == "error"
    assert pipeline(client, [CLOSE]).json()["baton"] is None


def test_an_open_transaction_never_outlives_a_closed_stream(client: Client, database: Path) -> None:
    one(client, execute("BEGIN IMMEDIATE"), execute("INSERT INTO t (note) VALUES ('left open')"))
    with sqlite3.connect(database, timeout=0.5) as connection:  # the write lock is free again
        connection.execute("BEGIN IMMEDIATE")
        assert connection.execute("SELECT count(*) FROM t WHERE note = 'left open'").fetchone() == (0,)


# -- protections --------------------------------------------------------------------------------------------------

def test_a_read_only_target_may_read_in_a_transaction_never_write(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database, read_only=True)})
    begin, read, write, commit = one(client, execute("BEGIN IMMEDIATE"), execute("SELECT count(*) FROM t"),
                                     execute("INSERT INTO t (note) VALUES ('no')"), execute("COMMIT"))
    assert begin["type"] == "ok" and rows(read) == [[2]] and commit["type"] == "ok"
    assert write["error"]["code"] == "SQLITE_READONLY"
    pragma, = one(client, execute("PRAGMA query_only = 0"))
    assert pragma["error"]["code"] == "SQLITE_AUTH"


def test_libsql_read_only_transactions(client: Client) -> None:
    begin, read, write, commit, later = one(
        client, execute("BEGIN TRANSACTION READONLY"), execute("SELECT count(*) FROM t"),
        execute("INSERT INTO t (note) VALUES ('in read')"), execute("COMMIT"),
        execute("INSERT INTO t (note) VALUES ('after')"))
    assert begin["type"] == "ok" and rows(read) == [[2]] and commit["type"] == "ok"
    assert write["error"]["code"] == "SQLITE_READONLY"
    assert later["type"] == "ok"  # the transaction's read-only mode ended with it


def test_attach_is_refused(client: Client, tmp_path: Path) -> None:
    (attach,) = one(client, execute(f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS other"))
    assert attach["error"]["code"] == "SQLITE_AUTH"
    assert not (tmp_path / "other.db").exists()


def test_each_statement_has_its_own_timeout(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database, statement_timeout=0.3)})
    slow = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
            "SELECT count(*) FROM c")
    timed_out, after = one(client, execute(slow), execute("SELECT 'next'"))
    assert timed_out["error"]["code"] == "SQLITE_INTERRUPT"
    assert "timeout of 0.3 s" in timed_out["error"]["message"]
    assert rows(after) == [["next"]]


def test_answers_are_capped(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database, max_rows=5)})
    too_many, fits = one(client, execute("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                                         "WHERE n < 10) SELECT n FROM c"), execute("SELECT 1"))
    assert too_many["error"]["code"] == "RESPONSE_TOO_LARGE" and "5 rows" in too_many["error"]["message"]
    assert rows(fits) == [[1]]


def test_rate_limit_and_login_brake(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database)}, rate_limit=3, login_attempts=1)
    assert pipeline(client, [execute("SELECT 1"), CLOSE]).status == 200
    wrong = pipeline(client, [execute("SELECT 1"), CLOSE], token="wrong")
    assert wrong.status == 401 and wrong.json()["code"] == "AUTHENTICATION_FAILED"
    braked = pipeline(client, [execute("SELECT 1"), CLOSE], token="wrong")
    assert braked.status == 429 and braked.json()["code"] == "LOGIN_THROTTLED"
    limited = pipeline(client, [execute("SELECT 1"), CLOSE])
    assert limited.status == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert limited.headers["content-type"] == "application/json"


def test_the_authorize_hook_sees_the_pipelines_sql(make_client: MakeClient, database: Path) -> None:
    seen: list[str] = []

    def authorize(context: Any) -> bool:
        seen.append(context.sql)
        return "forbidden" not in context.sql

    client = make_client(targets={"lite": lite(database)}, authorize=authorize)
    assert pipeline(client, [execute("SELECT 1"), {"type": "sequence", "sql": "SELECT 2"}, CLOSE]).status == 200
    refused = pipeline(client, [execute("SELECT 'forbidden'"), CLOSE])
    assert refused.status == 403 and refused.json()["code"] == "PERMISSION_DENIED"
    assert seen[0] == "SELECT 1;\nSELECT 2"


# -- v3/cursor ----------------------------------------------------------------------------------------------------

def cursor(client: Client, steps: list[dict[str, Any]], baton: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    reply = client.post({"baton": baton, "batch": {"steps": steps}}, path="/sql/lite/v3/cursor",
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 200, reply.body
    assert reply.body.endswith(b"\n")
    head, *entries = [json.loads(line) for line in reply.body.splitlines()]
    return head, entries


def test_a_cursor_answers_lines_of_entries(client: Client) -> None:
    head, entries = cursor(client, [
        {"stmt": stmt("SELECT id, note FROM t ORDER BY id")},
        {"stmt": stmt("SELEC")},
        {"condition": {"type": "ok", "step": 1}, "stmt": stmt("SELECT 'skipped'")},
        {"condition": {"type": "error", "step": 1}, "stmt": stmt("INSERT INTO t (note) VALUES (?)", "three")},
    ])
    assert head["base_url"] is None and isinstance(head["baton"], str)  # a cursor leaves its stream open
    assert entries == [
        {"type": "step_begin", "step": 0, "cols": [{"name": "id", "decltype": None},
                                                   {"name": "note", "decltype": None}]},
        {"type": "row", "row": [value(1), value("one")]},
        {"type": "row", "row": [value(2), value("two")]},
        {"type": "step_end", "affected_row_count": 0, "last_insert_rowid": None},
        {"type": "step_error", "step": 1, "error": {"message": 'SQLite error: near "SELEC": syntax error',
                                                     "code": "SQLITE_ERROR"}},
        {"type": "step_begin", "step": 3, "cols": []},
        {"type": "step_end", "affected_row_count": 1, "last_insert_rowid": "3"},
    ]
    # The stream goes on with the cursor's baton, and closes.
    closing = results(pipeline(client, [execute("SELECT count(*) FROM t"), CLOSE], head["baton"]))
    assert rows(closing[0]) == [[3]]


def test_a_cursor_is_capped_and_a_bad_batch_is_an_error_entry(make_client: MakeClient, database: Path) -> None:
    client = make_client(targets={"lite": lite(database, max_rows=1)})
    _, entries = cursor(client, [{"stmt": stmt("SELECT id FROM t")}])
    assert [e["type"] for e in entries] == ["step_begin", "row", "step_error"]
    assert entries[-1]["error"]["code"] == "RESPONSE_TOO_LARGE"
    _, entries = cursor(client, [{"condition": {"type": "ok", "step": 3}, "stmt": stmt("SELECT 1")}])
    assert entries == [{"type": "error", "error": {
        "message": "a condition's 'step' names an earlier step of the batch", "code": "INVALID_REQUEST"}}]
