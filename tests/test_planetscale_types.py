"""PlanetScale's driver through our endpoint gives every MariaDB value as mysql2 gives it over TCP, after the
driver's own documented casts.

``tests/js/planetscale-vs-mysql2.mjs`` runs each query through ``@planetscale/database`` 1.20.2 against a real
server (uvicorn for ASGI, gunicorn for WSGI) and through ``mysql2/promise`` straight to MariaDB on 3306 with the
same login, and prints both: the fields and every value, serialised with its JavaScript type (bytes as arrays of
numbers). The columns and values are those of the MariaDB type corpus (tests/test_mysql_corpus.py: every integer
width signed and unsigned, BIGINT UNSIGNED's maximum, DECIMAL(65,30), FLOAT, DOUBLE, BIT, YEAR, TIME past 24 h and
negative, zero and invalid dates, TIMESTAMP, text in four character sets, bytes, ENUM, SET, MariaDB's JSON, the
geometries, UUID, INET4/6, NULL), with more of our own below (EXTRA_KINDS), each in a table of its own.

mysql2 is configured to cast as the driver documents (planetscale/database-js ``src/cast.ts``):
``supportBigNumbers`` + ``bigNumberStrings`` (INT64/UINT64 and DECIMAL as strings), ``dateStrings`` (DATE,
DATETIME, TIMESTAMP as the server's text; TIME is text in both anyway), ``decimalNumbers: false``, smaller integers,
YEAR and floats as numbers in both, text as UTF-8 strings in both, and bytes (charset 63) as bytes in both. What is
left differs by design, and is stated in TRANSFORMATIONS (values) and FIELD_RULES (metadata); nothing else may
differ.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest

from .support import ROOT, Database, node_with, serving
from .test_mysql_corpus import KINDS as CORPUS_KINDS
from .test_mysql_corpus import PERMISSIVE

SCRIPT = ROOT / "tests" / "js" / "planetscale-vs-mysql2.mjs"
SERVERS = ["asgi-uvicorn", "wsgi-gunicorn"]


class Kind(NamedTuple):
    column: str
    literals: list[str]


ALL_BYTES = "x'" + bytes(range(256)).hex() + "'"
EXTRA_KINDS = {
    "tinyint(1)": Kind("tinyint(1)", ["0", "1", "-1", "127"]),  # no boolean: a number, as from mysql2
    "timestamp": Kind("timestamp null", ["'1970-01-01 00:00:01'", "'2038-01-19 03:14:07'", "'0000-00-00 00:00:00'"]),
    "timestamp(6)": Kind("timestamp(6) null", ["'2024-01-02 03:04:05.000001'", "'2038-01-19 03:14:07.999999'"]),
    "decimal(65,0)": Kind("decimal(65,0)", ["9" * 65, "-" + "9" * 65, "1"]),
    "decimal(30,30)": Kind("decimal(30,30)", ["0." + "0" * 29 + "1", "-0." + "9" * 30]),
    "double zero and tiny": Kind("double", ["-0e0", "4.9e-324", "2.2250738585072014e-308", "-1.5e300"]),
    "float zero and tiny": Kind("float", ["-0e0", "1e-45", "3.4e38"]),
    "time(3)": Kind("time(3)", ["'-838:59:59.000'", "'100:00:00.125'", "'-00:00:00.001'"]),
    "date zero parts": Kind("date", ["'2024-00-15'", "'0000-01-01'"]),
    "datetime zero parts": Kind("datetime(6)", ["'2024-02-30 00:00:00.000001'", "'0000-00-00 00:00:00.000000'"]),
    "year 2": Kind("year", ["'00'", "'69'", "'70'", "1901"]),
    "varchar escapes": Kind("varchar(60) character set utf8mb4",
                            ["'nul \\0 tab \\t cr \\r lf \\n sub \\Z bs \\\\ q \\' dq \" end'", "''", "' '"]),
    "char utf8mb4": Kind("char(4) character set utf8mb4", ["'😀'", "'é  '", "'ab'"]),
    "tinytext": Kind("tinytext character set utf8mb4", ["'😀'"]),
    "mediumtext": Kind("mediumtext character set utf8mb4", ["'日本語 עברית Ελληνικά 😀'", "repeat('é', 5000)"]),
    "longtext": Kind("longtext character set latin1", ["'ÿ café'"]),
    "varbinary every byte": Kind("varbinary(256)", [ALL_BYTES, "x'00'", "x'80'"]),
    "blob every byte": Kind("blob", [ALL_BYTES, "x'ffd8ffe000104a46'", "x''"]),
    "tinyblob": Kind("tinyblob", ["x'c3'"]),
    "mediumblob": Kind("mediumblob", ["repeat(x'00ff', 40000)"]),
    "char binary charset": Kind("char(3) character set binary", ["x'01'", "x'ffffff'"]),
    "bit(3)": Kind("bit(3)", ["b'000'", "b'111'", "5"]),
    "enum empty and unicode": Kind("enum('', 'x y', 'Ж', '😀') character set utf8mb4",
                                   ["''", "'x y'", "'Ж'", "'😀'", "2"]),
    "set unicode": Kind("set('é', 'b', '😀') character set utf8mb4", ["'é,😀'", "'b'", "7"]),
    "json unicode": Kind("json", ["'{\"s\": \"é😀\\\\n\", \"n\": -0.0}'", "'\"just a string\"'", "'null'"]),
    "multipolygon": Kind("multipolygon", ["ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)))')"]),
}
KINDS: dict[str, Kind] = {**{name: Kind(k.column, k.literals) for name, k in CORPUS_KINDS.items()}, **EXTRA_KINDS}

# The Vitess type name the driver is given for each table's column: the names of PlanetScale's golden file, by
# MariaDB's wire type. MariaDB has no JSON type on the wire (a JSON column is LONGTEXT, its JSON-ness only in the
# extended metadata), nor UUID/INET types (CHAR with a utf8mb4 collation).
KIND_TYPES = {
    "tinyint": "INT8", "tinyint unsigned": "UINT8", "smallint": "INT16", "smallint unsigned": "UINT16",
    "mediumint": "INT24", "mediumint unsigned": "UINT24", "int": "INT32", "int unsigned": "UINT32",
    "bigint": "INT64", "bigint unsigned": "UINT64", "decimal(65,30)": "DECIMAL", "decimal(10,0)": "DECIMAL",
    "decimal(5,2)": "DECIMAL", "float": "FLOAT32", "float(10,4)": "FLOAT32", "double": "FLOAT64",
    "double(10,4)": "FLOAT64", "bit(1)": "BIT", "bit(7)": "BIT", "bit(64)": "BIT", "year": "YEAR", "time": "TIME",
    "time(6)": "TIME", "date": "DATE", "datetime": "DATETIME", "datetime(6)": "DATETIME", "datetime(3)": "DATETIME",
    "timestamp(3)": "TIMESTAMP", "enum": "ENUM", "set": "SET", "json": "TEXT", "varchar latin1": "VARCHAR",
    "varchar utf8mb4": "VARCHAR", "varchar cp1251": "VARCHAR", "varchar ucs2": "VARCHAR", "char": "CHAR",
    "text": "TEXT", "binary(4)": "BINARY", "varbinary": "VARBINARY", "blob": "BLOB", "longblob": "BLOB",
    "varchar binary charset": "VARBINARY", "point": "GEOMETRY", "geometry": "GEOMETRY", "uuid": "CHAR",
    "inet6": "CHAR", "inet4": "CHAR",
    "tinyint(1)": "INT8", "timestamp": "TIMESTAMP", "timestamp(6)": "TIMESTAMP", "decimal(65,0)": "DECIMAL",
    "decimal(30,30)": "DECIMAL", "double zero and tiny": "FLOAT64", "float zero and tiny": "FLOAT32",
    "time(3)": "TIME", "date zero parts": "DATE", "datetime zero parts": "DATETIME", "year 2": "YEAR",
    "varchar escapes": "VARCHAR", "char utf8mb4": "CHAR", "tinytext": "TEXT", "mediumtext": "TEXT",
    "longtext": "TEXT", "varbinary every byte": "VARBINARY", "blob every byte": "BLOB", "tinyblob": "BLOB",
    "mediumblob": "BLOB", "char binary charset": "BINARY", "bit(3)": "BIT", "enum empty and unicode": "ENUM",
    "set unicode": "SET", "json unicode": "TEXT", "multipolygon": "GEOMETRY",
}


class Expression(NamedTuple):
    sql: str  # one column, v; "{T}" is replaced by the table of the kind named in `table`
    type: str  # its Vitess type
    table: str | None = None


EXPRESSIONS = {
    "null": Expression("select null as v", "NULL"),  # no type on the wire: the driver names it NULL itself
    "integer literal": Expression("select 42 as v", "INT32"),
    "bigint literal": Expression("select -9223372036854775808 as v", "INT64"),
    "unsigned cast": Expression("select cast(18446744073709551615 as unsigned) as v", "UINT64"),
    "count": Expression("select count(*) as v from {T}", "INT64", "bigint"),
    "decimal literal": Expression("select 123456789012345678901234567890.123456789 as v", "DECIMAL"),
    "sum of decimals": Expression("select sum(v) as v from {T}", "DECIMAL", "decimal(5,2)"),
    "avg of integers": Expression("select avg(v) as v from {T}", "DECIMAL", "int"),
    "double literal": Expression("select 1.5e0 as v", "FLOAT64"),
    "division": Expression("select 1 / 3 as v", "DECIMAL"),
    "string literal": Expression("select 'é😀 it''s' as v", "VARCHAR"),
    "percent signs": Expression("select 'pct %s %% %d ?' as v", "VARCHAR"),  # the SQL comes whole: never formatted
    "hex literal": Expression("select x'00ff80' as v", "VARBINARY"),
    "bit literal": Expression("select b'101' as v", "VARBINARY"),
    "json_object": Expression("select json_object('a', 1, 'é', json_array(1.5, null, true)) as v", "VARCHAR"),
    "json_extract": Expression("select json_extract(v, '$.big') as v from {T} where id = 0", "TEXT", "json"),
    "negative time": Expression("select sec_to_time(-90061) as v", "TIME"),
    "date function": Expression("select date('2024-02-29 12:00:00') as v", "DATE"),
    "datetime cast": Expression("select cast('2024-02-29 12:34:56.789' as datetime(3)) as v", "DATETIME"),
    "date plus interval": Expression("select cast('2024-01-01' as date) + interval 1 second as v", "DATETIME"),
    "group_concat": Expression("select group_concat(v order by id) as v from {T}", "TEXT", "enum"),
    "max of zero dates": Expression("select max(v) as v from {T}", "DATETIME", "datetime(6)"),
    "concat with bytes": Expression("select concat('a', x'ff') as v", "VARBINARY"),
    "uuid function": Expression("select length(uuid()) as v", "INT32"),
}

# What the driver gives for each Vitess type (src/cast.ts), as the script serialises it.
CASTS = {
    **dict.fromkeys(["INT8", "INT16", "INT24", "INT32", "UINT8", "UINT16", "UINT24", "UINT32", "YEAR", "FLOAT32",
                     "FLOAT64"], "number"),
    **dict.fromkeys(["INT64", "UINT64", "DECIMAL", "DATE", "DATETIME", "TIMESTAMP", "TIME"], "text"),  # unparsed
    **dict.fromkeys(["CHAR", "VARCHAR", "TEXT", "ENUM", "SET"], "text"),  # decoded from UTF-8
    **dict.fromkeys(["BINARY", "VARBINARY", "BLOB", "BIT", "GEOMETRY"], "bytes"),  # charset 63
    "NULL": "null only",
}

# Values: what mysql2 (as configured) returns, turned into what the driver returns, where the two differ by design.
TRANSFORMATIONS = {
    "bytes": "mysql2 returns a Node Buffer; the driver a plain Uint8Array of the same bytes (cast.ts uint8Array)",
    "geometry": "mysql2 parses GEOMETRY into objects ({x, y}, arrays of them) unless told otherwise: its typeCast "
                "here takes field.buffer(), the WKB bytes with the SRID, which is what the driver returns",
    "insert id": "mysql2 reads an OK packet's insert id past 2**63 as signed (18446744073709551610 as -6); the "
                 "driver has the server's digits (a string): compared modulo 2**64",
    "mariadb json": "mysql2 parses a MariaDB JSON column or expression (LONGTEXT, extended metadata format=json) "
                    "unless jsonStrings; the driver is told TEXT, the type on the wire, and returns the text",
}

# Fields: mysql2's column definition, turned into the driver's field.
FIELD_RULES = {
    "type": "the Vitess name of the MySQL type code (VITESS_NAMES, with UNSIGNED, ENUM and SET flags, and "
            "charset 63 for the binary strings); a NULL column has none on the wire and the driver says 'NULL'",
    "zero values": "left out, as PlanetScale's protojson leaves them out (table '' for an expression, flags 0, "
                   "decimals 0)",
    "decimals": "31 (MySQL's NOT_FIXED_DEC) or more (MariaDB sends 39 for strings) is not a count of digits: left "
                "out",
    "names": "mysql2's schema is the driver's database, characterSet its charset",
}

VITESS_NAMES = {1: "INT8", 2: "INT16", 9: "INT24", 3: "INT32", 8: "INT64", 0: "DECIMAL", 246: "DECIMAL",
                4: "FLOAT32", 5: "FLOAT64", 7: "TIMESTAMP", 10: "DATE", 11: "TIME", 12: "DATETIME", 13: "YEAR",
                16: "BIT", 255: "GEOMETRY", 6: "NULL"}
UNSIGNED, ENUM_FLAG, SET_FLAG, BINARY = 32, 256, 2048, 63


def vitess_name(field: dict[str, Any]) -> str:
    code, flags, binary = field["columnType"], field["flags"], field["characterSet"] == BINARY
    if code in (1, 2, 9, 3, 8):
        return ("U" if flags & UNSIGNED else "") + VITESS_NAMES[code]
    if code in (15, 253):
        return "VARBINARY" if binary else "VARCHAR"
    if code == 254:
        return "ENUM" if flags & ENUM_FLAG else "SET" if flags & SET_FLAG else "BINARY" if binary else "CHAR"
    if code in (249, 250, 251, 252):
        return "BLOB" if binary else "TEXT"
    return VITESS_NAMES[code]


def expected_field(field: dict[str, Any]) -> dict[str, Any]:
    """mysql2's column definition as the driver must see it (FIELD_RULES)."""
    decimals = field["decimals"] if field["decimals"] < 31 else 0
    entry = {"name": field["name"], "type": vitess_name(field)}
    for key, value in (("table", field["table"]), ("orgTable", field["orgTable"]), ("database", field["schema"]),
                       ("orgName", field["orgName"]), ("columnLength", field["columnLength"]),
                       ("charset", field["characterSet"]), ("decimals", decimals), ("flags", field["flags"])):
        if value:
            entry[key] = value
    return entry


