"""The example's own routes. /sql is not here: the middleware answers it before URL resolution."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("api/status", views.status),
]
