"""Sliding-window counters in Redis, shared by every host.

One Lua script does the whole check atomically on the server. The window is timed by the Redis server's clock
(``TIME``), so hosts with skewed clocks still agree. Every key gets a TTL of two windows in the same script that
creates it, so a client that dies mid-way leaves nothing behind for ever. Keys are ``{prefix}{key}}:{window}`` with
a hash tag, so both windows of a key live on the same Redis Cluster slot.

While Redis cannot be reached, calls raise :class:`StorageUnavailable` at once for ``retry_interval`` seconds (no
connection timeout paid on every request); the limiter then admits or refuses by its ``fail_open`` setting.

No flood of new keys can reset a count here: every key has its own Redis keys (its full name, not a hash), so none
takes another's place, and each lives two windows after its last write, so Redis holds no more of them than were
written in the last two windows. What could still drop a live counter is Redis itself, evicting at ``maxmemory``:
only ``maxmemory-policy noeviction`` never does, and the storage logs a warning at first use when the server says it
runs another policy. Under ``noeviction`` a full Redis refuses writes: counting raises :class:`StorageUnavailable`
(``fail_open`` decides again), while reads, and so the brakes already tripped, still work; that refusal does not
mark Redis as down.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, ClassVar

from .base import SlidingWindow, Storage, StorageUnavailable

__all__ = ["RedisStorage"]

logger = logging.getLogger("sqlhttp_middleware.state")
_GLOB = re.compile(r"[*?\[\]\\]")

# KEYS[1] key base; ARGV: expiry (seconds), limit (-1: only read), amount. Returns admitted, previous, current,
# elapsed (as a string: Lua numbers would be truncated to integers on the way back).
SCRIPT = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
local expiry = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local index = math.floor(seconds / expiry)
local elapsed = seconds - index * expiry
local current_key = KEYS[1] .. ':' .. index
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (index - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local admitted = 1
if limit >= 0 then
  if previous * (1 - elapsed / expiry) + current + amount <= limit then
    current = redis.call('INCRBY', current_key, amount)
    redis.call('PEXPIRE', current_key, math.ceil(expiry * 2000))
  else
    admitted = 0
  end
end
return {admitted, previous, current, tostring(elapsed)}
"""


class RedisStorage(Storage):
    blocks: ClassVar[bool] = True  # a network round trip, up to the socket timeout

    def __init__(self, url: str, *, prefix: str = "sqlhttp:rl:", timeout: float = 0.25,
                 retry_interval: float = 1.0) -> None:
        import redis

        self._redis = redis
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )
        self._script = self._client.register_script(SCRIPT)
        self._prefix = prefix
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._policy_checked = False

    def _run(self, key: str, expiry: float, limit: int, amount: int) -> SlidingWindow:
        if time.monotonic() < self._down_until:
            raise StorageUnavailable("Redis was unreachable a moment ago")
        try:
            admitted, previous, current, elapsed = self._script(
                keys=[f"{self._prefix}{{{key}}}"], args=[expiry, limit, amount]
            )
        except self._redis.exceptions.OutOfMemoryError:
            # Reachable, at maxmemory under noeviction: this write is refused, reads go on working.
            raise StorageUnavailable("Redis refused the write: it is at maxmemory") from None
        except self._redis.RedisError as error:
            with self._lock:
                self._down_until = time.monotonic() + self._retry_interval
            raise StorageUnavailable(type(error).__name__) from None
        if not self._policy_checked:
            self._policy_checked = True
            self.check_eviction_policy()
        return SlidingWindow(bool(admitted), int(previous), int(current), float(elapsed), expiry)

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or None where ``CONFIG`` is not allowed (many managed services)."""
        try:
            policy = self._client.config_get("maxmemory-policy").get("maxmemory-policy")
        except self._redis.RedisError:
            return None
        return policy.decode() if isinstance(policy, bytes) else policy

    def check_eviction_policy(self) -> None:
        policy = self.eviction_policy()
        if policy is not None and policy != "noeviction":
            logger.warning(
                "sqlhttp-middleware: Redis runs maxmemory-policy %s, under which it may evict live counters at "
                "maxmemory (resetting the mount's count or a tripped login brake); use noeviction for the counters",
                policy)

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: float, amount: int = 1) -> SlidingWindow:
        return self._run(key, expiry, limit, amount)

    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        return self._run(key, expiry, -1, 0)

    def clear(self, key: str) -> None:
        try:
            pattern = _GLOB.sub(r"\\\g<0>", f"{self._prefix}{{{key}}}") + ":*"  # a key's own glob characters
            for name in self._client.scan_iter(match=pattern):
                self._client.delete(name)
        except self._redis.RedisError as error:
            raise StorageUnavailable(type(error).__name__) from None

    def close(self) -> None:
        self._client.close()
