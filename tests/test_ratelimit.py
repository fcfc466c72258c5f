"""The rate limiter: window arithmetic on every storage, shared memory across processes (fork, SIGKILL, a foreign
file), Redis (atomic, TTLs, going away and coming back), and the endpoint's 429 and headers on every mount."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import multiprocessing
import os
import shutil
import signal
import struct
import subprocess
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from werkzeug.middleware.proxy_fix import ProxyFix

from sqlhttp_middleware import errors
from sqlhttp_middleware.auth import Authenticator
from sqlhttp_middleware.core import SQLHTTPCore
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.ratelimit import CLIENT_OVERFLOW, RateLimiter, client_address, live_keys
from sqlhttp_middleware.state import MemoryStorage, NoRoom, SlidingWindow, Storage, StorageUnavailable, make_storage
from sqlhttp_middleware.state.redis import RedisStorage
from sqlhttp_middleware.state.shm import HEADER, MAX_SLOTS, MIN_PINNED, SLOT, SharedMemoryStorage, slots_for

from .support import Client, Database, free_port, make_wsgi_client, targets_for, unavailable


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "shm"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, Clock]]:
    clock = Clock()
    storage: Storage = MemoryStorage(clock) if request.param == "memory" else SharedMemoryStorage(
        tmp_path / "counts", clock=clock
    )
    yield storage, clock
    storage.close()


# -- window arithmetic --------------------------------------------------------------------------------------------


def test_admits_up_to_the_limit_then_refuses(clocked: tuple[Storage, Clock]) -> None:
    storage, clock = clocked
    clock.now = 600.0  # the start of a 60 s window
    results = [storage.acquire_sliding_window_entry("k", 5, 60).admitted for _ in range(7)]
    assert results == [True] * 5 + [False] * 2
    assert storage.get_sliding_window("k", 60).current == 5
    assert storage.acquire_sliding_window_entry("other", 5, 60).admitted  # keys are independent


def test_previous_window_decays(clocked: tuple[Storage, Clock]) -> None:
    storage, clock = clocked
    clock.now = 600.0
    for _ in range(10):
        assert storage.acquire_sliding_window_entry("k", 10, 60).admitted
    clock.now = 660.0 + 15  # a quarter into the next window: the previous 10 weigh 7.5
    admitted = sum(storage.acquire_sliding_window_entry("k", 10, 60).admitted for _ in range(5))
    assert admitted == 2
    window = storage.get_sliding_window("k", 60)
    assert (window.previous, window.current) == (10, 2)
    clock.now = 660.0 + 60 + 60  # two windows later: nothing left
    assert storage.get_sliding_window("k", 60).estimate() == 0


def test_amounts_and_clear(clocked: tuple[Storage, Clock]) -> None:
    storage, _ = clocked
    assert storage.acquire_sliding_window_entry("k", 10, 60, amount=7).admitted
    assert not storage.acquire_sliding_window_entry("k", 10, 60, amount=4).admitted
    storage.clear("k")
    assert storage.get_sliding_window("k", 60).current == 0


@pytest.mark.parametrize(
    ("window", "limit", "expected"),
    [
        (SlidingWindow(False, 0, 10, 20.0, 60.0), 10, 46.0),  # full: 40 s to its end, then 6 s of decay
        (SlidingWindow(False, 10, 0, 0.0, 60.0), 10, 6.0),  # 10 * (1 - t / 60) + 1 <= 10
        (SlidingWindow(True, 0, 3, 1.0, 60.0), 10, 0.0),
        (SlidingWindow(False, 0, 20, 0.0, 60.0), 10, 60.0 + 60 * (1 - 9 / 20)),
    ],
)
def test_retry_after(window: SlidingWindow, limit: int, expected: float) -> None:
    assert window.retry_after(limit) == pytest.approx(expected)


def test_remaining() -> None:
    assert SlidingWindow(True, 10, 2, 30.0, 60.0).remaining(10) == 3
    assert SlidingWindow(False, 0, 12, 30.0, 60.0).remaining(10) == 0


# -- shared memory across processes ---------------------------------------------------------------------------------


def _hammer(path: str, count: int, limit: int, queue: multiprocessing.Queue[int]) -> None:
    storage = SharedMemoryStorage(path)
    queue.put(sum(storage.acquire_sliding_window_entry("shared", limit, 3600).admitted for _ in range(count)))


def test_processes_share_one_exact_count(tmp_path: Path) -> None:
    path = str(tmp_path / "counts")
    SharedMemoryStorage(path).close()
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_hammer, args=(path, 400, 1000, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    admitted = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert sum(admitted) == 1000  # 1,600 attempts, exactly the limit admitted
    assert SharedMemoryStorage(path).get_sliding_window("shared", 3600).current == 1000


def test_a_forked_child_counts_in_the_same_file(tmp_path: Path) -> None:
    storage = SharedMemoryStorage(tmp_path / "counts")
    assert storage.acquire_sliding_window_entry("k", 100, 3600).admitted
    pid = os.fork()
    if pid == 0:
        try:
            ok = all(storage.acquire_sliding_window_entry("k", 100, 3600).admitted for _ in range(9))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert storage.get_sliding_window("k", 3600).current == 10


def _hold_the_lock(path: str, ready: multiprocessing.synchronize.Event) -> None:
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    ready.set()
    time.sleep(120)


def test_a_killed_lock_holder_never_stalls_the_others(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    storage = SharedMemoryStorage(path)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_the_lock, args=(str(path), ready))
    holder.start()
    assert ready.wait(30)
    os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
    holder.join(10)
    # The kernel released the dead process's lock: this returns instead of waiting for ever.
    assert storage.acquire_sliding_window_entry("k", 10, 60).admitted


def test_a_foreign_or_truncated_file_is_reinitialised(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    path.write_bytes(b"not ours" * 3)
    storage = SharedMemoryStorage(path, slots=64)
    assert storage.acquire_sliding_window_entry("k", 10, 60).admitted
    assert path.read_bytes()[:8] == b"SQLHTRL1"
    assert path.stat().st_size == HEADER.size + SLOT.size * (MIN_PINNED + 64)
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # made private even though it existed
    storage.close()
    # A file of the previous layout (version 1) is foreign too: reinitialised, never read as ours.
    path.write_bytes(struct.pack("<8sII48x", b"SQLHTRL1", 1, 4096) + bytes(32 * 4096))
    storage = SharedMemoryStorage(path, slots=64)
    assert HEADER.unpack(path.read_bytes()[:HEADER.size])[1:] == (2, 64, MIN_PINNED)
    assert path.stat().st_size == HEADER.size + 32 * 4096  # never shrunk under a process still mapping it
    assert storage.get_sliding_window("k", 60).current == 0
    storage.close()


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "counts").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        SharedMemoryStorage(tmp_path / "counts")


def test_a_full_table_reuses_stale_slots(tmp_path: Path) -> None:
    clock = Clock(600.0)
    storage = SharedMemoryStorage(tmp_path / "counts", slots=8, clock=clock)
    for index in range(8):
        assert storage.acquire_sliding_window_entry(f"old-{index}", 5, 60).admitted
    clock.now += 180  # every slot is now stale
    for index in range(8):
        window = storage.acquire_sliding_window_entry(f"new-{index}", 5, 60)
        assert window.admitted and window.current == 1 and window.previous == 0


def test_a_full_table_refuses_a_new_key_rather_than_reset_a_live_one(tmp_path: Path) -> None:
    clock = Clock(600.0)
    storage = SharedMemoryStorage(tmp_path / "counts", slots=8, clock=clock)
    for index in range(8):
        storage.acquire_sliding_window_entry(f"live-{index}", 100, 60, amount=index + 1)
    for index in range(100):
        with pytest.raises(NoRoom):
            storage.acquire_sliding_window_entry(f"new-{index}", 100, 60)
        with pytest.raises(NoRoom):
            storage.get_sliding_window(f"new-{index}", 60)
    assert [storage.get_sliding_window(f"live-{index}", 60).current for index in range(8)] == list(range(1, 9))
    clock.now += 60  # the next window: their counts are the previous window's, still live
    with pytest.raises(NoRoom):
        storage.acquire_sliding_window_entry("new", 100, 60)
    assert storage.get_sliding_window("live-7", 60).previous == 8


def test_a_short_window_never_takes_the_live_slot_of_a_long_one(tmp_path: Path) -> None:
    """The bug of the first layout: window numbers of 60 s and of 300 s windows were compared."""
    clock = Clock(3000.0)  # the start of a 300 s window (index 10): its counts are live until 3600
    storage = SharedMemoryStorage(tmp_path / "counts", slots=8, clock=clock)
    for index in range(8):
        storage.acquire_sliding_window_entry(f"login-{index}", 1 << 40, 300, amount=10)
    clock.now = 3590.0  # 60 s windows later than 3 000 / 60 + 1: a window number of 59 against 10
    for index in range(50):
        with pytest.raises(NoRoom):
            storage.acquire_sliding_window_entry(f"client-{index}", 5, 60)
    assert all(storage.get_sliding_window(f"login-{index}", 300).previous == 10 for index in range(8))
    clock.now = 3600.0  # both of their windows are over: now they may be taken
    assert storage.acquire_sliding_window_entry("client-0", 5, 60).current == 1


def test_pinned_keys_always_find_room_and_are_never_taken(tmp_path: Path) -> None:
    clock = Clock(600.0)
    storage = SharedMemoryStorage(tmp_path / "counts", slots=8, clock=clock, pinned=["mount", "overflow:client"])
    for _ in range(5):
        storage.acquire_sliding_window_entry("mount", 1000, 60)
    for index in range(8):
        storage.acquire_sliding_window_entry(f"client-{index}", 5, 60)
    for index in range(1000):  # the shared region is full: none of these gets in, none displaces the mount
        with pytest.raises(NoRoom):
            storage.acquire_sliding_window_entry(f"flood-{index}", 5, 60)
        assert storage.acquire_sliding_window_entry("mount", 10_000, 60).admitted
    assert storage.get_sliding_window("mount", 60).current == 1005
    assert storage.acquire_sliding_window_entry("overflow:client", 5, 60).current == 1
    clock.now += 3600  # even expired, a pinned key's slot is only ever its own (or another pinned key's)
    assert storage.acquire_sliding_window_entry("flood-0", 5, 60).current == 1
    assert storage.acquire_sliding_window_entry("mount", 1000, 60).current == 1
    storage.close()


def test_the_byte_layout_is_the_documented_one(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    clock = Clock(600.5)  # 60 s window number 10: its counts are over at (10 + 2) * 60 = 720
    storage = SharedMemoryStorage(path, slots=16, clock=clock, pinned=["mount"])
    storage.acquire_sliding_window_entry("k", 10, 60, amount=3)
    storage.acquire_sliding_window_entry("mount", 10, 60)
    data = path.read_bytes()
    assert struct.unpack_from("<8sIII44x", data) == (b"SQLHTRL1", 2, 16, MIN_PINNED)
    slots = [struct.unpack_from("<QddII", data, 64 + 32 * i) for i in range(MIN_PINNED + 16)]
    used = {i: slot for i, slot in enumerate(slots) if slot[0]}
    assert len(used) == 2
    (mount_at, mount), (k_at, k) = sorted(used.items())
    assert mount_at < MIN_PINNED <= k_at  # the pinned region first, then the shared one
    blake = int.from_bytes(hashlib.blake2b(b"k", digest_size=8).digest(), "little")
    assert k == (blake, 720.0, 60.0, 0, 3) and k_at == MIN_PINNED + blake % 16
    assert mount[1:] == (720.0, 60.0, 0, 1)


def test_an_existing_table_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    first = SharedMemoryStorage(path, slots=64)
    first.acquire_sliding_window_entry("k", 10, 60)
    second = SharedMemoryStorage(path, slots=8192)  # another configuration: it joins the table, never remakes it
    assert second.slots == 64 and second.get_sliding_window("k", 60).current == 1
    first.close()
    second.close()


def test_a_key_counted_in_windows_of_another_length_starts_afresh(clocked: tuple[Storage, Clock]) -> None:
    storage, _ = clocked
    storage.acquire_sliding_window_entry("k", 10, 60, amount=7)
    assert storage.get_sliding_window("k", 300).current == 0  # the configuration changed its window
    assert storage.get_sliding_window("k", 60).current == 7


def test_pinned_keys_past_a_small_pinned_region_are_kept_in_the_shared_one(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    SharedMemoryStorage(path, slots=256).close()  # made for few pinned keys: 64 pinned slots
    pinned = [f"target:{n}" for n in range(80)]
    storage = SharedMemoryStorage(path, pinned=pinned)
    for n, key in enumerate(pinned):
        storage.acquire_sliding_window_entry(key, 1000, 60, amount=n + 1)
    again = SharedMemoryStorage(path, pinned=pinned)  # another process finds each where it went
    assert [again.get_sliding_window(key, 60).current for key in pinned] == list(range(1, 81))
    storage.close()
    again.close()


def test_a_pinned_key_without_room_is_the_storage_failing(tmp_path: Path) -> None:
    """Only a file made by another configuration (a smaller pinned region, a full table) can leave a pinned key
    without room: the limiter then treats the storage as unavailable, and ``rate_limit_fail_open`` decides."""
    path = tmp_path / "counts"
    SharedMemoryStorage(path, slots=8).close()  # 64 pinned slots
    others = [f"pinned-{n}" for n in range(64)]
    storage = SharedMemoryStorage(path, pinned=[*others, "mount", CLIENT_OVERFLOW])
    assert storage.pinned_slots == MIN_PINNED
    for key in others:  # they fill the pinned region
        storage.acquire_sliding_window_entry(key, 10, 60)
    for n in range(8):  # and these the shared one
        storage.acquire_sliding_window_entry(f"client:{n}", 10, 60)
    assert all(storage.get_sliding_window(key, 60).current == 1 for key in others)
    limiter = RateLimiter(limit=100, window=60, per_client=5, storage="memory", fail_open=False, namespace="t")
    limiter.storage = storage
    with pytest.raises(errors.RateLimiterUnavailable):
        limiter.admit_request("10.0.0.1")
    no_mount = RateLimiter(limit=0, window=60, per_client=5, storage="memory", fail_open=False, namespace="t")
    no_mount.storage = storage
    with pytest.raises(errors.RateLimiterUnavailable):  # the client's fallback has no room either
        no_mount.admit_request("10.0.0.1")
    with pytest.raises(RuntimeError):
        limiter.share(pinned=["late"])  # the storage is open: its size is fixed
    storage.close()


def test_a_table_larger_than_the_free_space_is_made_smaller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A write to a page a full tmpfs cannot back is SIGBUS. The free space is faked (this machine has plenty)."""
    real = os.fstatvfs

    def small(fd: int) -> os.statvfs_result:
        stats = real(fd)
        return os.statvfs_result((stats.f_bsize, 4096, stats.f_blocks, 1024, 1024, *tuple(stats)[5:]))

    monkeypatch.setattr(os, "fstatvfs", small)
    with caplog.at_level("WARNING", logger="sqlhttp_middleware.state"):
        storage = SharedMemoryStorage(tmp_path / "counts", slots=1 << 20)  # 32 MiB, with 4 MiB free
    assert storage.slots == ((2 << 20) - HEADER.size) // SLOT.size - MIN_PINNED  # half the free space
    assert "would not fit in half the free space" in caplog.text
    assert storage.acquire_sliding_window_entry("k", 10, 60).admitted
    storage.close()


