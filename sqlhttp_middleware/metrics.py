"""What each request leaves behind: its request id, its access-log line, and (option ``metrics_path``) Prometheus
samples, correct across worker processes.

**Metrics** are prometheus_client's, created once per process, the first time a mount with a ``metrics_path`` is
built, and registered in its default registry (so an app that already exposes prometheus_client's metrics shows
ours too). With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client's multiprocess mode keeps every worker's values
in mmap'd files there, and a scrape of any worker sums them all: counters and histograms over every worker that
ever ran since the directory was emptied, the pool gauges over the live workers only (``livesum``). A worker's
gauges are refreshed every :data:`SAMPLE_INTERVAL` seconds by a thread of its own, and the scraped one's at the
scrape (in a single process, at every collection of the registry); :func:`child_exit` (a gunicorn hook) drops a
dead worker's gauges, and a scrape drops those of workers that no longer exist (uvicorn has no such hook). Labels
carry protocol names, configured target names, statuses and fixed words, never a login, a URL or a host, so their
number stays bounded. While no mount of the process serves
metrics, prometheus_client is not even imported, and the engine's calls (:func:`connection_abandoned`,
:func:`connect_refused_fast`) return at once.

**The access log** is the logger ``sqlhttp_middleware.access``: one INFO line per answer at the endpoint, a JSON
object with the request id, protocol, target, status, the error code, the duration, and past
``slow_statement_log`` seconds the statement's shape (:func:`.sqltext.shape`: literals replaced by ``?``, comments
dropped). Nothing is built while the logger is off for INFO.

**The request id** comes from ``request_id_header`` (a trusted proxy's) when its value looks like an id (letters,
digits, ``._:-``, at most 128 characters), is made up otherwise (64 random bits: ids find log lines, they guard
nothing; ``random`` is reseeded in a forked worker), and is answered as ``X-Request-Id``.
"""

from __future__ import annotations

import glob
import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from . import errors
from ._process import current_pid
from .http import Response
from .options import ConfigurationError, Options

if TYPE_CHECKING:
    from .engine.work import Work

__all__ = [
    "DURATION_BUCKETS", "SAMPLE_INTERVAL", "Metrics", "Observer", "child_exit", "connect_refused_fast",
    "connection_abandoned", "on_starting", "process_metrics",
]

access_log = logging.getLogger("sqlhttp_middleware.access")
logger = logging.getLogger("sqlhttp_middleware")

# Seconds, from a cached SQLite read to a statement at the default statement_timeout.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SAMPLE_INTERVAL = 1.0  # seconds between a worker's pool-gauge refreshes in multiprocess mode
POOL_STATES = ("open", "checked_out", "waiting")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_STATEMENT_LIMIT = 1000  # characters of statement shapes in one log line

class PoolSource(Protocol):
    def pool_gauges(self) -> dict[str, tuple[int, int, int]]:
        """Per target: (open connections, connections checked out, requests waiting for one)."""

    def session_gauges(self) -> dict[str, int]:
        """Per target: the interactive sessions this process holds."""

    def cache_gauges(self) -> tuple[int, int]:
        """(entries, bytes) the result cache of this process holds."""


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def process_metrics() -> Metrics:
    """The process's metrics, created on first use; prometheus_client must be installed."""
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def connection_abandoned(target: str, reason: str) -> None:
    """A connection given up and closed rather than reused: ``reason`` is ``deadline`` (the database did not answer
    by the hard deadline) or ``disconnect`` (the client went away and the statement could not be stopped in time)."""
    if _metrics is not None:
        _metrics.abandoned.labels(target, reason).inc()


def session_ended(target: str, reason: str) -> None:
    """A session ended: ``closed`` by its client, ``expired`` (idle or too old; rolled back), ``abandoned`` (its
    client went away before its answer), or ``lost`` (its connection broke)."""
    if _metrics is not None:
        _metrics.sessions_ended.labels(target, reason).inc()


def session_handed_over(target: str) -> None:
    """A request for another worker's session, handed over to that worker."""
    if _metrics is not None:
        _metrics.handed_over.labels(target).inc()


