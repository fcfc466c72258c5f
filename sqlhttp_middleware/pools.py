"""The bookkeeping every pool shares, written once for the sync engines (:mod:`.engines`) and the async PostgreSQL
pools (:mod:`.engine.aio`): one pool per target and credential set, keyed by a keyed digest of the password (never
the password itself), at most ``max_engines`` of them (the least recently used idle one goes first), pools nobody
used for ``engine_idle_timeout`` seconds closed, idle connections reaped, a fork's child starting afresh, and named
stats, in total and per target (for the pool gauges of :mod:`.metrics`, which also count the connections reaped).

What a pool is differs (a SQLAlchemy engine and its queue, or psycopg async connections and their waiters); each
kind implements :class:`Pool`. psycopg_pool's split of ``base.py`` from ``pool.py`` and ``pool_async.py`` is the
model.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from . import metrics
from ._process import current_pid
from .options import Options, ResolvedTarget

__all__ = ["Pool", "PoolRegistry", "PoolStats"]

Key = tuple[str, ...]


class PoolStats(dict[str, int]):
    """``engines`` (pools), ``open_connections`` and ``checked_out``, summed over pools (and over registries with +)."""

    def __add__(self, other: dict[str, int]) -> PoolStats:
        return PoolStats({name: value + other.get(name, 0) for name, value in self.items()})


class Pool(Protocol):
    in_use: int  # requests holding or waiting for one of its connections
    last_used: float  # time.monotonic() of its last checkout or return
    evicted: bool  # no longer reachable from the registry: closed once its last request is done

    def reap(self, now: float, idle_timeout: float) -> int:
        """Close the connections idle for ``idle_timeout`` seconds; how many were closed."""

    def close(self) -> None:
        """Close every idle connection; those in use are closed when they come back."""

    def forget(self) -> None:
        """After fork: drop the parent's connections without touching their sockets."""

    def counts(self) -> tuple[int, int]:
        """(open connections, connections checked out)."""


P = TypeVar("P", bound=Pool)


class PoolRegistry(Generic[P]):
    """The pools of one middleware instance for one kind of pool. Thread-safe; cheap on an event loop too."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._pools: OrderedDict[Key, P] = OrderedDict()
        self._digest_key = secrets.token_bytes(32)
        self._last_secret = ("", "")  # (password, its digest): most requests repeat the one before
        self._pid = current_pid()
        self._metrics = metrics.process_metrics() if options.metrics_path else None  # counts the reaped

    def key(self, target: ResolvedTarget, username: str, password: str, database: str) -> Key:
        last, digest = self._last_secret
        if password != last or not digest:
            digest = hmac.new(self._digest_key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            self._last_secret = (password, digest)
        return (target.name, username, database, digest)

    def checkout(self, key: Key, create: Callable[[], P]) -> P:
        """The pool for ``key`` (made by ``create`` if there is none), counted in use until :meth:`checkin`."""
        if current_pid() != self._pid:
            self.after_fork()
        evicted: list[P] = []
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = create()
                while len(self._pools) > self._options.max_engines:
                    evicted.append(self._evict_one(protect=key))
            else:
                self._pools.move_to_end(key)
            pool.in_use += 1
            pool.last_used = time.monotonic()
        for old in evicted:
            if old.in_use == 0:
                old.close()
        return pool

    def checkin(self, pool: P) -> None:
        with self._lock:
            pool.in_use -= 1
            pool.last_used = time.monotonic()
            close = pool.evicted and pool.in_use == 0
        if close:
            pool.close()

    def _evict_one(self, protect: Key) -> P:
        # The least recently used pool with no request in flight; failing that, the least recently used.
        victim_key = next((key for key, pool in self._pools.items() if pool.in_use == 0 and key != protect),
                          next(key for key in self._pools if key != protect))
        victim = self._pools.pop(victim_key)
        victim.evicted = True
        return victim

    def discard(self, pool: P) -> None:
        """Forget a pool whose credentials the database refused, so failed logins cannot fill the registry."""
        with self._lock:
            for key, candidate in list(self._pools.items()):
                if candidate is pool:
                    del self._pools[key]
            pool.evicted = True
            close = pool.in_use == 0
        if close:
            pool.close()

    def reap(self, now: float | None = None) -> int:
        """Close idle connections and the pools nobody used for ``engine_idle_timeout``; connections closed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            pools = list(self._pools.items())
        reaped = 0
        for key, pool in pools:
            closed = pool.reap(now, self._options.idle_timeout)
            if closed and self._metrics is not None:
                self._metrics.connections_reaped(key[0], closed)
            reaped += closed
            if pool.in_use == 0 and now - pool.last_used >= self._options.engine_idle_timeout:
                with self._lock:
                    if self._pools.get(key) is not pool or pool.in_use:
                        continue
                    del self._pools[key]
                    pool.evicted = True
                pool.close()
        return reaped

    def pools(self) -> list[P]:
        with self._lock:
            return list(self._pools.values())

    def stats(self) -> PoolStats:
        pools = self.pools()
        counts = [pool.counts() for pool in pools]
        return PoolStats(engines=len(pools), open_connections=sum(c[0] for c in counts),
                         checked_out=sum(c[1] for c in counts))

    def by_target(self) -> dict[str, tuple[int, int, int]]:
        """Per target, over its pools: (open connections, connections checked out, requests waiting for one)."""
        with self._lock:
            pools = [(key[0], pool) for key, pool in self._pools.items()]
        totals: dict[str, tuple[int, int, int]] = {}
        for target, pool in pools:
            opened, checked_out = pool.counts()
            waiting = max(0, pool.in_use - checked_out)  # in use: holding a connection, or waiting for one
            was = totals.get(target, (0, 0, 0))
            totals[target] = (was[0] + opened, was[1] + checked_out, was[2] + waiting)
        return totals

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.evicted = True
            pool.close()

    def after_fork(self) -> None:
        """In a forked child: the parent's connections are the parent's; forget them without closing them."""
        self._lock = threading.Lock()
        for pool in self._pools.values():
            pool.forget()
        self._pools.clear()
        self._pid = current_pid()
