"""Invalidation stamps: one random 64-bit value per database, changed by every write that may have touched it.

A cached result carries the stamps of its database as they were **before** its statement ran; it answers only
while they are unchanged. Stamps are random, never counted up: a stamp store that restarts, or loses a key, gives
new values, which match nothing cached, instead of values an old entry could match again.

* :class:`ShmStamps`: a file of slots in the host's private directory, mapped by every worker. A key hashes to a
  slot (two keys may share one: a write to either then invalidates both, which is safe); reading or changing a
  slot is one aligned 8-byte access, no lock.
* :class:`RedisStamps`: one key per database in Redis, shared by every host; a missing key is set to a random
  value on first read (``SET NX``), so eviction or a restart cannot resurrect an old stamp.
* :class:`MemoryStamps`: this process only (tests, or a single process).
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import secrets
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["MemoryStamps", "RedisStamps", "ShmStamps", "Stamps"]

_SLOT = struct.Struct("<Q")


class Stamps(ABC):
    blocks: ClassVar[bool] = False  # True when a call is a network round trip

    @abstractmethod
    def read(self, keys: Sequence[str]) -> tuple[int, ...]:
        """The current stamps of ``keys``."""

    @abstractmethod
    def bump(self, keys: Sequence[str]) -> None:
        """Give ``keys`` new stamps: every result cached under the old ones stops answering."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to let go of
        """Let go of what the store holds."""


class MemoryStamps(Stamps):
    def __init__(self) -> None:
        self._stamps: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, keys: Sequence[str]) -> tuple[int, ...]:
        stamps = self._stamps
        if all(key in stamps for key in keys):
            return tuple(stamps[key] for key in keys)
        with self._lock:
            return tuple(stamps.setdefault(key, secrets.randbits(64)) for key in keys)

    def bump(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._stamps[key] = secrets.randbits(64)


class ShmStamps(Stamps):
    """``slots`` stamps in ``directory/cache-stamps``, shared by every process that maps it."""

    def __init__(self, directory: Path, slots: int = 4096) -> None:
        self.slots = slots
        path = directory / "cache-stamps"
        size = slots * _SLOT.size
        if not path.exists():
            # Filled with random stamps under another name, then linked into place: whoever links first wins.
            temporary = directory / f"cache-stamps.{os.getpid()}.{secrets.token_hex(4)}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(descriptor, secrets.token_bytes(size))
            finally:
                os.close(descriptor)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
            temporary.unlink()
        descriptor = os.open(path, os.O_RDWR)
        try:
            if os.fstat(descriptor).st_size != size:
                raise PermissionError(f"{path} is not {size} bytes; delete it while no worker runs")
            self._map = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        self._slots_of: dict[str, int] = {}

    def _slot(self, key: str) -> int:
        slot = self._slots_of.get(key)
        if slot is None:
            digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            slot = self._slots_of[key] = (int.from_bytes(digest, "little") % self.slots) * _SLOT.size
            if len(self._slots_of) > 65536:
                self._slots_of.clear()
        return slot

    def read(self, keys: Sequence[str]) -> tuple[int, ...]:
        unpack, mapped = _SLOT.unpack_from, self._map
        return tuple(unpack(mapped, self._slot(key))[0] for key in keys)

    def bump(self, keys: Sequence[str]) -> None:
        for key in keys:
            _SLOT.pack_into(self._map, self._slot(key), secrets.randbits(64))

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


class RedisStamps(Stamps):
    blocks = True

    def __init__(self, url: str, namespace: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._prefix = f"sqlhttp:{namespace}:cache:stamp:"

    def _names(self, keys: Sequence[str]) -> list[str]:
        return [self._prefix + hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
                for key in keys]

    def read(self, keys: Sequence[str]) -> tuple[int, ...]:
        names = self._names(keys)
        values = self._redis.mget(names)
        if any(value is None for value in values):
            with self._redis.pipeline(transaction=False) as pipe:
                for name, value in zip(names, values, strict=True):
                    if value is None:
                        pipe.set(name, secrets.randbits(63), nx=True)
                pipe.mget(names)
                values = pipe.execute()[-1]
        return tuple(int(value) for value in values)

    def bump(self, keys: Sequence[str]) -> None:
        names = self._names(keys)
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(name, secrets.randbits(63))
            pipe.execute()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._redis.close()