def expected_value(value: Any) -> Any:
    """mysql2's value (as configured) as the driver must give it (TRANSFORMATIONS)."""
    if isinstance(value, dict) and "bytes" in value:
        assert value["class"] == "Buffer", value
        return {"bytes": value["bytes"], "class": "Uint8Array"}
    return value


def cast_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    assert isinstance(value, dict), value
    return next(key for key in ("number", "bytes", "json", "bigint", "boolean", "date", "undefined") if key in value)


# -- running the script ---------------------------------------------------------------------------------------------


RUN = uuid.uuid4().hex[:8]
TABLES = {kind: f"ps_types_{RUN}_{index}" for index, kind in enumerate(KINDS)}
WRITE_TABLE = f"ps_writes_{RUN}"
WRITES = {  # each runs on a table of each driver's own, in this order
    "insert two": "insert into {table} (n) values (1), (2)",
    "insert one": "insert into {table} (n) values (3)",
    "update changing": "update {table} set n = n + 10 where n = 1",
    "update to the same": "update {table} set n = n",
    "update nothing": "update {table} set n = 0 where n < 0",
    "delete": "delete from {table} where n = 3",
}
WRITTEN = "select id, n from {table} order by id"  # read after the writes, on each side's table


def queries() -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = [{"id": f"kind {kind}", "sql": f"select v from {TABLES[kind]} order by id"}
                                  for kind in KINDS]
    for name, expression in EXPRESSIONS.items():
        sql = expression.sql.replace("{T}", TABLES[expression.table]) if expression.table else expression.sql
        made.append({"id": f"expression {name}", "sql": sql})
    for item in made:
        if item["id"] in PLAIN:
            item["plain"] = True
    made += [{"id": f"write {name}", "sql": sql, "write": WRITE_TABLE}
             for name, sql in [*WRITES.items(), ("written", WRITTEN)]]
    return made


