"""A stream: one pooled connection that runs a client's statements one at a time, across as many requests as its
session lasts (see :mod:`.sessions`), leaving any transaction the client opened as it is.

Each statement gets the deadline of a request of its own (the target's statement timeout, the watchdog where the
database needs one, the hard deadline at which the connection is given up), the caps of the answer it goes into,
and the read-only mode of its target, or of the read-only transaction the client opened. A failed statement
answers its error and leaves the stream usable; a lost connection, or one given up at its hard deadline, breaks
the stream, which then answers nothing more.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from .. import errors, metrics
from ..dialects import DialectSupport, dialect_support
from ..dialects.base import Session, first_keyword
from ..engines import Lease
from ..options import ResolvedTarget
from .deadline import Guard, deadline_passed
from .executor import Executor, connection_lost, support_end
from .work import Limits, ResultBuilder, Statement

__all__ = ["StreamConnection"]

# Statements that change the connection itself (not its data): a stream that ran one closes its connection when it
# ends, rather than pool it with what it set.
_CONNECTION_STATE = frozenset({"set", "use", "pragma", "attach", "detach"})
# Statements that change no data themselves: they open, mark or end a transaction.
_TRANSACTION_WORDS = frozenset({"begin", "start", "commit", "end", "savepoint", "release", "rollback"})


class StreamConnection:
    """The statements of a stream, run on its one leased connection."""

    def __init__(self, executor: Executor, lease: Lease, target: ResolvedTarget, database: str = "", *,
                 budget: float | None = None, text_values: bool = False) -> None:
        self.executor = executor
        self.lease = lease
        self.target = target
        self.database = database
        cache = executor.cache
        self._cache = cache if cache is not None and cache.watches(target) else None
        self._unsaid = False  # writes the result cache has not been told of: it is, when they commit
        self.support: DialectSupport = dialect_support(target.family)
        self.limits: Limits = executor.limits[target.name]
        self.budget = budget  # on the event loop: a statement past it (or meeting a lock) raises RunElsewhere
        self.read_only_transaction = False  # the client opened a read-only transaction: no writes until it ends
        self.statements = 0  # run on this connection, this request
        self.state: dict[str, Any] = {}  # what the protocol keeps on the stream (libSQL's stored SQL texts)
        self.text_values = text_values  # values as the database's own text (PlanetScale's bytes)
        self.changed = False  # it ran a SET, USE or PRAGMA: not to be pooled again
        self._dbapi_error: type[BaseException] = lease.entry.engine.dialect.loaded_dbapi.Error

    @property
    def broken(self) -> bool:
        return self.lease.broken

    @property
    def in_transaction(self) -> bool:
        return not self.lease.broken and self.support.in_transaction(self.lease.dbapi_connection)

    def execute(self, index: int, statement: Statement, builder: ResultBuilder, *, prepare: bool = True) -> None:
        """Run ``statement`` into ``builder`` (``index``: its place in the answer). Its failure is raised as an
        :class:`errors.SQLHTTPError`; a transaction stays open whatever happens, unless the database ended it.
        ``prepare=False``: the statement before prepared the session, and what it set must reach this one (a
        ``SET TRANSACTION`` and its ``BEGIN``)."""
        if self.lease.broken:
            raise errors.DatabaseUnavailable("the stream's connection was lost; open a new stream")
        if first_keyword(statement.sql) in _CONNECTION_STATE:
            self.changed = True
        executor, support, lease = self.executor, self.support, self.lease
        connection = lease.dbapi_connection
        engine = lease.entry.engine
        timeout = self.limits.timeout
        now = time.monotonic()
        deadline = now + timeout
        inline = self.budget is not None
        session = Session(timeout=timeout, read_only=self.limits.read_only or self.read_only_transaction,
                          deadline=min(deadline, now + self.budget) if self.budget is not None else deadline,
                          target_timeout=timeout, inline=inline, busy_timeout=executor.busy_timeout)
        grace = executor.grace
        self.statements += 1
        guard: Guard | None = None
        cursor: Any = None
        try:
            fd = support.socket_fd(connection)
            if fd is not None and fd >= 0:
                kills = support.needs_watchdog(engine.dialect)
                guard = Guard(executor.watchdog, soft_at=deadline, hard_at=deadline + grace, grace=grace, fd=fd,
                              cancel=partial(support.kill_query, connection, engine) if kills else None)
            if prepare and (support.family == "sqlite" or not support.in_transaction(connection)):
                # MySQL refuses to change a transaction's read-only mode inside it; its timeouts, set before the
                # transaction began, still hold each statement (and the watchdog stops what they do not cover).
                support.prepare_session(connection, session, engine.dialect)
            cursor = Executor._statement(lease, support, index, statement, self.text_values, builder)
        except self._dbapi_error as exc:
            if guard is not None and guard.abandoned:
                lease.broken = True
                metrics.connection_abandoned(self.target.name, "disconnect" if guard.aborted else "deadline")
                raise deadline_passed(timeout, grace) from None
            if inline and (support.is_busy(exc) or (support.is_timeout(exc) and time.monotonic() < deadline)):
                raise errors.RunElsewhere from None
            if engine.dialect.is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                lease.broken = True
                raise connection_lost() from None
            raise support.translate_error(exc, timeout) from None
        finally:
            if guard is not None and not guard.close():
                lease.broken = True
            support_end(lease, support, session, self._dbapi_error)
            Executor._close_cursor(lease, cursor, self._dbapi_error)
            if self.read_only_transaction and not self.in_transaction:
                self.read_only_transaction = False
            if self._cache is not None:
                self._told(statement)

    def _told(self, statement: Statement) -> None:
        """Tell the result cache of this stream's writes once they committed (or their outcome is unknown)."""
        assert self._cache is not None
        keyword = first_keyword(statement.sql)
        if keyword == "rollback" and not self.lease.broken and not self.in_transaction:
            self._unsaid = False  # undone (a ROLLBACK TO keeps the transaction open, and what it said)
            return
        if not self._unsaid and keyword not in _TRANSACTION_WORDS and not self._cache.reads_only(self.target,
                                                                                                 statement):
            self._unsaid = True
        if self._unsaid and (self.lease.broken or not self.in_transaction):
            self._unsaid = False
            self._cache.written(self.target, self.database)

    def rollback(self) -> None:
        """End any transaction still open (the stream is closing, or expired); a connection whose state the
        client changed is marked broken, to be closed rather than pooled."""
        if self.lease.broken:
            if self._unsaid and self._cache is not None:  # its writes may or may not have committed
                self._unsaid = False
                self._cache.written(self.target, self.database)
            return
        try:
            if self.support.in_transaction(self.lease.dbapi_connection):
                self.lease.dbapi_connection.rollback()
        except Exception:
            self.lease.broken = True
        self._unsaid = False  # rolled back (or, broken, the database rolls it back)
        if self.changed:
            self.lease.broken = True
