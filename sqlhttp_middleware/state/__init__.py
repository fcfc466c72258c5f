"""Shared state: the counters that the rate limiter and the login brake keep, on one interface, in one of three
storages.

* ``memory`` (:class:`MemoryStorage`): this process only.
* ``shm`` / ``shm://NAME`` (:class:`~sqlhttp_middleware.state.shm.SharedMemoryStorage`): a memory-mapped file shared
  by every worker process on one host.
* a ``redis://``, ``rediss://`` or ``unix://`` URL (:class:`~sqlhttp_middleware.state.redis.RedisStorage`): every
  host.

The interface is :class:`Storage` (``base.py``). Each storage says in ``Storage.blocks`` whether a call may block on
the network (only Redis does); :func:`storage_blocks` answers the same from a spec string, without opening anything.

Every storage is bounded: memory and shared memory hold a number of keys sized from a bound on the keys live at
once, never drop a live or pinned key, and raise :class:`NoRoom` for a key they cannot hold; Redis gives every key a
TTL of two windows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .base import (
    MAX_MEMORY_KEYS,
    MIN_MEMORY_KEYS,
    MemoryStorage,
    NoRoom,
    SlidingWindow,
    Storage,
    StorageUnavailable,
    sliding_window_decide,
    warn_overflow,
)

__all__ = [
    "MemoryStorage",
    "NoRoom",
    "SlidingWindow",
    "Storage",
    "StorageUnavailable",
    "make_storage",
    "sliding_window_decide",
    "storage_blocks",
    "warn_overflow",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def storage_blocks(spec: str) -> bool:
    """Whether the storage ``spec`` names may block on the network (a Redis URL), without opening it."""
    return spec.split(":", 1)[0] in REDIS_SCHEMES


def make_storage(spec: str, namespace: str, *, pinned: Iterable[str] = (), live_keys: int | None = None,
                 slots: int = 0) -> Storage:
    """``memory``, ``shm``, ``shm://NAME`` or a ``redis://`` / ``rediss://`` / ``unix://`` URL.

    ``pinned``: keys never dropped (the mount's counter, the fallbacks). ``live_keys``: how many other keys can be
    live at once (``None``: no bound is known), which sizes the shared-memory table (``slots``, when not 0, sizes
    it instead) and the memory storage.
    """
    if spec == "memory":
        max_keys = MAX_MEMORY_KEYS if live_keys is None else max(MIN_MEMORY_KEYS, live_keys)
        return MemoryStorage(max_keys=max_keys, pinned=pinned)
    if spec == "shm" or spec.startswith("shm://"):
        from .shm import SharedMemoryStorage, default_directory, slots_for

        name = spec[len("shm://"):] if spec.startswith("shm://") else f"sqlhttp-{os.getuid()}-{namespace}"
        return SharedMemoryStorage(default_directory() / f"{name}.ratelimit", slots=slots or slots_for(live_keys),
                                   pinned=pinned)
    from .redis import RedisStorage

    return RedisStorage(spec, prefix=f"sqlhttp:{namespace}:")
