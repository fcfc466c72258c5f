"""Prometheus metrics: answers counted by protocol, target and status on every mount, the pool gauges, the counters
of pool timeouts, reaped connections, rate-limited and login-braked requests and the engine's own events, nothing
recorded while metrics are off, an exposition that parses and carries no secret, and a real gunicorn run with four
workers whose scraped totals add up to the requests sent.

Metrics are per process and every test here shares them, so each test serves targets of names of its own and reads
the samples of those names (or the difference it made, for labels every test shares).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import webtest
from anyio.from_thread import BlockingPortal
from flask import Flask
from prometheus_client import generate_latest

from sqlhttp_middleware import metrics
from sqlhttp_middleware.core import Request, SQLHTTPCore
from sqlhttp_middleware.flask import SQLHTTP
from sqlhttp_middleware.options import ConfigurationError, Target

from .support import Client, Database, make_asgi_client, make_wsgi_client, serving
from .support.metrics import by_label, parse, total, worker_values

PG_URL = "postgresql://127.0.0.1:5432"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def scrape(client: Client, accept: str | None = None) -> str:
    reply = client.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
    assert reply.status == 200, reply.body
    return reply.body.decode()


def neon_send(client: Client, db: Database, target: str, query: str) -> int:
    connection = f"postgresql://{db.username}:{urllib.parse.quote(db.password, safe='')}@{target}/{db.database}"
    headers = {"Neon-Connection-String": connection, "Neon-Raw-Text-Output": "true", "Neon-Array-Mode": "true",
               "Content-Type": "application/json"}
    return client.send("POST", "/sql", json.dumps({"query": query, "params": []}).encode(), headers).status


def hold(client: Client, db: Database, target: str, seconds: float) -> threading.Thread:
    """A request holding one of ``target``'s pooled connections for ``seconds``, on a thread of its own."""
    thread = threading.Thread(target=client.post, args=(db.body(f"select pg_sleep({seconds}) as s", cacheId=target),))
    thread.start()
    return thread


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- answers, on every mount --------------------------------------------------------------------------------------


def test_answers_are_counted_by_protocol_target_and_status(make_client: Callable[..., Client],
                                                           pg_database: Database) -> None:
    name = unique("pg")
    client = make_client(targets={name: PG_URL}, metrics_path="/metrics")
    before = scrape(client)
    assert client.post(pg_database.body("select 1 as one", cacheId=name)).status == 200
    assert client.post(pg_database.body("select 2 as two", cacheId=name)).status == 200
    assert client.post(pg_database.body("select * from no_such_table", cacheId=name)).status == 400
    assert neon_send(client, pg_database, name, "select 1") == 200
    assert client.post(pg_database.body("select 1", cacheId=unique("nowhere"))).status == 404
    assert client.request("GET", "/sql").status == 405
    after = scrape(client)

    assert by_label(after, "sqlhttp_requests_total", "status", protocol="polyscale", target=name) == {
        "200": 2, "400": 1}
    assert by_label(after, "sqlhttp_requests_total", "status", protocol="neon", target=name) == {"200": 1}
    assert total(after, "sqlhttp_request_duration_seconds_count", protocol="polyscale", target=name) == 3
    assert total(after, "sqlhttp_request_duration_seconds_count", protocol="neon", target=name) == 1
    # The unknown target is never a label: the request counts under "" (as the refused GET does).
    for status in ("404", "405"):
        made = (total(after, "sqlhttp_requests_total", protocol="polyscale", target="", status=status)
                - total(before, "sqlhttp_requests_total", protocol="polyscale", target="", status=status))
        assert made == 1, status
    assert "nowhere" not in after
    assert client.request("POST", "/metrics", b"{}", {"Content-Type": "application/json"}).status == 405


def test_the_exposition_parses_and_carries_no_secret(make_client: Callable[..., Client],
                                                     pg_database: Database) -> None:
    name = unique("pg")
    client = make_client(targets={name: PG_URL}, metrics_path="/metrics")
    assert client.post(pg_database.body("select 1 as one", cacheId=name)).status == 200
    assert client.post(pg_database.body("select 1", cacheId=name, password="wrong-secret-x")).status == 401
    reply = client.request("GET", "/metrics")
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert reply.headers["cache-control"] == "no-store"
    text = reply.body.decode()
    names = {sample_name for sample_name, _, _ in parse(text)}
    assert {"sqlhttp_requests_total", "sqlhttp_request_duration_seconds_bucket",
            "sqlhttp_pool_connections"} <= names
    for help_line in ("sqlhttp_pool_timeouts", "sqlhttp_connections_reaped", "sqlhttp_connections_abandoned",
                      "sqlhttp_rate_limited", "sqlhttp_login_braked", "sqlhttp_connect_refused_fast"):
        assert f"# HELP {help_line}" in text, help_line
    for secret in (pg_database.password, "wrong-secret-x", pg_database.username, "127.0.0.1", "postgresql:"):
        assert secret not in text
    buckets = {labels["le"] for sample_name, labels, _ in parse(text)
               if sample_name == "sqlhttp_request_duration_seconds_bucket" and labels.get("target") == name}
    assert {"0.001", "30.0", "+Inf"} <= buckets
    openmetrics = client.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.body.endswith(b"# EOF\n")


