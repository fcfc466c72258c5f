"""Flask and FastAPI, in process: the examples' host routes are byte-for-byte the same with and without the
middleware (streaming and websockets included), the Flask extension reads app.config, and the environment and
command-line configuration behave."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import webtest
from flask import Flask

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.env import options_from_env
from sqlhttp_middleware.flask import SQLHTTP
from sqlhttp_middleware.options import ConfigurationError
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

from .support import ROOT, Database, targets_for


def load_example(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("SQLHTTP_DEMO_DB", str(tmp_path / "demo.db"))
    monkeypatch.delenv("SQLHTTP_TARGETS", raising=False)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    sys.modules.pop("demo_data", None)  # it reads SQLHTTP_DEMO_DB when imported
    spec = importlib.util.spec_from_file_location(f"example_{name}_{tmp_path.name}",
                                                  ROOT / "examples" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEMO = {"cacheId": "demo", "username": "demo", "password": "demo", "database": "shop", "provider": "sqlite",
        "sql": "SELECT count(*) AS n FROM products"}


# -- Flask --------------------------------------------------------------------------------------------------------


def test_flask_example_host_routes_are_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    example = load_example("flask_app", monkeypatch, tmp_path)
    mounted = webtest.TestApp(example.app)
    middleware = example.app.wsgi_app
    assert isinstance(middleware, WSGIMiddleware)
    bare = webtest.TestApp(middleware.app)  # the Flask app's own wsgi_app, as before the mount
    for path in ("/", "/api/status", "/api/stream", "/missing"):
        with_mw = mounted.get(path, expect_errors=True)
        without = bare.get(path, expect_errors=True)
        assert (with_mw.status, with_mw.headerlist, with_mw.body) == (without.status, without.headerlist, without.body)
    assert mounted.get("/api/stream").body == b"0\n1\n2\n3\n4\n"
    assert mounted.post_json("/sql", DEMO).json == [{"n": 5}]
    middleware.close()


def test_flask_extension_reads_app_config(sqlite_database: Database) -> None:
    app = Flask(__name__)
    app.config["SQLHTTP_TARGETS"] = targets_for(sqlite_database)
    app.config["SQLHTTP_PATH"] = "/db"
    extension = SQLHTTP()
    middleware = extension.init_app(app)
    assert app.extensions["sqlhttp"] is middleware and app.wsgi_app is middleware
    client = webtest.TestApp(app)
    assert client.post_json("/db", sqlite_database.body("select 1 as one")).json == [{"one": 1}]
    assert client.get("/sql", expect_errors=True).status_int == 404  # Flask's own 404: the path is /db now
    middleware.close()


def test_flask_extension_keywords_win_over_config(sqlite_database: Database) -> None:
    app = Flask(__name__)
    app.config["SQLHTTP_TARGETS"] = targets_for(sqlite_database)
    app.config["SQLHTTP_POOL_SIZE"] = 0  # would be refused
    SQLHTTP(app, pool_size=3)
    assert app.extensions["sqlhttp"].core.options.pool_size == 3
    app.extensions["sqlhttp"].close()
    bad = Flask(__name__)
    bad.config["SQLHTTP_TARGETS"] = targets_for(sqlite_database)
    bad.config["SQLHTTP_POOL_SIZE"] = 0
    with pytest.raises(ConfigurationError, match="pool_size"):
        SQLHTTP(bad)


# -- FastAPI ------------------------------------------------------------------------------------------------------


async def exchange(app: Any, scope: dict[str, Any], inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every message an ASGI app sends for a scripted conversation."""
    pending = list(inputs)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def scope(kind: str, path: str, method: str = "GET") -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http" if kind == "http" else "ws",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    if kind == "http":
        base["method"] = method
    else:
        base["subprotocols"] = []
    return base


def test_fastapi_example_host_routes_are_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mounted = load_example("fastapi_app", monkeypatch, tmp_path).app
    bare = load_example("fastapi_app", monkeypatch, tmp_path).app
    bare.user_middleware = [m for m in bare.user_middleware if m.cls is not ASGIMiddleware]
    assert len(mounted.user_middleware) == len(bare.user_middleware) + 1

    async def compare() -> None:
        for path in ("/", "/api/status", "/api/stream", "/missing"):
            request = [{"type": "http.request", "body": b"", "more_body": False}]
            assert await exchange(mounted, scope("http", path), request) == await exchange(
                bare, scope("http", path), request
            ), path
        talk = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"},
                {"type": "websocket.disconnect", "code": 1000}]
        with_mw = await exchange(mounted, scope("websocket", "/ws"), talk)
        assert with_mw == await exchange(bare, scope("websocket", "/ws"), talk)
        assert with_mw[1] == {"type": "websocket.send", "text": "echo: hi"}
        body = json.dumps(DEMO).encode()
        http_scope = scope("http", "/sql", "POST")
        http_scope["headers"].append((b"content-type", b"application/json"))
        answer = await exchange(mounted, http_scope, [{"type": "http.request", "body": body}])
        assert answer[0]["status"] == 200 and json.loads(answer[1]["body"]) == [{"n": 5}]

    asyncio.run(compare())


# -- environment and command line ---------------------------------------------------------------------------------


def test_options_from_env() -> None:
    environ = {"SQLHTTP_TARGETS": "a=postgresql://h:1 b=mariadb://h:2", "SQLHTTP_POOL_TIMEOUT": "2.5",
               "SQLHTTP_POOL_SIZE": "3", "SQLHTTP_PATH": "/q", "SQLHTTP_IDLE_TIMEOUT": " "}
    assert options_from_env(environ) == {
        "targets": {"a": "postgresql://h:1", "b": "mariadb://h:2"}, "pool_timeout": 2.5, "pool_size": 3, "path": "/q",
    }
    with pytest.raises(ConfigurationError, match="SQLHTTP_POOL_SIZE"):
        options_from_env({"SQLHTTP_POOL_SIZE": "two"})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sqlhttp_middleware", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=30, check=False)


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["serve"], {}, "targets"),
        (["serve", "--target", "pg"], {}, "NAME=URL"),
        (["serve", "--target", "x=oracle://h"], {}, "unsupported database"),
        (["serve", "--target", "pg=postgresql://127.0.0.1"], {"SQLHTTP_POOL_SIZE": "0"}, "pool_size"),
    ],
)
def test_cli_refuses_bad_settings_before_serving(args: list[str], env: dict[str, str], fragment: str) -> None:
    done = run_cli(*args, env=env)
    assert done.returncode == 2
    assert fragment in done.stderr


def test_cli_help() -> None:
    done = run_cli("serve", "--help")
    assert done.returncode == 0 and "--target NAME=URL" in done.stdout