def test_sizing_follows_the_options(tmp_path: Path) -> None:
    assert live_keys(60_000, 60, [300]) == 600_000  # failed logins over two 300 s windows: ten minutes' requests
    assert live_keys(60_000, 60, [60, 300]) == 720_000  # and the clients of two minutes
    assert live_keys(6_000, 600, [300]) == 12_000  # ten minutes touch at most two 600 s windows
    assert live_keys(6_000, 600, []) == 0
    assert live_keys(0, 60, [300]) is None  # no mount limit: no bound
    assert slots_for(600_000) == 1_200_000 and slots_for(10) == 1024 and slots_for(None) == MAX_SLOTS
    assert slots_for(10**9) == MAX_SLOTS
    name = f"sqlhttp-test-{uuid.uuid4().hex[:12]}"
    target = Target(f"sqlite:///{tmp_path / 'lite.db'}", users={"u": "p"})
    for slots, expected in ((0, 2 * (2 * 1000 + 2 * 1000)), (5000, 5000)):
        core = SQLHTTPCore(targets={"a": target, "b": target}, rate_limit=1000, rate_limit_per_client=5,
                           login_window=60, rate_limit_storage=f"shm://{name}-{slots}", rate_limit_slots=slots)
        storage = core.limiter.shared_storage()
        try:
            assert isinstance(storage, SharedMemoryStorage)
            assert storage.slots == expected
            assert set(storage._pinned) == {"mount", "overflow:client", "target:a", "target:b",
                                            "overflow:login:a", "overflow:login:b"}
        finally:
            core.close()
            storage.path.unlink()


