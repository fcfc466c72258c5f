"""Rate limiter benchmarks: the cost of one check (shared memory, Redis, memory), of one check of a key never seen
before (a flood of new client addresses or usernames), and the longest stall that survivors see while workers holding
the shared-memory lock are SIGKILLed.

    .venv/bin/python bench/ratelimit.py [--quick]

Prints a Markdown table; `make bench` writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import platform
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlhttp_middleware.state import MemoryStorage, NoRoom, Storage
from sqlhttp_middleware.state.redis import RedisStorage
from sqlhttp_middleware.state.shm import SharedMemoryStorage, slots_for

_new_keys = itertools.count()


def check_cost(storage: Storage, rounds: int, batch: int = 100, *, new_keys: bool = False) -> tuple[float, float]:
    """Median and p99 cost of one check, in microseconds, timed in batches to keep the clock's own cost out: of the
    mount's pinned counter, or (``new_keys``) of a client key never seen before, as a flood sends them (a key with
    no room left raises NoRoom, which the limiter answers by counting a fallback: half of that cost again)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(batch):
            if new_keys:
                with contextlib.suppress(NoRoom):
                    storage.acquire_sliding_window_entry(f"client:10.{next(_new_keys)}", 100, 60)
            else:
                storage.acquire_sliding_window_entry("mount", 10**12, 60)
        samples.append((time.perf_counter_ns() - started) / batch / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _survivor(path: str, seconds: float, results: multiprocessing.Queue[float]) -> None:
    storage = SharedMemoryStorage(path)
    worst = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        storage.acquire_sliding_window_entry("mount", 10**12, 60)
        worst = max(worst, time.perf_counter() - started)
    results.put(worst)


def _victim(path: str) -> None:
    storage = SharedMemoryStorage(path)
    while True:  # spends most of its time inside the lock: a kill often lands while it holds it
        storage.acquire_sliding_window_entry("mount", 10**12, 60)


def kill_stall(seconds: float, kills_per_second: float = 20) -> tuple[float, int]:
    """Longest single check a survivor saw, in ms, while lock-holding victims were SIGKILLed; and the kills."""
    path = str(Path(tempfile.gettempdir()) / f"sqlhttp-bench-{uuid.uuid4().hex}.ratelimit")
    SharedMemoryStorage(path).close()
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[float] = context.Queue()
    survivors = [context.Process(target=_survivor, args=(path, seconds, results)) for _ in range(2)]
    for process in survivors:
        process.start()
    kills = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        victim = context.Process(target=_victim, args=(path,))
        victim.start()
        time.sleep(1 / kills_per_second)
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        victim.join()
        kills += 1
    worst = max(results.get(timeout=60) for _ in survivors)
    for process in survivors:
        process.join()
    os.unlink(path)
    return worst * 1000, kills


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smoke run of a second or two")
    args = parser.parse_args()
    rounds = 20 if args.quick else 2000
    directory = Path(tempfile.gettempdir())
    # The table the default options size (60,000 a minute; failed logins over 300 s), and one kept full.
    sized = slots_for(600_000)
    storages: list[tuple[str, Storage]] = [
        ("shared memory (fcntl lock + mmap)",
         SharedMemoryStorage(directory / f"bench-{uuid.uuid4().hex}", slots=sized, pinned=["mount"])),
        ("memory (one process only)", MemoryStorage(pinned=["mount"])),
    ]
    try:
        redis_storage = RedisStorage("redis://127.0.0.1:6379/0", prefix=f"sqlhttp-bench-{uuid.uuid4().hex}:")
        redis_storage.get_sliding_window("probe", 60)
        storages.append(("Redis (Lua script, loopback)", redis_storage))
    except Exception as error:
        print(f"(Redis skipped: {type(error).__name__})")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| storage | median per check | p99 per check | median, a new key each | p99, a new key each |")
    print("|---|---|---|---|---|")
    for name, storage in storages:
        count = rounds if "Redis" not in name else max(5, rounds // 20)
        median, p99 = check_cost(storage, count)
        new_median, new_p99 = check_cost(storage, max(5, count // 4), new_keys=True)
        print(f"| {name} | {median:.2f} µs | {p99:.2f} µs | {new_median:.2f} µs | {new_p99:.2f} µs |")
        storage.close()
        if isinstance(storage, SharedMemoryStorage):
            storage.path.unlink()
    full = SharedMemoryStorage(directory / f"bench-{uuid.uuid4().hex}", slots=4096, pinned=["mount"])
    check_cost(full, 60, new_keys=True)  # 6,000 new keys: the table is full of live ones
    median, p99 = check_cost(full, max(5, rounds // 4), new_keys=True)
    print(f"\nA new key against a full shared-memory table (every probe live: NoRoom): median {median:.2f} µs, "
          f"p99 {p99:.2f} µs")
    full.close()
    full.path.unlink()
    worst, kills = kill_stall(1.0 if args.quick else 10.0)
    print(f"\nSIGKILL under load: {kills} lock-holding workers killed; the longest check any survivor saw: "
          f"{worst:.2f} ms")


if __name__ == "__main__":
    main()
