"""The shared-memory limiter under a real multi-process server: accuracy with 4 gunicorn workers (also while
workers recycle), and workers SIGKILLed under load. Each test gets its own counter file."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlhttp_middleware.state.shm import SharedMemoryStorage, default_directory

from .support import ROOT, SQLITE_PASSWORD, SQLITE_USER, free_port, stop, wait_until_serving

WORKERS = 4
LIMIT = 600
BODY = json.dumps({"cacheId": "lite", "username": SQLITE_USER, "password": SQLITE_PASSWORD, "database": "main",
                   "provider": "sqlite", "sql": "select 1 as one"}).encode()


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, counts: Path) -> None:
        self.process, self.port, self.counts = process, port, counts

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]


@pytest.fixture
def gunicorn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    extra: list[str] = getattr(request, "param", [])
    name = f"sqlhttp-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    env = {**os.environ, "SQLHTTP_TEST_SQLITE": str(tmp_path / "lite.db"), "SQLHTTP_RATE_LIMIT": str(LIMIT),
           "SQLHTTP_RATE_LIMIT_STORAGE": f"shm://{name}", "SQLHTTP_TARGETS": ""}
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
               "--threads", "4", *extra, "tests.servers.apps:wsgi_app"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    counts = default_directory() / f"{name}.ratelimit"
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", process)
        yield Server(process, port, counts)
    finally:
        stop(process)
        counts.unlink(missing_ok=True)


def blast(port: int, total: int, threads: int = 16) -> Counter[int | str]:
    """Send ``total`` queries as fast as ``threads`` keep-alive connections allow; count the outcomes."""
    outcomes: Counter[int | str] = Counter()
    lock = threading.Lock()
    per_thread = total // threads

    def run() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_thread):
            try:
                connection.request("POST", "/sql", BODY, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                outcome: int | str = response.status
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                outcomes[outcome] += 1
        connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return outcomes


def wait_for_room_in_the_window(needed: float = 12.0, window: float = 60.0) -> None:
    """Start where the whole run fits in one window, so the count is exact rather than a sliding estimate."""
    left = window - time.time() % window
    if left < needed:
        time.sleep(left + 0.05)


@pytest.mark.parametrize("gunicorn", [[], ["--max-requests", "60", "--max-requests-jitter", "20"]],
                         ids=["steady", "recycling"], indirect=True)
def test_four_workers_admit_the_limit_exactly(gunicorn: Server) -> None:
    wait_for_room_in_the_window()
    outcomes = blast(gunicorn.port, 2000)
    print(f"\nadmitted with {WORKERS} workers, limit {LIMIT}: {dict(outcomes)}")
    tolerance = max(WORKERS, LIMIT // 1000)
    assert LIMIT - tolerance <= outcomes[200] <= LIMIT + tolerance, outcomes
    assert outcomes[200] + outcomes[429] == 2000, outcomes
    stored = SharedMemoryStorage(gunicorn.counts, pinned=["mount"]).get_sliding_window("mount", 60)
    assert stored.current == outcomes[200]


def test_sigkilled_workers_neither_stall_nor_reset_the_count(gunicorn: Server) -> None:
    wait_for_room_in_the_window(needed=20)
    killed = 0
    stop = threading.Event()

    def killer() -> None:
        nonlocal killed
        while not stop.wait(0.15):
            pids = gunicorn.worker_pids()
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                killed += 1

    murderer = threading.Thread(target=killer)
    murderer.start()
    try:
        outcomes = blast(gunicorn.port, 1600)
        for _ in range(20):  # a fast server answers 1,600 requests before five kills: keep it busy until then
            if killed >= 5:
                break
            outcomes.update(blast(gunicorn.port, 400))
    finally:
        stop.set()
        murderer.join()
    assert killed >= 5
    stored = SharedMemoryStorage(gunicorn.counts, pinned=["mount"]).get_sliding_window("mount", 60)
    # Requests a killed worker had counted may have lost their answer, so the server's count may exceed the
    # client's; it can never be lower (no reset), and nothing beyond the limit was admitted.
    assert outcomes[200] <= stored.current <= LIMIT, (outcomes, stored)
    assert stored.current >= LIMIT - WORKERS * 4, (outcomes, stored)  # the limit was reached despite the kills
    # And the server still answers once the killing stops.
    after = blast(gunicorn.port, 16, threads=4)
    assert after[429] == 16, after
