"""End to end: ORMs on Neon's serverless driver (``@neondatabase/serverless`` in HTTP mode) against real servers.

Drizzle (``drizzle-orm/neon-http``), Kysely (``kysely-neon``) and Prisma 7 (``@prisma/adapter-neon``'s
``PrismaNeonHttp``) each run one node script (``tests/js/orm-*.mjs``) per server, gunicorn for WSGI and uvicorn for
ASGI. Each script builds its own two tables (authors, and books with a foreign key, a numeric price, a timestamptz,
a jsonb, a boolean and a text[]) through the endpoint, runs inserts, joins, filters, updates and deletes, and prints
what the ORM returned; the tests check those values, and check the tables directly in PostgreSQL.

Prisma needs a generated client: ``prisma generate`` runs here from npm alone (Prisma 7 compiles queries in WASM,
so there is no query engine binary). It does not need the schema engine either, but the CLI downloads that binary
before it starts unless ``PRISMA_SCHEMA_ENGINE_BINARY`` names an existing file, so it is pointed at the null device.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .support import ROOT, Database, node_with, serving
from .support.prisma import prisma_bundle

JS = ROOT / "tests" / "js"
NODE_MODULES = ROOT / "node_modules"
PACKAGES = ["@neondatabase/serverless", "drizzle-orm", "kysely", "kysely-neon", "prisma", "@prisma/client",
            "@prisma/adapter-neon", "esbuild"]
SERVERS = {"wsgi-gunicorn": "Wsgi", "asgi-uvicorn": "Asgi"}  # server -> its Prisma models' suffix
RUN = uuid.uuid4().hex[:8]  # table names carry it, so that runs (and the two servers) never share a table
CAMEL = {"authorId": "author_id", "publishedAt": "published_at", "inPrint": "in_print"}


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(*PACKAGES)


@dataclass(frozen=True)
class Server:
    kind: str
    url: str


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, pg_database: Database) -> Iterator[Server]:
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving(request.param, env) as url:
        yield Server(request.param, url)


def prefix(kind: str, orm: str) -> str:
    return f"orm_{RUN}_{SERVERS[kind].lower()}_{orm}"


def connection_string(db: Database) -> str:
    """What the Neon driver is given: the host is our target's name; the password is URL-encoded (it has @:/#%?)."""
    return f"postgresql://{quote(db.username, safe='')}:{quote(db.password, safe='')}@{db.key}/{quote(db.database)}"


@dataclass(frozen=True)
class Run:
    prefix: str
    out: dict[str, Any]


PRISMA_MODELS = """
model Author{model} {{
  id    Int          @id @default(autoincrement())
  name  String       @unique
  books Book{model}[]

  @@map("{prefix}_authors")
}}

model Book{model} {{
  id          Int          @id @default(autoincrement())
  authorId    Int          @map("author_id")
  author      Author{model} @relation(fields: [authorId], references: [id])
  title       String
  price       Decimal      @db.Decimal(10, 2)
  publishedAt DateTime     @map("published_at") @db.Timestamptz
  meta        Json
  inPrint     Boolean      @map("in_print")
  tags        String[]

  @@map("{prefix}_books")
}}
"""


