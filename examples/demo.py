"""`make demo`: seed the SQLite demo database, print working examples, then serve the Flask example with gunicorn
on http://127.0.0.1:8000 until stopped. Set SQLHTTP_TARGETS to serve your own databases beside the demo."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_data import DEMO_DATABASE, seed  # noqa: E402

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "8000"))
URL = f"http://{HOST}:{PORT}"
LOGIN = {"cacheId": "demo", "username": "demo", "password": "demo", "database": "shop", "provider": "sqlite"}


def curl(sql: str, bindings: object) -> str:
    body = json.dumps({**LOGIN, "sql": sql, "bindings": bindings})
    return f"curl -s {URL}/sql -H 'Content-Type: application/json' -d {shlex.quote(body)}"


def banner() -> str:
    return f"""
sqlhttp-middleware demo: the Flask example (examples/flask_app/app.py) on {URL}
with /sql over the SQLite shop in {DEMO_DATABASE} (tables customers, products, orders).

The host app's own routes keep working:  curl -s {URL}/api/status

Positional bindings:
  {curl("SELECT name, country FROM customers WHERE country = ? ORDER BY name", ["US"])}

Named bindings:
  {curl("SELECT sku, name, price_cents FROM products WHERE price_cents < :max ORDER BY price_cents", {"max": 5000})}

The result cache is on for the demo: send a query twice with curl -i and the second answer says X-Cache: HIT;
an INSERT, UPDATE or DELETE in between makes the next one a MISS again.

From edge code, with libSQL's client (npm install @libsql/client):

  import {{ createClient }} from "@libsql/client";
  const db = createClient({{ url: "{URL}/sql/demo/", authToken: "demo-token" }});
  console.log((await db.execute("SELECT name FROM customers LIMIT 3")).rows);

From edge code, with PolyScale's client (npm install @polyscale/serverless-js). That client cannot send
provider "sqlite", so the demo target also answers to "postgres":

  import {{ Client }} from "@polyscale/serverless-js";
  const db = new Client("{URL}", {{ cacheId: "demo", username: "demo", password: "demo",
                                     database: "shop", provider: "postgres" }});
  console.log(await db.query("SELECT name FROM customers WHERE joined >= :since", {{ since: "2024-04-01" }}));

Stop with Ctrl-C.
"""


if __name__ == "__main__":
    seed()
    print(banner(), flush=True)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    os.execv(str(gunicorn), [str(gunicorn), "--chdir", str(HERE / "flask_app"), "--bind", f"{HOST}:{PORT}",
                             "--workers", "2", "--threads", "4", "--access-logfile", "-", "app:app"])
