"""The interface of shared state (the counters the rate limiter and the login brake keep), and the per-process memory
storage.

The shape follows the ``limits`` library's sliding-window storages (``acquire_sliding_window_entry`` and
``get_sliding_window``, alisaifee/limits ``storage/base.py``), so the same limiter runs on memory, shared memory or
Redis. One difference: ``acquire_sliding_window_entry`` returns the window it decided on, so the rate-limit headers
cost no second round trip.

The algorithm is the sliding window counter: time is cut into fixed windows of ``expiry`` seconds; a key keeps the
count of the current window and of the previous one, and a request is admitted while
``previous * (1 - elapsed / expiry) + current + amount <= limit``.

Every storage says, in its class attribute ``blocks``, whether a call may block on the network: ``False`` for
memory and shared memory (a call costs microseconds and never waits on anything but a local lock), ``True`` for
Redis (a round trip, up to its socket timeout). Async callers run a storage whose ``blocks`` is true on a thread,
and call the others inline on the event loop. A storage that does not say is taken to block.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, NamedTuple

__all__ = ["MemoryStorage", "SlidingWindow", "Storage", "StorageUnavailable", "sliding_window_decide"]


class StorageUnavailable(Exception):
    """The shared counter cannot be reached (Redis down). The limiter decides whether to admit or refuse."""


class SlidingWindow(NamedTuple):
    # A NamedTuple, not a frozen dataclass: it is built on every request, and this is three times cheaper.
    admitted: bool
    previous: int  # count of the previous window
    current: int  # count of the current window, including this request if it was admitted
    elapsed: float  # seconds since the current window began
    expiry: float  # the window's length in seconds

    def estimate(self) -> float:
        return self.previous * (1 - self.elapsed / self.expiry) + self.current

    def remaining(self, limit: int) -> int:
        return max(0, math.floor(limit - self.estimate()))

    def retry_after(self, limit: int) -> float:
        """Seconds until one more request would be admitted."""
        left_in_window = self.expiry - self.elapsed
        if self.current + 1 <= limit:
            if self.previous == 0:
                return 0.0
            # previous * (1 - (elapsed + t) / expiry) + current + 1 <= limit
            needed = self.expiry * (1 - (limit - self.current - 1) / self.previous) - self.elapsed
            return max(0.0, min(needed, left_in_window))
        # The current window alone is full: wait for it to become the previous one and decay enough.
        if limit < 1:
            return left_in_window + self.expiry
        return left_in_window + max(0.0, self.expiry * (1 - (limit - 1) / self.current))


def sliding_window_decide(previous: int, current: int, elapsed: float, expiry: float, limit: int,
                          amount: int) -> bool:
    return previous * (1 - elapsed / expiry) + current + amount <= limit


class Storage(ABC):
    """Counts requests per key in sliding windows, atomically for every process that shares it."""

    #: Whether a call may block on the network (see the module docstring); the safe answer unless a storage says.
    blocks: ClassVar[bool] = True

    @abstractmethod
    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: float, amount: int = 1) -> SlidingWindow:
        """Count ``amount`` against ``key`` if that keeps it within ``limit`` per ``expiry`` seconds."""

    @abstractmethod
    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        """The current state of ``key``'s window, without counting anything (``admitted`` is True)."""

    def clear(self, key: str) -> None:  # noqa: B027 - optional for storages
        """Forget ``key``'s counts."""

    def close(self) -> None:  # noqa: B027 - optional for storages
        """Release files, mappings or connections."""


class MemoryStorage(Storage):
    """One process's counters: right for a single-process server, wrong for several workers (each counts alone)."""

    blocks: ClassVar[bool] = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int, int]] = {}  # key -> (window index, previous, current)
        self._clock = clock

    def _state(self, key: str, expiry: float, now: float) -> tuple[int, int, int, float]:
        index = int(now // expiry)
        stored_index, previous, current = self._windows.get(key, (index, 0, 0))
        if stored_index == index - 1:
            previous, current = current, 0
        elif stored_index != index:
            previous, current = 0, 0
        return index, previous, current, now - index * expiry

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: float, amount: int = 1) -> SlidingWindow:
        with self._lock:
            index, previous, current, elapsed = self._state(key, expiry, self._clock())
            admitted = sliding_window_decide(previous, current, elapsed, expiry, limit, amount)
            if admitted:
                current += amount
            self._windows[key] = (index, previous, current)
        return SlidingWindow(admitted, previous, current, elapsed, expiry)

    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        with self._lock:
            _, previous, current, elapsed = self._state(key, expiry, self._clock())
        return SlidingWindow(True, previous, current, elapsed, expiry)

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)
