"""PlanetScale's path (`/psdb.v1alpha1.Database/Execute`, what `@planetscale/database` posts) beside PolyScale's
(`/sql`) on MariaDB: `SELECT 1` and the 100-row read, at 1 and 16 connections, as bench/run.py's MariaDB cases.

    .venv/bin/python bench/planetscale.py [--duration 5] [--rounds 3] [--write docs/benchmarks.md]
    .venv/bin/python bench/planetscale.py --smoke [--write FILE]

One uvicorn process (one worker, the server bench/run.py uses for MariaDB) serves ``bench.apps.cached:
planetscale_app``: target ``maria`` (``mariadb://127.0.0.1:3306/sqlhttp_test_bench``, cache off) with
``planetscale_root=True``, so the same target and pool answer both paths. wrk with one thread; the two sides
alternate run by run (who goes first alternates too); medians. ``--write`` replaces only the section between
``<!-- bench:planetscale -->`` and ``<!-- /bench:planetscale -->`` (appended if absent).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cache import (  # noqa: E402
    PASSWORD,
    USER,
    Load,
    Side,
    alternate,
    checked,
    drop_servers,
    errors,
    machine,
    polyscale,
    prepare_servers,
    ratio,
    ratio_runs,
    serve,
    smoke_database,
    smoke_line,
    write_marked,
)
from bench.run import DB, SQL, Case, python_load, wrk  # noqa: E402

PATH = "/psdb.v1alpha1.Database/Execute"
WORKLOADS = [("select1", SQL["select1"][0]), ("rows100", SQL["rows100"][0])]


def planetscale(workload: str, sql: str) -> Case:
    """What the driver sends: the SQL (values inlined), no session, the login as Basic credentials percent-encoded
    as they stand in the driver's URL (``encodeURIComponent``), which the middleware decodes."""
    login = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
    headers = (("Content-Type", "application/json"),
               ("Authorization", "Basic " + base64.b64encode(login.encode()).decode()))
    return Case("ours", "maria", workload, "POST", PATH, json.dumps({"query": sql, "session": None}).encode(),
                headers)


@dataclass
class Pair:
    workload: str
    connections: int
    polyscale: Side
    planetscale: Side
    sizes: tuple[int, int]


@dataclass
class Plan:
    duration: float
    rounds: int
    connections: tuple[int, ...] = (1, 16)
    warm: float = 1.0


def run_planetscale(plan: Plan, load: Load, database: str = DB) -> tuple[list[Pair], list[float], float]:
    started = time.monotonic()
    loads = [os.getloadavg()[0]]
    pairs: list[Pair] = []
    with serve("bench.apps.cached:planetscale_app", database) as ours:
        for workload, sql in WORKLOADS:
            poly = polyscale("ours", workload, "maria", "mariadb", database, sql)
            psdb = planetscale(workload, sql)
            poly_body = checked(poly, ours)[1]
            psdb_body = checked(psdb, ours)[1]
            if b'"rows"' not in psdb_body and workload != "select1":
                raise RuntimeError(f"PlanetScale's {workload} answered no rows: {psdb_body[:300]!r}")
            for one in (poly, psdb):
                load(one, ours.host, ours.port, 2, plan.warm)  # warm the pool
            for connections in plan.connections:
                pair = Pair(workload, connections, Side(f"PolyScale {workload}", poly, ours),
                            Side(f"PlanetScale {workload}", psdb, ours), (len(poly_body), len(psdb_body)))
                print(f"{workload}, {connections} connections:", file=sys.stderr, flush=True)
                loads += alternate([pair.polyscale, pair.planetscale], plan.rounds, connections, plan.duration, load)
                pairs.append(pair)
    return pairs, loads, time.monotonic() - started


def _lat(side: Side) -> str:
    return f"{side.median('p50_ms'):.2f} / {side.median('p99_ms'):.2f}"