PLAIN = {"kind json", "kind json unicode", "kind point", "kind geometry", "expression json_object"}


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@planetscale/database", "mysql2")


@pytest.fixture(scope="module")
def tables(maria_database: Database) -> Iterator[None]:
    engine = maria_database.admin()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(PERMISSIVE)  # zero and invalid dates go in
            for kind, spec in KINDS.items():
                connection.exec_driver_sql(f"create table {TABLES[kind]} (id integer primary key, v {spec.column})")
                values = ", ".join(f"({index}, {literal})" for index, literal in enumerate([*spec.literals, "null"]))
                connection.exec_driver_sql(f"insert into {TABLES[kind]} (id, v) values {values}")
            for side in ("driver", "mysql2"):
                connection.exec_driver_sql(f"create table {WRITE_TABLE}_{side} (id bigint unsigned auto_increment "
                                           f"primary key, n int) auto_increment = 18446744073709551610")
        yield
    finally:
        with engine.begin() as connection:
            names = [*TABLES.values(), f"{WRITE_TABLE}_driver", f"{WRITE_TABLE}_mysql2"]
            connection.exec_driver_sql(f"drop table if exists {', '.join(names)}")
        engine.dispose()


def driver_url(base: str, db: Database) -> str:
    return base.replace("http://", f"http://{quote(db.username, safe='')}:{quote(db.password, safe='')}@", 1)


