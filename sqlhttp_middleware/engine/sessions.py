"""Interactive sessions: one pooled connection held across a client's requests, named by a signed, single-use
baton, and reachable from every worker of the host.

* **Holding.** A session leases its connection from the pool (it counts in the pool's size) at its first request
  and holds it until the client closes the stream, or it expires: idle for ``session_idle_timeout`` seconds, or
  older than ``session_max_lifetime``. Expiry rolls back what is open and gives the connection back. A request
  that opens or closes nothing (the usual stateless one, which opens and closes its stream at once) holds nothing.
* **Batons.** ``HOST.WORKER.ID.SEQ.MAC``: the host and worker that hold the session, its random id, the number of
  answers it gave, and an HMAC-SHA256 over them with the key every worker of the host shares
  (:func:`.handover.shared_key`). Each answer carries the next; a baton is good for one request. A forged baton
  is refused before anything is looked up; a replayed one, or one presented by another login (the session
  remembers a keyed digest of the credentials that opened it), is refused and the session is left as it was
  for its owner.
* **Many workers.** A worker that gets a request for a session another worker holds hands it over, whole, on that
  worker's local socket (:mod:`.handover`), and answers with what the owner answered. A worker that died took its
  sessions with it: its socket refuses, and the baton answers ``STREAM_EXPIRED``; the database rolled back their
  transactions when their connections closed. Batons name their host: another host answers that the session is
  not there, and the docs say to route a session's requests to one host.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors, metrics
from .._process import current_pid
from ..engines import EngineCache
from ..options import Options
from . import handover
from .deadline import current_abort
from .executor import Executor
from .streams import StreamConnection
from .work import Body, Login, StreamProgram, Work

__all__ = ["Sessions"]

logger = logging.getLogger("sqlhttp_middleware.sessions")

# Given the request's target and body, its work and program again: how the worker holding a session reads a
# request another worker handed over.
Reader = Callable[[Any, bytes, str], tuple[Work, StreamProgram]]


@dataclass(eq=False)
class _Session:
    id: str
    binding: bytes
    stream: StreamConnection
    created: float
    last_used: float
    seq: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Baton:
    host: str
    worker: str
    session: str
    seq: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """The sessions of one middleware instance, in this worker, and the way to the other workers'."""

    def __init__(self, engines: EngineCache, executor: Executor, options: Options, namespace: str) -> None:
        self._engines = engines
        self._executor = executor
        self.idle_timeout = options.session_idle_timeout
        self.max_lifetime = options.session_max_lifetime
        self._grace = options.deadline_grace
        self._options = options
        self._namespace = namespace
        self.host = options.session_host or os.uname().nodename
        self._host_tag = _b64(self.host.encode())
        self._readers: dict[str, Reader] = {}
        self._directory: Path | None = None
        self._key: bytes | None = None
        self._setup_lock = threading.Lock()
        self._reset()
        _ALL.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, int] = {}  # per target: requests opening a session, in the pool's queue
        self._pid = current_pid()
        self.worker = f"{self._pid}-{secrets.token_hex(3)}"
        self._listener: handover.Listener | None = None
        self._reaper: threading.Thread | None = None
        self._closing = threading.Event()

    def reads(self, protocol: str, reader: Reader) -> None:
        """Let handed-over requests of ``protocol`` be read again by ``reader``."""
        self._readers[protocol] = reader

    # -- shared set-up, made on first use --------------------------------------------------------------------------

    def directory(self) -> Path:
        """The host's private directory (made on first use), shared with the result cache's stamps."""
        return self._shared()[0]

    def _shared(self) -> tuple[Path, bytes]:
        if self._key is None or self._directory is None:
            with self._setup_lock:
                if self._key is None or self._directory is None:
                    try:
                        directory = handover.session_directory(self._options.session_dir, self._namespace)
                        self._key = handover.shared_key(directory, self._options.session_secret)
                    except OSError:
                        logger.exception("sqlhttp-middleware: the session directory cannot be used")
                        raise errors.InternalError(
                            "interactive sessions are unavailable on this server: its session directory is not "
                            "private to it, or not writable (the server's log says which)") from None
                    self._directory = directory
        return self._directory, self._key

    def binding(self, work: Work) -> bytes:
        """A keyed digest of the credentials the request came with: who may continue a session."""
        _, key = self._shared()
        claim, credential = work.claim, work.stream.credential if work.stream is not None else ""
        text = "\0".join((work.target.name, credential, claim.username, claim.password, claim.database))
        return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    # -- batons ---------------------------------------------------------------------------------------------------

    def _sign(self, session: _Session) -> str:
        _, key = self._shared()
        text = f"{self._host_tag}.{self.worker}.{session.id}.{session.seq}"
        return f"{text}.{_b64(hmac.new(key, text.encode(), hashlib.sha256).digest()[:18])}"

    def _read_baton(self, baton: str) -> _Baton:
        parts = baton.split(".")
        if len(parts) != 5 or not parts[3].isdigit():
            raise errors.BatonInvalid("the baton is not one this server issued")
        host_tag, worker, session, seq, mac = parts
        if host_tag != self._host_tag:
            try:
                host = _unb64(host_tag).decode()
            except ValueError:
                raise errors.BatonInvalid("the baton is not one this server issued") from None
            raise errors.StreamElsewhere(
                f"this stream is held by host {host!r}, not {self.host!r}: send every request of a stream to the "
                "host that answered its first (see the docs on routing sessions)")
        _, key = self._shared()
        text = f"{host_tag}.{worker}.{session}.{seq}"
        expected = _b64(hmac.new(key, text.encode(), hashlib.sha256).digest()[:18])
        if not hmac.compare_digest(expected, mac):
            raise errors.BatonInvalid("the baton is not one this server issued")
        return _Baton(self.host, worker, session, int(seq))

    # -- running work on a stream ---------------------------------------------------------------------------------

    def run(self, work: Work, login: Login, program: StreamProgram, budget: float | None = None) -> Body:
        """Run ``program`` on the stream ``work`` names: a fresh one, this worker's session, or another worker's."""
        if current_pid() != self._pid:
            self._reset()
        stream = work.stream
        assert stream is not None
        target = work.target
        if stream.baton is None:
            lease = self._lease(work, login)
            connection = StreamConnection(self._executor, lease, target, login.database,
                                          budget=budget if stream.inline else None, text_values=work.text_values)
            if stream.closes:  # opened and closed in one request: nothing to hold
                try:
                    program.run(connection)
                finally:
                    connection.rollback()
                    self._engines.give_back(lease)
                return program.finish(None)
            now = time.monotonic()
            session = _Session(secrets.token_urlsafe(16), self.binding(work), connection, now, now)
            with session.lock:
                self._open(session)
                try:
                    program.run(connection)
                except BaseException:
                    self._close(session)
                    raise
                return self._after(session, program)
        baton = self._read_baton(stream.baton)
        binding = self.binding(work)
        if baton.worker == self.worker:
            return self._continue(baton, binding, program)
        return self._hand_over(baton, binding, work)

    def _lease(self, work: Work, login: Login) -> Any:
        """A pooled connection for a stream. Requests that would open a session wait for one on their thread, while
        the sessions that hold the pool need a thread for the request that frees it (the COMMIT): so no more of them
        wait at once than the pool has connections, and the others answer busy at once, leaving the rest of the
        threads to the sessions' requests."""
        target, stream = work.target, work.stream
        assert stream is not None
        if stream.closes:
            return self._engines.lease(target, login.username, login.password, login.database)
        with self._lock:
            waiting = self._opening.get(target.name, 0)
            size = self._options.pool_size
            if waiting >= size:
                raise errors.PoolTimeout(
                    f"all {size} connections to target {target.name!r} are taken, and {waiting} more requests "
                    "that would open a session already wait for one; try again shortly", headers={"Retry-After": "1"})
            self._opening[target.name] = waiting + 1
        try:
            return self._engines.lease(target, login.username, login.password, login.database)
        finally:
            with self._lock:
                self._opening[target.name] -= 1

    def _continue(self, baton: _Baton, binding: bytes, program: StreamProgram) -> Body:
        with self._lock:
            session = self._sessions.get(baton.session)
        if session is None:
            raise errors.StreamExpired.gone()
        if not hmac.compare_digest(session.binding, binding):
            raise errors.BatonInvalid("this stream was opened by another login")
        if not session.lock.acquire(blocking=False):
            raise errors.StreamBusy("another request is using this stream; send its requests one after the other")
        try:
            if session.closed:
                raise errors.StreamExpired.gone()
            if baton.seq != session.seq:
                raise errors.BatonReused("this baton was already used; each answer's baton is good for one request")
            if self._expired(session, time.monotonic()):
                self._close(session, "expired")
                raise errors.StreamExpired.gone()
            program.run(session.stream)
            return self._after(session, program)
        finally:
            session.lock.release()

    def _after(self, session: _Session, program: StreamProgram) -> Body:
        """The answer, with the baton that continues the session (None once it closed, or lost its connection)."""
        if program.closed or session.stream.broken:
            self._close(session)
            return program.finish(None)
        abort = current_abort.get()
        if abort is not None and abort.aborted:
            # The client has gone: nobody will have the baton of this answer, so the session could only idle out
            # holding its connection. It ends now; its transaction is rolled back.
            self._close(session, "abandoned")
            raise errors.StreamExpired("the client went away; its stream was closed and rolled back")
        session.seq += 1
        session.last_used = time.monotonic()
        session.stream.statements = 0
        return program.finish(self._sign(session))

    def _expired(self, session: _Session, now: float) -> bool:
        return now - session.last_used > self.idle_timeout or now - session.created > self.max_lifetime

    # -- another worker's sessions --------------------------------------------------------------------------------

    def _hand_over(self, baton: _Baton, binding: bytes, work: Work) -> Body:
        directory, _ = self._shared()
        stream = work.stream
        assert stream is not None
        limits = self._executor.limits[work.target.name]
        wait = (len(work.statements) + 1) * (limits.timeout + self._grace) + self._options.pool_timeout
        header = {"protocol": stream.protocol, "target": work.target.name, "baton": stream.baton,
                  "binding": _b64(binding), "credential": stream.credential}
        metrics.session_handed_over(work.target.name)
        try:
            reply, body = handover.call(handover.socket_path(directory, baton.worker), header, stream.payload, wait)
        except (handover.Unreachable, TimeoutError):
            raise errors.StreamExpired("the worker that held this stream has gone; its transaction was rolled "
                                       "back: open a new stream") from None
        if reply.get("ok"):
            return body
        kind = getattr(errors, str(reply.get("error")), None)
        if not (isinstance(kind, type) and issubclass(kind, errors.SQLHTTPError)):
            kind = errors.InternalError
        raise kind(str(reply.get("message", "the worker holding the stream failed")))

    def _serve(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """A request another worker handed over, for one of this worker's sessions."""
        try:
            reader = self._readers[header["protocol"]]
            target = self._options.targets[header["target"]]
            _, program = reader(target, body, header.get("credential", ""))
            baton = self._read_baton(header["baton"])
            if baton.worker != self.worker:
                raise errors.StreamExpired.gone()
            answer = self._continue(baton, _unb64(header["binding"]), program)
        except errors.SQLHTTPError as error:
            return {"error": type(error).__name__, "message": error.message}, b""
        except (KeyError, ValueError):
            return {"error": "BadRequest", "message": "a handed-over request could not be read"}, b""
        return {"ok": True}, answer if isinstance(answer, bytes) else b"".join(answer)

    # -- the registry ---------------------------------------------------------------------------------------------

    def _open(self, session: _Session) -> None:
        directory, _ = self._shared()
        with self._lock:
            self._sessions[session.id] = session
            if self._listener is None:
                handover.sweep(directory)
                self._listener = handover.Listener(handover.socket_path(directory, self.worker), self._serve)
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=_reap, args=(weakref.ref(self), self._closing),
                                                name="sqlhttp-session-reaper", daemon=True)
                self._reaper.start()

    def _close(self, session: _Session, reason: str = "closed") -> None:
        """Roll back what is open and give the connection back (or close it, if it broke)."""
        with self._lock:
            if session.closed:
                return
            session.closed = True
            self._sessions.pop(session.id, None)
        stream = session.stream
        metrics.session_ended(stream.target.name, "lost" if stream.broken else reason)
        stream.rollback()
        self._engines.give_back(stream.lease)

    def reap(self, now: float | None = None) -> int:
        """Expire the sessions idle or old enough; how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            candidates = [s for s in self._sessions.values() if self._expired(s, now)]
        expired = 0
        for session in candidates:
            if session.lock.acquire(blocking=False):  # one in use is not idle; its request ends it if too old
                try:
                    if not session.closed and self._expired(session, time.monotonic()):
                        self._close(session, "expired")
                        expired += 1
                finally:
                    session.lock.release()
        return expired

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def by_target(self) -> dict[str, int]:
        with self._lock:
            sessions = list(self._sessions.values())
        counts: dict[str, int] = {}
        for session in sessions:
            name = session.stream.target.name
            counts[name] = counts.get(name, 0) + 1
        return counts

    def close(self) -> None:
        """Close every session and stop listening."""
        self._closing.set()
        with self._lock:
            sessions = list(self._sessions.values())
            listener, self._listener = self._listener, None
        for session in sessions:
            with contextlib.suppress(Exception):
                self._close(session)
        if listener is not None:
            listener.close()

    def _after_fork(self) -> None:
        # The parent's sessions and socket are the parent's: forget them (the engines forget the connections).
        self._reset()


def _reap(ref: weakref.ref[Sessions], closing: threading.Event) -> None:
    quiet_since = time.monotonic()
    while True:
        sessions = ref()
        if sessions is None:
            return
        interval = min(1.0, sessions.idle_timeout / 4)
        try:
            sessions.reap()
        except Exception:
            logger.exception("sqlhttp-middleware: expiring sessions failed")
        if sessions.count():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 30:
            with sessions._lock:
                if not sessions._sessions:
                    sessions._reaper = None
                    return
        del sessions
        if closing.wait(interval):
            return


_ALL: weakref.WeakSet[Sessions] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sessions in list(_ALL):
        sessions._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
