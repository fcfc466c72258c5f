"""The small interface every wire protocol implements, over the one engine.

A protocol owns its wire format at both ends: :meth:`Protocol.parse` turns a request's body (and the headers that
belong to the protocol) into neutral :class:`~sqlhttp_middleware.engine.work.Work`, and a result builder of its
own, :meth:`Protocol.builder`, turns what the engine streams into its bytes. Errors are raised anywhere as
:class:`~sqlhttp_middleware.errors.SQLHTTPError` and turned into bytes once, by the protocol that received the
request (:meth:`Protocol.error_response`), in its own error shape and status rules.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar
from typing import Protocol as TypingProtocol

import orjson

from .. import errors
from ..engine.work import Body, Limits, ResultBuilder, StreamProgram, Work
from ..http import JSON_HEADERS, Request, Response
from ..options import Options

__all__ = ["Parsed", "Protocol", "json_object"]


class Parsed(TypingProtocol):
    """What a protocol's parser made of a request: the work, and whatever else its builder needs."""

    @property
    def work(self) -> Work: ...


P = TypeVar("P", bound=Parsed)


class Protocol(ABC, Generic[P]):
    name: ClassVar[str]
    # The media types its clients send. The default accepts only JSON, so that a cross-site form (which may send
    # text/plain without a preflight) cannot reach the endpoint.
    media_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    # Request headers its browser clients send beyond Content-Type and Authorization (allowed by a CORS preflight).
    request_headers: ClassVar[tuple[str, ...]] = ()
    # Response headers a browser client may read, beyond the rate-limit ones.
    exposed_headers: ClassVar[tuple[str, ...]] = ()
    # Request headers that carry the login or shape the answer: part of a cached answer's key, with the body.
    cache_headers: ClassVar[tuple[str, ...]] = ("authorization",)

    def __init__(self, options: Options) -> None:
        self.options = options

    def claims(self, headers: Mapping[str, str]) -> bool:
        """True when a request at the shared path is this protocol's (by a header only it sends)."""
        return False

    @abstractmethod
    def parse(self, request: Request) -> P:
        """The request's work, or an :class:`errors.SQLHTTPError` naming what is wrong with it."""

    @abstractmethod
    def builder(self, parsed: P, limits: Limits) -> ResultBuilder | StreamProgram:
        """A fresh result builder for this request's answer (a program, for work on a stream)."""

    def respond(self, parsed: P, body: Body) -> Response:
        """The success answer around the builder's bytes."""
        return Response(200, body, list(JSON_HEADERS))

    @abstractmethod
    def error_body(self, error: errors.SQLHTTPError) -> tuple[int, bytes]:
        """The status and the body this protocol answers ``error`` with."""

    def error_response(self, error: errors.SQLHTTPError) -> Response:
        status, body = self.error_body(error)
        headers = list(JSON_HEADERS)
        headers.extend((name.lower(), value) for name, value in error.headers.items())
        return Response(status, body, headers)


# orjson holds integers only in [-2**63, 2**64) and turns a longer one into a float. Every integer token outside that
# range has at least 19 digits, so a body without a run of 19 digits cannot have lost one. The run is found by
# mapping every digit to "0" and searching for nineteen of them: two C loops over the body (about a third of
# orjson's own time on a body of nothing but numbers, far less on the usual one).
_DIGITS_AS_ZERO = bytes(range(0x30)) + b"0" * 10 + bytes(range(0x3A, 0x100))
_NINETEEN_DIGITS = b"0" * 19


def json_object(body: bytes, expected: str = "a JSON object") -> dict[str, Any]:
    """The request body as a JSON object, or the refusal that says what it is instead.

    Integers are exact at any size (a binding of 2**64 reaches the database as that integer, not as a float);
    numbers with a fraction or an exponent are floats, as JSON's double.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.InvalidJSON("the request body is not valid JSON") from None
    if _NINETEEN_DIGITS in body.translate(_DIGITS_AS_ZERO):
        # orjson has validated the body, and refused any number beyond a double's range (so no integer reaches
        # Python's 4300-digit limit); the standard parser keeps every integer exact and agrees on the rest.
        document = json.loads(body)
    if not isinstance(document, dict):
        raise errors.BadRequest(f"the request body must be {expected}")
    return document
