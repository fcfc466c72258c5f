"""Interactive Hrana sessions against real servers with four worker processes (gunicorn ``-w 4``, uvicorn
``--workers 4``), end to end: a worker killed while it holds sessions, and many clients running short write
transactions whose two requests land on different workers.

* **Crash.** Sessions all held by one worker, one of them in a ``BEGIN IMMEDIATE`` transaction with an uncommitted
  insert, the others in ``BEGIN DEFERRED`` with a read; stateless reads and writes running meanwhile. The worker is
  SIGKILLed: every one of its batons then answers ``STREAM_EXPIRED`` wherever it lands, the load keeps being
  answered by the other workers, the write lock is free again, the uncommitted insert is not in the table, the file
  is intact, and the server replaces the worker.
* **Soak.** Clients of the real ``@libsql/client`` (``tests/js/sessions-soak.mjs``), each running transactions one
  after the other (BEGIN IMMEDIATE + INSERT, then COMMIT + close, each request on a new connection): the table holds
  exactly the writes whose COMMIT answered ok, most transactions commit, and afterwards every pool is idle and no
  session is left open. Fifty clients share eight pooled connections (two per worker), so many first requests are
  answered 503 with Retry-After at once (the server lets no more openers wait than the pool holds); the clients
  send those again after Retry-After, and nothing else.

Both read the pool and session gauges from the metrics page, summed over live workers (``PROMETHEUS_MULTIPROC_DIR``,
with gunicorn's hooks that drop a dead worker's gauges; uvicorn's are dropped at the scrape).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .support import ROOT, node_with, serving
from .support.metrics import total

SOAK_SCRIPT = ROOT / "tests" / "js" / "sessions-soak.mjs"
ATTEMPTS = 100  # per transaction, when its first request is answered 503 with Retry-After; nothing else is retried
TOKEN = "lite-token"
CLOSE = {"type": "close"}

# Soak sizes per server: (clients, transactions per client). The full soak is 50 x 200, but SQLite's write lock lets
# one transaction through at a time: on this two-core machine, shared with other work, 30 to 170 a second (measured
# 2026-12-02, database in /dev/shm: 50 x 200 took 82 s on gunicorn, 64 s on uvicorn, all committed). So by default both
# run 50 clients with fewer transactions each (2,000 on gunicorn, 1,000 on uvicorn), which keeps this file near 45 s
# on a quiet machine; TEST_SOAK_TRANSACTIONS=200 runs the full count on both.
SOAK = {"wsgi-gunicorn": (50, 40), "asgi-uvicorn": (50, 20)}


# -- talking Hrana by hand --------------------------------------------------------------------------------------------


def value(item: Any) -> dict[str, Any]:
    if item is None:
        return {"type": "null"}
    if isinstance(item, bool) or not isinstance(item, int | float | str):
        raise TypeError(item)
    if isinstance(item, int):
        return {"type": "integer", "value": str(item)}
    if isinstance(item, float):
        return {"type": "float", "value": item}
    return {"type": "text", "value": item}


def execute(sql: str, *args: Any) -> dict[str, Any]:
    return {"type": "execute", "stmt": {"sql": sql, "args": [value(a) for a in args]}}


@dataclass
class Answer:
    status: int
    body: Any
    worker: int | None

    @property
    def baton(self) -> str | None:
        return self.body.get("baton") if isinstance(self.body, dict) else None

    @property
    def owner(self) -> int:
        """The pid of the worker that holds the session, from the baton (HOST.PID-NONCE.ID.SEQ.MAC)."""
        assert self.baton is not None, self
        return int(self.baton.split(".")[1].split("-")[0])

    def results(self) -> list[dict[str, Any]]:
        assert self.status == 200 and isinstance(self.body, dict), self
        results: list[dict[str, Any]] = self.body["results"]
        return results

    def ok(self) -> list[dict[str, Any]]:
        """Every result ok: the execute results."""
        results = self.results()
        assert all(result["type"] == "ok" for result in results), self
        return [r["response"]["result"] for r in results if r["response"]["type"] == "execute"]

    def rows(self) -> list[list[Any]]:
        return [[cell.get("value") for cell in row] for row in self.ok()[-1]["rows"]]


class Http:
    """Each request on a new connection, so that a server's workers share them out."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = {"authorization": f"Bearer {TOKEN}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["content-type"] = "application/json"
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            raw = response.read()
            worker = response.getheader("x-test-worker")
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(response.status, parsed, int(worker) if worker else None)
        finally:
            connection.close()

    def pipeline(self, baton: str | None, *requests: dict[str, Any], timeout: float = 30) -> Answer:
        return self.request("POST", "/sql/lite/v3/pipeline", {"baton": baton, "requests": list(requests)}, timeout)

    def metrics(self) -> str:
        answer = self.request("GET", "/metrics")
        assert answer.status == 200, answer
        assert isinstance(answer.body, str)
        return answer.body


