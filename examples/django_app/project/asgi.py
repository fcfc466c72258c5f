"""ASGI entry point: ``uvicorn --app-dir examples/django_app project.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Loads the middleware, which builds the core: a bad SQLHTTP setting fails here, at start-up.
application = get_asgi_application()
