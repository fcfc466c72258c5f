"""`make bench`: our middleware side by side with what a user would write, Datasette, and the raw drivers.

    .venv/bin/python bench/run.py [--duration 5] [--smoke] [--write docs/benchmarks.md]
    .venv/bin/python bench/run.py --only libsql [--libsql-rounds 3] [--write docs/benchmarks.md]

Load comes from wrk (Debian's package; `make bench` installs it) with one thread, over real servers: uvicorn for
ASGI, gunicorn for WSGI, each on the same machine. `--smoke` runs short cases with a Python load generator, so the
test suite can check the harness without wrk. `--only libsql` runs only libSQL's Hrana beside PolyScale on the
SQLite target (and with `--write` replaces only that section); it needs no PostgreSQL or MariaDB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = os.environ.get("SQLHTTP_TEST_PASSWORD", "p@ss:/#%?wörd✓")
DB = "sqlhttp_test_bench"
SQLITE = Path(tempfile.gettempdir()) / "sqlhttp-bench.db"
PG_ADMIN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
API_KEY = "bench-token"  # the SQLite target's API key (bench/apps/ours.py), libSQL's authToken


# -- fixtures -----------------------------------------------------------------------------------------------------

def prepare() -> None:
    """Bench tables: bench_rows (10,000 rows, 6 columns) and bench_insert, in PostgreSQL, MariaDB and SQLite."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"],
                   check=True, capture_output=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB} OWNER sqlhttp_test"],
                   check=True, capture_output=True)
    rows_sql = ("CREATE TABLE bench_rows (id integer primary key, name varchar(40), price numeric(10,2), "
                "qty integer, created timestamp, active boolean)")
    insert_sql = "CREATE TABLE bench_insert (id {serial}, v varchar(40))"
    fill = [(i, f"item {i}", f"{i % 1000}.{i % 100:02d}", i % 97, f"2024-01-{1 + i % 28:02d} 10:00:00", i % 2 == 0)
            for i in range(1, 10_001)]
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-qc"]
    subprocess.run([*psql, rows_sql], check=True)
    subprocess.run([*psql, insert_sql.format(serial="serial primary key")], check=True)
    subprocess.run([*psql, "INSERT INTO bench_rows SELECT i, 'item ' || i, (i % 1000) + (i % 100) / 100.0, i % 97, "
                    "timestamp '2024-01-01 10:00' + (i % 28) * interval '1 day', i % 2 = 0 "
                    "FROM generate_series(1, 10000) i"], check=True)
    subprocess.run([*psql, "ALTER TABLE bench_rows OWNER TO sqlhttp_test; ALTER TABLE bench_insert OWNER TO "
                    "sqlhttp_test"], check=True)
    maria = ["mariadb", "-h", "127.0.0.1", "-u", "root", "-e"]
    subprocess.run([*maria, f"DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}; USE {DB}; {rows_sql}; "
                    f"{insert_sql.format(serial='integer auto_increment primary key')}; "
                    "INSERT INTO bench_rows SELECT seq, concat('item ', seq), (seq % 1000) + (seq % 100) / 100, "
                    "seq % 97, '2024-01-01 10:00:00' + interval (seq % 28) day, seq % 2 = 0 FROM seq_1_to_10000"],
                   check=True)
    prepare_sqlite(rows_sql, insert_sql, fill)


def prepare_sqlite(rows_sql: str = "", insert_sql: str = "", fill: Sequence[tuple[object, ...]] | None = None) -> None:
    """The SQLite file alone (``--only libsql`` needs nothing else): the same tables and rows as prepare()."""
    rows_sql = rows_sql or ("CREATE TABLE bench_rows (id integer primary key, name varchar(40), price numeric(10,2), "
                            "qty integer, created timestamp, active boolean)")
    insert_sql = insert_sql or "CREATE TABLE bench_insert (id {serial}, v varchar(40))"
    if fill is None:
        fill = [(i, f"item {i}", f"{i % 1000}.{i % 100:02d}", i % 97, f"2024-01-{1 + i % 28:02d} 10:00:00",
                 i % 2 == 0) for i in range(1, 10_001)]
    SQLITE.unlink(missing_ok=True)
    with sqlite3.connect(SQLITE) as connection:
        connection.execute(rows_sql)
        connection.execute(insert_sql.format(serial="integer primary key"))
        connection.executemany("INSERT INTO bench_rows VALUES (?, ?, ?, ?, ?, ?)", fill)
    connection.close()


# -- servers ------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVERS = {
    # name: (command, module:app)
    "ours-asgi": ("uvicorn", "bench.apps.ours:asgi_app"),
    "ours-wsgi": ("gunicorn", "bench.apps.ours:wsgi_app"),
    "starlette-asyncpg": ("uvicorn", "bench.apps.baselines:starlette_app"),
    "bare-asyncpg": ("uvicorn", "bench.apps.baselines:bare_app"),
    "flask-sqlalchemy": ("gunicorn", "bench.apps.baselines:flask_app"),
    "flask-bare": ("gunicorn", "bench.apps.ours:flask_bare"),
    "flask-mounted": ("gunicorn", "bench.apps.ours:flask_mounted"),
    "datasette": ("datasette", ""),
}


