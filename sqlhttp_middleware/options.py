"""Configuration: the options table, targets, and their validation at start-up.

Every option is keyword-only, validated and precomputed here, so that a wrong setting fails when the app starts,
with a message that names it. :data:`OPTIONS` is the one table of names, defaults and help; ``docs/configuration.md``
documents each of them and a test keeps the two in step. :class:`OptionKeywords` gives each option its type for type
checkers, so that ``pool_size="2"`` fails in mypy, not only at start-up; a test keeps its keys and the table in step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from .auth import AuthContext  # only named in annotations: auth is not needed to read the options

__all__ = [
    "OPTIONS", "ConfigurationError", "Option", "OptionKeywords", "Options", "Target", "TargetSpec", "parse_targets",
    "resolve_targets",
]


class ConfigurationError(ValueError):
    """A setting is wrong. Raised at start-up, never while serving."""


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    kind: type = object  # how an environment variable's text is read: int, float, str or bool


OPTIONS: tuple[Option, ...] = (
    Option("targets", None, "Mapping of target name (the request's cacheId) to a database URL or a Target."),
    Option("path", "/sql", "Path of the endpoint, relative to the app's SCRIPT_NAME / root_path.", str),
    Option("pool_size", 2, "Connections per engine (one engine per target and credential set).", int),
    Option("pool_timeout", 5.0, "Seconds a request waits for a free pooled connection before answering 503.", float),
    Option("idle_timeout", 60.0, "Seconds after which an idle pooled connection is closed by the reaper.", float),
    Option("engine_idle_timeout", 600.0, "Seconds after which an engine nobody used is disposed.", float),
    Option("max_engines", 16, "Upper bound on cached engines; the least recently used idle one is evicted.", int),
    Option("connect_timeout", 5.0, "Seconds to wait for the database when opening a new connection.", float),
    Option("max_body_bytes", 1024 * 1024, "Largest request body accepted; larger ones answer 413.", int),
    Option("executor_threads", 8, "ASGI only: threads that run blocking database work off the event loop.", int),
    Option("async_postgres", True, "ASGI only: run PostgreSQL queries on the event loop (psycopg async).", bool),
    Option("inline_budget", 0.002, "ASGI only: seconds a SQLite statement may run on the event loop before it is "
           "undone and run again on a thread; 0: always on a thread.", float),
    Option("rate_limit", 60_000, "Requests per window for the whole mount, across workers and hosts; 0: none.", int),
    Option("rate_limit_window", 60.0, "Length of the rate-limit window in seconds.", float),
    Option("rate_limit_per_client", 0, "Requests per window for each client address; 0: no per-client limit.", int),
    Option("rate_limit_storage", "shm", "Where counts live: shm, shm://NAME, memory, or a redis:// URL.", str),
    Option("rate_limit_namespace", "", "Names this app's counters in the storage; derived from the config if empty.",
           str),
    Option("rate_limit_fail_open", True, "While the storage (Redis) is unreachable: admit (true) or refuse (false).",
           bool),
    Option("trusted_proxies", 0, "Proxies in front of the app whose X-Forwarded-For is believed; 0: none.", int),
    Option("statement_timeout", 30.0, "Seconds a statement may run before the database cancels it (504).", float),
    Option("max_rows", 100_000, "Most rows one answer may carry.", int),
    Option("max_response_bytes", 10 * 1024 * 1024, "Most bytes of rows one answer may carry.", int),
    Option("openapi_path", "", "Where to serve the endpoint's OpenAPI document (GET); empty: not served.", str),
    Option("authorize", None, "A hook called with an AuthContext for every request; may refuse it (401/403)."),
    Option("login_attempts", 10, "Failed logins per client address, target and username before 429; 0: no brake.",
           int),
    Option("login_window", 300.0, "Seconds over which failed logins are counted.", float),
    Option("cors_origins", (), "Origins browsers may call the endpoint from ('*': any); empty: CORS off.",
           tuple),
    Option("deadline_grace", 1.0, "Seconds past the statement timeout at which a request stops waiting for the "
           "database whatever it does: it answers 504 and its connection is closed, never reused.", float),
    Option("max_sql_bytes", 256 * 1024, "Longest SQL text of one statement, in UTF-8 bytes; longer ones answer 400.",
           int),
    Option("body_timeout", 10.0, "Seconds a request body may take to arrive (ASGI; WSGI servers that expose the "
           "socket); slower ones answer 408.", float),
    Option("send_timeout", 30.0, "ASGI: seconds a client has to take the answer; one that stops reading is dropped.",
           float),
    Option("drain_timeout", 10.0, "Seconds in-flight requests get to finish on shutdown (SIGTERM) before "
           "everything is closed.", float),
    Option("reconnect_backoff", 5.0, "Longest pause, in seconds, between connection attempts to a database that is "
           "down; meanwhile its requests answer 503 at once.", float),
    Option("rate_limit_slots", 0, "Slots of the shared-memory counter table; 0: sized from rate_limit, "
           "rate_limit_window and login_window.", int),
    Option("metrics_path", "", "Where to serve Prometheus metrics (GET); empty: not served, nothing recorded.", str),
    Option("health_path", "", "Where to serve liveness (GET PATH) and per-target readiness (GET PATH/ready); "
           "empty: not served.", str),
    Option("request_id_header", "", "A header, set by a trusted proxy, whose value is the request id in logs and "
           "answers; empty: ids are made up.", str),
    Option("session_idle_timeout", 10.0, "Seconds an interactive session (a libSQL stream, a PlanetScale "
           "transaction) may sit idle before it expires: rolled back, its connection given back.", float),
    Option("session_max_lifetime", 300.0, "Seconds after which a session expires however busy it is.", float),
    Option("session_secret", "", "Key batons are signed with; empty: a random key in session_dir, shared by the "
           "workers of the host.", str),
    Option("session_dir", "", "Private directory (mode 0700) where the workers of a host keep the session key and "
           "their sockets; empty: one under the temporary directory, derived from the mount.", str),
    Option("session_host", "", "This host's name in batons, so another host can say whose session it is; empty: "
           "the machine's host name.", str),
    Option("planetscale_root", False, "Answer PlanetScale's driver at the origin's root (/psdb.v1alpha1.Database/"
           "Execute), outside the mount, where the driver posts.", bool),
    Option("planetscale_target", "", "The target PlanetScale's endpoints serve at the root and at the mount's "
           "path; empty: the only MySQL/MariaDB target.", str),
    Option("cache_ttl", 60.0, "Seconds a cached answer lives on a target with cache=True (the bound on staleness "
           "from writes that do not go through the middleware).", float),
    Option("cache_max_bytes", 64 * 1024 * 1024, "Most bytes of answers each process's result cache holds; the "
           "least recently used go first.", int),
    Option("cache_max_entry_bytes", 1024 * 1024, "Largest answer the result cache keeps.", int),
    Option("cache_storage", "shm", "Where the cache's invalidation stamps live: shm (every worker of this host), "
           "memory (this process only), or a redis:// URL (every host that shares it).", str),
    Option("cache_shared_results", False, "Also keep cached answers in Redis (cache_storage), for every host; needs "
           "cache_secret.", bool),
    Option("cache_secret", "", "Key of the digests that name answers in Redis, the same on every host.", str),
    Option("slow_statement_log", 1.0, "Seconds over which a request's log line carries its statement's shape "
           "(without values); 0: never.", float),
)

_PROVIDERS = {
    "postgresql": frozenset({"postgres"}),
    "mysql": frozenset({"mysql", "mariadb"}),
    "sqlite": frozenset({"sqlite"}),
    "mssql": frozenset({"mssql"}),
}

# URL scheme -> (dialect family, SQLAlchemy driver name used when the URL names none).
_SCHEMES = {
    "postgresql": ("postgresql", "postgresql+psycopg"),
    "postgres": ("postgresql", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mariadb+pymysql"),
    "sqlite": ("sqlite", "sqlite+pysqlite"),
    "mssql": ("mssql", "mssql+pymssql"),
}


@dataclass(frozen=True)
class Target:
    """A database location clients may name by ``cacheId``; never chosen by the client.

    ``url`` gives the dialect, host and port (and the file, for SQLite). Without a login in it, each request's
    login is the database's own, checked by the database. With one (``postgresql://app:secret@host/db``), the
    server holds the credentials, and clients authenticate to the middleware: with a username and password from
    ``users``, or ``Authorization: Bearer <key>`` with a key from ``api_keys`` (values hashed with
    :func:`~sqlhttp_middleware.auth.hash_password` / :func:`~sqlhttp_middleware.auth.hash_api_key`; plain values
    are accepted for development), or through the ``authorize`` hook alone. SQLite has no login of its own, so a
    SQLite target always declares its ``users`` or ``api_keys``.

    ``providers`` names extra ``provider`` values the target answers to, besides its own. PolyScale's client cannot
    send ``sqlite``; ``providers=("postgres",)`` lets it reach a SQLite target.

    ``rate_limit`` caps the requests to this target per rate-limit window, on top of the mount's limit.
    ``read_only`` makes every session read-only, enforced by the database. ``statement_timeout``, ``max_rows`` and
    ``max_response_bytes`` override the mount's options for this target.

    ``cache`` turns the result cache on for this target: True (answers live ``cache_ttl`` seconds) or a number of
    seconds. Off by default. See ``docs/cache.md``.
    """

    url: str
    users: Mapping[str, str] = field(default_factory=dict)
    api_keys: Mapping[str, str] = field(default_factory=dict)
    providers: tuple[str, ...] = ()
    rate_limit: int | None = None
    read_only: bool = False
    statement_timeout: float | None = None
    max_rows: int | None = None
    max_response_bytes: int | None = None
    cache: bool | float = False


TargetSpec = str | Target


class OptionKeywords(TypedDict, total=False):
    """The keyword options of the middleware, typed: one key per entry of :data:`OPTIONS`, with the same name.

    For type checkers only (``**options: Unpack[OptionKeywords]``); the values are still validated at start-up by
    :meth:`Options.from_kwargs`, which also takes the values environment variables and settings give as text.
    """

    targets: Mapping[str, str | Target]
    path: str
    pool_size: int
    pool_timeout: float
    idle_timeout: float
    engine_idle_timeout: float
    max_engines: int
    connect_timeout: float
    max_body_bytes: int
    executor_threads: int
    async_postgres: bool
    inline_budget: float
    rate_limit: int
    rate_limit_window: float
    rate_limit_per_client: int
    rate_limit_storage: str
    rate_limit_namespace: str
    rate_limit_fail_open: bool
    trusted_proxies: int
    statement_timeout: float
    max_rows: int
    max_response_bytes: int
    openapi_path: str
    authorize: Callable[[AuthContext], object] | None
    login_attempts: int
    login_window: float
    cors_origins: Sequence[str]
    deadline_grace: float
    max_sql_bytes: int
    body_timeout: float
    send_timeout: float
    drain_timeout: float
    reconnect_backoff: float
    rate_limit_slots: int
    metrics_path: str
    health_path: str
    request_id_header: str
    session_idle_timeout: float
    session_max_lifetime: float
    session_secret: str
    session_dir: str
    session_host: str
    planetscale_root: bool
    planetscale_target: str
    cache_ttl: float
    cache_max_bytes: int
    cache_max_entry_bytes: int
    cache_storage: str
    cache_shared_results: bool
    cache_secret: str
    slow_statement_log: float


@dataclass(frozen=True)
class ResolvedTarget:
    name: str
    family: str
    providers: frozenset[str]
    url: URL = field(repr=False)
    fixed_database: str | None
    users: Mapping[str, str] = field(repr=False, default_factory=dict)
    api_keys: Mapping[str, str] = field(repr=False, default_factory=dict)
    server_login: bool = False  # the URL carries the database login; clients authenticate to the middleware
    rate_limit: int | None = None
    read_only: bool = False
    statement_timeout: float | None = None
    max_rows: int | None = None
    max_response_bytes: int | None = None
    cache_ttl: float = 0.0  # seconds a cached answer lives; 0: the result cache is off for this target


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def parse_targets(text: str) -> dict[str, str]:
    """Read targets from text such as an environment variable: space-separated ``NAME=URL`` pairs."""
    targets: dict[str, str] = {}
    for position, pair in enumerate(text.split(), start=1):
        name, sep, url = pair.partition("=")
        if not sep or not name or not url:
            # The entry itself is not echoed: it may be a URL carrying a password.
            raise ConfigurationError(f"targets: entry {position} is not of the form NAME=URL")
        if name in targets:
            raise ConfigurationError(f"targets: {name!r} is given twice")
        targets[name] = url
    return targets


def resolve_targets(targets: Mapping[str, TargetSpec] | None) -> dict[str, ResolvedTarget]:
    if not isinstance(targets, Mapping) or not targets:
        raise ConfigurationError("targets: give at least one target, e.g. targets={'main': 'postgresql://host:5432'}")
    return {name: _resolve(name, spec) for name, spec in targets.items()}


def _resolve(name: object, spec: object) -> ResolvedTarget:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"targets: target names must be non-empty strings, got {name!r}")
    target = Target(spec) if isinstance(spec, str) else spec
    if not isinstance(target, Target):
        raise ConfigurationError(f"targets[{name!r}]: expected a URL string or a Target, got {type(spec).__name__}")
    try:
        url = make_url(target.url)
    except ArgumentError:
        raise ConfigurationError(f"targets[{name!r}]: not a database URL") from None
    scheme, _, driver = url.drivername.partition("+")
    if scheme not in _SCHEMES:
        known = ", ".join(sorted(_SCHEMES))
        raise ConfigurationError(f"targets[{name!r}]: unsupported database {scheme!r}; use one of {known}")
    family, default_driver = _SCHEMES[scheme]
    url = url.set(drivername=f"{scheme}+{driver}" if driver else default_driver)
    server_login = url.username is not None
    for kind in ("users", "api_keys"):
        for user, secret in getattr(target, kind).items():
            if not isinstance(user, str) or not user or not isinstance(secret, str) or not secret:
                raise ConfigurationError(
                    f"targets[{name!r}].{kind}: names and their passwords or keys must be non-empty strings"
                )
    if family == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigurationError(f"targets[{name!r}]: a SQLite target needs a file path (sqlite:///path.db)")
        if not target.users and not target.api_keys:
            raise ConfigurationError(
                f"targets[{name!r}]: a SQLite target has no login of its own; declare users={{'name': 'password'}}"
            )
    elif not url.host:
        raise ConfigurationError(f"targets[{name!r}]: the URL needs a host")
    elif (target.users or target.api_keys) and not server_login:
        raise ConfigurationError(
            f"targets[{name!r}]: users= and api_keys= are for targets whose URL carries the database login; "
            f"without one, {family} checks each request's own login"
        )
    try:
        url.get_dialect().import_dbapi()
    except ImportError:
        extra = {"postgresql": "postgres", "mysql": "mysql", "mssql": "mssql"}.get(family, family)
        raise ConfigurationError(
            f"targets[{name!r}]: the driver for {url.drivername} is not installed; "
            f"pip install 'sqlhttp-middleware[{extra}]'"
        ) from None
    if target.rate_limit is not None and (
        not isinstance(target.rate_limit, int) or isinstance(target.rate_limit, bool) or target.rate_limit < 1
    ):
        raise ConfigurationError(f"targets[{name!r}].rate_limit: a positive integer, or None for no limit of its own")
    if not isinstance(target.read_only, bool):
        raise ConfigurationError(f"targets[{name!r}].read_only: True or False")
    if target.statement_timeout is not None and not _positive_number(target.statement_timeout):
        raise ConfigurationError(f"targets[{name!r}].statement_timeout: a positive number of seconds, or None")
    for cap in ("max_rows", "max_response_bytes"):
        value = getattr(target, cap)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigurationError(f"targets[{name!r}].{cap}: a positive integer, or None for the mount's")
    cache = target.cache
    if cache is not False and (cache is not True and not _positive_number(cache)):
        raise ConfigurationError(f"targets[{name!r}].cache: True, False, or a positive number of seconds")
    known_providers = frozenset().union(*_PROVIDERS.values())
    if isinstance(target.providers, str) or not set(target.providers) <= known_providers:
        raise ConfigurationError(
            f"targets[{name!r}].providers: a tuple of provider names from {', '.join(sorted(known_providers))}"
        )
    return ResolvedTarget(
        name=name,
        family=family,
        providers=_PROVIDERS[family] | frozenset(target.providers),
        url=url,
        fixed_database=url.database if family != "sqlite" else None,
        users=dict(target.users),
        api_keys=dict(target.api_keys),
        server_login=server_login and family != "sqlite",
        rate_limit=target.rate_limit,
        read_only=target.read_only,
        statement_timeout=target.statement_timeout,
        max_rows=target.max_rows,
        max_response_bytes=target.max_response_bytes,
        cache_ttl=0.0 if cache is False else -1.0 if cache is True else float(cache),  # -1: the mount's cache_ttl
    )


def _check_storage(spec: object) -> None:
    if spec in ("memory", "shm"):
        return
    if isinstance(spec, str) and spec.startswith("shm://"):
        name = spec[len("shm://"):]
        if name and all(c.isalnum() or c in "-_." for c in name):
            return
        raise ConfigurationError("rate_limit_storage: shm://NAME takes a name of letters, digits, '-', '_' and '.'")
    if isinstance(spec, str) and spec.split("://", 1)[0] in ("redis", "rediss", "unix"):
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "rate_limit_storage: Redis needs redis-py: pip install 'sqlhttp-middleware[redis]'"
            ) from None
        return
    raise ConfigurationError("rate_limit_storage: use 'shm', 'shm://NAME', 'memory' or a redis:// URL")


@dataclass(frozen=True)
class Options:
    """Validated settings shared by the WSGI and ASGI middleware."""

    targets: dict[str, ResolvedTarget]
    path: str
    pool_size: int
    pool_timeout: float
    idle_timeout: float
    engine_idle_timeout: float
    max_engines: int
    connect_timeout: float
    max_body_bytes: int
    executor_threads: int
    async_postgres: bool
    inline_budget: float
    rate_limit: int
    rate_limit_window: float
    rate_limit_per_client: int
    rate_limit_storage: str
    rate_limit_namespace: str
    rate_limit_fail_open: bool
    trusted_proxies: int
    statement_timeout: float
    max_rows: int
    max_response_bytes: int
    openapi_path: str
    authorize: Any
    login_attempts: int
    login_window: float
    cors_origins: tuple[str, ...]
    deadline_grace: float
    max_sql_bytes: int
    body_timeout: float
    send_timeout: float
    drain_timeout: float
    reconnect_backoff: float
    rate_limit_slots: int
    metrics_path: str
    health_path: str
    request_id_header: str
    session_idle_timeout: float
    session_max_lifetime: float
    session_secret: str
    session_dir: str
    session_host: str
    planetscale_root: bool
    planetscale_target: str
    cache_ttl: float
    cache_max_bytes: int
    cache_max_entry_bytes: int
    cache_storage: str
    cache_shared_results: bool
    cache_secret: str
    slow_statement_log: float

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        known = {option.name: option.default for option in OPTIONS}
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(unknown)}")
        values = {**known, **kwargs}
        path = values["path"]
        if not isinstance(path, str) or not path.startswith("/") or (path.endswith("/") and path != "/"):
            raise ConfigurationError(f"path: must start with '/' and not end with one, got {path!r}")
        served = {path}
        for name in ("openapi_path", "metrics_path", "health_path"):
            extra = values[name]
            if not isinstance(extra, str) or (extra and (not extra.startswith("/") or extra in served
                                                         or extra.endswith("/"))):
                raise ConfigurationError(f"{name}: empty, or a path starting with '/' (not ending with one) "
                                         "that no other option of the mount uses")
            served.add(extra)
        if values["health_path"]:
            ready = values["health_path"] + "/ready"
            if ready in served:
                raise ConfigurationError(f"health_path: its readiness path {ready} is another option's path")
        header = values["request_id_header"]
        if not isinstance(header, str) or (header and not all(c.isalnum() or c == "-" for c in header)):
            raise ConfigurationError("request_id_header: empty, or a header name such as 'X-Request-Id'")
        values["request_id_header"] = header.lower()
        positive = ("pool_size", "max_engines", "max_body_bytes", "executor_threads", "max_rows", "max_response_bytes",
                    "max_sql_bytes", "cache_max_bytes", "cache_max_entry_bytes")
        for name in positive:
            value = values[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name}: must be a positive integer, got {value!r}")
        origins = values["cors_origins"]
        if isinstance(origins, str) or not all(isinstance(o, str) and o for o in origins):
            raise ConfigurationError("cors_origins: a list of origins such as ['https://app.example'], or ['*']")
        values["cors_origins"] = tuple(origins)
        if any(o != "*" and ("://" not in o or o.endswith("/")) for o in values["cors_origins"]):
            raise ConfigurationError("cors_origins: an origin is scheme://host[:port] with no path, e.g. "
                                     "'https://app.example'")
        if values["authorize"] is not None and not callable(values["authorize"]):
            raise ConfigurationError("authorize: a callable taking an AuthContext, or None")
        for name in ("rate_limit", "rate_limit_per_client", "trusted_proxies", "login_attempts", "rate_limit_slots"):
            value = values[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name}: must be a whole number, 0 or more, got {value!r}")
        for name in ("rate_limit_fail_open", "async_postgres", "cache_shared_results", "planetscale_root"):
            if not isinstance(values[name], bool):
                raise ConfigurationError(f"{name}: must be True or False, got {values[name]!r}")
        _check_storage(values["rate_limit_storage"])
        for name in ("rate_limit_namespace", "session_secret", "session_dir", "session_host", "cache_secret",
                     "planetscale_target"):
            if not isinstance(values[name], str):
                raise ConfigurationError(f"{name}: must be a string")
        for name in ("pool_timeout", "idle_timeout", "engine_idle_timeout", "connect_timeout", "rate_limit_window",
                     "statement_timeout", "login_window", "deadline_grace", "body_timeout", "send_timeout",
                     "drain_timeout", "reconnect_backoff", "session_idle_timeout", "session_max_lifetime",
                     "cache_ttl"):
            value = values[name]
            if not _positive_number(value):
                raise ConfigurationError(f"{name}: must be a positive number of seconds, got {value!r}")
            values[name] = float(value)
        slow = values["slow_statement_log"]
        if not (_positive_number(slow) or slow == 0) or isinstance(slow, bool):
            raise ConfigurationError(f"slow_statement_log: must be 0 or a positive number of seconds, got {slow!r}")
        values["slow_statement_log"] = float(slow)
        budget = values["inline_budget"]
        if not (_positive_number(budget) or budget == 0) or isinstance(budget, bool):
            raise ConfigurationError(f"inline_budget: must be 0 or a positive number of seconds, got {budget!r}")
        values["inline_budget"] = float(budget)
        storage = values["cache_storage"]
        if storage not in ("shm", "memory"):
            try:
                _check_storage(storage)
            except ConfigurationError:
                raise ConfigurationError("cache_storage: use 'shm', 'memory' or a redis:// URL") from None
            if storage.startswith("shm://"):
                raise ConfigurationError("cache_storage: use 'shm', 'memory' or a redis:// URL")
        if values["cache_shared_results"] and (storage in ("shm", "memory") or not values["cache_secret"]):
            raise ConfigurationError("cache_shared_results: needs cache_storage set to a redis:// URL and a "
                                     "cache_secret shared by every host")
        values["targets"] = resolve_targets(values["targets"])
        served = values["planetscale_target"]
        if served and (served not in values["targets"] or values["targets"][served].family != "mysql"):
            raise ConfigurationError("planetscale_target: the name of a MySQL or MariaDB target")
        if values["planetscale_root"] and not served and sum(
                t.family == "mysql" for t in values["targets"].values()) != 1:
            raise ConfigurationError("planetscale_root: name the target it serves with planetscale_target (there is "
                                     "not exactly one MySQL/MariaDB target)")
        if any(t.cache_ttl for t in values["targets"].values()):
            try:
                import sqlglot  # noqa: F401
            except ImportError:
                raise ConfigurationError("cache: the result cache reads SQL with sqlglot: pip install "
                                         "'sqlhttp-middleware[cache]'") from None
            values["targets"] = {name: replace(t, cache_ttl=values["cache_ttl"]) if t.cache_ttl < 0 else t
                                 for name, t in values["targets"].items()}
        for target in values["targets"].values():
            if target.server_login and not (target.users or target.api_keys) and values["authorize"] is None:
                raise ConfigurationError(
                    f"targets[{target.name!r}]: its URL carries the database login, so anyone reaching the endpoint "
                    "could use it: declare users= or api_keys=, or give the middleware an authorize= hook"
                )
        return cls(**values)
