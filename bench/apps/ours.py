"""Our middleware as `make bench` serves it: every protection on (rate limit in shared memory, credentials checked
by the database, statement timeout, result caps, type encoding).

The SQLite target ``lite`` answers PolyScale's body (login bench / bench) and libSQL's Hrana at
``/sql/lite/v2/pipeline`` (``Authorization: Bearer bench-token``, stored hashed as a deployment would).

* ``asgi_app``: the ASGI middleware alone (uvicorn).
* ``wsgi_app``: the WSGI middleware alone (gunicorn).
* ``flask_mounted`` / ``flask_bare``: a Flask route with and without the middleware mounted (host-path overhead).
"""

from __future__ import annotations

import os

from flask import Flask, Response

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.auth import hash_api_key
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

SQLITE = os.environ.get("BENCH_SQLITE", "/tmp/sqlhttp-bench.db")
API_KEY = os.environ.get("BENCH_API_KEY", "bench-token")  # libSQL's authToken
TARGETS = {
    "pg": "postgresql://127.0.0.1:5432",
    "maria": "mariadb://127.0.0.1:3306",
    "lite": Target(f"sqlite:///{SQLITE}", users={"bench": "bench"}, api_keys={"bench": hash_api_key(API_KEY)}),
}
# Sessions (libSQL's interactive transactions, the bench's libsql-tx case) idle for 2 s expire, not 10 s: a wrk run
# that ends between a transaction's requests leaves it open, holding one of the pool's 2 connections until then.
SESSION_IDLE_TIMEOUT = float(os.environ.get("BENCH_SESSION_IDLE_TIMEOUT", "2"))
OPTIONS = {"targets": TARGETS, "rate_limit": 10_000_000, "rate_limit_namespace": "bench",
           "executor_threads": int(os.environ.get("SQLHTTP_EXECUTOR_THREADS", "8")),
           "session_idle_timeout": SESSION_IDLE_TIMEOUT}

asgi_app = ASGIMiddleware(None, **OPTIONS)
wsgi_app = WSGIMiddleware(None, **OPTIONS)

flask_bare = Flask("bare")
flask_mounted = Flask("mounted")
for host in (flask_bare, flask_mounted):
    host.add_url_rule("/api/status", "status", lambda: Response(b'{"ok":true}', mimetype="application/json"))
flask_mounted.wsgi_app = WSGIMiddleware(flask_mounted.wsgi_app, **OPTIONS)  # type: ignore[method-assign]
