"""Every PostgreSQL type, derived from the server itself, against the server's own text.

The corpus walks ``pg_type``: every base, range, multirange, enum, domain and composite type the server ships or
that this module creates, with edge values (minimum, maximum, zero, negative, infinity, NaN, BC, past year 9999,
empty, NULL) and an array of each. A value is one the server accepts from text; a type that accepts none of the
candidates is still asked for its NULL. Each value's answer, on PolyScale's rows (object and array rows) and full
shapes and on Neon's protocol, on the WSGI and the ASGI mounts (which must agree byte for byte), is compared with
the server's own text for it (``value::text``; its output function for boolean) under the rule of the type table
in docs/protocols/polyscale.md (see :func:`matches`): Neon's values must be the text itself. The deepest JSON the
server accepts is answered too.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from anyio.from_thread import BlockingPortal

from .support import Client, Database, make_asgi_client, make_wsgi_client, targets_for

SAFE = 2**53 - 1
INTEGERS = {"smallint", "integer", "bigint", "oid"}
FLOATS = {"real", "double precision"}
SPECIAL_FLOATS = {"NaN", "Infinity", "-Infinity"}
JSON_TYPES = {"json", "jsonb", "corpus_doc"}
STAMPS = {"timestamp without time zone", "timestamp with time zone"}

USER_TYPES = [
    "CREATE TYPE corpus_mood AS ENUM ('sad', 'ok', 'with space', 'q\"uote', '{brace}', 'NULL')",
    "CREATE DOMAIN corpus_posint AS integer CHECK (VALUE > 0)",
    "CREATE DOMAIN corpus_label AS text",
    "CREATE DOMAIN corpus_num AS numeric(30,10)",
    "CREATE DOMAIN corpus_doc AS jsonb",
    "CREATE TYPE corpus_pair AS (a integer, b text, c numeric)",
    "CREATE TYPE corpus_floatrange AS RANGE (subtype = float8, multirange_type_name = corpus_floatmultirange)",
]

# Edge values by type (format_type's name); every type also tries the generic candidates below.
EDGES: dict[str, list[str]] = {
    "smallint": ["-32768", "32767"],
    "integer": ["-2147483648", "2147483647"],
    "bigint": ["-9223372036854775808", "9223372036854775807", "9007199254740991", "9007199254740993",
               "-9007199254740993"],
    "oid": ["4294967295"],
    "numeric": ["0.0000001", "-0.000000000000000000000001", "1e-20", "1e20", "1.10", "Infinity", "-Infinity",
                "123456789012345678901234567890.123456789012345678901234567890", "9007199254740993"],
    "real": ["-0", "0.1", "1e-45", "3.4028235e38", "-3.4028235e38", "1.5", "1e-40"],
    "double precision": ["-0", "0.1", "5e-324", "1e-320", "1.7976931348623157e308", "0.30000000000000004",
                         "123456789012345680000", "1e15"],
    "money": ["-92233720368547758.08", "92233720368547758.07", "12.34"],
    "boolean": ["true", "false"],
    "text": ["héllo ☃ \"q\" \\ \n\t", "😀"],
    "bytea": ["\\x", "\\x00ff7f80"],
    "date": ["2024-02-29", "0001-01-01", "9999-12-31", "10000-01-01", "0044-03-15 BC", "4713-01-01 BC",
             "5874897-12-31"],
    "timestamp without time zone": ["2024-01-02 03:04:05.123456", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
                                    "10000-01-01 00:00:00", "0044-03-15 12:00:00 BC", "294276-12-31 23:59:59.999999"],
    "timestamp with time zone": ["2024-01-02 03:04:05.123456+05:30", "1850-01-01 00:00:00 America/New_York",
                                 "0001-01-01 00:00:00+00", "10000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC"],
    "time without time zone": ["00:00:00", "24:00:00", "23:59:59.999999", "12:34:56.789"],
    "time with time zone": ["00:00:00+1559", "24:00:00-1559", "12:34:56+02", "12:34:56.5+05:30:15"],
    "interval": ["1 month", "1 year 2 months", "-178000000 years", "178000000 years", "1 day 02:03:04.5",
                 "-1 second", "1 mon -1 day", "0.000001 seconds"],
    "json": ['{"big": 9007199254740993, "d": 1.000000000000000000001, "e": 1e400, "n": -0}', "[]", '"x"',
             "null", '{"a": {"b": [1, 2.50, -0.0]}, "a": 2}'],
    "jsonb": ['{"big": 9007199254740993, "d": 1.000000000000000000001, "e": 1e400}', "[]", '"x"', "null",
              '{"a": {"b": [1, 2.50, -0.0]}}'],
    "aclitem": ["=r/postgres", "postgres=arwdDxt/postgres"],
    "corpus_pair": ["(1,\"a b\",1.10)", "(,,)", "(-1,\"\",NaN)"],
    "corpus_mood": ["sad", "with space", "q\"uote", "{brace}", "NULL"],
    "corpus_posint": ["1", "2147483647"],
    "corpus_num": ["0.0000000001", "-12345678901234567890.1234567890"],
    "corpus_doc": ['{"big": 9007199254740993, "d": 0.1000000000000000000001}'],
    "corpus_floatrange": ["[1.5,2.5)", "(,)", "empty", "[-Infinity,Infinity]"],
    "corpus_floatmultirange": ["{}", "{[1.5,2.5),[3,4]}"],
}
GENERIC = [
    "0", "1", "-1", "", "a", "infinity", "-infinity", "NaN", "empty", "(,)", "{}", "[1,2)", "{[1,2)}",
    "[2024-01-01,2024-02-01)", "{[2024-01-01,2024-02-01)}", "[2024-01-01 00:00,infinity)", "10.0.0.1",
    "192.168.0.0/16", "::1/128", "08:00:2b:01:02:03", "08:00:2b:01:02:03:04:05", "(1,2)", "((0,0),(1,1))",
    "[(0,0),(1,1)]", "<(0,0),1>", "{1,2,3}", "1 2", "fat & rat", "'a':1 'b':2", "0/16B3748", "10:20:10,14,15",
    "6f1c2a3e-8b9d-4e0f-a1b2-c3d4e5f60718", "101", "$.a[*] ? (@ > 1)", "<a>x</a>", "pg_catalog", "integer",
    "pg_type", "english", "simple", "allballs", "epoch", "-0", "1e-1000", "9999999999999999999",
]


@dataclass(frozen=True)
class Case:
    type: str  # format_type's name of the value's type
    element: str | None  # an array's element type
    sql: str
    texts: list[str | None]  # value::text from the server, row by row


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def values_sql(items: list[str], select: str) -> str:
    rows = ", ".join(f"({index}, {item})" for index, item in enumerate(items))
    return f"SELECT {select} FROM (VALUES {rows}) AS s(i, v) ORDER BY i"


def _connect(db: Database) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=5432, user=db.username, password=db.password,
                           dbname=db.database, autocommit=True)


@pytest.fixture(scope="module")
def corpus(pg_database: Database) -> Iterator[list[Case]]:
    with _connect(pg_database) as connection:
        for sql in USER_TYPES:
            connection.execute(sql)
        try:
            yield list(_cases(connection))
        finally:
            connection.execute("DROP TYPE corpus_pair, corpus_floatrange, corpus_mood")
            connection.execute("DROP DOMAIN corpus_posint, corpus_label, corpus_num, corpus_doc")


def _cases(connection: psycopg.Connection[Any]) -> Iterator[Case]:
    types = connection.execute(
        "SELECT format_type(t.oid, NULL), t.typarray <> 0 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE t.typisdefined AND t.typtype IN ('b', 'r', 'm', 'e', 'd', 'c')"
        " AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)"
        " AND (n.nspname = 'pg_catalog' AND t.typtype <> 'c' OR n.nspname = 'public' AND t.typname LIKE 'corpus%')"
        " ORDER BY 1").fetchall()
    assert len(types) > 80, types
    for name, has_array in types:
        accepted: dict[str, str] = {}  # text output -> literal: one value per distinct text
        for candidate in [*EDGES.get(name, []), *GENERIC]:
            try:
                text = connection.execute(f"SELECT ({literal(candidate)}::text::{name})::text").fetchone()
            except psycopg.Error:
                continue
            assert text is not None
            accepted.setdefault(text[0], candidate)
        items = [f"{literal(candidate)}::text::{name}" for candidate in accepted.values()] + [f"NULL::{name}"]
        yield _case(connection, name, None, items)
        if has_array:
            array = f"ARRAY[{', '.join(items)}]::{name}[]" if accepted else f"ARRAY[NULL]::{name}[]"
            yield _case(connection, f"{name}[]", name, [array, f"'{{}}'::{name}[]", f"NULL::{name}[]"])


def _case(connection: psycopg.Connection[Any], name: str, element: str | None, items: list[str]) -> Case:
    # The values as the server wrote them (its output function; value::text differs for boolean only).
    result = connection.execute(values_sql(items, "v")).pgresult
    assert result is not None
    raw = [result.get_value(row, 0) for row in range(result.ntuples)]
    return Case(name, element, values_sql(items, "v"), [None if cell is None else cell.decode() for cell in raw])


# -- the type table's rule ----------------------------------------------------------------------------------------


def matches(kind: str, value: Any, text: str | None) -> bool:
    """Whether a PolyScale value (parsed with exact decimals) is the server's text under the type table."""
    if text is None:
        return value is None
    if kind in INTEGERS or kind == "corpus_posint":
        if abs(int(text)) > SAFE:
            return value == text
        return type(value) is int and str(value) == text
    if kind in FLOATS:
        if text in SPECIAL_FLOATS:
            return value == text
        return (isinstance(value, Decimal) and float(value) == float(text)
                and math.copysign(1, float(value)) == math.copysign(1, float(text)))
    if kind == "boolean":
        return value is (text == "t")
    if kind == "bytea":
        return isinstance(value, str) and base64.b64decode(value) == bytes.fromhex(text[2:])
    if kind in JSON_TYPES:
        return bool(json.loads(text, parse_float=Decimal) == value)
    if kind in STAMPS and value != text:
        iso = text[:10] + "T" + text[11:]
        return value == iso or (kind == "timestamp with time zone" and iso[-3] in "+-" and value == iso + ":00")
    if kind == "time with time zone" and value != text:
        return text[-3] in "+-" and value == text + ":00"
    return bool(value == text)


