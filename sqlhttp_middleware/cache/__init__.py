"""The result cache: answers to reads, never older than a write that went through the middleware.

Off unless a target turns it on (``Target(cache=True)``, or a TTL in seconds). For a request on such a target:

* **What is cached**: one statement on its own (no batch, no session), that :func:`.analysis.analyse` finds
  cacheable. The entry is the protocol's encoded answer, keyed by a keyed digest of the protocol, the path, the
  body (SQL, parameters, login, shape) and the headers that carry the login or shape the answer: one login's rows
  never answer another, and a wrong password never hits.
* **Never older than a write**: every statement that may write (on any target of the same database server)
  changes its database's stamp (:mod:`.stamps`) after it ran and before its answer goes out; sessions change it
  when they commit, and a write whose outcome is unknown (a lost connection) changes it too. A read notes the stamp
  **before** it runs, stores its answer under that stamp only if it is still current when the answer is done, and an
  entry answers only while its stamp is current. Stamps live where every worker sees them: shared memory on one
  host (``cache_storage="shm"``), Redis across hosts.
* **Writes from elsewhere** (not through the middleware) are bounded by the TTL alone.
* **Tiers**: a per-process LRU bounded by ``cache_max_bytes``; answers over ``cache_max_entry_bytes`` are not kept.
  With ``cache_shared_results`` and Redis storage, answers are also kept in Redis for every host (with ``EX``),
  checked against the same stamps.
* **Single flight**: identical misses at the same time run once; the others take its answer.
* **Visible**: ``X-Cache: HIT`` (with ``Age``), ``MISS``, or ``BYPASS; reason=...``; and counters in the metrics.

A request skips the cache with ``Cache-Control: no-cache`` (any protocol), or PolyScale's ``"cache": false``: it
runs, and its fresh answer is stored for the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import errors, metrics
from ..engine.work import Body, Login, Statement, Work
from ..options import Options, ResolvedTarget
from .analysis import Verdict, analyse
from .stamps import MemoryStamps, RedisStamps, ShmStamps, Stamps

if TYPE_CHECKING:
    from ..http import Request
    from ..protocols.base import Protocol

__all__ = ["CacheAnswer", "ResultCache", "Verdict", "analyse"]

logger = logging.getLogger("sqlhttp_middleware.cache")

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


class CacheAnswer:
    """What the cache hands back to the core: the answer's body and the headers that say what the cache did."""

    __slots__ = ("body", "headers")

    def __init__(self, body: Body, headers: list[tuple[str, str]]) -> None:
        self.body, self.headers = body, headers


@dataclass(eq=False)
class _Entry:
    body: bytes
    stamps: tuple[int, ...]
    created: float  # time.time(): for Age
    expires: float  # time.monotonic()


class _Flight:
    """An identical miss running now: its answer, and the stamps its leader read before its statement ran."""

    __slots__ = ("body", "done", "stamps")

    def __init__(self, stamps: tuple[int, ...]) -> None:
        self.done = threading.Event()
        self.body: bytes | None = None
        self.stamps = stamps


def identity(target: ResolvedTarget, database: str) -> str:
    """The database a target's request works on, whichever target it came through."""
    url = target.url
    if target.family == "sqlite":
        return "sqlite:" + os.path.realpath(url.database or "")
    return f"{_server(target)}/{database}"


def _server(target: ResolvedTarget) -> str:
    url = target.url
    return f"{target.family}://{(url.host or '').lower()}:{url.port or _DEFAULT_PORTS.get(target.family, 0)}"