# -- pools ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mount", ["wsgi", "asgi-threads", "asgi-loop"])
def test_pool_gauges_show_open_checked_out_and_waiting(mount: str, portal: BlockingPortal,
                                                       pg_database: Database) -> None:
    """Waiting in the sync pool (WSGI), on the event loop for a thread's turn (ASGI, the sync engines), and in the
    async pool (ASGI, PostgreSQL on the loop)."""
    name = unique("pg")
    options = {"targets": {name: PG_URL}, "metrics_path": "/metrics", "pool_size": 1, "pool_timeout": 10,
               "async_postgres": mount == "asgi-loop"}
    client = make_wsgi_client(options) if mount == "wsgi" else make_asgi_client(options, portal)
    try:
        holders = [hold(client, pg_database, name, 0.4), hold(client, pg_database, name, 0.4)]

        def gauges() -> dict[str, float]:
            return by_label(scrape(client), "sqlhttp_pool_connections", "state", target=name)

        if mount == "asgi-loop":
            # The async pools count a request waiting for their one connection as checked out (AsyncPool.counts).
            wait_for(lambda: gauges().get("checked_out", 0) + gauges().get("waiting", 0) == 2)
            assert gauges()["open"] == 1
        else:
            wait_for(lambda: gauges() == {"open": 1, "checked_out": 1, "waiting": 1})
        for thread in holders:
            thread.join()
        assert gauges() == {"open": 1}  # checked_out and waiting are back to 0, which by_label leaves out
    finally:
        client.close()


def test_the_apps_own_exposition_shows_the_pool_gauges_as_they_are(make_engine_client: Callable[..., Client],
                                                                   pg_database: Database) -> None:
    name = unique("pg")
    client = make_engine_client(targets={name: PG_URL}, metrics_path="/metrics")
    holder = hold(client, pg_database, name, 0.4)
    wait_for(lambda: client.core.pool_stats()["checked_out"] == 1)
    text = generate_latest().decode()  # prometheus_client's default registry, as the app would expose it
    holder.join()
    assert total(text, "sqlhttp_pool_connections", target=name, state="checked_out") == 1
    assert total(generate_latest().decode(), "sqlhttp_pool_connections", target=name, state="checked_out") == 0


def test_pool_timeouts_are_counted(make_engine_client: Callable[..., Client], pg_database: Database) -> None:
    name = unique("pg")
    client = make_engine_client(targets={name: PG_URL}, metrics_path="/metrics", pool_size=1, pool_timeout=0.2)
    holder = hold(client, pg_database, name, 0.6)
    wait_for(lambda: client.core.pool_stats()["checked_out"] == 1)
    assert client.post(pg_database.body("select 1", cacheId=name)).status == 503
    holder.join()
    text = scrape(client)
    assert total(text, "sqlhttp_pool_timeouts_total", target=name) == 1
    assert by_label(text, "sqlhttp_requests_total", "status", target=name) == {"200": 1, "503": 1}


def test_reaped_connections_are_counted(make_engine_client: Callable[..., Client], pg_database: Database) -> None:
    name = unique("pg")
    client = make_engine_client(targets={name: PG_URL}, metrics_path="/metrics", idle_timeout=0.2)
    assert client.post(pg_database.body("select 1", cacheId=name)).status == 200
    wait_for(lambda: total(scrape(client), "sqlhttp_connections_reaped_total", target=name) == 1)
    assert by_label(scrape(client), "sqlhttp_pool_connections", "state", target=name) == {}


# -- admission -----------------------------------------------------------------------------------------------------


def make_core(**options: Any) -> SQLHTTPCore:
    return SQLHTTPCore(rate_limit_storage="memory", metrics_path="/metrics", **options)


def post(core: SQLHTTPCore, body: dict[str, Any], client: str = "10.0.0.1") -> int:
    request = Request("POST", "/sql", {"content-type": "application/json"}, json.dumps(body).encode(), client)
    return core.handle(request).status


