"""`make demo`: serve /sql over a freshly seeded SQLite database on http://127.0.0.1:8000 and show how to call it."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_demo import seed

from sqlhttp_middleware.asgi import SQLHTTPMiddleware
from sqlhttp_middleware.options import Target

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
DATABASE = seed(Path(os.environ.get("SQLHTTP_DEMO_DB", "demo.db")).resolve())
app = SQLHTTPMiddleware(None, targets={"demo": Target(f"sqlite:///{DATABASE}", users={"demo": "demo"})})


def curl(sql: str, bindings: object = None) -> str:
    body = {"cacheId": "demo", "username": "demo", "password": "demo", "database": "demo", "provider": "sqlite",
            "sql": sql}
    if bindings is not None:
        body["bindings"] = bindings
    return (f"curl -s http://{HOST}:{PORT}/sql -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(body))}")


if __name__ == "__main__":
    print(f"""
sqlhttp-middleware demo: /sql over {DATABASE} (tables customers, products, orders)

Try, from another terminal:

  {curl("SELECT name, country FROM customers WHERE country = ?", ["US"])}

  {curl("SELECT name, price_cents FROM products WHERE price_cents < :max ORDER BY price_cents", {"max": 5000})}

Stop with Ctrl-C.
""", flush=True)
    uvicorn.run(app, host=HOST, port=PORT, log_level="warning")