def array_elements(text: str) -> list[str | None]:
    """The elements of a one-dimensional array's text (``{1,"a b",NULL}``)."""
    assert text[0] == "{" and text[-1] == "}", text
    body, elements, index = text[1:-1], [], 0
    if not body:
        return []
    while index <= len(body):
        if index < len(body) and body[index] == '"':
            index, element = index + 1, []
            while body[index] != '"':
                if body[index] == "\\":
                    index += 1
                element.append(body[index])
                index += 1
            elements.append("".join(element))
            index += 2  # the closing quote and the delimiter
            continue
        end = index
        while end < len(body) and body[end] != ",":
            end += 1
        word = body[index:end]
        elements.append(None if word == "NULL" else word)
        index = end + 1
    return elements


def array_matches(element: str, value: Any, text: str) -> bool:
    if not isinstance(value, list):
        return False
    if element == "box":  # the one type whose arrays are delimited by ';', and whose elements are never quoted
        elements: list[str | None] = [None if word == "NULL" else word for word in text[1:-1].split(";") if word]
    else:
        elements = array_elements(text)
    return len(value) == len(elements) and all(map(matches, [element] * len(value), value, elements))


def check(case: Case, value: Any, text: str | None) -> bool:
    if case.element is None or text is None:
        return matches(case.type, value, text)
    return array_matches(case.element, value, text)


