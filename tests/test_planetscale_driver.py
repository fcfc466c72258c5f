"""The real ``@planetscale/database`` driver, from npm, through node, against real servers with four workers each:
gunicorn ``-w 4`` (WSGI) and uvicorn ``--workers 4`` (ASGI). Every request goes on a new connection, so the
requests of one ``transaction()`` land on different workers and must still reach its session's connection.

The driver posts to ``/psdb.v1alpha1.Database/Execute`` at its URL's origin: served there with
``SQLHTTP_PLANETSCALE_ROOT``, and under the mount for a driver whose ``fetch`` rewrites the path to
``/sql/psdb...`` (the only MySQL target) or ``/sql/TARGET/psdb...``; without the option the root is the host app's.

``execute`` with ``?`` and ``:name`` arguments, which the driver inlines with MySQL's escaping (quotes, backslashes,
control characters, NUL, ^Z, unicode, numbers, 64-bit integers, null, booleans, a Date, bytes), ``as: "array"``,
``rowsAffected``, ``insertId`` and the fields' Vitess types; ``transaction()`` committing and rolling back; a
savepoint; the database's errors with errno and SQLSTATE; a wrong password; two requests on one session at once;
multi-statements and ``LOAD DATA LOCAL INFILE`` refused. What the driver wrote is checked in the database too.

Targets: ``mariadb://`` on both servers (one served at the root, one through a mount rewrite), and a ``mysql://``
URL (MySQL mode: the ``mysql+pymysql`` dialect, no MariaDB-only paths) at the root of one. There is no MySQL
server on this machine, so the MySQL-mode target reaches the same MariaDB server: it checks our MySQL code path,
not MySQL's own answers (which differ in places, e.g. integer literals come back as BIGINT, INT64 to the driver)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy

from .support import ROOT, Database, node_with, serving

SCRIPT = ROOT / "tests" / "js" / "planetscale-driver.mjs"
# Everything the driver escapes in a string (' " \ NUL \b \n \r \t ^Z), text that looks like SQL, and unicode
# beyond the BMP (utf8mb4).
TRICKY = "it's \"quoted\" back\\slash \\' \\\\' new\nline\r\ttab nul\0end ctrl-z\x1a bs\b ünïcødé ✓ 🎉 ;-- # ?:x"
BYTES = [0, 1, 39, 92, 127, 128, 255]  # NUL, ', \ and the high bytes

# id: (server, target name, URL scheme, served at the root, the rewrite the scenario runs through, other rewrites)
CONFIGS = {
    "gunicorn-w4-mariadb-root": ("wsgi-gunicorn", "maria", "mariadb", True, None, ["/sql/", "/sql/maria/"]),
    "uvicorn-w4-mariadb-mount": ("asgi-uvicorn", "maria", "mariadb", False, "/sql/maria/", ["/sql/"]),
    "uvicorn-w4-mysql-root": ("asgi-uvicorn", "my", "mysql", True, None, ["/sql/my/"]),
}


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@planetscale/database")


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def run(request: pytest.FixtureRequest, node: str, maria_database: Database,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The script's outcome, with ``config`` (its CONFIGS entry) and ``stored`` (the table's rows, read directly)."""
    kind, name, scheme, root, rewrite, extra = CONFIGS[request.param]
    tmp = tmp_path_factory.mktemp("planetscale")
    local = tmp / "local.csv"
    local.write_text("one\ntwo\n")
    table = f"ps_{uuid.uuid4().hex[:8]}"
    env = {"SQLHTTP_TARGETS": f"{name}={scheme}://127.0.0.1:3306/{maria_database.database}",
           "SQLHTTP_SESSION_DIR": str(tmp / "sessions"),
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    if root:
        env["SQLHTTP_PLANETSCALE_ROOT"] = "true"
    admin = sqlalchemy.create_engine(maria_database.admin_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with serving(kind, env, ["--workers", "4"]) as url:
            payload = {"origin": url, "username": maria_database.username, "password": maria_database.password,
                       "rewrite": rewrite, "extraRewrites": extra, "rootServed": root, "table": table,
                       "localFile": str(local), "tricky": TRICKY}
            done = subprocess.run([node, str(SCRIPT)], input=json.dumps(payload).encode(), capture_output=True,
                                  cwd=ROOT, timeout=180, check=False)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        outcome: dict[str, Any] = json.loads(done.stdout)
        with admin.connect() as connection:
            rows = connection.exec_driver_sql(
                f"SELECT note, body, HEX(bin), big, small, f, price, at, day FROM {table} ORDER BY id").all()
        outcome["stored"] = {row[0]: tuple(row[1:]) for row in rows}
        outcome["config"] = dict(zip(("kind", "target", "scheme", "root", "rewrite", "extra"), CONFIGS[request.param],
                                     strict=True))
        yield outcome
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}, {table}_load")
        admin.dispose()


def ok(outcome: dict[str, Any], step: str) -> Any:
    assert "ok" in outcome[step], outcome[step]
    return outcome[step]["ok"]


def error(outcome: dict[str, Any], step: str) -> dict[str, Any]:
    assert "error" in outcome[step], outcome[step]
    failure: dict[str, Any] = outcome[step]["error"]
    return failure


def refused(outcome: dict[str, Any], step: str) -> tuple[dict[str, Any], list[int]]:
    """A step that had to fail: the DatabaseError thrown, and the HTTP statuses of its requests."""
    failure = outcome[step]["error"]
    assert "unexpected" not in failure, failure  # it answered rows or counts instead
    assert failure["name"] == "DatabaseError" and failure["isDatabaseError"], failure
    return failure, outcome[step]["http"]


def sql_error(outcome: dict[str, Any], step: str, errno: int, sqlstate: str, code: str) -> str:
    """A database error, as the driver throws it: from a 200 that carries ``error``, status 400, ``(errno N)
    (sqlstate S)`` ending the message (where Prisma reads them) and the vtrpc code in the body."""
    failure, http = refused(outcome, step)
    assert http == [200], failure
    assert failure["status"] == 400
    message: str = failure["message"]
    assert message.endswith(f" (errno {errno}) (sqlstate {sqlstate})"), message
    assert failure["body"] == {"code": code, "message": message}
    return message


def integer(value: Any, kind: str, expected: int) -> None:
    """An integer the driver cast by its Vitess type: INT64 stays a string, the narrower ones are numbers."""
    if kind in ("INT64", "UINT64"):
        assert value == str(expected), (kind, value)
    else:
        assert kind in ("INT8", "INT16", "INT24", "INT32", "UINT8", "UINT16", "UINT24", "UINT32"), kind
        assert value == expected and isinstance(value, int), (kind, value)


def test_positional_arguments_as_arrays(run: dict[str, Any]) -> None:
    result = ok(run, "positional")
    assert result["headers"] == ["s", "i", "neg", "f", "nil", "yes", "no", "d", "b", "big"]
    [row] = result["rows"]  # as: "array"
    types = result["types"]
    assert row[0] == TRICKY and types["s"] == "VARCHAR"
    integer(row[1], types["i"], 42)
    integer(row[2], types["neg"], -7)
    assert row[3] == "1.5" and types["f"] == "DECIMAL"  # a literal 1.5 is DECIMAL in MySQL: a string, exact
    assert row[4] is None and types["nil"] == "NULL"
    integer(row[5], types["yes"], 1)  # true and false are MySQL's TRUE and FALSE: 1 and 0
    integer(row[6], types["no"], 0)
    assert row[7] == "2024-01-02T03:04:05.678" and types["d"] == "VARCHAR"  # a Date: its UTC ISO text, no Z
    assert row[8] == {"bytes": BYTES} and types["b"] == "VARBINARY"  # a Uint8Array: x'...', back as bytes
    assert row[9] == "9007199254740993" and types["big"] == "INT64"  # a bigint past 2**53, exact
    assert (result["rowsAffected"], result["insertId"], result["size"]) == (0, "0", 1)


def test_named_arguments(run: dict[str, Any]) -> None:
    result = ok(run, "named")
    [row] = result["rows"]
    assert row["s"] == TRICKY and row["nil"] is None and row["literal"] == ":n"
    integer(row["n"], result["types"]["n"], 3)
    integer(row["same"], result["types"]["same"], 1)


def test_writes_count_and_return_insert_ids_as_strings(run: dict[str, Any]) -> None:
    assert ok(run, "create")["rowsAffected"] == 0
    assert [ok(run, step)["insertId"] for step in ("insertPositional", "insertNamed")] == ["1", "2"]
    assert ok(run, "insertPositional")["rowsAffected"] == 1
    many = ok(run, "insertMany")
    assert (many["rowsAffected"], many["insertId"]) == (3, "3")  # MySQL's LAST_INSERT_ID: the first row's
    assert (ok(run, "updateNone")["rowsAffected"], ok(run, "updateNone")["insertId"]) == (0, "0")
    assert ok(run, "update")["rowsAffected"] == 3
    assert ok(run, "selectArray")["rows"] == [[3, "many-1", 5], [4, "many-2", 5], [5, "many-3", 5]]


def test_rows_cast_by_their_vitess_types(run: dict[str, Any]) -> None:
    result = ok(run, "select")
    assert result["types"] == {"id": "INT32", "note": "VARCHAR", "body": "TEXT", "big": "INT64", "small": "INT8",
                               "f": "FLOAT64", "price": "DECIMAL", "at": "DATETIME", "day": "DATE",
                               "bin": "VARBINARY", "nothing": "NULL"}
    assert result["rows"] == [
        {"id": 1, "note": "positional", "body": TRICKY, "big": "9007199254740993", "small": 1, "f": 2.25,
         "price": "12.30", "at": "2024-01-02 03:04:05.678", "day": "2024-02-29", "bin": {"bytes": BYTES},
         "nothing": None},
        {"id": 2, "note": "named", "body": TRICKY, "big": "-9223372036854775808", "small": 0, "f": -0.5,
         "price": "-1.05", "at": "2024-01-02 03:04:05.678", "day": "1999-12-31", "bin": {"bytes": []},
         "nothing": None},
    ]
    assert result["sameBody"] == [True, True]
    fields = {field["name"]: field for field in result["fields"]}
    table = fields["id"]["table"]
    for name in ("id", "note", "body", "big", "bin"):
        field = fields[name]
        assert (field["table"], field["orgTable"], field["orgName"]) == (table, table, name), field
        assert field["database"].startswith("sqlhttp_test_"), field
    assert table.startswith("ps_")
    # charset 63 is binary: numbers, dates and bytes; text has its collation's number (and is decoded as UTF-8).
    assert {name: fields[name]["charset"] == 63 for name in ("id", "note", "body", "big", "bin", "at")} == {
        "id": True, "note": False, "body": False, "big": True, "bin": True, "at": True}
    assert fields["id"]["flags"] & 3 == 3  # NOT NULL, PRIMARY KEY
    assert fields["price"]["decimals"] == 2 and fields["at"]["decimals"] == 3
    assert "table" not in fields["nothing"]  # protojson leaves zero values out


def test_what_the_driver_inlined_is_what_was_stored(run: dict[str, Any]) -> None:
    stored = run["stored"]
    assert stored["positional"][:2] == (TRICKY, "0001275C7F80FF")
    assert stored["named"][:2] == (TRICKY, "")  # an empty Uint8Array: x'', not NULL
    assert stored["positional"][2] == 9007199254740993 and stored["named"][2] == -9223372036854775808
    assert str(stored["positional"][6]) == "2024-01-02 03:04:05.678000"


def test_client_and_create_session(run: dict[str, Any]) -> None:
    assert ok(run, "client")["rows"] == [{"via": "client"}]
    refreshed = ok(run, "refresh")
    assert refreshed["session"]["vitessSession"]["autocommit"] is True
    assert refreshed["after"] == [{"seven": 7}]


def test_database_errors_carry_errno_and_sqlstate(run: dict[str, Any]) -> None:
    duplicate = sql_error(run, "duplicate", 1062, "23000", "ALREADY_EXISTS")
    assert "Duplicate entry 'positional'" in duplicate
    missing = sql_error(run, "unknownTable", 1146, "42S02", "NOT_FOUND")
    assert "no_such_table_here" in missing and "doesn't exist" in missing
    syntax = sql_error(run, "syntax", 1064, "42000", "INVALID_ARGUMENT")
    assert "SELEC 1" in syntax


def test_a_wrong_password_is_refused_without_echoing_it(run: dict[str, Any]) -> None:
    failure, http = refused(run, "wrongPassword")
    assert http == [401] and failure["status"] == 401
    assert failure["body"]["code"] == "unauthenticated" and failure["body"]["message"] == failure["message"]
    assert "sqlhttp_test" in failure["message"] and run["config"]["target"] in failure["message"]
    assert "not-the-password" not in json.dumps(failure)


def test_multi_statements_and_local_infile_are_refused(run: dict[str, Any]) -> None:
    for step in ("multiStatement", "multiInsert"):
        failure, http = refused(run, step)
        # Never two results: the connection has no multi-statements, so the database reads one bad statement
        # (or we refuse it ourselves, non-2xx).
        assert ((http == [200] and failure["message"].endswith("(errno 1064) (sqlstate 42000)"))
                or (http[0] >= 400 and failure["status"] == http[0])), failure
    assert ok(run, "multiInsertAfter") == 0  # not even the first INSERT ran
    failure, http = refused(run, "loadData")  # the database's refusal (MariaDB's errno 4166; MySQL's 3948)
    assert http == [200] and failure["message"].endswith("(sqlstate HY000)"), failure
    assert "local infile" in failure["message"].lower() or "local data" in failure["message"].lower(), failure
    assert ok(run, "loadDataAfter") == 0
    assert not any(note.startswith("multi-") for note in run["stored"])


def test_transaction_commits_and_rolls_back(run: dict[str, Any]) -> None:
    committed = ok(run, "commit")
    assert committed["seen"] == "2" and committed["outside"] == 0 and committed["after"] == 2
    assert committed["inTransaction"] is True and int(committed["insertId"]) > 5
    rolled = ok(run, "rollback")
    assert rolled == {"thrown": "changed my mind", "seen": "2", "after": 0}
    assert {"tx-commit-1", "tx-commit-2"} <= run["stored"].keys()
    assert not any(note.startswith("tx-rollback") for note in run["stored"])


def test_a_transactions_requests_reach_its_session_from_any_worker(run: dict[str, Any]) -> None:
    requests = run["transactionRequests"]
    # BEGIN, the statements, and COMMIT or ROLLBACK: every one answered 200 except the one sent while the
    # session was busy.
    counts = {"commit": 5, "rollback": 5, "savepoint": 11, "busy_commit": 7, "busy_rollback": 7}
    assert {name: len(requests[name]) for name in counts} == counts
    for name, answers in requests.items():
        statuses = sorted(answer["status"] for answer in answers)
        assert statuses == ([200] * (len(answers) - 1) + [409] if name.startswith("busy") else [200] * len(answers))
        assert all(answer["worker"] for answer in answers), answers
    spread = {name: len({answer["worker"] for answer in answers}) for name, answers in requests.items()}
    assert max(spread.values()) >= 2, requests  # 35 requests on new connections over four workers


def test_a_savepoint_behaves_as_mysql_does(run: dict[str, Any]) -> None:
    savepoint = ok(run, "savepoint")
    assert savepoint["beforeRollbackTo"] == ["sp-1", "sp-2"]
    assert savepoint["afterRollbackTo"] == ["sp-1"]  # back to the savepoint, the transaction still open
    assert savepoint["inTransactionAfterRollbackTo"] is True and savepoint["inTransactionAfterRelease"] is True
    gone = savepoint["released"]  # RELEASE removed it: MySQL's error, and the transaction goes on
    assert gone["message"].endswith(" (errno 1305) (sqlstate 42000)") and "SAVEPOINT a does not exist" in gone[
        "message"], gone
    assert gone["status"] == 400 and gone["body"]["code"] == "NOT_FOUND"
    assert savepoint["inTransactionAfterError"] is True and savepoint["outside"] == 0
    assert savepoint["after"] == ["sp-1", "sp-3"]


@pytest.mark.parametrize("finish", ["commit", "rollback"])
def test_two_requests_at_once_on_one_session(run: dict[str, Any], finish: str) -> None:
    busy = ok(run, f"busy_{finish}")
    assert busy["observed"] is True  # the second was sent while the first ran on the session's connection
    first, second = busy["settled"]
    assert "ok" in first and len(first["ok"]["rows"]) == 1, first
    failure = second["error"]
    assert failure["isDatabaseError"] and failure["status"] == 409, failure
    assert "another request is using this stream" in failure["message"]
    assert failure["body"] == {"code": "aborted", "message": failure["message"]}
    # The session survived it: the transaction went on, and ended as asked.
    assert busy["seen"] == "2" and busy["inTransaction"] is True
    if finish == "commit":
        assert busy["thrown"] is None and busy["after"] == 2
        assert {"busy-commit-1", "busy-commit-2"} <= run["stored"].keys()
    else:
        assert busy["thrown"] == "roll it back" and busy["after"] == 0
        assert not any(note.startswith("busy-rollback") for note in run["stored"])


def test_the_mount_rewrites_and_an_unknown_target(run: dict[str, Any]) -> None:
    config = run["config"]
    database = ok(run, "select")["fields"][0]["database"]
    for prefix in config["extra"]:
        via = ok(run, f"via {prefix}")
        assert via["rows"] == [{"via": prefix, "db": database}] and via["tx"] == [{"one": 1}]
        assert via["paths"] == [f"{prefix}psdb.v1alpha1.Database/Execute"]
    missing = error(run, "unknownTarget")
    assert missing["status"] == 404 and missing["body"]["code"] == "not_found", missing
    assert "no_such_target" in missing["message"]


def test_served_at_the_root_only_when_asked(run: dict[str, Any]) -> None:
    prefix = run["config"]["rewrite"] or "/"
    assert run["paths"] == [f"{prefix}psdb.v1alpha1.Database/{method}" for method in ("CreateSession", "Execute")]
    if run["config"]["root"]:
        assert "rootUnserved" not in run  # the whole scenario ran at the root
        return
    unserved = ok(run, "rootUnserved")
    host = "host asgi app" if run["config"]["kind"] == "asgi-uvicorn" else "host wsgi app"
    assert unserved["reply"] == {"status": 200, "type": "text/plain", "text": host}
    assert unserved["requests"] == [{"status": 200, "type": "text/plain", "path": "/psdb.v1alpha1.Database/Execute"}]
    # The host app's 200 is not JSON: the driver fails parsing it (a SyntaxError, not one of its DatabaseErrors).
    failure = unserved["error"]
    assert failure["name"] == "SyntaxError" and not failure["isDatabaseError"], failure
    assert "host" in failure["message"] and "not valid JSON" in failure["message"]
