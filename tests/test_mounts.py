"""Adapter details: SCRIPT_NAME and root_path, non-HTTP scopes, streamed bodies, and the standalone mode."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

from .support import Database, host_app_wsgi, targets_for


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"], captured["headers"] = status, {k.lower(): v for k, v in headers}

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def wsgi_environ(path: str, body: bytes, **extra: Any) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "test", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
    }
    environ.update(extra)
    return environ


def test_wsgi_respects_script_name(sqlite_database: Database) -> None:
    app = WSGIMiddleware(host_app_wsgi, targets=targets_for(sqlite_database))
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    status, _, answer = call_wsgi(app, wsgi_environ("/sql", body, SCRIPT_NAME="/api"))
    assert status == "200 OK" and json.loads(answer) == [{"one": 1}]
    app.close()


def test_wsgi_reads_a_terminated_stream_without_length(sqlite_database: Database) -> None:
    app = WSGIMiddleware(host_app_wsgi, targets=targets_for(sqlite_database), max_body_bytes=300)
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    environ = wsgi_environ("/sql", body, CONTENT_LENGTH="", **{"wsgi.input_terminated": True})
    assert json.loads(call_wsgi(app, environ)[2]) == [{"one": 1}]
    big = json.dumps(sqlite_database.body("select '" + "x" * 400 + "'")).encode()
    environ = wsgi_environ("/sql", big, CONTENT_LENGTH="", **{"wsgi.input_terminated": True})
    status, _, answer = call_wsgi(app, environ)
    assert status.startswith("413") and json.loads(answer)["code"] == "PAYLOAD_TOO_LARGE"
    app.close()


def test_wsgi_bad_content_length(sqlite_database: Database) -> None:
    app = WSGIMiddleware(host_app_wsgi, targets=targets_for(sqlite_database))
    status, _, answer = call_wsgi(app, wsgi_environ("/sql", b"{}", CONTENT_LENGTH="abc"))
    assert status.startswith("400") and json.loads(answer)["code"] == "INVALID_REQUEST"
    app.close()


def test_wsgi_standalone_answers_404_in_the_error_shape(sqlite_database: Database) -> None:
    app = WSGIMiddleware(None, targets=targets_for(sqlite_database))
    status, headers, answer = call_wsgi(app, wsgi_environ("/elsewhere", b""))
    assert status.startswith("404") and headers["content-type"] == "application/json"
    assert json.loads(answer)["code"] == "NOT_FOUND"
    app.close()


async def asgi_call(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    communicator = ApplicationCommunicator(app, scope)
    for message in messages:
        await communicator.send_input(message)
    sent = []
    while True:
        try:
            sent.append(await communicator.receive_output(2))
        except Exception:
            break
        if sent[-1].get("type") == "http.response.body" and not sent[-1].get("more_body"):
            break
    await communicator.wait(2)
    return sent


def http_scope(path: str, root_path: str = "", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": root_path, "query_string": b"",
        "headers": headers if headers is not None else [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }


@pytest.mark.anyio
async def test_asgi_respects_root_path_and_streams_the_body(sqlite_database: Database) -> None:
    app = ASGIMiddleware(None, targets=targets_for(sqlite_database))
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    half = len(body) // 2
    sent = await asgi_call(app, http_scope("/api/sql", root_path="/api"), [
        {"type": "http.request", "body": body[:half], "more_body": True},
        {"type": "http.request", "body": body[half:], "more_body": False},
    ])
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == [{"one": 1}]
    app.close()


@pytest.mark.anyio
async def test_asgi_stops_reading_at_the_limit(sqlite_database: Database) -> None:
    app = ASGIMiddleware(None, targets=targets_for(sqlite_database), max_body_bytes=100)
    sent = await asgi_call(app, http_scope("/sql"), [
        {"type": "http.request", "body": b"x" * 80, "more_body": True},
        {"type": "http.request", "body": b"x" * 80, "more_body": True},
    ])
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "PAYLOAD_TOO_LARGE"
    app.close()


@pytest.mark.anyio
async def test_asgi_passes_non_http_scopes_to_the_app(sqlite_database: Database) -> None:
    seen: list[str] = []

    async def host(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})

    app = ASGIMiddleware(host, targets=targets_for(sqlite_database))
    communicator = ApplicationCommunicator(app, {"type": "websocket", "path": "/sql", "headers": []})
    await communicator.send_input({"type": "websocket.connect"})
    assert (await communicator.receive_output(2))["type"] == "websocket.accept"
    await communicator.wait(2)
    communicator = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await communicator.wait(2)
    assert seen == ["websocket", "lifespan"]
    app.close()


@pytest.mark.anyio
async def test_asgi_standalone_handles_lifespan_and_404(sqlite_database: Database) -> None:
    app = ASGIMiddleware(None, targets=targets_for(sqlite_database))
    communicator = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await communicator.send_input({"type": "lifespan.startup"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.startup.complete"
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.shutdown.complete"
    app = ASGIMiddleware(None, targets=targets_for(sqlite_database))
    sent = await asgi_call(app, http_scope("/elsewhere"), [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 404 and json.loads(sent[1]["body"])["code"] == "NOT_FOUND"
    communicator = ApplicationCommunicator(app, {"type": "websocket", "path": "/x", "headers": []})
    await communicator.send_input({"type": "websocket.connect"})
    assert (await communicator.receive_output(2))["type"] == "websocket.close"
    app.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_asgi_runs_blocking_database_work_off_the_event_loop(sqlite_database: Database) -> None:
    import threading

    app = ASGIMiddleware(None, targets=targets_for(sqlite_database), inline_budget=0)
    threads: list[int] = []
    original = app.core.executor.run

    def recording(*args: Any, **options: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **options)

    app.core.executor.run = recording  # type: ignore[method-assign]
    body = json.dumps(sqlite_database.body("select 1 as one")).encode()
    sent = await asgi_call(app, http_scope("/sql"), [{"type": "http.request", "body": body}])
    assert sent[0]["status"] == 200
    assert threads and threads[0] != threading.get_ident()  # a worker thread of our own pool, not the loop's
    app.close()
