"""The result cache end to end, under concurrency, with real servers: a cached read is never older than a write
acknowledged through the middleware before the read was sent, across the workers of a host (stamps in shared
memory) and across hosts sharing one Redis (stamps, and optionally the answers too).

Client threads hammer one counter row: writes ``UPDATE ... SET v = v + 1 RETURNING v`` (the value and the moment the
answer arrived: acknowledged), reads ``SELECT v`` (the moment just before the request went out, the value, X-Cache).
The checker then holds every read to the largest value acknowledged before it was sent. A deterministic probe (fill
host A's cache, write through host B, read on A again over the same connection, so the same worker) follows.

The negative control runs two hosts on the default ``cache_storage="shm"``, each its own session directory: their
stamps are not shared, which is the documented limit of shm (one host), so the checker must find stale reads there;
that it does proves it can fail.

Last, one race the load found only now and then (fixed in 8e94729), made certain with real servers: a proxy in front
of Redis holds back the shared result tier's write, so that a read sent after a write's acknowledgement arrives while
an identical read that ran before it is still storing its answer (single flight must not hand it that answer).
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import json
import random
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .support import SQLITE_PASSWORD, SQLITE_USER, Database, serving

THREADS = 12
DURATION = 3.0  # seconds of load per scenario
WRITE_SHARE = 0.1  # the rest are reads: enough of them between writes for the cache to hit
TTL = 30  # longer than any scenario: expiry never hides a stale read


@dataclass(frozen=True)
class Scenario:
    kind: str
    args: tuple[str, ...]
    database: str  # "pg" or "lite"
    hosts: int = 1
    env: tuple[tuple[str, str], ...] = ()  # added to every host's environment; "{redis}" is replaced
    stale: bool = False  # the negative control: stale reads expected


SCENARIOS = {
    "gunicorn-pg": Scenario("wsgi-gunicorn", ("--workers", "4"), "pg"),
    "uvicorn-pg": Scenario("asgi-uvicorn", ("--workers", "4"), "pg"),
    "gunicorn-sqlite": Scenario("wsgi-gunicorn", ("--workers", "4"), "lite"),
    "two-hosts-redis": Scenario("asgi-uvicorn", ("--workers", "2"), "pg", hosts=2,
                                env=(("SQLHTTP_CACHE_STORAGE", "{redis}"),)),
    "two-hosts-redis-shared-results": Scenario(
        "asgi-uvicorn", ("--workers", "2"), "pg", hosts=2,
        env=(("SQLHTTP_CACHE_STORAGE", "{redis}"), ("SQLHTTP_CACHE_SHARED_RESULTS", "true"),
             ("SQLHTTP_CACHE_SECRET", f"x-{uuid.uuid4().hex[:8]}"))),
    # The documented limit: shm stamps are one host's; a write through another host does not reach them.
    "control-two-hosts-shm": Scenario("asgi-uvicorn", ("--workers", "2"), "pg", hosts=2, stale=True),
}


@dataclass(frozen=True)
class Read:
    sent: float  # time.monotonic() just before the request went out
    received: float
    value: int
    cache: str  # X-Cache
    age: str
    host: int
    worker: str


@dataclass(frozen=True)
class Write:
    sent: float
    acked: float  # time.monotonic() when the answer had arrived
    value: int
    host: int


@dataclass
class Log:
    reads: list[Read] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    workers: set[tuple[int, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- talking to the servers -------------------------------------------------------------------------------------


def connection_to(base: str) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)


def send(base: str, body: bytes, connection: http.client.HTTPConnection | None = None,
         ) -> tuple[float, int, dict[str, str], bytes, float]:
    """POST ``body`` to ``base``/sql: (sent, status, headers, body, received). A new connection (closed after the
    answer) unless one is given, so that requests spread over the workers."""
    own = connection is None
    if connection is None:
        connection = connection_to(base)
    headers = {"Content-Type": "application/json", **({"Connection": "close"} if own else {})}
    try:
        if connection.sock is None:
            connection.connect()
        sent = time.monotonic()  # after the connection is up: the server cannot have the request before this
        connection.request("POST", "/sql", body, headers)
        response = connection.getresponse()
        data = response.read()
        received = time.monotonic()
        return sent, response.status, {k.lower(): v for k, v in response.getheaders()}, data, received
    finally:
        if own:
            connection.close()


def value_of(data: bytes) -> int:
    rows = json.loads(data)
    assert isinstance(rows, list) and len(rows) == 1, rows
    return int(rows[0]["v"])


def read(log: Log, bases: list[str], host: int, body: bytes, connection: http.client.HTTPConnection | None = None,
         ) -> Read | None:
    try:
        sent, status, headers, data, received = send(bases[host], body, connection)
        if status != 200:
            raise RuntimeError(f"read answered {status}: {data[:300]!r}")
        entry = Read(sent, received, value_of(data), headers.get("x-cache", "-"), headers.get("age", "-"), host,
                     headers.get("x-test-worker", "?"))
    except Exception as error:  # every failure is recorded, and fails the test
        with log.lock:
            log.errors.append(f"read on host {host}: {type(error).__name__}: {error}")
        return None
    with log.lock:
        log.reads.append(entry)
        log.workers.add((host, entry.worker))
    return entry


def write(log: Log, bases: list[str], host: int, body: bytes) -> Write | None:
    try:
        sent, status, headers, data, acked = send(bases[host], body)
        if status != 200:
            raise RuntimeError(f"write answered {status}: {data[:300]!r}")
        entry = Write(sent, acked, value_of(data), host)
    except Exception as error:  # an unacknowledged write constrains nothing; still, it fails the test
        with log.lock:
            log.errors.append(f"write on host {host}: {type(error).__name__}: {error}")
        return None
    with log.lock:
        log.writes.append(entry)
        log.workers.add((host, headers.get("x-test-worker", "?")))
    return entry


def hammer(log: Log, bases: list[str], read_body: bytes, write_body: bytes) -> int:
    """THREADS clients for DURATION seconds, alternating between the hosts; the number of requests sent."""
    stop_at = time.monotonic() + DURATION
    counts = [0] * THREADS

    def client(index: int) -> None:
        rng = random.Random(index)
        host = index % len(bases)
        while time.monotonic() < stop_at:
            if rng.random() < WRITE_SHARE:
                write(log, bases, host, write_body)
            else:
                read(log, bases, host, read_body)
            counts[index] += 1
            host = (host + 1) % len(bases)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DURATION + 60)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return sum(counts)


def probe(log: Log, bases: list[str], read_body: bytes, write_body: bytes,
          ) -> tuple[list[Read | None], Write | None]:
    """Fill host A's cache (one kept-alive connection: one worker), write through host B, read on A again."""
    a, b = 0, len(bases) - 1
    connection = connection_to(bases[a])
    try:
        seen = [read(log, bases, a, read_body, connection) for _ in range(2)]  # the second one a HIT
        written = write(log, bases, b, write_body)
        seen.append(read(log, bases, a, read_body, connection))
    finally:
        connection.close()
    return seen, written


