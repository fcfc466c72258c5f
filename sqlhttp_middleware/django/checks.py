"""System checks, so that ``manage.py check`` and ``runserver`` reject a bad setting at start-up.

| id | meaning |
|---|---|
| ``sqlhttp.E001`` | ``SQLHTTP`` is not set, not a dict, or has no ``"TARGETS"``. |
| ``sqlhttp.E002`` | ``SQLHTTP`` has a key that is not an option. |
| ``sqlhttp.E003`` | The core refuses an option's value; the message names the option. |
| ``sqlhttp.E004`` | A ``{"DATABASE": alias}`` target names no ``DATABASES`` entry, or one that cannot be served. |
| ``sqlhttp.W001`` | ``SQLHTTPMiddleware`` is not in ``MIDDLEWARE``: nothing serves the endpoint. |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import conf
from .middleware import SQLHTTPMiddleware

__all__ = ["MIDDLEWARE_PATH", "check_middleware", "check_settings"]

MIDDLEWARE_PATH = "sqlhttp_middleware.django.middleware.SQLHTTPMiddleware"


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [checks.Error(problem.message, hint=problem.hint, id=problem.id) for problem in conf.problems()]


def check_middleware(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if any(_is_ours(path) for path in settings.MIDDLEWARE):
        return []
    return [checks.Warning(
        "SQLHTTPMiddleware is not in MIDDLEWARE, so nothing answers the SQL endpoint",
        hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, first or right after SecurityMiddleware.",
        id="sqlhttp.W001",
    )]


def _is_ours(path: str) -> bool:
    if path == MIDDLEWARE_PATH:
        return True
    try:
        middleware = import_string(path)
    except ImportError:
        return False  # Django reports it when it loads the middleware
    return isinstance(middleware, type) and issubclass(middleware, SQLHTTPMiddleware)
