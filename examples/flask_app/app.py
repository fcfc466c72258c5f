"""A small Flask app with /sql mounted: its own page and JSON routes keep working beside the endpoint.

Run: gunicorn --chdir examples/flask_app app:app   (targets from SQLHTTP_TARGETS, else the SQLite demo)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, jsonify

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo_data import middleware_options

from sqlhttp_middleware.wsgi import SQLHTTPMiddleware

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "<!doctype html><title>Flask example</title><h1>Flask example</h1><p>SQL over HTTP is at POST /sql.</p>"


@app.get("/api/status")
def status() -> Response:
    return jsonify(app="flask-example", ok=True)


@app.get("/api/stream")
def stream() -> Response:
    def numbers() -> Iterator[str]:
        for number in range(5):
            yield f"{number}\n"

    return Response(numbers(), mimetype="text/plain")


# The one line that mounts the endpoint.
app.wsgi_app = SQLHTTPMiddleware(app.wsgi_app, **middleware_options())  # type: ignore[method-assign]
