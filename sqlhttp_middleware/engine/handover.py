"""How the workers of one host reach each other: a private directory, the key they sign batons with, and a local
socket per worker on which it serves the requests other workers hand over for the sessions it holds.

* **The directory** (``session_dir``, by default ``$TMPDIR/sqlhttp-<uid>-<digest of the mount>``) is created mode
  0700 and refused if another user owns it or others may write to it. Every worker of the app derives the same
  one, whether it was forked (gunicorn) or spawned (uvicorn ``--workers``).
* **The key** (``session_secret``, or a random 32-byte file ``key`` in the directory, created once and atomically by
  whichever worker needs it first) is the same in every worker, so any worker can check a baton another signed.
* **The sockets**: ``<pid>-<nonce>.sock``, a Unix stream socket, listened on by a worker from its first session on. A
  handed-over request is one frame each way: a JSON header and the body's bytes, each preceded by its length.
  A worker that died leaves a socket nobody accepts on: connecting fails at once (``Unreachable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Listener", "Unreachable", "call", "session_directory", "shared_key"]

logger = logging.getLogger("sqlhttp_middleware.sessions")

_LENGTH = struct.Struct(">I")
_MAX_FRAME = 64 * 1024 * 1024
Handler = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


class Unreachable(OSError):
    """The worker named is gone (or never listened)."""


def session_directory(configured: str, namespace: str) -> Path:
    """The directory every worker of this app shares, created private if it does not exist yet."""
    if configured:
        path = Path(configured)
    else:
        digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"sqlhttp-{os.getuid()}-{digest}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"the session directory {path} must belong to this user and be writable by no one "
                              "else (mode 0700)")
    return path


def shared_key(directory: Path, secret: str) -> bytes:
    """The key batons are signed with: from ``session_secret``, or the directory's key file (made if missing)."""
    if secret:
        return hashlib.sha256(b"sqlhttp-session\0" + secret.encode()).digest()
    key_path = directory / "key"
    for _ in range(50):
        try:
            data = key_path.read_bytes()
        except FileNotFoundError:
            data = b""
        if len(data) == 32:
            return data
        if not data:
            # Written whole under another name, then linked into place: whoever links first wins, the others read it.
            temporary = directory / f"key.{os.getpid()}.{secrets.token_hex(4)}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(descriptor, secrets.token_bytes(32))
            finally:
                os.close(descriptor)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key_path)
            temporary.unlink()
            continue
        threading.Event().wait(0.01)  # cannot be half-written (it is linked whole); a foreign file: wait, then fail
    raise PermissionError(f"the session key file {key_path} is not 32 bytes; delete it")


def socket_path(directory: Path, worker: str) -> str:
    """``worker`` is ``PID-NONCE``: two middleware instances of one process have sockets of their own."""
    return str(directory / f"{worker}.sock")


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            raise Unreachable("the other worker closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(connection: socket.socket) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(connection, 4))
    if size > _MAX_FRAME:
        raise Unreachable("a handed-over frame is too large")
    return _read_exactly(connection, size)


def _send(connection: socket.socket, header: dict[str, Any], body: bytes) -> None:
    encoded = orjson.dumps(header)
    connection.sendall(b"".join((_LENGTH.pack(len(encoded)), encoded, _LENGTH.pack(len(body)), body)))


def call(path: str, header: dict[str, Any], body: bytes, timeout: float) -> tuple[dict[str, Any], bytes]:
    """Hand a request to the worker listening at ``path``; its answer. ``Unreachable`` if it is gone."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        try:
            connection.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unreachable(str(exc)) from None
        try:
            _send(connection, header, body)
            reply = orjson.loads(_read_frame(connection))
            return reply, _read_frame(connection)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Unreachable(str(exc)) from None
    finally:
        connection.close()


class Listener:
    """A worker's socket: each handed-over request served on a thread of its own, by ``handler``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead worker's, whose pid this process now has
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(path)
        os.chmod(path, 0o600)
        self._socket.listen(64)
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="sqlhttp-sessions", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(connection,), name="sqlhttp-session", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                header = orjson.loads(_read_frame(connection))
                body = _read_frame(connection)
            except (OSError, orjson.JSONDecodeError):
                return
            try:
                reply, answer = self._handler(header, body)
            except Exception:
                logger.exception("sqlhttp-middleware: serving a handed-over session request failed")
                reply, answer = {"error": "InternalError", "message": "the worker holding the stream failed"}, b""
            with contextlib.suppress(OSError):
                _send(connection, reply, answer)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def sweep(directory: Path) -> None:
    """Remove the sockets of workers that are gone."""
    for entry in directory.glob("*.sock"):
        pid = entry.stem.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        except PermissionError:
            pass
