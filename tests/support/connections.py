"""What a database server sees of our connections: counting them, and killing them behind the middleware's back."""

from __future__ import annotations

import time

from .databases import Database


def server_connections(db: Database) -> int:
    """Connections our test login holds to the test database, as the server sees them."""
    if db.family == "postgresql":
        sql = (f"select count(*) from pg_stat_activity where usename = '{db.username}' "
               f"and datname = '{db.database}' and application_name = 'sqlhttp-middleware'")
    else:
        sql = (f"select count(*) from information_schema.processlist where user = '{db.username}' "
               f"and db = '{db.database}'")
    return int(db.run(sql)[0][0])


def kill_our_connections(db: Database) -> int:
    """Kill, on the server, every connection our test login holds to the test database; return how many."""
    if db.family == "postgresql":
        rows = db.run(
            f"select pg_terminate_backend(pid) from pg_stat_activity where usename = '{db.username}' "
            f"and datname = '{db.database}' and application_name = 'sqlhttp-middleware'"
        )
        # pg_terminate_backend only signals: wait until the backends are gone, so that a test's next request meets
        # a connection the server has closed, not one still shutting down.
        deadline = time.monotonic() + 10
        while server_connections(db) and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(rows)
    ids = db.run(f"select id from information_schema.processlist where user = '{db.username}' "
                 f"and db = '{db.database}'")
    for (connection_id,) in ids:
        db.run(f"kill {connection_id}")
    return len(ids)
