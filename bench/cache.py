"""The result cache under load: a cached 100-row read against our uncached path and Starlette + asyncpg, and what
the cache adds to a write and to a read it cannot cache.

    .venv/bin/python bench/cache.py [--duration 5] [--rounds 3] [--overhead-rounds 5] [--write docs/benchmarks.md]
    .venv/bin/python bench/cache.py --smoke [--write FILE]

One uvicorn process (one worker, as the ASGI cases of bench/run.py) serves ``bench.apps.cached:cache_app``: target
``pgc`` (PostgreSQL, ``cache=True``) and ``pg`` (the same server, cache off) at ``/sql``, and a second mount without
any cached target at ``/plain/sql``; another serves ``bench.apps.baselines:starlette_app``. Load comes from wrk (one
thread, 16 connections); sides are alternated round by round and medians reported. ``--write`` replaces only the
section between ``<!-- bench:cache -->`` and ``<!-- /bench:cache -->`` (appended if absent). ``--smoke`` runs every
case for a fraction of a second with a Python load generator, on a database of its own, and prints a JSON line each.

``bench/planetscale.py`` reuses the helpers here (servers, fixtures, alternation, the section writer).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import DB, PASSWORD, SQL, Case, Result, cpu_seconds, free_port, python_load, wrk  # noqa: E402

BIN = Path(sys.executable).parent
USER = "sqlhttp_test"
ROWS100 = SQL["rows100"][0]  # the 100-row read of bench/run.py: SELECT ... FROM bench_rows ORDER BY id LIMIT 100
INSERT = "INSERT INTO bench_insert (v) VALUES ('x')"
VOLATILE = "SELECT now(), count(*) FROM bench_rows WHERE id <= 100"
JSON_HEADERS = (("Content-Type", "application/json"),)
Load = Callable[[Case, str, int, int, float], Result]


# -- fixtures -----------------------------------------------------------------------------------------------------

ROWS_SQL = ("CREATE TABLE bench_rows (id integer primary key, name varchar(40), price numeric(10,2), qty integer, "
            "created timestamp, active boolean)")
INSERT_SQL = "CREATE TABLE bench_insert (id {serial}, v varchar(40))"


def _psql(database: str, sql: str) -> str:
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atqc", sql],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _maria(sql: str) -> str:
    done = subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e", sql],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def ready(database: str, rows: int) -> bool:
    """Whether both servers already hold ``database``'s bench tables with ``rows`` rows (as bench/run.py's
    prepare() leaves them: `make bench` runs it first)."""
    try:
        pg = _psql(database, "SELECT count(*) FROM bench_rows; SELECT count(*) >= 0 FROM bench_insert")
        maria = _maria(f"SELECT count(*) FROM {database}.bench_rows; SELECT count(*) FROM {database}.bench_insert")
    except subprocess.CalledProcessError:
        return False
    return pg.splitlines()[0] == str(rows) and maria.splitlines()[0] == str(rows)


def prepare_servers(database: str = DB, rows: int = 10_000) -> None:
    """bench_rows (``rows`` rows, the same as bench/run.py's prepare()) and bench_insert, in PostgreSQL and
    MariaDB; SQLite is left alone (bench/run.py's file may be in use). Kept as they are if already there."""
    if ready(database, rows):
        return
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"CREATE DATABASE {database} OWNER sqlhttp_test"], check=True, capture_output=True)
    _psql(database, f"{ROWS_SQL}; {INSERT_SQL.format(serial='serial primary key')}; "
          "INSERT INTO bench_rows SELECT i, 'item ' || i, (i % 1000) + (i % 100) / 100.0, i % 97, "
          f"timestamp '2024-01-01 10:00' + (i % 28) * interval '1 day', i % 2 = 0 FROM generate_series(1, {rows}) i; "
          "ALTER TABLE bench_rows OWNER TO sqlhttp_test; ALTER TABLE bench_insert OWNER TO sqlhttp_test")
    _maria(f"DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}; USE {database}; {ROWS_SQL}; "
           f"{INSERT_SQL.format(serial='integer auto_increment primary key')}; "
           "INSERT INTO bench_rows SELECT seq, concat('item ', seq), (seq % 1000) + (seq % 100) / 100, seq % 97, "
           f"'2024-01-01 10:00:00' + interval (seq % 28) day, seq % 2 = 0 FROM seq_1_to_{rows}")


