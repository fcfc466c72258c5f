"""The Django app: it exists to register the system checks (``manage.py check``, ``runserver``) at start-up."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import register

from .checks import check_middleware, check_settings


class SQLHTTPConfig(AppConfig):
    name = "sqlhttp_middleware.django"
    label = "sqlhttp"
    verbose_name = "sqlhttp-middleware"

    def ready(self) -> None:
        register(check_settings)
        register(check_middleware)