# -- through the endpoint -----------------------------------------------------------------------------------------


def neon_headers(db: Database) -> dict[str, str]:
    url = f"postgresql://{quote(db.username, safe='')}:{quote(db.password, safe='')}@{db.key}/{db.database}"
    return {"Neon-Connection-String": url, "Neon-Raw-Text-Output": "true", "Neon-Array-Mode": "true",
            "Content-Type": "text/plain;charset=UTF-8"}


@pytest.fixture(scope="module")
def mounts(pg_database: Database) -> Iterator[list[Client]]:
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        clients = [make_wsgi_client({"targets": targets_for(pg_database), "rate_limit_storage": "memory"}),
                   asgi(pg_database, portal)]
        try:
            yield clients
        finally:
            for client in clients:
                client.close()


def asgi(db: Database, portal: BlockingPortal) -> Client:
    return make_asgi_client({"targets": targets_for(db), "rate_limit_storage": "memory"}, portal)


def answers(clients: list[Client], db: Database, sql: str) -> dict[str, bytes]:
    """Each protocol's answer, after checking every mount gave the same bytes."""
    requests = {
        "rows": (db.body(sql), None),
        "array": (db.body(sql, rowMode="array"), None),
        "full": (db.body(sql, shape="full"), None),
        "neon": ({"query": sql, "params": []}, neon_headers(db)),
    }
    bodies: dict[str, bytes] = {}
    for protocol, (body, headers) in requests.items():
        replies = [client.post(body, headers=headers) for client in clients]
        assert replies[0].status == 200, (protocol, sql, replies[0].body[:500])
        assert all(reply.body == replies[0].body for reply in replies), (protocol, sql)
        bodies[protocol] = replies[0].body
    return bodies


