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
* **No flood resets a count.** A slot records when its counts expire (both of its windows are over) and its own
  window length. It is taken over by another key only when it is empty or expired, so a key of a 60 s window never
  takes the live slot of a 300 s one. Pinned keys (the mount's counter, the targets', the fallback keys) live in a
  region that no other key enters. A key that finds neither its own slot nor an empty or expired one among its 64
  probes raises :class:`~.base.NoRoom`, and its caller counts it against a fallback key.
* **Bounded.** The table's size is fixed when the file is made (:func:`slots_for`); the file is sparse, so slots
  never written cost nothing until a key lands on their page. The process keeps nothing per key beyond a cache of
  the last 1,024 key hashes and the offsets of the pinned keys.

Layout (little-endian):

==========  ======  ================================================================================
offset      size    field
==========  ======  ================================================================================
0           8       magic ``b"SQLHTRL1"``
8           4       layout version (2)
12          4       number of shared slots S
16          4       number of pinned slots P
20          44      reserved (zero)
64 + 32*i   8       slot i: key hash (blake2b-64 of the key; 0 = empty). Slots 0 to P-1 are the pinned
                    region, P to P+S-1 the shared one
+8          8       slot i: expires at (float64, seconds since the epoch): when both of its windows are
                    over, ``(index of its current window + 2) * window length``; 0 once cleared
+16         8       slot i: window length in seconds (float64)
+24         4       slot i: count of the previous window (u32, saturating)
+28         4       slot i: count of the current window (u32, saturating)
==========  ======  ================================================================================

A slot's window index is ``round(expires at / window length) - 2``. A key is placed by linear probing within its
region, from ``hash % size``: it takes its own slot if it has one, else the first empty or expired one. A used slot
never becomes empty again, so a search that meets an empty slot knows the key is absent.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import math
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from .._process import current_pid
from .base import NoRoom, SlidingWindow, Storage, sliding_window_decide

__all__ = ["MAX_SLOTS", "SharedMemoryStorage", "default_directory", "slots_for"]

logger = logging.getLogger("sqlhttp_middleware.state")

MAGIC = b"SQLHTRL1"
VERSION = 2
HEADER = struct.Struct("<8sIII44x")
SLOT = struct.Struct("<QddII")
SLOT_HEAD = struct.Struct("<Qd")  # a slot's hash and expiry: all a probe reads
COUNT_MAX = 0xFFFF_FFFF
#: Most live keys per shared slot the table is sized for: linear probing stays short below one half.
LOAD = 0.5
MIN_SLOTS = 1024
#: The largest table sized from the options (64 MiB of file); past it, keys that find no room use the fallbacks.
MAX_SLOTS = 1 << 21
DEFAULT_SLOTS = 4096  # a file made by a storage opened without a size (tools, tests); the middleware sizes its own
MIN_PINNED = 64
_PROBES = 64


def default_directory() -> Path:
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs by design; the file is created 0600 and owned by us
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def slots_for(live_keys: int | None) -> int:
    """Shared slots for a table that must hold ``live_keys`` unpinned keys at once at a load of at most
    :data:`LOAD`, within ``MIN_SLOTS`` and ``MAX_SLOTS``; ``None`` (no bound is known): the maximum."""
    if live_keys is None:
        return MAX_SLOTS
    return max(MIN_SLOTS, min(MAX_SLOTS, math.ceil(live_keys / LOAD)))


def file_size(slots: int, pinned_slots: int) -> int:
    return HEADER.size + SLOT.size * (pinned_slots + slots)


