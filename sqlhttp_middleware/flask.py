"""Flask extension: ``SQLHTTP(app)`` or ``sqlhttp.init_app(app)``, reading ``SQLHTTP_*`` keys of ``app.config``.

A thin convenience over ``app.wsgi_app = SQLHTTPMiddleware(app.wsgi_app, ...)``, which works just as well. Config
keys are the upper-cased option names with the ``SQLHTTP_`` prefix (``SQLHTTP_TARGETS``, ``SQLHTTP_POOL_TIMEOUT``, ...);
keyword arguments given to the extension take precedence over them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from .env import env_name
from .options import OPTIONS, OptionKeywords
from .wsgi import SQLHTTPMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["SQLHTTP"]


class SQLHTTP:
    def __init__(self, app: Flask | None = None, **options: Unpack[OptionKeywords]) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> SQLHTTPMiddleware:
        """Mount the endpoint on ``app``; returns the middleware (also kept in ``app.extensions["sqlhttp"]``)."""
        options: dict[str, Any] = {
            option.name: app.config[env_name(option.name)]
            for option in OPTIONS
            if env_name(option.name) in app.config
        }
        options.update(self.options)
        middleware = SQLHTTPMiddleware(app.wsgi_app, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions["sqlhttp"] = middleware
        return middleware