def report(pairs: list[Pair], loads: list[float], seconds: float, plan: Plan) -> str:
    lines = [
        "## PlanetScale's path beside PolyScale's, MariaDB",
        "",
        "`bench/planetscale.py` (`make bench` runs it; alone: `.venv/bin/python bench/planetscale.py --write "
        f"docs/benchmarks.md`), {machine(loads)}; {seconds / 60:.1f} minutes in all. uvicorn with 1 worker (the "
        "server of `bench/run.py`'s MariaDB cases) serves `bench.apps.cached:planetscale_app`: one target, `maria`, "
        "`mariadb://127.0.0.1:3306/sqlhttp_test_bench`, cache off, every protection on as in `bench/apps/ours.py`, "
        "MariaDB on the thread pool, a pool of 2 connections; `planetscale_root=True`, so the same process, target "
        f"and pool answer PolyScale's body at `/sql` and `@planetscale/database`'s at `{PATH}` (`{{\"query\", "
        "\"session\": null}`, `Authorization: Basic` with the login percent-encoded as the driver sends it). Both "
        "log in as `sqlhttp_test`, checked by MariaDB. wrk with 1 thread, "
        f"{plan.duration:g} s a run after a {plan.warm:g} s warm-up of each side, {plan.rounds} runs of each side, "
        "alternated (who goes first alternates too); medians shown. `select1` is `SELECT 1 AS one`, `rows100` "
        f"`{SQL['rows100'][0]}`.",
        "",
        "| workload | clients | PolyScale req/s (runs) | PlanetScale req/s (runs) | PlanetScale / PolyScale "
        "(each run) | PolyScale p50 / p99 ms | PlanetScale p50 / p99 ms | server CPU per request, PolyScale / "
        "PlanetScale | answer bytes, PolyScale / PlanetScale | non-2xx / wrk errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pair in pairs:
        a, b = pair.polyscale, pair.planetscale
        lines.append(
            f"| {pair.workload} | {pair.connections} | {a.median('requests_per_second'):.0f} "
            f"({', '.join(f'{r.requests_per_second:.0f}' for r in a.results)}) | "
            f"{b.median('requests_per_second'):.0f} ({', '.join(f'{r.requests_per_second:.0f}' for r in b.results)})"
            f" | {ratio(b, a):.2f}x ({ratio_runs(b, a)}) | {_lat(a)} | {_lat(b)} | {a.median('cpu_us'):.0f} / "
            f"{b.median('cpu_us'):.0f} µs | {pair.sizes[0]:,} / {pair.sizes[1]:,} | {errors([a, b])} |")
    lines += ["", "### Reading the PlanetScale figures", ""]
    for pair in pairs:
        a, b = pair.polyscale, pair.planetscale
        runs = [y.requests_per_second / x.requests_per_second for x, y in zip(a.results, b.results, strict=True)
                if x.requests_per_second]
        overlap = min(runs) <= 1 <= max(runs)
        lines.append(
            f"- {pair.workload}, {pair.connections} client{'s' if pair.connections > 1 else ''}: PlanetScale's path "
            f"at {ratio(b, a):.2f}x PolyScale's throughput (single runs {min(runs):.2f}x to {max(runs):.2f}x"
            + ("; the runs fall on both sides of 1, so no difference is resolved" if overlap else "")
            + f"), server CPU per request {(ratio(b, a, 'cpu_us') - 1) * 100:+.0f}%.")
    lines.append("- No goal was set for this path beyond measuring it; both answer through the same pool, so the "
                 "differences are the two protocols' parsing and encoding (PlanetScale's base64 row values and "
                 "field metadata against PolyScale's JSON objects).")
    return "\n".join(lines) + "\n"


def smoke(write: str | None) -> None:
    database = smoke_database()
    plan = Plan(duration=0.3, rounds=1, connections=(2,), warm=0.1)
    try:
        pairs, loads, seconds = run_planetscale(plan, python_load, database)
    finally:
        drop_servers(database)
    for pair in pairs:
        smoke_line(pair.polyscale, {"bytes": pair.sizes[0]})
        smoke_line(pair.planetscale, {"bytes": pair.sizes[1]})
    if write:
        write_marked(Path(write), "planetscale", report(pairs, loads, seconds, plan))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0, help="seconds a run (wrk takes whole seconds)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each side")
    parser.add_argument("--smoke", action="store_true", help="a fraction of a second a case, Python load generator")
    parser.add_argument("--write", help="replace this script's section of this Markdown file")
    args = parser.parse_args()
    if args.smoke:
        smoke(args.write)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench does)")
    prepare_servers()
    plan = Plan(args.duration, args.rounds)
    text = report(*run_planetscale(plan, wrk), plan)
    print(text)
    if args.write:
        write_marked(Path(args.write), "planetscale", text)


if __name__ == "__main__":
    main()

