"""Running work on the sync engines: check out a connection, prepare its session, run each statement within the
deadline, stream the rows into the protocol's result builder within the caps, and leave nothing behind.

Connections run in autocommit mode, so a single statement commits on success and undoes itself on failure without
the extra BEGIN/COMMIT round trips. A batch opens one transaction (with its isolation level and read-only mode;
a read-only target's is always read-only), runs its statements in order, and commits only if all succeed; any
failure rolls it all back and names the statement that failed. A statement that ends the transaction itself
(``COMMIT``) fails the batch. If a single statement opened a transaction (``BEGIN``), it is rolled back before the
connection goes back to the pool: the client has no later request in which to finish it.

Every checkout makes sure of the statement timeout and the read-only mode of the database session, so nothing a
previous request set outlives it (see each dialect's ``prepare_session``). The deadline covers the whole work: a
batch's statements share it.

Rows are read in batches and handed to the builder as they come; reading stops when the builder says a cap was
reached, so an oversized result is never held whole.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Any, cast

from .. import errors, metrics
from ..dialects import DialectSupport, dialect_support
from ..dialects.base import CursorInfo, Session, first_keyword
from ..engines import EngineCache, Lease
from ..options import Options
from ..sqltext import problem
from ..watchdog import Watchdog
from .deadline import Guard, deadline_passed
from .work import Limits, Login, ResultBuilder, Statement, StreamProgram, Work

__all__ = ["BATCH", "Executor", "check_work", "connection_lost", "ended_transaction", "in_statement", "limits_for"]

BATCH = 500  # rows fetched and handed to the builder at a time

# Statements that would end a batch's transaction, which only the engine may do.
_TRANSACTION_CONTROL = frozenset({"begin", "start", "commit", "end", "rollback", "abort"})


def limits_for(options: Options) -> dict[str, Limits]:
    return {
        name: Limits(
            timeout=t.statement_timeout or options.statement_timeout,
            max_rows=t.max_rows or options.max_rows,
            max_bytes=t.max_response_bytes or options.max_response_bytes,
            read_only=t.read_only,
        )
        for name, t in options.targets.items()
    }


def check_work(work: Work, max_sql_bytes: int) -> None:
    """Refuse, before anything runs, SQL text that would hold the database past any deadline (see
    :mod:`..sqltext`), and a batch whose statements would end its transaction themselves."""
    family = work.target.family
    for index, statement in enumerate(work.statements):
        unfit = problem(statement.sql, family, max_sql_bytes)
        if unfit is not None:
            error = errors.BadRequest(unfit if len(work.statements) == 1 else f"statement {index}: {unfit}")
            error.statement = index if work.transaction is not None else None
            raise error
    if work.transaction is None:
        return
    for index, statement in enumerate(work.statements):
        keyword = first_keyword(statement.sql)
        if keyword in _TRANSACTION_CONTROL:
            error = errors.BadRequest(
                f"statement {index} ({keyword.upper()}) would end the batch's transaction; a batch runs in one "
                "transaction that the middleware begins and commits, so send no BEGIN, COMMIT or ROLLBACK in it"
            )
            error.statement = index
            raise error


class Executor:
    """Runs work against the sync engines of one middleware instance."""

    def __init__(self, engines: EngineCache, options: Options) -> None:
        self._engines = engines
        self.backoff = engines.backoff
        self.limits = limits_for(options)
        self.watchdog = Watchdog()
        self.busy_timeout = options.connect_timeout  # sqlite3's timeout, as the engines connect with it
        self.max_sql_bytes = options.max_sql_bytes
        self.grace = options.deadline_grace
        self.sessions: Any = None  # the core's .sessions.Sessions, which runs work on streams
        self.cache: Any = None  # the core's result cache, which a stream's writes invalidate

    def session(self, work: Work) -> Session:
        """The timeout and read-only mode this work runs under; its deadline starts now."""
        limits = self.limits[work.target.name]
        timeout = min(limits.timeout, work.timeout) if work.timeout else limits.timeout
        return Session(timeout=timeout, read_only=limits.read_only, deadline=time.monotonic() + timeout,
                       target_timeout=limits.timeout, busy_timeout=self.busy_timeout)

    def run(self, work: Work, login: Login, builder: ResultBuilder | StreamProgram, *,
            budget: float | None = None) -> Any:
        """Run ``work`` with the database ``login``, into ``builder``; returns what ``builder.finish()`` returns, or
        raises an :class:`errors.SQLHTTPError`.

        With a ``budget`` (SQLite on the event loop), a statement that runs longer, or finds the database locked,
        is interrupted, undone by SQLite, and :class:`errors.RunElsewhere` raised: run it again on a thread.
        """
        if work.stream is not None:
            return self.sessions.run(work, login, builder, budget)
        builder = cast(ResultBuilder, builder)
        check_work(work, self.max_sql_bytes)
        target = work.target
        with self._engines.connection(target, login.username, login.password, login.database) as lease:
            return self._execute(lease, dialect_support(target.family), work, builder, budget)

    def _execute(self, lease: Lease, support: DialectSupport, work: Work, builder: ResultBuilder,
                 budget: float | None) -> Any:
        connection = lease.dbapi_connection
        engine = lease.entry.engine
        dbapi_error: type[BaseException] = engine.dialect.loaded_dbapi.Error
        session = self.session(work)
        work_deadline = session.deadline
        if budget is not None:
            session = replace(session, inline=True, deadline=min(work_deadline, time.monotonic() + budget))
        in_batch = work.transaction is not None
        guard: Guard | None = None
        cursor: Any = None
        index = 0
        try:
            fd = support.socket_fd(connection)
            if fd is not None and fd >= 0:
                # MySQL's and MariaDB's per-statement timeouts cannot hold a batch's one deadline, and MySQL's
                # covers only SELECT: there the watchdog stops whichever statement runs when it passes.
                kills = (in_batch and support.family == "mysql") or support.needs_watchdog(engine.dialect)
                guard = Guard(self.watchdog, soft_at=session.deadline,
                              hard_at=session.deadline + self.grace, grace=self.grace, fd=fd,
                              cancel=partial(support.kill_query, connection, engine) if kills else None)
            support.prepare_session(connection, session, engine.dialect)
            if work.transaction is not None:
                for sql in support.begin(work.transaction, session.read_only):
                    self._plain(connection, sql)
            for index, statement in enumerate(work.statements):
                cursor = self._statement(lease, support, index, statement, work.text_values, builder)
                if in_batch and support.tracks_transactions and not support.in_transaction(connection):
                    raise ended_transaction(index)
                if index < len(work.statements) - 1:
                    self._close_cursor(lease, cursor, dbapi_error)
                    cursor = None
            if in_batch:
                self._plain(connection, "COMMIT")
            body = builder.finish()
        except dbapi_error as exc:
            if guard is not None and guard.abandoned:
                lease.broken = True
                metrics.connection_abandoned(work.target.name, "disconnect" if guard.aborted else "deadline")
                raise deadline_passed(session.timeout, self.grace) from None
            if session.inline and (support.is_busy(exc) or (
                    support.is_timeout(exc) and time.monotonic() < work_deadline)):
                self._leave_no_transaction(lease, support)
                raise errors.RunElsewhere from None
            if engine.dialect.is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                lease.broken = True
                raise connection_lost() from None
            self._leave_no_transaction(lease, support, in_batch)
            error = support.translate_error(exc, session.timeout)
            if in_batch:
                in_statement(error, index, session.read_only)
            raise error from None
        except errors.SQLHTTPError:
            self._leave_no_transaction(lease, support, in_batch)
            raise
        finally:
            if guard is not None and not guard.close():
                lease.broken = True  # given up at the hard deadline, or a cancel could still land on it
            support_end(lease, support, session, dbapi_error)
            self._close_cursor(lease, cursor, dbapi_error)
        self._leave_no_transaction(lease, support)
        return body

    @staticmethod
    def _statement(lease: Lease, support: DialectSupport, index: int, statement: Statement, text_values: bool,
                   builder: ResultBuilder) -> Any:
        cursor, batches = support.execute(lease.dbapi_connection, statement, BATCH, text_values)
        info = CursorInfo(support, cursor)
        begun = False
        for rows in batches:
            if not begun:
                builder.begin(index, info)
                begun = True
            if not builder.add(rows):  # a cap: the builder's end() marks the answer truncated or refuses it
                support.abandon(lease, cursor, batches)
                break
        if not begun:
            builder.begin(index, info)
        builder.end(info)
        return cursor

    @staticmethod
    def _plain(connection: Any, sql: str) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    @staticmethod
    def _close_cursor(lease: Lease, cursor: Any, dbapi_error: type[BaseException]) -> None:
        try:
            if cursor is not None and not lease.broken:
                cursor.close()
        except dbapi_error:
            lease.broken = True

    @staticmethod
    def _leave_no_transaction(lease: Lease, support: DialectSupport, in_batch: bool = False) -> None:
        if lease.broken:
            return
        connection = lease.dbapi_connection
        try:
            if support.in_transaction(connection) or (in_batch and not support.tracks_transactions):
                connection.rollback()
        except Exception:
            lease.broken = True


def support_end(lease: Lease, support: DialectSupport, session: Session, dbapi_error: type[BaseException]) -> None:
    try:
        support.end_session(lease.dbapi_connection, session)
    except dbapi_error:
        lease.broken = True


def connection_lost() -> errors.DatabaseUnavailable:
    return errors.DatabaseUnavailable(
        "the connection to the database was lost while running the statement; it may or may not have been applied"
    )


def in_statement(error: errors.SQLHTTPError, index: int, target_read_only: bool) -> None:
    """Name the batch's statement that failed; a write refused by a read-only batch on a writable target says so."""
    error.statement = index
    if isinstance(error, errors.ReadOnlyTarget) and not target_read_only:
        error.message = f"the batch is read-only: {error.database_message}"


def ended_transaction(index: int) -> errors.SQLHTTPError:
    """A batch's statement ended its transaction itself; what ran before it may have been committed."""
    error = errors.DatabaseError(
        f"statement {index} ended the batch's transaction; what ran before it may have been committed. A batch "
        "runs in one transaction: send no statement that commits (on MySQL and MariaDB, DDL commits implicitly)"
    )
    error.statement = index
    return error
