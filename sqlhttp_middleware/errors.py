"""The exceptions every failure is raised as, whatever the protocol.

Every failure the endpoint answers is a subclass of :class:`SQLHTTPError`. Each class fixes an HTTP status and a
stable machine ``code``; an error raised by the database also carries its SQLSTATE and diagnostics. Errors are
raised where they happen and turned into bytes once, by the protocol that received the request (its
``error_response``), in that protocol's own error shape. Messages are written for people and must never contain a
password, a connection URL or a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "BatonInvalid",
    "BatonReused",
    "BindingError",
    "ConstraintViolation",
    "DatabaseError",
    "DatabaseNotAllowed",
    "DatabaseUnavailable",
    "InternalError",
    "InvalidJSON",
    "LoginThrottled",
    "MethodNotAllowed",
    "MultipleStatements",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PoolTimeout",
    "ProviderMismatch",
    "RateLimited",
    "RateLimiterUnavailable",
    "ReadOnlyTarget",
    "ResultTooLarge",
    "SQLHTTPError",
    "StatementTimeout",
    "StreamBusy",
    "StreamElsewhere",
    "StreamError",
    "StreamExpired",
    "TargetNotFound",
    "UnknownDatabase",
    "UnsupportedMediaType",
]


class SQLHTTPError(Exception):
    """Base of every error the endpoint answers with. Subclasses set ``status`` and ``code``."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    sessions_only: ClassVar[bool] = False  # answered only by protocols with interactive sessions

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra
        self.statement: int | None = None  # in a batch: the index of the statement that failed
        # The database's own report, where it gives one: its code (the SQLSTATE on PostgreSQL, the error number on
        # MySQL, MariaDB and SQL Server, the SQLITE_* name on SQLite), its message, and the fields of PostgreSQL's
        # ErrorResponse (``diagnostics``).
        self.database_code: str | None = None
        self.database_message: str | None = None
        self.sqlstate: str | None = None
        self.diagnostics: dict[str, str | None] | None = None


class BadRequest(SQLHTTPError):
    """The request body is not a valid query request (a field is missing or has the wrong type)."""

    status = 400
    code = "INVALID_REQUEST"


class InvalidJSON(BadRequest):
    code = "INVALID_JSON"


class BindingError(BadRequest):
    """The bindings do not fit the SQL: too many, too few, an unknown name, or a value of the wrong kind."""

    code = "BINDING_ERROR"


class ProviderMismatch(BadRequest):
    code = "PROVIDER_MISMATCH"


class AuthenticationFailed(SQLHTTPError):
    status = 401
    code = "AUTHENTICATION_FAILED"


class PermissionDenied(SQLHTTPError):
    status = 403
    code = "PERMISSION_DENIED"


class DatabaseNotAllowed(PermissionDenied):
    code = "DATABASE_NOT_ALLOWED"


class NotFound(SQLHTTPError):
    status = 404
    code = "NOT_FOUND"


class TargetNotFound(NotFound):
    code = "TARGET_NOT_FOUND"


class UnknownDatabase(NotFound):
    code = "UNKNOWN_DATABASE"


class MethodNotAllowed(SQLHTTPError):
    status = 405
    code = "METHOD_NOT_ALLOWED"


class RequestTimeout(SQLHTTPError):
    """The request body did not arrive within ``body_timeout``."""

    status = 408
    code = "REQUEST_TIMEOUT"


class PayloadTooLarge(SQLHTTPError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(SQLHTTPError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(SQLHTTPError):
    status = 429
    code = "RATE_LIMITED"
    policy = ""  # the limit that refused: mount, client or target


class LoginThrottled(SQLHTTPError):
    status = 429
    code = "LOGIN_THROTTLED"


class DatabaseError(SQLHTTPError):
    """The database refused the statement; ``database_code`` and ``database_message`` say how it put it."""

    status = 400
    code = "SQL_ERROR"


class MultipleStatements(DatabaseError):
    code = "MULTIPLE_STATEMENTS"


class ReadOnlyTarget(DatabaseError):
    status = 403
    code = "READ_ONLY"


class ConstraintViolation(DatabaseError):
    status = 409
    code = "CONSTRAINT_VIOLATION"


class InternalError(SQLHTTPError):
    status = 500
    code = "INTERNAL_ERROR"


class StatementTimeout(DatabaseError):
    status = 504
    code = "STATEMENT_TIMEOUT"


class ResultTooLarge(SQLHTTPError):
    status = 507
    code = "RESULT_TOO_LARGE"
    max_rows: int | None = None  # the caps that were passed
    max_bytes: int | None = None


class DatabaseUnavailable(SQLHTTPError):
    status = 503
    code = "DATABASE_UNAVAILABLE"


class RateLimiterUnavailable(SQLHTTPError):
    status = 503
    code = "RATE_LIMITER_UNAVAILABLE"


class PoolTimeout(SQLHTTPError):
    status = 503
    code = "POOL_TIMEOUT"

    @classmethod
    def busy(cls, pool_size: int, waited: float, target: str) -> PoolTimeout:
        return cls(f"all {pool_size} connections to target {target!r} stayed busy for {waited:g} s; try again "
                   "shortly", headers={"Retry-After": "1"})


class StreamError(BadRequest):
    """A request named a stream (an interactive session) it cannot continue. The session, if any, is untouched."""

    code = "STREAM_ERROR"
    sessions_only = True


class StreamExpired(StreamError):
    """The session expired (idle, or too old), was closed, or its worker is gone; its transaction rolled back."""

    code = "STREAM_EXPIRED"

    @classmethod
    def gone(cls) -> StreamExpired:
        return cls("the stream has expired due to inactivity, or was closed; its transaction was rolled back: "
                   "open a new stream")


class BatonInvalid(StreamError):
    """The baton was not issued by this server, or belongs to another login."""

    code = "BATON_INVALID"


class BatonReused(StreamError):
    """The baton was already used: each answer's baton is good for one request."""

    code = "BATON_REUSED"


class StreamElsewhere(StreamError):
    """The baton's session is held by another host."""

    code = "STREAM_ELSEWHERE"


class StreamBusy(StreamError):
    """Another request is running on the same session."""

    status = 409
    code = "STREAM_BUSY"


class RunElsewhere(Exception):
    """Not an answer: a statement tried on the event loop outgrew its budget (or met a lock) and was undone; run
    it again on a thread. Never leaves the core."""


def all_error_classes(sessions: bool = True) -> list[type[SQLHTTPError]]:
    """Every concrete error class, for the docs test and the error-shape test; without those only protocols with
    interactive sessions answer, if ``sessions`` is false (PolyScale's and Neon's have none)."""
    found: list[type[SQLHTTPError]] = []
    pending: list[type[SQLHTTPError]] = list(SQLHTTPError.__subclasses__())
    while pending:
        cls = pending.pop()
        if sessions or not cls.sessions_only:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: (c.status, c.code))