def gauges(http: Http) -> dict[str, float]:
    text = http.metrics()
    found = {state: total(text, "sqlhttp_pool_connections", target="lite", state=state)
             for state in ("open", "checked_out", "waiting")}
    found["sessions"] = total(text, "sqlhttp_sessions", target="lite")
    return found


def wait_for_gauges(http: Http, want: dict[str, float], within: float) -> dict[str, float]:
    """The gauges once they show ``want`` (the workers' samplers refresh every second), or as they last were."""
    deadline = time.monotonic() + within
    while True:
        seen = gauges(http)
        if all(seen[name] == count for name, count in want.items()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.25)


# -- processes ------------------------------------------------------------------------------------------------------


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if parent_of(int(entry.name)) == pid:
                    found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Dead: no process, or a zombie its parent has not reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@contextlib.contextmanager
def server(kind: str, directory: Path, database: Path, env: dict[str, str] | None = None,
           args: tuple[str, ...] = ()) -> Iterator[Http]:
    """``kind`` with four workers serving the SQLite file ``database`` as target ``lite``, metrics on."""
    prometheus = directory / "prometheus"
    prometheus.mkdir()
    settings = {"SQLHTTP_TEST_SQLITE": str(database), "SQLHTTP_SESSION_DIR": str(directory / "sessions"),
                "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}", "SQLHTTP_METRICS_PATH": "/metrics",
                "PROMETHEUS_MULTIPROC_DIR": str(prometheus), **(env or {})}
    extra = ["--workers", "4", *args]
    if kind == "wsgi-gunicorn":
        config = directory / "gunicorn.conf.py"
        config.write_text("from sqlhttp_middleware.metrics import child_exit, on_starting  # noqa: F401\n")
        extra += ["--config", str(config)]
    with serving(kind, settings, extra) as url:
        yield Http(url)


def check_integrity(database: Path) -> None:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# -- crash ----------------------------------------------------------------------------------------------------------


@dataclass
class Sent:
    kind: str  # read or write
    started: float
    ended: float
    outcome: str  # ok, busy (a write's SQLITE_BUSY), no-answer, or what else came
    worker: int | None = None
    n: int = 0  # a write's number


class Load:
    """Threads sending stateless execute + close pipelines (reads, and numbered inserts) until stopped."""

    def __init__(self, http: Http, readers: int, writers: int) -> None:
        self.http = http
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._numbers = iter(range(1, 1 << 30))
        self._threads = [threading.Thread(target=self._run, args=(kind,), daemon=True)
                         for kind in ["read"] * readers + ["write"] * writers]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hangs"

    def _run(self, kind: str) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = next(self._numbers)
            statement = (execute("SELECT count(*) FROM crash") if kind == "read"
                         else execute("INSERT INTO load (n) VALUES (?)", n))
            started = time.monotonic()
            try:
                answer = self.http.pipeline(None, statement, CLOSE, timeout=20)
            except (OSError, http.client.HTTPException) as exc:
                sent = Sent(kind, started, time.monotonic(), f"no-answer: {type(exc).__name__}", None, n)
            else:
                outcome = f"HTTP {answer.status}: {answer.body}"
                if answer.status == 200:
                    first = answer.body["results"][0]
                    if first["type"] == "ok":
                        outcome = "ok"
                    elif kind == "write" and first["error"].get("code") == "SQLITE_BUSY":
                        outcome = "busy"
                    else:
                        outcome = f"error: {first['error']}"
                sent = Sent(kind, started, time.monotonic(), outcome, answer.worker, n)
            with self._lock:
                self.sent.append(sent)


