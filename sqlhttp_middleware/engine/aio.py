"""PostgreSQL on the event loop: the ASGI adapter's path for PostgreSQL targets (option ``async_postgres``).

psycopg 3's async connections run the statement on the loop itself, with no hop to a thread and back, and with the
same type loaders, error classes and single-statement cursors as the sync path, so answers are byte for byte the
same. Everything else is shared with the sync path: the work and its limits (:mod:`.work`), the protocol's result
builder, batches (BEGIN with the same options, the same checks), the session rules and error translation
(:class:`PostgreSQLSupport`).

The pools keep the sync pools' rules: ``pool_size`` connections per target and credential set, no overflow, waiters
served first come first served for up to ``pool_timeout`` seconds (503 ``POOL_TIMEOUT``), idle connections closed
after ``idle_timeout`` seconds by a timer on the loop, unused pools dropped after ``engine_idle_timeout``, at most
``max_engines`` pools, and a connection whose socket shows the server went away replaced at checkout. Pools belong
to one event loop and one process: a new loop or a forked child starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .. import errors, metrics
from .._process import current_pid
from ..dialects.base import CursorInfo, Session, first_keyword
from ..dialects.pg_values import array_catalog
from ..dialects.postgresql import (
    _ROW_KEYWORDS,
    _SESSION_SQL,
    PostgreSQLSupport,
    async_single_statement_cursor,
    begin_statements,
    cursor_class,
    needs_arming,
    session_arguments,
)
from ..options import Options, ResolvedTarget
from ..pools import PoolRegistry, PoolStats
from .deadline import Backoff, current_abort, deadline_passed, shut_down, ticker_for
from .executor import BATCH, Executor, check_work, connection_lost, ended_transaction, in_statement
from .waiting import loop_connection_class, unregister
from .work import Login, ResultBuilder, Statement, Work

__all__ = ["AsyncPool", "AsyncPostgres"]

_SUPPORT = PostgreSQLSupport()
_CANCEL_TIMEOUT = 5.0


class AsyncPool:
    """``size`` psycopg async connections for one target and credential set."""

    def __init__(self, target: ResolvedTarget, username: str, connect_kwargs: dict[str, Any], options: Options,
                 session: tuple[bool, float], backoff: Backoff) -> None:
        self.target, self.username = target, username
        self._backoff = backoff
        self._kwargs = connect_kwargs
        self._options = options
        self._session = session  # (read_only, target timeout): what every new connection is armed with
        self._idle: deque[tuple[Any, float]] = deque()  # (connection, idle since)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self.cursors: dict[Any, Any] = {}  # connection -> its cursor, reused by every request on it
        self.open = 0
        self.in_use = 0
        self.last_used = time.monotonic()
        self.evicted = False  # no longer in the registry: connections are closed as they come back

    async def acquire(self, loop: asyncio.AbstractEventLoop) -> Any:
        deadline = loop.time() + self._options.pool_timeout
        while True:
            while self._idle:
                connection, _ = self._idle.pop()  # the most recently used: the likeliest to be warm
                if connection.closed or not _SUPPORT.is_alive(connection):
                    self._forget(connection)
                    continue
                return connection
            if self.open < self._options.pool_size:
                self._backoff.check(self.target.name)
                self.open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self.open -= 1
                    self._hand_over(None)
                    raise
            connection = await self._wait(loop, deadline)
            if connection is not None:
                return connection
            # None: a connection was closed, so a slot is free; go round and open one.

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float) -> Any:
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # The request went away. If a connection was handed over meanwhile, pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result(), healthy=True)
            raise
        except TimeoutError:
            raise errors.PoolTimeout.busy(self._options.pool_size, self._options.pool_timeout,
                                          self.target.name) from None
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self) -> Any:
        try:
            connection = await loop_connection_class().connect(
                **self._kwargs, autocommit=True, cursor_factory=async_single_statement_cursor())
        except psycopg.Error as exc:
            error = _SUPPORT.translate_connect_error(exc, self.target.name, self.username)
            if isinstance(error, errors.DatabaseUnavailable):
                self._backoff.failed(self.target.name)
            raise error from None
        self._backoff.succeeded(self.target.name)
        connection._sqlhttp_cancel_timeout = self._options.deadline_grace
        try:
            read_only, timeout = self._session
            cursor = self.cursors[connection] = connection.cursor()
            await cursor.execute(_SESSION_SQL, session_arguments(timeout, read_only))
        except BaseException:
            self.cursors.pop(connection, None)
            _finish(connection)
            raise
        return connection

    def release(self, connection: Any, *, healthy: bool) -> None:
        if not healthy or self.evicted or connection.closed:
            self._forget(connection)
            return
        if self._hand_over(connection):
            return
        self._idle.append((connection, time.monotonic()))

    def _hand_over(self, connection: Any) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def _forget(self, connection: Any) -> None:
        self.cursors.pop(connection, None)
        _finish(connection)
        self.open -= 1
        self._hand_over(None)

    def reap(self, now: float, idle_timeout: float) -> int:
        """Close connections idle for ``idle_timeout`` seconds."""
        keep = deque(item for item in self._idle if now - item[1] < idle_timeout)
        reaped = len(self._idle) - len(keep)
        for connection, since in self._idle:
            if now - since >= idle_timeout:
                self.cursors.pop(connection, None)
                _finish(connection)
                self.open -= 1
        self._idle = keep
        return reaped

    def counts(self) -> tuple[int, int]:
        """(open, checked out): a connection is checked out while it is neither idle nor still connecting."""
        return self.open, self.open - len(self._idle)

    def forget(self) -> None:
        """A forked child's copy: the connections are the parent's; drop them unclosed."""
        self.evicted = True
        self._idle.clear()
        self.cursors.clear()
        self._waiters.clear()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self.evicted = True
        for connection, _ in self._idle:
            self.cursors.pop(connection, None)
            _finish(connection)
            self.open -= 1
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(errors.DatabaseUnavailable("the middleware is shutting down"))
        self._waiters.clear()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _finish(connection: Any) -> None:
    # libpq's PQfinish: sends Terminate and closes the socket. Synchronous, so it works from close() too.
    unregister(connection)
    if not connection.closed:
        connection.pgconn.finish()


class _Run:
    """One run's deadlines on the loop (see :mod:`.deadline`): at the deadline a cancel request; at the hard
    deadline, or ``grace`` seconds after the client went away, the socket shut down under the waiting query, which
    fails at once; the connection is then closed, never reused. Watched by the loop's :class:`Ticker`."""

    __slots__ = (
        "_abort",
        "_cancels",
        "_deadline",
        "_hard_at",
        "_ticker",
        "abandoned",
        "aborted",
        "connection",
        "grace",
        "healthy",
        "loop",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: Any, session: Session, grace: float) -> None:
        self.loop, self.connection, self.grace = loop, connection, grace
        self.healthy = False
        self.abandoned = False
        self.aborted = False
        self._cancels: list[asyncio.Task[None]] = []
        self._deadline = session.deadline
        self._hard_at = session.deadline + grace
        self._ticker = ticker_for(loop)
        self._ticker.add(self)
        self._abort = current_abort.get()
        if self._abort is not None:
            self._abort.watch(self._trip)

    def tick(self, now: float) -> None:
        if now >= self._deadline:
            self._cancel()
        if now >= self._hard_at:
            self._abandon()
            self._ticker.discard(self)

    def _cancel(self) -> None:  # the server stops the statement, which then fails with 57014
        if not self._cancels and not self.connection.closed:
            self._cancels.append(self.loop.create_task(self.connection.cancel_safe(timeout=_CANCEL_TIMEOUT)))

    def _abandon(self) -> None:
        if self.abandoned or self.connection.closed:
            return
        self.abandoned = True
        with contextlib.suppress(Exception):
            shut_down(self.connection.pgconn.socket)

    def _trip(self) -> None:  # the client went away; may be called from another thread
        def trip() -> None:
            if not self.aborted:
                self.aborted = True
                self._cancel()
                self._hard_at = min(self._hard_at, time.monotonic() + self.grace)

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(trip)

    async def close(self) -> bool:
        """Stop the timers; True if the connection may be reused (not abandoned, no cancel still on its way)."""
        if self._abort is not None:
            self._abort.watch(None)
        self._ticker.discard(self)
        reusable = not self.abandoned
        for task in self._cancels:  # a cancel already sent must land before the connection serves anyone else
            if reusable:
                try:
                    await asyncio.wait_for(asyncio.shield(task), max(0.0, self._hard_at - time.monotonic()))
                except TimeoutError:
                    reusable = False
                except Exception:  # noqa: S110 - the statement may have ended meanwhile
                    pass
            if not task.done():
                task.cancel()
                task.add_done_callback(_quiet)
        return reusable


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class AsyncPostgres:
    """Runs PostgreSQL queries on the running event loop; one per middleware instance."""

    def __init__(self, executor: Executor, options: Options) -> None:
        self._executor = executor
        self._options = options
        self.registry: PoolRegistry[AsyncPool] = PoolRegistry(options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = current_pid()
        self._reaper: asyncio.TimerHandle | None = None

    # -- pools ----------------------------------------------------------------------------------------------------

    def _pool(self, loop: asyncio.AbstractEventLoop, target: ResolvedTarget, login: Login) -> AsyncPool:
        """The pool for this login, counted in use until ``registry.checkin``."""
        if loop is not self._loop or current_pid() != self._pid:
            self._restart(loop)

        def create() -> AsyncPool:
            limits = self._executor.limits[target.name]
            return AsyncPool(target, login.username, _connect_kwargs(target, login, self._options), self._options,
                             (limits.read_only, limits.timeout), self._executor.backoff)

        return self.registry.checkout(self.registry.key(target, login.username, login.password, login.database),
                                      create)

    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        if current_pid() == self._pid:
            self.close()  # pools of a loop that is gone: their connections can only be closed
        else:
            self.registry.after_fork()  # a forked child: the parent's connections are the parent's
        self._loop, self._pid = loop, current_pid()
        interval = min(max(self._options.idle_timeout / 4, 0.05), 5.0)
        self._reaper = loop.call_later(interval, self._reap, interval)

    def _reap(self, interval: float) -> None:
        self.registry.reap()
        if self._loop is not None and not self._loop.is_closed():
            self._reaper = self._loop.call_later(interval, self._reap, interval)

    def stats(self) -> PoolStats:
        return self.registry.stats()

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        self.registry.close()

    # -- one piece of work -----------------------------------------------------------------------------------------

    async def run(self, work: Work, login: Login, builder: ResultBuilder) -> Any:
        """Run ``work`` with the database ``login``, into ``builder``; returns what ``builder.finish()`` returns, or
        raises an :class:`errors.SQLHTTPError`."""
        check_work(work, self._executor.max_sql_bytes)
        session = self._executor.session(work)
        loop = asyncio.get_running_loop()
        pool = self._pool(loop, work.target, login)
        try:
            try:
                connection = await pool.acquire(loop)
            except (errors.AuthenticationFailed, errors.PermissionDenied, errors.UnknownDatabase):
                self.registry.discard(pool)  # failed logins must not fill the cache
                raise
            run = _Run(loop, connection, session, self._options.deadline_grace)
            try:
                body = await self._execute(connection, pool.cursors[connection], work, builder, session, run)
                run.healthy = True
                return body
            except errors.SQLHTTPError as error:
                run.healthy = not isinstance(error, errors.DatabaseUnavailable)
                raise
            finally:
                healthy = await run.close() and await _leave_no_transaction(connection)
                if run.abandoned:
                    metrics.connection_abandoned(work.target.name, "disconnect" if run.aborted else "deadline")
                pool.release(connection, healthy=healthy)
        finally:
            self.registry.checkin(pool)

    async def _execute(self, connection: Any, cursor: Any, work: Work, builder: ResultBuilder, session: Session,
                       run: _Run) -> Any:
        in_batch = work.transaction is not None
        index = 0
        try:
            if needs_arming(connection, session):
                await cursor.execute(_SESSION_SQL, session_arguments(session.target_timeout, session.read_only))
            if work.transaction is not None:
                for sql in begin_statements(work.transaction, session.read_only):
                    await cursor.execute(sql)
            for index, statement in enumerate(work.statements):
                await self._statement(connection, cursor, index, statement, work, builder)
                if in_batch and not _SUPPORT.in_transaction(connection):
                    raise ended_transaction(index)
            if in_batch:
                await cursor.execute("COMMIT")
            return builder.finish()
        except psycopg.Error as exc:
            if run.abandoned:
                raise deadline_passed(session.timeout, run.grace) from None
            if connection.broken or connection.closed:
                raise connection_lost() from None
            error = _SUPPORT.translate_error(exc, session.timeout)
            if in_batch:
                in_statement(error, index, session.read_only)
            raise error from None

    async def _statement(self, connection: Any, cursor: Any, index: int, statement: Statement, work: Work,
                         builder: ResultBuilder) -> None:
        numeric = statement.paramstyle == "numeric"
        if not work.text_values and (lookup := array_catalog(connection).query()) is not None:
            await cursor.execute(*lookup)  # the array types PolyScale's values need (dialects/postgresql.py)
            array_catalog(connection).store(await cursor.fetchall())
        if numeric or work.text_values:  # a cursor of that kind, kept on the connection like its default one
            kinds = connection.__dict__.setdefault("_sqlhttp_cursors", {})
            cursor = kinds.get((numeric, work.text_values))
            if cursor is None:
                cursor = kinds[numeric, work.text_values] = cursor_class(
                    asynchronous=True, numeric=numeric, text=work.text_values)(connection)
        info = CursorInfo(_SUPPORT, cursor)
        sql, params = statement.sql, list(statement.params)
        if first_keyword(sql) in _ROW_KEYWORDS:
            await _stream(cursor, sql, params, builder, index, info)
        else:
            await cursor.execute(sql, params)
            begun = False
            while cursor.description is not None and (rows := await cursor.fetchmany(BATCH)):
                if not begun:
                    builder.begin(index, info)
                    begun = True
                if not builder.add(rows):
                    break
            if not begun:
                builder.begin(index, info)
        builder.end(info)  # after a cap, it marks the answer truncated or refuses it


async def _stream(cursor: Any, sql: str, params: list[Any], builder: ResultBuilder, index: int,
                  info: CursorInfo) -> None:
    """Feed the builder from libpq's row-by-row mode; stop reading (and cancel the rest) at a cap."""
    rows: list[Any] = []
    begun = False
    stream = cursor.stream(sql, params, size=BATCH)
    try:
        async for row in stream:
            rows.append(row)
            if len(rows) >= BATCH:
                if not begun:
                    builder.begin(index, info)
                    begun = True
                if not builder.add(rows):
                    return
                rows = []
    except psycopg.ProgrammingError as error:
        # A WITH ... INSERT without RETURNING produces no result set: it ran, there is just nothing to read.
        if "didn't produce a result" not in str(error):
            raise
    finally:
        await stream.aclose()  # at a cap: cancels the query on the server and discards what is in flight
    if not begun:
        builder.begin(index, info)
    if rows:
        builder.add(rows)


async def _leave_no_transaction(connection: Any) -> bool:
    """Roll back a transaction the statement opened (``BEGIN``). False: the connection is not fit to reuse."""
    if connection.closed or connection.broken:
        return False
    try:
        if connection.pgconn.transaction_status != TransactionStatus.IDLE:
            await connection.rollback()
    except Exception:
        return False
    return True


def _connect_kwargs(target: ResolvedTarget, login: Login, options: Options) -> dict[str, Any]:
    """psycopg's connect() arguments, made the way the sync engine makes them (SQLAlchemy's dialect)."""
    url = target.url.set(username=login.username, password=login.password, database=login.database)
    params = dict(url.get_dialect()().create_connect_args(url)[1])
    params.update(_SUPPORT.connect_args(options.connect_timeout))
    params.pop("cursor_factory", None)
    _SUPPORT.adjust_connect(params)
    return params