def drop_servers(database: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                    f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False, capture_output=True)
    subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "-e", f"DROP DATABASE IF EXISTS {database}"],
                   check=False, capture_output=True)


# -- servers ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int


@contextlib.contextmanager
def serve(app: str, database: str = DB) -> Iterator[Server]:
    """uvicorn with one worker, as bench/run.py starts its ASGI servers; ``database`` is the bench database the apps
    use (BENCH_DB for ours, BENCH_PG_DSN for the Starlette baseline)."""
    port = free_port()
    command = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--no-access-log", app]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_DB": database,
           "BENCH_PG_DSN": f"postgresql://postgres@127.0.0.1:5432/{database}"}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read()[-2000:].decode(errors="replace")
                        raise RuntimeError(f"{app} did not start: {output}") from None
                    time.sleep(0.1)
            yield Server("127.0.0.1", port, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def request(one: Case, server: Server) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request(one.method, one.path, one.body, dict(one.headers))
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {name.lower(): value for name, value in response.getheaders()}, body


def checked(one: Case, server: Server) -> tuple[dict[str, str], bytes]:
    """One request, which must answer 200 without an error inside; its headers and body."""
    status, headers, body = request(one, server)
    if status != 200 or b'"error"' in body[:200]:
        raise RuntimeError(f"{one.server} {one.workload}: {status} {body[:300]!r}")
    return headers, body


# -- cases --------------------------------------------------------------------------------------------------------

def polyscale(server: str, workload: str, target: str, provider: str, database: str, sql: str,
              path: str = "/sql") -> Case:
    body = {"cacheId": target, "provider": provider, "username": USER, "password": PASSWORD, "database": database,
            "sql": sql}
    return Case(server, target, workload, "POST", path, json.dumps(body).encode(), JSON_HEADERS)


def starlette(workload: str, sql: str) -> Case:
    return Case("starlette-asyncpg", "pg", workload, "POST", "/sql",
                json.dumps({"sql": sql, "bindings": []}).encode(), JSON_HEADERS)


# -- alternation --------------------------------------------------------------------------------------------------

@dataclass
class Side:
    label: str
    case: Case
    server: Server
    results: list[Result] = field(default_factory=list)

    def median(self, name: str) -> float:
        values = [getattr(r, name) for r in self.results if getattr(r, name) is not None]
        return statistics.median(values) if values else float("nan")


def measure(side: Side, connections: int, duration: float, load: Load) -> Result:
    before = cpu_seconds(side.server.pid)
    result = load(side.case, side.server.host, side.server.port, connections, duration)
    if result.requests:
        result.cpu_us = (cpu_seconds(side.server.pid) - before) / result.requests * 1e6
    side.results.append(result)
    print(f"  {side.label:44} c={connections:<2} {result.requests_per_second:8.0f} req/s  p50 {result.p50_ms:6.2f} ms"
          f"  p99 {result.p99_ms:6.2f} ms  CPU {result.cpu_us or 0:5.0f} µs/req  non-2xx {result.errors}"
          f"  wrk errors {result.socket_errors}", file=sys.stderr, flush=True)
    return result


def alternate(sides: list[Side], rounds: int, connections: int, duration: float, load: Load) -> list[float]:
    """``rounds`` runs of each side, the order rotating each round (with two sides: alternating), so that the
    machine's drift falls on every side alike. The 1-minute load average after each round."""
    loads = []
    for round_ in range(rounds):
        shift = round_ % len(sides)
        for side in sides[shift:] + sides[:shift]:
            measure(side, connections, duration, load)
        loads.append(os.getloadavg()[0])
    return loads


def ratio_runs(a: Side, b: Side) -> str:
    return ", ".join(f"{x.requests_per_second / y.requests_per_second:.2f}x"
                     for x, y in zip(a.results, b.results, strict=True) if y.requests_per_second)


def ratio(a: Side, b: Side, name: str = "requests_per_second") -> float:
    return a.median(name) / b.median(name)


def errors(sides: list[Side]) -> str:
    return (f"{sum(r.errors for s in sides for r in s.results)} / "
            f"{sum(r.socket_errors for s in sides for r in s.results)}")


def x_cache_counts(one: Case, server: Server, connections: int, seconds: int) -> dict[str, int]:
    """A separate wrk run whose script counts every answer's X-Cache (not part of the timed runs: a response()
    callback costs wrk time)."""
    script = Path(tempfile.gettempdir()) / f"sqlhttp-bench-cache-{os.getpid()}.lua"
    body = (one.body or b"").decode().replace("\\", "\\\\").replace('"', '\\"')
    headers = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in one.headers)
    script.write_text(f'wrk.method = "{one.method}"\nwrk.body = "{body}"\n{headers}' + """
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  local seen = "status " .. status .. ", no X-Cache"
  for name, value in pairs(headers) do
    if string.lower(name) == "x-cache" then seen = "status " .. status .. ", " .. value end
  end
  counts[seen] = (counts[seen] or 0) + 1
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for seen, n in pairs(thread:get("counts")) do io.write(string.format("x-cache: %s = %d\\n", seen, n)) end
  end
end
""")
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                           f"http://{server.host}:{server.port}{one.path}"], capture_output=True, text=True,
                          check=True)
    script.unlink(missing_ok=True)
    return {seen: int(n) for seen, n in re.findall(r"x-cache: (.+) = (\d+)", done.stdout)}