def test_a_client_with_no_room_is_limited_with_the_others_never_let_through() -> None:
    limiter = RateLimiter(limit=0, window=60, per_client=3, storage="memory", fail_open=True, namespace="t")
    limiter.storage = MemoryStorage(max_keys=2, pinned=[CLIENT_OVERFLOW])
    assert all(limiter.admit_request(f"10.0.0.{n}").checked for n in (1, 2))  # the two that fit
    outcomes = []
    for n in range(3, 10):  # no room: one client's budget, shared
        try:
            limiter.admit_request(f"10.0.0.{n}")
            outcomes.append(200)
        except errors.RateLimited:
            outcomes.append(429)
    assert outcomes == [200, 200, 200, 429, 429, 429, 429]
    assert limiter.storage.get_sliding_window(CLIENT_OVERFLOW, 60).current == 3


def test_memory_storage_holds_a_bounded_number_of_keys() -> None:
    clock = Clock(600.0)
    storage = MemoryStorage(clock, max_keys=4, pinned=["mount"])
    storage.acquire_sliding_window_entry("login", 10, 300)  # a 300 s window: live until (2 + 2) * 300 = 1200
    for index in range(3):
        storage.acquire_sliding_window_entry(f"k{index}", 10, 60)  # live until (10 + 2) * 60 = 720
    with pytest.raises(NoRoom):
        storage.acquire_sliding_window_entry("k3", 10, 60)
    with pytest.raises(NoRoom):
        storage.get_sliding_window("k3", 60)
    assert storage.acquire_sliding_window_entry("mount", 10, 60).admitted  # pinned: on top of the four
    clock.now = 720.0  # the 60 s keys have expired and make room; the 300 s one has not
    assert [storage.acquire_sliding_window_entry(f"k{index}", 10, 60).current for index in (3, 4, 5)] == [1, 1, 1]
    with pytest.raises(NoRoom):
        storage.acquire_sliding_window_entry("k6", 10, 60)
    assert storage.get_sliding_window("login", 300).current == 1
    assert storage.acquire_sliding_window_entry("mount", 10, 60).current == 1  # full, and a pinned key still counts
    assert len(storage) == 5