@contextlib.contextmanager
def serve(name: str) -> Iterator[tuple[str, int, int]]:
    """Start one server; yield its host, port and process id (gunicorn's master: its workers are children)."""
    port = free_port()
    kind, app = SERVERS[name]
    if kind == "uvicorn":
        command = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                   "--no-access-log", app]
    elif kind == "gunicorn":
        command = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8",
                   "--log-level", "warning", app]
    else:
        command = [str(BIN / "datasette"), "serve", str(SQLITE), "--host", "127.0.0.1", "--port", str(port),
                   "--setting", "max_returned_rows", "20000"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SQLITE": str(SQLITE), "BENCH_API_KEY": API_KEY,
           "BENCH_PG_DSN": f"postgresql://postgres@127.0.0.1:5432/{DB}"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield "127.0.0.1", port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


# -- workloads ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    server: str
    database: str  # pg, maria, lite
    workload: str  # select1, rows100, rows10k, insert, host; neon-* in Neon's protocol, libsql-* in libSQL's Hrana
    method: str
    path: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    lua: str = ""  # more of wrk's script (libsql-tx: the requests after the first)


SQL = {
    "select1": ("SELECT 1 AS one", None),
    "rows100": ("SELECT id, name, price, qty, created, active FROM bench_rows ORDER BY id LIMIT 100", None),
    "rows10k": ("SELECT id, name, price, qty, created, active FROM bench_rows ORDER BY id LIMIT 10000", None),
    "insert": ("INSERT INTO bench_insert (v) VALUES (?)", ["bench"]),
}


NEON_CONNECTION = f"postgresql://sqlhttp_test:{quote(PASSWORD, safe='')}@pg/{DB}"

# libSQL's Hrana over HTTP, as @libsql/client sends it: execute() is one pipeline that opens a stream, runs one
# statement and closes the stream; transaction("read") is BEGIN TRANSACTION READONLY with its first statement, the
# next statements with the baton of each answer, and COMMIT with close.
LIBSQL_PATH = "/sql/lite/v2/pipeline"
LIBSQL_HEADERS = (("Content-Type", "application/json"), ("Authorization", f"Bearer {API_KEY}"))
TX_STEPS: list[list[dict[str, object]]] = [
    [{"type": "execute", "stmt": {"sql": "BEGIN TRANSACTION READONLY"}},
     {"type": "execute", "stmt": {"sql": "SELECT 1 AS opened"}}],
    [{"type": "execute", "stmt": {"sql": "SELECT id, name, price, qty, created, active FROM bench_rows WHERE id = ?",
                                  "args": [{"type": "integer", "value": "42"}]}}],
    [{"type": "execute", "stmt": {"sql": "COMMIT"}}, {"type": "close"}],
]


def libsql_body(requests: list[dict[str, object]], baton: str | None = None) -> bytes:
    return json.dumps({"baton": baton, "requests": requests}, separators=(",", ":")).encode()


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def tx_lua() -> str:
    """wrk's request() and response() for libsql-tx. wrk names no connection to its script, so an answer's next
    request goes into a queue that the next connection ready to send takes from (any HTTP connection may carry a
    stream's next request: its baton names the stream); with none queued, a connection opens a transaction. So at
    most as many transactions are open as there are connections. An answer with Retry-After (503, busy) delays the
    next request sent by that long, as a client that honours it would (wrk asks delay() right after an answer,
    before the same connection sends again; another connection's answer in between may take the pause instead).
    Counts what it saw, for done()."""
    def continued(step: int) -> str:
        prefix, suffix = libsql_body(TX_STEPS[step], "@BATON@").decode().split('"@BATON@"')
        return f'{lua_string(prefix)} .. \'"\' .. baton .. \'"\' .. {lua_string(suffix)}'

    script = """
queue = {}
committed = 0
failed = 0
codes = {}
pause = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function delay()
  local ms = pause
  pause = 0
  return ms
end
function request()
  local body = table.remove(queue, 1)
  return wrk.format(nil, nil, nil, body or wrk.body)
end
function response(status, headers, body)
  if status ~= 200 or body:find('"type":"error"', 1, true) then
    if status == 200 then failed = failed + 1 end
    local code = status .. " " .. (body:match('"code":"([%w_]+)"') or "?")
    codes[code] = (codes[code] or 0) + 1
    local after = tonumber(headers["Retry-After"] or headers["retry-after"] or "")
    if after then pause = after * 1000 end
    return
  end
  local baton = body:match('^{"baton":"([^"]+)"')
  if baton == nil then
    committed = committed + 1
  elseif body:find('"name":"opened"', 1, true) then
    queue[#queue + 1] = SECOND
  else
    queue[#queue + 1] = THIRD
  end
end
function done(summary, latency, requests)
  local c, f = 0, 0
  for _, thread in ipairs(threads) do
    c = c + thread:get("committed")
    f = f + thread:get("failed")
    for code, n in pairs(thread:get("codes")) do io.write(string.format("error answer: %s %d\\n", code, n)) end
  end
  io.write(string.format("transactions committed: %d\\nhrana errors: %d\\n", c, f))
end
"""
    return script.replace("SECOND", continued(1)).replace("THIRD", continued(2))


def case(server: str, database: str, workload: str) -> Case:
    if workload == "host":
        return Case(server, database, workload, "GET", "/api/status", None)
    if workload.startswith("neon-"):  # what @neondatabase/serverless sends
        sql = SQL[workload.removeprefix("neon-")][0]
        headers = (("Content-Type", "text/plain;charset=UTF-8"), ("Neon-Connection-String", NEON_CONNECTION),
                   ("Neon-Raw-Text-Output", "true"), ("Neon-Array-Mode", "true"))
        return Case(server, database, workload, "POST", "/sql", json.dumps({"query": sql, "params": []}).encode(),
                    headers)
    if workload == "libsql-tx":
        return Case(server, database, workload, "POST", LIBSQL_PATH, libsql_body(TX_STEPS[0]), LIBSQL_HEADERS,
                    tx_lua())
    if workload.startswith("libsql-"):
        stmt = {"sql": SQL[workload.removeprefix("libsql-")][0]}
        return Case(server, database, workload, "POST", LIBSQL_PATH,
                    libsql_body([{"type": "execute", "stmt": stmt}, {"type": "close"}]), LIBSQL_HEADERS)
    sql, bindings = SQL[workload]
    if server == "datasette":
        query = sql.replace("?", "'bench'")
        return Case(server, database, workload, "GET",
                    f"/{SQLITE.stem}.json?" + urlencode({"sql": query, "_shape": "array"}), None)
    if server in ("starlette-asyncpg", "bare-asyncpg"):
        body = {"sql": sql.replace("?", "$1"), "bindings": bindings or []}
    elif server == "flask-sqlalchemy":
        body = {"sql": sql.replace("?", "%s"), "bindings": bindings or []}
    else:
        login = {"pg": ("postgres", "sqlhttp_test", PASSWORD), "maria": ("mariadb", "sqlhttp_test", PASSWORD),
                 "lite": ("sqlite", "bench", "bench")}[database]
        body = {"cacheId": database, "provider": login[0], "username": login[1], "password": login[2],
                "database": DB, "sql": sql}
        if bindings:
            body["bindings"] = bindings
    return Case(server, database, workload, "POST", "/sql", json.dumps(body).encode())


@dataclass
class Result:
    case: Case
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    transfer_mb_s: float = 0.0
    errors: int = 0
    notes: list[str] = field(default_factory=list)
    requests: int = 0
    cpu_us: float | None = None  # the server's CPU time (user + system, all its processes) per request
    peak_mb: float | None = None  # the server's peak memory growth while answering one request (rows10k)
    body_mb: float | None = None  # the size of that answer
    socket_errors: int = 0  # wrk's connect, read, write errors and timeouts (a request unanswered in 2 s)
    transactions: int | None = None  # libsql-tx: transactions committed
    hrana_errors: int = 0  # libsql-tx: 200 answers with an error inside
    codes: dict[str, int] = field(default_factory=dict)  # libsql-tx: error answers by status and code
    seconds: float = 0.0


def _processes(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        found += [int(child) for child in children.read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children so far."""
    ticks = 0
    for process in _processes(pid):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def peak_memory(case: Case, host: str, port: int, pid: int) -> tuple[float, float]:
    """(peak memory growth in MB, answer size in MB) of the server's first large answer, after small ones.

    Linux keeps each process's high-water mark of resident memory (VmHWM); writing 5 to clear_refs resets it to
    the current size, so after the request, VmHWM - VmRSS(before) is what answering it took at its peak. Measured
    before any other large answer, whose freed memory the allocator would keep and hand back unseen.
    """
    def one(request: Case) -> int:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request(request.method, request.path, request.body, dict(request.headers))
        size = len(connection.getresponse().read())
        connection.close()
        return size

    def rewritten(sql: str) -> Case:
        large = SQL["rows10k"][0]
        return replace(case, body=(case.body or b"").replace(large.encode(), sql.encode()),
                       path=case.path.replace(urlencode({"sql": large}), urlencode({"sql": sql})))

    # Every worker and connection warm: connected, its code paths loaded, the table in the database's page cache
    # (SQLite's lives in our process, up to 2 MB a connection, and is not part of the answer).
    for sql in ["SELECT count(*) AS n FROM bench_rows WHERE name <> ''", SQL["rows100"][0]] * 6:
        one(rewritten(sql))
    pids = _processes(pid)
    before = {p: _status_kib(p, "VmRSS") for p in pids}
    for p in pids:
        Path(f"/proc/{p}/clear_refs").write_text("5")
    size = one(case)
    growth = max(_status_kib(p, "VmHWM") - before[p] for p in pids)
    return max(0, growth) * 1024 / 1e6, size / 1e6


def wrk(case: Case, host: str, port: int, connections: int, duration: float) -> Result:
    script = Path(tempfile.gettempdir()) / f"sqlhttp-bench-{os.getpid()}.lua"
    body = (case.body or b"").decode().replace("\\", "\\\\").replace('"', '\\"')
    headers = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in case.headers)
    script.write_text(f'wrk.method = "{case.method}"\nwrk.body = "{body}"\n{headers}{case.lua}')
    seconds = max(1, round(duration))  # wrk takes whole seconds
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                           f"http://{host}:{port}{case.path}"], capture_output=True, text=True, check=True)
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", text).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", text).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
    mb = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[transfer.group(2)] if transfer else 0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    committed = re.search(r"transactions committed: (\d+)", text)
    hrana = re.search(r"hrana errors: (\d+)", text)
    return Result(case, connections, rps, p50, p99, mb, int(errors.group(1)) if errors else 0,
                  requests=int(total.group(1)) if total else 0,
                  socket_errors=sum(map(int, sockets.groups())) if sockets else 0,
                  transactions=int(committed.group(1)) if committed else None,
                  hrana_errors=int(hrana.group(1)) if hrana else 0,
                  codes={code: int(n) for code, n in re.findall(r"error answer: (\d+ [\w?]+) (\d+)", text)},
                  seconds=_ms(total.group(2) + total.group(3)) / 1000 if total else float(seconds))


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3}[unit]


def python_load(case: Case, host: str, port: int, connections: int, duration: float) -> Result:
    """A small load generator for the smoke run (no wrk needed)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def run() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(host, port, timeout=10)
        while time.monotonic() < stop:
            started = time.perf_counter()
            connection.request(case.method, case.path, case.body, dict(case.headers))
            response = connection.getresponse()
            response.read()
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += response.status >= 300
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return Result(case, connections, len(latencies) / elapsed, statistics.median(latencies) * 1000,
                  latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, errors=errors)


# -- the raw driver floor -----------------------------------------------------------------------------------------

def driver_floor(rounds: int = 2000) -> dict[str, float]:
    """Microseconds per `SELECT 1` with the raw driver, in process (the floor under every HTTP figure)."""
    import asyncpg
    import psycopg
    import pymysql

    floor = {}
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={DB}", autocommit=True) as pg:
        floor["psycopg"] = _time(rounds, lambda: pg.execute("SELECT 1").fetchall())
    my = pymysql.connect(host="127.0.0.1", user="root", password="", database=DB)
    cursor = my.cursor()
    floor["PyMySQL"] = _time(rounds, lambda: (cursor.execute("SELECT 1"), cursor.fetchall()))
    my.close()
    lite = sqlite3.connect(SQLITE)
    floor["sqlite3"] = _time(rounds, lambda: lite.execute("SELECT 1").fetchall())
    lite.close()

    async def apg() -> float:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}")
        started = time.perf_counter()
        for _ in range(rounds):
            await connection.fetch("SELECT 1")
        elapsed = (time.perf_counter() - started) / rounds * 1e6
        await connection.close()
        return elapsed

    floor["asyncpg"] = asyncio.run(apg())
    return floor


def _time(rounds: int, call: object) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        call()  # type: ignore[operator]
    return (time.perf_counter() - started) / rounds * 1e6


# -- libSQL's Hrana beside PolyScale, on the SQLite target --------------------------------------------------------

LIBSQL_SERVERS = ["ours-asgi", "ours-wsgi"]
LIBSQL_PAIRS = [("select1", "libsql-select1"), ("rows100", "libsql-rows100")]  # (PolyScale, libSQL)
LIBSQL_MARKER = "## libSQL's Hrana beside PolyScale, SQLite"


def answer(one: Case, host: str, port: int) -> bytes:
    """One request of ``one``'s, checked: 200, and no error inside a Hrana answer. Its body."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request(one.method, one.path, one.body, dict(one.headers))
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200 or b'"type":"error"' in body:
        raise RuntimeError(f"{one.server} {one.workload}: {response.status} {body[:300]!r}")
    return body


def transaction(server: str, host: str, port: int) -> list[bytes]:
    """One libsql-tx transaction in Python, as wrk's script runs it: each answer's baton in the next request."""
    answers: list[bytes] = []
    baton = None
    for step, requests in enumerate(TX_STEPS):
        one = replace(case(server, "lite", "libsql-tx"), body=libsql_body(requests, baton))
        answers.append(answer(one, host, port))
        baton = json.loads(answers[-1])["baton"]
        if (baton is None) != (step == len(TX_STEPS) - 1):
            raise RuntimeError(f"{server} libsql-tx step {step + 1}: baton {baton!r}")
    return answers


def settle(server: str, host: str, port: int, quick: float = 0.1, times: int = 8) -> float:
    """Seconds until ``execute()`` is answered at once again, ``times`` in a row, each on a new connection (on WSGI
    they reach both workers), after a libsql-tx run: wrk stops with transactions open, and requests it gave up on
    still open theirs after their clients have gone, each holding a pooled connection until it idles out."""
    started = time.monotonic()
    one = case(server, "lite", "libsql-select1")
    streak = 0
    while streak < times:
        sent = time.monotonic()
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request(one.method, one.path, one.body, dict(one.headers))
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status == 200 and time.monotonic() - sent < quick:
            streak += 1
        else:
            streak = 0
            time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class LibsqlRow:
    server: str
    workload: str  # the PolyScale workload: select1, rows100
    connections: int
    polyscale: list[Result]
    libsql: list[Result]
    sizes: tuple[int, int]  # answer bytes: PolyScale's, libSQL's


@dataclass
class TxRow:
    server: str
    connections: int
    runs: list[Result]
    settled: list[float]  # seconds until the pool was free again, after each run


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu(results: list[Result]) -> float:
    return _median([r.cpu_us for r in results if r.cpu_us])


def run_libsql(duration: float, rounds: int, load: object = None) -> tuple[list[LibsqlRow], list[TxRow]]:
    """libSQL's execute() beside PolyScale's same statement, on one server (the same process answers both), at 1
    and 16 clients, ``rounds`` runs each, alternated (who goes first alternates too); then libSQL's interactive
    transaction (libsql-tx), ``rounds`` runs at each client count."""
    load = load or wrk
    pairs: list[LibsqlRow] = []
    transactions: list[TxRow] = []
    for server in LIBSQL_SERVERS:
        with serve(server) as (host, port, pid):
            for polyscale, libsql in LIBSQL_PAIRS:
                sides = case(server, "lite", polyscale), case(server, "lite", libsql)
                sizes = (len(answer(sides[0], host, port)), len(answer(sides[1], host, port)))
                for one in sides:
                    load(one, host, port, 2, 1.0)  # type: ignore[operator]  # warm the pools
                for connections in (1, 16):
                    row = LibsqlRow(server, polyscale, connections, [], [], sizes)
                    for round_ in range(rounds):
                        order = [(row.polyscale, sides[0]), (row.libsql, sides[1])]
                        for results, one in order if round_ % 2 == 0 else order[::-1]:
                            before = cpu_seconds(pid)
                            result = load(one, host, port, connections, duration)  # type: ignore[operator]
                            if result.requests:
                                result.cpu_us = (cpu_seconds(pid) - before) / result.requests * 1e6
                            results.append(result)
                            _print(result)
                    pairs.append(row)
            transaction(server, host, port)
            tx = case(server, "lite", "libsql-tx")
            load(tx, host, port, 2, 1.0)  # type: ignore[operator]
            settle(server, host, port)
            for connections in (1, 16):
                row_tx = TxRow(server, connections, [], [])
                for _ in range(rounds):
                    before = cpu_seconds(pid)
                    result = load(tx, host, port, connections, duration)  # type: ignore[operator]
                    if result.requests:
                        result.cpu_us = (cpu_seconds(pid) - before) / result.requests * 1e6
                    row_tx.runs.append(result)
                    row_tx.settled.append(settle(server, host, port))
                    _print(result, f"  tx {result.transactions}  hrana errors {result.hrana_errors}  pool free "
                                   f"after {row_tx.settled[-1]:.1f} s")
                transactions.append(row_tx)
    return pairs, transactions


def _print(result: Result, more: str = "") -> None:
    c = result.case
    print(f"{c.server:18} {c.database:5} {c.workload:14} c={result.connections:<2} {result.requests_per_second:8.0f} "
          f"req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  CPU {result.cpu_us or 0:5.0f} µs  "
          f"errors {result.errors} socket errors {result.socket_errors}{more}", flush=True)


def report_libsql(pairs: list[LibsqlRow], transactions: list[TxRow], duration: float, rounds: int) -> str:
    lines = [
        LIBSQL_MARKER,
        "",
        f"`make bench`, or alone: `.venv/bin/python bench/run.py --only libsql --write docs/benchmarks.md` "
        f"({dt.date.today().isoformat()}): {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; wrk with 1 thread, {duration:g} s per run after a 1 s warm-up, {rounds} runs "
        "of each side alternated (who goes first alternates too), medians shown. One server answers both protocols, "
        "on the same SQLite file and the same target (`lite`, one pool of 2 connections a worker): uvicorn with 1 "
        "worker (ASGI), gunicorn with 2 workers and 8 threads (WSGI), every protection on. PolyScale logs in with "
        "the target's user (`bench`, a plain-text password); libSQL with `Authorization: Bearer` and an API key "
        "stored as `hash_api_key` makes it (one SHA-256). libSQL's requests are what `@libsql/client` sends: "
        "`execute()` posts `v2/pipeline` with `execute` and `close`, so no stream outlives the request. The "
        "100 rows: `bench_rows`' first 100 (integer, text, numeric, integer, timestamp and boolean columns, which "
        "SQLite stores as integer, text, real, integer, text, integer).",
        "",
        "| server | workload | clients | PolyScale req/s | libSQL req/s | libSQL / PolyScale (each run) | "
        "PolyScale p50 / p99 ms | libSQL p50 / p99 ms | server CPU per request, PolyScale / libSQL | "
        "answer bytes, PolyScale / libSQL | non-2xx / wrk errors, all runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in pairs:
        a = _median([r.requests_per_second for r in row.polyscale])
        b = _median([r.requests_per_second for r in row.libsql])
        ratios = ", ".join(f"{y.requests_per_second / x.requests_per_second:.2f}x"
                         for x, y in zip(row.polyscale, row.libsql, strict=True))
        errors = (f"{sum(r.errors for r in row.polyscale + row.libsql)} / "
                  f"{sum(r.socket_errors for r in row.polyscale + row.libsql)}")
        lines.append(
            f"| {row.server} | {row.workload} | {row.connections} | {a:.0f} | {b:.0f} | {b / a:.2f}x ({ratios}) | "
            f"{_median([r.p50_ms for r in row.polyscale]):.2f} / {_median([r.p99_ms for r in row.polyscale]):.2f} | "
            f"{_median([r.p50_ms for r in row.libsql]):.2f} / {_median([r.p99_ms for r in row.libsql]):.2f} | "
            f"{_cpu(row.polyscale):.0f} / {_cpu(row.libsql):.0f} µs | {row.sizes[0]:,} / {row.sizes[1]:,} | "
            f"{errors} |")
    first, second, third = (json.dumps(step, separators=(",", ":")) for step in TX_STEPS)
    lines += [
        "",
        "libSQL's interactive transaction (`libsql-tx`), what `client.transaction(\"read\")` sends: three requests "
        "on one stream, each after the last one's answer, with its baton: `BEGIN TRANSACTION READONLY` and "
        "`SELECT 1`; a one-row `SELECT` by primary key with an argument; `COMMIT` and `close`. The stream holds "
        "one of its worker's 2 pooled connections from the first request to the last, so at most 2 transactions a "
        "worker are open at once; others wait for a connection, or, when as many already wait, are answered 503 "
        "busy with `Retry-After`, which the script honours (the next request waits that long; it counts as an error "
        "answer in the table). wrk's script sends each answer's next "
        "request on the next connection ready to send, which on WSGI may be another worker's (the request is "
        "handed over to the worker holding the stream). Latencies are per request; after each run the harness "
        "waits until an `execute()` is answered at once (the last column: wrk stops with transactions open, each "
        "holding a connection until it idles out, `session_idle_timeout` = 2 s in the bench app). wrk counts a "
        "request unanswered after 2 s as a timeout.",
        "",
        "| server | clients | transactions/s | requests/s | p50 ms | p99 ms | server CPU per request | "
        "error answers, all runs; wrk's timeouts and socket errors | pool free again after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row_tx in transactions:
        runs = row_tx.runs
        per_second = [(r.transactions or 0) / r.seconds for r in runs if r.seconds]
        codes: dict[str, int] = {}
        for r in runs:
            for code, n in r.codes.items():
                codes[code] = codes.get(code, 0) + n
        errors = ", ".join(f"{n} {code}" for code, n in sorted(codes.items())) or "none"
        errors += f"; wrk: {sum(r.socket_errors for r in runs)}"
        lines.append(
            f"| {row_tx.server} | {row_tx.connections} | {_median(per_second):.0f} "
            f"({', '.join(f'{x:.0f}' for x in per_second)}) | {_median([r.requests_per_second for r in runs]):.0f} | "
            f"{_median([r.p50_ms for r in runs]):.2f} | {_median([r.p99_ms for r in runs]):.2f} | "
            f"{_cpu(runs):.0f} µs | {errors} | {', '.join(f'{s:.1f}' for s in row_tx.settled)} s |")
    lines += ["", f"The three bodies: `{first}`, then `{second}`, then `{third}` (with `\"baton\"` set to the last "
              "answer's)."]
    return "\n".join(lines) + "\n"


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace the section under ``marker`` (up to the next `## ` heading) with ``text``; append it if absent."""
    current = path.read_text()
    head = current.split(marker)[0].rstrip() + "\n\n" if marker in current else current.rstrip() + "\n\n"
    tail = ""
    if marker in current:
        rest = current.split(marker, 1)[1]
        following = re.search(r"\n## (?!#)", rest)
        tail = rest[following.start():] if following else ""
    path.write_text(head + text + tail)


# -- the report ---------------------------------------------------------------------------------------------------

PLAN = [
    # (server, database, workloads)
    ("ours-asgi", "pg", ["select1", "neon-select1", "rows100", "neon-rows100", "rows10k", "insert"]),
    ("starlette-asyncpg", "pg", ["select1", "rows100", "rows10k", "insert"]),
    ("ours-wsgi", "pg", ["select1", "neon-select1", "rows100", "neon-rows100", "rows10k", "insert"]),
    ("flask-sqlalchemy", "pg", ["select1", "rows100", "rows10k", "insert"]),
    ("ours-asgi", "maria", ["select1", "rows100", "insert"]),
    ("ours-asgi", "lite", ["select1", "rows100", "rows10k"]),
    ("datasette", "lite", ["select1", "rows100", "rows10k"]),
    ("flask-bare", "-", ["host"]),
    ("flask-mounted", "-", ["host"]),
]


def run_plan(duration: float, load: object, only: list[str] | None = None) -> list[Result]:
    """Every case of PLAN, or those whose "server:db:workload" starts with one of ``only``."""
    results = []
    for server, database, workloads in PLAN:
        chosen = [w for w in workloads if not only or any(f"{server}:{database}:{w}".startswith(o) for o in only)]
        if not chosen:
            continue
        with serve(server) as (host, port, pid):
            for workload in chosen:
                one = case(server, database, workload)
                memory = peak_memory(one, host, port, pid) if workload == "rows10k" else None
                load(one, host, port, 2, 1.0)  # type: ignore[operator]  # warm the pools
                for connections in (1, 16):
                    result = load(one, host, port, connections, duration)  # type: ignore[operator]
                    if memory is not None and connections == 1:
                        result.peak_mb, result.body_mb = memory
                    results.append(result)
                    print(f"{server:18} {database:5} {workload:8} c={connections:<2} {result.requests_per_second:8.0f} "
                          f"req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                          flush=True)
    return results


def find(results: list[Result], server: str, database: str, workload: str, connections: int) -> Result | None:
    for result in results:
        c = result.case
        if (c.server, c.database, c.workload, result.connections) == (server, database, workload, connections):
            return result
    return None


@dataclass
class Goal:
    key: str
    text: str
    ours: list[Result]
    theirs: list[Result]
    target: float
    kind: str = "ratio"  # ratio: ours / theirs >= target; overhead: 1 - ours / theirs < target

    @property
    def value(self) -> float:
        ours = statistics.median(r.requests_per_second for r in self.ours)
        theirs = statistics.median(r.requests_per_second for r in self.theirs)
        return ours / theirs if self.kind == "ratio" else 1 - ours / theirs

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.kind == "ratio" else self.value < self.target

    @property
    def shown(self) -> str:
        return f"{self.value:.2f}x" if self.kind == "ratio" else f"{self.value * 100:.1f}%"

    @property
    def cpu(self) -> str:
        """The servers' CPU time per request (medians): steadier than throughput on a shared machine."""
        ours = [r.cpu_us for r in self.ours if r.cpu_us]
        theirs = [r.cpu_us for r in self.theirs if r.cpu_us]
        if not ours or not theirs:
            return ""
        a, b = statistics.median(ours), statistics.median(theirs)
        return f"{a:.0f} µs against {b:.0f} µs ({b / a:.2f}x)"

    @property
    def runs(self) -> str:
        pairs = zip(self.ours, self.theirs, strict=True)
        if self.kind == "ratio":
            return ", ".join(f"{a.requests_per_second / b.requests_per_second:.2f}x" for a, b in pairs)
        return ", ".join(f"{(1 - a.requests_per_second / b.requests_per_second) * 100:.1f}%" for a, b in pairs)


GOALS = [
    # (key, text, ours (server, db, workload), theirs, target, kind); every one at 16 clients
    ("asgi-pg", "ASGI, PostgreSQL `SELECT 1`, 16 clients ≥ 0.9x Starlette + asyncpg",
     ("ours-asgi", "pg", "select1"), ("starlette-asyncpg", "pg", "select1"), 0.9, "ratio"),
    ("wsgi-pg", "WSGI under gunicorn ≥ 1.0x Flask + SQLAlchemy (`SELECT 1`, 16 clients)",
     ("ours-wsgi", "pg", "select1"), ("flask-sqlalchemy", "pg", "select1"), 1.0, "ratio"),
    ("lite-select1", "SQLite `SELECT 1` ≥ 3x Datasette (16 clients)",
     ("ours-asgi", "lite", "select1"), ("datasette", "lite", "select1"), 3.0, "ratio"),
    ("lite-rows100", "SQLite 100 rows ≥ 3x Datasette (16 clients)",
     ("ours-asgi", "lite", "rows100"), ("datasette", "lite", "rows100"), 3.0, "ratio"),
    ("host", "Another path of the host app < 2% slower with the middleware mounted (16 clients)",
     ("flask-mounted", "-", "host"), ("flask-bare", "-", "host"), 0.02, "overhead"),
    ("neon-asgi-select1", "Neon's protocol no slower than PolyScale's: ASGI, PostgreSQL `SELECT 1` (16 clients)",
     ("ours-asgi", "pg", "neon-select1"), ("ours-asgi", "pg", "select1"), 1.0, "ratio"),
    ("neon-asgi-rows100", "Neon's protocol no slower than PolyScale's: ASGI, PostgreSQL 100 rows (16 clients)",
     ("ours-asgi", "pg", "neon-rows100"), ("ours-asgi", "pg", "rows100"), 1.0, "ratio"),
    ("neon-wsgi-select1", "Neon's protocol no slower than PolyScale's: WSGI, PostgreSQL `SELECT 1` (16 clients)",
     ("ours-wsgi", "pg", "neon-select1"), ("ours-wsgi", "pg", "select1"), 1.0, "ratio"),
    ("neon-wsgi-rows100", "Neon's protocol no slower than PolyScale's: WSGI, PostgreSQL 100 rows (16 clients)",
     ("ours-wsgi", "pg", "neon-rows100"), ("ours-wsgi", "pg", "rows100"), 1.0, "ratio"),
    ("floor", "Reference, not a goal: ASGI, PostgreSQL `SELECT 1` against a bare ASGI callable on asyncpg",
     ("ours-asgi", "pg", "select1"), ("bare-asyncpg", "pg", "select1"), 0.0, "ratio"),
]


def run_goals(duration: float, rounds: int, keys: set[str] | None = None) -> list[Goal]:
    """Each goal head to head: both servers up, runs alternated, medians compared (this machine's load drifts by
    more than some of the margins; alternating spreads the drift over both sides)."""
    goals = []
    for key, text, ours_key, theirs_key, target, kind in GOALS:
        if keys and key not in keys:
            continue
        with serve(ours_key[0]) as (host_a, port_a, pid_a), serve(theirs_key[0]) as (host_b, port_b, pid_b):
            ours_case, theirs_case = case(*ours_key), case(*theirs_key)
            wrk(ours_case, host_a, port_a, 2, 1.0)
            wrk(theirs_case, host_b, port_b, 2, 1.0)
            goal = Goal(key, text, [], [], target, kind)
            for round_ in range(rounds):  # who goes first alternates too
                sides = [(goal.ours, ours_case, host_a, port_a, pid_a),
                         (goal.theirs, theirs_case, host_b, port_b, pid_b)]
                for results, one, host, port, pid in sides if round_ % 2 == 0 else sides[::-1]:
                    before = cpu_seconds(pid)
                    result = wrk(one, host, port, 16, duration)
                    if result.requests:
                        result.cpu_us = (cpu_seconds(pid) - before) / result.requests * 1e6
                    results.append(result)
            print(f"{text}: {goal.shown} (runs: {goal.runs}); CPU per request: {goal.cpu}", flush=True)
            goals.append(goal)
    return goals


def host_path_overhead(rounds: int = 5, calls: int = 20_000) -> tuple[float, float]:
    """(µs the mounted middleware adds to a request for another path, µs that request takes), in process.

    Over HTTP the difference drowns in this machine's noise; in process it can be timed exactly.
    """
    sys.path.insert(0, str(ROOT))
    from bench.apps.ours import flask_bare, flask_mounted

    def environ() -> dict[str, object]:
        return {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/status", "SERVER_NAME": "bench", "SERVER_PORT": "80",
                "wsgi.url_scheme": "http", "wsgi.input": None, "wsgi.errors": sys.stderr, "SCRIPT_NAME": "",
                "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1"}

    def per_call(app: object) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            b"".join(app(environ(), lambda status, headers, exc_info=None: None))  # type: ignore[operator]
        return (time.perf_counter() - started) / calls * 1e6

    bare, mounted = float("inf"), float("inf")
    for _ in range(rounds):  # interleaved; the fastest of each, the least disturbed by the machine
        bare = min(bare, per_call(flask_bare))
        mounted = min(mounted, per_call(flask_mounted))
    return mounted - bare, bare


def report(results: list[Result], floor: dict[str, float], duration: float, head_to_head: list[Goal],
           rounds: int, host: tuple[float, float] | None = None) -> str:
    lines = [
        "## Request path, side by side",
        "",
        f"`make bench` ({dt.date.today().isoformat()}): {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; wrk with 1 thread, {duration:g} s per case after a 1 s warm-up; uvicorn with "
        "1 worker, gunicorn with 2 workers and 8 threads; pools of 2 connections everywhere. Ours runs with its "
        "defaults and every protection on: rate limit in shared memory, the login brake, the database checking each "
        "login (PostgreSQL, MariaDB) or our hashed users (SQLite), statement timeouts, read-only mode checked at "
        "every checkout, result caps, lossless type encoding. ASGI: PostgreSQL on the event loop (`async_postgres`), "
        "SQLite on the loop within `inline_budget`, MariaDB on the thread pool.",
        "",
        "| server | db | workload | clients | req/s | p50 ms | p99 ms | MB/s | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.case.server} | {r.case.database} | {r.case.workload} | {r.connections} | "
                     f"{r.requests_per_second:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.transfer_mb_s:.1f} | "
                     f"{r.errors} |")
    lines += ["", "Raw driver floor, `SELECT 1` in process, one connection: " + ", ".join(
        f"{name} {micros:.0f} µs" for name, micros in floor.items()) + ".", "",
              "Peak memory of one 10,000-row answer (the server's resident-memory high-water mark, reset just before "
              "the request, minus its size before; the largest over a server's processes):", "",
              "| server | db | answer MB | peak growth MB | growth / answer |", "|---|---|---|---|---|"]
    measured = [r for r in results if r.peak_mb is not None and r.body_mb]
    for r in measured:
        lines.append(f"| {r.case.server} | {r.case.database} | {r.body_mb:.2f} | {r.peak_mb:.2f} | "
                     f"{r.peak_mb / r.body_mb:.2f}x |")  # type: ignore[operator]
    lines += ["", "### Goals", "",
              f"Each throughput goal measured head to head: both servers up, {rounds} runs of {duration:g} s each, "
              "alternated, at 16 clients; the ratio of the medians, and each run's own ratio.", "",
              "| goal | measured | server CPU per request, ours against theirs | met |", "|---|---|---|---|"]

    for goal in head_to_head:
        met = "(reference)" if goal.target == 0 else "yes" if goal.met else "no"
        lines.append(f"| {goal.text} | {goal.shown} (runs: {goal.runs}) | {goal.cpu} | {met} |")
    fair = [r for r in head_to_head if r.key == "asgi-pg"]
    if fair:
        spreads = sorted(r.p99_ms / r.p50_ms for r in fair[0].ours if r.p50_ms)
        spread = statistics.median(spreads)
        lines.append(f"| Fairness: p99 ≤ 3x p50 at 16 clients on a pool of 2 (ASGI, PostgreSQL `SELECT 1`) | "
                     f"{spread:.2f}x (runs: {', '.join(f'{x:.2f}x' for x in spreads)}) | | "
                     f"{'yes' if spread <= 3 else 'no'} |")
    if host is not None:
        added, request = host
        lines.append(f"| The same, timed in process: what the mounted middleware adds to a request for another path "
                     f"| {added:.2f} µs of {request:.1f} µs ({added / request * 100:.1f}%) | | "
                     f"{'yes' if added / request < 0.02 else 'no'} |")
    ours_memory = [r.peak_mb / r.body_mb for r in measured if r.case.server.startswith("ours")]  # type: ignore[operator]
    if ours_memory:
        worst = max(ours_memory)
        lines.append(f"| 10,000-row answer: peak memory growth ≤ 2x its JSON (ours, worst of ASGI, WSGI, SQLite) | "
                     f"{worst:.2f}x | | {'yes' if worst <= 2 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="short cases, Python load generator")
    parser.add_argument("--write", help="replace the request-path section (and libSQL's) of this Markdown file")
    parser.add_argument("--only", nargs="*", help="cases to run, as server[:db[:workload]] prefixes; or `libsql`: "
                        "libSQL's Hrana beside PolyScale on SQLite alone (with --write, only its section)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated runs per goal, head to head")
    parser.add_argument("--libsql-rounds", type=int, default=3, help="alternated runs per libSQL / PolyScale pair")
    parser.add_argument("--goals", nargs="*", help="only these head-to-head goals (keys of GOALS), nothing else")
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench does)")
    if args.only == ["libsql"]:
        prepare_sqlite()
        pairs, transactions = run_libsql(args.duration, args.libsql_rounds)
        text = report_libsql(pairs, transactions, args.duration, args.libsql_rounds)
        print(text)
        if args.write:
            write_section(Path(args.write), LIBSQL_MARKER, text)
        return
    if args.write and (args.only or args.goals):
        sys.exit("--write needs the whole plan (or --only libsql); drop --only and --goals")
    if args.goals:
        for goal in run_goals(args.duration, args.rounds, set(args.goals)):
            print(f"| {goal.text} | {goal.shown} (runs: {goal.runs}) | {goal.cpu} | {'yes' if goal.met else 'no'} |")
        return
    prepare()
    floor = driver_floor()
    results = run_plan(args.duration, wrk, args.only)
    goals = run_goals(args.duration, args.rounds) if not args.only else []
    text = report(results, floor, args.duration, goals, args.rounds, host_path_overhead())
    print(text)
    libsql = ""
    if not args.only:
        libsql = report_libsql(*run_libsql(args.duration, args.libsql_rounds), args.duration, args.libsql_rounds)
        print(libsql)
    if args.write:
        write_section(Path(args.write), "## Request path, side by side", text)
        if libsql:
            write_section(Path(args.write), LIBSQL_MARKER, libsql)


def smoke() -> None:
    """The harness, briefly, without wrk: PolyScale's and libSQL's 100 rows on ASGI over a one-row SQLite file, and
    one libsql-tx transaction; a JSON line each."""
    global SQLITE
    SQLITE = Path(tempfile.mkdtemp(prefix="sqlhttp-smoke-")) / "smoke.db"  # never the full run's file
    with sqlite3.connect(SQLITE) as connection:
        connection.execute("CREATE TABLE bench_rows (id integer primary key, name text, price numeric, "
                           "qty integer, created text, active integer)")
        connection.execute("INSERT INTO bench_rows VALUES (1, 'a', 1.5, 2, '2024-01-01', 1)")
    connection.close()
    with serve("ours-asgi") as (host, port, _):
        for workload in ("rows100", "libsql-rows100"):
            one = case("ours-asgi", "lite", workload)
            body = answer(one, host, port)
            result = python_load(one, host, port, 2, 1.0)
            print(json.dumps({"case": workload, "requests_per_second": result.requests_per_second,
                              "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "errors": result.errors,
                              "bytes": len(body)}))
        answers = transaction("ours-asgi", host, port)
        print(json.dumps({"case": "libsql-tx", "answers": len(answers), "errors": 0}))


if __name__ == "__main__":
    main()