@pytest.fixture(scope="module")
def prisma_script(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/js/orm-prisma.mjs, bundled with a client generated for every server's tables (once per module)."""
    header = ('generator client {\n  provider = "prisma-client"\n  output = "./generated"\n  runtime = "nodejs"\n'
              '  moduleFormat = "esm"\n}\n\ndatasource db {\n  provider = "postgresql"\n}\n')
    models = "".join(PRISMA_MODELS.format(model=model, prefix=prefix(kind, "prisma"))
                     for kind, model in SERVERS.items())
    return prisma_bundle(node, tmp_path_factory.mktemp("prisma"), header + models, "orm-prisma")


def run_script(node: str, script: Path, server: Server, db: Database, table_prefix: str) -> Run:
    payload = {"endpoint": f"{server.url}/sql", "connectionString": connection_string(db), "prefix": table_prefix,
               "model": SERVERS[server.kind]}
    done = subprocess.run([node, str(script)], input=json.dumps(payload).encode(), capture_output=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, f"{script.name} failed on {server.kind}:\n{done.stderr.decode()[-3000:]}"
    return Run(table_prefix, json.loads(done.stdout))


@pytest.fixture(scope="module")
def runs(node: str, prisma_script: Path, server: Server, pg_database: Database) -> Iterator[dict[str, Run]]:
    """Each ORM's script, once per server. One process per ORM (Drizzle sets the driver's type parsers for the
    whole process), all three at once: they work on tables of their own."""
    scripts = {"drizzle": JS / "orm-drizzle.mjs", "kysely": JS / "orm-kysely.mjs", "prisma": prisma_script}
    with ThreadPoolExecutor(len(scripts)) as pool:
        futures = {orm: pool.submit(run_script, node, script, server, pg_database, prefix(server.kind, orm))
                   for orm, script in scripts.items()}
        done = {orm: future.result() for orm, future in futures.items()}
    yield done
    for run in done.values():
        pg_database.run(f"DROP TABLE IF EXISTS {run.prefix}_books, {run.prefix}_authors")


@pytest.fixture
def drizzle(runs: dict[str, Run]) -> Run:
    return runs["drizzle"]


@pytest.fixture
def kysely(runs: dict[str, Run]) -> Run:
    return runs["kysely"]


@pytest.fixture
def prisma(runs: dict[str, Run]) -> Run:
    return runs["prisma"]


# -- what PostgreSQL itself holds ----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A timestamptz as JavaScript's ``Date.toISOString()`` writes it."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def database_books(db: Database, table_prefix: str) -> list[dict[str, Any]]:
    rows = db.run(f"SELECT id, author_id, title, price::text, published_at, meta, in_print, tags "
                  f"FROM {table_prefix}_books ORDER BY id")
    return [{"id": id_, "author_id": author_id, "title": title, "price": price, "published_at": iso(published_at),
             "meta": meta, "in_print": in_print, "tags": tags}
            for id_, author_id, title, price, published_at, meta, in_print, tags in rows]


def database_authors(db: Database, table_prefix: str) -> list[dict[str, Any]]:
    rows = db.run(f"SELECT id, name FROM {table_prefix}_authors ORDER BY id")
    return [{"id": id_, "name": name} for id_, name in rows]


def snake(row: dict[str, Any]) -> dict[str, Any]:
    return {CAMEL.get(key, key): value for key, value in row.items()}


BOOK_TITLES = ["The Dispossessed", "A Wizard of Earthsea", "Solaris", "Kindred"]
AUTHORS = ["Ursula K. Le Guin", "Stanisław Lem", "Octavia E. Butler"]
TRICKY_TAGS = ["fantasy", "a,b", 'quote"d', "NULL"]  # a comma, a quote and the word NULL survive the array literal
PUBLISHED = ["1974-05-01T12:00:00.000Z", "1968-11-01T00:00:00.123Z", "1961-06-15T08:30:00.000Z",
             "1979-06-01T23:59:59.999Z"]


# -- Drizzle ------------------------------------------------------------------------------------------------------


def test_drizzle_insert_returning_gives_exact_values(drizzle: Run) -> None:
    out = drizzle.out
    assert out["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                              {"id": 3, "name": AUTHORS[2]}]
    books = out["books"]
    assert [b["id"] for b in books] == [1, 2, 3, 4]  # the identity column
    assert [b["authorId"] for b in books] == [1, 1, 2, 3]
    assert [b["title"] for b in books] == BOOK_TITLES
    assert [b["price"] for b in books] == ["12.50", "9.99", "1234567.89", "0.10"]  # numeric(10, 2), exactly
    assert [b["publishedAt"] for b in books] == PUBLISHED
    assert books[0]["meta"] == {"pages": 387, "awards": ["Hugo", "Nebula"], "series": None}
    assert books[1]["meta"] == {"pages": 183, "series": {"name": "Earthsea", "n": 1}}
    assert books[2]["meta"] == {"original": "Solaris", "pl": "Głos Pana? nie — Solaris"}
    assert [b["inPrint"] for b in books] == [True, True, False, True]
    assert [b["tags"] for b in books] == [["sf", "utopia"], TRICKY_TAGS, ["sf"], []]


def test_drizzle_joins_filters_and_aggregates(drizzle: Run, pg_database: Database) -> None:
    out = drizzle.out
    assert out["joined"] == [
        {"title": "Solaris", "author": "Stanisław Lem", "price": "1234567.89"},
        {"title": "The Dispossessed", "author": "Ursula K. Le Guin", "price": "12.50"},
    ]
    assert out["inList"] == [{"id": 3, "title": "Solaris"}, {"id": 4, "title": "Kindred"}]
    assert out["leftJoin"] == [{"author": "Stanisław Lem", "title": None}]  # Solaris is out of print
    assert out["totals"] == [
        {"author": "Octavia E. Butler", "books": 1, "total": "0.10"},
        {"author": "Stanisław Lem", "books": 1, "total": "1234567.89"},
        {"author": "Ursula K. Le Guin", "books": 2, "total": "22.49"},
    ]
    [le_guin] = out["relational"]  # Drizzle's relational query: one statement with a JSON-aggregated subquery
    assert le_guin["name"] == AUTHORS[0]
    assert le_guin["books"] == [{"title": "The Dispossessed", "tags": ["sf", "utopia"]},
                                {"title": "A Wizard of Earthsea", "tags": TRICKY_TAGS}]
    [[text]] = pg_database.run(f"SELECT published_at::text FROM {drizzle.prefix}_books WHERE id = 2")
    assert out["raw"] == [{"text": text, "series": "Earthsea"}]  # PostgreSQL's own text, as the server wrote it


def test_drizzle_update_and_delete(drizzle: Run) -> None:
    out = drizzle.out
    assert out["updated"] == [{
        "id": 1, "price": "15.00", "inPrint": False,
        "meta": {"pages": 387, "awards": ["Hugo", "Nebula"], "series": None, "edited": True},
    }]
    assert sorted(row["title"] for row in out["deleted"]) == ["Solaris", "The Dispossessed"]
    assert out["duplicate"]["error"] == {
        "name": "NeonDbError", "code": "23505",
        "message": f'duplicate key value violates unique constraint "{drizzle.prefix}_authors_name_key"',
        "constraint": f"{drizzle.prefix}_authors_name_key", "detail": "Key (name)=(Batch Author) already exists.",
    }


def test_drizzle_batch_is_one_atomic_transaction(drizzle: Run, pg_database: Database) -> None:
    out = drizzle.out
    # One request: the count inside the transaction already sees the insert before it.
    assert out["batch"] == [[{"id": 4, "name": "Batch Author"}], [{"n": 4}], [{"tags": ["batched"]}]]
    error = out["failedBatch"]["error"]
    assert (error["name"], error["code"]) == ("NeonDbError", "23503")
    assert error["constraint"] == f"{drizzle.prefix}_books_author_id_fkey"
    assert error["detail"] == f'Key (author_id)=(999999) is not present in table "{drizzle.prefix}_authors".'
    assert out["doomed"] == []
    assert pg_database.run(f"SELECT count(*) FROM {drizzle.prefix}_authors WHERE name = 'Doomed Author'") == [(0,)]
    # The doomed insert did run (it took id 5 from the sequence, which no rollback returns; the failed duplicate
    # took 6), and was rolled back with the statement that failed after it.
    assert pg_database.run(f"SELECT last_value FROM {drizzle.prefix}_authors_id_seq") == [(6,)]
    assert [row["id"] for row in database_authors(pg_database, drizzle.prefix)] == [1, 2, 3, 4]


def test_drizzle_sees_what_the_database_holds(drizzle: Run, pg_database: Database) -> None:
    assert [snake(row) for row in drizzle.out["finalBooks"]] == database_books(pg_database, drizzle.prefix)
    assert drizzle.out["finalAuthors"] == database_authors(pg_database, drizzle.prefix)
    assert [row["title"] for row in drizzle.out["finalBooks"]] == ["A Wizard of Earthsea", "Kindred"]


# -- Kysely -------------------------------------------------------------------------------------------------------


def test_kysely_schema_builder_and_introspection(kysely: Run) -> None:
    authors, books = kysely.out["introspected"]
    assert authors == {"name": f"{kysely.prefix}_authors",
                       "columns": [["id", "int4", False, True], ["name", "text", False, False]]}
    assert books["name"] == f"{kysely.prefix}_books"
    assert books["columns"] == [
        ["id", "int4", False, True], ["author_id", "int4", False, False], ["title", "text", False, False],
        ["price", "numeric", False, False], ["published_at", "timestamptz", False, False],
        ["meta", "jsonb", False, False], ["in_print", "bool", False, False], ["tags", "_text", False, False],
    ]


def test_kysely_insert_returning_gives_exact_values(kysely: Run) -> None:
    out = kysely.out
    assert out["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                              {"id": 3, "name": AUTHORS[2]}]
    books = out["books"]
    assert [(b["id"], b["author_id"], b["title"]) for b in books] == [
        (1, 1, BOOK_TITLES[0]), (2, 1, BOOK_TITLES[1]), (3, 2, BOOK_TITLES[2]), (4, 3, BOOK_TITLES[3])]
    assert [b["price"] for b in books] == ["12.50", "9.99", "1234567.89", "0.10"]
    # Dates and PostgreSQL text with offsets both went in; the driver parsed the timestamptz text into Dates.
    assert [b["published_at"] for b in books] == PUBLISHED
    assert [b["meta"] for b in books] == [{"pages": 387, "awards": ["Hugo", "Nebula"]},
                                          {"pages": 183, "series": {"name": "Earthsea", "n": 1}},
                                          {"pl": "Głos Pana — Solaris"}, {}]
    assert [b["in_print"] for b in books] == [True, True, False, True]  # the last one from the column default
    assert [b["tags"] for b in books] == [["sf", "utopia"], TRICKY_TAGS, ["sf"], []]


def test_kysely_joins_filters_and_aggregates(kysely: Run) -> None:
    out = kysely.out
    assert out["joined"] == [
        {"title": "Solaris", "author": "Stanisław Lem", "price": "1234567.89"},
        {"title": "The Dispossessed", "author": "Ursula K. Le Guin", "price": "12.50"},
    ]
    assert out["inList"] == [{"id": 3, "title": "Solaris"}, {"id": 4, "title": "Kindred"}]
    assert out["jsonFilter"] == [{"title": "A Wizard of Earthsea", "series": "Earthsea"}]  # jsonb ->> and text[] @>
    assert out["totals"] == [  # count(*) is int8: a string, as node-postgres gives it
        {"name": "Octavia E. Butler", "books": "1", "total": "0.10"},
        {"name": "Stanisław Lem", "books": "1", "total": "1234567.89"},
        {"name": "Ursula K. Le Guin", "books": "2", "total": "22.49"},
    ]
    # jsonArrayFrom: json_agg in a subquery; numeric inside JSON is a JSON number.
    assert out["nested"] == [{"name": "Ursula K. Le Guin", "books": [
        {"title": "The Dispossessed", "price": 12.5, "tags": ["sf", "utopia"]},
        {"title": "A Wizard of Earthsea", "price": 9.99, "tags": TRICKY_TAGS},
    ]}]


def test_kysely_update_delete_and_affected_rows(kysely: Run) -> None:
    out = kysely.out  # the counts come from the command and rowCount of our replies
    assert out["updatedRows"] == "1"
    assert out["deletedRows"] == "2"
    assert out["insertedRows"] == "2"
    assert out["cascadedRows"] == "2"
    assert out["upserted"] == [{"id": 2, "name": "Stanisław Lem (again)"}]  # ON CONFLICT ... DO UPDATE
    assert out["notNull"]["error"] == {
        "name": "NeonDbError", "code": "23502", "table": f"{kysely.prefix}_books", "column": "price",
        "message": f'null value in column "price" of relation "{kysely.prefix}_books" violates not-null constraint',
    }
    assert out["transaction"]["error"]["message"].startswith("NeonDialect doesn't support interactive transactions")


def test_kysely_sees_what_the_database_holds(kysely: Run, pg_database: Database) -> None:
    assert kysely.out["finalBooks"] == database_books(pg_database, kysely.prefix)
    assert kysely.out["finalAuthors"] == database_authors(pg_database, kysely.prefix)
    # The Temp authors' book went with them (ON DELETE CASCADE); the updated and the out-of-print books were deleted.
    assert [row["title"] for row in kysely.out["finalBooks"]] == ["A Wizard of Earthsea", "Kindred"]


# -- Prisma -------------------------------------------------------------------------------------------------------


def test_prisma_creates_and_reads_exact_values(prisma: Run) -> None:
    out = prisma.out
    assert out["authors"] == [{"id": 1, "name": AUTHORS[0]}, {"id": 2, "name": AUTHORS[1]},
                              {"id": 3, "name": AUTHORS[2]}]
    books = out["books"]
    assert [(b["id"], b["authorId"], b["title"]) for b in books] == [
        (1, 1, BOOK_TITLES[0]), (2, 1, BOOK_TITLES[1]), (3, 2, BOOK_TITLES[2]), (4, 3, BOOK_TITLES[3])]
    # Prisma's Decimal drops trailing zeros when it prints: compare as numbers; the exact text is checked below.
    assert [Decimal(b["price"]) for b in books] == [Decimal("12.50"), Decimal("9.99"), Decimal("1234567.89"),
                                                    Decimal("0.10")]
    assert [b["publishedAt"] for b in books] == PUBLISHED
    assert books[1]["meta"] == {"pages": 183, "series": {"name": "Earthsea", "n": 1}}
    assert [b["inPrint"] for b in books] == [True, True, False, True]
    assert [b["tags"] for b in books] == [["sf", "utopia"], TRICKY_TAGS, ["sf"], []]


def test_prisma_relations_filters_and_aggregates(prisma: Run) -> None:
    out = prisma.out
    assert out["filtered"] == [
        {"title": "Solaris", "price": "1234567.89", "author": {"name": "Stanisław Lem"}},
        {"title": "The Dispossessed", "price": "12.5", "author": {"name": "Ursula K. Le Guin"}},
    ]
    assert out["inList"] == [{"id": 3, "title": "Solaris"}]  # `in` and text[] `has`
    assert out["included"]["name"] == AUTHORS[0]
    assert [(b["title"], b["tags"]) for b in out["included"]["books"]] == [("The Dispossessed", ["sf", "utopia"]),
                                                                           ("A Wizard of Earthsea", TRICKY_TAGS)]
    assert out["jsonFilter"] == [{"title": "A Wizard of Earthsea"}]
    assert out["aggregate"] == {"_sum": {"price": "1234590.48"}, "_max": {"publishedAt": PUBLISHED[3]}, "_count": 4}
    assert out["grouped"] == [{"authorId": 1, "_sum": {"price": "22.49"}},
                              {"authorId": 2, "_sum": {"price": "1234567.89"}},
                              {"authorId": 3, "_sum": {"price": "0.1"}}]
    assert out["raw"] == [{"x": "x", "n": 42, "big": "9007199254740993"}]  # int8 beyond 2**53, exactly


def test_prisma_updates_deletes_and_errors(prisma: Run) -> None:
    out = prisma.out
    assert out["updated"] == {"price": "15", "inPrint": False, "tags": ["sf", "utopia", "edited"]}
    assert out["updatedMany"] == {"count": 2}
    assert out["deleted"] == {"count": 2}
    # PrismaNeonHttp does not map driver errors to Prisma's P-codes (its WebSocket adapter does): the SQLSTATE and
    # message of our 400 reply come through as the error's code and message, as they would from Neon's server.
    assert out["duplicate"]["error"]["code"] == "23505"
    assert out["duplicate"]["error"]["message"] == (
        f'duplicate key value violates unique constraint "{prisma.prefix}_authors_name_key"')
    assert out["foreignKey"]["error"]["code"] == "23503"
    assert out["foreignKey"]["error"]["message"] == (
        f'insert or update on table "{prisma.prefix}_books" violates foreign key constraint '
        f'"{prisma.prefix}_books_author_id_fkey"')
    # Nested writes and $transaction need an interactive transaction: the HTTP adapter refuses them itself.
    assert out["nestedWrite"]["error"]["message"] == "Transactions are not supported in HTTP mode"
    assert out["transaction"]["error"]["message"] == "Transactions are not supported in HTTP mode"


def test_prisma_sees_what_the_database_holds(prisma: Run, pg_database: Database) -> None:
    stored = database_books(pg_database, prisma.prefix)
    returned = [snake(row) for row in prisma.out["finalBooks"]]
    assert [Decimal(row.pop("price")) for row in returned] == [Decimal(row.pop("price")) for row in stored]
    assert returned == stored
    assert [row["meta"] for row in stored] == [{"checked": True}, {"checked": True}]  # updateMany wrote jsonb
    assert prisma.out["finalAuthors"] == database_authors(pg_database, prisma.prefix)
    assert pg_database.run(f"SELECT price::text FROM {prisma.prefix}_books ORDER BY id") == [("9.99",), ("0.10",)]
