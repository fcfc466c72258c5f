"""Clients that misbehave, against real servers (gunicorn for WSGI, uvicorn for ASGI): one that goes away while its
statement runs, one that sends its body a byte at a time, one that stops reading a large answer. None of them may
keep a pool slot, a worker or memory for longer than its timeout.

The figures printed here (``-s``) are the ones docs/reliability.md quotes.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Database, serving

MOUNTS = ["wsgi-gunicorn", "asgi-uvicorn"]


def post_raw(url: str, body: bytes, *, send_body: bool = True) -> socket.socket:
    """Open a connection to ``url`` and send a POST to /sql (the body too, unless ``send_body`` is false)."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /sql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + (body if send_body else b""))
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split()[1]), json.loads(rest[:length])


def post(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/sql", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def active(db: Database, marker: str) -> int:
    rows = db.run("select count(*) from pg_stat_activity where state = 'active' and query like %(pattern)s "
                  "and pid <> pg_backend_pid()", pattern=f"%{marker}%")
    return int(rows[0][0])


def wait_for(condition: Any, timeout: float) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture(scope="module", params=MOUNTS)
def server(request: pytest.FixtureRequest, pg_database: Database) -> Iterator[tuple[str, str]]:
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432", "SQLHTTP_POOL_SIZE": "1",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}", "SQLHTTP_BODY_TIMEOUT": "1.5",
           "SQLHTTP_SEND_TIMEOUT": "2", "SQLHTTP_MAX_RESPONSE_BYTES": str(64 * 1024 * 1024),
           "SQLHTTP_MAX_ROWS": "1000000"}
    with serving(request.param, env) as url:
        yield request.param, url


def test_a_client_that_goes_away_stops_its_statement(server: tuple[str, str], pg_database: Database) -> None:
    kind, url = server
    marker = f"gone_{uuid.uuid4().hex[:8]}"
    sock = post_raw(url, json.dumps(pg_database.body(f"select pg_sleep(20) as {marker}")).encode())
    wait_for(lambda: active(pg_database, marker) == 1, 10)
    sock.close()
    gone = wait_for(lambda: active(pg_database, marker) == 0, 3)
    print(f"\n{kind}: the statement of a client that went away stopped {gone:.2f} s after it left")
    assert gone < 1.5
    # The slot is free: the next request of that login (the pool holds one connection) is served at once.
    started = time.monotonic()
    assert post(url, pg_database.body("select 1 as n"))[0] == 200
    assert time.monotonic() - started < 1.0


def test_a_body_that_trickles_in_gets_408_and_others_are_served(server: tuple[str, str],
                                                                 pg_database: Database) -> None:
    kind, url = server
    body = json.dumps(pg_database.body("select 1 as n")).encode()
    slow = [post_raw(url, body, send_body=False) for _ in range(12)]  # more than gunicorn's 2 x 4 threads
    started = time.monotonic()
    for index in range(3):  # a byte a half-second
        for sock in slow:
            sock.sendall(body[index:index + 1])
        time.sleep(0.5)
    if kind == "asgi-uvicorn":  # the event loop is never held by a slow body
        assert post(url, pg_database.body("select 1 as n"), timeout=5)[0] == 200
    answers = [read_reply(sock) for sock in slow]
    waited = time.monotonic() - started
    print(f"\n{kind}: {len(slow)} trickling bodies answered 408 after {waited:.2f} s (body_timeout 1.5 s)")
    assert {status for status, _ in answers} == {408}
    assert all(answer["code"] == "REQUEST_TIMEOUT" for _, answer in answers)
    assert waited < 6
    sent = time.monotonic()
    assert post(url, pg_database.body("select 1 as n"), timeout=10)[0] == 200
    assert time.monotonic() - sent < 2  # the workers are free again
    for sock in slow:
        sock.close()


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def server_pids(url: str) -> list[int]:
    port = url.rsplit(":", 1)[1]
    listening = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(f":{int(port):04X}") and line.split()[3] == "0A"}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            targets = {str(fd.readlink()) for fd in fds}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in targets for inode in listening):
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def asgi_server(pg_database: Database) -> Iterator[tuple[str, str]]:
    """send_timeout is the ASGI mount's own; a WSGI server writes the answer itself (see operations.md)."""
    env = {"SQLHTTP_TARGETS": "pg=postgresql://127.0.0.1:5432", "SQLHTTP_SEND_TIMEOUT": "1",
           "SQLHTTP_MAX_RESPONSE_BYTES": str(64 * 1024 * 1024), "SQLHTTP_MAX_ROWS": "1000000",
           "SQLHTTP_RATE_LIMIT_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}"}
    with serving("asgi-uvicorn", env) as url:
        yield "asgi-uvicorn", url


def test_a_reader_that_stalls_is_dropped_and_its_memory_freed(asgi_server: tuple[str, str],
                                                              pg_database: Database) -> None:
    kind, url = asgi_server
    (pid,) = server_pids(url)
    sql = "select i, repeat('x', 200) as filler from generate_series(1, 100000) as i"  # about 22 MB of JSON

    def stall(readers: int) -> tuple[int, int]:
        """``readers`` clients ask for the answer and never read it; RSS while they stall, and once dropped."""
        socks = []
        for _ in range(readers):
            sock = post_raw(url, json.dumps(pg_database.body(sql)).encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            socks.append(sock)
        time.sleep(1.5)  # the answers are built and stuck in send
        stalled = rss_kib(pid)
        time.sleep(1.2)  # past send_timeout (1 s): dropped
        for sock in socks:
            sock.close()
        time.sleep(0.3)
        return stalled, rss_kib(pid)

    before = rss_kib(pid)
    first_peak, first_after = stall(4)
    rounds = [stall(4) for _ in range(2)]
    print(f"\n{kind}: RSS {before // 1024} MiB before; with 4 stalled readers of ~22 MB {first_peak // 1024} MiB, "
          f"{first_after // 1024} MiB once dropped; after 2 more rounds "
          f"{', '.join(f'{peak // 1024}/{after // 1024}' for peak, after in rounds)} MiB")
    # Held while they stall: the answers (the cap is max_response_bytes each), not more; and it does not grow
    # round after round: what a dropped reader held is reused, never leaked.
    assert max(peak for peak, _ in [(first_peak, 0), *rounds]) - before < 4 * 2 * 22 * 1024
    settled = wait_for(lambda: rss_kib(pid) - first_after < 16 * 1024, 5)  # answers still being built are dropped
    assert settled < 5, (before, first_after, rounds)
    assert post(url, pg_database.body("select 1 as n"))[0] == 200