@pytest.fixture(scope="module", params=SERVERS)
def outcome(request: pytest.FixtureRequest, node: str, tables: None, maria_database: Database,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("planetscale-types")
    env = {"SQLHTTP_TARGETS": f"maria=mariadb://127.0.0.1:3306/{maria_database.database}",
           "SQLHTTP_PLANETSCALE_ROOT": "true", "SQLHTTP_SESSION_DIR": str(tmp / "sessions"),
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    login = {"host": "127.0.0.1", "port": 3306, "user": maria_database.username,
             "password": maria_database.password, "database": maria_database.database}
    with serving(request.param, env) as base:
        # Each server writes to its own copy: empty the write tables (and restart their ids) first.
        for side in ("driver", "mysql2"):
            maria_database.run(f"truncate table {WRITE_TABLE}_{side}")
            maria_database.run(f"alter table {WRITE_TABLE}_{side} auto_increment = 18446744073709551610")
        payload = {"url": driver_url(base, maria_database), "mysql": login, "queries": queries()}
        done = subprocess.run([node, str(SCRIPT)], input=json.dumps(payload).encode(), capture_output=True, cwd=ROOT,
                              timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def read(outcome: dict[str, Any], query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pair = outcome[query]
    assert "error" not in pair["driver"], pair["driver"]
    assert "error" not in pair["mysql2"], pair["mysql2"]
    return pair["driver"], pair["mysql2"]


def check_same(driver: dict[str, Any], direct: dict[str, Any], vitess: str) -> None:
    assert [field["type"] for field in driver["fields"]] == [vitess]
    assert driver["fields"] == [expected_field(field) for field in direct["fields"]]
    assert driver["rows"] == [[expected_value(value) for value in row] for row in direct["rows"]]
    kinds = {cast_kind(value) for row in driver["rows"] for value in row} - {"null"}
    assert kinds == (set() if CASTS[vitess] == "null only" else {CASTS[vitess]}), kinds


# -- the comparisons ------------------------------------------------------------------------------------------------


def test_every_kind_has_its_type() -> None:
    assert set(KIND_TYPES) == set(KINDS)  # a kind added to the corpus needs its expected type here
    assert set(KIND_TYPES.values()) | {e.type for e in EXPRESSIONS.values()} == set(CASTS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_column_reads_as_mysql2_reads_it(kind: str, outcome: dict[str, Any]) -> None:
    driver, direct = read(outcome, f"kind {kind}")
    assert len(direct["rows"]) == len(KINDS[kind].literals) + 1 and direct["rows"][-1] == [None]
    check_same(driver, direct, KIND_TYPES[kind])


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_an_expression_reads_as_mysql2_reads_it(name: str, outcome: dict[str, Any]) -> None:
    driver, direct = read(outcome, f"expression {name}")
    assert len(direct["rows"]) == 1
    check_same(driver, direct, EXPRESSIONS[name].type)


def test_the_exact_texts_of_the_edges(outcome: dict[str, Any]) -> None:
    # What both gave, spelled out for the values that a cast would most easily respell.
    rows = {kind: [row[0] for row in read(outcome, f"kind {kind}")[0]["rows"]]
            for kind in ("bigint unsigned", "bigint", "decimal(65,30)", "time", "date", "datetime(6)", "year",
                         "tinyint(1)", "double zero and tiny")}
    assert rows["bigint unsigned"] == ["0", "18446744073709551615", None]
    assert rows["bigint"][:2] == ["-9223372036854775808", "9223372036854775807"]
    assert rows["decimal(65,30)"][2] == "99999999999999999999999999999999999.999999999999999999999999999999"
    assert rows["time"] == ["-838:59:59", "838:59:59", "00:00:00", "-00:00:01", "12:34:56", "25:00:00", None]
    assert rows["date"][3:6] == ["0000-00-00", "2024-02-30", "2024-00-00"]  # zero, invalid (ALLOW_INVALID_DATES), parts
    assert rows["datetime(6)"][3] == "0000-00-00 00:00:00.000000"
    assert rows["year"] == [{"number": "0"}, {"number": "1901"}, {"number": "2155"}, None]
    assert rows["tinyint(1)"] == [{"number": "0"}, {"number": "1"}, {"number": "-1"}, {"number": "127"}, None]
    assert rows["double zero and tiny"][:2] == [{"number": "0"}, {"number": "5e-324"}]  # InnoDB keeps no -0
    assert [row[0] for row in read(outcome, "kind set unicode")[0]["rows"]] == ["é,😀", "b", "é,b,😀", None]
    assert read(outcome, "expression percent signs")[0]["rows"] == [["pct %s %% %d ?"]]
    every_byte = read(outcome, "kind varbinary every byte")[0]["rows"][0][0]
    assert every_byte == {"bytes": list(range(256)), "class": "Uint8Array"}


def test_the_transformations_are_needed(outcome: dict[str, Any]) -> None:
    # Each entry of TRANSFORMATIONS is a real difference: without its setting, mysql2 answers otherwise.
    assert set(TRANSFORMATIONS) == {"bytes", "geometry", "mariadb json", "insert id"}  # each shown here or below
    pair = outcome["kind json"]
    assert [field["extendedFormat"] for field in pair["mysql2"]["fields"]] == ["json"]
    assert pair["driver"]["rows"][1] == ["[1, 2.5, null]"]
    assert pair["plain"]["rows"][1] == [{"json": [1, 2.5, None], "class": "Array"}]
    unicode = outcome["kind json unicode"]
    # Parsed, '"just a string"' is a string and 'null' looks like SQL's NULL.
    assert [row[0] for row in unicode["plain"]["rows"]][1:] == ["just a string", None, None]
    assert unicode["driver"]["rows"][2] == ["null"]  # the text: the driver parses only a JSON type
    assert outcome["expression json_object"]["plain"]["rows"] == [[{"json": {"a": 1, "é": [1.5, None, True]},
                                                                    "class": "Object"}]]
    assert outcome["kind point"]["plain"]["rows"][0] == [{"json": {"x": 1, "y": 2}, "class": "Object"}]
    point = outcome["kind point"]["driver"]["rows"][0][0]["bytes"]
    assert point[:4] == [0, 0, 0, 0] and len(point) == 25  # SRID 0, then the WKB of a point
    assert outcome["kind blob"]["mysql2"]["rows"][0] == [{"bytes": [0], "class": "Buffer"}]


def test_writes_count_as_mysql2_counts(outcome: dict[str, Any]) -> None:
    for name in WRITES:
        pair = outcome[f"write {name}"]
        driver, direct = pair["driver"], pair["mysql2"]
        assert "error" not in driver and "error" not in direct, pair
        assert driver["fields"] == 0
        assert driver["rowsAffected"] == direct["affectedRows"], name
        # The driver's insertId is a string, "0" when there is none (TRANSFORMATIONS["insert id"]).
        assert driver["insertId"] == str(int(direct["insertId"]) % 2**64), name
    assert outcome["write insert two"]["mysql2"]["insertId"] in (-6, "-6")  # the entry is needed
    # The ids the database gave, as the driver said: the first of the two, then the next after them.
    ids = {name: outcome[f"write {name}"]["driver"]["insertId"] for name in ("insert two", "insert one")}
    assert ids == {"insert two": "18446744073709551610", "insert one": "18446744073709551612"}
    driver, direct = outcome["write written"]["driver"], outcome["write written"]["mysql2"]
    assert driver["rows"] == direct["rows"] == [["18446744073709551610", {"number": "11"}],
                                                ["18446744073709551611", {"number": "2"}]]
    assert [outcome[f"write {name}"]["driver"]["rowsAffected"] for name in WRITES] == [2, 1, 1, 3, 0, 1]
