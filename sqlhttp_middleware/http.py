"""The neutral request and response the adapters translate to and from, and the HTTP policy around them:
CORS (off unless ``cors_origins`` lists origins; never with credentials)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import errors

__all__ = ["JSON_HEADERS", "Cors", "Request", "Response"]

JSON_HEADERS = (("content-type", "application/json"), ("cache-control", "no-store"))
_RATE_LIMIT_HEADERS = ("RateLimit", "RateLimit-Policy", "Retry-After")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    client: str | None = None


class Response:
    """Status, headers, and the body as one or more byte strings: a large answer stays in the pieces it was
    encoded in, which the adapters send one after the other instead of copying them into one."""

    __slots__ = ("headers", "parts", "status")

    def __init__(self, status: int, body: bytes | list[bytes], headers: list[tuple[str, str]] | None = None):
        self.status = status
        self.parts = body if isinstance(body, list) else [body]
        self.headers = headers if headers is not None else list(JSON_HEADERS)

    @property
    def body(self) -> bytes:
        """The whole body in one piece (a copy when it is in several)."""
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    @property
    def length(self) -> int:
        return sum(map(len, self.parts))


class Cors:
    """Preflights and the headers of actual responses, for the origins allowed and the headers the protocols
    send; precomputed once."""

    def __init__(self, origins: Iterable[str], request_headers: Iterable[str], exposed_headers: Iterable[str]) -> None:
        self.origins = frozenset(origins)
        self.request_headers = ("content-type", "authorization", *sorted(set(request_headers)))
        self._allowed = frozenset(self.request_headers)
        self._exposed = ", ".join([*_RATE_LIMIT_HEADERS, *sorted(set(exposed_headers))])

    def _allowed_origin(self, headers: Mapping[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin is None or not self.origins:
            return None
        if origin in self.origins:
            return origin
        return "*" if "*" in self.origins else None

    def is_preflight(self, method: str, headers: Mapping[str, str]) -> bool:
        return method == "OPTIONS" and bool(self.origins) and "access-control-request-method" in headers

    def preflight(self, headers: Mapping[str, str]) -> Response:
        origin = self._allowed_origin(headers)
        if origin is None:
            raise errors.PermissionDenied("this origin may not call the SQL endpoint from a browser",
                                          headers={"Vary": "Origin"})
        if headers.get("access-control-request-method", "").upper() != "POST":
            raise errors.MethodNotAllowed("only POST is allowed on the SQL endpoint", headers={"Allow": "POST"})
        asked = {name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")}
        refused = asked - {"", *self._allowed}
        if refused:
            raise errors.PermissionDenied(f"the header(s) {', '.join(sorted(refused))} may not be sent here")
        return Response(204, b"", [
            ("access-control-allow-methods", "POST"),
            ("access-control-allow-headers", ", ".join(self.request_headers)),
            ("access-control-max-age", "600"),
        ])

    def decorate(self, response: Response, headers: Mapping[str, str]) -> None:
        if not self.origins:
            return
        response.headers.append(("vary", "Origin"))
        origin = self._allowed_origin(headers)
        if origin is not None:
            response.headers.append(("access-control-allow-origin", origin))
            response.headers.append(("access-control-expose-headers", self._exposed))
