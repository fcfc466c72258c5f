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

The storages on one host hold a bounded number of keys, and keep to three rules so that no flood of new keys can
reset a count that matters:

* a key's counts are dropped only once they are **expired**: both of its windows are over, so they weigh nothing
  (the time is compared, never window numbers of windows of different lengths);
* **pinned** keys (the mount's counter, the targets' counters, the fallback keys) are never dropped, and always find
  room;
* a key for which there is no room raises :class:`NoRoom`, and the caller counts it against a pinned fallback key
  instead: it is limited with others, never let through.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import ClassVar, NamedTuple

__all__ = ["MAX_MEMORY_KEYS", "MemoryStorage", "NoRoom", "SlidingWindow", "Storage", "StorageUnavailable",
           "sliding_window_decide", "warn_overflow"]

logger = logging.getLogger("sqlhttp_middleware.state")

#: The most unpinned keys a :class:`MemoryStorage` holds, whatever the bound it is given (about 250 bytes each).
MAX_MEMORY_KEYS = 1 << 17
MIN_MEMORY_KEYS = 1024


class StorageUnavailable(Exception):
    """The shared counter cannot be reached (Redis down), or refuses to write (Redis at ``maxmemory``). The limiter
    decides whether to admit or refuse."""


class NoRoom(Exception):
    """The storage holds nothing for this key and has no room for it: every place it could take holds live counts.
    Count (or read) it under a pinned fallback key instead."""


_last_overflow_warning = -math.inf


def warn_overflow(key: str, fallback: str) -> None:
    """Say, at most once a minute per process, that keys are being counted under a fallback."""
    global _last_overflow_warning
    now = time.monotonic()
    if now - _last_overflow_warning >= 60:
        _last_overflow_warning = now
        logger.warning("sqlhttp-middleware: the rate-limit storage has no room for a new %s key; counting such keys "
                       "under %r. Raise rate_limit_slots if this is not a flood.", key.split(":", 1)[0], fallback)


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
        """Count ``amount`` against ``key`` if that keeps it within ``limit`` per ``expiry`` seconds. NoRoom: the
        storage holds nothing for ``key`` and has no room for it (never for a pinned key)."""

    @abstractmethod
    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        """The current state of ``key``'s window, without counting anything (``admitted`` is True), and without
        taking room for it. NoRoom: as for :meth:`acquire_sliding_window_entry`, so the caller reads the fallback
        it would have counted under."""

    def clear(self, key: str) -> None:  # noqa: B027 - optional for storages
        """Forget ``key``'s counts."""

    def close(self) -> None:  # noqa: B027 - optional for storages
        """Release files, mappings or connections."""


class MemoryStorage(Storage):
    """One process's counters: right for a single-process server, wrong for several workers (each counts alone).

    At most ``max_keys`` unpinned keys (bounded by :data:`MAX_MEMORY_KEYS`); pinned keys come on top. Keys are kept
    per window length in the order they were last written, which within one window length is the order in which
    they expire, so the expired ones are dropped from the front, and a full storage of live keys raises
    :class:`NoRoom`.
    """

    blocks: ClassVar[bool] = False

    def __init__(self, clock: Callable[[], float] = time.time, *, max_keys: int = MAX_MEMORY_KEYS,
                 pinned: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        # window length -> key -> (window index, previous, current), least recently written first
        self._windows: dict[float, OrderedDict[str, tuple[int, int, int]]] = {}
        self._clock = clock
        self._pinned = frozenset(pinned)
        self.max_keys = max(1, min(max_keys, MAX_MEMORY_KEYS))
        self._unpinned = 0  # keys held that are not pinned

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._windows.values())

    def _room(self, key: str, now: float) -> None:
        """Under the lock, before ``key`` is added: make room by dropping expired keys, or raise NoRoom."""
        if key in self._pinned or self._unpinned < self.max_keys:
            return
        for expiry, keys in self._windows.items():
            while keys:
                oldest, (index, _, _) = next(iter(keys.items()))
                if (index + 2) * expiry > now:
                    break  # live, and so is every key written after it
                del keys[oldest]
                if oldest not in self._pinned:
                    self._unpinned -= 1
        if self._unpinned >= self.max_keys:
            raise NoRoom(key)

    def _state(self, key: str, expiry: float, now: float) -> tuple[bool, int, int, int, float]:
        index = int(now // expiry)
        stored = self._windows.setdefault(expiry, OrderedDict()).get(key)
        if stored is None:
            self._room(key, now)
            return False, index, 0, 0, now - index * expiry
        stored_index, previous, current = stored
        if stored_index == index - 1:
            previous, current = current, 0
        elif stored_index < index - 1:
            previous, current = 0, 0  # expired (a clock that stepped back keeps its counts: never a reset)
        return True, index, previous, current, now - index * expiry

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: float, amount: int = 1) -> SlidingWindow:
        with self._lock:
            held, index, previous, current, elapsed = self._state(key, expiry, self._clock())
            admitted = sliding_window_decide(previous, current, elapsed, expiry, limit, amount)
            if admitted:
                current += amount
            if admitted or held:
                keys = self._windows[expiry]
                if not held and key not in self._pinned:
                    self._unpinned += 1
                keys[key] = (index, previous, current)
                keys.move_to_end(key)
        return SlidingWindow(admitted, previous, current, elapsed, expiry)

    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        with self._lock:
            _, _, previous, current, elapsed = self._state(key, expiry, self._clock())
        return SlidingWindow(True, previous, current, elapsed, expiry)

    def clear(self, key: str) -> None:
        with self._lock:
            for keys in self._windows.values():
                if keys.pop(key, None) is not None and key not in self._pinned:
                    self._unpinned -= 1
