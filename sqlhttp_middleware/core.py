"""The framework-free core: a neutral request in, a neutral response out.

The adapters only translate to and from :class:`Request` and :class:`Response`. A request goes one way through
the stages, each owning one concern: routing (which protocol answers: by path, and at the shared path by the
header only Neon's driver sends), HTTP policy (method, media type, declared size, CORS: per protocol, checked
before any body is read), the protocol's parser (wire format to neutral :class:`~.engine.work.Work`), admission
(rate limits, the login brake, authentication, to a :class:`~.engine.work.Login`), the executor (pools,
deadlines, read-only, caps; sync or on the event loop), and the protocol's result builder and error shape. Errors
are raised where they happen and turned into bytes once, by the protocol that received the request.

Every answer at the endpoint is observed once (:class:`~.metrics.Observer`: its request id, log line and samples).
The mount's other pages (the OpenAPI document, metrics, liveness and readiness) are answered beside the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypeVar, cast

from typing_extensions import Unpack

from . import errors
from .auth import Authenticator, run_steps, run_steps_async
from .cache import CacheAnswer, ResultCache, make_stamps
from .engine.executor import Executor
from .engine.sessions import Sessions
from .engine.work import Work
from .engines import EngineCache
from .health import Readiness, alive
from .http import Cors, Request, Response
from .metrics import Observer
from .options import OptionKeywords, Options
from .protocols import Hrana, Neon, PlanetScaleHTTP, PolyScale, Protocol
from .protocols.hrana import CURSOR
from .protocols.planetscale import PREFIX as PLANETSCALE_PREFIX
from .protocols.polyscale import openapi_document
from .ratelimit import Admission, RateLimiter, client_address, namespace_for

if TYPE_CHECKING:
    from .engine.aio import AsyncPostgres
    from .engine.work import ResultBuilder
    from .protocols.base import Parsed

__all__ = ["Offload", "Request", "Response", "SQLHTTPCore"]

T = TypeVar("T")
Offload = Callable[[Callable[[], T]], Awaitable[T]]  # runs a blocking call on a thread, for the async path

logger = logging.getLogger("sqlhttp_middleware")

_Admitted = tuple[Protocol[Any], Admission, str, "Parsed"]


class SQLHTTPCore:
    """Everything the middleware does, minus the web framework."""

    def __init__(self, **options: Unpack[OptionKeywords]) -> None:
        self.options = Options.from_kwargs(**options)
        self.engines = EngineCache(self.options)
        self.executor = Executor(self.engines, self.options)
        opts = self.options
        self.limiter = RateLimiter(
            limit=opts.rate_limit, window=opts.rate_limit_window, per_client=opts.rate_limit_per_client,
            storage=opts.rate_limit_storage, fail_open=opts.rate_limit_fail_open,
            namespace=opts.rate_limit_namespace or namespace_for(opts.path, list(opts.targets)),
            targets=list(opts.targets), slots=opts.rate_limit_slots,
        )
        self._target_policies = {name: self.limiter.target_policy(t.rate_limit) for name, t in opts.targets.items()}
        self.polyscale = PolyScale(opts)
        self.hrana = Hrana(opts)  # at its own paths under the mount: {mount}/TARGET/v2/pipeline, ...
        self.planetscale = PlanetScaleHTTP(opts)  # {mount}[/TARGET]/psdb.v1alpha1.Database/..., and at the root
        self._hrana_prefix = opts.path.rstrip("/") + "/"
        # Protocols that claim a request at the shared path by a header of their own, tried in order; PolyScale's
        # answers the rest.
        self.claimed: tuple[Protocol[Any], ...] = (Neon(opts),)
        every = (self.polyscale, self.hrana, self.planetscale, *self.claimed)
        self.cors = Cors(opts.cors_origins, [h for p in every for h in p.request_headers],
                         ["x-request-id", "x-cache", "age", *(h for p in every for h in p.exposed_headers)])
        self.observer = Observer(opts)
        self.readiness = Readiness(opts.targets) if opts.health_path else None
        self._ready_path = opts.health_path + "/ready" if opts.health_path else ""
        pages = (opts.openapi_path, opts.metrics_path, opts.health_path, self._ready_path)
        self._pages = frozenset(path for path in pages if path)  # answered beside the endpoint
        self.paths = frozenset({opts.path, *self._pages})  # what this mount answers
        # Counting in Redis is a network round trip: on the async path it goes to a thread.
        self._storage_blocks = self.limiter.blocks
        self.auth = Authenticator(hook=opts.authorize, attempts=opts.login_attempts, window=opts.login_window,
                                  storage=self.limiter.shared_storage, storage_blocks=self._storage_blocks,
                                  targets=list(opts.targets), share=self.limiter.share)
        namespace = opts.rate_limit_namespace or namespace_for(opts.path, list(opts.targets))
        self.sessions = Sessions(self.engines, self.executor, opts, namespace)
        self.executor.sessions = self.sessions
        # How the worker holding a session reads a request another worker handed over, where the session lives.
        for name, protocol, read in ((self.hrana.name, self.hrana, self.hrana.read),
                                     (CURSOR, self.hrana, self.hrana.read_cursor),
                                     (self.planetscale.name, self.planetscale, self.planetscale.read)):
            self.sessions.reads(name, partial(self._read_again, protocol, read))
        self.cache = ResultCache(opts, make_stamps(opts, namespace, self.sessions.directory))
        self.executor.cache = self.cache
        self.aio: AsyncPostgres | None = None
        if opts.async_postgres and any(t.family == "postgresql" for t in opts.targets.values()):
            from .engine.aio import AsyncPostgres

            self.aio = AsyncPostgres(self.executor, opts)
        self._inline_budget = opts.inline_budget
        self._gates: OrderedDict[tuple[str, str, str], asyncio.Semaphore] = OrderedDict()
        self._gate_waiting: dict[str, int] = {}  # target -> requests waiting on the loop for its pools' turn
        if self.observer.metrics is not None:
            self.observer.metrics.watch(self)

    # -- routing and the request head -----------------------------------------------------------------------------

    def matches(self, path: str) -> bool:
        """True for the paths this mount answers: the endpoint, its pages, and the Hrana paths under it."""
        if path in self.paths:
            return True
        if PLANETSCALE_PREFIX in path:
            return self.planetscale.serves(path)
        return path.startswith(self._hrana_prefix) and self.hrana.paths.fullmatch(path) is not None

    def route(self, headers: Mapping[str, str], path: str | None = None) -> Protocol[Any]:
        """The protocol that answers a request: libSQL's at its own paths, and at the endpoint's, the one whose
        header the request carries (PolyScale's without)."""
        if path is not None and path != self.options.path:
            if PLANETSCALE_PREFIX in path and self.planetscale.serves(path):
                return self.planetscale
            if path.startswith(self._hrana_prefix):
                return self.hrana
        for protocol in self.claimed:
            if protocol.claims(headers):
                return protocol
        return self.polyscale

    def check_head(self, method: str, headers: Mapping[str, str], path: str | None = None) -> Response | None:
        """Answer what can be answered before reading the body: the mount's pages (the OpenAPI document, metrics,
        health; readiness when its results are fresh), a CORS preflight, a wrong method, media type, or declared
        size. None: read the body and call :meth:`handle`."""
        response = self._check_head(method, headers, path)
        if response is not None:
            self.cors.decorate(response, headers)
        return response

    def _check_head(self, method: str, headers: Mapping[str, str], path: str | None) -> Response | None:
        if path is not None and path in self._pages:
            return self._page(method, headers, path)
        started = perf_counter()
        protocol = self.route(headers, path)
        try:
            if self.cors.is_preflight(method, headers):
                response = self.cors.preflight(headers)
                self.observer.answered(headers, response, protocol.name, None, started)
                return response
            if protocol is self.hrana and path is not None:
                probed = self.hrana.probe(method, path)
                if probed is not None:
                    return probed
            if method != "POST":
                raise errors.MethodNotAllowed(
                    f"{method} is not allowed on {self.options.path}; send a POST with a JSON body",
                    headers={"Allow": "POST"},
                )
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type not in protocol.media_types:
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
            response = protocol.error_response(error)
            self.observer.answered(headers, response, protocol.name, None, started, error)
            return response
        return None

    def _page(self, method: str, headers: Mapping[str, str], path: str) -> Response | None:
        """One of the mount's pages; None for readiness that needs a probe (:meth:`handle` or :meth:`handle_async`
        runs it, after the adapter has read the empty body)."""
        if method not in ("GET", "HEAD"):
            return self.error_response(errors.MethodNotAllowed(
                f"{method} is not allowed on {path}; GET it", headers={"Allow": "GET, HEAD"}))
        opts = self.options
        if path == opts.openapi_path:
            return Response(200, openapi_document(opts.path), [("content-type", "application/json")])
        if path == opts.metrics_path:
            assert self.observer.metrics is not None
            return self.observer.metrics.exposition(headers)
        if path == opts.health_path:
            return alive()
        assert self.readiness is not None
        return self.readiness.cached()

    def too_large(self) -> errors.PayloadTooLarge:
        return errors.PayloadTooLarge(
            f"the request body is larger than the limit of {self.options.max_body_bytes} bytes"
        )

    # -- the request ----------------------------------------------------------------------------------------------

    def handle(self, request: Request, *, head_checked: bool = False) -> Response:
        """Answer one request to the endpoint. Blocking; never raises.

        Adapters that already called :meth:`check_head` before reading the body pass ``head_checked=True``.
        """
        if request.path in self._pages:
            page = self._page(request.method, request.headers, request.path)
            if page is None:  # readiness, probed
                assert self.readiness is not None
                page = self.readiness.check()
            self.cors.decorate(page, request.headers)
            return page
        started = perf_counter()
        admitted = self._admit(request, head_checked, started)
        if isinstance(admitted, Response):
            return admitted
        protocol, admission, client, parsed = admitted
        return self._answer(request, protocol, parsed, admission, self._attempt(request, protocol, parsed, client),
                            started)

    async def handle_async(self, request: Request, offload: Offload[Any]) -> Response:
        """:meth:`handle` for an event loop, after :meth:`check_head`. Never raises.

        PostgreSQL work runs on the loop (psycopg's async connections, when ``async_postgres`` is on); what may
        block goes to ``offload``: a Redis round trip, a password hash, the ``authorize`` hook, other databases.
        No more requests for one pool go to the threads than the pool has connections: the others wait their turn
        on the loop, first come first served, instead of crowding the threads (and the interpreter lock).
        """
        if request.path in self._pages:
            page = self._page(request.method, request.headers, request.path)
            if page is None:  # readiness, probed
                assert self.readiness is not None
                page = await self.readiness.check_async()
            self.cors.decorate(page, request.headers)
            return page
        started = perf_counter()
        if self._storage_blocks:
            admitted = await offload(partial(self._admit, request, True, started))
        else:
            admitted = self._admit(request, True, started)
        if isinstance(admitted, Response):
            return admitted
        protocol, admission, client, parsed = admitted
        work = parsed.work
        if self.aio is not None and work.target.family == "postgresql":
            result = await self._attempt_async(request, protocol, parsed, client, offload)
        else:
            result = await self._attempt_gated(request, protocol, parsed, client, offload)
        return self._answer(request, protocol, parsed, admission, result, started)

    async def _attempt_gated(self, request: Request, protocol: Protocol[Any], parsed: Parsed, client: str,
                             offload: Offload[Any]) -> Any:
        """Work for the sync engines, once its pool has a connection free: SQLite on the loop within
        ``inline_budget`` (or on a thread past it), everything else on a thread."""
        work = parsed.work
        stream = work.stream
        if stream is not None and stream.baton is not None:
            # A session holds its connection already: waiting behind requests that want one could hold up the
            # commit that frees it.
            return await offload(partial(self._attempt, request, protocol, parsed, client))
        gate = self._gate(work)
        if gate.locked():  # every connection of the pool is in use: wait as long as the pool would
            name = work.target.name
            self._gate_waiting[name] = self._gate_waiting.get(name, 0) + 1
            try:
                await asyncio.wait_for(gate.acquire(), self.options.pool_timeout)
            except TimeoutError:
                return errors.PoolTimeout.busy(self.options.pool_size, self.options.pool_timeout, name)
            finally:
                self._gate_waiting[name] -= 1
        else:
            await gate.acquire()
        try:
            if (work.target.family == "sqlite" and self._inline_budget and (stream is None or stream.inline)
                    and self.auth.is_quick(request, work)
                    and not (self.cache.blocks and self.cache.watches(work.target))):
                result = self._attempt(request, protocol, parsed, client, budget=self._inline_budget)
                if not isinstance(result, errors.RunElsewhere):
                    return result
            return await offload(partial(self._attempt, request, protocol, parsed, client))
        finally:
            gate.release()

    def _gate(self, work: Work) -> asyncio.Semaphore:
        """At most ``pool_size`` requests in the threads per target, login and database (roughly, per engine)."""
        key = (work.target.name, work.claim.username, work.claim.database)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(self.options.pool_size)
            while len(self._gates) > 4 * self.options.max_engines:
                self._gates.popitem(last=False)  # one in use still works; it just stops being shared
        else:
            self._gates.move_to_end(key)
        return gate

    def _admit(self, request: Request, head_checked: bool, started: float) -> Response | _Admitted:
        """Everything before the database: the head, the size, the rate limit, the body. A Response refuses."""
        admission: Admission | None = None
        parsed: Parsed | None = None
        protocol = self.route(request.headers, request.path)
        try:
            if not head_checked:
                refused = self._check_head(request.method, request.headers, request.path)
                if refused is not None:
                    self.cors.decorate(refused, request.headers)
                    return refused
            if len(request.body) > self.options.max_body_bytes:
                raise self.too_large()
            client = client_address(request.client, request.headers, self.options.trusted_proxies)
            admission = self.limiter.admit_request(client)
            parsed = protocol.parse(request)
            target = parsed.work.target
            self.limiter.admit_target(admission, target.name, self._target_policies[target.name])
        except Exception as error:  # every failure: an answer in the protocol's error shape
            return self._answer(request, protocol, parsed, admission, error, started)
        return protocol, admission, client, parsed

    def _attempt(self, request: Request, protocol: Protocol[Any], parsed: Parsed, client: str,
                 budget: float | None = None) -> Any:
        """Authenticate (behind the brute-force brake), then run; the answer's body, or the exception."""
        work = parsed.work
        builder = protocol.builder(parsed, self.executor.limits[work.target.name])
        run = partial(self.executor.run, work, builder=builder, budget=budget)
        try:
            cached = self.cache.through(request, protocol, parsed, run, inline=budget is not None)
            return run_steps(self.auth.attempt(request, work, client, cached))
        except Exception as error:  # answered by _answer
            return error

    async def _attempt_async(self, request: Request, protocol: Protocol[Any], parsed: Parsed, client: str,
                             offload: Offload[Any]) -> Any:
        """:meth:`_attempt` on the event loop, PostgreSQL's work included (``async_postgres``)."""
        assert self.aio is not None
        work = parsed.work
        builder = cast("ResultBuilder", protocol.builder(parsed, self.executor.limits[work.target.name]))
        run = self.cache.through(request, protocol, parsed, partial(self.aio.run, work, builder=builder), offload)
        try:
            return await run_steps_async(self.auth.attempt(request, work, client, run), offload)
        except Exception as error:  # answered by _answer
            return error

    def _answer(self, request: Request, protocol: Protocol[Any], parsed: Parsed | None, admission: Admission | None,
                result: Any, started: float) -> Response:
        """Every answer the endpoint makes past its head: the body, or the error ``result``, in the protocol's
        shape, with its headers; observed. ``parsed`` is None if the request failed before it was parsed."""
        cache_headers: list[tuple[str, str]] = []
        if isinstance(result, CacheAnswer):
            result, cache_headers = result.body, result.headers
        if isinstance(result, (bytes, list)):
            assert parsed is not None
            response = protocol.respond(parsed, result)
            response.headers.extend(cache_headers)
        elif isinstance(result, errors.RateLimited):
            response = protocol.error_response(result)  # carries its own rate-limit headers
            admission = None
        elif isinstance(result, errors.SQLHTTPError):
            response = protocol.error_response(result)
        else:
            logger.error("sqlhttp-middleware: unexpected error while answering a query", exc_info=result)
            response = protocol.error_response(errors.InternalError("the server failed to answer this query"))
        if admission is not None:
            response.headers.extend(admission.header_items())
        self.cors.decorate(response, request.headers)
        self.observer.answered(request.headers, response, protocol.name, parsed.work if parsed is not None else None,
                               started, result if isinstance(result, BaseException) else None)
        return response

    # -- answers --------------------------------------------------------------------------------------------------

    def error_response(self, error: errors.SQLHTTPError, headers: Mapping[str, str] | None = None,
                       path: str | None = None) -> Response:
        """``error`` in the error shape of the protocol the request (its ``headers`` and ``path``) speaks
        (PolyScale's without headers).

        With ``headers``, the answer to a request at the endpoint whose body the adapter refused (too large, too
        slow): observed like every other answer there, its duration unknown."""
        if headers is None:
            return self.polyscale.error_response(error)
        protocol = self.route(headers, path)
        response = protocol.error_response(error)
        self.observer.answered(headers, response, protocol.name, None, None, error)
        return response

    def not_found(self) -> Response:
        """For servers with no app behind the middleware (the standalone server)."""
        return self.error_response(errors.NotFound(f"nothing here; the SQL endpoint is {self.options.path}"))

    def pool_stats(self) -> dict[str, int]:
        """Engines (pools), open connections and connections checked out, over the sync and the async pools."""
        stats = self.engines.stats()
        return stats + self.aio.stats() if self.aio is not None else stats

    def pool_gauges(self) -> dict[str, tuple[int, int, int]]:
        """Per target: open connections, connections checked out, and requests waiting for one (in a pool, or on
        the event loop for the pools' turn), over the sync and the async pools."""
        parts = [self.engines.registry.by_target(), {name: (0, 0, n) for name, n in list(self._gate_waiting.items())}]
        if self.aio is not None:
            parts.append(self.aio.registry.by_target())
        totals: dict[str, tuple[int, int, int]] = {}
        for counts in parts:
            for target, (opened, checked_out, waiting) in counts.items():
                was = totals.get(target, (0, 0, 0))
                totals[target] = (was[0] + opened, was[1] + checked_out, was[2] + waiting)
        return totals

    def _read_again(self, protocol: Protocol[Any], read: Callable[..., Any], target: Any, body: bytes,
                    credential: str) -> tuple[Work, Any]:
        parsed = read(target, body, credential)
        return parsed.work, protocol.builder(parsed, self.executor.limits[target.name])

    def cache_gauges(self) -> tuple[int, int]:
        """(entries, bytes) this process's result cache holds."""
        return self.cache.stats()

    def session_gauges(self) -> dict[str, int]:
        """Per target: the interactive sessions this process holds."""
        return self.sessions.by_target()

    def close(self) -> None:
        self.sessions.close()
        self.cache.close()
        if self.aio is not None:
            self.aio.close()
        self.engines.close()
        self.executor.watchdog.close()
        self.limiter.close()
