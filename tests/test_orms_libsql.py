"""End to end: ORMs on the real ``@libsql/client`` (Hrana over HTTP) against real servers with four workers each,
gunicorn ``-w 4`` (WSGI) and uvicorn ``--workers 4`` (ASGI), on the SQLite target ``lite``.

Drizzle (``drizzle-orm/libsql``), Kysely (``@libsql/kysely-libsql``, given our own client) and Prisma 7
(``@prisma/adapter-libsql``'s ``PrismaLibSql``) each run one node script (``tests/js/orm-*-libsql.mjs``) per server.
Each builds its own two tables (authors, and books with a foreign key, an integer, a real, a text, a blob, a
nullable text and a two-column unique constraint) through the endpoint, inserts, joins, filters with parameters,
updates, deletes, and runs interactive transactions that commit, that throw and so roll back, and savepoints; it
prints what the ORM returned, and the tests check those values and the database file itself. Every request goes on
a new connection, so one transaction's requests land on different workers: the scripts record which worker
(``X-Test-Worker``) answered each request of each transaction.

Prisma needs a generated client: ``prisma generate`` runs here from npm alone (Prisma 7 compiles queries in WASM,
so there is no query engine binary). It does not need the schema engine either, but the CLI downloads that binary
before it starts unless ``PRISMA_SCHEMA_ENGINE_BINARY`` names an existing file, so it is pointed at the null device.

The scripts run one after another: they share the server's one SQLite file, whose write lock an interactive
transaction holds across requests.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, node_with, serving
from .support.prisma import prisma_bundle

JS = ROOT / "tests" / "js"
NODE_MODULES = ROOT / "node_modules"
PACKAGES = ["@libsql/client", "drizzle-orm", "kysely", "@libsql/kysely-libsql", "prisma", "@prisma/client",
            "@prisma/adapter-libsql", "esbuild"]
SERVERS = {"gunicorn-w4": ("wsgi-gunicorn", ["--workers", "4"]), "uvicorn-w4": ("asgi-uvicorn", ["--workers", "4"])}
PREFIXES = {"drizzle": "drizzle", "kysely": "kysely", "prisma": "prisma"}  # Prisma's are in its generated models

AUTHORS = ["Ursula K. Le Guin", "Stanisław Lem", "Octavia E. Butler"]
KINDRED_COVER = "it's ☃".encode().hex()
# (id, author id, title, pages, price, cover as hex, subtitle), as inserted.
BOOKS = [
    (1, 1, "The Dispossessed", 387, 12.5, "000102ff", "An Ambiguous Utopia"),
    (2, 1, "A Wizard of Earthsea", 183, 9.99, None, None),
    (3, 2, "Solaris", 204, 0.1, "", None),  # an empty blob, not NULL
    (4, 3, "Kindred", 264, 1e-7, KINDRED_COVER, None),
]
JOINED = [{"title": "The Dispossessed", "author": AUTHORS[0], "price": 12.5},
          {"title": "Solaris", "author": AUTHORS[1], "price": 0.1}]
NO_SUBTITLE = [{"title": "A Wizard of Earthsea"}, {"title": "Solaris"}, {"title": "Kindred"}]
RAW = [{"kind": "real", "cover": KINDRED_COVER.upper(), "n": 8}]  # SQLite's typeof, hex and length, in the file
TITLES_AFTER_COMMIT = ["The Dispossessed", "A Wizard of Earthsea", "Kindred", "The Fifth Season"]
AUTHORS_AFTER_COMMIT = [*AUTHORS, "N. K. Jemisin"]


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(*PACKAGES)


PRISMA_SCHEMA = """generator client {
  provider     = "prisma-client"
  output       = "./generated"
  runtime      = "nodejs"
  moduleFormat = "esm"
}

datasource db {
  provider = "sqlite"
}

model Author {
  id    Int    @id @default(autoincrement())
  name  String @unique
  books Book[]

  @@map("prisma_authors")
}

model Book {
  id       Int     @id @default(autoincrement())
  authorId Int     @map("author_id")
  author   Author  @relation(fields: [authorId], references: [id])
  title    String
  pages    Int
  price    Float
  cover    Bytes?
  subtitle String?

  @@unique([authorId, title], map: "prisma_books_author_title")
  @@map("prisma_books")
}
"""


@pytest.fixture(scope="module")
def prisma_script(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/js/orm-prisma-libsql.mjs, bundled with a client generated for its two tables (once per module)."""
    return prisma_bundle(node, tmp_path_factory.mktemp("prisma-libsql"), PRISMA_SCHEMA, "orm-prisma-libsql")


