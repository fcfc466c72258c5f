"""Our bindings against the real knex (npm ``knex``), on real PostgreSQL, MariaDB and SQLite (issue 12).

Each case is compiled by knex with ``knex({client}).raw(sql, bindings).toSQL().toNative()`` (tests/js/knex-compile.mjs,
no connection), and knex's native SQL is run with its native bindings directly on the database: PostgreSQL's ``$n``
through psycopg's RawCursor, SQLite's ``?`` through sqlite3, and MySQL's ``?`` as a server-side prepared statement
(``PREPARE`` / ``EXECUTE ... USING``, the server's own reading of ``?``, as mysql2's ``execute`` sends it). The same
case goes through our endpoint on the WSGI and ASGI mounts. What is compared is what ran: the rows, or that both
failed. The cases where we differ on purpose are asserted as documented in docs/protocols/polyscale.md (Bindings).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from .support import ROOT, Client, Database, targets_for
from .support.node import node_with

TABLE = f"knex_{uuid.uuid4().hex[:8]}"
KNEX_CLIENT = {"postgresql": "pg", "mysql": "mysql", "sqlite": "sqlite3"}
BIG = {"$bigint": str(2**64)}  # a BigInt for knex, the integer itself for us


@dataclass(frozen=True)
class Case:
    name: str
    sql: str | dict[str, str]  # one SQL for every database, or by family (a family left out is not run)
    bindings: Any
    fails: tuple[str, ...] = ()  # the families where knex's statement fails (and so must ours)

    def sql_for(self, family: str) -> str | None:
        sql = self.sql if isinstance(self.sql, str) else self.sql.get(family)
        return None if sql is None else sql.replace("{t}", TABLE)

    def knex(self) -> Any:
        return _table(self.bindings)

    def ours(self) -> Any:
        return _unbig(_table(self.bindings))


ALL = ("postgresql", "mysql", "sqlite")

# Where we do what knex does: the same rows, or both refuse.
SAME = [
    Case("positional", "select ? as x, ? as y", [1, "two"]),
    Case("null and booleans", "select ? as x, ? as y, ? as z", [None, True, False]),
    Case("float", "select ? as x", [1.5]),
    Case("date as a string", {"postgresql": "select cast(? as date) = date '2024-01-02' as x",
                              "mysql": "select cast(? as date) = date '2024-01-02' as x",
                              "sqlite": "select date(?) as x"}, ["2024-01-02T10:20:30.000Z"]),
    Case("2^53 + 1", "select ? as x", [{"$bigint": str(2**53 + 1)}]),
    Case("2^64", "select ? as x", [BIG], ("sqlite",)),  # exact on PostgreSQL and MariaDB; SQLite's driver refuses it
    Case("percent in text", "select '100%' as x, ? as y", [1]),
    Case("identifier", "select ?? from {t} order by a", ["a"]),
    Case("qualified identifier and alias", "select ?? from {t} order by a", ["{t}.b as c"]),
    Case("identifier list", "select ?? from {t} order by a", [["a", "b"]]),
    Case("misspelt identifier", "select ?? from {t} order by a", ["nope"], ALL),
    Case("?? with *", "select ?? from {t} order by a", ["*"]),
    Case("?? with table.*", "select ?? from {t} order by a", ["{t}.*"]),
    Case("named", "select :x as x, :y as y, :x as z", {"x": 1, "y": "two"}),
    Case("named identifier", "select :c: from {t} order by a", {"c": "b"}),
    Case(":name: with *", "select :c: from {t} order by a", {"c": "*"}),
    Case("named big integer", "select :n as x", {"n": BIG}, ("sqlite",)),
    Case("cast after a value", {"postgresql": "select :x::int + 1 as x"}, {"x": "41"}),
    Case(":name:::type", {"postgresql": "select :c:::text as x from {t} order by a"}, {"c": "a"}),
    Case("\\? outside literals", {"postgresql": "select '{\"a\": 1}'::jsonb \\? ? as x"}, ["a"]),
    Case("\\? outside literals, no such operator", {"mysql": "select 1 \\? 2 as x, ? as y",
                                                  "sqlite": "select 1 \\? 2 as x, ? as y"}, [1], ("mysql", "sqlite")),
    Case("\\:name outside literals", {"postgresql": "select (array[10, 20, 30])[1\\:a] as x, :b as y "
                                                    "from (select 2 as a) s"}, {"b": 5}),
    Case("\\? in a literal (not PostgreSQL)", {"mysql": "select 'a\\?' as x, ? as y",
                                               "sqlite": "select 'a\\?' as x, ? as y"}, [1]),
    Case("\\:name in a literal (MariaDB)", {"mysql": "select '\\:y' as x, :y as y"}, {"y": 1}),
    Case("too few bindings", "select ?, ? as x", [1], ALL),
    Case("too many bindings", "select ? as x", [1, 2], ALL),
    Case("? with no bindings", "select ? as x", [], ALL),
    Case("a missing name", "select :x as x, :y as y", {"x": 1}, ALL),
    Case("no placeholders, empty object", "select 1 as x", {}),
]


MISSING = "not run"  # what knex's driver does there cannot be run here; only our side is asserted


@dataclass(frozen=True)
class Difference:
    case: Case
    families: tuple[str, ...]
    ours: Any  # our rows, or "400" for a clear refusal before the database (or a dict of those by family)
    knex: Any  # what knex's native SQL did: its rows, or "error" (or a dict of those by family)

    def knex_for(self, family: str) -> Any:
        return self.knex[family] if isinstance(self.knex, dict) else self.knex

    def ours_for(self, family: str) -> Any:
        return self.ours[family] if isinstance(self.ours, dict) else self.ours


# Where we differ on purpose; each one is in docs/protocols/polyscale.md (Bindings) with its reason.
DIFFERENT = [
    # knex counts every ? in the text, so a ? inside a string or a comment takes a binding (or fails the count).
    Difference(Case("? in a literal", "select '?' as x, ? as y", [1]), ("postgresql", "mysql", "sqlite"),
               [["?", "1"]], "error"),
    Difference(Case("? in a comment", "select ? as y -- why?\n", [1]), ("postgresql", "mysql", "sqlite"),
               [["1"]], "error"),
    # knex binds :name inside a string: the literal becomes '$1' (PostgreSQL then answers the text "$1") or '?'.
    Difference(Case(":name in a literal", "select ':y' as x, :y as y", {"y": 1}), ("postgresql", "mysql", "sqlite"),
               [[":y", "1"]], {"postgresql": [["$1", "1"]], "mysql": "error", "sqlite": "error"}),
    # knex (pg) rewrites \? to ? inside a string; we never change a literal.
    Difference(Case("\\? in a literal", "select 'a\\?' as x, ? as y", [1]), ("postgresql",),
               [["a\\?", "1"]], [["a?", "1"]]),
    Difference(Case("\\:name in a literal", "select '\\:y' as x, :y as y", {"y": 1}), ("postgresql", "sqlite"),
               [["\\:y", "1"]], [[":y", "1"]]),
    # A list binding expands to ?, ?, ? (as the mysql driver does under knex); knex hands pg and sqlite3 one array.
    # On MariaDB knex's mysql driver expands it client-side, which a server-side statement cannot show: ours only.
    Difference(Case("list", "select 2 in (?) as x", [[1, 2, 3]]), ("postgresql", "mysql", "sqlite"),
               {"postgresql": [["True"]], "mysql": [["1"]], "sqlite": [["1"]]},
               {"postgresql": "error", "mysql": MISSING, "sqlite": "error"}),
    Difference(Case("empty list", "select 2 in (?) as x", [[]]), ("postgresql", "mysql", "sqlite"),
               [["None"]], {"postgresql": "error", "mysql": MISSING, "sqlite": "error"}),
    # A key the SQL never uses is refused (a typo would silently drop a value); knex ignores it.
    Difference(Case("unused key", "select :x as x", {"x": 1, "typo": 2}), ("postgresql", "mysql", "sqlite"),
               "400", [["1"]]),
    # An empty identifier is refused; knex quotes it as an empty name, which every database refuses too, less clearly.
    Difference(Case("empty identifier", "select ?? from {t}", [""]), ALL, "400", "error"),
    # sqlite3 reads :name as a parameter anywhere outside quotes, so \:name (text for knex) is refused.
    Difference(Case("\\:name with SQLite", "select 1 as x, :b as y where '\\:a' <> \\:a", {"b": 5}), ("sqlite",),
               "400", "error"),
]


def _table(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{t}", TABLE)
    if isinstance(value, dict):
        return {k: _table(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_table(v) for v in value]
    return value


def _unbig(value: Any) -> Any:
    if isinstance(value, dict):
        return int(value["$bigint"]) if "$bigint" in value else {k: _unbig(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unbig(v) for v in value]
    return value


def _all_cases() -> list[Case]:
    return SAME + [d.case for d in DIFFERENT]


@pytest.fixture(scope="module")
def knex_native() -> dict[tuple[str, str], dict[str, Any]]:
    """(case name, family) -> knex's {sql, bindings} or {error}, from one run of the real knex for every case."""
    node = node_with("knex")
    keys, cases = [], []
    for case in _all_cases():
        for family, client in KNEX_CLIENT.items():
            sql = case.sql_for(family)
            if sql is not None:
                keys.append((case.name, family))
                cases.append({"sql": sql, "bindings": case.knex(), "client": client})
    done = subprocess.run([node, str(ROOT / "tests" / "js" / "knex-compile.mjs")], input=json.dumps(cases),
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    return dict(zip(keys, json.loads(done.stdout), strict=True))


FIXTURE = {"postgresql": "pg_database", "mysql": "maria_database", "sqlite": "sqlite_database"}


@pytest.fixture
def on(
    make_engine_client: Callable[..., Client], request: pytest.FixtureRequest
) -> Callable[[str], tuple[Client, Database]]:
    """A client over the database of one family (with the cases' table), and that database."""

    def make(family: str) -> tuple[Client, Database]:
        db: Database = request.getfixturevalue(FIXTURE[family])
        with db.admin().begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {TABLE} (a integer, b varchar(20))")
            if not connection.exec_driver_sql(f"SELECT count(*) FROM {TABLE}").scalar():
                connection.exec_driver_sql(f"INSERT INTO {TABLE} (a, b) VALUES (1, 'one'), (2, 'two')")
        return make_engine_client(targets=targets_for(db)), db

    return make


def run_native(db: Database, native: dict[str, Any]) -> Any:
    """knex's native SQL with its native bindings, straight on the database: the rows as text, or "error"."""
    if "error" in native:
        return "error"
    sql, params = native["sql"], _unbig(native["bindings"])
    engine = db.admin()
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if db.family == "postgresql":
            import psycopg

            cursor: Any = psycopg.RawCursor(driver)
            cursor.execute(sql, params)
        elif db.family == "mysql":
            cursor = driver.cursor()
            names = [f"@knex_p{i}" for i in range(len(params))]
            for name, value in zip(names, params, strict=True):
                if isinstance(value, (list, dict)):
                    return "error"  # a server-side statement binds scalars only
                cursor.execute(f"SET {name} = %s", (value,))
            cursor.execute("PREPARE knex_s FROM %s", (sql,))
            cursor.execute("EXECUTE knex_s" + (" USING " + ", ".join(names) if names else ""))
        else:
            cursor = driver.cursor()
            cursor.execute(sql, params)
        return normal(cursor.fetchall())
    except Exception:
        return "error"
    finally:
        raw.rollback()
        raw.close()
        engine.dispose()


def run_ours(client: Client, db: Database, case: Case) -> Any:
    sql = case.sql_for(db.family)
    assert sql is not None
    reply = client.post(db.body(sql, case.ours(), rowMode="array"))
    if reply.status == 400 and reply.json()["code"] == "BINDING_ERROR":
        return "400"
    return normal(reply.json()) if reply.status == 200 else "error"


def normal(rows: Any) -> list[list[str]]:
    """Rows as text, so the endpoint's JSON (a bigint as a string, true) and the driver's values compare."""
    return [[str(value) for value in row] for row in rows]


def _each_family(cases: list[Any], case_of: Callable[[Any], Case]) -> list[Any]:
    return [
        pytest.param(item, family, id=f"{family}-{case_of(item).name}")
        for item in cases
        for family in KNEX_CLIENT
        if case_of(item).sql_for(family) is not None
    ]


@pytest.mark.parametrize(("case", "family"), _each_family(SAME, lambda c: c))
def test_we_run_what_knex_runs(
    case: Case, family: str, on: Callable[[str], tuple[Client, Database]],
    knex_native: dict[tuple[str, str], dict[str, Any]],
) -> None:
    client, db = on(family)
    ours = run_ours(client, db, case)
    theirs = run_native(db, knex_native[case.name, family])
    assert (theirs == "error") == (family in case.fails), theirs
    assert ours in ("error", "400") if theirs == "error" else ours == theirs, (ours, theirs)


@pytest.mark.parametrize(("difference", "family"), _each_family(DIFFERENT, lambda d: d.case))
def test_each_documented_difference(
    difference: Difference, family: str, on: Callable[[str], tuple[Client, Database]],
    knex_native: dict[tuple[str, str], dict[str, Any]],
) -> None:
    client, db = on(family)
    ours = run_ours(client, db, difference.case)
    theirs = run_native(db, knex_native[difference.case.name, family])
    if family not in difference.families:  # no difference here: the same outcome
        assert ours in ("error", "400") if theirs == "error" else ours == theirs, (ours, theirs)
        return
    assert ours == difference.ours_for(family)
    if difference.knex_for(family) != MISSING:
        assert theirs == difference.knex_for(family)
