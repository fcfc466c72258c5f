"""Our middleware as `make bench` serves it: every protection on (rate limit in shared memory, credentials checked
by the database, statement timeout, result caps, type encoding).

* ``asgi_app``: the ASGI middleware alone (uvicorn).
* ``wsgi_app``: the WSGI middleware alone (gunicorn).
* ``flask_mounted`` / ``flask_bare``: a Flask route with and without the middleware mounted (host-path overhead).
"""

from __future__ import annotations

import os

from flask import Flask, Response

from sqlhttp_middleware.asgi import SQLHTTPMiddleware as ASGIMiddleware
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.wsgi import SQLHTTPMiddleware as WSGIMiddleware

SQLITE = os.environ.get("BENCH_SQLITE", "/tmp/sqlhttp-bench.db")
TARGETS = {
    "pg": "postgresql://127.0.0.1:5432",
    "maria": "mariadb://127.0.0.1:3306",
    "lite": Target(f"sqlite:///{SQLITE}", users={"bench": "bench"}),
}
OPTIONS = {"targets": TARGETS, "rate_limit": 10_000_000, "rate_limit_namespace": "bench",
           "executor_threads": int(os.environ.get("SQLHTTP_EXECUTOR_THREADS", "8"))}

asgi_app = ASGIMiddleware(None, **OPTIONS)
wsgi_app = WSGIMiddleware(None, **OPTIONS)

flask_bare = Flask("bare")
flask_mounted = Flask("mounted")
for host in (flask_bare, flask_mounted):
    host.add_url_rule("/api/status", "status", lambda: Response(b'{"ok":true}', mimetype="application/json"))
flask_mounted.wsgi_app = WSGIMiddleware(flask_mounted.wsgi_app, **OPTIONS)  # type: ignore[method-assign]