@dataclass(frozen=True)
class Runs:
    server: str
    database: Path
    out: dict[str, dict[str, Any]]  # ORM -> what its script printed


def run_script(node: str, script: Path, url: str, prefix: str) -> dict[str, Any]:
    payload = {"url": f"{url}/sql/lite/", "token": "lite-token", "prefix": prefix}
    done = subprocess.run([node, str(script)], input=json.dumps(payload).encode(), capture_output=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stderr.decode()[-3000:]}"
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.fixture(scope="module", params=list(SERVERS))
def runs(request: pytest.FixtureRequest, node: str, prisma_script: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """One server start per server kind; each ORM's script against it, one after another."""
    kind, args = SERVERS[request.param]
    tmp = tmp_path_factory.mktemp("orms-libsql")
    env = {"SQLHTTP_TEST_SQLITE": str(tmp / "lite.db"), "SQLHTTP_SESSION_DIR": str(tmp / "sessions"),
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    scripts = {"drizzle": JS / "orm-drizzle-libsql.mjs", "kysely": JS / "orm-kysely-libsql.mjs",
               "prisma": prisma_script}
    with serving(kind, env, args) as url:
        out = {orm: run_script(node, script, url, PREFIXES[orm]) for orm, script in scripts.items()}
        yield Runs(request.param, tmp / "lite.db", out)


@pytest.fixture
def drizzle(runs: Runs) -> dict[str, Any]:
    return runs.out["drizzle"]


@pytest.fixture
def kysely(runs: Runs) -> dict[str, Any]:
    return runs.out["kysely"]


@pytest.fixture
def prisma(runs: Runs) -> dict[str, Any]:
    return runs.out["prisma"]


def books_as_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows of books as the ORMs give them (authorId or author_id; a blob as {"hex": ...}) as BOOKS' tuples."""
    def cover(value: dict[str, str] | None) -> str | None:
        return None if value is None else value["hex"]
    return [(r["id"], r.get("authorId", r.get("author_id")), r["title"], r["pages"], r["price"], cover(r["cover"]),
             r["subtitle"]) for r in rows]


def database_books(path: Path, prefix: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"SELECT id, author_id, title, pages, price, cover, subtitle FROM {prefix}_books "
                                  "ORDER BY id").fetchall()
    return [(*row[:5], None if row[5] is None else bytes(row[5]).hex(), row[6]) for row in rows]


def database_authors(path: Path, prefix: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"SELECT id, name FROM {prefix}_authors ORDER BY id").fetchall()
    return [{"id": id_, "name": name} for id_, name in rows]


# -- Drizzle ------------------------------------------------------------------------------------------------------


def test_drizzle_inserts_and_reads_exact_values(drizzle: dict[str, Any]) -> None:
    assert drizzle["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                                  {"id": 3, "name": AUTHORS[2]}]
    assert books_as_tuples(drizzle["books"]) == BOOKS  # INSERT ... RETURNING, the blob a Buffer
    assert drizzle["joined"] == JOINED
    assert drizzle["inList"] == [{"id": 3, "title": "Solaris"}, {"id": 4, "title": "Kindred"}]
    assert drizzle["nullable"] == NO_SUBTITLE
    # count() is mapped to a number; sum() is Drizzle's string, whatever the driver gives.
    assert drizzle["totals"] == [{"author": AUTHORS[2], "books": 1, "pages": "264"},
                                 {"author": AUTHORS[1], "books": 1, "pages": "204"},
                                 {"author": AUTHORS[0], "books": 2, "pages": "570"}]
    assert drizzle["relational"] == [{"id": 1, "name": AUTHORS[0], "books": [
        {"title": "The Dispossessed", "pages": 387}, {"title": "A Wizard of Earthsea", "pages": 183}]}]
    assert drizzle["prepared"] == [{"title": "Solaris"}]  # a placeholder filled at execution
    assert drizzle["raw"] == RAW


def test_drizzle_constraint_errors(drizzle: dict[str, Any]) -> None:
    for step, code, message in (
            ("duplicate", "SQLITE_CONSTRAINT_UNIQUE", "UNIQUE constraint failed: drizzle_authors.name"),
            ("duplicatePair", "SQLITE_CONSTRAINT_UNIQUE",
             "UNIQUE constraint failed: drizzle_books.author_id, drizzle_books.title"),
            ("notNull", "SQLITE_CONSTRAINT_NOTNULL", "NOT NULL constraint failed: drizzle_books.pages")):
        error = drizzle[step]["error"]  # Drizzle's DrizzleQueryError, with the client's LibsqlError as its cause
        assert error == {"name": "Error", "causeName": "LibsqlError", "code": code,
                         "message": f"{code}: SQLite error: {message}"}, step


def test_drizzle_updates_deletes_and_batches(drizzle: dict[str, Any]) -> None:
    assert drizzle["updated"] == [{"id": 1, "price": 15, "subtitle": "An Ambiguous Utopia (revised)"}]
    assert drizzle["updatedRows"] == 2
    assert drizzle["deleted"] == [{"title": "Solaris"}]
    # db.batch(): one request, in one transaction; the count already sees the insert before it.
    assert drizzle["batch"] == [[{"id": 4, "name": "Batch Author"}], [{"n": 4}]]
    error = drizzle["failedBatch"]["error"]
    assert (error["name"], error["code"]) == ("LibsqlBatchError", "SQLITE_CONSTRAINT_UNIQUE")
    assert drizzle["afterFailedBatch"] == [*AUTHORS, "Batch Author"]  # the first step was rolled back with it


def test_drizzle_transactions_commit_and_roll_back(drizzle: dict[str, Any]) -> None:
    assert drizzle["committed"] == {"ok": {"inside": 1}}
    assert drizzle["afterCommit"] == {"authors": [*AUTHORS, "Batch Author", "N. K. Jemisin"],
                                      "titles": TITLES_AFTER_COMMIT}
    assert drizzle["rolledBackInside"] == 1  # the transaction saw its own insert...
    assert drizzle["rolledBack"]["error"]["message"] == "changed my mind"
    # ...and after the throw none of it is there: no author, no book, Kindred's price unchanged.
    assert drizzle["afterRollback"] == {**drizzle["afterCommit"], "kindred": 1e-7}
    assert drizzle["explicitRollback"]["error"] == {"name": "DrizzleError", "causeName": "DrizzleError",
                                                    "message": "Rollback", "code": None}  # tx.rollback()
    failed = drizzle["failedInside"]["error"]
    assert (failed["causeName"], failed["code"]) == ("LibsqlBatchError", "SQLITE_CONSTRAINT_UNIQUE")
    assert drizzle["afterFailures"] == drizzle["afterCommit"]["authors"]  # "Before The Failure" went with it


def test_drizzle_nested_transactions_are_savepoints(drizzle: dict[str, Any]) -> None:
    # The inner transaction that returned was released; the one that threw (with its own nested one, released
    # into it) was rolled back to its savepoint; the outer one committed.
    assert drizzle["nested"] == {"ok": {"kept": "released", "dropped": "inner failure", "inside": ["Inner Kept"]}}
    assert drizzle["afterNested"] == [*AUTHORS, "Batch Author", "N. K. Jemisin", "Outer Author", "Inner Kept"]


# -- Kysely -------------------------------------------------------------------------------------------------------


def test_kysely_schema_builder_and_introspection(kysely: dict[str, Any]) -> None:
    # SQLite's own pragma_table_info: an INTEGER PRIMARY KEY is not NOT NULL; AUTOINCREMENT is read from the DDL.
    assert kysely["introspected"] == [
        {"name": "kysely_authors", "columns": [["id", "INTEGER", True, True], ["name", "TEXT", False, False]]},
        {"name": "kysely_books", "columns": [
            ["id", "INTEGER", True, True], ["author_id", "INTEGER", False, False], ["title", "TEXT", False, False],
            ["pages", "INTEGER", False, False], ["price", "REAL", False, False], ["cover", "BLOB", True, False],
            ["subtitle", "TEXT", True, False]]},
    ]


def test_kysely_inserts_and_reads_exact_values(kysely: dict[str, Any]) -> None:
    assert kysely["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                                 {"id": 3, "name": AUTHORS[2]}]
    assert books_as_tuples(kysely["books"]) == BOOKS  # the blob an ArrayBuffer, as the client gives it
    assert (kysely["insertId"], kysely["insertedRows"]) == ("4n", "1n")  # lastInsertRowid, a bigint
    assert kysely["joined"] == JOINED
    assert kysely["nullable"] == NO_SUBTITLE
    assert kysely["totals"] == [{"name": AUTHORS[2], "books": 1, "pages": 264},
                                {"name": AUTHORS[1], "books": 1, "pages": 204},
                                {"name": AUTHORS[0], "books": 2, "pages": 570}]
    # jsonArrayFrom is json_group_array in a subquery: SQLite answers text (Kysely parses it only with a plugin).
    [nested] = kysely["nested"]
    assert nested["name"] == AUTHORS[0]
    assert json.loads(nested["books"]) == [{"title": "The Dispossessed", "pages": 387},
                                           {"title": "A Wizard of Earthsea", "pages": 183}]
    assert kysely["raw"] == RAW


def test_kysely_updates_deletes_and_errors(kysely: dict[str, Any]) -> None:
    assert kysely["duplicate"]["error"] == {
        "name": "LibsqlError", "code": "SQLITE_CONSTRAINT_UNIQUE",
        "message": "SQLITE_CONSTRAINT_UNIQUE: SQLite error: UNIQUE constraint failed: kysely_authors.name"}
    assert kysely["duplicatePair"]["error"]["message"] == (
        "SQLITE_CONSTRAINT_UNIQUE: SQLite error: UNIQUE constraint failed: kysely_books.author_id, kysely_books.title")
    assert (kysely["updatedRows"], kysely["deletedRows"], kysely["removedRows"]) == ("1n", "1n", "1n")
    assert kysely["upserted"] == [{"id": 2, "name": "Stanisław Lem (again)"}]  # ON CONFLICT ... DO UPDATE


def test_kysely_transactions_commit_and_roll_back(kysely: dict[str, Any]) -> None:
    authors = [AUTHORS[0], "Stanisław Lem (again)", AUTHORS[2], "N. K. Jemisin"]
    assert kysely["committed"] == {"ok": {"inside": 1}}
    assert kysely["afterCommit"] == {"authors": authors, "titles": TITLES_AFTER_COMMIT}
    assert kysely["rolledBackInside"] == 1
    assert kysely["rolledBack"]["error"]["message"] == "changed my mind"
    assert kysely["afterRollback"] == {**kysely["afterCommit"], "kindred": 1e-7}
    failed = kysely["failedInside"]["error"]
    assert (failed["name"], failed["code"]) == ("LibsqlBatchError", "SQLITE_CONSTRAINT_UNIQUE")
    # The controlled transaction: SAVEPOINT and ROLLBACK TO in SQL undid the draft; Kysely's own savepoint() is
    # refused by the dialect, which has no savepoint methods.
    controlled = kysely["controlled"]["ok"]
    assert controlled["refused"]["message"] == "The `savepoint` method is not supported by this driver"
    assert controlled["inside"] == ["Controlled Author"]
    assert (controlled["committed"], controlled["rolledBack"]) == (True, False)
    assert kysely["controlledRollback"] == {"ok": {"committed": False, "rolledBack": True}}
    assert kysely["afterTransactions"] == [*authors, "Controlled Author"]  # not Before The Failure, not Abandoned


# -- Prisma -------------------------------------------------------------------------------------------------------


def test_prisma_creates_and_reads_exact_values(prisma: dict[str, Any]) -> None:
    assert prisma["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                                 {"id": 3, "name": AUTHORS[2]}]
    assert books_as_tuples(prisma["books"]) == BOOKS  # Bytes as a Uint8Array
    assert prisma["filtered"] == [{"title": row["title"], "price": row["price"], "author": {"name": row["author"]}}
                                  for row in JOINED]
    assert prisma["nullable"] == NO_SUBTITLE
    assert prisma["included"] == {"id": 1, "name": AUTHORS[0], "books": [
        {"title": "The Dispossessed", "pages": 387}, {"title": "A Wizard of Earthsea", "pages": 183}]}
    assert prisma["byCompoundKey"] == {"id": 3, "pages": 204}  # the @@unique pair as a key
    assert prisma["aggregate"] == {"_sum": {"pages": 1038}, "_max": {"price": 12.5}, "_count": 4}
    assert prisma["grouped"] == [{"_sum": {"pages": 570}, "authorId": 1}, {"_sum": {"pages": 204}, "authorId": 2},
                                 {"_sum": {"pages": 264}, "authorId": 3}]
    assert prisma["raw"] == RAW


def test_prisma_updates_deletes_and_errors(prisma: dict[str, Any]) -> None:
    assert prisma["updated"] == {"price": 15, "pages": 388, "subtitle": "An Ambiguous Utopia (revised)"}
    assert prisma["updatedMany"] == {"count": 2}
    assert prisma["deleted"] == {"title": "Solaris"}
    assert prisma["deletedMany"] == {"count": 0}
    # Over HTTP, @libsql/client gives errors no rawCode (the Hrana error has only a code string), so the adapter
    # cannot tell a unique violation (P2002) from any other: it is P2039 with SQLite's message, as against sqld.
    for step, columns in (("duplicate", "prisma_authors.name"),
                          ("duplicatePair", "prisma_books.author_id, prisma_books.title")):
        error = prisma[step]["error"]
        assert (error["name"], error["code"]) == ("PrismaClientKnownRequestError", "P2039"), step
        cause = error["meta"]["driverAdapterError"]["cause"]
        message = f"SQLITE_CONSTRAINT_UNIQUE: SQLite error: UNIQUE constraint failed: {columns}"
        assert cause["originalMessage"] == message, step


def test_prisma_transactions_commit_and_roll_back(prisma: dict[str, Any]) -> None:
    assert prisma["committed"] == {"ok": {"inside": 1}}
    assert prisma["afterCommit"] == {"authors": AUTHORS_AFTER_COMMIT, "titles": TITLES_AFTER_COMMIT}
    assert prisma["rolledBackInside"] == 1
    assert prisma["rolledBack"]["error"]["message"] == "changed my mind"
    assert prisma["afterRollback"] == {**prisma["afterCommit"], "kindred": 1e-7}
    for step in ("failedInside", "failedNestedWrite", "failedSequential"):
        error = prisma[step]["error"]
        assert error["code"] == "P2039" and "UNIQUE constraint failed" in error["message"], step
    # A nested write and the array form of $transaction are transactions too: all of it, or none.
    assert prisma["nestedWrite"] == {"ok": {"id": 5, "name": "Ted Chiang", "books": [
        {"title": "Exhalation"}, {"title": "Stories of Your Life"}]}}
    assert prisma["sequential"] == {"ok": [{"name": "Sequential Author"}, 6]}
    # Not Rolled Back Author, Before The Failure, Half Written nor Doomed Sequential Author.
    assert prisma["afterTransactions"] == [*AUTHORS_AFTER_COMMIT, "Ted Chiang", "Sequential Author"]
    assert [b["title"] for b in prisma["finalBooks"]] == [*TITLES_AFTER_COMMIT, "Exhalation", "Stories of Your Life"]


# -- every ORM ----------------------------------------------------------------------------------------------------


# The requests of each transaction: one per statement (the first carries BEGIN), then COMMIT or ROLLBACK. So each
# was interactive, statement by statement over one stream, and not folded into one batch.
REQUESTS = {
    "drizzle": {"commit": 4, "rollback": 5, "explicitRollback": 2, "failedInside": 3,
                # insert, savepoint, insert, release, savepoint, insert, savepoint, insert, release, rollback to,
                # select, commit
                "nested": 12},
    # Kysely's refused savepoint() sends nothing.
    "kysely": {"commit": 4, "rollback": 5, "failedInside": 3, "controlled": 7, "controlledRollback": 2},
    "prisma": {"commit": 4, "rollback": 5, "failedInside": 3, "nestedWrite": 5, "failedNestedWrite": 3,
               "sequential": 3, "failedSequential": 3},
}


@pytest.mark.parametrize("orm", list(PREFIXES))
def test_each_transaction_was_interactive_and_its_answers_name_a_worker(runs: Runs, orm: str) -> None:
    workers = runs.out[orm]["transactions"]
    assert {name: len(answers) for name, answers in workers.items()} == REQUESTS[orm], workers
    assert all(isinstance(pid, str) and pid.isdigit() for answers in workers.values() for pid in answers), workers


def test_transactions_reached_several_workers(runs: Runs) -> None:
    """New connections for every request over four workers: some transaction's requests reached two or more of
    them, and still found their one database connection (the values above)."""
    spread = {orm: max(len(set(answers)) for answers in out["transactions"].values()) for orm, out in runs.out.items()}
    assert max(spread.values()) >= 2, {orm: out["transactions"] for orm, out in runs.out.items()}
    workers = {pid for out in runs.out.values() for answers in out["transactions"].values() for pid in answers}
    assert len(workers) >= 2, workers


@pytest.mark.parametrize("orm", list(PREFIXES))
def test_foreign_keys_are_enforced_as_by_sqld(runs: Runs, orm: str) -> None:
    """A book whose author does not exist (inserted in a transaction that is then rolled back, so the other steps
    see the same data either way) is refused, as sqld, whose connections have foreign keys on, refuses it."""
    orphan = runs.out[orm]["orphan"]
    assert "error" in orphan, orphan
    assert "SQLITE_CONSTRAINT_FOREIGNKEY: SQLite error: FOREIGN KEY constraint failed" in orphan["error"]["message"]


@pytest.mark.parametrize("orm", list(PREFIXES))
def test_the_database_file_holds_what_the_orm_read(runs: Runs, orm: str) -> None:
    out, prefix = runs.out[orm], PREFIXES[orm]
    assert books_as_tuples(out["finalBooks"]) == database_books(runs.database, prefix)
    assert out["finalAuthors"] == database_authors(runs.database, prefix)
    with sqlite3.connect(runs.database) as connection:
        assert connection.execute(f"PRAGMA foreign_key_check({prefix}_books)").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
