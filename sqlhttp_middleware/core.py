"""The framework-free core: a neutral request in, a neutral response out.

The WSGI and ASGI adapters only translate to and from :class:`Request` and :class:`Response`. The core decides
whether a path is ours, checks the request head before any body is read (method, media type, declared length),
parses and validates the body, runs the query and encodes the answer, or the one JSON error shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson

from . import errors
from .auth import PBKDF2, AuthContext, Authenticator
from .engines import EngineCache
from .execute import Body, Login, Query, Runner
from .openapi import openapi_document
from .options import Options
from .ratelimit import Admission, RateLimiter, client_address, namespace_for

__all__ = ["Offload", "Request", "Response", "SQLHTTPCore"]

T = TypeVar("T")
Offload = Callable[[Callable[[], T]], Awaitable[T]]  # runs a blocking call on a thread, for the async path

logger = logging.getLogger("sqlhttp_middleware")

_JSON_HEADERS = (("content-type", "application/json"), ("cache-control", "no-store"))
_STRING_FIELDS = ("cacheId", "username", "password", "database", "provider", "sql")
_SHAPES = ("rows", "full")
_ROW_MODES = ("object", "array")
_CORS_REQUEST_HEADERS = ("content-type", "authorization")
_CORS_EXPOSED_HEADERS = "RateLimit, RateLimit-Policy, Retry-After"


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
        self.headers = headers if headers is not None else list(_JSON_HEADERS)

    @property
    def body(self) -> bytes:
        """The whole body in one piece (a copy when it is in several)."""
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    @property
    def length(self) -> int:
        return sum(map(len, self.parts))


class SQLHTTPCore:
    """Everything the middleware does, minus the web framework."""

    def __init__(self, **options: Any) -> None:
        self.options = Options.from_kwargs(**options)
        self.engines = EngineCache(self.options)
        self.runner = Runner(self.engines, self.options)
        opts = self.options
        self.limiter = RateLimiter(
            limit=opts.rate_limit, window=opts.rate_limit_window, per_client=opts.rate_limit_per_client,
            storage=opts.rate_limit_storage, fail_open=opts.rate_limit_fail_open,
            namespace=opts.rate_limit_namespace or namespace_for(opts.path, list(opts.targets)),
        )
        self._target_policies = {name: self.limiter.target_policy(t.rate_limit) for name, t in opts.targets.items()}
        self._cors_origins = frozenset(opts.cors_origins)
        self.paths = frozenset(path for path in (opts.path, opts.openapi_path) if path)  # what this mount answers
        self.auth = Authenticator(hook=opts.authorize, attempts=opts.login_attempts, window=opts.login_window,
                                  storage=self.limiter.shared_storage)
        self.aio: AsyncPostgres | None = None
        if opts.async_postgres and any(t.family == "postgresql" for t in opts.targets.values()):
            from .aio import AsyncPostgres

            self.aio = AsyncPostgres(self.runner, opts)
        self._inline_budget = opts.inline_budget
        self._gates: OrderedDict[tuple[str, str, str], asyncio.Semaphore] = OrderedDict()
        # Counting in Redis is a network round trip: on the async path it goes to a thread.
        self._storage_blocks = opts.rate_limit_storage.split(":", 1)[0] in ("redis", "rediss", "unix")

    # -- routing and the request head -----------------------------------------------------------------------------

    def matches(self, path: str) -> bool:
        return path in self.paths

    def check_head(self, method: str, headers: Mapping[str, str], path: str | None = None) -> Response | None:
        """Answer what can be answered before reading the body: the OpenAPI document, a CORS preflight, a wrong
        method, media type, or declared size. None: read the body and call :meth:`handle`."""
        response = self._check_head(method, headers, path)
        if response is not None:
            self._add_cors(response, headers)
        return response

    def _check_head(self, method: str, headers: Mapping[str, str], path: str | None) -> Response | None:
        if path is not None and path == self.options.openapi_path and path != self.options.path:
            return self._openapi(method)
        try:
            if method == "OPTIONS" and self._cors_origins and "access-control-request-method" in headers:
                return self._preflight(headers)
            if method != "POST":
                raise errors.MethodNotAllowed(
                    f"{method} is not allowed on {self.options.path}; send a POST with a JSON body",
                    headers={"Allow": "POST"},
                )
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                raise errors.UnsupportedMediaType(
                    "the body must be JSON, sent with Content-Type: application/json"
                )
            declared = headers.get("content-length")
            if declared is not None:
                if not declared.isdigit():
                    raise errors.BadRequest("the Content-Length header is not a number")
                if int(declared) > self.options.max_body_bytes:
                    raise self.too_large()
        except errors.SQLHTTPError as error:
            return self.error_response(error)
        return None

    # -- CORS: off unless cors_origins lists origins; never with credentials ---------------------------------------

    def _allowed_origin(self, headers: Mapping[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin is None or not self._cors_origins:
            return None
        if origin in self._cors_origins:
            return origin
        return "*" if "*" in self._cors_origins else None

    def _preflight(self, headers: Mapping[str, str]) -> Response:
        origin = self._allowed_origin(headers)
        if origin is None:
            raise errors.PermissionDenied("this origin may not call the SQL endpoint from a browser",
                                          headers={"Vary": "Origin"})
        if headers.get("access-control-request-method", "").upper() != "POST":
            raise errors.MethodNotAllowed("only POST is allowed on the SQL endpoint", headers={"Allow": "POST"})
        asked = {name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")}
        refused = asked - {"", *_CORS_REQUEST_HEADERS}
        if refused:
            raise errors.PermissionDenied(f"the header(s) {', '.join(sorted(refused))} may not be sent here")
        return Response(204, b"", [
            ("access-control-allow-methods", "POST"),
            ("access-control-allow-headers", ", ".join(_CORS_REQUEST_HEADERS)),
            ("access-control-max-age", "600"),
        ])

    def _add_cors(self, response: Response, headers: Mapping[str, str]) -> None:
        if not self._cors_origins:
            return
        response.headers.append(("vary", "Origin"))
        origin = self._allowed_origin(headers)
        if origin is not None:
            response.headers.append(("access-control-allow-origin", origin))
            response.headers.append(("access-control-expose-headers", _CORS_EXPOSED_HEADERS))

    def _openapi(self, method: str) -> Response:
        if method not in ("GET", "HEAD"):
            return self.error_response(errors.MethodNotAllowed(
                f"{method} is not allowed on {self.options.openapi_path}; GET it", headers={"Allow": "GET, HEAD"}))
        return Response(200, openapi_document(self.options.path), [("content-type", "application/json")])

    def too_large(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"the request body is larger than the limit of {self.options.max_body_bytes} bytes"
        )

    # -- the request ----------------------------------------------------------------------------------------------

    def handle(self, request: Request, *, head_checked: bool = False) -> Response:
        """Answer one request to the endpoint. Blocking; never raises.

        Adapters that already called :meth:`check_head` before reading the body pass ``head_checked=True``.
        """
        admitted = self._admit(request, head_checked)
        if isinstance(admitted, Response):
            return admitted
        admission, client, query = admitted
        return self._answer(request, admission, self._attempt(request, query, client))

    async def handle_async(self, request: Request, offload: Offload[Any]) -> Response:
        """:meth:`handle` for an event loop, after :meth:`check_head`. Never raises.

        PostgreSQL queries run on the loop (psycopg's async connections, when ``async_postgres`` is on); what may
        block goes to ``offload``: a Redis round trip, a password hash, the ``authorize`` hook, other databases.
        No more requests for one pool go to the threads than the pool has connections: the others wait their turn
        on the loop, first come first served, instead of crowding the threads (and the interpreter lock).
        """
        admitted = await offload(partial(self._admit, request)) if self._storage_blocks else self._admit(request)
        if isinstance(admitted, Response):
            return admitted
        admission, client, query = admitted
        if self.aio is not None and query.target.family == "postgresql":
            result = await self._attempt_async(request, query, client, offload)
        else:
            result = await self._attempt_gated(request, query, client, offload)
        return self._answer(request, admission, result)

    async def _attempt_gated(self, request: Request, query: Query, client: str,
                             offload: Offload[Any]) -> Body | Exception:
        """A query for the sync engines, once its pool has a connection free: SQLite on the loop within
        ``inline_budget`` (or on a thread past it), everything else on a thread."""
        gate = self._gate(query)
        if gate.locked():  # every connection of the pool is in use: wait as long as the pool would
            try:
                await asyncio.wait_for(gate.acquire(), self.options.pool_timeout)
            except TimeoutError:
                return errors.PoolTimeout.busy(self.options.pool_size, self.options.pool_timeout, query.target.name)
        else:
            await gate.acquire()
        try:
            if query.target.family == "sqlite" and self._inline_budget and self._quick_login(request, query):
                result = self._attempt(request, query, client, budget=self._inline_budget)
                if not isinstance(result, errors.RunElsewhere):
                    return result
            return await offload(partial(self._attempt, request, query, client))  # type: ignore[no-any-return]
        finally:
            gate.release()

    def _quick_login(self, request: Request, query: Query) -> bool:
        """True when authenticating this request cannot block: no hook, no password hash to compute."""
        target = query.target
        if self.options.authorize is not None or self._storage_blocks:
            return False
        if target.family != "sqlite" and not target.server_login:
            return True  # the database checks the login
        if request.headers.get("authorization") is not None and target.api_keys:
            return not any(stored.startswith(PBKDF2 + "$") for stored in target.api_keys.values())
        return not target.users or self.auth.login_is_quick(target.name, target.users, query.username,
                                                            query.password)

    def _gate(self, query: Query) -> asyncio.Semaphore:
        """At most ``pool_size`` requests in the threads per target, login and database (roughly, per engine)."""
        key = (query.target.name, query.username, query.database)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(self.options.pool_size)
            while len(self._gates) > 4 * self.options.max_engines:
                self._gates.popitem(last=False)  # one in use still works; it just stops being shared
        else:
            self._gates.move_to_end(key)
        return gate

    def _admit(self, request: Request, head_checked: bool = True) -> Response | tuple[Admission, str, Query]:
        """Everything before the database: the head, the size, the rate limit, the body. A Response refuses."""
        admission: Admission | None = None
        try:
            if not head_checked:
                refused = self._check_head(request.method, request.headers, request.path)
                if refused is not None:
                    self._add_cors(refused, request.headers)
                    return refused
            if len(request.body) > self.options.max_body_bytes:
                raise self.too_large()
            client = client_address(request.client, request.headers, self.options.trusted_proxies)
            admission = self.limiter.admit_request(client)
            query = self.parse(request.body)
            self.limiter.admit_target(admission, query.target.name, self._target_policies[query.target.name])
        except Exception as error:  # every failure: an answer in the one error shape
            return self._answer(request, admission, error)
        return admission, client, query

    def _attempt(self, request: Request, query: Query, client: str,
                 budget: float | None = None) -> Body | Exception:
        try:
            return self._run(request, query, client, budget)
        except Exception as error:  # answered by _answer
            return error

    async def _attempt_async(self, request: Request, query: Query, client: str,
                             offload: Offload[Any]) -> Body | Exception:
        assert self.aio is not None
        target = query.target
        blocking = self._storage_blocks
        try:
            if blocking:
                await offload(partial(self.auth.check_throttle, client, target.name, query.username))
            else:
                self.auth.check_throttle(client, target.name, query.username)
            try:
                if self._quick_login(request, query):
                    login = self._authenticate(request, query, client)
                else:  # a password hash, or the host's hook
                    login = await offload(partial(self._authenticate, request, query, client))
                return await self.aio.run(query, login)
            except errors.AuthenticationFailed:
                if blocking:
                    await offload(partial(self.auth.record_failure, client, target.name, query.username))
                else:
                    self.auth.record_failure(client, target.name, query.username)
                raise
        except Exception as error:  # answered by _answer
            return error

    def _answer(self, request: Request, admission: Admission | None,
                result: Body | Exception) -> Response:
        if isinstance(result, (bytes, list)):
            response = Response(200, result)
        elif isinstance(result, errors.RateLimited):
            response = self.error_response(result)  # carries its own rate-limit headers
            admission = None
        elif isinstance(result, errors.SQLHTTPError):
            response = self.error_response(result)
        else:
            logger.error("sqlhttp-middleware: unexpected error while answering a query", exc_info=result)
            response = self.error_response(errors.InternalError("the server failed to answer this query"))
        if admission is not None:
            response.headers.extend(admission.header_items())
        self._add_cors(response, request.headers)
        return response

    def parse(self, body: bytes) -> Query:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise errors.InvalidJSON("the request body is not valid JSON") from None
        if not isinstance(document, dict):
            raise errors.BadRequest("the request body must be a JSON object")
        for name in _STRING_FIELDS:
            value = document.get(name)
            if value is None:
                raise errors.BadRequest(f"the field {name!r} is missing", field=name)
            if not isinstance(value, str) or not value:
                raise errors.BadRequest(f"the field {name!r} must be a non-empty string", field=name)
        if "\x00" in document["sql"]:
            # libpq ends the text at a NUL, silently: "delete from t\x00 where id = 1" would delete every row.
            raise errors.BadRequest("the field 'sql' contains a NUL character", field="sql")
        bindings = document.get("bindings")
        if bindings is not None and not isinstance(bindings, (list, dict)):
            raise errors.BadRequest("the field 'bindings' must be an array or an object", field="bindings")
        shape = document.get("shape", "rows")
        if shape not in _SHAPES:
            raise errors.BadRequest("the field 'shape' must be \"rows\" or \"full\"", field="shape")
        row_mode = document.get("rowMode", "object")
        if row_mode not in _ROW_MODES:
            raise errors.BadRequest("the field 'rowMode' must be \"object\" or \"array\"", field="rowMode")
        timeout = document.get("timeout")
        if timeout is not None and (
            not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < 1e9
        ):
            raise errors.BadRequest("the field 'timeout' must be a positive number of seconds", field="timeout")

        target = self.options.targets.get(document["cacheId"])
        if target is None:
            raise errors.TargetNotFound(f"no target named {document['cacheId']!r} is configured")
        provider = document["provider"]
        if provider not in target.providers:
            expected = " or ".join(sorted(target.providers))
            raise errors.ProviderMismatch(
                f"target {target.name!r} is {expected}, but the request says provider {provider!r}"
            )
        database = document["database"]
        if target.fixed_database is not None and database != target.fixed_database:
            raise errors.DatabaseNotAllowed(
                f"target {target.name!r} serves only the database {target.fixed_database!r}"
            )
        return Query(
            target=target,
            username=document["username"],
            password=document["password"],
            database=database,
            sql=document["sql"],
            bindings=bindings,
            shape=shape,
            row_mode=row_mode,
            timeout=timeout,
        )

    def _run(self, request: Request, query: Query, client: str, budget: float | None = None) -> Body:
        """Authenticate (behind the brute-force brake), then run."""
        target = query.target
        self.auth.check_throttle(client, target.name, query.username)
        try:
            login = self._authenticate(request, query, client)
            return self.runner.run(query, login, budget=budget)
        except errors.AuthenticationFailed:
            self.auth.record_failure(client, target.name, query.username)
            raise

    def _authenticate(self, request: Request, query: Query, client: str) -> Login:
        target = query.target
        if self.options.authorize is not None:
            self.auth.authorize(AuthContext(
                method=request.method, path=request.path, headers=request.headers, client=client,
                target=target.name, username=query.username, database=query.database, sql=query.sql,
            ))
        if target.family != "sqlite" and not target.server_login:
            return Login(query.username, query.password, query.database)  # the database checks it
        authorization = request.headers.get("authorization")
        if authorization is not None and target.api_keys:
            self.auth.check_api_key(target.name, target.api_keys, authorization)
        elif target.users:
            self.auth.check_login(target.name, target.users, query.username, query.password)
        elif self.options.authorize is None:
            raise errors.AuthenticationFailed(f"target {target.name!r} takes an API key: send Authorization: Bearer")
        url = target.url
        return Login(url.username or "", url.password or "", url.database or query.database)

    # -- answers --------------------------------------------------------------------------------------------------

    def error_response(self, error: errors.SQLHTTPError) -> Response:
        headers = list(_JSON_HEADERS)
        headers.extend((name.lower(), value) for name, value in error.headers.items())
        return Response(error.status, errors.error_body(error), headers)

    def not_found(self) -> Response:
        """For servers with no app behind the middleware (the standalone server)."""
        return self.error_response(errors.NotFound(f"nothing here; the SQL endpoint is {self.options.path}"))

    def pool_stats(self) -> dict[str, int]:
        """Engines (pools), open connections and connections checked out, over the sync and the async pools."""
        stats = self.engines.stats()
        if self.aio is not None:
            for name, value in self.aio.stats().items():
                stats[name] += value
        return stats

    def close(self) -> None:
        if self.aio is not None:
            self.aio.close()
        self.engines.close()
        self.limiter.close()
