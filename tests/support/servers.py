"""Real server processes for end-to-end tests: a free port, waiting until one serves, stopping it, and serving one
of the mounts (gunicorn, uvicorn, the examples, the standalone CLI) for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from .databases import ROOT

EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until the server answers anything at all over HTTP (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up within {timeout} s")


def stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """Terminate a server, kill it if it will not go, and close its pipe."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()


def server_command(kind: str, port: int) -> tuple[list[str], Path]:
    """How each mount is served for real: (command, working directory)."""
    bin_dir = Path(sys.executable).parent
    gunicorn = [str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"]
    uvicorn = [str(bin_dir / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return {
        "wsgi-gunicorn": ([*gunicorn, "tests.servers.apps:wsgi_app"], ROOT),
        "asgi-uvicorn": ([*uvicorn, "tests.servers.apps:asgi_app"], ROOT),
        "flask-gunicorn": ([*gunicorn, "app:app"], EXAMPLES / "flask_app"),
        "django-gunicorn": ([*gunicorn, "project.wsgi:application"], EXAMPLES / "django_app"),
        "django-uvicorn": ([*uvicorn, "project.asgi:application"], EXAMPLES / "django_app"),
        "fastapi-uvicorn": ([*uvicorn, "app:app"], EXAMPLES / "fastapi_app"),
        "standalone-cli": ([sys.executable, "-m", "sqlhttp_middleware", "serve", "--port", str(port),
                            "--log-level", "warning"], ROOT),
    }[kind]


@contextlib.contextmanager
def serving(kind: str, env: dict[str, str], args: Sequence[str] = ()) -> Iterator[str]:
    """Serve mount ``kind`` (a :func:`server_command` key) with ``env`` added, and, for gunicorn and uvicorn, the
    server's own ``args`` (``--workers 4``: the last one given wins); yield its base URL."""
    port = free_port()
    command, cwd = server_command(kind, port)
    if args:
        command = [*command[:-1], *args, command[-1]]  # before the app, which comes last
    env = {**os.environ, **env, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        probe = "/sql" if kind == "standalone-cli" else "/"
        wait_until_serving(f"http://127.0.0.1:{port}{probe}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