def core_scrape(core: SQLHTTPCore) -> str:
    return core.handle(Request("GET", "/metrics", {}, b"")).body.decode()


@pytest.mark.parametrize("policy", ["mount", "client", "target"])
def test_rate_limited_requests_are_counted_by_policy(pg_database: Database, policy: str) -> None:
    name = unique("pg")
    options: dict[str, Any] = {"mount": {"rate_limit": 1}, "client": {"rate_limit_per_client": 1}}.get(policy, {})
    target = Target(PG_URL, rate_limit=1) if policy == "target" else PG_URL
    core = make_core(targets={name: target}, **options)
    try:
        before = core_scrape(core)
        assert [post(core, pg_database.body("select 1", cacheId=name)) for _ in range(3)] == [200, 429, 429]
        after = core_scrape(core)
    finally:
        core.close()
    counted = {
        label: total(after, "sqlhttp_rate_limited_total", policy=label)
        - total(before, "sqlhttp_rate_limited_total", policy=label) for label in ("mount", "client", "target")}
    assert counted == {label: 2 if label == policy else 0 for label in counted}
    # Refused once its target was known (its own limit), or before the body was read (the mount's, the client's).
    assert by_label(after, "sqlhttp_requests_total", "status", target=name) == (
        {"200": 1, "429": 2} if policy == "target" else {"200": 1})


def test_login_braked_requests_are_counted(pg_database: Database) -> None:
    name = unique("pg")
    core = make_core(targets={name: PG_URL}, login_attempts=2, rate_limit_namespace=unique("ns"))
    try:
        statuses = [post(core, pg_database.body("select 1", cacheId=name, password="not-it")) for _ in range(3)]
        text = core_scrape(core)
    finally:
        core.close()
    assert statuses == [401, 401, 429]
    assert total(text, "sqlhttp_login_braked_total", target=name) == 1
    assert by_label(text, "sqlhttp_requests_total", "status", target=name) == {"401": 2, "429": 1}


def test_the_engines_events_are_counted() -> None:
    name = unique("pg")
    core = make_core(targets={name: PG_URL})
    try:
        metrics.connection_abandoned(name, "deadline")
        metrics.connection_abandoned(name, "disconnect")
        metrics.connection_abandoned(name, "disconnect")
        metrics.connect_refused_fast(name)
        text = core_scrape(core)
    finally:
        core.close()
    assert by_label(text, "sqlhttp_connections_abandoned_total", "reason", target=name) == {
        "deadline": 1, "disconnect": 2}
    assert total(text, "sqlhttp_connect_refused_fast_total", target=name) == 1


# -- off -------------------------------------------------------------------------------------------------------------


def test_nothing_is_recorded_while_metrics_are_off(pg_database: Database) -> None:
    name, watching = unique("off"), unique("on")
    observer = make_core(targets={watching: PG_URL})
    core = SQLHTTPCore(targets={name: PG_URL}, rate_limit_storage="memory", idle_timeout=0.1)
    try:
        assert core.observer.metrics is None and core.engines.registry._metrics is None
        assert "/metrics" not in core.paths
        before = core_scrape(observer)
        assert post(core, pg_database.body("select 1", cacheId=name)) == 200
        assert post(core, pg_database.body("select 1", cacheId=unique("nowhere"))) == 404
        wait_for(lambda: core.pool_stats()["open_connections"] == 0)  # reaped, uncounted
        after = core_scrape(observer)
    finally:
        core.close()
        observer.close()
    assert name not in after
    assert total(after, "sqlhttp_requests_total", target="") == total(before, "sqlhttp_requests_total", target="")


