"""The example's own pages, which answer exactly as they would without the middleware."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>Django example</title><h1>Django example</h1>"
        "<p>SQL over HTTP is at POST /sql, served by <code>sqlhttp_middleware.django</code>.</p>"
    )


def status(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "django-example", "ok": True})