def cache_looked_up(target: str, result: str) -> None:
    """A request on a cached target: ``hit``, ``miss``, ``refresh`` (asked to skip the cache) or ``bypass``."""
    if _metrics is not None:
        _metrics.cache_requests.labels(target, result).inc()


def cache_bypassed(target: str, reason: str) -> None:
    if _metrics is not None:
        _metrics.cache_bypasses.labels(target, reason).inc()


def cache_invalidated(target: str) -> None:
    if _metrics is not None:
        _metrics.cache_invalidations.labels(target).inc()


def cache_evicted() -> None:
    if _metrics is not None:
        _metrics.cache_evictions.inc()


def connect_refused_fast(target: str) -> None:
    """A request answered 503 at once because its database was down a moment ago (reconnect back-off)."""
    if _metrics is not None:
        _metrics.refused_fast.labels(target).inc()


# -- gunicorn hooks: ``from sqlhttp_middleware.metrics import child_exit, on_starting`` in gunicorn.conf.py -------


def on_starting(server: Any) -> None:
    """Empty ``PROMETHEUS_MULTIPROC_DIR`` as the server starts: a previous run's counts must not be added in."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (its counters stay: they count what it did)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


# -- the metrics ----------------------------------------------------------------------------------------------------


class Metrics:
    """The process's metric objects, the pools whose gauges they show, and the exposition."""

    def __init__(self) -> None:
        try:
            from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise ConfigurationError(
                "metrics_path: metrics need prometheus_client: pip install 'sqlhttp-middleware[metrics]'") from None
        self.directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if self.directory:
            if not os.path.isdir(self.directory):
                raise ConfigurationError(f"metrics_path: PROMETHEUS_MULTIPROC_DIR={self.directory!r} is not a "
                                         "directory; create it (empty) before the server starts")
            from prometheus_client import multiprocess

            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = REGISTRY
            # Registered first, so collected first: any exposition of the registry (ours, or the app's own) shows
            # the pool gauges as they are. Multiprocess mode reads files instead, which the samplers keep fresh.
            REGISTRY.register(_Sampling(self))
        self.requests = Counter("sqlhttp_requests", "Answers at the SQL endpoint.", ["protocol", "target", "status"])
        self.duration = Histogram("sqlhttp_request_duration_seconds", "Time from the request (its head checked, or "
                                  "its body whole) to its answer.", ["protocol", "target"], buckets=DURATION_BUCKETS)
        self.pool = Gauge("sqlhttp_pool_connections", "Pooled database connections: open, checked out by a request, "
                          "and requests waiting for one.", ["target", "state"], multiprocess_mode="livesum")
        self.pool_timeouts = Counter("sqlhttp_pool_timeouts", "Requests answered 503 POOL_TIMEOUT: no pooled "
                                     "connection came free in time.", ["target"])
        self.reaped = Counter("sqlhttp_connections_reaped", "Idle pooled connections closed by the reaper.",
                              ["target"])
        self.abandoned = Counter("sqlhttp_connections_abandoned", "Connections closed rather than reused, with the "
                                 "statement still running: at the hard deadline, or after the client left.",
                                 ["target", "reason"])
        self.rate_limited = Counter("sqlhttp_rate_limited", "Requests answered 429 RATE_LIMITED, by the limit that "
                                    "refused them.", ["policy"])
        self.login_braked = Counter("sqlhttp_login_braked", "Requests answered 429 LOGIN_THROTTLED by the brake on "
                                    "password guessing.", ["target"])
        self.refused_fast = Counter("sqlhttp_connect_refused_fast", "Requests answered 503 at once: their database "
                                    "was down a moment ago (reconnect back-off).", ["target"])
        self.sessions = Gauge("sqlhttp_sessions", "Interactive sessions open (each holds a pooled connection).",
                              ["target"], multiprocess_mode="livesum")
        self.sessions_ended = Counter("sqlhttp_sessions_ended", "Interactive sessions ended: closed by their client, "
                                      "expired or abandoned by it (rolled back), or lost with their connection.",
                                      ["target", "reason"])
        self.handed_over = Counter("sqlhttp_sessions_handed_over", "Requests for a session another worker holds, "
                                   "handed over to it on its local socket.", ["target"])
        self.cache_requests = Counter("sqlhttp_cache_requests", "Requests on targets with the result cache on, by "
                                      "what it did: hit, miss, refresh (asked to skip it) or bypass.",
                                      ["target", "result"])
        self.cache_bypasses = Counter("sqlhttp_cache_bypasses", "Answers the cache did not keep, by why: the "
                                      "statement's verdict (write, volatile, function, ...), batch, session, "
                                      "too-large.", ["target", "reason"])
        self.cache_invalidations = Counter("sqlhttp_cache_invalidations", "Writes that changed their database's "
                                           "stamp, so that nothing cached before them answers again.", ["target"])
        self.cache_evictions = Counter("sqlhttp_cache_evictions", "Cached answers dropped to stay within "
                                       "cache_max_bytes.")
        self.cache_entries = Gauge("sqlhttp_cache_entries", "Answers held by the in-process result caches.",
                                   multiprocess_mode="livesum")
        self.cache_bytes = Gauge("sqlhttp_cache_bytes", "Bytes of answers held by the in-process result caches.",
                                 multiprocess_mode="livesum")
        self._answers: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labels -> (counter, histogram) children
        self._sources: weakref.WeakSet[PoolSource] = weakref.WeakSet()
        self._shown: set[str] = set()  # targets the pool gauges have shown
        self._sessions_shown: set[str] = set()
        self._sample_lock = threading.Lock()
        self._sampler_pid = 0

    # -- recording ------------------------------------------------------------------------------------------------

    def answered(self, protocol: str, target: str, status: int, seconds: float | None,
                 error: BaseException | None) -> None:
        key = (protocol, target, status)
        children = self._answers.get(key)
        if children is None:
            children = self._answers[key] = (self.requests.labels(protocol, target, str(status)),
                                             self.duration.labels(protocol, target))
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)
        if error is not None:
            if isinstance(error, errors.PoolTimeout):
                self.pool_timeouts.labels(target).inc()
            elif isinstance(error, errors.RateLimited):
                self.rate_limited.labels(error.policy or "unknown").inc()
            elif isinstance(error, errors.LoginThrottled):
                self.login_braked.labels(target).inc()
        if self.directory and self._sampler_pid != current_pid():
            self._start_sampler()  # a forked worker has no thread of its parent's

    def connections_reaped(self, target: str, count: int) -> None:
        self.reaped.labels(target).inc(count)

    # -- pool gauges ----------------------------------------------------------------------------------------------

    def watch(self, source: PoolSource) -> None:
        """Show ``source``'s pools (a mount's) in the pool gauges, for as long as it exists."""
        self._sources.add(source)
        if self.directory and self._sampler_pid != current_pid():
            self._start_sampler()

    def sample(self) -> None:
        """Set the pool gauges from the pools of this process."""
        totals: dict[str, list[int]] = {}
        sessions: dict[str, int] = {}
        cached = [0, 0]
        for source in list(self._sources):
            for target, counts in source.pool_gauges().items():
                total = totals.setdefault(target, [0, 0, 0])
                for index, count in enumerate(counts):
                    total[index] += count
            for target, count in source.session_gauges().items():
                sessions[target] = sessions.get(target, 0) + count
            entries, held = source.cache_gauges()
            cached[0] += entries
            cached[1] += held
        with self._sample_lock:
            for target in self._sessions_shown - sessions.keys():
                sessions[target] = 0
            for target, count in sessions.items():
                self.sessions.labels(target).set(count)
            self.cache_entries.set(cached[0])
            self.cache_bytes.set(cached[1])
            self._sessions_shown = set(sessions)
            for target in self._shown - totals.keys():
                totals[target] = [0, 0, 0]  # its pools are gone: zero, not its last figures
            for target, total in totals.items():
                for state, count in zip(POOL_STATES, total, strict=True):
                    self.pool.labels(target, state).set(count)
            self._shown = set(totals)

    def _start_sampler(self) -> None:
        with self._sample_lock:
            if self._sampler_pid == current_pid():
                return
            self._sampler_pid = current_pid()
        threading.Thread(target=_sample_forever, args=(weakref.ref(self), current_pid()), name="sqlhttp-metrics",
                         daemon=True).start()

    # -- exposition -----------------------------------------------------------------------------------------------

    def exposition(self, headers: Mapping[str, str]) -> Response:
        """The metrics in the format the scraper's ``Accept`` asks for (Prometheus text by default)."""
        from prometheus_client.exposition import choose_encoder

        if self.directory:
            self.sample()  # this worker's, now; the others' are at most SAMPLE_INTERVAL old
            _forget_dead_workers(self.directory)
        encode, content_type = choose_encoder(headers.get("accept", ""))
        return Response(200, encode(self.registry), [("content-type", content_type), ("cache-control", "no-store")])