@pytest.mark.parametrize("kind", ["memory", "shm"])
def test_process_memory_is_bounded_whatever_the_keys(kind: str, tmp_path: Path) -> None:
    """About 240 bytes of process memory per key ever seen, in the first layout: now none past a bounded cache."""
    storage: Storage = (MemoryStorage(max_keys=2000) if kind == "memory"
                        else SharedMemoryStorage(tmp_path / "counts", slots=1 << 16))
    tracemalloc.start()
    try:
        def flood(first: int, count: int) -> None:
            for index in range(first, first + count):
                with contextlib.suppress(NoRoom):
                    storage.acquire_sliding_window_entry(f"client:10.{index}", 5, 60)
                with contextlib.suppress(NoRoom):
                    storage.get_sliding_window(f"login:t\0{index}\0user-{index}", 300)

        flood(0, 2000)  # fills the memory storage, and the cache of key hashes
        before = tracemalloc.get_traced_memory()[0]
        flood(2000, 10_000)  # 20,000 new keys: 4.8 MB in the first layout
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        storage.close()
    assert grown < 64 * 1024, grown


# -- Redis --------------------------------------------------------------------------------------------------------


def test_redis_window_and_ttls(redis_url: str) -> None:
    storage = RedisStorage(redis_url, prefix=f"sqlhttp-test-{uuid.uuid4().hex}:")
    results = [storage.acquire_sliding_window_entry("k", 3, 60).admitted for _ in range(5)]
    assert results == [True, True, True, False, False]
    window = storage.get_sliding_window("k", 60)
    assert window.current == 3 and 0 <= window.elapsed < 60
    keys = list(storage._client.scan_iter(match=f"{storage._prefix}*"))
    assert keys and all(0 < storage._client.pttl(key) <= 120_000 for key in keys)  # nothing lives for ever
    storage.clear("k")
    assert storage.get_sliding_window("k", 60).current == 0
    storage.close()


