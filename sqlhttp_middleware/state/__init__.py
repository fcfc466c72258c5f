"""Shared state: the counters that the rate limiter and the login brake keep, on one interface, in one of three
storages.

* ``memory`` (:class:`MemoryStorage`): this process only.
* ``shm`` / ``shm://NAME`` (:class:`~sqlhttp_middleware.state.shm.SharedMemoryStorage`): a memory-mapped file shared
  by every worker process on one host.
* a ``redis://``, ``rediss://`` or ``unix://`` URL (:class:`~sqlhttp_middleware.state.redis.RedisStorage`): every
  host.

The interface is :class:`Storage` (``base.py``). Each storage says in ``Storage.blocks`` whether a call may block on
the network (only Redis does); :func:`storage_blocks` answers the same from a spec string, without opening anything.
"""

from __future__ import annotations

import os

from .base import MemoryStorage, SlidingWindow, Storage, StorageUnavailable, sliding_window_decide

__all__ = [
    "MemoryStorage",
    "SlidingWindow",
    "Storage",
    "StorageUnavailable",
    "make_storage",
    "sliding_window_decide",
    "storage_blocks",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def storage_blocks(spec: str) -> bool:
    """Whether the storage ``spec`` names may block on the network (a Redis URL), without opening it."""
    return spec.split(":", 1)[0] in REDIS_SCHEMES


def make_storage(spec: str, namespace: str) -> Storage:
    """``memory``, ``shm``, ``shm://NAME`` or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    if spec == "memory":
        return MemoryStorage()
    if spec == "shm" or spec.startswith("shm://"):
        from .shm import SharedMemoryStorage, default_directory

        name = spec[len("shm://"):] if spec.startswith("shm://") else f"sqlhttp-{os.getuid()}-{namespace}"
        return SharedMemoryStorage(default_directory() / f"{name}.ratelimit")
    from .redis import RedisStorage

    return RedisStorage(spec, prefix=f"sqlhttp:{namespace}:")
