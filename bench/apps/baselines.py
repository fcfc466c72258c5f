"""What a user would write instead of the middleware: the baselines of `make bench`.

* ``starlette_app``: a minimal Starlette endpoint on a raw asyncpg pool (PostgreSQL).
* ``bare_app``: the practical floor, a bare ASGI callable on a raw asyncpg pool: no framework, no checks.
* ``flask_app``: a minimal Flask endpoint with a SQLAlchemy engine (PostgreSQL), for gunicorn.

Both take the same JSON body as ours ({sql, bindings}) and answer rows as a JSON array, with pools of 2 connections.
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import orjson
import sqlalchemy
from flask import Flask, Response, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

_pool: asyncpg.Pool | None = None


async def _sql(request: Request) -> StarletteResponse:
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(DSN, min_size=2, max_size=2)
    body = orjson.loads(await request.body())
    async with _pool.acquire() as connection:
        rows = await connection.fetch(body["sql"], *body.get("bindings", []))
    return StarletteResponse(orjson.dumps([dict(row) for row in rows], default=str), media_type="application/json")


starlette_app = Starlette(routes=[Route("/sql", _sql, methods=["POST"])])

_bare_pool: asyncpg.Pool | None = None


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _bare_pool
    if scope["type"] != "http":
        return
    if _bare_pool is None:
        _bare_pool = await asyncpg.create_pool(DSN, min_size=2, max_size=2)
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = orjson.loads(b"".join(chunks))
    async with _bare_pool.acquire() as connection:
        rows = await connection.fetch(body["sql"], *body.get("bindings", []))
    answer = orjson.dumps([dict(row) for row in rows], default=str)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})

flask_app = Flask(__name__)
_engine = sqlalchemy.create_engine(DSN.replace("postgresql://", "postgresql+psycopg://"), pool_size=2,
                                   max_overflow=0)


@flask_app.post("/sql")
def flask_sql() -> Response:
    body: dict[str, Any] = orjson.loads(request.get_data())
    with _engine.begin() as connection:
        result = connection.exec_driver_sql(body["sql"].replace("$1", "%s"), tuple(body.get("bindings", [])))
        rows = [dict(row._mapping) for row in result] if result.returns_rows else []
    return Response(orjson.dumps(rows, default=str), mimetype="application/json")


@flask_app.get("/api/status")
def flask_status() -> Response:
    return Response(b'{"ok":true}', mimetype="application/json")