class _Sampling:
    """A collector of no metric of its own: collecting it refreshes the pool gauges."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = weakref.ref(metrics)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        metrics = self._metrics()
        if metrics is not None:
            metrics.sample()
        return []


def _sample_forever(ref: weakref.ref[Metrics], pid: int) -> None:
    while current_pid() == pid:
        time.sleep(SAMPLE_INTERVAL)
        metrics = ref()
        if metrics is None:
            return
        try:
            metrics.sample()
        except Exception:  # a sampler that dies would leave the gauges frozen
            logger.exception("sqlhttp-middleware: sampling the pool gauges failed")
        del metrics


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone and that no hook reported (uvicorn's)."""
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid_text = path.rsplit("_", 1)[1][:-3]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid_text), directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # it exists, as another user


# -- one mount's requests -------------------------------------------------------------------------------------------


class Observer:
    """One mount's view of its answers at the endpoint: request ids, log lines, and samples when metrics are on."""

    def __init__(self, options: Options) -> None:
        self.metrics = process_metrics() if options.metrics_path else None
        self._id_header = options.request_id_header
        self._slow = options.slow_statement_log

    def request_id(self, headers: Mapping[str, str]) -> str:
        if self._id_header:
            given = headers.get(self._id_header)
            if given is not None and _SAFE_ID.fullmatch(given):
                return given
        return f"{random.getrandbits(64):016x}"  # unique enough to find a line; it guards nothing

    def answered(self, headers: Mapping[str, str], response: Response, protocol: str, work: Work | None,
                 started: float | None, error: BaseException | None = None) -> None:
        """Record an answer: ``started`` is its ``time.perf_counter()`` (None: unknown); ``work`` once parsed."""
        request_id = self.request_id(headers)
        response.headers.append(("x-request-id", request_id))
        seconds = None if started is None else time.perf_counter() - started
        target = work.target.name if work is not None else ""
        if self.metrics is not None:
            self.metrics.answered(protocol, target, response.status, seconds, error)
        if access_log.isEnabledFor(logging.INFO):
            line: dict[str, Any] = {"request_id": request_id, "protocol": protocol, "target": target,
                                    "status": response.status}
            if isinstance(error, errors.SQLHTTPError):
                line["code"] = error.code
            if seconds is not None:
                line["duration_ms"] = round(seconds * 1000, 3)
                if work is not None and self._slow and seconds >= self._slow:
                    line["statement"] = _shapes(work)
            access_log.info(orjson.dumps(line).decode(), extra={"sqlhttp": line})


def _shapes(work: Work) -> str:
    from .sqltext import shape

    family = work.target.family
    shapes: list[str] = []
    size = 0
    for statement in work.statements:
        shaped = shape(statement.sql, family)
        shapes.append(shaped)
        size += len(shaped) + 2
        if size >= _STATEMENT_LIMIT:
            break
    text = "; ".join(shapes)
    return text if len(text) <= _STATEMENT_LIMIT else text[:_STATEMENT_LIMIT - 3] + "..."
