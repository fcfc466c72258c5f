"""Health: liveness and per-target readiness on every mount, a target that cannot be reached (503, and no URL, host
or password in the answer), and probes that stay cheap: a flood of them makes one TCP connect per target per
interval, on the sync and the async path, and a slow connect never blocks the event loop.

The probe connections are counted on listening sockets of the test's own: what reaches a database's port is all
that readiness does to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlhttp_middleware.core import Request, SQLHTTPCore
from sqlhttp_middleware.health import Readiness
from sqlhttp_middleware.options import Target, resolve_targets

from .support import Client, Database, free_port, targets_for

PG_URL = "postgresql://127.0.0.1:5432"
READY = Request("GET", "/healthz/ready", {}, b"", "127.0.0.1")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts TCP connections and never answers: stands for a database whose connects we count."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        yield sock


def accepted(sock: socket.socket) -> int:
    """How many connections wait in ``sock``'s queue (accepting and closing them)."""
    count = 0
    while True:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@pytest.fixture
def make_core(make_core: Callable[..., SQLHTTPCore]) -> Callable[..., SQLHTTPCore]:
    """Cores that serve health at /healthz."""
    return lambda **options: make_core(**{"health_path": "/healthz", **options})


# -- every mount ---------------------------------------------------------------------------------------------------


def test_liveness_and_readiness_on_every_mount(make_client: Callable[..., Client], pg_database: Database,
                                               sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(pg_database, sqlite_database), health_path="/healthz")
    assert client.query(sqlite_database, "select 1 as one").status == 200  # SQLite makes its file
    live = client.request("GET", "/healthz")
    assert (live.status, live.json()) == (200, {"status": "ok"})
    assert live.headers["content-type"] == "application/json" and live.headers["cache-control"] == "no-store"
    ready = client.request("GET", "/healthz/ready")
    assert (ready.status, ready.json()) == (200, {"status": "ready", "targets": {"pg": "ready", "lite": "ready"}})
    assert client.request("HEAD", "/healthz").status == 200
    refused = client.request("POST", "/healthz", b"{}", {"Content-Type": "application/json"})
    assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD"
    assert client.request("GET", "/healthz/other").body.startswith(b"host app: GET")  # not ours
    assert client.request("GET", "/metrics").body.startswith(b"host app: GET")  # metrics are off


# -- readiness ----------------------------------------------------------------------------------------------------


def test_a_target_that_cannot_be_reached_is_unready(make_core: Callable[..., SQLHTTPCore], tmp_path: Any) -> None:
    port = free_port()  # nothing listens there
    core = make_core(targets={
        "pg": PG_URL,
        "down": Target(f"postgresql://app_login:s3cret-word@127.0.0.1:{port}/db", users={"u": "p"}),
        "gone": Target(f"sqlite:///{tmp_path / 'missing.db'}", users={"u": "p"}),
    })
    response = core.handle(READY)
    assert response.status == 503
    assert json.loads(response.body) == {"status": "unready",
                                         "targets": {"pg": "ready", "down": "unreachable", "gone": "unreachable"}}
    for secret in (b"127.0.0.1", str(port).encode(), b"s3cret", b"app_login", b"missing.db", b"postgresql"):
        assert secret not in response.body
    live = core.handle(Request("GET", "/healthz", {}, b""))
    assert (live.status, live.body) == (200, b'{"status":"ok"}')  # liveness does no I/O: a database is no cause


def test_a_flood_of_probes_makes_one_connect_per_target(make_core: Callable[..., SQLHTTPCore],
                                                        listener: socket.socket) -> None:
    core = make_core(targets={"counted": f"postgresql://127.0.0.1:{port_of(listener)}"})
    assert core.check_head("GET", {}, "/healthz/ready") is None  # nothing known yet: the body is read, then probed
    start = threading.Barrier(200)
    statuses: list[int] = []

    def probe() -> None:
        start.wait()
        statuses.append(core.handle(READY, head_checked=True).status)

    threads = [threading.Thread(target=probe) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 200
    assert accepted(listener) == 1
    cached = core.check_head("GET", {}, "/healthz/ready")  # fresh: answered before any body is read
    assert cached is not None and cached.status == 200
    assert [core.handle(READY).status for _ in range(50)] == [200] * 50
    assert accepted(listener) == 0


def test_a_flood_of_probes_on_the_event_loop_makes_one_connect_per_target(
        make_core: Callable[..., SQLHTTPCore], listener: socket.socket) -> None:
    core = make_core(targets={"counted": f"postgresql://127.0.0.1:{port_of(listener)}",
                              "pg": PG_URL})

    def offload(call: Callable[[], Any]) -> Any:
        raise AssertionError("readiness needs no thread")

    async def flood() -> list[int]:
        responses = await asyncio.gather(*(core.handle_async(READY, offload) for _ in range(200)))
        return [response.status for response in responses]

    assert asyncio.run(flood()) == [200] * 200
    assert accepted(listener) == 1
    assert asyncio.run(flood()) == [200] * 200  # another loop, within the interval: the results are reused
    assert accepted(listener) == 0


def test_results_are_reused_for_the_interval_then_probed_again(listener: socket.socket) -> None:
    readiness = Readiness(resolve_targets({"counted": f"postgresql://127.0.0.1:{port_of(listener)}"}), ttl=0.2)
    assert readiness.cached() is None
    assert [readiness.check().status for _ in range(5)] == [200] * 5
    assert readiness.cached() is not None
    assert accepted(listener) == 1
    time.sleep(0.25)
    assert readiness.cached() is None
    assert readiness.check().status == 200
    assert accepted(listener) == 1


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: a connect there hangs until its timeout (the SYN is dropped)."""
    with socket.socket() as sock, contextlib.ExitStack() as stack:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(sock.getsockname())
        time.sleep(0.05)
        yield port_of(sock)


def test_a_slow_connect_is_bounded_and_never_blocks_the_event_loop() -> None:
    with unanswered_port() as port:
        targets = resolve_targets({"slow": f"postgresql://127.0.0.1:{port}"})
        started = time.monotonic()
        assert Readiness(targets, timeout=0.3).check().status == 503
        assert 0.25 < time.monotonic() - started < 2

        async def probe_while_ticking() -> tuple[int, int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            response = await Readiness(targets, timeout=0.3).check_async()
            ticker.cancel()
            return response.status, ticks

        status, ticks = asyncio.run(probe_while_ticking())
    assert status == 503
    assert ticks >= 10  # the loop ran on through the 0.3 s connect
