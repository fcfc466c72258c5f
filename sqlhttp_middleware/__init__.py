"""sqlhttp-middleware: a PolyScale-compatible ``/sql`` endpoint for any WSGI or ASGI app."""

from __future__ import annotations

__version__ = "0.1.0"
