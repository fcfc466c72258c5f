"""End to end: ORMs on PlanetScale's driver (``@planetscale/database``) against real servers on MariaDB.

Drizzle (``drizzle-orm/planetscale-serverless`` on the driver's ``Client``), Kysely (``kysely-planetscale``'s
``PlanetScaleDialect``) and Prisma 7 (``@prisma/adapter-planetscale``) each run one node script
(``tests/js/orm-*-planetscale.mjs``) per server, gunicorn ``-w 4`` for WSGI and uvicorn ``--workers 4`` for ASGI,
with our PlanetScale endpoint at the origin's root. Each script builds its own two tables through the endpoint
(authors, with an auto-increment id and a unique name; books, with a foreign key to it, a DECIMAL(10,2), a
DATETIME(3) and a nullable note), runs inserts, joins, filters, aggregates, updates, deletes and failing writes, then
transactions: one that commits (and is invisible outside until then), one that throws and rolls back, one whose SQL
fails inside, one with an isolation level, and nested ones (savepoints), the inner rolling back and the outer
committing. The tests check what each ORM returned, the tables directly in MariaDB, and the trace of every
request: each on a new connection (``Connection: close``), so one transaction's requests reach several workers, and
each session opened is continued to its COMMIT or ROLLBACK.

Prisma needs a generated client: ``prisma generate`` runs here from npm alone (Prisma 7 compiles queries in WASM, so
there is no query engine binary), with ``PRISMA_SCHEMA_ENGINE_BINARY`` at the null device so that the CLI does not
download the schema engine it does not use here.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy

from .support import ROOT, Database, node_with, serving
from .support.prisma import prisma_bundle

JS = ROOT / "tests" / "js"
NODE_MODULES = ROOT / "node_modules"
PACKAGES = ["@planetscale/database", "drizzle-orm", "kysely", "kysely-planetscale", "prisma", "@prisma/client",
            "@prisma/adapter-planetscale", "esbuild"]
SERVERS = {"wsgi-gunicorn": "Wsgi", "asgi-uvicorn": "Asgi"}  # server -> its Prisma models' suffix
WORKERS = ["--workers", "4"]
RUN = uuid.uuid4().hex[:8]  # table names carry it, so that runs (and the two servers) never share a table


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(*PACKAGES)


@dataclass(frozen=True)
class Server:
    kind: str
    url: str  # the driver's URL: the login in it, percent-encoded


def driver_url(base: str, db: Database) -> str:
    return base.replace("http://", f"http://{quote(db.username, safe='')}:{quote(db.password, safe='')}@", 1)


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, maria_database: Database, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("planetscale-orms")
    env = {"SQLHTTP_TARGETS": f"maria=mariadb://127.0.0.1:3306/{maria_database.database}",
           "SQLHTTP_PLANETSCALE_ROOT": "true", "SQLHTTP_SESSION_DIR": str(tmp / "sessions"),
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving(request.param, env, WORKERS) as base:
        yield Server(request.param, driver_url(base, maria_database))


def prefix(kind: str, orm: str) -> str:
    return f"ps_orm_{RUN}_{SERVERS[kind].lower()}_{orm}"


PRISMA_MODELS = """
model Author{model} {{
  id    Int          @id @default(autoincrement())
  name  String       @unique @db.VarChar(100)
  books Book{model}[]

  @@map("{prefix}_authors")
}}

model Book{model} {{
  id          Int           @id @default(autoincrement())
  authorId    Int           @map("author_id")
  author      Author{model} @relation(fields: [authorId], references: [id])
  title       String        @db.VarChar(200)
  price       Decimal       @db.Decimal(10, 2)
  publishedAt DateTime      @map("published_at") @db.DateTime(3)
  note        String?       @db.VarChar(200)

  @@map("{prefix}_books")
}}
"""


@pytest.fixture(scope="module")
def prisma_script(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/js/orm-prisma-planetscale.mjs, bundled with a client generated for every server's tables."""
    header = ('generator client {\n  provider = "prisma-client"\n  output = "./generated"\n  runtime = "nodejs"\n'
              '  moduleFormat = "esm"\n}\n\ndatasource db {\n  provider = "mysql"\n}\n')
    models = "".join(PRISMA_MODELS.format(model=model, prefix=prefix(kind, "prisma"))
                     for kind, model in SERVERS.items())
    return prisma_bundle(node, tmp_path_factory.mktemp("prisma-planetscale"), header + models,
                         "orm-prisma-planetscale")