def open_sessions_on_one_worker(http: Http, wanted: int) -> tuple[int, list[Answer]]:
    """Sessions (a ``SELECT 1`` each, stream left open) until ``wanted`` are held by one worker; the others closed.
    With four workers, 4 * (wanted - 1) + 1 sessions are enough, whichever worker takes which."""
    held: dict[int, list[Answer]] = {}
    for _ in range(4 * (wanted - 1) + 1):
        answer = http.pipeline(None, execute("SELECT 1"))
        answer.ok()
        held.setdefault(answer.owner, []).append(answer)
        if len(held[answer.owner]) == wanted:
            break
    owner = max(held, key=lambda pid: len(held[pid]))
    assert len(held[owner]) == wanted, {pid: len(sessions) for pid, sessions in held.items()}
    for pid, sessions in held.items():
        for session in sessions if pid != owner else ():
            closed = http.pipeline(session.baton, CLOSE)
            closed.ok()
            assert closed.baton is None
    return owner, held[owner]


@pytest.mark.parametrize("kind", ["wsgi-gunicorn", "asgi-uvicorn"], ids=["gunicorn-w4", "uvicorn-w4"])
def test_a_killed_worker_takes_its_sessions_and_nothing_else(kind: str, tmp_path: Path) -> None:
    database = tmp_path / "lite.db"
    # Six connections per worker: the killed one holds three sessions and still serves its share of the load.
    with server(kind, tmp_path, database, {"SQLHTTP_POOL_SIZE": "6"}) as http:
        http.pipeline(None, execute("CREATE TABLE crash (id INTEGER PRIMARY KEY, note TEXT NOT NULL)"),
                      execute("CREATE TABLE load (n INTEGER PRIMARY KEY)"),
                      execute("INSERT INTO crash (note) VALUES ('before')"), CLOSE).ok()

        victim, opened = open_sessions_on_one_worker(http, 3)
        master = parent_of(victim)
        workers_before = children_of(master)
        assert victim in workers_before
        # On the victim: a write transaction with an uncommitted insert, and two read transactions (SQLite lets
        # readers in while a writer holds its RESERVED lock). Each request may land on any worker, and be handed over.
        writer, *readers = opened
        began = [http.pipeline(writer.baton, execute("BEGIN IMMEDIATE"),
                               execute("INSERT INTO crash (note) VALUES ('uncommitted')"))]
        began += [http.pipeline(reader.baton, execute("BEGIN DEFERRED"), execute("SELECT count(*) FROM crash"))
                  for reader in readers]
        for answer in began:
            answer.ok()
            assert answer.owner == victim
        assert began[1].rows() == [["1"]]  # the uncommitted insert is the writer's alone
        held = wait_for_gauges(http, {"sessions": 3}, within=5)
        assert held["sessions"] == 3 and held["checked_out"] >= 3, held

        with Load(http, readers=3, writers=2) as load:
            time.sleep(1.0)
            os.kill(victim, signal.SIGKILL)
            while not gone(victim):
                time.sleep(0.01)
            killed = time.monotonic()
            # The victim's batons, each sent three times on new connections: whichever worker gets one, its
            # socket to the victim refuses, and it answers that the stream is gone.
            late = [http.pipeline(answer.baton, execute("SELECT 1"), CLOSE) for answer in began for _ in range(3)]
            time.sleep(2.0)  # the load goes on after the kill

        for answer in late:
            assert answer.status == 400, answer
            assert answer.body["code"] == "STREAM_EXPIRED", answer
            assert answer.worker != victim
        print(f"\n[{kind}] the victim's batons answered STREAM_EXPIRED by workers "
              f"{sorted(Counter(answer.worker for answer in late).items())}")

        # What the load may have met: a request that never got an answer, if it was sent before the kill (the
        # victim had accepted it: its connection was reset); a write answered SQLITE_BUSY, if it was sent before the
        # kill (the victim's session held the write lock, and the busy timeout ran out). Everything else: answered
        # 200, ok.
        def allowed(sent: Sent) -> bool:
            if sent.outcome == "ok":
                return True
            if sent.outcome.startswith("no-answer") or sent.outcome == "busy":
                return sent.started < killed
            return False

        refused = [sent for sent in load.sent if not allowed(sent)]
        outcomes = Counter((sent.kind, sent.outcome.split(":")[0], sent.started < killed) for sent in load.sent)
        print(f"[{kind}] load around the kill: {dict(outcomes)}")
        assert not refused, refused
        after = [sent for sent in load.sent if sent.started >= killed]
        assert {sent.kind for sent in after if sent.outcome == "ok"} == {"read", "write"}, outcomes
        assert victim not in {sent.worker for sent in after}

        # No lock is left: a new write transaction commits, over two requests, within a few seconds.
        started = time.monotonic()
        while True:
            opened_again = http.pipeline(None, execute("BEGIN IMMEDIATE"),
                                         execute("INSERT INTO crash (note) VALUES ('after')"))
            committed = (http.pipeline(opened_again.baton, execute("COMMIT"), CLOSE)
                         if opened_again.status == 200 and opened_again.baton else None)
            if committed is not None and committed.status == 200 and all(
                    result["type"] == "ok" for result in committed.body["results"]):
                break
            assert time.monotonic() - started < 10, (opened_again, committed)
            time.sleep(0.2)
        print(f"[{kind}] a write transaction committed {time.monotonic() - killed:.2f} s after the kill")
        assert http.pipeline(None, execute("SELECT note FROM crash ORDER BY id"), CLOSE).rows() == [
            ["before"], ["after"]]

        # Every write answered ok is there; nothing else but writes whose answer never came.
        written = {int(row[0]) for row in http.pipeline(None, execute("SELECT n FROM load"), CLOSE).rows()}
        acknowledged = {sent.n for sent in load.sent if sent.kind == "write" and sent.outcome == "ok"}
        unanswered = {sent.n for sent in load.sent if sent.kind == "write" and sent.outcome.startswith("no-answer")}
        assert acknowledged <= written <= acknowledged | unanswered

        # The server replaced the victim, and the newcomer answers.
        deadline = time.monotonic() + 30
        newcomers: set[int] = set()
        answered_by: set[int | None] = set()
        while time.monotonic() < deadline and not (newcomers & answered_by):
            newcomers = children_of(master) - workers_before
            with ThreadPoolExecutor(8) as pool:  # at once, so that no one worker takes them all
                answered_by |= set(pool.map(lambda _: http.pipeline(None, execute("SELECT 1"), CLOSE).worker,
                                            range(8)))
        assert newcomers & answered_by, (newcomers, answered_by, workers_before)
        assert victim not in answered_by

        # The victim's sessions are gone from the gauges, and no connection stays checked out.
        idle = wait_for_gauges(http, {"sessions": 0, "checked_out": 0, "waiting": 0}, within=5)
        assert idle["sessions"] == idle["checked_out"] == idle["waiting"] == 0, idle
        check_integrity(database)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT count(*) FROM crash WHERE note = 'uncommitted'").fetchone() == (0,)
    check_integrity(database)


