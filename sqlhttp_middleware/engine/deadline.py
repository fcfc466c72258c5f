"""Deadlines every fault respects, a request's way to stop its own work, and the back-off that spares a database
that is down.

A statement has two deadlines. At the **deadline** (its timeout) the database is asked to stop it: PostgreSQL by a
cancel request, MySQL by ``KILL QUERY`` (the databases' own timeouts fire then too). A database that is frozen, or
behind a black-holed network path, or still lexing a pathological text, answers neither the statement nor the
cancel; so at the **hard deadline** (the deadline plus ``deadline_grace``) the connection's socket is shut down
under the call that waits on it. The call fails at once, the request answers 504, and the connection is closed,
never returned to its pool, so its slot is free for the next request. Nothing then waits on the operating system's
TCP timeouts.

On the thread path (:class:`Guard`) the watchdog thread only shuts sockets down, which never blocks; cancels, which
open a connection to the server and may wait on it, run on threads of their own, so a database that does not
answer a cancel delays no other target's deadlines. On the event loop the same two steps are loop timers
(:mod:`.aio`).

A request whose client went away is stopped the same way, sooner: :class:`Abort` is the request's handle, set by
the adapter (ASGI's ``http.disconnect``) and watched by whatever runs the request's statement, on the loop or on a
thread; it reaches threads through a context variable.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from .. import errors
from ..watchdog import Watchdog

__all__ = ["Abort", "Backoff", "ClientWatch", "Guard", "Ticker", "current_abort", "deadline_passed", "shut_down",
           "ticker_for"]

logger = logging.getLogger("sqlhttp_middleware.engine")


def shut_down(fd: int, how: int = socket.SHUT_RDWR) -> None:
    """Shut the socket ``fd`` down (for reading and writing): a call blocked on it returns at once. Never blocks."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(how)
    except OSError:
        pass  # already closed by the peer
    finally:
        sock.detach()  # the descriptor stays its owner's


def deadline_passed(timeout: float, grace: float) -> errors.StatementTimeout:
    return errors.StatementTimeout(
        f"the database did not answer within the statement timeout of {timeout:g} s and a grace of {grace:g} s; "
        "the connection was closed (the statement may or may not have been applied)"
    )


class Abort:
    """A request's way to stop its own work when its client goes away: :meth:`abort` runs the action the current
    statement registered (at once if one is registered later)."""

    __slots__ = ("_action", "_lock", "aborted")

    def __init__(self) -> None:
        self.aborted = False
        self._action: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def watch(self, action: Callable[[], None] | None) -> None:
        """Run ``action`` when the request is aborted (None: nothing to run any more)."""
        with self._lock:
            self._action = action
            aborted = self.aborted
        if aborted and action is not None:
            action()

    def abort(self) -> None:
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
            action = self._action
        if action is not None:
            action()


#: The request's :class:`Abort`, for code that runs it on a thread (the adapter copies its context there).
current_abort: contextvars.ContextVar[Abort | None] = contextvars.ContextVar("sqlhttp_abort", default=None)


class ClientWatch:
    """While a request runs on a WSGI server that hands us the client's socket: every ``interval`` seconds, a look
    (without reading) at whether the client has closed it; if it has, the request's :class:`Abort` fires. Requests
    that end sooner cost one watchdog entry and no look."""

    def __init__(self, watchdog: Watchdog, fd: int, abort: Abort, interval: float = 0.5) -> None:
        self._watchdog, self._fd, self._abort, self._interval = watchdog, fd, abort, interval
        self._lock = threading.Lock()
        self._closed = False
        self._handle = watchdog.arm(time.monotonic() + interval, self._look)

    def _look(self) -> None:  # on the watchdog thread: a non-blocking peek
        with self._lock:
            if self._closed:
                return
            if not _peer_closed(self._fd):
                self._handle = self._watchdog.arm(time.monotonic() + self._interval, self._look)
                return
        self._abort.abort()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handle = self._handle
        self._watchdog.disarm(handle)


