"""Settings for the Django example.

Run: gunicorn --chdir examples/django_app project.wsgi:application   (or uvicorn ... project.asgi:application)
Targets come from SQLHTTP_TARGETS ("NAME=URL NAME=URL") and the other SQLHTTP_* variables, else the SQLite demo.
DJANGO_DEBUG=1 turns debugging on; DJANGO_ALLOWED_HOSTS (space-separated) replaces the local defaults.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # examples/, for the shared demo set-up

from demo_data import middleware_options

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only-set-DJANGO_SECRET_KEY")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1 localhost").split()

INSTALLED_APPS = [
    "sqlhttp_middleware.django",  # registers the system checks (sqlhttp.E001...)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "sqlhttp_middleware.django.middleware.SQLHTTPMiddleware",  # early: /sql is answered before anything else runs
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The SQLHTTP_* environment variables as the SQLHTTP setting: option names upper-cased. In a project of your own,
# a target can also reuse an entry of DATABASES: SQLHTTP = {"TARGETS": {"main": {"DATABASE": "default"}}}.
SQLHTTP = {name.upper(): value for name, value in middleware_options().items()}

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

# Django itself needs no database here (no models); /sql serves the targets above.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

USE_TZ = True