def _private_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        unavailable("redis-server (the binary)", FileNotFoundError("redis-server"))
    process = subprocess.Popen([str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = redis.Redis(port=port, socket_timeout=0.2)
        try:
            if probe.ping():
                return process
        except redis.RedisError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise RuntimeError("private redis-server did not start")


def test_redis_going_away_and_coming_back(redis_url: str, make_client: Callable[..., Client],
                                         sqlite_database: Database) -> None:
    port = free_port()
    process = _private_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    open_client = make_client(targets=targets_for(sqlite_database), rate_limit=100, rate_limit_storage=url)
    # The second middleware on the WSGI mount: Django's settings allow one client at a time.
    closed_client = make_wsgi_client({"targets": targets_for(sqlite_database), "rate_limit": 100,
                                      "rate_limit_storage": url, "rate_limit_fail_open": False,
                                      "rate_limit_namespace": "closed"})
    try:
        for client in (open_client, closed_client):
            reply = client.query(sqlite_database, "select 1 as one")
            assert reply.status == 200 and "ratelimit" in reply.headers
        process.kill()
        process.wait()
        reply = open_client.query(sqlite_database, "select 1 as one")
        assert reply.status == 200 and "ratelimit" not in reply.headers  # admitted, uncounted
        reply = closed_client.query(sqlite_database, "select 1 as one")
        assert reply.status == 503 and reply.json()["code"] == "RATE_LIMITER_UNAVAILABLE"
        assert reply.headers["retry-after"] == "1"
        process = _private_redis(port)
        time.sleep(1.1)  # the storage retries Redis one second after a failure
        for client in (open_client, closed_client):
            reply = client.query(sqlite_database, "select 1 as one")
            assert reply.status == 200 and "ratelimit" in reply.headers
    finally:
        closed_client.middleware.close()
        process.kill()
        process.wait()


def test_redis_at_maxmemory_drops_no_counter(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Under ``maxmemory-policy noeviction`` a full Redis refuses writes and drops nothing: a flood of new keys
    leaves the mount's count and a tripped brake as they were; counting raises StorageUnavailable (fail_open
    decides), reads go on, and Redis is not marked down for it. Another policy is warned about."""
    port = free_port()
    process = _private_redis(port, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
    url = f"redis://127.0.0.1:{port}/0"
    day = 86_400.0
    storage = RedisStorage(url, prefix="t:", retry_interval=30)
    admin = redis.Redis(port=port)
    try:
        with caplog.at_level("WARNING", logger="sqlhttp_middleware.state"):
            storage.acquire_sliding_window_entry("mount", 1000, day)
        assert "maxmemory-policy allkeys-lru" in caplog.text  # it could evict the mount's count
        admin.config_set("maxmemory-policy", "noeviction")
        assert storage.eviction_policy() == "noeviction"
        for _ in range(4):
            storage.acquire_sliding_window_entry("mount", 1000, day)
        brake = Authenticator(hook=None, attempts=3, window=day, storage=lambda: storage, targets=["t"])
        for _ in range(3):
            brake.record_failure("203.0.113.1", "t", "victim")

        def fill() -> None:
            """Up to maxmemory (memory a refused client gave back may let a few writes in again)."""
            with contextlib.suppress(redis.exceptions.OutOfMemoryError):
                for _ in range(100_000):
                    admin.set(f"fill-{uuid.uuid4().hex}", "x" * 200)

        fill()
        refused = 0
        for n in range(2000):  # the flood
            try:
                storage.acquire_sliding_window_entry(f"client:10.0.{n}", 5, day)
            except StorageUnavailable:
                refused += 1
        assert refused > 1000  # refused, not made room for by evicting
        mount = storage.get_sliding_window("mount", day)
        assert mount.previous + mount.current == 5
        with pytest.raises(errors.LoginThrottled):
            brake.check_throttle("203.0.113.1", "t", "victim")
        # Refused writes answer by rate_limit_fail_open, and the next read is not skipped as if Redis were down.
        admin.config_set("maxmemory", 1)  # every write refused, not only most
        closed = RateLimiter(limit=1000, window=day, per_client=0, storage=url, fail_open=False, namespace="x")
        closed.storage = storage
        with pytest.raises(errors.RateLimiterUnavailable):
            closed.admit_request("10.1.1.1")
        opened = RateLimiter(limit=1000, window=day, per_client=0, storage=url, fail_open=True, namespace="x")
        opened.storage = storage
        assert opened.admit_request("10.1.1.1").checked == []  # admitted, uncounted
        mount = storage.get_sliding_window("mount", day)
        assert mount.previous + mount.current == 5
    finally:
        storage.close()
        admin.close()
        process.kill()
        process.wait()


def test_unavailable_storage_raises_at_once(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retry_interval=30)
    with pytest.raises(StorageUnavailable):
        storage.acquire_sliding_window_entry("k", 1, 60)
    attempts = 0
    original = storage._script

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal attempts
        attempts += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(storage, "_script", counting)
    for _ in range(5):
        with pytest.raises(StorageUnavailable):
            storage.acquire_sliding_window_entry("k", 1, 60)
    assert attempts == 0  # marked down: no connection attempt, so no timeout paid, until retry_interval passes


# -- the endpoint -------------------------------------------------------------------------------------------------


def test_headers_on_every_admitted_answer(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), rate_limit=50, rate_limit_storage="memory")
    reply = client.query(sqlite_database, "select 1 as one")
    assert reply.headers["ratelimit-policy"] == '"mount";q=50;w=60'
    assert reply.headers["ratelimit"].startswith('"mount";r=49;t=')
    error = client.query(sqlite_database, "select * from nowhere")
    assert error.status == 400 and error.headers["ratelimit"].startswith('"mount";r=48;')


def test_over_the_limit_is_429(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), rate_limit=3, rate_limit_storage="memory")
    statuses = [client.query(sqlite_database, "select 1").status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    reply = client.query(sqlite_database, "select 1")
    body = reply.json()
    assert (body["statusCode"], body["code"], body["error"]) == (429, "RATE_LIMITED", "Too Many Requests")
    assert "3 requests per 60 s" in body["message"]
    assert 1 <= int(reply.headers["retry-after"]) <= 120  # at most the rest of this window and the next
    assert reply.headers["ratelimit"].startswith('"mount";r=0;')
    bad_json = client.post(b"{oops")  # refused before the body is even parsed
    assert bad_json.status == 429


def test_per_target_limits(make_client: Callable[..., Client], sqlite_database: Database, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    targets = targets_for(sqlite_database)
    targets["tight"] = Target(f"sqlite:///{other}", users={"lite": "lite-secret"}, rate_limit=2)
    client = make_client(targets=targets, rate_limit=1000, rate_limit_storage="memory")
    body = sqlite_database.body("select 1 as one")
    tight = dict(body, cacheId="tight")
    assert [client.post(tight).status for _ in range(3)] == [200, 200, 429]
    assert client.post(tight).headers["ratelimit-policy"] == '"mount";q=1000;w=60, "target";q=2;w=60'
    assert client.post(body).status == 200  # the other target is not limited by it


def test_per_client_limits_and_trusted_proxies(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), rate_limit_per_client=2, trusted_proxies=1,
                         rate_limit_storage="memory")
    body = sqlite_database.body("select 1 as one")

    def from_client(address: str) -> int:
        return client.post(body, headers={"X-Forwarded-For": f"203.0.113.9, {address}"}).status

    assert [from_client("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert from_client("198.51.100.2") == 200


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
@pytest.mark.parametrize("entries", ["fewer", "equal", "more"])
def test_client_address_as_proxy_fix_finds_it(hops: int, entries: str) -> None:
    """werkzeug's ProxyFix(x_for=hops): the hops-th entry from the right when there are at least that many, else
    the peer's address, never an entry the client wrote on the left."""
    count = {"fewer": hops - 1, "equal": hops, "more": hops + 2}[entries]
    forwarded = [f"198.51.100.{n}" for n in range(1, count + 1)]  # the leftmost, 198.51.100.1, is the client's
    headers = {"x-forwarded-for": ", ".join(forwarded)} if forwarded else {}
    expected = forwarded[-hops] if hops and count >= hops else "192.0.2.7"
    assert client_address("192.0.2.7", headers, hops) == expected
    environ = {"REMOTE_ADDR": "192.0.2.7", "wsgi.url_scheme": "http", "HTTP_HOST": "x"}
    if forwarded:
        environ["HTTP_X_FORWARDED_FOR"] = headers["x-forwarded-for"]
    seen: dict[str, str] = {}

    def app(environ: dict[str, str], start_response: Callable[..., object]) -> list[bytes]:
        seen["addr"] = environ["REMOTE_ADDR"]
        return []

    ProxyFix(app, x_for=hops, x_proto=0, x_host=0)(environ, lambda *args: None)
    assert seen["addr"] == expected  # the same answer as werkzeug's own


def test_client_address_edges() -> None:
    assert client_address(None, {}, 1) == "unknown"
    assert client_address("192.0.2.7", {"x-forwarded-for": " , "}, 1) == "192.0.2.7"  # no entries at all
    # A client cannot choose its identity by sending the header through fewer proxies than are trusted.
    assert client_address("192.0.2.7", {"x-forwarded-for": "203.0.113.66"}, 2) == "192.0.2.7"


def test_rate_limit_off(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), rate_limit=0)
    reply = client.query(sqlite_database, "select 1 as one")
    assert reply.status == 200 and "ratelimit" not in reply.headers


def test_a_read_takes_no_slot(tmp_path: Path) -> None:
    """The login brake reads a count for every request, mostly of keys never written: those reads must not fill
    the table and make real counters share slots."""
    storage = SharedMemoryStorage(tmp_path / "counts", slots=8)
    for index in range(100):
        assert storage.get_sliding_window(f"never-written-{index}", 60).current == 0
    for index in range(8):
        storage.acquire_sliding_window_entry(f"real-{index}", 100, 60, amount=index + 1)
    assert [storage.get_sliding_window(f"real-{index}", 60).current for index in range(8)] == list(range(1, 9))
    storage.close()


@pytest.mark.parametrize(("spec", "blocks"), [
    ("memory", False), ("shm://sqlhttp-test-blocks-{unique}", False),
    ("redis://127.0.0.1:6379/0", True), ("rediss://127.0.0.1:6380/0", True), ("unix:///tmp/no-such-redis.sock", True),
])
def test_blocks_says_which_storages_wait_on_the_network(spec: str, blocks: bool) -> None:
    spec = spec.format(unique=uuid.uuid4().hex[:12])
    limiter = RateLimiter(limit=10, window=60, per_client=0, storage=spec, fail_open=True, namespace="blocks")
    assert limiter.blocks is blocks
    assert limiter.storage is None  # known from the spec alone: nothing opened, nothing connected
    storage = make_storage(spec, "blocks")  # redis-py connects lazily, so even a URL with no server opens
    try:
        assert storage.blocks is blocks  # the spec and the storage it opens agree
    finally:
        storage.close()
        if isinstance(storage, SharedMemoryStorage):
            storage.path.unlink()
