"""SQL Server's values as pymssql gives them, through PolyScale's encoding: no SQL Server runs here, so the values
are the Python objects pymssql's ``convert_db_value`` (``pymssql/_mssql.pyx``) builds for each column type, and the
column types are the DB-API codes pymssql reports. What a client receives is docs/protocols/polyscale.md's "Types"
rows for SQL Server."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson

from sqlhttp_middleware.dialects.mssql import MSSQLSupport
from sqlhttp_middleware.protocols.polyscale.encode import column_converters

UUID = "6f1c2a3e-8b9d-4e0f-a1b2-c3d4e5f60718"
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def answered(values: list[Any]) -> Any:
    """One row of ``values`` the way PolyScale's result builder encodes it (rows shape, arrays)."""
    row = list(values)
    for index, encode in column_converters([tuple(values)]):
        row[index] = encode(row[index])
    return orjson.loads(orjson.dumps([row]))[0]


def float32(number: float) -> float:
    value: float = struct.unpack("f", struct.pack("f", number))[0]
    return value


# (SQL Server type, pymssql's value for it, the JSON a client receives)
CASES: list[tuple[str, Any, Any]] = [
    ("tinyint", 255, 255),
    ("int", -2147483648, -2147483648),
    ("bigint", 9223372036854775807, "9223372036854775807"),
    ("bigint", 2**53 - 1, 2**53 - 1),
    ("bit", True, True),
    ("decimal(38,10)", Decimal("1234567890123456789012345678.0123456789"), "1234567890123456789012345678.0123456789"),
    ("money", Decimal("922337203685477.5807"), "922337203685477.5807"),
    ("decimal(38,10)", Decimal("0.0000001000"), "0.0000001000"),  # never '1.000E-7'
    ("decimal(38,10)", Decimal("0.0000000000"), "0.0000000000"),
    ("float", 0.30000000000000004, 0.30000000000000004),
    ("real", float32(0.1), 0.10000000149011612),  # a float32 widened: exactly a double
    ("date", dt.date(1, 1, 1), "0001-01-01"),
    ("datetime2(7)", dt.datetime(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59.999999"),
    ("datetimeoffset", dt.datetime(2024, 1, 2, 3, 4, 5, 123456, PLUS_TWO), "2024-01-02T03:04:05.123456+02:00"),
    ("time(7)", dt.time(23, 59, 59, 999999), "23:59:59.999999"),
    ("uniqueidentifier", uuid.UUID(UUID), UUID),
    ("varbinary", b"\x01\x02\xff", "AQL/"),
    ("nvarchar", "héllo ☃ 😀", "héllo ☃ 😀"),
    ("int", None, None),
]


def test_each_type_is_answered_as_the_table_says() -> None:
    assert answered([case[1] for case in CASES]) == [case[2] for case in CASES]
    for kind, value, expected in CASES:
        assert answered([value]) == [expected], kind


def test_column_types_are_named_from_pymssqls_codes() -> None:
    # pymssql's cursor.description type codes: STRING 1, BINARY 2, NUMBER 3, DATETIME 4, DECIMAL 5.
    cursor = SimpleNamespace(description=[(name, code) + (None,) * 5 for name, code in
                                          [("s", 1), ("b", 2), ("n", 3), ("d", 4), ("m", 5), ("x", 99)]])
    assert MSSQLSupport().column_types(cursor, []) == ["string", "binary", "number", "datetime", "decimal", None]
