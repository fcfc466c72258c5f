"""One thread that stops statements at their deadline: on PostgreSQL by a cancel request, on MySQL with ``KILL
QUERY`` for what its own timeout does not cover (max_execution_time covers only SELECT). Arming and disarming cost
a heap operation under a lock; no thread is started per request. Disarming waits for an action already under way,
so a late cancel can never reach the next statement on the same connection."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog"]

logger = logging.getLogger("sqlhttp_middleware.watchdog")

_IDLE_EXIT = 30.0  # seconds with nothing armed after which the thread ends


class Watchdog:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._running: int | None = None  # the handle whose action is under way
        self._closing = False

    def arm(self, deadline: float, action: Callable[[], None]) -> int:
        """Run ``action`` at ``deadline`` (``time.monotonic()``) unless disarmed first. Returns a handle."""
        handle = next(self._ids)
        with self._condition:
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, handle, action))
            self._live.add(handle)
            self._closing = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlhttp-watchdog", daemon=True)
                self._thread.start()
            if earliest:  # otherwise the thread already wakes up sooner than this deadline
                self._condition.notify()
        return handle

    def disarm(self, handle: int) -> None:
        with self._condition:
            self._live.discard(handle)
            while self._running == handle:
                self._condition.wait()
            if len(self._heap) > 2 * len(self._live) + 64:
                # Disarmed entries would wait for their deadlines (and keep their connections referenced):
                # drop them now and then, at a cost shared out over the arms that made them.
                self._heap = [entry for entry in self._heap if entry[1] in self._live]
                heapq.heapify(self._heap)

    def close(self) -> None:
        """Let the thread end (once nothing is armed); an arm after this starts one again."""
        with self._condition:
            self._closing = True
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._condition.wait(wait)
                    elif self._closing or not self._condition.wait(_IDLE_EXIT):
                        # Nothing armed for a while, or the middleware closed: no thread kept for nothing. (An arm
                        # notifies, so a wait that timed out saw none.)
                        self._thread = None
                        self._closing = False
                        return
                _, handle, action = heapq.heappop(self._heap)
                if handle not in self._live:
                    continue
                self._live.discard(handle)
                self._running = handle
            try:
                action()
            except Exception:  # the statement may have ended meanwhile; nothing else to do
                logger.warning("sqlhttp-middleware: the watchdog could not stop a statement", exc_info=True)
            finally:
                with self._condition:
                    self._running = None
                    self._condition.notify_all()