def _peer_closed(fd: int) -> bool:
    """True when the peer of ``fd`` has closed the connection (a peek reads end of file)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # nothing to read: still there
    except OSError:
        return True  # reset
    finally:
        sock.detach()


class Guard:
    """One run's deadlines on a sync connection whose socket is ``fd``.

    At ``soft_at``, ``cancel`` runs on a thread of its own; at ``hard_at`` (or ``grace`` seconds after the request
    is aborted) the socket is shut down and :attr:`abandoned` set: the connection must be closed, not reused.
    :meth:`close` disarms both, and says whether the connection may go back to its pool.
    """

    def __init__(self, watchdog: Watchdog, *, soft_at: float, hard_at: float, grace: float,
                 cancel: Callable[[], None] | None, fd: int) -> None:
        self._watchdog = watchdog
        self._cancel = cancel
        self._hard_at = hard_at
        self._grace = grace
        self._fd = os.dup(fd)  # ours: the connection may close its own descriptor at any moment
        self._lock = threading.Lock()
        self._closed = False
        self._canceller: threading.Thread | None = None
        self.abandoned = False
        self.aborted = False
        first = soft_at if cancel is not None and soft_at < hard_at else hard_at
        self._handles = [watchdog.arm(first, self._soft if first < hard_at else self._hard)]
        self._abort = current_abort.get()
        if self._abort is not None:
            self._abort.watch(self.trip)

    def _soft(self) -> None:  # on the watchdog thread: must not block
        with self._lock:
            if self._closed:
                return
            self._start_cancel()
            self._handles.append(self._watchdog.arm(self._hard_at, self._hard))

    def _hard(self) -> None:  # on the watchdog thread: shutting a socket down never blocks
        with self._lock:
            if self._closed or self.abandoned:
                return
            self.abandoned = True
            shut_down(self._fd)

    def trip(self) -> None:
        """The client went away: cancel now, and give the connection up ``grace`` seconds later."""
        with self._lock:
            if self._closed or self.aborted:
                return
            self.aborted = True
            self._start_cancel()
            self._handles.append(self._watchdog.arm(time.monotonic() + self._grace, self._hard))

    def _start_cancel(self) -> None:
        if self._cancel is not None and self._canceller is None:
            self._canceller = threading.Thread(target=self._run_cancel, name="sqlhttp-cancel", daemon=True)
            self._canceller.start()

    def _run_cancel(self) -> None:
        assert self._cancel is not None
        try:
            self._cancel()
        except Exception as exc:  # the statement may have ended meanwhile, or the server does not answer
            logger.info("sqlhttp-middleware: a cancel did not reach the database (%s)", type(exc).__name__)

    def close(self) -> bool:
        """Disarm; True if the connection may be reused (never abandoned, and no cancel still on its way)."""
        if self._abort is not None:
            self._abort.watch(None)
        with self._lock:
            self._closed = True
            handles = list(self._handles)
        for handle in handles:
            self._watchdog.disarm(handle)  # waits for an action under way
        reusable = not self.abandoned
        if reusable and self._canceller is not None:
            # A cancel still on its way could stop the next request's statement: wait for it, up to the hard
            # deadline, and give the connection up if it has not landed by then.
            self._canceller.join(max(0.0, self._hard_at - time.monotonic()))
            reusable = not self._canceller.is_alive()
        os.close(self._fd)
        return reusable


class Ticking(Protocol):
    def tick(self, now: float) -> None:
        """``now`` is ``time.monotonic()``; called every :data:`Ticker.INTERVAL` seconds while registered."""


class Ticker:
    """One timer per event loop, every :data:`INTERVAL` seconds while anything is registered, for the deadlines of
    everything running on it: a deadline seconds away, which nearly every request beats, costs a set entry added
    and removed, not a timer armed and cancelled (each of those was a heap push onto the loop's timers and a
    handle). Deadlines are met to within :data:`INTERVAL`."""

    INTERVAL = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: dict[Ticking, None] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Ticking) -> None:
        self._items[item] = None
        if self._handle is None:
            self._handle = self._loop.call_later(self.INTERVAL, self._tick)

    def discard(self, item: Ticking) -> None:
        self._items.pop(item, None)

    def _tick(self) -> None:
        self._handle = None
        now = time.monotonic()
        for item in list(self._items):
            try:
                item.tick(now)
            except Exception:  # one item's failure must not stop the others' deadlines
                logger.exception("sqlhttp-middleware: a deadline check failed")
        if self._items and not self._loop.is_closed():
            self._handle = self._loop.call_later(self.INTERVAL, self._tick)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()
_last_ticker: tuple[asyncio.AbstractEventLoop | None, Ticker | None] = (None, None)


def ticker_for(loop: asyncio.AbstractEventLoop) -> Ticker:
    """The loop's :class:`Ticker` (made on first use)."""
    global _last_ticker
    last_loop, last = _last_ticker
    if last_loop is loop and last is not None:
        return last
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = Ticker(loop)
    _last_ticker = (loop, ticker)
    return ticker


class Backoff:
    """Per target: after a connect that found the database unreachable, the next attempt waits a pause that starts
    at :data:`FIRST` seconds and doubles up to ``maximum``, with jitter; meanwhile requests that need a connection
    answer 503 at once. A connect that succeeds ends it."""

    FIRST = 0.1

    def __init__(self, maximum: float) -> None:
        self._maximum = maximum
        self._state: dict[str, tuple[float, float]] = {}  # target -> (retry at, current pause)
        self._lock = threading.Lock()

    def check(self, target: str) -> None:
        """Raise 503 at once while ``target`` is in its pause."""
        state = self._state.get(target)
        if state is None:
            return
        wait = state[0] - time.monotonic()
        if wait > 0:
            from .. import metrics

            metrics.connect_refused_fast(target)
            raise errors.DatabaseUnavailable(
                f"the database of target {target!r} could not be reached a moment ago; the next attempt is in "
                f"{wait:.1f} s", headers={"Retry-After": str(max(1, round(wait)))})

    def failed(self, target: str) -> None:
        with self._lock:
            _, pause = self._state.get(target, (0.0, 0.0))
            pause = min(self._maximum, pause * 2 if pause else self.FIRST)
            self._state[target] = (time.monotonic() + pause * random.uniform(0.5, 1.0), pause)  # noqa: S311

    def succeeded(self, target: str) -> None:
        if target in self._state:
            with self._lock:
                self._state.pop(target, None)
