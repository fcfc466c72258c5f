"""Every row of the type table in docs/protocols/polyscale.md, round-tripped through the endpoint against each database.

A case is (column type, how the value goes in, the JSON that must come out). Values that JSON can carry go in as
bindings, the way a client sends them; the rest (bytes, NaN) go in as SQL literals.
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import pytest

from .support import Client, Database


class Case(NamedTuple):
    column: str
    value: Any  # a binding, or a Literal
    expected: Any


class Literal(str):
    """SQL text inserted as is, for values JSON cannot carry."""


BIG = 9007199254740993  # 2**53 + 1: not exact in a double
SAFE = 9007199254740991  # 2**53 - 1: the largest integer JavaScript holds exactly
UUID = "6f1c2a3e-8b9d-4e0f-a1b2-c3d4e5f60718"

PG_CASES = [
    Case("smallint", 7, 7),
    Case("integer", -2147483648, -2147483648),
    Case("bigint", SAFE, SAFE),
    Case("bigint", BIG, str(BIG)),
    Case("bigint", -BIG, str(-BIG)),
    Case("numeric(20,6)", "12345.678900", "12345.678900"),
    Case("numeric", "0.1000000000000000000000000001", "0.1000000000000000000000000001"),
    Case("real", 1.5, 1.5),
    Case("double precision", 0.1, 0.1),
    Case("double precision", Literal("'NaN'"), "NaN"),
    Case("double precision", Literal("'-Infinity'"), "-Infinity"),
    Case("boolean", True, True),
    Case("text", "héllo ☃ \"quoted\" \n", "héllo ☃ \"quoted\" \n"),
    Case("date", "2024-02-29", "2024-02-29"),
    Case("time", "12:34:56.789", "12:34:56.789"),  # the server's text: ISO 8601, its own digits
    Case("timetz", "12:34:56+02", "12:34:56+02:00"),
    Case("timestamp", "2024-01-02T03:04:05.123456", "2024-01-02T03:04:05.123456"),
    Case("timestamptz", "2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05+00:00"),
    Case("interval", "1 day 02:03:04.5", "1 day 02:03:04.5"),  # the server's text: a month is not 30 days
    Case("interval", "-1 second", "-00:00:01"),
    Case("interval", "1 month", "1 mon"),
    Case("numeric", "0.0000001", "0.0000001"),  # never scientific notation
    Case("timestamp", Literal("'infinity'"), "infinity"),
    Case("date", Literal("'0044-03-15 BC'"), "0044-03-15 BC"),
    Case("timestamptz", Literal("'1850-01-01 00:00:00-04:56:02'"), "1850-01-01T04:56:02+00:00"),
    Case("int4range", Literal("'[1,)'"), "[1,)"),
    Case("bytea", Literal("'\\x0102ff'::bytea"), "AQL/"),
    Case("uuid", UUID, UUID),
    Case("json", '{"a": [1, 2.5, null], "b": "x"}', {"a": [1, 2.5, None], "b": "x"}),
    Case("jsonb", '{"big": 9007199254740993, "d": 1.000000000000000000001}',
         {"big": BIG, "d": 1.000000000000000000001}),  # embedded as the server wrote it: exact numbers
    Case("integer[]", Literal("'{1,2,3}'"), [1, 2, 3]),
    Case("bigint[]", Literal("'{1,9007199254740993}'"), [1, str(BIG)]),
    Case("text[]", Literal("'{a,\"b c\"}'"), ["a", "b c"]),
    Case("inet", "10.0.0.1", "10.0.0.1"),
    Case("text", None, None),
]

MARIA_CASES = [
    Case("tinyint", 7, 7),
    Case("int", -2147483648, -2147483648),
    Case("bigint", SAFE, SAFE),
    Case("bigint", BIG, str(BIG)),
    Case("bigint unsigned", "18446744073709551615", "18446744073709551615"),
    Case("decimal(20,6)", "12345.678900", "12345.678900"),
    Case("float", 1.5, "1.5"),  # MariaDB sends FLOAT with 6 significant digits: its text, never a number
    Case("double", 0.1, 0.1),
    Case("boolean", True, 1),  # MariaDB has no boolean type: BOOLEAN is TINYINT(1)
    Case("varchar(100)", "héllo ☃ \"quoted\"", "héllo ☃ \"quoted\""),
    Case("date", "2024-02-29", "2024-02-29"),
    Case("time", "12:34:56", "12:34:56"),
    Case("time", "25:00:00", "25:00:00"),  # beyond a time of day: the server's own text
    Case("datetime(6)", "2024-01-02T03:04:05.123456", "2024-01-02T03:04:05.123456"),
    Case("timestamp", "2024-01-02 03:04:05", "2024-01-02T03:04:05"),
    Case("year", 2024, 2024),
    Case("varbinary(10)", Literal("x'0102ff'"), "AQL/"),
    Case("blob", Literal("x'00'"), "AA=="),
    Case("uuid", UUID, UUID),
    Case("json", '{"a": [1, 2.5]}', '{"a": [1, 2.5]}'),  # MariaDB JSON is LONGTEXT: it stays a string
    Case("varchar(10)", None, None),
]

SQLITE_CASES = [
    Case("integer", 7, 7),
    Case("integer", BIG, str(BIG)),
    Case("integer", 9223372036854775807, "9223372036854775807"),
    Case("real", 1.5, 1.5),
    Case("text", "héllo ☃", "héllo ☃"),
    Case("blob", Literal("x'0102ff'"), "AQL/"),
    Case("boolean", True, 1),  # SQLite has no boolean type
    Case("text", None, None),
]

CASES = {"postgresql": PG_CASES, "mysql": MARIA_CASES, "sqlite": SQLITE_CASES}


@pytest.mark.parametrize("shape", ["rows", "full"])
def test_type_round_trip(client: Client, db: Database, shape: str) -> None:
    cases = CASES[db.family]
    table = f"types_{uuid.uuid4().hex[:10]}"
    columns = ", ".join(f"c{index} {case.column}" for index, case in enumerate(cases))
    db.run(f"create table {table} (id integer primary key, {columns})")
    try:
        for index, case in enumerate(cases):
            value, bindings = (case.value, None) if isinstance(case.value, Literal) else ("?", [case.value])
            reply = client.query(db, f"insert into {table} (id, c{index}) values ({index}, {value})", bindings)
            assert reply.status == 200, (case, reply.body)
        for index, case in enumerate(cases):
            reply = client.query(db, f"select c{index} as v from {table} where id = ?", [index], shape=shape)
            assert reply.status == 200, reply.body
            body = reply.json()
            rows = body if shape == "rows" else body["rows"]
            assert rows == [{"v": case.expected}], case
            if shape == "full":
                assert body["columns"][0]["name"] == "v"
    finally:
        db.run(f"drop table {table}")


def test_large_integers_are_strings_in_every_position(client: Client, db: Database) -> None:
    reply = client.query(db, f"select {BIG} as big, {SAFE} as safe, {-BIG} as neg")
    assert reply.json() == [{"big": str(BIG), "safe": SAFE, "neg": str(-BIG)}]


def test_decimals_are_never_in_scientific_notation() -> None:
    # str(Decimal) writes 1E-7 and 1E+3; a client must get the digits (every database's decimals go through this).
    from decimal import Decimal

    from sqlhttp_middleware.encoding import encode_value

    assert [encode_value(Decimal(text)) for text in ("1E-7", "1E+3", "-0.000000000000000000000001", "1.10", "NaN",
                                                     "-Infinity")] == [
        "0.0000001", "1000", "-0.000000000000000000000001", "1.10", "NaN", "-Infinity"]