def test_every_value_is_the_servers_text(corpus: list[Case], mounts: list[Client], pg_database: Database) -> None:
    wrong: list[str] = []
    for case in corpus:
        got = {protocol: json.loads(body, parse_float=Decimal)
               for protocol, body in answers(mounts, pg_database, case.sql).items()}
        rows = [row["v"] for row in got["rows"]]
        assert got["array"] == [[value] for value in rows], case
        assert got["full"]["rows"] == got["rows"] and got["full"]["truncated"] is False, case
        assert [row[0] for row in got["neon"]["rows"]] == case.texts, case  # Neon: the text itself
        for value, text in zip(rows, case.texts, strict=True):
            if not check(case, value, text):
                wrong.append(f"{case.type}: {value!r} for {text!r}")
    assert not wrong, "\n".join(wrong)
    assert len(corpus) > 150


def deepest(connection: psycopg.Connection[Any], kind: str) -> int:
    """The deepest nesting of arrays the server accepts as json or jsonb."""
    low, high = 1, 1 << 20
    while low < high:
        middle = (low + high + 1) // 2
        try:
            connection.execute(f"SELECT (repeat('[', {middle}) || '1' || repeat(']', {middle}))::{kind}")
            low = middle
        except psycopg.Error:
            high = middle - 1
    return low


@pytest.mark.parametrize("kind", ["json", "jsonb"])
def test_the_deepest_json_the_server_accepts_is_answered(kind: str, mounts: list[Client],
                                                          pg_database: Database) -> None:
    with _connect(pg_database) as connection:
        depth = deepest(connection, kind) * 99 // 100  # the server's stack differs a little between sessions
    assert depth > 1000
    sql = f"SELECT (repeat('[', {depth}) || '9007199254740993' || repeat(']', {depth}))::{kind} AS v"
    got = answers(mounts, pg_database, sql)  # bodies too deep for Python's json module: compared as bytes
    document = ("[" * depth + "9007199254740993" + "]" * depth).encode()
    assert got["neon"].count(b'"' + document + b'"') == 1
    assert got["rows"] == b'[{"v":' + document + b"}]"
    assert got["array"] == b"[[" + document + b"]]"
    assert got["full"].count(b'"rows":[{"v":' + document + b"}]") == 1


def test_an_array_of_a_type_made_later_is_an_array_from_the_next_answer(mounts: list[Client],
                                                                       pg_database: Database) -> None:
    for client in mounts:  # each has run statements on its connection: its catalog is read
        assert client.query(pg_database, "SELECT 1 AS v").json() == [{"v": 1}]
    with _connect(pg_database) as connection:
        connection.execute("CREATE TYPE corpus_later AS ENUM ('x', 'y z')")
    try:
        sql = "SELECT ARRAY['x', 'y z']::corpus_later[] AS v"
        for client in mounts:
            first, *rest = [client.query(pg_database, sql).json() for _ in range(3)]
            assert first in ([{"v": '{x,"y z"}'}], [{"v": ["x", "y z"]}])  # its text, until the catalog has it
            assert rest == [[{"v": ["x", "y z"]}]] * 2
    finally:
        pg_database.run("DROP TYPE corpus_later")


@pytest.mark.parametrize("shape", ["rows", "full"])
def test_offsets_keep_their_seconds_in_the_sessions_time_zone(mounts: list[Client], pg_database: Database,
                                                              shape: str) -> None:
    # New York's offset before 1883 was its local mean time, -04:56:02: no second of it is rounded away.
    body = pg_database.body("", shape=shape)
    del body["sql"]
    body["batch"] = [{"sql": "SET LOCAL TimeZone = 'America/New_York'"},
                     {"sql": "SELECT '1850-01-01 00:00:00+00'::timestamptz AS v,"
                             " '2024-07-01 12:00:00+00'::timestamptz AS w,"
                             " ARRAY['1850-01-01 00:00:00+00'::timestamptz] AS a"}]
    replies = [client.post(body) for client in mounts]
    assert replies[0].status == 200, replies[0].body
    assert replies[1].body == replies[0].body
    second = replies[0].json()["results"][1]
    rows = second if shape == "rows" else second["rows"]
    assert rows == [{"v": "1849-12-31T19:03:58-04:56:02", "w": "2024-07-01T08:00:00-04:00",
                     "a": ["1849-12-31T19:03:58-04:56:02"]}]
