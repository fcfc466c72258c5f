"""A small FastAPI app with /sql mounted: its routes, a streaming response and a websocket keep working beside it.

Run: uvicorn --app-dir examples/fastapi_app app:app   (targets from SQLHTTP_TARGETS, else the SQLite demo)
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo_data import middleware_options

from sqlhttp_middleware.asgi import SQLHTTPMiddleware

app = FastAPI(title="FastAPI example")


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return "<!doctype html><title>FastAPI example</title><h1>FastAPI example</h1><p>SQL over HTTP: POST /sql.</p>"


@app.get("/api/status")
async def status() -> dict[str, object]:
    return {"app": "fastapi-example", "ok": True}


@app.get("/api/stream")
async def stream() -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for number in range(5):
            yield f"{number}\n".encode()

    return StreamingResponse(numbers(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")


# The one line that mounts the endpoint.
app.add_middleware(SQLHTTPMiddleware, **middleware_options())