@functools.lru_cache(maxsize=1024)
def _key_hash(key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return value or 1  # 0 marks an empty slot


def _rolled(expires: float, window: float, previous: int, current: int, expiry: float,
            index: int) -> tuple[int, int]:
    """A slot's (previous, current) counts as of window ``index`` of ``expiry`` seconds."""
    if window != expiry:
        return 0, 0  # counted in windows of another length (the configuration changed): they mean nothing here
    stored = round(expires / window) - 2
    if stored >= index:  # the same window (or a clock that stepped back: keep the counts, never reset them)
        return previous, current
    if stored == index - 1:
        return current, 0
    return 0, 0


class SharedMemoryStorage(Storage):
    """Counters in ``path``, shared by every process that opens it.

    ``slots`` and the number of ``pinned`` keys size a new file; a file of this layout that already exists keeps
    the size it was made with. ``pinned``: keys that must always find room and never be taken over.
    """

    blocks: ClassVar[bool] = False  # a local file lock, held for microseconds

    def __init__(self, path: str | os.PathLike[str], slots: int = DEFAULT_SLOTS,
                 clock: Callable[[], float] = time.time, *, pinned: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self._clock = clock
        self._pinned = {key: _key_hash(key) for key in pinned}
        self.slots = max(1, slots)
        self.pinned_slots = max(MIN_PINNED, 4 * len(self._pinned))
        self._offsets: dict[str, int] = {}  # where each pinned key was last found; checked before use
        self._thread_lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._map: mmap.mmap | None = None
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
            size = file_size(self.slots, self.pinned_slots)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._pid = current_pid()
        self._thread_lock = threading.Lock()
        self._offsets = {}

    def _prepare(self, fd: int) -> None:
        """Under the file lock: use the table a file of our layout holds, or give a new (or foreign) file ours."""
        size = os.fstat(fd).st_size
        if size >= HEADER.size:
            magic, version, slots, pinned_slots = HEADER.unpack(os.pread(fd, HEADER.size, 0))
            if (magic, version) == (MAGIC, VERSION) and slots and pinned_slots and size >= file_size(
                    slots, pinned_slots):
                if slots < self.slots:
                    logger.warning(
                        "sqlhttp-middleware: %s holds %d slots, made by a configuration that needed fewer than the "
                        "%d this one is sized for; keys that find no room are counted under fallback keys. Remove "
                        "the file while no worker runs, or give this app its own rate_limit_namespace.",
                        self.path, slots, self.slots)
                self.slots, self.pinned_slots = slots, pinned_slots
                return
        self._fit(fd)
        os.ftruncate(fd, 0)
        # Never shrink: a process still mapping a file of an older layout must not fault on a page past the end.
        os.ftruncate(fd, max(size, file_size(self.slots, self.pinned_slots)))
        os.pwrite(fd, HEADER.pack(MAGIC, VERSION, self.slots, self.pinned_slots), 0)

    def _fit(self, fd: int) -> None:
        """Shrink a new table to half the free space of its file system: a write to a page that a full tmpfs
        cannot back kills the process with SIGBUS, where a smaller table only sends more keys to the fallbacks."""
        try:
            stats = os.fstatvfs(fd)
        except OSError:
            return
        room = stats.f_bavail * stats.f_frsize // 2
        if file_size(self.slots, self.pinned_slots) <= room:
            return
        fitted = max(MIN_SLOTS, (room - HEADER.size) // SLOT.size - self.pinned_slots)
        if fitted < self.slots:
            logger.warning(
                "sqlhttp-middleware: %s: %d counter slots (%d MiB) would not fit in half the free space of its "
                "file system; using %d. Give /dev/shm more room (docker run --shm-size) or set rate_limit_slots.",
                self.path, self.slots, file_size(self.slots, self.pinned_slots) >> 20, fitted)
            self.slots = fitted

    def _ensure_open(self) -> mmap.mmap:
        if self._pid != current_pid():
            # A forked child: its parent's record locks are not its own, and its thread lock may be held by a
            # thread that does not exist here. Open our own descriptor and mapping.
            self._map = None
            self._open()
        assert self._map is not None
        return self._map

    # -- slots ----------------------------------------------------------------------------------------------------

    def _probe(self, buffer: mmap.mmap, key_hash: int, now: float, first: int, count: int,
               probes: int) -> tuple[int, bool]:
        """Probe the region of ``count`` slots from slot ``first``: (offset of the key's slot, True), or (offset
        of the first slot it may take, False), or (-1, False) when every probed slot holds live counts."""
        position = key_hash % count
        offset = HEADER.size + SLOT.size * (first + position)
        stored_hash, expires = SLOT_HEAD.unpack_from(buffer, offset)
        if stored_hash == key_hash:
            return offset, True
        if stored_hash == 0:
            return offset, False
        free = offset if expires <= now else -1
        left = min(probes, count) - 1
        position = (position + 1) % count
        while left > 0:  # past the first, read the slots up to the region's end at once (a third of the cost)
            run = min(left, count - position)
            base = HEADER.size + SLOT.size * (first + position)
            slots = SLOT.iter_unpack(buffer[base:base + SLOT.size * run])
            for step, (stored_hash, expires, _, _, _) in enumerate(slots):
                offset = base + SLOT.size * step
                if stored_hash == key_hash:
                    return offset, True
                if stored_hash == 0:
                    return (offset if free < 0 else free), False
                if free < 0 and expires <= now:
                    free = offset
            left -= run
            position = 0
        return free, False

    def _slot(self, buffer: mmap.mmap, key: str, key_hash: int, now: float) -> tuple[int, bool]:
        """Where ``key`` is (offset, True), or may go (offset, False), or (-1, False): no room."""
        if key not in self._pinned:
            return self._probe(buffer, key_hash, now, self.pinned_slots, self.slots, _PROBES)
        cached = self._offsets.get(key)
        if cached is not None and SLOT_HEAD.unpack_from(buffer, cached)[0] == key_hash:
            return cached, True
        offset, own = self._probe(buffer, key_hash, now, 0, self.pinned_slots, self.pinned_slots)
        if not own:
            # Only a pinned region made too small by another configuration sends a pinned key to the shared one;
            # once there, it is found there.
            shared, found = self._probe(buffer, key_hash, now, self.pinned_slots, self.slots, _PROBES)
            if found or offset < 0:
                offset, own = shared, found
        if own:
            self._offsets[key] = offset
        return offset, own

    def _hash(self, key: str) -> int:
        pinned = self._pinned.get(key)
        return pinned if pinned is not None else _key_hash(key)

    def _update(self, key: str, expiry: float, limit: int | None, amount: int) -> SlidingWindow:
        """Count ``amount`` within ``limit`` under the lock; ``limit=None``: only read, claiming nothing."""
        buffer = self._map if self._pid == current_pid() else self._ensure_open()
        assert buffer is not None
        key_hash = self._hash(key)
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                offset, own = self._slot(buffer, key, key_hash, now)
                if offset < 0:
                    raise NoRoom(key)
                index = int(now // expiry)
                elapsed = now - index * expiry
                previous = current = 0
                if own:
                    _, expires, window, previous, current = SLOT.unpack_from(buffer, offset)
                    previous, current = _rolled(expires, window, previous, current, expiry, index)
                admitted = limit is None or sliding_window_decide(previous, current, elapsed, expiry, limit, amount)
                if limit is not None and (admitted or own):
                    if admitted:
                        current += amount
                    SLOT.pack_into(buffer, offset, key_hash, (index + 2) * expiry, expiry, min(previous, COUNT_MAX),
                                   min(current, COUNT_MAX))
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
        claims none; a key with no slot and no room raises NoRoom (a race with a writer can only make that answer
        come early, which sends the caller to the stricter fallback)."""
        buffer = self._map if self._pid == current_pid() else self._ensure_open()
        assert buffer is not None
        key_hash = self._hash(key)
        for _ in range(3):
            now = self._clock()
            index = int(now // expiry)
            elapsed = now - index * expiry
            offset, own = self._slot(buffer, key, key_hash, now)
            if not own:
                if offset < 0:
                    raise NoRoom(key)
                return SlidingWindow(True, 0, 0, elapsed, expiry)
            first = SLOT.unpack_from(buffer, offset)
            if first[0] != key_hash or SLOT.unpack_from(buffer, offset) != first:
                continue  # raced a writer, or the slot was taken over between the probe and the read
            _, expires, window, previous, current = first
            previous, current = _rolled(expires, window, previous, current, expiry, index)
            return SlidingWindow(True, previous, current, elapsed, expiry)
        return self._update(key, expiry, None, 0)

    def clear(self, key: str) -> None:
        buffer = self._ensure_open()
        key_hash = self._hash(key)
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset, own = self._slot(buffer, key, key_hash, self._clock())
                if own:  # keeps its place (others may probe past it), expired: free for any key
                    window = SLOT.unpack_from(buffer, offset)[2]
                    SLOT.pack_into(buffer, offset, key_hash, 0.0, window, 0, 0)
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
