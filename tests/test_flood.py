"""A flood of new keys cannot switch the rate limit or the login brake off (issue 11), on shared memory and on Redis.

50,000 requests, each with a username and a client address of its own, against a mount with a limit, whose mount
counter is live and some of whose login brakes were tripped beforehand. Afterwards: the mount admitted exactly what
was left of its limit and its counter holds every request it admitted (no flood reset it), every tripped brake still
holds, and the process's own memory did not grow with the keys. The shared-memory table runs twice: sized from the
options (every key finds room), and at 4,096 slots, the first layout's size, far too small for the keys (so every key
past its room is counted under a fallback, and the pinned counters sit beside a full table).

How the requests are driven: through the core (``SQLHTTPCore.handle``, which every mount calls; the mounts only
translate to and from it, and have tests of their own), from ``make_core_client``. The target is SQLite with
server-held users in plain text, all 50,000 of the flood's usernames among them, and the flood sends wrong
passwords: each request goes through the whole admission (mount and client limits, the brake, the login check, the
failure count). A username the target does not know would cost the dummy PBKDF2 hash that hides which names exist
(about 0.3 s each, hours for the flood); a known one with a plain-text password fails at once, through the same
steps. Client addresses come from X-Forwarded-For behind one trusted proxy.

Memory: ``RssAnon`` (the process's private memory) is what a per-key cache would grow, and must stay within 4 MiB
(the first layout's caches took about 240 bytes per key: 24 MB for this flood). The table's own pages are the
file's (``RssShmem``), shared by every worker and never more than its size.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sqlhttp_middleware import errors
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.state.shm import SharedMemoryStorage, default_directory

from .support import Client, Database, make_core_client

FLOOD = 50_000
LIMIT = 30_000  # per window, for the whole mount
PER_CLIENT = 100
ATTEMPTS = 3
WINDOW = 86_400.0  # one day, for the limit and the brake: the test waits rather than straddle its end
VICTIMS = [(f"victim-{n}", f"203.0.113.{n}") for n in range(1, 21)]
RSS_GROWTH = 4 << 20


def rss() -> dict[str, int]:
    """This process's resident memory, in bytes, by kind (``/proc/self/status``)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def wait_for_room_in_the_window(needed: float = 120.0) -> None:
    """Start where the whole run fits in one window, so the counts are exact rather than a sliding estimate."""
    left = WINDOW - time.time() % WINDOW
    if left < needed:
        time.sleep(left + 0.05)


def flood_address(n: int) -> str:
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


