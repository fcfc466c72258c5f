"""SQL text that would hold a backend past any deadline is refused before it reaches the database, and a
statement's shape for the logs carries none of its values."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from sqlhttp_middleware.sqltext import MAX_COMMENT_DEPTH, MAX_OPERATOR_RUN, problem, shape

from .support import Client, Database, targets_for
from .test_batches import batch
from .test_neon import neon_headers


@pytest.fixture
def make_client(make_engine_client: Callable[..., Client]) -> Callable[..., Client]:
    return make_engine_client


# -- the lexer ----------------------------------------------------------------------------------------------------

FIT = [
    "select 1",
    "select 1 /* a comment */",
    "select 1 /* outer /* nested */ still outer */",
    "select '/*' as opener",
    "select \"/*\" from t",
    "select $$ /* $$",
    "select $tag$ /* $tag$",
    "select 1 -- /* a line comment\n",
    "select E'\\' /*' as escaped",
    "select 1 /* " + "-" * MAX_OPERATOR_RUN + " */",
    "select " + "/* " * MAX_COMMENT_DEPTH + "*/ " * MAX_COMMENT_DEPTH + "1",
]

UNFIT = {
    "select 1 /* never closed": "never closed",
    "select 1 /* outer /* nested */": "never closed",
    "/*" * 250_000: "operator characters",
    "select 1 /* " + "+" * (MAX_OPERATOR_RUN + 1) + " */": "operator characters",
    "select " + "/* " * (MAX_COMMENT_DEPTH + 1) + "*/ " * (MAX_COMMENT_DEPTH + 1): "nests",
    "select '" + "x" * 700_000 + "'": "longer than the limit",
}


@pytest.mark.parametrize("sql", FIT)
def test_ordinary_text_is_fit(sql: str) -> None:
    assert problem(sql, "postgresql", 256 * 1024) is None


@pytest.mark.parametrize(("sql", "why"), UNFIT.items(), ids=lambda value: value[:30])
def test_text_that_would_lex_for_minutes_is_unfit(sql: str, why: str) -> None:
    found = problem(sql, "postgresql", 600_000)
    assert found is not None and why in found


def test_mysql_comments_do_not_nest_and_backslashes_escape() -> None:
    assert problem("select 1 /* a /* b */", "mysql", 1000) is None  # MySQL's comment ends at the first */
    assert problem("select 'it\\'s /*'", "mysql", 1000) is None
    assert problem("select 'it\\'s' /*", "mysql", 1000) is not None


def test_the_limit_counts_utf8_bytes() -> None:
    text = "select '" + "é" * 600 + "'"  # 609 characters, 1,209 bytes
    assert problem(text, "postgresql", 1000) is not None
    assert problem(text, "postgresql", 1300) is None


def test_the_check_is_linear() -> None:
    started = time.perf_counter()
    for text in ("/*" * 500_000, "select 1 /* x */ " + "a, " * 200_000, "select '" + "/*" * 200_000 + "'"):
        problem(text, "postgresql", 10 * 1024 * 1024)
    assert time.perf_counter() - started < 5  # a quadratic walk over these would take minutes


def test_shape_drops_values_and_comments() -> None:
    sql = ("select * from users where email = 'alice@example.com' and pin = 4321 and note = E'pw\\'s' "
           "-- secret: hunter2\n and token = $$s3cr3t$$ /* key=abc */ and id = $1 and ratio > 1.5e3")
    shaped = shape(sql)
    assert shaped == "select * from users where email = ? and pin = ? and note = ? and token = ? and id = $1 " \
                     "and ratio > ?"
    for secret in ("alice", "4321", "pw", "hunter2", "s3cr3t", "abc", "1.5e3"):
        assert secret not in shaped
    assert shape('select "Col1", x1 from "T2"') == 'select "Col1", x1 from "T2"'  # names are not values
    assert shape("select 'a' " * 200, limit=50).endswith("…")


# -- through the mounts -------------------------------------------------------------------------------------------


def test_the_parse_hang_class_is_refused_at_once(make_client: Callable[..., Client], pg_database: Database) -> None:
    """Half a megabyte of comment openers kept PostgreSQL lexing for minutes, deaf to cancels; it never gets
    there, and the pool is untouched."""
    client = make_client(targets=targets_for(pg_database), max_body_bytes=2 * 1024 * 1024,
                         max_sql_bytes=1024 * 1024)
    started = time.monotonic()
    reply = client.query(pg_database, "select 1 " + "/*" * 250_000)
    assert reply.status == 400, reply.body
    assert "operator characters" in reply.json()["message"]
    assert time.monotonic() - started < 5
    assert client.core.pool_stats()["open_connections"] == 0  # nothing was sent
    neon = client.request("POST", "/sql", b'{"query": "select 1 /* never closed", "params": []}',
                          neon_headers(pg_database))
    assert neon.status == 400 and "never closed" in neon.json()["message"]


def test_a_long_statement_is_refused_and_a_batch_names_it(make_client: Callable[..., Client],
                                                          db: Database) -> None:
    client = make_client(targets=targets_for(db), max_sql_bytes=200)
    long_sql = "select '" + "x" * 300 + "'"
    reply = client.query(db, long_sql)
    assert reply.status == 400 and "longer than the limit of 200 bytes" in reply.json()["message"]
    name = f"t_{uuid.uuid4().hex[:8]}"
    reply = client.post(batch(db, [f"select 1 as {name}", long_sql]))
    assert reply.status == 400, reply.body
    assert "statement 1" in reply.json()["message"]
    assert client.query(db, "select 1 as ok").status == 200
