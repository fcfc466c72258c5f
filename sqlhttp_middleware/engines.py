"""Pooled SQLAlchemy engines: one per target and credential set, bounded, reaped, and fork-safe.

* Each engine has a pool of ``pool_size`` connections and no overflow. A checkout waits ``pool_timeout`` seconds.
* A reaper thread closes every pooled connection idle for ``idle_timeout`` seconds (SQLAlchemy's ``pool_recycle``
  only acts at checkout, so a quiet pool would otherwise hold its connections for ever) and disposes engines nobody
  used for ``engine_idle_timeout`` seconds.
* At most ``max_engines`` engines are cached; the least recently used one is evicted. Connections it still has
  checked out are closed when they come back rather than returned to a pool nobody can reach.
* Engines are keyed by a keyed digest of the credentials, never the password itself.
* After ``fork()`` the child forgets the parent's engines without touching their sockets, and starts its own reaper.

The bookkeeping (keys, the bound, reaping, fork reset, stats) is :class:`~.pools.PoolRegistry`'s, shared with the
async PostgreSQL pools; this module owns the engines themselves and the reaper thread.
* At checkout a connection whose socket shows the server went away (restart, killed session) is replaced, so a
  restarted database costs no user-visible error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from . import errors
from ._process import current_pid
from .dialects import DialectSupport, dialect_support
from .engine.deadline import Backoff
from .options import Options, ResolvedTarget
from .pools import PoolRegistry, PoolStats

__all__ = ["EngineCache", "Lease", "ReapingQueuePool"]

logger = logging.getLogger("sqlhttp_middleware.engines")

_IDLE_SINCE = "sqlhttp_idle_since"


class ReapingQueuePool(QueuePool):
    """A QueuePool that can close the connections that have sat idle in it too long."""

    def reap_idle(self, idle_timeout: float, now: float) -> int:
        """Close idle connections in place; their records reconnect lazily at the next checkout.

        Closing in place keeps the pool's accounting untouched (no overflow counter to fix, no waiter left
        sleeping on an empty queue). The queue's mutex is held throughout, so no checkout can take a record
        while it is being closed. This relies on QueuePool's ``_pool`` queue, hence the pinned SQLAlchemy 2.0.
        """
        reaped = 0
        queue = self._pool
        with queue.mutex:  # type: ignore[attr-defined]
            for record in list(queue.queue):  # type: ignore[attr-defined]
                if record.dbapi_connection is None:
                    continue
                idle_since = record.info.get(_IDLE_SINCE)
                if idle_since is not None and now - idle_since >= idle_timeout:
                    record.invalidate()
                    reaped += 1
        return reaped

    def open_connections(self) -> int:
        """Connections that exist on the database side: checked out, or pooled and not yet reaped."""
        queue = self._pool
        with queue.mutex:  # type: ignore[attr-defined]
            records = list(queue.queue)  # type: ignore[attr-defined]
        idle_open = sum(1 for record in records if record.dbapi_connection is not None)
        return idle_open + self.checkedout()


@dataclass
class EngineEntry:
    """One engine and its pool: a :class:`~.pools.Pool` for the registry."""

    engine: Engine
    support: DialectSupport
    last_used: float
    in_use: int = 0
    evicted: bool = False
    pool: ReapingQueuePool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = self.engine.pool  # type: ignore[assignment]

    def reap(self, now: float, idle_timeout: float) -> int:
        return self.pool.reap_idle(idle_timeout, now)

    def close(self) -> None:
        self.engine.dispose()

    def forget(self) -> None:
        self.engine.dispose(close=False)

    def counts(self) -> tuple[int, int]:
        return self.pool.open_connections(), self.pool.checkedout()


@dataclass
class Lease:
    """A checked-out connection. Set ``broken`` when it must not go back to the pool."""

    dbapi_connection: Any
    entry: EngineEntry
    broken: bool = False
    proxied: Any = field(default=None, repr=False)  # SQLAlchemy's pool proxy, through which it goes back


class EngineCache:
    """All engines of one middleware instance."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self.registry: PoolRegistry[EngineEntry] = PoolRegistry(options)
        self.backoff = Backoff(options.reconnect_backoff)  # shared with the async pools
        self._reaper: threading.Thread | None = None
        self._reaper_lock = threading.Lock()
        self._stopped = threading.Event()
        self._pid = current_pid()
        _CACHES.add(self)

    # -- public -------------------------------------------------------------------------------------------------

    @contextmanager
    def connection(self, target: ResolvedTarget, username: str, password: str, database: str) -> Iterator[Lease]:
        """Lease a pooled DBAPI connection for these credentials; give it back (or close it) afterwards.

        Errors the database refused (an ``SQLHTTPError``) leave the connection healthy; anything else, or a lease
        marked ``broken``, closes it instead of returning it to the pool.
        """
        lease = self.lease(target, username, password, database)
        try:
            yield lease
        except (errors.SQLHTTPError, errors.RunElsewhere):
            self.give_back(lease)
            raise
        except BaseException:
            lease.broken = True
            self.give_back(lease)
            raise
        else:
            self.give_back(lease)

    def lease(self, target: ResolvedTarget, username: str, password: str, database: str) -> Lease:
        """A pooled connection held until :meth:`give_back`, however many requests that spans (a session's).
        It counts in its pool's size all along."""
        if current_pid() != self._pid:
            self._after_fork()
        self._ensure_reaper()
        key = self.registry.key(target, username, password, database)
        entry = self.registry.checkout(key, lambda: EngineEntry(
            self._create_engine(target, username, password, database), dialect_support(target.family),
            time.monotonic()))
        try:
            self.backoff.check(target.name)
            proxied = entry.engine.raw_connection()
        except BaseException as exc:
            self.registry.checkin(entry)
            raise self._connect_failed(exc, entry, target, username) from None
        return Lease(proxied.dbapi_connection, entry, proxied=proxied)

    def give_back(self, lease: Lease) -> None:
        """Return a leased connection to its pool, or close it if it is ``broken``."""
        self._finish(lease.proxied, lease.entry, healthy=not lease.broken)

    def _connect_failed(
        self, exc: BaseException, entry: EngineEntry, target: ResolvedTarget, username: str
    ) -> BaseException:
        if isinstance(exc, errors.SQLHTTPError):
            return exc  # the back-off's own answer
        if isinstance(exc, sqlalchemy.exc.TimeoutError):
            return errors.PoolTimeout.busy(self._options.pool_size, self._options.pool_timeout, target.name)
        original = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None else exc
        if not isinstance(original, entry.engine.dialect.loaded_dbapi.Error):
            return exc
        error = entry.support.translate_connect_error(original, target.name, username)
        if isinstance(error, errors.DatabaseUnavailable):
            self.backoff.failed(target.name)
        if isinstance(error, (errors.AuthenticationFailed, errors.PermissionDenied, errors.UnknownDatabase)):
            self.registry.discard(entry)  # failed logins must not fill the cache
        return error

    def reap(self, now: float | None = None) -> int:
        """Close idle connections and dispose unused engines. Returns the number of connections closed."""
        return self.registry.reap(now)

    def stats(self) -> PoolStats:
        return self.registry.stats()

    def close(self) -> None:
        """Stop the reaper and close every pooled connection."""
        self._stopped.set()
        self.registry.close()

    # -- internals ----------------------------------------------------------------------------------------------

    def _finish(self, proxied: Any, entry: EngineEntry, *, healthy: bool) -> None:
        try:
            if not healthy or entry.evicted:
                proxied.invalidate()
            proxied.close()
        finally:
            self.registry.checkin(entry)

    def _create_engine(self, target: ResolvedTarget, username: str, password: str, database: str) -> Engine:
        options = self._options
        support = dialect_support(target.family)
        url = target.url
        if target.family != "sqlite":
            url = url.set(username=username, password=password, database=database)
        engine = create_engine(
            url,
            poolclass=ReapingQueuePool,
            pool_size=options.pool_size,
            max_overflow=0,
            pool_timeout=options.pool_timeout,
            pool_reset_on_return=None,  # the request path rolls back itself, only when a transaction is open
            isolation_level="AUTOCOMMIT",
            connect_args=support.connect_args(options.connect_timeout),
            hide_parameters=True,
        )
        event.listen(engine, "do_connect", lambda dialect, record, cargs, cparams: support.adjust_connect(cparams))
        timeout = target.statement_timeout or options.statement_timeout

        def connected(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            self.backoff.succeeded(target.name)
            support.on_connect(dbapi_connection, target.read_only, timeout)

        event.listen(engine, "connect", connected)
        event.listen(engine, "checkin", _mark_idle)
        event.listen(engine, "checkout", _check_alive(support))
        return engine

    def _ensure_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        with self._reaper_lock:
            if self._reaper is not None and self._reaper.is_alive():
                return
            interval = min(max(self._options.idle_timeout / 4, 0.05), 5.0)
            self._reaper = threading.Thread(
                target=_reap_forever, args=(weakref.ref(self), self._stopped, interval),
                name="sqlhttp-reaper", daemon=True,
            )
            self._reaper.start()

    def _after_fork(self) -> None:
        # The parent's connections belong to the parent: drop them without closing their sockets.
        self.registry.after_fork()
        self._reaper = None
        self._reaper_lock = threading.Lock()
        self._stopped = threading.Event()
        self._pid = current_pid()


def _mark_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _check_alive(support: DialectSupport) -> Any:
    def check(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        record.info.pop(_IDLE_SINCE, None)
        if not support.is_alive(dbapi_connection):
            # SQLAlchemy invalidates the record and retries the checkout with a new connection.
            raise DisconnectionError("the server closed this pooled connection")

    return check


def _reap_forever(cache_ref: weakref.ref[EngineCache], stopped: threading.Event, interval: float) -> None:
    while not stopped.wait(interval):
        cache = cache_ref()
        if cache is None:
            return
        try:
            cache.reap()
        except Exception:  # a reaper that dies would leave idle connections open for ever
            logger.exception("sqlhttp-middleware: reaping idle connections failed")
        del cache


_CACHES: weakref.WeakSet[EngineCache] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for cache in list(_CACHES):
        cache._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
