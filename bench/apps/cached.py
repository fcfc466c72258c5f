"""The apps of `bench/cache.py` and `bench/planetscale.py`, with the options of `bench/apps/ours.py` (every
protection on, a rate limit too high to refuse anything).

* ``cache_app`` (uvicorn): PostgreSQL through two targets on the same server, ``pgc`` with the result cache on and
  ``pg`` with it off, at ``/sql``; and at ``/plain/sql`` a second mount, in the same process, with no cached target
  at all (``pg`` again): the reference for what a write costs where no cache is configured anywhere.
* ``planetscale_app`` (uvicorn): MariaDB's bench database as target ``maria``, answering PolyScale's body at
  ``/sql`` and PlanetScale's driver at the root (``/psdb.v1alpha1.Database/Execute``, ``planetscale_root=True``).

``BENCH_DB`` names the database (the bench's ``sqlhttp_test_bench``; the smoke run uses its own).
"""

from __future__ import annotations

import os
from typing import Any

from sqlhttp_middleware.asgi import SQLHTTPMiddleware
from sqlhttp_middleware.options import Target

DB = os.environ.get("BENCH_DB", "sqlhttp_test_bench")
PG = "postgresql://127.0.0.1:5432"
COMMON: dict[str, Any] = {"rate_limit": 10_000_000,
                          "executor_threads": int(os.environ.get("SQLHTTP_EXECUTOR_THREADS", "8"))}

# Innermost first: /plain/sql (no cache anywhere in that mount), then /sql (pgc cached, pg not) around it.
_plain = SQLHTTPMiddleware(None, targets={"pg": PG}, path="/plain/sql", rate_limit_namespace="bench-plain",
                           **COMMON)
cache_app = SQLHTTPMiddleware(_plain, targets={"pgc": Target(PG, cache=True), "pg": PG},
                              rate_limit_namespace="bench-cache", **COMMON)

planetscale_app = SQLHTTPMiddleware(None, targets={"maria": f"mariadb://127.0.0.1:3306/{DB}"},
                                    planetscale_root=True, rate_limit_namespace="bench-planetscale", **COMMON)