# -- the section in docs/benchmarks.md ----------------------------------------------------------------------------

def write_marked(path: Path, name: str, text: str) -> None:
    """Replace this script's section: from its heading (the ``## `` line just before ``<!-- bench:NAME -->``) to
    ``<!-- /bench:NAME -->``; append it if absent. ``text`` starts with its heading. The opening marker sits under
    the heading so that bench/run.py's writer, which replaces its sections up to the next ``## `` heading, keeps it
    with its heading. Nothing else in the file changes."""
    opening, closing = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    heading, _, rest = text.strip("\n").partition("\n")
    block = f"{heading}\n{opening}\n{rest.strip(chr(10))}\n{closing}\n"
    current = path.read_text() if path.exists() else ""
    start, end = current.find(opening), current.find(closing)
    if start >= 0 and end > start:
        line = current.rfind("\n", 0, max(0, start - 1)) + 1  # the line before the marker
        if current.startswith("## ", line):
            start = line
        end += len(closing)
        if current[end:end + 1] == "\n":
            end += 1
        path.write_text(current[:start] + block + current[end:])
    else:
        path.write_text((current.rstrip("\n") + "\n\n" if current.strip() else "") + block)


def machine(loads: list[float]) -> str:
    shown = f"{min(loads):.1f} to {max(loads):.1f} (median {statistics.median(loads):.1f})" if loads else "?"
    return (f"{dt.date.today().isoformat()}: {platform.machine()}, `nproc` {os.cpu_count()}, Python "
            f"{platform.python_version()}; 1-minute load average {shown} while it ran")


# -- the benchmark ------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    duration: float
    rounds: int
    overhead_rounds: int
    connections: int = 16
    warm: float = 1.0


@dataclass
class Outcome:
    read: list[Side]  # cached, uncached, Starlette
    overhead: dict[str, list[Side]]  # workload: on, off, no cache in the mount
    headers: dict[str, str]  # what X-Cache each case answered
    counts: dict[str, int]  # X-Cache over a whole wrk run of the cached read
    sizes: dict[str, int]
    loads: list[float]
    seconds: float