# -- soak -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("@libsql/client")


@pytest.fixture
def fast_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory (/dev/shm) when there is one: the write lock is held across each COMMIT's fsyncs, so
    on a disk they, not the middleware, would set the pace."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="sqlhttp-soak-") as directory:
        yield Path(directory)


@pytest.mark.parametrize("kind", ["wsgi-gunicorn", "asgi-uvicorn"], ids=["gunicorn-w4", "uvicorn-w4"])
def test_many_clients_of_short_write_transactions_across_workers(kind: str, node: str, tmp_path: Path,
                                                                 fast_directory: Path) -> None:
    clients, transactions = SOAK[kind]
    transactions = int(os.environ.get("TEST_SOAK_TRANSACTIONS", transactions))
    database = fast_directory / "lite.db"
    # gunicorn's threads: enough for every client's request at once on one worker. With the harness's four, a
    # worker's threads all wait (two openers for the pool, two sessions for the write lock in their BEGIN) while the
    # COMMIT that would free the lock waits for a thread: measured 50 x 2 in 127 s, 25 of 100 committed (reported to
    # the library's owner in /tmp/hrana-bugs.md, 5).
    args = ("--threads", "64") if kind == "wsgi-gunicorn" else ()
    with server(kind, tmp_path, database, args=args) as http:
        http.pipeline(None, execute("CREATE TABLE soak (client INTEGER NOT NULL, seq INTEGER NOT NULL, "
                                    "UNIQUE (client, seq))"), CLOSE).ok()
        payload = {"url": f"http://{http.host}:{http.port}/sql/lite/", "token": TOKEN, "table": "soak",
                   "clients": clients, "transactions": transactions, "attempts": ATTEMPTS}
        done = subprocess.run([node, str(SOAK_SCRIPT)], input=json.dumps(payload).encode(), capture_output=True,
                              cwd=ROOT, timeout=900)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        outcome = json.loads(done.stdout)
        idle = wait_for_gauges(http, {"sessions": 0, "checked_out": 0, "waiting": 0}, within=8)
        text = http.metrics()
    ended = {reason: total(text, "sqlhttp_sessions_ended_total", target="lite", reason=reason)
             for reason in ("closed", "expired", "lost")}
    handed_over = total(text, "sqlhttp_sessions_handed_over_total", target="lite")

    attempted = clients * transactions
    committed = {tuple(pair) for pair in outcome["committed"]}
    not_started = {tuple(pair) for pair in outcome["notStarted"]}
    failed = {(client, seq) for client, seq, _ in outcome["commitFailed"]}
    lost = {tuple(pair) for pair in outcome["commitLost"]}
    print(f"\n[{kind}] {clients} clients x {transactions} transactions: {len(committed)} committed in "
          f"{outcome['seconds']:.1f} s ({len(committed) / outcome['seconds']:.1f} tx/s); failed requests "
          f"{outcome['kinds'] or 'none'}, {outcome['retried']} of them retried; {outcome['handedOver']} "
          f"transactions answered by two workers, {handed_over:.0f} requests handed over; sessions ended {ended}; "
          f"answers per worker {outcome['workers']}")
    assert len(committed) + len(not_started) + len(failed) + len(lost) == attempted, outcome["kinds"]

    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        rows = connection.execute("SELECT client, seq FROM soak").fetchall()
    table = set(rows)
    assert len(rows) == len(table)  # no pair twice
    assert committed <= table, sorted(committed - table)[:20]  # no committed write lost
    # Nothing the client was told failed: a first request that failed left no baton to commit with; a COMMIT
    # answered with an error did not commit. Only a COMMIT whose answer never came may or may not have.
    assert not table & (not_started | failed), sorted(table & (not_started | failed))[:20]
    assert table <= committed | lost, sorted(table - committed - lost)[:20]
    assert len(committed) >= 0.95 * attempted, outcome["kinds"]
    # The requests of many transactions reached two workers; each such one was handed over at least once.
    assert 0 < outcome["handedOver"] <= handed_over
    assert ended["lost"] == 0  # no session lost its connection
    assert idle["sessions"] == idle["checked_out"] == idle["waiting"] == 0, idle
    check_integrity(database)