# -- the checker ------------------------------------------------------------------------------------------------


def violations(log: Log, host: int | None = None) -> list[tuple[Read, int]]:
    """Every read older than a write acknowledged before it was sent, with the least value it should have had; with
    ``host``, only reads on that host against writes through it."""
    writes = sorted((w for w in log.writes if host in (None, w.host)), key=lambda w: w.acked)
    acked = [w.acked for w in writes]
    floor: list[int] = []
    for w in writes:
        floor.append(max(w.value, floor[-1]) if floor else w.value)
    found = []
    for r in sorted((r for r in log.reads if host in (None, r.host)), key=lambda r: r.sent):
        before = bisect.bisect_left(acked, r.sent)  # writes acknowledged strictly before the read was sent
        if before and r.value < floor[before - 1]:
            found.append((r, floor[before - 1]))
    return found


def describe(log: Log, stale: Read, expected: int) -> str:
    """A stale read, the write it missed, and what else its worker answered around it (times in ms from the read)."""
    missed = next(w for w in log.writes if w.value == expected)
    near = sorted((r for r in log.reads if r.worker == stale.worker and abs(r.sent - stale.sent) < 0.05),
                  key=lambda r: r.sent)
    return (f"read {stale.value} < {expected} ({stale.cache}, Age {stale.age}, host {stale.host}, worker "
            f"{stale.worker}, answered in {1000 * (stale.received - stale.sent):.1f} ms); the write of {expected} "
            f"went to host {missed.host} at {1000 * (missed.sent - stale.sent):.1f} and was acknowledged at "
            f"{1000 * (missed.acked - stale.sent):.1f}; that worker's reads around it: "
            + ", ".join(f"{r.value} {r.cache} [{1000 * (r.sent - stale.sent):.1f}, "
                        f"{1000 * (r.received - stale.sent):.1f}]" for r in near))


