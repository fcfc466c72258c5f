"""Liveness and readiness (option ``health_path``): ``GET PATH`` answers that the process serves, ``GET PATH/ready``
whether each target's database can be reached.

Readiness must stay cheap however often it is asked, and never turn a flood of probes into a flood of connections
to the databases: it logs in nowhere and runs no query. A target is ready when a TCP connection to its host and port
opens within :data:`PROBE_TIMEOUT` (SQLite: when its file exists and is readable). Each target's result is kept for
:data:`TTL` seconds, and the probes are single-flight: while one request probes, the others wait for its result,
so a target sees at most one connection attempt per interval whatever the number of probes. The sync path probes
every stale target at once with non-blocking sockets; the async path with ``asyncio.open_connection``, never
blocking the event loop. Answers name each target and ``ready`` or ``unreachable``, never a URL, a host or a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Mapping

import orjson

from .http import JSON_HEADERS, Response
from .options import ResolvedTarget

__all__ = ["PROBE_TIMEOUT", "TTL", "Readiness", "alive"]

TTL = 2.0  # seconds a target's result is reused
PROBE_TIMEOUT = 1.0  # seconds a TCP connect may take; under the usual 1 s of an orchestrator's probe with the rest
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}


def alive() -> Response:
    """Liveness: the process answers. No I/O."""
    return Response(200, b'{"status":"ok"}', list(JSON_HEADERS))


class Readiness:
    """The readiness of one mount's targets, probed at most once per :data:`TTL` per target."""

    def __init__(self, targets: Mapping[str, ResolvedTarget], timeout: float = PROBE_TIMEOUT, ttl: float = TTL):
        self._timeout, self._ttl = timeout, ttl
        # name -> (host, port) for a server, or the file's path for SQLite
        self._where: dict[str, tuple[str, int] | str] = {name: _address(target) for name, target in targets.items()}
        self._known: dict[str, tuple[float, bool]] = {}  # name -> (when probed, ready)
        self._lock = threading.Lock()  # the sync path's single flight
        self._flight: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None  # the async path's

    def cached(self) -> Response | None:
        """The answer if every target's result is fresh; None: a probe is due (:meth:`check`, :meth:`check_async`)."""
        return self._answer() if not self._stale() else None

    def check(self) -> Response:
        """Blocking: probe the stale targets (one caller at a time; the others wait and reuse its results)."""
        if self._stale():
            with self._lock:
                stale = self._stale()
                if stale:
                    self._store(_probe_sync(self._where, stale, self._timeout))
        return self._answer()

    async def check_async(self) -> Response:
        """:meth:`check` on the event loop: concurrent probes wait for the one in flight."""
        stale = self._stale()
        if stale:
            loop = asyncio.get_running_loop()
            flight = self._flight
            if flight is None or flight[0] is not loop or flight[1].done():
                flight = self._flight = (loop, loop.create_task(self._probe_async(stale)))
            await asyncio.shield(flight[1])  # a request that goes away leaves the probe to the others
        return self._answer()

    async def _probe_async(self, stale: list[str]) -> None:
        results = await asyncio.gather(*(self._reachable_async(name) for name in stale))
        self._store(dict(zip(stale, results, strict=True)))

    async def _reachable_async(self, name: str) -> bool:
        where = self._where[name]
        if isinstance(where, str):
            return _readable(where)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*where), self._timeout)
        except Exception:  # refused, timed out, a name that does not resolve: unreachable, whatever the cause
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _stale(self) -> list[str]:
        now = time.monotonic()
        known = self._known
        return [name for name in self._where if name not in known or now - known[name][0] >= self._ttl]

    def _store(self, results: Mapping[str, bool]) -> None:
        now = time.monotonic()
        for name, ready in results.items():
            self._known[name] = (now, ready)

    def _answer(self) -> Response:
        states = {name: "ready" if self._known.get(name, (0.0, False))[1] else "unreachable" for name in self._where}
        ready = all(state == "ready" for state in states.values())
        body = orjson.dumps({"status": "ready" if ready else "unready", "targets": states})
        return Response(200 if ready else 503, body, list(JSON_HEADERS))


def _address(target: ResolvedTarget) -> tuple[str, int] | str:
    if target.family == "sqlite":
        return str(target.url.database)
    return str(target.url.host), int(target.url.port or _DEFAULT_PORTS[target.family])


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def _probe_sync(where: Mapping[str, tuple[str, int] | str], names: list[str], timeout: float) -> dict[str, bool]:
    """Probe ``names`` together: every address of every host connected at once, within one ``timeout``."""
    ready = dict.fromkeys(names, False)
    deadline = time.monotonic() + timeout
    opened: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        try:
            for name in names:
                place = where[name]
                if isinstance(place, str):
                    ready[name] = _readable(place)
                    continue
                try:
                    addresses = socket.getaddrinfo(*place, type=socket.SOCK_STREAM)
                except OSError:
                    continue
                for family, kind, proto, _, address in addresses:
                    sock = socket.socket(family, kind, proto)
                    opened.append(sock)
                    sock.setblocking(False)
                    status = sock.connect_ex(address)
                    if status in _IN_PROGRESS:
                        selector.register(sock, selectors.EVENT_WRITE, name)
                    elif status == 0:
                        ready[name] = True
            # Until every name has an answer (one address of a host that connects is enough), or time is up.
            while (any(not ready[key.data] for key in selector.get_map().values())
                   and (left := deadline - time.monotonic()) > 0):
                for key, _ in selector.select(left):
                    sock = key.fileobj  # type: ignore[assignment]
                    selector.unregister(sock)
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        ready[key.data] = True
        finally:
            for sock in opened:
                sock.close()
    return ready