class ResultCache:
    """The result cache of one middleware instance."""

    def __init__(self, options: Options, stamps: Callable[[], Stamps]) -> None:
        self._options = options
        self.ttls = {name: t.cache_ttl for name, t in options.targets.items() if t.cache_ttl}
        cached = [t for t in options.targets.values() if t.cache_ttl]
        # Writes on any target of a server (or SQLite file) some cached target reads from change its stamps.
        self._watched = frozenset(_server(t) if t.family != "sqlite" else identity(t, "") for t in cached)
        self.watched_targets = frozenset(
            name for name, t in options.targets.items()
            if (_server(t) if t.family != "sqlite" else identity(t, "")) in self._watched)
        self._make_stamps = stamps
        self._stamps: Stamps | None = None
        self._stamps_lock = threading.Lock()
        self._key = secrets.token_bytes(32)  # the in-process tier's digests: nothing outside this process sees them
        self._shared_key = hashlib.sha256(b"sqlhttp-cache\0" + options.cache_secret.encode()).digest()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._flights: dict[bytes, _Flight] = {}
        self._async_flights: dict[bytes, tuple[tuple[int, ...], asyncio.Future[bytes | None]]] = {}
        self.max_bytes = options.cache_max_bytes
        self.max_entry_bytes = options.cache_max_entry_bytes
        self._shared_results = options.cache_shared_results
        self._redis: Any = None

    # -- configuration --------------------------------------------------------------------------------------------

    @property
    def stamps(self) -> Stamps:
        if self._stamps is None:
            with self._stamps_lock:
                if self._stamps is None:
                    self._stamps = self._make_stamps()
        return self._stamps

    @property
    def blocks(self) -> bool:
        """True when a lookup may wait on the network (stamps or results in Redis)."""
        return self._options.cache_storage.split("://", 1)[0] in ("redis", "rediss", "unix")

    def enabled(self, target: ResolvedTarget) -> bool:
        return target.name in self.ttls

    def watches(self, target: ResolvedTarget) -> bool:
        """True when writes through ``target`` may change what the cache holds."""
        return target.name in self.watched_targets

    # -- writes ---------------------------------------------------------------------------------------------------

    def reads_only(self, target: ResolvedTarget, statement: Statement) -> bool:
        return analyse(statement.sql, target.family, statement.paramstyle).reads_only

    def written(self, target: ResolvedTarget, database: str) -> None:
        """A write may have changed ``database``: what the cache holds of it stops answering."""
        self.stamps.bump([identity(target, database)])
        metrics.cache_invalidated(target.name)

    def after(self, work: Work, login: Login) -> None:
        """After ``work`` ran (or failed: its outcome may be unknown), if it may have written."""
        target = work.target
        if self.watches(target) and not all(self.reads_only(target, s) for s in work.statements):
            self.written(target, login.database)

    # -- reads ----------------------------------------------------------------------------------------------------

    def through(self, request: Request, protocol: Protocol[Any], parsed: Any, run: Callable[..., Any],
                offload: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
                inline: bool = False) -> Callable[[Any], Any]:
        """``run(login)`` through the cache (the core's run step for ``parsed``): answered from it where it may be,
        and its writes invalidating it. Targets the cache has nothing to do with run as they are. ``offload``: on
        an event loop, where ``run`` returns an awaitable; ``inline``: on the loop itself (see :meth:`run`)."""
        work, cache = parsed.work, self
        if cache.enabled(work.target):
            refresh = "no-cache" in request.headers.get("cache-control", "").lower() or (
                getattr(parsed, "cache", True) is False)
            arguments = (protocol.name, request.path, request.body, request.headers, protocol.cache_headers,
                         refresh, work)
            if offload is not None:
                return lambda login: cache.run_async(*arguments, login, partial(run, login), offload)
            return lambda login: cache.run(*arguments, login, partial(run, login), inline)
        if not cache.watches(work.target) or work.stream is not None:
            return run
        if offload is not None:
            async def watched_async(login: Any) -> Any:
                try:
                    return await run(login)
                finally:
                    await offload(partial(cache.after, work, login)) if cache.blocks else cache.after(work, login)

            return watched_async

        def watched(login: Any) -> Any:
            try:
                return run(login)
            finally:
                cache.after(work, login)

        return watched

    def _plan(self, work: Work, headers: Mapping[str, str]) -> tuple[str, Verdict | None]:
        """("", verdict) to look the read up; (reason, None) to bypass."""
        stream = work.stream
        if stream is not None and not (stream.baton is None and stream.closes and stream.inline):
            return "session", None
        if work.transaction is not None or len(work.statements) != 1:
            return "batch", None
        statement = work.statements[0]
        verdict = analyse(statement.sql, work.target.family, statement.paramstyle)
        if not verdict.cacheable:
            return verdict.reason, verdict
        return "", verdict

    def key(self, protocol: str, path: str, body: bytes, headers: Mapping[str, str], names: Sequence[str],
            shared: bool = False) -> bytes:
        # BLAKE2b in its keyed mode is a MAC of its own (RFC 7693), at a fraction of HMAC's cost.
        digest = hashlib.blake2b(key=self._shared_key if shared else self._key, digest_size=24)
        digest.update(f"{protocol}\0{path}\0".encode())
        for name in names:
            digest.update(f"{name}:{headers.get(name, '')}\0".encode("utf-8", "surrogatepass"))
        digest.update(body)
        return digest.digest()

    def run(self, protocol: str, path: str, body: bytes, headers: Mapping[str, str], names: Sequence[str],
            refresh: bool, work: Work, login: Login, compute: Callable[[], Any], inline: bool = False) -> Any:
        """``compute()``'s answer, from the cache when it may be; what the cache did in its headers.

        ``inline``: on the event loop (SQLite within its budget), where nothing may wait: an identical miss
        already running elsewhere sends this request to a thread (:class:`~..errors.RunElsewhere`) to wait there.
        """
        target = work.target
        reason, verdict = self._plan(work, headers)
        if reason:
            try:
                return CacheAnswer(compute(), _bypass(target.name, reason))
            finally:
                if _may_write(work, verdict):
                    self.after(work, login)
        key = self.key(protocol, path, body, headers, names)
        stamp_keys = [identity(target, login.database)]
        stamps = self.stamps.read(stamp_keys)
        if not refresh:
            hit = self._hit(key, stamps, target, protocol, path, body, headers, names)
            if hit is not None:
                return hit
        flight, leader = self._join(key, stamps)
        if not leader:
            if inline:
                raise errors.RunElsewhere
            flight.done.wait(self._wait(target))
            # Only an answer whose statement ran after every write this request could know of: the same stamps,
            # read by the leader before its statement, as read by this request when it came (random stamps are
            # equal only if nothing changed them in between).
            if flight.body is not None and flight.stamps == stamps:
                metrics.cache_looked_up(target.name, "hit")
                return CacheAnswer(flight.body, [("x-cache", "HIT"), ("age", "0")])
        try:
            answer = compute()
            stored = self._store(key, answer, stamps, stamp_keys, target, protocol, path, body, headers, names)
            if leader:
                flight.body = stored
        finally:
            if leader:
                with self._lock:
                    if self._flights.get(key) is flight:
                        del self._flights[key]
                flight.done.set()
        return CacheAnswer(answer, _missed(target.name, refresh))

    async def run_async(self, protocol: str, path: str, body: bytes, headers: Mapping[str, str],
                        names: Sequence[str], refresh: bool, work: Work, login: Login,
                        compute: Callable[[], Any], offload: Callable[[Callable[[], Any]], Awaitable[Any]]) -> Any:
        """:meth:`run` on an event loop: ``compute()`` may return an awaitable; stamps in Redis go to a thread."""
        target = work.target

        async def call(function: Callable[[], Any]) -> Any:
            return await offload(function) if self.blocks else function()

        async def computed() -> Any:
            result = compute()
            return await result if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future) else result

        reason, verdict = self._plan(work, headers)
        if reason:
            try:
                return CacheAnswer(await computed(), _bypass(target.name, reason))
            finally:
                if _may_write(work, verdict):
                    await call(lambda: self.after(work, login))
        key = self.key(protocol, path, body, headers, names)
        stamp_keys = [identity(target, login.database)]
        stamps = await call(lambda: self.stamps.read(stamp_keys))
        if not refresh:
            hit = await call(lambda: self._hit(key, stamps, target, protocol, path, body, headers, names))
            if hit is not None:
                return hit
        waiting = self._async_flights.get(key)
        if waiting is not None and waiting[0] == stamps:  # see run(): only under the same stamps
            shared = await asyncio.shield(waiting[1])
            if shared is not None:
                metrics.cache_looked_up(target.name, "hit")
                return CacheAnswer(shared, [("x-cache", "HIT"), ("age", "0")])
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        flight = (stamps, future)
        self._async_flights[key] = flight
        stored: bytes | None = None
        try:
            answer = await computed()
            stored = await call(lambda: self._store(key, answer, stamps, stamp_keys, target, protocol, path, body,
                                                    headers, names))
        finally:
            if self._async_flights.get(key) is flight:
                del self._async_flights[key]
            future.set_result(stored)
        return CacheAnswer(answer, _missed(target.name, refresh))

    def _wait(self, target: ResolvedTarget) -> float:
        timeout = target.statement_timeout or self._options.statement_timeout
        return timeout + self._options.deadline_grace + self._options.pool_timeout

    def _join(self, key: bytes, stamps: tuple[int, ...]) -> tuple[_Flight, bool]:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None and flight.stamps == stamps:
                return flight, False
            flight = self._flights[key] = _Flight(stamps)  # (one under other stamps is not joined: it may predate)
            return flight, True

    def _hit(self, key: bytes, stamps: tuple[int, ...], target: ResolvedTarget, protocol: str, path: str,
             body: bytes, headers: Mapping[str, str], names: Sequence[str]) -> CacheAnswer | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry.stamps == stamps and entry.expires > now:
                    self._entries.move_to_end(key)
                else:
                    self._drop(key)
                    entry = None
        if entry is None and self._shared_results:
            entry = self._shared_get(self.key(protocol, path, body, headers, names, shared=True), stamps)
            if entry is not None:
                self._keep(key, entry)
        if entry is None:
            return None
        metrics.cache_looked_up(target.name, "hit")
        age = max(0, int(time.time() - entry.created))
        return CacheAnswer(entry.body, [("x-cache", "HIT"), ("age", str(age))])

    def _store(self, key: bytes, answer: Any, stamps: tuple[int, ...], stamp_keys: list[str],
               target: ResolvedTarget, protocol: str, path: str, body: bytes, headers: Mapping[str, str],
               names: Sequence[str]) -> bytes | None:
        """Keep ``answer`` if it fits, and if no write came between the read's start and now."""
        size = len(answer) if isinstance(answer, bytes) else sum(map(len, answer))
        if size > self.max_entry_bytes:
            metrics.cache_bypassed(target.name, "too-large")
            return None
        if self.stamps.read(stamp_keys) != stamps:
            return None  # a write landed while the read ran: its answer may predate it
        data = answer if isinstance(answer, bytes) else b"".join(answer)
        ttl = self.ttls[target.name]
        entry = _Entry(data, stamps, time.time(), time.monotonic() + ttl)
        self._keep(key, entry)
        if self._shared_results:
            self._shared_put(self.key(protocol, path, body, headers, names, shared=True), entry, ttl)
        return data

    def _keep(self, key: bytes, entry: _Entry) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._bytes += len(entry.body)
            while self._bytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))
                metrics.cache_evicted()

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) this process holds."""
        with self._lock:
            return len(self._entries), self._bytes

    # -- the shared result tier -----------------------------------------------------------------------------------

    def _shared_client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self._options.cache_storage, socket_timeout=2.0,
                                               socket_connect_timeout=2.0)
        return self._redis

    def _shared_get(self, key: bytes, stamps: tuple[int, ...]) -> _Entry | None:
        import orjson

        try:
            raw = self._shared_client().get(b"sqlhttp:cache:entry:" + key.hex().encode())
        except Exception:
            logger.warning("sqlhttp-middleware: the shared result cache (Redis) is unreachable", exc_info=True)
            return None
        if raw is None:
            return None
        head, _, data = raw.partition(b"\n")
        meta = orjson.loads(head)
        if tuple(meta["stamps"]) != stamps:
            return None
        return _Entry(data, stamps, meta["created"], time.monotonic() + max(0.0, meta["expires"] - time.time()))

    def _shared_put(self, key: bytes, entry: _Entry, ttl: float) -> None:
        import orjson

        head = orjson.dumps({"stamps": entry.stamps, "created": entry.created, "expires": entry.created + ttl})
        try:
            self._shared_client().set(b"sqlhttp:cache:entry:" + key.hex().encode(), head + b"\n" + entry.body,
                                      px=max(1, int(ttl * 1000)))
        except Exception:
            logger.warning("sqlhttp-middleware: the shared result cache (Redis) is unreachable", exc_info=True)

    def close(self) -> None:
        if self._stamps is not None:
            self._stamps.close()
        if self._redis is not None:
            self._redis.close()


def _may_write(work: Work, verdict: Verdict | None) -> bool:
    # A stream's statements change the stamps themselves, when they commit (see .engine.streams).
    return work.stream is None and (verdict is None or not verdict.reads_only)


def _missed(target: str, refresh: bool) -> list[tuple[str, str]]:
    if refresh:  # the client asked not to be answered from the cache; its fresh answer is kept for the next
        return _bypass(target, "request")
    metrics.cache_looked_up(target, "miss")
    return [("x-cache", "MISS")]


def _bypass(target: str, reason: str) -> list[tuple[str, str]]:
    metrics.cache_bypassed(target, reason)
    metrics.cache_looked_up(target, "bypass")
    return [("x-cache", f"BYPASS; reason={reason}")]


def make_stamps(options: Options, namespace: str, directory: Callable[[], Any]) -> Callable[[], Stamps]:
    """How the stamps are reached, per ``cache_storage``."""
    storage = options.cache_storage
    if storage == "memory":
        return MemoryStamps
    if storage == "shm":
        return lambda: ShmStamps(directory())
    return lambda: RedisStamps(storage, namespace)
