"""SQLite's storage classes with their edge values, through the endpoint, checked against SQLite's own values.

The rule (docs/protocols/polyscale.md, "Types"): a JSON number only when it is exactly the value; otherwise a
string: an integer's digits, a blob's (or non-UTF-8 text's) base64. SQLite's own values and ``typeof()`` come from
a direct connection. Each table is read on the WSGI and the ASGI mount, in PolyScale's rows (objects and arrays)
and full shapes; the two mounts must answer the same bytes.
"""

from __future__ import annotations

import base64
import math
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal

from .support import Client, Database, make_engine_clients, targets_for
from .support import rows_on_every_path as rows_of

SAFE = 2**53 - 1

# Per table: the declared type of its column (SQLite's affinity decides what is stored) and SQL literals.
TABLES: dict[str, tuple[str, list[str]]] = {
    "integer": ("integer", ["0", str(SAFE), str(SAFE + 1), str(SAFE + 2), str(-SAFE - 2), "9223372036854775807",
                            "-9223372036854775808", "9223372036854775808", "'12'", "'abc'", "1.0", "1.5"]),
    "real": ("real", ["0.1", "0.1 + 0.2", "5e-324", "1.7976931348623157e308", "-0.0", "1e999", "-1e999",
                      "0 / 0.0", "1", "9007199254740993", "2.5e-10"]),
    "text": ("text", ["'héllo ☃'", "''", "'😀'", "'a' || char(0) || 'b'", "'007'", "cast(x'ff' as text)",
                      "cast(x'c328' as text)", "12", "1.5"]),
    "blob": ("blob", ["x''", "x'00ff'", "zeroblob(3)", "randomblob(16)"]),
    "untyped": ("", ["1", "1.5", "'a'", "x'01'", "9223372036854775807", "'2024-02-29'", "-0.0"]),
    "numeric": ("numeric", ["'1.10'", "'9223372036854775808'", "'1e3'", "'abc'", "'0.1'", "3.0"]),
    "decimal(10,2)": ("decimal(10,2)", ["'12345.678900'", "0.1", "'9007199254740993'"]),
    "boolean": ("boolean", ["true", "false"]),
    "date": ("date", ["'2024-02-29'", "'0044-03-15 BC'", "'12345-01-01'", "2460000.5"]),
    "datetime": ("datetime", ["'2024-01-02 03:04:05.123456'", "current_timestamp", "'infinity'"]),
    "varchar(3)": ("varchar(3)", ["'abcdef'"]),
    "json": ("json", ["'{\"big\": 18446744073709551616, \"d\": 0.1000000000000000000001}'", "json_array(1, 2.5)"]),
}


def expected(value: Any, storage: str) -> Any:
    """The JSON the rule gives SQLite's value of storage class ``storage`` (read with bytes for text)."""
    if storage == "null":
        return None
    if storage == "integer":
        return value if -SAFE <= value <= SAFE else str(value)
    if storage == "real":
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if storage == "text":
        try:
            return value.decode()
        except UnicodeDecodeError:  # TEXT that is not UTF-8: its bytes
            return base64.b64encode(value).decode()
    assert storage == "blob"
    return base64.b64encode(value).decode()


def path_of(database: Database) -> str:
    return str(database.admin_url).removeprefix("sqlite:///")


@pytest.fixture(scope="module")
def tables(sqlite_database: Database) -> Iterator[dict[str, str]]:
    names = {kind: f"corpus_{uuid.uuid4().hex[:10]}" for kind in TABLES}
    connection = sqlite3.connect(path_of(sqlite_database))
    with connection:
        for kind, (declared, literals) in TABLES.items():
            connection.execute(f"create table {names[kind]} (id integer primary key, v {declared})")
            for index, literal in enumerate([*literals, "null"]):
                connection.execute(f"insert into {names[kind]} (id, v) values ({index}, {literal})")
    yield names
    with connection:
        for name in names.values():
            connection.execute(f"drop table {name}")
    connection.close()


@pytest.fixture(scope="module")
def clients(sqlite_database: Database, portal: BlockingPortal) -> Iterator[list[Client]]:
    options = {"targets": targets_for(sqlite_database)}
    made = make_engine_clients(options, portal)
    yield made
    for client in made:
        client.close()


def sqlite_values(database: Database, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path_of(database))
    connection.text_factory = bytes
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


@pytest.mark.parametrize("kind", TABLES)
def test_every_value_is_sqlites_own(kind: str, tables: dict[str, str], clients: list[Client],
                                    sqlite_database: Database) -> None:
    sql = f"select v, typeof(v) as t from {tables[kind]} order by id"
    own = sqlite_values(sqlite_database, sql)
    objects = rows_of(clients, sqlite_database, sql)
    assert len(objects) == len(TABLES[kind][1]) + 1
    for row, (value, storage) in zip(objects, own, strict=True):
        assert row["t"] == storage.decode()
        want = expected(value, row["t"])
        assert row["v"] == want and type(row["v"]) is type(want), (kind, row, value)
        if row["t"] == "real" and math.isfinite(value):
            assert math.copysign(1, row["v"]) == math.copysign(1, value)  # -0.0 keeps its sign
    assert rows_of(clients, sqlite_database, sql, rowMode="array") == [[row["v"], row["t"]] for row in objects]
    full = rows_of(clients, sqlite_database, sql, shape="full")
    assert full == objects


def test_a_mixed_column_is_encoded_value_by_value(tables: dict[str, str], clients: list[Client],
                                                  sqlite_database: Database) -> None:
    rows = rows_of(clients, sqlite_database, f"select v from {tables['untyped']} order by id", rowMode="array")
    assert rows == [[1], [1.5], ["a"], ["AQ=="], ["9223372036854775807"], ["2024-02-29"], [-0.0], [None]]


def test_text_that_is_not_utf8_fails_nothing(clients: list[Client], sqlite_database: Database) -> None:
    rows = rows_of(clients, sqlite_database, "select cast(x'ff' as text) as bad, 'ok' as good")
    assert rows == [{"bad": "/w==", "good": "ok"}]