def run_cache(plan: Plan, load: Load, database: str = DB, count_run: int = 2) -> Outcome:
    started = time.monotonic()
    loads = [os.getloadavg()[0]]
    headers: dict[str, str] = {}
    sizes: dict[str, int] = {}
    with serve("bench.apps.cached:cache_app", database) as ours, \
            serve("bench.apps.baselines:starlette_app", database) as theirs:
        cached = Side("ours, cache on (`pgc`)", polyscale("ours", "rows100", "pgc", "postgres", database, ROWS100),
                      ours)
        uncached = Side("ours, cache off (`pg`)", polyscale("ours", "rows100", "pg", "postgres", database, ROWS100),
                        ours)
        baseline = Side("Starlette + asyncpg", starlette("rows100", ROWS100), theirs)
        # The cache must hit: MISS first, HIT after, and no X-Cache on the target without it.
        seen = [checked(cached.case, ours)[0].get("x-cache", "none") for _ in range(4)]
        if seen[0] != "MISS" or any(s != "HIT" for s in seen[1:]):
            raise RuntimeError(f"the cached read answered X-Cache {seen}: expected MISS, then HIT")
        headers["rows100 on pgc, 4 requests in a row"] = ", ".join(seen)
        headers[f"rows100, {cached.label}"] = seen[-1]
        for side in (uncached, baseline):
            side_headers, body = checked(side.case, side.server)
            headers[f"rows100, {side.label}"] = side_headers.get("x-cache", "none")
            sizes[side.label] = len(body)
        sizes[cached.label] = len(checked(cached.case, ours)[1])
        for side in (cached, uncached, baseline):
            load(side.case, side.server.host, side.server.port, 2, plan.warm)  # warm the pools
        read = [cached, uncached, baseline]
        print(f"cached read, {plan.connections} connections:", file=sys.stderr, flush=True)
        loads += alternate(read, plan.rounds, plan.connections, plan.duration, load)
        counts = x_cache_counts(cached.case, ours, plan.connections, count_run) if count_run else {}
        after = checked(cached.case, ours)[0].get("x-cache", "none")
        headers["rows100 on pgc, after the runs"] = after
        if not after.startswith("HIT"):
            raise RuntimeError(f"the cached read answered X-Cache {after} after the runs")
        overhead: dict[str, list[Side]] = {}
        for workload, sql in (("insert", INSERT), ("volatile", VOLATILE)):
            sides = [Side(f"{workload}, cache on (`pgc`)", polyscale("ours", workload, "pgc", "postgres", database,
                                                                       sql), ours),
                     Side(f"{workload}, cache off (`pg`)", polyscale("ours", workload, "pg", "postgres", database,
                                                                      sql), ours),
                     Side(f"{workload}, no cache in the mount (`/plain/sql`)",
                          polyscale("ours", workload, "pg", "postgres", database, sql, "/plain/sql"), ours)]
            for side in sides:
                headers[side.label] = checked(side.case, ours)[0].get("x-cache", "none")
                load(side.case, ours.host, ours.port, 2, plan.warm)
            print(f"{workload}, {plan.connections} connections:", file=sys.stderr, flush=True)
            loads += alternate(sides, plan.overhead_rounds, plan.connections, plan.duration, load)
            overhead[workload] = sides
    return Outcome(read, overhead, headers, counts, sizes, loads, time.monotonic() - started)


def _lat(side: Side) -> str:
    return f"{side.median('p50_ms'):.2f} / {side.median('p99_ms'):.2f}"


def _runs(side: Side) -> str:
    return ", ".join(f"{r.requests_per_second:.0f}" for r in side.results)


def _overhead_runs(on: Side, off: Side) -> str:
    return ", ".join(f"{(1 - a.requests_per_second / b.requests_per_second) * 100:+.1f}%"
                     for a, b in zip(on.results, off.results, strict=True) if b.requests_per_second)


