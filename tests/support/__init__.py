"""Shared test helpers, in one place: test modules import them from here, never from conftest or from each other.

``conftest.py`` holds only fixtures, built from these helpers. ``support.django`` is not re-exported: importing it
configures Django for the process.
"""

from __future__ import annotations

from .clients import (
    ENGINE_PATHS,
    MOUNTS,
    Client,
    Reply,
    host_app_asgi,
    host_app_wsgi,
    make_asgi_client,
    make_core_client,
    make_engine_clients,
    make_wsgi_client,
    rows_on_every_path,
)
from .connections import kill_our_connections, server_connections
from .databases import (
    DATABASES,
    IN_CI,
    MYSQL_ADMIN,
    MYSQL_USER,
    PASSWORD,
    PG_ADMIN,
    PG_USER,
    REDIS_URL,
    ROOT,
    SQLITE_PASSWORD,
    SQLITE_USER,
    Database,
    redis_url,
    targets_for,
    terminate_pg_sessions,
    unavailable,
)
from .docs import table_rows
from .node import node_with
from .servers import EXAMPLES, free_port, server_command, serving, stop, wait_until_serving

__all__ = [
    "DATABASES",
    "ENGINE_PATHS",
    "EXAMPLES",
    "IN_CI",
    "MOUNTS",
    "MYSQL_ADMIN",
    "MYSQL_USER",
    "PASSWORD",
    "PG_ADMIN",
    "PG_USER",
    "REDIS_URL",
    "ROOT",
    "SQLITE_PASSWORD",
    "SQLITE_USER",
    "Client",
    "Database",
    "Reply",
    "free_port",
    "host_app_asgi",
    "host_app_wsgi",
    "kill_our_connections",
    "make_asgi_client",
    "make_core_client",
    "make_engine_clients",
    "make_wsgi_client",
    "node_with",
    "redis_url",
    "rows_on_every_path",
    "server_command",
    "server_connections",
    "serving",
    "stop",
    "table_rows",
    "targets_for",
    "terminate_pg_sessions",
    "unavailable",
    "wait_until_serving",
]