def test_prometheus_client_is_not_imported_while_metrics_are_off() -> None:
    code = ("import sys; from sqlhttp_middleware.wsgi import SQLHTTPMiddleware; "
            "SQLHTTPMiddleware(None, targets={'pg': 'postgresql://127.0.0.1:5432'}, rate_limit_storage='memory'); "
            "print('prometheus_client' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


# -- multiprocess bookkeeping ----------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_gunicorn_hooks_and_the_scrape_drop_what_dead_workers_leave(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("kept")
    metrics.on_starting(None)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]  # a fresh start: no earlier run's counts
    gone, exited = dead_pid(), dead_pid()
    for pid in (gone, exited, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    metrics.child_exit(None, SimpleNamespace(pid=exited))
    assert not (tmp_path / f"gauge_livesum_{exited}.db").exists()
    metrics._forget_dead_workers(str(tmp_path))  # what a scrape does for servers without the hook
    assert sorted(path.name for path in tmp_path.glob("*.db")) == sorted(
        [f"counter_{gone}.db", f"counter_{exited}.db", f"counter_{os.getpid()}.db", f"gauge_livesum_{os.getpid()}.db"])


def test_a_multiprocess_directory_that_does_not_exist_fails_at_start_up(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"^metrics_path: PROMETHEUS_MULTIPROC_DIR="):
        metrics.Metrics()


# -- Flask -----------------------------------------------------------------------------------------------------------


def test_flask_serves_metrics_and_health_from_app_config(pg_database: Database) -> None:
    name = unique("pg")
    app = Flask(__name__)
    app.config.update(SQLHTTP_TARGETS={name: PG_URL}, SQLHTTP_METRICS_PATH="/metrics",
                      SQLHTTP_HEALTH_PATH="/healthz", SQLHTTP_RATE_LIMIT_STORAGE="memory")

    @app.get("/api/status")
    def status() -> dict[str, bool]:
        return {"ok": True}

    middleware = SQLHTTP().init_app(app)
    try:
        http = webtest.TestApp(app)
        assert http.post("/sql", json.dumps(pg_database.body("select 1", cacheId=name)),
                         content_type="application/json").status_int == 200
        assert http.get("/api/status").json == {"ok": True}
        assert http.get("/healthz").json == {"status": "ok"}
        assert http.get("/healthz/ready").json == {"status": "ready", "targets": {name: "ready"}}
        text = http.get("/metrics").text
    finally:
        middleware.close()
    assert by_label(text, "sqlhttp_requests_total", "status", target=name) == {"200": 1}


# -- a real server, four workers --------------------------------------------------------------------------------------


def test_gunicorn_with_four_workers_adds_up_to_the_requests_sent(tmp_path: Path, pg_database: Database) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"a previous run's")  # on_starting empties the directory
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("from sqlhttp_middleware.metrics import child_exit, on_starting  # noqa: F401\n")
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432", "SQLHTTP_METRICS_PATH": "/metrics",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": unique("test"), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    body = pg_database.body("select pg_sleep(0.005) as s")
    plan = (["ok"] * 80 + ["sql-error"] * 40 + ["unknown-target"] * 30 + ["get"] * 30 + ["form"] * 20)
    expected = {"200": 80, "400": 40, "404": 30, "405": 30, "415": 20}
    # Sync workers, one request at a time each: with sixteen clients at once, every worker has to take some.
    with serving("wsgi-gunicorn", env, ["--workers", "4", "--threads", "1", "--config", str(config)]) as url:

        def send(kind: str) -> int:
            data: bytes | None = json.dumps({**body, "sql": "select * from nowhere"} if kind == "sql-error" else
                                            {**body, "cacheId": "elsewhere"} if kind == "unknown-target" else
                                            body).encode()
            content_type = "application/x-www-form-urlencoded" if kind == "form" else "application/json"
            request = urllib.request.Request(f"{url}/sql", data=None if kind == "get" else data,
                                             headers={"Content-Type": content_type})
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    return int(reply.status)
            except urllib.error.HTTPError as error:
                error.close()
                return int(error.code)

        with ThreadPoolExecutor(16) as pool:
            sent = Counter(str(status) for status in pool.map(send, plan))
        assert sent == expected
        time.sleep(metrics.SAMPLE_INTERVAL + 0.5)  # every worker's sampler has refreshed its pool gauges
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        served = worker_values(str(directory), "sqlhttp_requests_total")
        pids = {pid for pid, values in served.items() if sum(value for _, value in values)}
    assert by_label(text, "sqlhttp_requests_total", "status") == expected
    assert total(text, "sqlhttp_requests_total") == len(plan)
    assert total(text, "sqlhttp_request_duration_seconds_count") == len(plan)
    assert by_label(text, "sqlhttp_requests_total", "target", status="200") == {"pg": 80}
    assert len(pids) >= 2, served  # the sum really is over several workers
    # Each worker that ran a query keeps its connections open (idle_timeout 60 s); the gauge adds them up.
    queried = {pid for pid, values in served.items()
               if any(labels["status"] in ("200", "400") for labels, _ in values)}
    assert len(queried) <= total(text, "sqlhttp_pool_connections", target="pg", state="open") <= 2 * len(queried)
    assert total(text, "sqlhttp_pool_connections", target="pg", state="checked_out") == 0
    assert not (directory / "counter_1.db").exists()
    # Stopped: gunicorn's child_exit dropped each worker's live gauges; the counters stay.
    assert not list(directory.glob("gauge_livesum_*.db"))
    assert list(directory.glob("counter_*.db"))
