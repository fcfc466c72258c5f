"""Neon's driver through our endpoint gives every value exactly as node-postgres gives it over TCP.

For each query below, ``tests/js/neon-vs-pg.mjs`` runs it through ``@neondatabase/serverless`` in HTTP mode against
a real server (gunicorn for WSGI, uvicorn for ASGI) and through a ``pg.Client`` straight to PostgreSQL, and prints
both results: the fields (type OIDs and the rest of the row description), the command and row count, every value
as the driver parsed it and the text its parser was handed, or the error with PostgreSQL's fields. Each case then
asserts the two are equal. The cases cover every PostgreSQL row of the type table in docs/protocols/polyscale.md and
what users meet besides: intervals, ranges and multiranges, an enum, domains, composites, network types, infinite
and BC timestamps, numeric and float edges, geometry, arrays of all of them, and NULL of each. A value case also
sends what the driver returned back as ``$1`` (the case's "echo"), and parameter cases send JavaScript values
(strings, numbers, bigints, booleans, null, Dates, Buffers, arrays, objects).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from .support import ROOT, Database, node_with, serving

NODE_SCRIPT = ROOT / "tests" / "js" / "neon-vs-pg.mjs"
SERVERS = ["wsgi-gunicorn", "asgi-uvicorn"]


@dataclass(frozen=True)
class Case:
    id: str
    sql: str
    params: list[Any] = field(default_factory=list)  # JSON, with the script's tags for Date, Buffer, bigint, NaN
    echo: str | None = None  # a query that gets the first value back as $1
    error: bool = False  # PostgreSQL refuses it: then both drivers must fail alike
    alone: bool = False  # it writes: run by itself, not side by side with other queries
    reason: str | None = None  # a known mismatch on our side (strict xfail)

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {"sql": self.sql, "params": self.params}
        if self.echo is not None:
            query["echo"] = self.echo
        if self.alone:
            query["alone"] = True
        return query


def writing(name: str, sql: str, params: list[Any] | None = None, error: bool = False) -> Case:
    return Case(name, sql, params or [], error=error, alone=True)


def date(iso: str) -> dict[str, str]:
    return {"$date": iso}


def number(text: str) -> dict[str, str]:
    return {"$number": text}


# -- values of each type: (type, SQL literals) --------------------------------------------------------------------
# Each literal gives a value case (with an echo), and each type a case for its NULL and its array's NULL, and an
# array of all its literals and a NULL.

TYPES: list[tuple[str, list[str]]] = [
    ("bool", ["true", "false"]),
    ("int2", ["-32768", "32767", "0"]),
    ("int4", ["-2147483648", "2147483647", "42"]),
    ("int8", ["'-9223372036854775808'", "'9223372036854775807'", "9007199254740993", "9007199254740991", "-1"]),
    ("oid", ["0", "4294967295", "1234"]),
    ("numeric", ["0", "'1.10'", "'-0.000000000000000000000001'", "12345678901234567890.123456789", "'NaN'",
                 "'Infinity'", "'-Infinity'", "'1e1000'", "'-1e-1000'", "'9007199254740993'"]),
    ("numeric(40,20)", ["'1.5'", "'-12345678901234567890.12345678901234567890'"]),
    ("float4", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0.1", "'1e-45'", "'3.4028235e38'", "1.5", "'1e-40'"]),
    ("float8", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "0.1", "'1e-320'", "'5e-324'",
                "'1.7976931348623157e308'", "'0.30000000000000004'", "'123456789012345680000'", "'1e15'"]),
    ("money", ["'12.34'", "'-12.34'", "'92233720368547758.07'", "'0'"]),
    ("text", ["'héllo wörld ✓'", "'😀 日本語 עברית'", r"E'ctl \x01\x02\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f end'",
              r"E'line\u2028sep\u2029 e\u0301 a\u200db \ufeffbom'", r"""'quote '' and " and \ backslash'""",
              "''", "'  spaced  '", "'NULL'", "'{a,b}'"]),
    ("varchar", ["'abc'", "'é'"]),
    ("varchar(3)", ["'abcdef'"]),
    ("char(5)", ["'ab'", "'abcde'", "'é'"]),
    ("char", ["'x'"]),
    ('"char"', ["'a'", "'é'"]),
    ("name", ["'pg_class'"]),
    ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'",
              "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12'"]),
    ("bytea", [r"'\x'", r"'\x00ff10'", "'abc'", r"'\x5c22'"]),
    ("json", ["""'{"a": [1, 2.5, {"b": null}], "big": 12345678901234567890.123456789, "s": "é\\u00e9\\n"}'""",
              "'12345678901234567890'", """'"text"'""", "'null'", "'[]'", """'  {"spaces" :  1 }  '""",
              """'{"a": 1, "a": 2}'""", "'1e400'", """'{"deep": [[[{"x": [true, false, null]}]]]}'"""]),
    ("jsonb", ["""'{"a": [1, 2.5, {"b": null}], "big": 12345678901234567890.123456789, "s": "é\\u00e9\\n"}'""",
               "'12345678901234567890'", """'"text"'""", "'null'", "'[]'", """'{"a": 1, "a": 2}'""",
               "'-0'", "'1e-7'"]),
    ("xml", ["""'<a b="1">x &amp; y</a>'""", "'plain text'", """'<?xml version="1.0"?><r/>'"""]),
    ("date", ["'2024-02-29'", "'infinity'", "'-infinity'", "'0044-03-15 BC'", "'4713-01-01 BC'", "'0001-01-01'",
              "'10000-01-01'", "'5874897-12-31'", "'1970-01-01'", "'1969-12-31'"]),
    ("time", ["'00:00'", "'12:34:56.789012'", "'23:59:59.999999'", "'24:00:00'"]),
    ("timetz", ["'12:34:56+05:30'", "'00:00:00-12'", "'23:59:59.5+14'", "'12:00:00+01:02:03'"]),
    ("timestamp", ["'2024-02-29 12:34:56.789012'", "'infinity'", "'-infinity'", "'0044-03-15 12:00 BC'",
                   "'4713-01-01 00:00 BC'", "'10000-01-01 00:00'", "'294276-12-31 23:59:59.999999'",
                   "'1970-01-01 00:00'", "'1969-12-31 23:59:59.999'", "'2024-03-10 02:30:00'"]),
    ("timestamp(0)", ["'2024-02-29 12:34:56.789'"]),
    ("timestamptz", ["'2024-01-02 03:04:05.123456+02'", "'infinity'", "'-infinity'", "'0044-03-15 12:00+00 BC'",
                     "'12345-06-07 08:09:10+00'", "'1900-01-01 00:00:00+00'", "'2000-01-01 00:00 Europe/Paris'",
                     "'1970-01-01 00:00:00.000001+00'"]),
    ("interval", ["'1 mon'", "'-1 days +02:03:04.5'", "'1 year 2 mons 3 days 04:05:06.789'", "'-1 year'",
                  "'100 years'", "'0'", "'-00:00:01'", "'1 day -00:00:00.000001'", "'178000000 years'",
                  "'-178000000 years'", "'3 weeks'", "'1.5 months'", "'25:00:00'", "'P1Y2M3DT4H5M6S'",
                  "'-1 years -2 mons +3 days -04:05:06'"]),
    ("int4range", ["'[1,10)'", "'empty'", "'(,5]'", "'[3,)'", "'(,)'"]),
    ("int8range", ["'[9007199254740993,9223372036854775807)'"]),
    ("numrange", ["'[1.5,2.5]'", "'(,)'", "'empty'", "'(-Infinity,Infinity)'"]),
    ("tsrange", ["'[2024-01-01 00:00,2024-01-02 00:00)'", "'[-infinity,infinity]'"]),
    ("tstzrange", ["'[2024-01-01 00:00+00,infinity)'", "'(-infinity,2024-01-01 00:00+00]'", "'empty'"]),
    ("daterange", ["'[2024-01-01,2024-02-01)'", "'[2024-01-01,2024-01-01]'", "'(-infinity,infinity)'", "'empty'",
                   "'[0044-03-15 BC,10000-01-01)'"]),
    ("int4multirange", ["'{[1,3), [5,7)}'", "'{}'", "'{(,0], [10,)}'"]),
    ("nummultirange", ["'{[1.5,2.5]}'"]),
    ("datemultirange", ["'{[2024-01-01,2024-01-05), [2024-02-01,infinity)}'"]),
    ("tstzmultirange", ["'{[2024-01-01 00:00+00,2024-01-02 00:00+00)}'"]),
    ("neon_mood", ["'sad'", "'happy'", "'with space'", """'quo"te'""", "'a,b'"]),
    ("neon_posint", ["1", "2147483647"]),
    ("neon_email", ["'ada@example.com'"]),
    ("neon_pair", ["ROW(1, 'a b')", r"""ROW(NULL, 'x"y,z\w')""", "ROW(-1, '')", "ROW(2, NULL)"]),
    ("neon_nested", ["ROW(ROW(1, 'x'), 'happy', ARRAY['a', 'b c'])", "ROW(NULL, NULL, '{}')"]),
    ("inet", ["'192.168.0.1/24'", "'192.168.0.1'", "'::1'", "'2001:db8::1/64'", "'::ffff:1.2.3.4'"]),
    ("cidr", ["'10.0.0.0/8'", "'2001:db8::/32'", "'192.168.1'"]),
    ("macaddr", ["'08:00:2b:01:02:03'", "'08-00-2B-01-02-FF'"]),
    ("macaddr8", ["'08:00:2b:01:02:03:04:05'", "'08:00:2b:01:02:03'"]),
    ("bit(4)", ["B'1010'"]),
    ("varbit", ["B'101'", "B''"]),
    ("tsvector", ["'a:1 b:2'", "$$'quo''te' fat:1A$$"]),
    ("tsquery", ["'fat & (rat | cat)'"]),
    ("point", ["'(1,2)'", "'(-1.5,1e300)'", "'(NaN,Infinity)'"]),
    ("line", ["'{1,2,3}'"]),
    ("lseg", ["'[(0,0),(1,1)]'"]),
    ("box", ["'(1,1),(0,0)'"]),
    ("path", ["'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1))'"]),
    ("polygon", ["'((0,0),(1,1),(1,0))'"]),
    ("circle", ["'<(1,2),3>'", "'<(0.5,-0.5),0>'"]),
    ("regclass", ["'pg_class'"]),
    ("regtype", ["'int4'", "'neon_mood'"]),
    ("pg_lsn", ["'16/B374D848'"]),
]


def value_cases() -> Iterator[Case]:
    for type_, literals in TYPES:
        for literal in literals:
            yield Case(f"{type_} {literal}", f"SELECT ({literal})::{type_} AS v", echo=f"SELECT $1::{type_} AS v")
        yield Case(f"{type_} NULL", f"SELECT NULL::{type_} AS v, NULL::{type_}[] AS a")
        elements = ", ".join(f"({literal})::{type_}" for literal in literals)
        yield Case(f"{type_}[]", f"SELECT ARRAY[{elements}, NULL::{type_}]::{type_}[] AS v",
                   echo=f"SELECT $1::{type_}[] AS v")


ALL_BYTES = "SELECT decode(string_agg(lpad(to_hex(i), 2, '0'), ''), 'hex') AS v FROM generate_series(0, 255) AS i"

OTHER_VALUES = [
    Case("bytea all 256", ALL_BYTES, echo="SELECT $1::bytea AS v"),
    Case("tsvector from text", "SELECT to_tsvector('english', 'The quick brown foxes jumped') AS v"),
    Case("record anonymous", "SELECT ROW(1, 2.5, 'x y', NULL, ARRAY[1, 2], '\"q\"') AS v"),
    Case("record nested", "SELECT ROW(ROW(1, 'a'), ARRAY[ROW(2, 'b')]) AS v"),
    Case("record array of neon_pair", "SELECT ARRAY[ROW(1, 'a')::neon_pair, ROW(2, NULL)::neon_pair] AS v"),
    Case("table rows", "SELECT * FROM neon_fixed ORDER BY id"),
    Case("table row as composite", "SELECT f FROM neon_fixed AS f ORDER BY id"),
    Case("table columns and expressions", "SELECT id, label || '!' AS shout, pair, tags[1] FROM neon_fixed"),
    Case("int[] 2-D", "SELECT '{{1,2},{3,4}}'::int[] AS v"),
    Case("int[] 3-D", "SELECT '{{{1},{2}},{{3},{NULL}}}'::int[] AS v"),
    Case("int[] with NULLs", "SELECT '{1,NULL,3}'::int[] AS v"),
    Case("int[] empty", "SELECT '{}'::int[] AS v", echo="SELECT $1::int[] AS v"),
    Case("int[] lower bound 0", "SELECT '[0:1]={1,2}'::int[] AS v"),
    Case("int[] of NULLs", "SELECT '{{NULL,NULL}}'::int[] AS v"),
    Case("text[] hard elements",
         r"""SELECT ARRAY['a"b', 'c,d', 'e\f', '{x}', 'NULL', '', ' sp ', 'é✓', E'tab\tnl\n']::text[] AS v""",
         echo="SELECT $1::text[] AS v"),
    Case("text[] 2-D", r"""SELECT ARRAY[['a', 'b'], ['c,d', 'e"f\g']] AS v""", echo="SELECT $1::text[] AS v"),
    Case("text[] only NULL", "SELECT '{NULL}'::text[] AS v", echo="SELECT $1::text[] AS v"),
    Case("text[] empty", "SELECT '{}'::text[] AS v", echo="SELECT $1::text[] AS v"),
    Case("jsonb[] nested", """SELECT ARRAY['{"a": [1, "x,y"]}'::jsonb, 'null', '"s\\\\"'] AS v"""),
    Case("numeric huge precision", "SELECT power(2::numeric, 300) + 0.000000000000000000001 AS v"),
    Case("numeric division", "SELECT 1::numeric / 3 AS v"),
    Case("untyped NULL", "SELECT NULL AS v"),
    Case("untyped literal", "SELECT 'lit' AS v"),
    Case("many columns", "SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, 4.5::numeric AS d, 'x'::text AS e, "
                         "true AS f, NULL::date AS g, '2024-01-01'::date AS h, 1.5::float8 AS i"),
]

# -- statements: shapes, commands, row counts ---------------------------------------------------------------------

STATEMENTS = [
    Case("duplicate column names", "SELECT 1 AS a, 'two' AS b, NULL AS c, 2 AS a"),
    Case("unicode column names", 'SELECT 1 AS "é ✓", 2 AS "quo""te"'),
    Case("zero columns", "SELECT FROM generate_series(1, 2)"),
    Case("zero rows", "SELECT 1::int AS a, 'x'::text AS b WHERE false"),
    Case("many rows", "SELECT i, i * 2 AS twice, repeat('x', i) AS xs FROM generate_series(1, 50) AS i"),
    Case("big answer", "SELECT i, repeat('é✓', 100) AS s FROM generate_series(1, 1000) AS i"),  # > 64 KiB: in pieces
    Case("values", "VALUES (1, 'a'), (2, 'b')"),
    Case("table", "TABLE neon_fixed"),
    Case("with", "WITH t(x) AS (VALUES (1), (2)) SELECT sum(x) FROM t"),
    Case("explain", "EXPLAIN (COSTS OFF) SELECT 1"),
    Case("show TimeZone", "SHOW TimeZone"),
    Case("show DateStyle", "SHOW DateStyle"),
    Case("show IntervalStyle", "SHOW IntervalStyle"),
    Case("show extra_float_digits", "SHOW extra_float_digits"),
    Case("show bytea_output", "SHOW bytea_output"),
    Case("show client_encoding", "SHOW client_encoding"),
    Case("show standard_conforming_strings", "SHOW standard_conforming_strings"),
    Case("show lc_monetary", "SHOW lc_monetary"),
    writing("insert", "INSERT INTO neon_log (note) VALUES ('x')"),
    writing("insert many", "INSERT INTO neon_log (note) SELECT 'y' FROM generate_series(1, 3)"),
    writing("insert returning", "INSERT INTO neon_log (note) VALUES ('z') RETURNING note, 1 AS one"),
    writing("update none", "UPDATE neon_log SET note = note WHERE note = 'never'"),
    writing("update returning", "UPDATE neon_fixed SET label = label WHERE id = 1 RETURNING id, label"),
    writing("delete none", "DELETE FROM neon_log WHERE note = 'never'"),
    writing("with insert",
            "WITH ins AS (INSERT INTO neon_log (note) VALUES ('w') RETURNING 1) SELECT count(*) FROM ins"),
    writing("create table", "CREATE TABLE IF NOT EXISTS neon_ddl (x int)"),
    Case("do", "DO $$ BEGIN END $$"),
    Case("set local", "SET LOCAL work_mem = '8MB'"),
]

# -- errors: PostgreSQL's fields must come through ------------------------------------------------------------------

ERRORS = [
    Case("error bad int", "SELECT 'abc'::int AS v", error=True),
    Case("error division", "SELECT 1 / 0 AS v", error=True),
    Case("error unknown column", "SELECT no_such_column", error=True),
    Case("error syntax", "SELEC 1", error=True),
    Case("error domain check", "SELECT (-1)::neon_posint AS v", error=True),
    writing("error unique", "INSERT INTO neon_fixed (id, label) VALUES (1, 'again')", error=True),
    Case("error raise", "DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'd', HINT = 'h'; END $$", error=True),
    Case("error bad param", "SELECT $1::int AS v", ["x"], error=True),
    Case("error float param into int", "SELECT $1::int AS v", [1.5], error=True),
    Case("error invalid Date param", "SELECT $1::timestamptz AS v", [date("not a date")], error=True),
    Case("error array param as json", "SELECT $1::json AS v", [[1, 2]], error=True),
    Case("error too few params", "SELECT $1::int AS a, $2::int AS b", [1], error=True),
    Case("error too many params", "SELECT $1::int AS a", [1, 2], error=True),
    Case("error NUL in param", "SELECT $1::text AS v", ["a\u0000b"], error=True,
         reason="on purpose: the same code (22021) with our own message, refused before PostgreSQL sees it (libpq "
                "would cut a text parameter at the NUL); pg: 22021 'invalid byte sequence for encoding \"UTF8\": "
                "0x00' with where 'unnamed portal parameter $1'"),
]

# -- parameters: JavaScript values sent as $1 ---------------------------------------------------------------------

PARAMS = [
    Case("param string untyped", "SELECT $1 AS v", ["text"]),
    Case("param string unicode", "SELECT $1::text AS v", ["héllo ✓ 😀 \"q\" \\ \n\t\u0001"]),
    Case("param empty string", "SELECT $1::text AS v", [""]),
    Case("param number int", "SELECT $1::int AS v", [42]),
    Case("param number into numeric", "SELECT $1::numeric AS v", [0.1]),
    Case("param number float", "SELECT $1::float8 AS v", [1.5]),
    Case("param number 0.1", "SELECT $1::float8 AS v", [0.1]),
    Case("param number subnormal", "SELECT $1::float8 AS v", [1e-320]),
    Case("param number NaN", "SELECT $1::float8 AS v", [number("NaN")]),
    Case("param number -0", "SELECT $1::float8 AS v", [number("-0")]),
    Case("param number Infinity", "SELECT $1::float8 AS v", [number("Infinity")]),
    Case("param number -Infinity", "SELECT $1::float4 AS v", [number("-Infinity")]),
    Case("param number untyped", "SELECT $1 AS v", [2.5]),
    Case("param numeric string", "SELECT $1::numeric AS v", ["12345678901234567890.123456789"]),
    Case("param bigint max", "SELECT $1::int8 AS v", [{"$bigint": "9223372036854775807"}]),
    Case("param bigint min", "SELECT $1::int8 AS v", [{"$bigint": "-9223372036854775808"}]),
    Case("param bigint into numeric", "SELECT $1::numeric AS v", [{"$bigint": "123456789012345678901234567890"}]),
    Case("param true", "SELECT $1::bool AS v", [True]),
    Case("param false", "SELECT $1::bool AS v", [False]),
    Case("param boolean as text", "SELECT $1::text AS v", [True]),
    Case("param null typed", "SELECT $1::int AS v", [None]),
    Case("param null untyped", "SELECT $1 AS v", [None]),
    Case("param null is null", "SELECT $1::text IS NULL AS v", [None]),
    Case("param Date timestamptz", "SELECT $1::timestamptz AS v", [date("2024-01-02T03:04:05.678Z")]),
    Case("param Date timestamp", "SELECT $1::timestamp AS v", [date("2024-01-02T03:04:05.678Z")]),
    Case("param Date date", "SELECT $1::date AS v", [date("2024-02-29T00:00:00.000Z")]),
    Case("param Date text", "SELECT $1::text AS v", [date("1999-12-31T23:59:59.999Z")]),
    Case("param Date BC", "SELECT $1::timestamptz AS v", [date("-000043-03-15T12:00:00.000Z")]),
    Case("param Date year 10000", "SELECT $1::timestamptz AS v", [date("+010000-01-01T00:00:00.000Z")]),
    Case("param Buffer", "SELECT $1::bytea AS v", [{"$bytes": "00ff105c"}]),
    Case("param Buffer empty", "SELECT $1::bytea AS v", [{"$bytes": ""}]),
    Case("param Buffer length", "SELECT octet_length($1::bytea) AS v", [{"$bytes": "0001020304"}]),
    Case("param int array", "SELECT $1::int[] AS v", [[1, 2, None]]),
    Case("param nested array", "SELECT $1::int[] AS v", [[[1, 2], [3, 4]]]),
    Case("param empty array", "SELECT $1::int[] AS v", [[]]),
    Case("param text array", "SELECT $1::text[] AS v", [['a"b', "c,d", "e\\f", None, "", "NULL", "{x}", " sp "]]),
    Case("param bigint array", "SELECT $1::int8[] AS v", [[{"$bigint": "9223372036854775807"}, 1]]),
    Case("param Date array", "SELECT $1::timestamptz[] AS v", [[date("2024-01-02T03:04:05.678Z"), None]]),
    Case("param Buffer array", "SELECT $1::bytea[] AS v", [[{"$bytes": "00ff"}, None]]),
    Case("param bool array", "SELECT $1::bool[] AS v", [[True, False, None]]),
    Case("param enum array", "SELECT $1::neon_mood[] AS v", [["sad", "with space"]]),
    Case("param object jsonb", "SELECT $1::jsonb AS v",
         [{"k": 1, "n": [1, "x", None, True], "d": date("2024-01-02T03:04:05.678Z"), "big": 12345678901234567890}]),
    Case("param object json", "SELECT $1::json AS v", [{"nested": {"deep": [{"a": "é"}]}, "b": False}]),
    Case("param object as text", "SELECT $1::text AS v", [{"a": 1}]),
    Case("param object with NUL as json", "SELECT $1::json AS v", [{"a": "x\u0000y"}]),  # JSON.stringify escapes it
    Case("param object with NUL as jsonb", "SELECT $1::jsonb AS v", [{"a": "x\u0000y"}], error=True),
    Case("param jsonb string", "SELECT $1::jsonb AS v", ['{"a": [1, 2.5], "big": 12345678901234567890.123456789}']),
    Case("param interval", "SELECT $1::interval AS v", ["1 mon -2 days 03:04:05.5"]),
    Case("param range", "SELECT $1::int4range AS v", ["[1,5)"]),
    Case("param enum", "SELECT $1::neon_mood AS v", ["happy"]),
    Case("param composite", "SELECT $1::neon_pair AS v", ['(1,"x y")']),
    Case("param inet", "SELECT $1::inet AS v", ["10.1.2.3/8"]),
    Case("param uuid", "SELECT $1::uuid AS v", ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"]),
    Case("param several", "SELECT $1::text AS a, $2::int AS b, $3::bool AS c, $1::text || $1::text AS d",
         ["x", 2, True]),
    Case("param in where", "SELECT label FROM neon_fixed WHERE id = $1", [2]),
    writing("param insert returning", "INSERT INTO neon_log (note) VALUES ($1) RETURNING note", ["from a param"]),
]

CASES = [*value_cases(), *OTHER_VALUES, *STATEMENTS, *ERRORS, *PARAMS]
assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"

SCHEMA = [
    "DROP TABLE IF EXISTS neon_fixed, neon_log, neon_ddl",
    "DROP TYPE IF EXISTS neon_nested, neon_pair, neon_mood CASCADE",
    "DROP DOMAIN IF EXISTS neon_posint, neon_email CASCADE",
    """CREATE TYPE neon_mood AS ENUM ('sad', 'ok', 'happy', 'with space', 'quo"te', 'a,b')""",
    "CREATE DOMAIN neon_posint AS int CHECK (VALUE > 0)",
    "CREATE DOMAIN neon_email AS text CHECK (position('@' in VALUE) > 1)",
    "CREATE TYPE neon_pair AS (a int, b text)",
    "CREATE TYPE neon_nested AS (p neon_pair, m neon_mood, tags text[])",
    "CREATE TABLE neon_fixed (id int PRIMARY KEY, label varchar(20), mood neon_mood, pair neon_pair, tags text[], "
    "at timestamptz, price numeric(10, 2))",
    "INSERT INTO neon_fixed VALUES (1, 'one', 'happy', ROW(1, 'a'), '{x,\"y z\"}', '2024-01-02 03:04:05+00', 1.5), "
    "(2, 'two', NULL, NULL, '{}', 'infinity', NULL), (3, NULL, 'with space', ROW(NULL, 'q\"'), NULL, NULL, -0.01)",
    "CREATE TABLE neon_log (note text)",
]


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@neondatabase/serverless", "pg")


@pytest.fixture(scope="module")
def schema(pg_database: Database) -> None:
    for statement in SCHEMA:
        pg_database.run(statement)


@pytest.fixture(scope="module", params=SERVERS)
def outcomes(request: pytest.FixtureRequest, node: str, schema: None, pg_database: Database) -> dict[str, Any]:
    """Every case's pair of results, from one node run against one real server."""
    # A namespace of its own: failed-login counts in /dev/shm must not carry over from an earlier run.
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    login = f"{quote(pg_database.username, safe='')}:{quote(pg_database.password, safe='')}"
    with serving(request.param, env) as url:
        payload = json.dumps({
            "endpoint": url + "/sql",
            "neonConnectionString": f"postgresql://{login}@pg/{pg_database.database}",
            "pgConnectionString": f"postgresql://{login}@127.0.0.1:5432/{pg_database.database}",
            "queries": [case.query() for case in CASES],
        })
        done = subprocess.run([node, str(NODE_SCRIPT)], input=payload.encode(), capture_output=True, cwd=ROOT,
                              timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    results: list[Any] = json.loads(done.stdout)
    assert len(results) == len(CASES)
    return {case.id: result for case, result in zip(CASES, results, strict=True)}


def differences(pg: dict[str, Any], neon: dict[str, Any]) -> str:
    lines = []
    for key in sorted(set(pg) | set(neon)):
        if pg.get(key) != neon.get(key):
            lines.append(f"  {key}:\n    pg:   {json.dumps(pg.get(key), ensure_ascii=False)}\n"
                         f"    neon: {json.dumps(neon.get(key), ensure_ascii=False)}")
    return "\n".join(lines)


def marked(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.reason)] if case.reason else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [marked(case) for case in CASES])
def test_neon_driver_matches_node_postgres(outcomes: dict[str, Any], case: Case) -> None:
    pair = outcomes[case.id]
    pg, neon = pair["pg"], pair["neon"]
    assert ("error" in pg) == case.error, f"{case.sql!r}: pg gave {json.dumps(pg, ensure_ascii=False)[:1000]}"
    assert pg == neon, f"{case.sql!r} (params {case.params!r}) differs:\n{differences(pg, neon)}"
