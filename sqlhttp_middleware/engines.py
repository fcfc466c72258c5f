"""Pooled SQLAlchemy engines: one per target and credential set, bounded, reaped, and fork-safe.

* Each engine has a pool of ``pool_size`` connections and no overflow. A checkout waits ``pool_timeout`` seconds.
* A reaper thread closes every pooled connection idle for ``idle_timeout`` seconds (SQLAlchemy's ``pool_recycle``
  only acts at checkout, so a quiet pool would otherwise hold its connections for ever) and disposes engines nobody
  used for ``engine_idle_timeout`` seconds.
* At most ``max_engines`` engines are cached; the least recently used one is evicted. Connections it still has
  checked out are closed when they come back rather than returned to a pool nobody can reach.
* Engines are keyed by a keyed digest of the credentials, never the password itself.
* After ``fork()`` the child forgets the parent's engines without touching their sockets, and starts its own reaper.
* At checkout a connection whose socket shows the server went away (restart, killed session) is replaced, so a
  restarted database costs no user-visible error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import weakref
from collections import OrderedDict
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
from .options import Options, ResolvedTarget

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
    engine: Engine
    support: DialectSupport
    last_used: float
    in_use: int = 0
    evicted: bool = False
    pool: ReapingQueuePool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = self.engine.pool  # type: ignore[assignment]


@dataclass
class Lease:
    """A checked-out connection. Set ``broken`` when it must not go back to the pool."""

    dbapi_connection: Any
    entry: EngineEntry
    broken: bool = False


class EngineCache:
    """All engines of one middleware instance."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._engines: OrderedDict[tuple[str, ...], EngineEntry] = OrderedDict()
        self._digest_key = secrets.token_bytes(32)
        self._reaper: threading.Thread | None = None
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
        entry = self._entry(target, username, password, database)
        try:
            proxied = entry.engine.raw_connection()
        except BaseException as exc:
            self._release(entry)
            raise self._connect_failed(exc, entry, target, username) from None
        lease = Lease(proxied.dbapi_connection, entry)
        try:
            yield lease
        except (errors.SQLHTTPError, errors.RunElsewhere):
            self._finish(proxied, entry, healthy=not lease.broken)
            raise
        except BaseException:
            self._finish(proxied, entry, healthy=False)
            raise
        else:
            self._finish(proxied, entry, healthy=not lease.broken)

    def _connect_failed(
        self, exc: BaseException, entry: EngineEntry, target: ResolvedTarget, username: str
    ) -> BaseException:
        if isinstance(exc, sqlalchemy.exc.TimeoutError):
            return errors.PoolTimeout.busy(self._options.pool_size, self._options.pool_timeout, target.name)
        original = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None else exc
        if not isinstance(original, entry.engine.dialect.loaded_dbapi.Error):
            return exc
        error = entry.support.translate_connect_error(original, target.name, username)
        if isinstance(error, (errors.AuthenticationFailed, errors.PermissionDenied, errors.UnknownDatabase)):
            self.discard(entry)
        return error

    def discard(self, entry: EngineEntry) -> None:
        """Forget an engine whose credentials the database refused, so failed logins cannot fill the cache."""
        with self._lock:
            for key, candidate in list(self._engines.items()):
                if candidate is entry:
                    del self._engines[key]
                    entry.evicted = True
        if entry.in_use == 0:
            entry.engine.dispose()

    def reap(self, now: float | None = None) -> int:
        """Close idle connections and dispose unused engines. Returns the number of connections closed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entries = list(self._engines.items())
        reaped = 0
        for key, entry in entries:
            reaped += entry.pool.reap_idle(self._options.idle_timeout, now)
            if entry.in_use == 0 and now - entry.last_used >= self._options.engine_idle_timeout:
                with self._lock:
                    if self._engines.get(key) is entry and entry.in_use == 0:
                        del self._engines[key]
                        entry.evicted = True
                    else:
                        continue
                entry.engine.dispose()
        return reaped

    def stats(self) -> dict[str, int]:
        with self._lock:
            entries = list(self._engines.values())
        return {
            "engines": len(entries),
            "open_connections": sum(entry.pool.open_connections() for entry in entries),
            "checked_out": sum(entry.pool.checkedout() for entry in entries),
        }

    def close(self) -> None:
        """Stop the reaper and close every pooled connection."""
        self._stopped.set()
        with self._lock:
            entries = list(self._engines.values())
            self._engines.clear()
        for entry in entries:
            entry.evicted = True
            entry.engine.dispose()

    # -- internals ----------------------------------------------------------------------------------------------

    def _key(self, target: ResolvedTarget, username: str, password: str, database: str) -> tuple[str, ...]:
        secret = hmac.new(self._digest_key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return (target.name, username, database, secret)

    def _entry(self, target: ResolvedTarget, username: str, password: str, database: str) -> EngineEntry:
        if current_pid() != self._pid:
            self._after_fork()
        self._ensure_reaper()
        key = self._key(target, username, password, database)
        now = time.monotonic()
        evicted: list[EngineEntry] = []
        with self._lock:
            entry = self._engines.get(key)
            if entry is None:
                entry = EngineEntry(self._create_engine(target, username, password, database),
                                    dialect_support(target.family), now)
                self._engines[key] = entry
                while len(self._engines) > self._options.max_engines:
                    evicted.append(self._evict_one(protect=key))
            else:
                self._engines.move_to_end(key)
            entry.in_use += 1
            entry.last_used = now
        for old in evicted:
            if old.in_use == 0:
                old.engine.dispose()
        return entry

    def _evict_one(self, protect: tuple[str, ...]) -> EngineEntry:
        # Prefer the least recently used engine with no request in flight; fall back to the least recently used.
        victim_key = next(
            (key for key, entry in self._engines.items() if entry.in_use == 0 and key != protect),
            next(key for key in self._engines if key != protect),
        )
        victim = self._engines.pop(victim_key)
        victim.evicted = True
        return victim

    def _release(self, entry: EngineEntry) -> None:
        with self._lock:
            entry.in_use -= 1
            dispose = entry.evicted and entry.in_use == 0
        if dispose:
            entry.engine.dispose()

    def _finish(self, proxied: Any, entry: EngineEntry, *, healthy: bool) -> None:
        try:
            if not healthy or entry.evicted:
                proxied.invalidate()
            proxied.close()
        finally:
            self._release(entry)

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
        event.listen(engine, "connect", lambda dbapi_connection, record: support.on_connect(
            dbapi_connection, target.read_only, timeout))
        event.listen(engine, "checkin", _mark_idle)
        event.listen(engine, "checkout", _check_alive(support))
        return engine

    def _ensure_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return
        with self._lock:
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
        self._lock = threading.Lock()
        for entry in self._engines.values():
            entry.engine.dispose(close=False)
        self._engines.clear()
        self._reaper = None
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
