"""Sliding-window counters in a memory-mapped file, shared by every worker process on one host.

Modelled on prometheus_client's multiprocess mode: a plain file on a tmpfs (``/dev/shm``), mapped with ``mmap``,
with a documented byte layout, opened afresh in each process (and again after a fork), and nothing that a SIGKILLed
worker can leave locked.

* **Locking.** Each read-modify-write holds a POSIX record lock (``fcntl.lockf``) on the file. The kernel releases it
  when its holder dies, even by SIGKILL, so no worker can stall the others for longer than one update. (A
  ``multiprocessing.Lock`` or POSIX semaphore held by a killed process is never released.) Record locks do not
  exclude threads of one process from each other, so a thread lock is held around it too.
* **No resource tracker.** The segment is an ordinary file, not ``multiprocessing.shared_memory``, whose resource
  tracker (before Python 3.13) may unlink a segment when the process that created it exits. Nothing of ours ever
  unlinks the file: counts survive worker recycling and restarts.

Layout (little-endian):

==========  ======  ===================================================================
offset      size    field
==========  ======  ===================================================================
0           8       magic ``b"SQLHTRL1"``
8           4       layout version (1)
12          4       number of slots N
16          48      reserved (zero)
64 + 32*i   8       slot i: key hash (blake2b-64 of the key; 0 = empty)
+8          8       slot i: index of the current window (``floor(time / expiry)``), signed
+16         8       slot i: count of the previous window
+24         8       slot i: count of the current window
==========  ======  ===================================================================

Slots are found by open addressing (linear probing from ``hash % N``). A slot whose window is older than the
previous one holds nothing that matters and is reused when the table is full.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from .._process import current_pid
from .base import SlidingWindow, Storage

__all__ = ["SharedMemoryStorage", "default_directory"]

MAGIC = b"SQLHTRL1"
VERSION = 1
HEADER = struct.Struct("<8sII48x")
SLOT = struct.Struct("<Qqqq")
DEFAULT_SLOTS = 4096
_PROBES = 64


def default_directory() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs by design; the file is created 0600 and owned by us
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _key_hash(key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1  # 0 marks an empty slot


class SharedMemoryStorage(Storage):
    """Counters in ``path``, shared by every process that opens it."""

    blocks: ClassVar[bool] = False  # a local file lock, held for microseconds

    def __init__(self, path: str | os.PathLike[str], slots: int = DEFAULT_SLOTS,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self.slots = slots
        self._size = HEADER.size + SLOT.size * slots
        self._thread_lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._hashes: dict[str, int] = {}
        self._offsets: dict[str, int] = {}  # where each key was last found; checked before use
        self._open()

    # -- the file -------------------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # /dev/shm is shared by every user: never follow a planted symlink, never use a file someone else owns.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise PermissionError(f"{self.path} belongs to another user; refusing to share counts with it")
            os.fchmod(fd, 0o600)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                self._prepare(fd)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, self._size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._pid = current_pid()
        self._thread_lock = threading.Lock()

    def _prepare(self, fd: int) -> None:
        """Under the file lock: give a new (or foreign-layout) file our header and empty slots."""
        if os.fstat(fd).st_size >= HEADER.size:
            magic, version, slots = HEADER.unpack(os.pread(fd, HEADER.size, 0))
            if (magic, version, slots) == (MAGIC, VERSION, self.slots) and os.fstat(fd).st_size >= self._size:
                return
        os.ftruncate(fd, 0)
        os.ftruncate(fd, self._size)
        os.pwrite(fd, HEADER.pack(MAGIC, VERSION, self.slots), 0)

    def _ensure_open(self) -> mmap.mmap:
        if self._pid != current_pid():
            # A forked child: its parent's record locks are not its own, and its thread lock may be held by a
            # thread that does not exist here. Open our own descriptor and mapping.
            self._map = None
            self._open()
        assert self._map is not None
        return self._map

    # -- slots ----------------------------------------------------------------------------------------------------

    def _find(self, buffer: mmap.mmap, key_hash: int, index: int) -> int:
        """Offset of the slot for ``key_hash``: its own, an empty one, or a stale one to reuse."""
        start = key_hash % self.slots
        reusable = -1
        for probe in range(min(_PROBES, self.slots)):
            offset = HEADER.size + SLOT.size * ((start + probe) % self.slots)
            stored_hash, stored_index, _, _ = SLOT.unpack_from(buffer, offset)
            if stored_hash == key_hash:
                return offset
            if stored_hash == 0:
                return reusable if reusable >= 0 else offset
            if reusable < 0 and stored_index < index - 1:
                reusable = offset
        if reusable < 0:
            # Every probed slot is live: share the first (counts merge; documented as the overflow behaviour).
            reusable = HEADER.size + SLOT.size * start
        return reusable

    def _update(self, key: str, expiry: float, limit: int | None, amount: int) -> SlidingWindow:
        buffer = self._map if self._pid == current_pid() else self._ensure_open()
        assert buffer is not None
        key_hash = self._hashes.get(key)
        if key_hash is None:
            key_hash = self._hashes[key] = _key_hash(key)
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                index = int(now // expiry)
                offset = self._offsets.get(key, HEADER.size)
                stored_hash, stored_index, previous, current = SLOT.unpack_from(buffer, offset)
                if stored_hash != key_hash:  # first use here, or another process reused the slot
                    offset = self._offsets[key] = self._find(buffer, key_hash, index)
                    stored_hash, stored_index, previous, current = SLOT.unpack_from(buffer, offset)
                if stored_hash != key_hash or stored_index < index - 1:
                    previous = current = 0
                elif stored_index == index - 1:
                    previous, current = current, 0
                elapsed = now - index * expiry
                admitted = limit is None or previous * (1 - elapsed / expiry) + current + amount <= limit
                if admitted and limit is not None:
                    current += amount
                SLOT.pack_into(buffer, offset, key_hash, index, previous, current)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return SlidingWindow(admitted, previous, current, elapsed, expiry)

    # -- Storage --------------------------------------------------------------------------------------------------

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: float, amount: int = 1) -> SlidingWindow:
        return self._update(key, expiry, limit, amount)

    def get_sliding_window(self, key: str, expiry: float) -> SlidingWindow:
        """A read, without the lock (the login brake reads on every request, and two ``fcntl`` calls cost more
        than the rest). The slot is read twice and the copies must agree, so a read that raced a writer's
        ``pack_into`` is taken again; under the lock if it keeps racing. A key with no slot reads as zero and
        claims none."""
        buffer = self._map if self._pid == current_pid() else self._ensure_open()
        assert buffer is not None
        key_hash = self._hashes.get(key)
        if key_hash is None:
            key_hash = self._hashes[key] = _key_hash(key)
        for _ in range(3):
            now = self._clock()
            index = int(now // expiry)
            offset = self._offsets.get(key, HEADER.size)
            first = SLOT.unpack_from(buffer, offset)
            if first[0] != key_hash:
                offset = self._find(buffer, key_hash, index)
                first = SLOT.unpack_from(buffer, offset)
            if SLOT.unpack_from(buffer, offset) != first:
                continue
            stored_hash, stored_index, previous, current = first
            if stored_hash != key_hash or stored_index < index - 1:
                previous = current = 0
            elif stored_index == index - 1:
                previous, current = current, 0
            return SlidingWindow(True, previous, current, now - index * expiry, expiry)
        return self._update(key, expiry, None, 0)

    def clear(self, key: str) -> None:
        buffer = self._ensure_open()
        key_hash = _key_hash(key)
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset = self._find(buffer, key_hash, 0)
                if SLOT.unpack_from(buffer, offset)[0] == key_hash:
                    SLOT.pack_into(buffer, offset, key_hash, 0, 0, 0)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._pid == current_pid():
            if self._map is not None:
                self._map.close()
            if self._fd >= 0:
                os.close(self._fd)
        self._map = None
        self._fd = -1
        self._pid = -1