# -- the databases ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def counter_table(scenario: Scenario, request: pytest.FixtureRequest, tmp_path: Path,
                  ) -> Iterator[tuple[Database, str, dict[str, str]]]:
    """(database, table, SQLHTTP_* env) with a fresh one-row counter table."""
    table = f"cache_counter_{uuid.uuid4().hex[:8]}"
    if scenario.database == "pg":
        database: Database = request.getfixturevalue("pg_database")
        database.run(f"CREATE TABLE {table} (id integer PRIMARY KEY, v integer NOT NULL)")
        database.run(f"INSERT INTO {table} (id, v) VALUES (1, 0)")
        try:
            yield database, table, {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432"}
        finally:
            database.run(f"DROP TABLE {table}")
    else:
        path = tmp_path / "counter.db"
        with contextlib.closing(sqlite3.connect(path)) as connection, connection:
            connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            connection.execute(f"INSERT INTO {table} (id, v) VALUES (1, 0)")
        database = Database("lite", "sqlite", "sqlite", SQLITE_USER, SQLITE_PASSWORD, "main", f"sqlite:///{path}")
        yield database, table, {"SQLHTTP_TARGETS": "", "SQLHTTP_TEST_SQLITE": str(path)}


@contextlib.contextmanager
def servers(scenario: Scenario, target_env: dict[str, str], tmp_path: Path, redis: str,
            ) -> Iterator[list[str]]:
    """The scenario's hosts, up; their base URLs."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"  # one per scenario, the same on every host: Redis stamps' names
    with contextlib.ExitStack() as stack:
        bases = []
        for host in range(scenario.hosts):
            env = {**target_env, "SQLHTTP_TEST_CACHE": str(TTL), "SQLHTTP_RATE_LIMIT": "10000000",
                   "SQLHTTP_RATE_LIMIT_NAMESPACE": namespace,
                   "SQLHTTP_SESSION_DIR": str(tmp_path / f"host-{host}"),  # one per host: nothing shm is shared
                   **{k: v.replace("{redis}", redis) for k, v in scenario.env}}
            bases.append(stack.enter_context(serving(scenario.kind, env, scenario.args)))
        yield bases


# -- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_read_is_older_than_an_acknowledged_write(name: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    redis = request.getfixturevalue("redis_url") if any("{redis}" in v for _, v in scenario.env) else ""
    with (counter_table(scenario, request, tmp_path) as (database, table, target_env),
          servers(scenario, target_env, tmp_path, redis) as bases):
        read_body = json.dumps(database.body(f"SELECT v FROM {table} WHERE id = 1")).encode()
        write_body = json.dumps(database.body(f"UPDATE {table} SET v = v + 1 WHERE id = 1 RETURNING v")).encode()

        log = Log()
        # The servers are up; a first read per host so that each has opened its engine before the clock runs.
        for host in range(scenario.hosts):
            read(log, bases, host, read_body)
        started = time.monotonic()
        sent = hammer(log, bases, read_body, write_body)
        elapsed = time.monotonic() - started
        probed, probe_write = probe(log, bases, read_body, write_body)
        _, status, _, final, _ = send(bases[0], json.dumps(
            database.body(f"SELECT v FROM {table} WHERE id = 1", cache=False)).encode())

    caches = Counter(r.cache.split(";")[0] for r in log.reads)
    found = violations(log)
    print(f"\n{name}: {sent} requests in {elapsed:.1f} s ({sent / elapsed:.0f}/s) over "
          f"{len(log.workers)} workers: {len(log.reads)} reads ({caches['HIT']} HIT, {caches['MISS']} MISS, "
          f"{caches['BYPASS']} BYPASS), {len(log.writes)} writes, {len(log.errors)} errors, {len(found)} stale reads; "
          f"probe {[(r.value, r.cache) if r else None for r in probed]} around the write of "
          f"{probe_write.value if probe_write else None}")
    for r, expected in found[:5]:
        print(f"  stale: {describe(log, r, expected)}")

    assert not log.errors, log.errors[:5]
    assert status == 200 and value_of(final) == len(log.writes)  # every acknowledged write counted, no other
    assert len({w.value for w in log.writes}) == len(log.writes)
    assert len({worker for _, worker in log.workers}) >= 2 * scenario.hosts, log.workers  # requests spread
    reads = len(log.reads)
    assert caches["HIT"] >= 0.2 * reads, f"the cache hardly hit: {caches} of {reads} reads"
    assert caches["MISS"] > 0 and not caches["BYPASS"], caches
    if scenario.stale:
        # shm stamps are one host's (docs): host B's write never reaches host A's cache, whose HIT is stale.
        assert found, "the checker found no stale read where the storage is known not to cross hosts"
        last = probed[-1]
        assert probe_write is not None and last is not None, probed
        assert last.cache == "HIT" and last.value < probe_write.value, probed
        # Within each host the promise still holds: no read older than a write acknowledged through that host.
        for host in range(scenario.hosts):
            assert not violations(log, host), f"host {host}: {violations(log, host)[:5]}"
    else:
        report = [describe(log, r, expected) for r, expected in found[:5]]
        assert not found, f"{len(found)} reads older than an acknowledged write, the first: {report}"
        last = probed[-1]
        assert probe_write is not None and last is not None, probed
        assert probed[1] is not None and probed[1].cache == "HIT", probed
        assert last.cache == "MISS" and last.value == probe_write.value == len(log.writes), probed


class SlowResultWrites:
    """A TCP proxy in front of Redis that holds back the shared result tier's writes (``SET sqlhttp:cache:entry:...``)
    by ``delay`` seconds, and nothing else: a slow network round trip, at the one moment it matters."""

    MARK = b"sqlhttp:cache:entry:"

    def __init__(self, redis_url: str, delay: float) -> None:
        url = urllib.parse.urlsplit(redis_url)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 6379)
        self.path = url.path
        self.delay = delay
        self.held = threading.Event()  # set when a result write is being held back
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}{self.path}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
                self.sockets += [client, server]
                threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if requests and b"\r\nSET\r\n" in data.upper() and self.MARK in data:
                    self.held.set()
                    time.sleep(self.delay)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.parametrize("kind", ["wsgi-gunicorn", "asgi-uvicorn"])
def test_a_read_sent_after_a_write_never_takes_an_older_reads_answer(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> None:
    """The race the load above found now and then (single flight handed a follower its leader's answer whatever the
    stamps; fixed in 8e94729), made certain: a read (the leader) has checked that no write came while it ran and is
    storing its answer in the shared tier, slowly; meanwhile a write is acknowledged, and an identical read sent
    after that must not be handed the leader's answer."""
    proxy = SlowResultWrites(redis_url, delay=0.5)
    args = ("--workers", "1", "--threads", "4") if kind == "wsgi-gunicorn" else ("--workers", "1")
    scenario = Scenario(kind, args, "pg", env=(("SQLHTTP_CACHE_STORAGE", proxy.url),
                                                ("SQLHTTP_CACHE_SHARED_RESULTS", "true"),
                                                ("SQLHTTP_CACHE_SECRET", f"x-{uuid.uuid4().hex[:8]}")))
    try:
        with (counter_table(scenario, request, tmp_path) as (database, table, target_env),
              servers(scenario, target_env, tmp_path, "") as bases):
            read_body = json.dumps(database.body(f"SELECT v FROM {table} WHERE id = 1")).encode()
            write_body = json.dumps(database.body(f"UPDATE {table} SET v = v + 1 WHERE id = 1 RETURNING v")).encode()
            log = Log()
            write(log, bases, 0, write_body)  # the engine open, nothing cached
            leader = threading.Thread(target=read, args=(log, bases, 0, read_body))
            leader.start()
            assert proxy.held.wait(10), "the leader never stored its answer"
            written = write(log, bases, 0, write_body)
            follower = read(log, bases, 0, read_body)
            leader.join(30)
    finally:
        proxy.close()
    print(f"\n{kind}: reads {[(r.value, r.cache) for r in log.reads]}, writes {[w.value for w in log.writes]}")
    assert not log.errors, log.errors
    assert written is not None and follower is not None
    found = violations(log)
    assert not found, [describe(log, r, expected) for r, expected in found]
    assert follower.value == written.value and follower.cache == "MISS"
