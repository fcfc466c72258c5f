"""Every MariaDB column type with its edge values, through the endpoint, checked against the server's own text.

The rule (docs/protocols/polyscale.md, "Types"): a JSON number only when it is exactly the value; otherwise a
string, the server's text (``CAST(v AS CHAR)``) unless the type table names an exact form (ISO 8601, base64
bytes). Each table is read on the WSGI and the ASGI mount, in PolyScale's rows (objects and arrays) and full
shapes; the two mounts must answer the same bytes. Values go in as SQL literals, some under a permissive SQL mode
(zero and invalid dates), through a direct connection.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson
import pytest
from anyio.from_thread import BlockingPortal

from sqlhttp_middleware.dialects.mysql import exact_json
from sqlhttp_middleware.protocols.polyscale.encode import column_converters

from .support import Client, Database, make_engine_clients, targets_for
from .support import rows_on_every_path as rows_of

SAFE = 2**53 - 1


def integer(value: Any, text: str) -> bool:
    number = int(text)
    return value == (number if -SAFE <= number <= SAFE else text) and type(value) is type(
        number if -SAFE <= number <= SAFE else text)


def same_text(value: Any, text: str) -> bool:
    return isinstance(value, str) and value == text


def double(value: Any, text: str) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == float(text)


def iso_or_text(value: Any, text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text) if " " in text else dt.date.fromisoformat(text)
    except ValueError:
        return value == text  # a zero or invalid date: the server's text
    return value == text.replace(" ", "T")


def base64_of_hex(value: Any, text: str) -> bool:
    return isinstance(value, str) and base64.b64decode(value, validate=True).hex().upper() == text


def bits(value: Any, text: str) -> bool:
    return isinstance(value, str) and int.from_bytes(base64.b64decode(value, validate=True), "big") == int(text)


class Kind(NamedTuple):
    column: str
    literals: list[str]
    check: Callable[[Any, str], bool]
    reference: str = "cast(v as char)"  # the server's text, the check's second argument


PERMISSIVE = "set session sql_mode = 'ALLOW_INVALID_DATES'"  # no NO_ZERO_DATE, no strict mode: zero dates go in

KINDS = {
    "tinyint": Kind("tinyint", ["-128", "127", "0"], integer),
    "tinyint unsigned": Kind("tinyint unsigned", ["0", "255"], integer),
    "smallint": Kind("smallint", ["-32768", "32767"], integer),
    "smallint unsigned": Kind("smallint unsigned", ["65535"], integer),
    "mediumint": Kind("mediumint", ["-8388608", "8388607"], integer),
    "mediumint unsigned": Kind("mediumint unsigned", ["16777215"], integer),
    "int": Kind("int", ["-2147483648", "2147483647"], integer),
    "int unsigned": Kind("int unsigned", ["4294967295"], integer),
    "bigint": Kind("bigint", ["-9223372036854775808", "9223372036854775807", str(SAFE), str(SAFE + 1),
                              str(-SAFE - 2)], integer),
    "bigint unsigned": Kind("bigint unsigned", ["0", "18446744073709551615"], integer),
    "decimal(65,30)": Kind("decimal(65,30)", [
        "0.000000000000000000000000000001", "-0.000000000000000000000000000001",
        "99999999999999999999999999999999999.999999999999999999999999999999", "0", "-1", "1e-10",
    ], same_text),
    "decimal(10,0)": Kind("decimal(10,0)", ["9999999999", "-9999999999"], same_text),
    "decimal(5,2)": Kind("decimal(5,2)", ["-0.01", "123.40"], same_text),
    # MariaDB sends FLOAT with 6 significant digits: the text, since no number is known to be the value.
    "float": Kind("float", ["1.2345678", "16777217", "0.1", "3.4028234e38", "-1.17549435e-38", "0", "1.5"],
                  same_text),
    "float(10,4)": Kind("float(10,4)", ["1.23456", "-3400"], same_text),
    "double": Kind("double", ["0.1", "0.30000000000000004", "5e-324", "1.7976931348623157e308",
                              "-2.2250738585072014e-308", "1e22", "123456789012345680000", "9007199254740993",
                              "0"], double),
    "double(10,4)": Kind("double(10,4)", ["1.23456", "-3400", "0.0001"], double),
    "bit(1)": Kind("bit(1)", ["b'0'", "b'1'"], bits, "v + 0"),
    "bit(7)": Kind("bit(7)", ["b'101'"], bits, "v + 0"),
    "bit(64)": Kind("bit(64)", ["b'" + "1" * 64 + "'", "0"], bits, "v + 0"),
    "year": Kind("year", ["0", "1901", "2155"], lambda value, text: value == int(text)),
    "time": Kind("time", ["'-838:59:59'", "'838:59:59'", "'00:00:00'", "'-00:00:01'", "'12:34:56'",
                          "'25:00:00'"], same_text),
    "time(6)": Kind("time(6)", ["'12:34:56.000001'", "'-838:59:59.000000'", "'00:00:00.5'"], same_text),
    "date": Kind("date", ["'1000-01-01'", "'9999-12-31'", "'0001-01-01'", "'0000-00-00'", "'2024-02-30'",
                          "'2024-00-00'", "'2024-02-29'"], iso_or_text),
    "datetime": Kind("datetime", ["'2024-01-02 03:04:05'", "'0000-00-00 00:00:00'", "'2024-02-30 12:00:00'"],
                     iso_or_text),
    "datetime(6)": Kind("datetime(6)", ["'2024-01-02 03:04:05.123456'", "'9999-12-31 23:59:59.999999'",
                                        "'1000-01-01 00:00:00.000000'", "'0000-00-00 00:00:00'"], iso_or_text),
    "datetime(3)": Kind("datetime(3)", ["'2024-01-02 03:04:05.120'"], iso_or_text),
    "timestamp(3)": Kind("timestamp(3) null", ["'1970-01-01 00:00:01.000'", "'2038-01-19 03:14:07.999'",
                                               "'0000-00-00 00:00:00'"], iso_or_text),
    "enum": Kind("enum('a','b','✓')", ["'a'", "'✓'", "''"], same_text),
    "set": Kind("set('a','b','c')", ["'a,c'", "''", "'c,b'"], same_text),
    # MariaDB's JSON is LONGTEXT: the server's text, whose numbers no parser has touched.
    "json": Kind("json", ["'{\"big\": 18446744073709551616, \"d\": 0.1000000000000000000001, \"e\": 1e400}'",
                          "'[1, 2.5, null]'"], same_text),
    "varchar latin1": Kind("varchar(20) character set latin1", ["'ÿé'", "'a\\0b'"], same_text),
    "varchar utf8mb4": Kind("varchar(20) character set utf8mb4", ["'😀 ☃'", "'line\\nbreak \"q\"'"], same_text),
    "varchar cp1251": Kind("varchar(20) character set cp1251", ["'Жж'"], same_text),
    "varchar ucs2": Kind("varchar(20) character set ucs2", ["'Ωμ'"], same_text),
    "char": Kind("char(5)", ["'ab'"], same_text),  # trailing spaces are removed by the server, in both columns
    "text": Kind("text", ["repeat('x', 1000)"], same_text),
    "binary(4)": Kind("binary(4)", ["x'00ff'"], base64_of_hex, "hex(v)"),
    "varbinary": Kind("varbinary(10)", ["x''", "x'ff00'", "x'c328'"], base64_of_hex, "hex(v)"),
    "blob": Kind("blob", ["x'00'", "x'ffd8ffe0'"], base64_of_hex, "hex(v)"),
    "longblob": Kind("longblob", ["repeat(x'ab', 300)"], base64_of_hex, "hex(v)"),
    "varchar binary charset": Kind("varchar(10) character set binary", ["x'ff'"], base64_of_hex, "hex(v)"),
    "point": Kind("point", ["point(1, 2)"], base64_of_hex, "hex(v)"),
    "geometry": Kind("geometry", ["ST_GeomFromText('LINESTRING(0 0, 1 1.5)', 4326)"], base64_of_hex, "hex(v)"),
    "uuid": Kind("uuid", ["'6f1c2a3e-8b9d-4e0f-a1b2-c3d4e5f60718'"], same_text),
    "inet6": Kind("inet6", ["'::1'", "'2001:db8::ff00:42:8329'"], same_text),
    "inet4": Kind("inet4", ["'10.0.0.1'"], same_text),
}


@pytest.fixture(scope="module")
def tables(maria_database: Database) -> Iterator[dict[str, str]]:
    names = {kind: f"corpus_{uuid.uuid4().hex[:10]}" for kind in KINDS}
    engine = maria_database.admin()
    with engine.begin() as connection:
        connection.exec_driver_sql(PERMISSIVE)
        for kind, spec in KINDS.items():
            table = names[kind]
            connection.exec_driver_sql(f"create table {table} (id integer primary key, v {spec.column})")
            values = ", ".join(f"({index}, {literal})" for index, literal in enumerate([*spec.literals, "null"]))
            connection.exec_driver_sql(f"insert into {table} (id, v) values {values}")
    yield names
    with engine.begin() as connection:
        connection.exec_driver_sql(f"drop table {', '.join(names.values())}")
    engine.dispose()


@pytest.fixture(scope="module")
def clients(maria_database: Database, portal: BlockingPortal) -> Iterator[list[Client]]:
    options = {"targets": targets_for(maria_database)}
    made = make_engine_clients(options, portal)
    yield made
    for client in made:
        client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_every_value_is_exact_or_the_server_text(kind: str, tables: dict[str, str], clients: list[Client],
                                                 maria_database: Database) -> None:
    spec = KINDS[kind]
    sql = f"select v, {spec.reference} as ref from {tables[kind]} order by id"
    objects = rows_of(clients, maria_database, sql)
    assert len(objects) == len(spec.literals) + 1
    for row in objects[:-1]:
        assert spec.check(row["v"], row["ref"]), (kind, row)
    assert objects[-1] == {"v": None, "ref": None}
    assert rows_of(clients, maria_database, sql, rowMode="array") == [[row["v"], row["ref"]] for row in objects]
    assert rows_of(clients, maria_database, sql, shape="full") == objects


def double_literal(number: float) -> str:
    text = repr(float(number))
    return text if "e" in text else f"{text}e0"  # a DOUBLE literal, not a DECIMAL one


@pytest.mark.parametrize("kind", ["double", "double(10,4)"])
def test_the_server_holds_exactly_the_double_it_answers(kind: str, tables: dict[str, str], clients: list[Client],
                                                        maria_database: Database) -> None:
    rows = rows_of(clients, maria_database, f"select id, v from {tables[kind]} where v is not null order by id")
    held = " and ".join(f"(select v from {tables[kind]} where id = {row['id']}) = {double_literal(row['v'])}"
                        for row in rows)
    assert rows_of(clients, maria_database, f"select {held} as same") == [{"same": 1}]


def test_a_mysql_json_document_is_embedded_as_the_server_wrote_it() -> None:
    # MySQL's JSON type (type 245 on the wire; MariaDB has none, and no MySQL server runs here).
    text = '{"big": 18446744073709551616, "d": 0.1000000000000000000001, "n": [1.5, null, true, "s"]}'
    rows = [[exact_json(text)], [None], [exact_json(b"[]")]]
    for index, encode in column_converters(rows):  # what PolyScale's result builder does to a batch
        rows = [[encode(row[index])] for row in rows]
    assert orjson.dumps(rows) == b"[[" + text.encode() + b"],[null],[[]]]"


def test_a_zero_date_among_real_ones_fails_nothing(tables: dict[str, str], clients: list[Client],
                                                   maria_database: Database) -> None:
    sql = f"select max(v) as hi, min(v) as lo, count(*) as n from {tables['datetime(6)']}"
    assert rows_of(clients, maria_database, sql) == [
        {"hi": "9999-12-31T23:59:59.999999", "lo": "0000-00-00 00:00:00.000000", "n": 5}]


TYPE_NAMES = {
    "varchar utf8mb4": "varchar", "varbinary": "varbinary", "varchar binary charset": "varbinary", "char": "char",
    "binary(4)": "binary", "text": "text", "blob": "blob", "longblob": "blob", "json": "text", "enum": "enum",
    "set": "set", "bit(7)": "bit", "point": "geometry", "decimal(5,2)": "decimal", "float": "float",
    "double": "double", "bigint unsigned": "bigint", "time": "time", "datetime(6)": "datetime", "year": "year",
}


def test_the_full_shape_says_which_strings_are_bytes(tables: dict[str, str], clients: list[Client],
                                                     maria_database: Database) -> None:
    # A string column holds text or bytes (base64) by its character set: TEXT and BLOB are one wire type.
    for kind, name in TYPE_NAMES.items():
        replies = [client.query(maria_database, f"select v from {tables[kind]}", shape="full") for client in clients]
        assert replies[0].body == replies[1].body
        assert replies[0].json()["columns"] == [{"name": "v", "type": name}], kind


def test_text_is_utf8mb4_whatever_the_target_url_asks(maria_database: Database, portal: BlockingPortal) -> None:
    options = {"targets": {maria_database.key: "mariadb://127.0.0.1:3306?charset=latin1"}}
    made = make_engine_clients(options, portal)
    try:
        assert rows_of(made, maria_database, "select '😀 Ж ÿ' as v") == [{"v": "😀 Ж ÿ"}]
    finally:
        for client in made:
            client.close()