@pytest.fixture(params=["shm-sized", "shm-4096", "redis"])
def storage_options(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    name = f"sqlhttp-test-flood-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        yield {"rate_limit_storage": url, "rate_limit_namespace": name}
        connection = redis.Redis.from_url(url)
        names = list(connection.scan_iter(match=f"sqlhttp:{name}:*", count=10_000))
        for start in range(0, len(names), 10_000):
            connection.unlink(*names[start:start + 10_000])
        connection.close()
        return
    slots = 4096 if request.param == "shm-4096" else 0
    yield {"rate_limit_storage": f"shm://{name}", "rate_limit_slots": slots}
    (default_directory() / f"{name}.ratelimit").unlink(missing_ok=True)


def outcome(reply: Any) -> str:
    if reply.status == 429:
        body = reply.json()
        if body["code"] == "RATE_LIMITED":
            return "mount" if "(mount)" in body["message"] else "client"
        return body["code"]
    return str(reply.status)


def test_a_flood_of_new_keys_resets_no_limit_and_no_brake(storage_options: dict[str, Any], sqlite_database: Database,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    users = {f"user-{n}": "right" for n in range(FLOOD)}
    users.update({name: "right" for name, _ in VICTIMS})
    path = str(sqlite_database.admin_url).removeprefix("sqlite:///")
    client: Client = make_core_client({
        "targets": {"lite": Target(f"sqlite:///{path}", users=users)}, "rate_limit": LIMIT,
        "rate_limit_window": WINDOW, "rate_limit_per_client": PER_CLIENT, "login_attempts": ATTEMPTS,
        "login_window": WINDOW, "trusted_proxies": 1, **storage_options,
    })
    core = client.core
    reached = 0
    run = core.executor.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reached
        reached += 1
        return run(*args, **kwargs)

    monkeypatch.setattr(core.executor, "run", counting)

    def login(username: str, address: str, password: str = "wrong") -> Any:
        return client.post({**sqlite_database.body("select 1 as one"), "cacheId": "lite", "username": username,
                            "password": password}, headers={"X-Forwarded-For": address})

    try:
        wait_for_room_in_the_window()
        # The brakes, tripped; and the mount's counter, live.
        for username, address in VICTIMS:
            assert [login(username, address).status for _ in range(ATTEMPTS)] == [401] * ATTEMPTS
            assert outcome(login(username, address, "right")) == "LOGIN_THROTTLED"
        assert login("user-0", flood_address(0), "right").status == 200
        storage = core.limiter.shared_storage()
        mount_before = storage.get_sliding_window("mount", WINDOW).current
        assert mount_before == len(VICTIMS) * (ATTEMPTS + 1) + 1

        before = rss()
        started = time.monotonic()
        outcomes: Counter[str] = Counter(outcome(login(f"user-{n}", flood_address(n))) for n in range(FLOOD))
        took = time.monotonic() - started
        after = rss()

        passed_mount = FLOOD - outcomes["mount"]
        mount = storage.get_sliding_window("mount", WINDOW)
        overflow = storage.get_sliding_window("overflow:client", WINDOW).current
        print(f"\n{storage_options}: {dict(outcomes)} in {took:.1f} s; mount {mount_before} -> {mount.current} of "
              f"{LIMIT}; clients counted together for want of room: {overflow}; "
              f"RSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB "
              f"(private {before['RssAnon'] >> 20} -> {after['RssAnon'] >> 20}, "
              f"shared {before['RssShmem'] >> 20} -> {after['RssShmem'] >> 20})")

        # The limit admitted no more than it should, and its counter holds every request it admitted.
        assert passed_mount == LIMIT - mount_before
        assert (mount.previous, mount.current) == (0, LIMIT)
        assert reached == 1  # the one right password above: no wrong one reached the database
        assert outcomes["401"] + outcomes["client"] + outcomes["LOGIN_THROTTLED"] == passed_mount
        # Every tripped brake still holds.
        for username, address in VICTIMS:
            with pytest.raises(errors.LoginThrottled):
                core.auth.check_throttle(address, "lite", username)
        # A client with no room for its own key was limited with the others, never let through.
        assert overflow <= PER_CLIENT
        if storage_options.get("rate_limit_slots") == 4096:
            assert overflow == PER_CLIENT and outcomes["client"] > 0  # the small table was full
        else:
            assert overflow == 0 and outcomes["client"] == 0  # every key found room
        # Memory: nothing per key in the process; the table's pages at most the file.
        assert after["RssAnon"] - before["RssAnon"] < RSS_GROWTH, (before, after)
        if isinstance(storage, SharedMemoryStorage):
            assert after["RssShmem"] - before["RssShmem"] <= storage.path.stat().st_size
        else:
            connection = redis.Redis.from_url(storage_options["rate_limit_storage"])
            names = list(connection.scan_iter(match=f"sqlhttp:{storage_options['rate_limit_namespace']}:*",
                                              count=10_000))
            # A client key and a failure key at most per request the mount admitted, and the mount's: each with a TTL
            # of two windows, so nothing lives for ever.
            assert len(names) <= 2 * LIMIT + 1
            sample = names[:: max(1, len(names) // 200)]
            assert all(0 < connection.pttl(name) <= 2 * WINDOW * 1000 for name in sample)
            connection.close()
    finally:
        client.close()