@dataclass(frozen=True)
class Run:
    prefix: str
    out: dict[str, Any]

    @property
    def trace(self) -> list[dict[str, Any]]:
        trace: list[dict[str, Any]] = self.out["trace"]
        return trace


def run_script(node: str, script: Path, server: Server, table_prefix: str) -> Run:
    payload = {"url": server.url, "prefix": table_prefix, "model": SERVERS[server.kind]}
    done = subprocess.run([node, str(script)], input=json.dumps(payload).encode(), capture_output=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, f"{script.name} failed on {server.kind}:\n{done.stderr.decode()[-3000:]}"
    return Run(table_prefix, json.loads(done.stdout))


def drop_tables(db: Database, table_prefix: str) -> None:
    db.run(f"DROP TABLE IF EXISTS {table_prefix}_books")
    db.run(f"DROP TABLE IF EXISTS {table_prefix}_authors")


@pytest.fixture(scope="module")
def runs(node: str, prisma_script: Path, server: Server, maria_database: Database) -> Iterator[dict[str, Run]]:
    """Each ORM's script, once per server, all three at once: they work on tables of their own."""
    scripts = {"drizzle": JS / "orm-drizzle-planetscale.mjs", "kysely": JS / "orm-kysely-planetscale.mjs",
               "prisma": prisma_script}
    try:
        with ThreadPoolExecutor(len(scripts)) as pool:
            futures = {orm: pool.submit(run_script, node, script, server, prefix(server.kind, orm))
                       for orm, script in scripts.items()}
            done = {orm: future.result() for orm, future in futures.items()}
        yield done
    finally:
        for orm in scripts:
            drop_tables(maria_database, prefix(server.kind, orm))


@pytest.fixture
def drizzle(runs: dict[str, Run]) -> Run:
    return runs["drizzle"]


@pytest.fixture
def kysely(runs: dict[str, Run]) -> Run:
    return runs["kysely"]


@pytest.fixture
def prisma(runs: dict[str, Run]) -> Run:
    return runs["prisma"]


# -- what MariaDB itself holds, and what the requests did ----------------------------------------------------------


def iso(moment: datetime) -> str:
    """A DATETIME(3) (UTC by convention) as JavaScript's ``Date.toISOString()`` writes it."""
    return moment.isoformat(timespec="milliseconds") + "Z"


def database_books(db: Database, table_prefix: str) -> list[dict[str, Any]]:
    rows = db.run(f"SELECT id, author_id, title, price, published_at, note FROM {table_prefix}_books ORDER BY id")
    return [{"id": id_, "author_id": author_id, "title": title, "price": str(price), "published_at": iso(published),
             "note": note} for id_, author_id, title, price, published, note in rows]


def database_authors(db: Database, table_prefix: str) -> list[dict[str, Any]]:
    rows = db.run(f"SELECT id, name FROM {table_prefix}_authors ORDER BY id")
    return [{"id": id_, "name": name} for id_, name in rows]


CAMEL = {"authorId": "author_id", "publishedAt": "published_at"}


def snake(row: dict[str, Any]) -> dict[str, Any]:
    return {CAMEL.get(key, key): value for key, value in row.items()}


def sessions(trace: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each session, as the requests from the one that opened it (sent none, got one) along the signatures each
    answer gave and the next request sent back; the last one got none if the session was closed."""
    continuing = {request["sent"]: request for request in trace if request["sent"]}
    assert len(continuing) == sum(1 for request in trace if request["sent"])  # each signature is sent once
    chains = []
    for request in trace:
        if request["sent"] or not request["got"]:
            continue
        chain = [request]
        while chain[-1]["got"] and chain[-1]["got"] in continuing:
            chain.append(continuing[chain[-1]["got"]])
        chains.append(chain)
    # Every request that continued a session is on one of the chains: none continued a session nobody opened.
    assert sum(len(chain) - 1 for chain in chains) == len(continuing)
    return chains


def check_sessions(run: Run, leaked: tuple[str, ...] = ()) -> list[list[dict[str, Any]]]:
    """Every request answered 200; every session is closed by COMMIT or ROLLBACK, but for those opened by the
    statements in ``leaked`` (and never continued); the requests of one session were answered by several workers."""
    assert all(request["status"] == 200 for request in run.trace), [r for r in run.trace if r["status"] != 200]
    chains = sessions(run.trace)
    closed = [chain for chain in chains if not chain[-1]["got"]]
    left = [chain for chain in chains if chain[-1]["got"]]
    assert [chain[0]["sql"] for chain in left] == list(leaked), left
    assert all(len(chain) == 1 for chain in left)  # opened, and never continued
    for chain in closed:
        assert chain[-1]["sql"].upper() in ("COMMIT", "ROLLBACK"), chain[-1]
        assert all(request["inTransaction"] for request in chain[:-1] if request["sql"].upper() == "BEGIN")
        assert not chain[-1]["inTransaction"]
    assert all(request["worker"] for request in run.trace)
    assert max(len({request["worker"] for request in chain}) for chain in closed) >= 2, chains
    return closed


AUTHORS = ["Ursula K. Le Guin", "Stanisław Lem", "Octavia E. Butler"]
BOOKS = [  # title, author (index), price, published_at, note
    ("The Dispossessed", 0, "12.50", "1974-05-01T12:00:00.000Z", "it's \"anarchist\" \\ utopia"),
    ("A Wizard of Earthsea", 0, "9.99", "1968-11-01T00:00:00.123Z", None),
    ("Solaris", 1, "1234567.89", "1961-06-15T08:30:00.000Z", "Głos Pana — 😀"),
    ("Kindred", 2, "0.10", "1979-06-01T23:59:59.999Z", None),
]
JOINED = [{"title": "Solaris", "author": "Stanisław Lem", "price": "1234567.89"},
          {"title": "The Dispossessed", "author": "Ursula K. Le Guin", "price": "12.50"}]
LEFT_JOIN = [{"author": AUTHORS[0], "title": "A Wizard of Earthsea"}, {"author": AUTHORS[1], "title": None},
             {"author": AUTHORS[2], "title": "Kindred"}]


def check_inserted_books(rows: list[dict[str, Any]], author_ids: list[int]) -> None:
    assert [(row["author_id"], row["title"], row["price"], row["published_at"], row["note"]) for row in rows] == [
        (author_ids[author], title, price, published, note) for title, author, price, published, note in BOOKS]


def check_duplicate_and_foreign_key(out: dict[str, Any], table_prefix: str) -> None:
    duplicate, foreign = out["duplicate"]["error"], out["foreignKey"]["error"]
    # PlanetScale's errors: a 200 carrying a vtrpc code and MySQL's message with its errno and SQLSTATE.
    assert (duplicate["name"], duplicate["status"], duplicate["code"]) == ("DatabaseError", 400, "ALREADY_EXISTS")
    assert duplicate["message"] == "Duplicate entry 'Stanisław Lem' for key 'name' (errno 1062) (sqlstate 23000)"
    assert (foreign["name"], foreign["status"], foreign["code"]) == ("DatabaseError", 400, "FAILED_PRECONDITION")
    assert foreign["message"].startswith("Cannot add or update a child row: a foreign key constraint fails (")
    assert f"`{table_prefix}_books`" in foreign["message"]
    assert foreign["message"].endswith(") (errno 1452) (sqlstate 23000)")


# -- Drizzle ------------------------------------------------------------------------------------------------------


def test_drizzle_inserts_and_reads_exact_values(drizzle: Run, maria_database: Database) -> None:
    out = drizzle.out
    ids = [row["id"] for row in database_authors(maria_database, drizzle.prefix)][:3]
    assert out["authorIds"] == [{"id": id_} for id_ in ids]  # $returningId(): the driver's insertId, as a number
    assert [row["id"] for row in out["bookIds"]] == [row["id"] for row in out["books"]]
    check_inserted_books([snake(row) for row in out["books"]], ids)


def test_drizzle_joins_filters_and_aggregates(drizzle: Run, maria_database: Database) -> None:
    out = drizzle.out
    assert out["joined"] == JOINED
    assert out["leftJoin"] == LEFT_JOIN
    assert out["totals"] == [{"author": AUTHORS[2], "books": 1, "total": "0.10"},
                             {"author": AUTHORS[1], "books": 1, "total": "1234567.89"},
                             {"author": AUTHORS[0], "books": 2, "total": "22.49"}]


def test_drizzle_relational_query_is_refused_by_mariadb_itself(drizzle: Run, maria_database: Database) -> None:
    # Drizzle's relational query puts the outer row in a derived table, which MySQL 8.0.14 accepts and MariaDB
    # does not: the same SQL, straight to MariaDB, fails alike. Not the endpoint's doing.
    error = drizzle.out["relational"]["error"]
    assert error["name"] == "DatabaseError" and error["code"] == "INVALID_ARGUMENT"
    assert error["message"].endswith("(errno 1054) (sqlstate 42S22)") and "authors.id" in error["message"]
    query = drizzle.out["relationalSql"]
    engine = maria_database.admin()
    try:
        with engine.connect() as connection, pytest.raises(sqlalchemy.exc.OperationalError) as raised:
            connection.exec_driver_sql(query["sql"].replace("?", "%s"), tuple(query["params"]))
    finally:
        engine.dispose()
    assert raised.value.orig.args[0] == 1054
    assert error["message"] == f"{raised.value.orig.args[1]} (errno 1054) (sqlstate 42S22)"


def test_drizzle_updates_deletes_and_errors(drizzle: Run) -> None:
    out = drizzle.out
    assert (out["updated"], out["deleted"]) == (1, 1)  # the driver's rowsAffected
    check_duplicate_and_foreign_key(out, drizzle.prefix)


def test_drizzle_transactions(drizzle: Run) -> None:
    out = drizzle.out
    assert out["committed"]["ok"]["inside"] == 4  # three books and the transaction's own
    assert out["committed"]["ok"]["outside"] == []  # the uncommitted row, from another connection
    assert out["afterCommit"] == ["Tx Author"]
    assert out["thrown"]["error"]["message"] == "boom after seeing 1" and out["afterThrow"] == []
    assert out["rolledBack"]["error"]["name"] == "DrizzleError" and out["afterRollback"] == []  # tx.rollback()
    failed = out["failedInside"]["error"]
    assert failed["code"] == "FAILED_PRECONDITION" and "(errno 1452)" in failed["message"]
    assert out["afterFailed"] == []


def test_drizzle_nested_transactions_are_savepoints(drizzle: Run) -> None:
    out = drizzle.out
    nested = out["nested"]["ok"]
    assert nested["inner"]["error"]["message"] == "inner fails after seeing 2"  # the outer's row and its own
    assert nested["kept"] == "released"
    assert nested["seen"] == out["afterNested"] == ["Nest Outer", "Nest Inner Kept", "Nest After"]
    assert out["nestedOuterFails"]["error"]["message"] == "outer fails"
    assert out["afterNestedOuterFails"] == []  # a released savepoint goes with its transaction


def test_drizzle_sessions_across_workers(drizzle: Run) -> None:
    closed = check_sessions(drizzle)
    assert [[r["sql"] for r in chain if r["sql"].lower().startswith(("begin", "commit", "rollback", "savepoint",
                                                                     "release"))] for chain in closed] == [
        ["BEGIN", "COMMIT"], ["BEGIN", "ROLLBACK"], ["BEGIN", "ROLLBACK"], ["BEGIN", "ROLLBACK"],
        ["BEGIN", "savepoint sp1", "rollback to savepoint sp1", "savepoint sp1", "release savepoint sp1", "COMMIT"],
        ["BEGIN", "savepoint sp1", "release savepoint sp1", "ROLLBACK"],
    ]


def test_drizzle_sees_what_the_database_holds(drizzle: Run, maria_database: Database) -> None:
    assert [snake(row) for row in drizzle.out["finalBooks"]] == database_books(maria_database, drizzle.prefix)
    assert drizzle.out["finalAuthors"] == database_authors(maria_database, drizzle.prefix)
    assert [row["title"] for row in drizzle.out["finalBooks"]] == ["The Dispossessed", "A Wizard of Earthsea",
                                                                   "Kindred", "Tx Book"]
    assert [row["name"] for row in drizzle.out["finalAuthors"]] == [*AUTHORS, "Tx Author", "Nest Outer",
                                                                    "Nest Inner Kept", "Nest After"]


# -- Kysely -------------------------------------------------------------------------------------------------------


def test_kysely_schema_builder_and_introspection(kysely: Run) -> None:
    authors, books = kysely.out["introspected"]
    assert authors == {"name": f"{kysely.prefix}_authors",
                       "columns": [["id", "int", False, True], ["name", "varchar", False, False]]}
    assert books == {"name": f"{kysely.prefix}_books", "columns": [
        ["id", "int", False, True], ["author_id", "int", False, False], ["title", "varchar", False, False],
        ["price", "decimal", False, False], ["published_at", "datetime", False, False],
        ["note", "varchar", True, False],
    ]}


def test_kysely_inserts_and_reads_exact_values(kysely: Run, maria_database: Database) -> None:
    out = kysely.out
    ids = [row["id"] for row in database_authors(maria_database, kysely.prefix)][:3]
    # The driver's insertId (the first row's) and rowsAffected, as Kysely's BigInts.
    assert out["authorsInsert"] == {"insertId": str(ids[0]), "rows": "3"}
    assert out["booksInsert"] == {"insertId": str(out["books"][0]["id"]), "rows": "4"}
    check_inserted_books(out["books"], ids)  # DATETIME as Dates: kysely-planetscale's own cast


def test_kysely_joins_filters_and_aggregates(kysely: Run) -> None:
    out = kysely.out
    assert out["joined"] == JOINED
    assert out["leftJoin"] == LEFT_JOIN
    assert out["totals"] == [{"name": AUTHORS[2], "books": "1", "total": "0.10"},  # COUNT is INT64: a string
                             {"name": AUTHORS[1], "books": "1", "total": "1234567.89"},
                             {"name": AUTHORS[0], "books": "2", "total": "22.49"}]
    assert [row["title"] for row in out["inList"]] == ["Solaris", "Kindred"]


def test_kysely_updates_deletes_and_errors(kysely: Run) -> None:
    out = kysely.out
    assert (out["updatedRows"], out["deletedRows"]) == ("1", "1")
    check_duplicate_and_foreign_key(out, kysely.prefix)


def test_kysely_transactions(kysely: Run) -> None:
    out = kysely.out
    committed = out["committed"]["ok"]
    assert committed["inside"] == "4" and committed["outside"] == [] and out["afterCommit"] == ["Tx Author"]
    assert committed["id"] == str(database_id_of(out, "Tx Author"))
    assert out["thrown"]["error"]["message"] == "boom after seeing 1" and out["afterThrow"] == []
    failed = out["failedInside"]["error"]
    assert failed["code"] == "FAILED_PRECONDITION" and "(errno 1452)" in failed["message"]
    assert out["afterFailed"] == []
    assert out["serializable"] == {"ok": 1} and out["afterSerializable"] == ["Serial Author"]


def database_id_of(out: dict[str, Any], name: str) -> int:
    [id_] = [row["id"] for row in out["finalAuthors"] if row["name"] == name]
    return int(id_)


def test_kysely_nested_transactions(kysely: Run) -> None:
    out = kysely.out
    # Kysely's own savepoints need the driver's savepoint(), which kysely-planetscale 1.7.1 does not have...
    assert out["controlledSavepoint"]["error"]["message"] == "The `savepoint` method is not supported by this driver"
    assert out["afterControlled"] == []  # ...and the transaction then rolled back
    # ...so savepoints go as SQL, inside the transaction's session.
    nested = out["nested"]["ok"]
    assert nested["seenInside"] == 2
    assert nested["seen"] == out["afterNested"] == ["Nest Outer", "Nest Inner Kept", "Nest After"]


def test_kysely_sessions_across_workers(kysely: Run) -> None:
    closed = check_sessions(kysely)
    ends = [[r["sql"] for r in chain if r["sql"].upper().startswith(("SET", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT",
                                                                      "RELEASE"))] for chain in closed]
    assert ends == [
        ["BEGIN", "COMMIT"], ["BEGIN", "ROLLBACK"], ["BEGIN", "ROLLBACK"],
        # SET TRANSACTION holds nothing: it travels in its answer's session to the BEGIN, which runs it first.
        ["BEGIN", "COMMIT"],
        ["BEGIN", "ROLLBACK"],
        ["BEGIN", "SAVEPOINT inner_one", "ROLLBACK TO SAVEPOINT inner_one", "SAVEPOINT inner_two",
         "RELEASE SAVEPOINT inner_two", "COMMIT"],
    ]


def test_kysely_sees_what_the_database_holds(kysely: Run, maria_database: Database) -> None:
    assert kysely.out["finalBooks"] == database_books(maria_database, kysely.prefix)
    assert kysely.out["finalAuthors"] == database_authors(maria_database, kysely.prefix)
    assert [row["name"] for row in kysely.out["finalAuthors"]] == [*AUTHORS, "Tx Author", "Serial Author",
                                                                   "Nest Outer", "Nest Inner Kept", "Nest After"]


# -- Prisma -------------------------------------------------------------------------------------------------------


def decimals(row: dict[str, Any]) -> dict[str, Any]:
    """Prisma's Decimal drops trailing zeros when it prints: compared as numbers (the exact text is checked in
    MariaDB)."""
    return {**row, "price": Decimal(row["price"])} if "price" in row else row


def test_prisma_creates_and_reads_exact_values(prisma: Run, maria_database: Database) -> None:
    out = prisma.out
    assert out["authorsCreated"] == {"count": 3}
    ids = [row["id"] for row in database_authors(maria_database, prisma.prefix)][:3]
    books = [snake(row) for row in out["books"]]
    assert [Decimal(row["price"]) for row in books] == [Decimal(price) for _, _, price, _, _ in BOOKS]
    check_inserted_books([{**row, "price": price} for row, (_, _, price, _, _) in zip(books, BOOKS, strict=True)],
                         ids)


def test_prisma_relations_filters_and_aggregates(prisma: Run) -> None:
    out = prisma.out
    assert out["filtered"] == [{"title": "Solaris", "price": "1234567.89", "author": {"name": AUTHORS[1]}},
                               {"title": "The Dispossessed", "price": "12.5", "author": {"name": AUTHORS[0]}}]
    assert out["included"]["name"] == AUTHORS[0]
    assert out["included"]["books"] == [{"title": "The Dispossessed", "note": BOOKS[0][4]},
                                        {"title": "A Wizard of Earthsea", "note": None}]
    assert out["nullNotes"] == [{"title": "A Wizard of Earthsea"}, {"title": "Kindred"}]
    assert out["aggregate"] == {"_sum": {"price": "1234590.48"}, "_max": {"publishedAt": BOOKS[3][3]}, "_count": 4}
    assert sorted(out["grouped"], key=lambda row: row["authorId"]) == [
        {"authorId": out["books"][0]["authorId"], "_sum": {"price": "22.49"}},
        {"authorId": out["books"][2]["authorId"], "_sum": {"price": "1234567.89"}},
        {"authorId": out["books"][3]["authorId"], "_sum": {"price": "0.1"}}]
    assert out["raw"] == [{"x": "x", "n": 42, "big": "9007199254740993"}]  # BIGINT past 2**53, exactly


def test_prisma_updates_deletes_and_mapped_errors(prisma: Run) -> None:
    out = prisma.out
    assert out["updated"] == {"price": "15", "note": "edited"}
    assert out["updatedMany"] == {"count": 2} and out["deleted"] == {"count": 1}
    # The adapter reads "(errno N) (sqlstate S)" out of the message: Prisma's own codes follow.
    duplicate, foreign = out["duplicate"]["error"], out["foreignKey"]["error"]
    assert (duplicate["name"], duplicate["code"]) == ("PrismaClientKnownRequestError", "P2002")
    assert duplicate["meta"]["driverAdapterError"]["cause"] == {
        "originalCode": "1062", "originalMessage": "Duplicate entry 'Stanisław Lem' for key 'name'",
        "kind": "UniqueConstraintViolation", "constraint": {"index": "name"}}
    assert (foreign["name"], foreign["code"]) == ("PrismaClientKnownRequestError", "P2003")
    assert foreign["meta"]["driverAdapterError"]["cause"]["originalCode"] == "1452"


def test_prisma_transactions(prisma: Run) -> None:
    out = prisma.out
    assert out["nestedWrite"] == {"ok": {"id": out["nestedWrite"]["ok"]["id"], "name": "Nested Write",
                                         "books": [{"title": "Nested Book"}]}}
    assert out["batch"] == {"ok": [4, 4]}  # three authors and the nested write's; three books and its book
    assert out["committed"] == {"ok": {"inside": 5, "outside": []}} and out["afterCommit"] == ["Tx Author"]
    assert out["thrown"]["error"]["message"] == "boom after seeing 1" and out["afterThrow"] == []
    assert out["failedInside"]["error"]["code"] == "P2003" and out["afterFailed"] == []
    assert out["serializable"] == {"ok": 1} and out["afterSerializable"] == ["Serial Author"]
    nested = out["nested"]["ok"]  # tx.$transaction(): Prisma's savepoints
    assert nested["inner"]["error"]["message"] == "inner fails after seeing 2"
    assert nested["kept"] == {"ok": "released"}
    assert nested["seen"] == out["afterNested"] == ["Nest Outer", "Nest Inner Kept", "Nest After"]


def test_prisma_sessions_across_workers(prisma: Run) -> None:
    # @prisma/adapter-planetscale 7.10.0 sends SET TRANSACTION ISOLATION LEVEL on one driver Connection and then
    # opens the transaction with conn.transaction(), which starts a new Connection: the level never reaches the
    # transaction (the adapter's doing, as it would be on PlanetScale). The SET holds nothing here.
    closed = check_sessions(prisma)
    savepoints = [[r["sql"] for r in chain if "prisma_sp" in r["sql"]] for chain in closed]
    assert [names for names in savepoints if names] == [[
        "SAVEPOINT prisma_sp_0", "ROLLBACK TO prisma_sp_0", "RELEASE SAVEPOINT prisma_sp_0",
        "SAVEPOINT prisma_sp_1", "RELEASE SAVEPOINT prisma_sp_1"]]


def test_prisma_transactions_with_an_isolation_level_hold_no_connection(
        node: str, prisma_script: Path, maria_database: Database, tmp_path: Path) -> None:
    # One worker, so that every request meets the same pool of two connections; an idle timeout far longer than
    # the run, so that the outcome does not depend on how fast it goes; a short pool_timeout, to fail sooner.
    env = {"SQLHTTP_TARGETS": f"maria=mariadb://127.0.0.1:3306/{maria_database.database}",
           "SQLHTTP_PLANETSCALE_ROOT": "true", "SQLHTTP_SESSION_DIR": str(tmp_path / "sessions"),
           "SQLHTTP_SESSION_IDLE_TIMEOUT": "120", "SQLHTTP_POOL_TIMEOUT": "1",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving("asgi-uvicorn", env) as base:
        payload = {"url": driver_url(base, maria_database), "isolationRepeats": 3, "model": "Asgi", "prefix": "none"}
        done = subprocess.run([node, str(prisma_script)], input=json.dumps(payload).encode(), capture_output=True,
                              cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = json.loads(done.stdout)
    # Each transaction's SET went out first, on a driver connection nobody used again (the adapter's doing): it
    # held nothing (no session), so the three transactions never waited for the pool.
    sets = [r for r in out["trace"] if r["sql"] == "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"]
    assert sets and all(not r["got"] and not r["sent"] for r in sets)
    assert out["isolation"] == [{"ok": [{"one": 1}]}] * 3


def test_prisma_sees_what_the_database_holds(prisma: Run, maria_database: Database) -> None:
    stored = database_books(maria_database, prisma.prefix)
    assert [decimals(snake(row)) for row in prisma.out["finalBooks"]] == [decimals(row) for row in stored]
    assert [row["price"] for row in stored] == ["15.00", "9.99", "0.10", "2.00", "3.30"]
    assert prisma.out["finalAuthors"] == database_authors(maria_database, prisma.prefix)
    assert [row["name"] for row in prisma.out["finalAuthors"]] == [*AUTHORS, "Nested Write", "Tx Author",
                                                                   "Serial Author", "Nest Outer", "Nest Inner Kept",
                                                                   "Nest After"]