def report(outcome: Outcome, plan: Plan) -> str:
    cached, uncached, baseline = outcome.read
    vs_starlette, vs_uncached = ratio(cached, baseline), ratio(cached, uncached)
    lines = [
        "## Result cache, PostgreSQL: a cached read, and what the cache costs the rest",
        "",
        "`bench/cache.py` (`make bench` runs it; alone: `.venv/bin/python bench/cache.py --write "
        f"docs/benchmarks.md`), "
        f"{machine(outcome.loads)}; {outcome.seconds / 60:.1f} minutes in all. uvicorn with 1 worker serves "
        "`bench.apps.cached:cache_app`, every protection on as in `bench/apps/ours.py` (rate limit in shared memory, "
        "the database checking each login, statement timeout, caps, lossless types), PostgreSQL on the event loop, "
        "pools of 2 connections: target `pgc` with `cache=True` (defaults: `cache_storage` shm, TTL 60 s) and `pg`, "
        "the same server and database with the cache off, in one mount at `/sql`; and a second mount in the same "
        "process at `/plain/sql` with no cached target at all. Beside it, on its own uvicorn, the Starlette + "
        "asyncpg endpoint of `bench/run.py` (`bench.apps.baselines:starlette_app`, pool of 2). wrk with 1 thread, "
        f"{plan.connections} connections, {plan.duration:g} s a run after a {plan.warm:g} s warm-up of each side; "
        f"the sides' runs alternate (the order rotates every round), {plan.rounds} rounds for the read and "
        f"{plan.overhead_rounds} for each overhead; medians shown, each run's figure in brackets. The read is "
        f"`bench/run.py`'s 100 rows, `{ROWS100}` ({outcome.sizes.get(cached.label, 0):,} bytes of PolyScale JSON; "
        f"Starlette's answer {outcome.sizes.get(baseline.label, 0):,} bytes).",
        "",
        "| side | req/s (runs) | p50 / p99 ms | server CPU per request | non-2xx / wrk errors |",
        "|---|---|---|---|---|",
    ]
    for side in outcome.read:
        lines.append(f"| {side.label} | {side.median('requests_per_second'):.0f} ({_runs(side)}) | {_lat(side)} | "
                     f"{side.median('cpu_us'):.0f} µs | {errors([side])} |")
    counted = ", ".join(f"{seen}: {n:,}" for seen, n in sorted(outcome.counts.items())) or "not counted"
    lines += [
        "",
        f"- **Cached / Starlette + asyncpg: {vs_starlette:.2f}x** (runs: {ratio_runs(cached, baseline)}); goal ≥ 3x: "
        f"**{'met' if vs_starlette >= 3 else 'not met'}**. Server CPU per request "
        f"{cached.median('cpu_us'):.0f} against {baseline.median('cpu_us'):.0f} µs "
        f"({ratio(baseline, cached, 'cpu_us'):.2f}x less).",
        f"- **Cached / uncached (ours): {vs_uncached:.2f}x** (runs: {ratio_runs(cached, uncached)}); server CPU "
        f"{cached.median('cpu_us'):.0f} against {uncached.median('cpu_us'):.0f} µs.",
        f"- The cache hit: X-Cache over 4 requests in a row before the runs: "
        f"{outcome.headers['rows100 on pgc, 4 requests in a row']}; after them: "
        f"{outcome.headers['rows100 on pgc, after the runs']}; over a separate wrk run of the cached read at "
        f"{plan.connections} connections (its script counting each answer's header): {counted}. The cache-off "
        f"target's answers carry no X-Cache ({outcome.headers['rows100, ' + uncached.label]}).",
        "",
        "What the cache adds where it cannot help: a write, `" + INSERT + "`, and a read it refuses to cache, `"
        + VOLATILE + "` (`now()`), on the cached target against the cache-off target of the same mount and "
        "database, and against the mount without any cached target. Overhead = 1 - (req/s with the cache on / req/s "
        "with it off), each run's own pair in brackets; CPU overhead the same with server CPU time per request.",
        "",
        "| statement | side | X-Cache answered | req/s (runs) | p50 / p99 ms | server CPU per request | "
        "non-2xx / wrk errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for sides in outcome.overhead.values():
        for side in sides:
            lines.append(f"| {side.case.workload} | {side.label.split(', ', 1)[1]} | {outcome.headers[side.label]} | "
                         f"{side.median('requests_per_second'):.0f} ({_runs(side)}) | {_lat(side)} | "
                         f"{side.median('cpu_us'):.0f} µs | {errors([side])} |")
    lines += ["", "| statement | throughput overhead, on vs off (runs) | CPU per request, on vs off | "
              "on vs no cache in the mount: throughput; CPU | goal < 5 % |", "|---|---|---|---|---|"]
    for workload, (on, off, plain) in outcome.overhead.items():
        throughput = 1 - ratio(on, off)
        cpu = ratio(on, off, "cpu_us") - 1
        lines.append(f"| {workload} | {throughput * 100:+.1f}% ({_overhead_runs(on, off)}) | {cpu * 100:+.1f}% | "
                     f"{(1 - ratio(on, plain)) * 100:+.1f}%; {(ratio(on, plain, 'cpu_us') - 1) * 100:+.1f}% | "
                     f"{'met' if throughput < 0.05 else 'not met'} |")
    lines += ["", "### Reading the cache figures", "", *reading(outcome)]
    return "\n".join(lines) + "\n"


def reading(outcome: Outcome) -> list[str]:
    """The honest reading, from the figures (printed under the tables; the report's prose is checked by hand)."""
    cached, _, baseline = outcome.read
    vs_starlette = ratio(cached, baseline)
    spread = [x.requests_per_second / y.requests_per_second for x, y in zip(cached.results, baseline.results,
                                                                             strict=True) if y.requests_per_second]
    out = [f"- The cached read at {cached.median('requests_per_second'):.0f} req/s is "
           f"{vs_starlette:.2f}x Starlette + asyncpg's (single runs {min(spread):.2f}x to {max(spread):.2f}x): the "
           f"goal of 3x is {'met' if vs_starlette >= 3 else 'not met'}"
           + ("." if vs_starlette >= 3 else f", short by {(3 - vs_starlette) / 3 * 100:.0f}%.")
           + " A hit skips the database and the encoding: what is left is HTTP parsing, the rate limit, the login "
           "brake, the key's HMAC over the body and the stamp check; the CPU figures say how much of a request "
           "that is on this machine, where wrk, PostgreSQL and the other processes share the same 2 cores."]
    for workload, (on, off, _plain) in outcome.overhead.items():
        overheads = [1 - a.requests_per_second / b.requests_per_second
                     for a, b in zip(on.results, off.results, strict=True) if b.requests_per_second]
        median = 1 - ratio(on, off)
        out.append(f"- {workload}: the cache-on target is {median * 100:+.1f}% (median) against the cache-off one, "
                   f"single pairs from {min(overheads) * 100:+.1f}% to {max(overheads) * 100:+.1f}%; CPU per request "
                   f"{(ratio(on, off, 'cpu_us') - 1) * 100:+.1f}%. Goal < 5 %: "
                   f"{'met' if median < 0.05 else 'not met'}"
                   + (f"; but single pairs spread over {(max(overheads) - min(overheads)) * 100:.0f} points, far more "
                      "than the 5 % margin: the median is not a firm figure, the CPU per request is the steadier one."
                      if max(overheads) - min(overheads) > 0.05 else "."))
    out.append("- On a write, the cache-off target of the same mount changes the database's stamp too (`cache.md`: "
               "every target on a server a cached target reads from does), so on vs off is the cached target's own "
               "work per request (the statement's verdict, the key); on vs the mount without a cached target "
               "includes the stamp. The machine is shared: other suites ran beside this one (see the load average).")
    return out


# -- smoke --------------------------------------------------------------------------------------------------------

def smoke_database() -> str:
    database = f"sqlhttp_test_bsmoke_{uuid.uuid4().hex[:8]}"
    prepare_servers(database, rows=200)
    return database


def smoke_line(side: Side, extra: dict[str, object] | None = None) -> None:
    r = side.results[-1]
    print(json.dumps({"case": side.label, "requests_per_second": r.requests_per_second, "p50_ms": r.p50_ms,
                      "p99_ms": r.p99_ms, "errors": r.errors, **(extra or {})}), flush=True)


def smoke(write: str | None) -> None:
    """Every case once, for 0.3 s at 2 connections, with the Python load generator, on a database of its own."""
    database = smoke_database()
    try:
        plan = Plan(duration=0.3, rounds=1, overhead_rounds=1, connections=2, warm=0.1)
        outcome = run_cache(plan, python_load, database, count_run=0)
    finally:
        drop_servers(database)
    for side in outcome.read:
        smoke_line(side, {"x_cache": outcome.headers.get(f"rows100, {side.label}", "")})
    for sides in outcome.overhead.values():
        for side in sides:
            smoke_line(side, {"x_cache": outcome.headers[side.label]})
    print(json.dumps({"cache_hits": outcome.headers["rows100 on pgc, 4 requests in a row"]}), flush=True)
    if write:
        write_marked(Path(write), "cache", report(outcome, plan))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0, help="seconds a run (wrk takes whole seconds)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each side of the cached read")
    parser.add_argument("--overhead-rounds", type=int, default=5, help="alternated runs of each overhead side")
    parser.add_argument("--smoke", action="store_true", help="a fraction of a second a case, Python load generator")
    parser.add_argument("--write", help="replace this script's section of this Markdown file")
    args = parser.parse_args()
    if args.smoke:
        smoke(args.write)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench does)")
    prepare_servers()
    plan = Plan(args.duration, args.rounds, args.overhead_rounds)
    text = report(run_cache(plan, wrk), plan)
    print(text)
    if args.write:
        write_marked(Path(args.write), "cache", text)


if __name__ == "__main__":
    main()
