"""WSGI entry point: ``gunicorn --chdir examples/django_app project.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Loads the middleware, which builds the core: a bad SQLHTTP setting fails here, at start-up.
application = get_wsgi_application()
