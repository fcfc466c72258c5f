"""The neutral work a protocol hands the engine, and what the engine hands back.

A protocol's parser turns its wire format into a :class:`Work`: one or more :class:`Statement` objects in the
driver's parameter style, and, for a batch, the :class:`Transaction` they share. The engine knows no wire format:
it runs the work within its target's :class:`Limits` and streams each statement's columns and rows into a
:class:`ResultBuilder` the protocol owns, which turns them into the protocol's bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..options import ResolvedTarget

__all__ = [
    "Body", "Claim", "Column", "Isolation", "Limits", "Login", "ResultBuilder", "ResultInfo", "Statement",
    "Stream", "StreamProgram", "Transaction", "Work",
]

Body = bytes | list[bytes]  # an answer: one byte string, or pieces to send one after the other

Isolation = Literal["read uncommitted", "read committed", "repeatable read", "serializable"]
ISOLATION_LEVELS: tuple[Isolation, ...] = ("read uncommitted", "read committed", "repeatable read", "serializable")


@dataclass(frozen=True)
class Statement:
    """One statement, ready for the driver: ``sql`` in ``paramstyle`` with its ``params`` in order.

    ``numeric`` is PostgreSQL's own ``$1, $2`` style, bound by the server as text of an unknown type (what
    node-postgres does); ``format`` and ``qmark`` are the DB-API's ``%s`` and ``?``.
    """

    sql: str
    params: Sequence[Any] | Mapping[str, Any] = ()  # a mapping: by name (SQLite's :name, @name, $name)
    paramstyle: Literal["format", "qmark", "numeric"] = "format"


@dataclass(frozen=True)
class Transaction:
    """How a batch's one transaction is opened. None leaves the database's default."""

    isolation: Isolation | None = None
    read_only: bool | None = None
    deferrable: bool | None = None  # PostgreSQL only; meaningful with serializable, read-only transactions


@dataclass(frozen=True)
class Claim:
    """Who the client says it is, before admission checks it."""

    username: str
    password: str = field(repr=False)
    database: str


@dataclass(frozen=True)
class Login:
    """The database login the work runs with: the client's own, or the one its target's URL holds."""

    username: str
    password: str = field(repr=False)
    database: str


@dataclass(frozen=True)
class Stream:
    """Work on a stream: one connection held across requests (an interactive session), see :mod:`.sessions`.

    ``baton`` names the session the client continues; None opens one. ``closes``: nothing is held after this
    request (the work ends with closing the stream), so a request that opens and closes needs no session at all.
    ``credential`` is what the client authenticated with (its Authorization header): a session continues only for
    the login that opened it.
    """

    baton: str | None
    closes: bool
    credential: str = field(default="", repr=False)
    protocol: str = ""  # the protocol that reads the request again where its session lives (another worker)
    payload: bytes = field(default=b"", repr=False)  # the request's body, handed over as it came
    inline: bool = False  # one statement on a fresh stream: it may run on the event loop, and again on a thread


@dataclass(frozen=True)
class Work:
    """Everything the engine needs to run a request: statements, their transaction, and how to give values.

    ``transaction`` None with one statement: it runs on its own in autocommit mode. A Transaction: every
    statement runs in one transaction that commits if all succeed and rolls back otherwise.
    ``text_values``: values as the database's own text output (PostgreSQL), not as Python objects.
    """

    target: ResolvedTarget
    claim: Claim
    statements: tuple[Statement, ...]
    transaction: Transaction | None = None
    text_values: bool = False
    timeout: float | None = None  # the client's own, when lower than the target's
    stream: Stream | None = None  # the statements are the program's, run on a held connection

    @property
    def sql(self) -> str:
        """The statements' text, for the ``authorize`` hook."""
        return ";\n".join(statement.sql for statement in self.statements)


@dataclass(frozen=True)
class Limits:
    timeout: float
    max_rows: int
    max_bytes: int
    read_only: bool


@dataclass(frozen=True)
class Column:
    """One column of a result, as every database can describe it; the PostgreSQL-only fields are 0 elsewhere."""

    name: str
    type_oid: int = 0
    table_oid: int = 0
    column_number: int = 0
    size: int = -1
    modifier: int = -1


class ResultInfo(Protocol):
    """What the engine knows of the statement being read. Each answer is computed only when asked for."""

    @property
    def names(self) -> list[str]: ...

    def columns(self) -> list[Column]: ...

    def type_names(self, rows: list[Any]) -> list[str | None]: ...

    def row_count(self) -> int | None: ...

    def command(self) -> str | None: ...

    def last_insert_id(self) -> int | None: ...


class ResultBuilder(Protocol):
    """The protocol's side of a result: the engine calls these in order, for each statement of the work."""

    def begin(self, index: int, result: ResultInfo) -> None:
        """Statement ``index`` ran; its columns (possibly none) are known."""

    def add(self, rows: list[Any]) -> bool:
        """Take a batch of rows (tuples). False: a cap was reached, read no further."""

    def end(self, result: ResultInfo) -> None:
        """The statement's rows are all read (or a cap cut them)."""

    def finish(self) -> Body:
        """The answer's bytes, once every statement ended (or raise the protocol's refusal)."""


class StreamProgram(Protocol):
    """The protocol's side of stream work (in place of a :class:`ResultBuilder`): it runs its requests on the
    stream's connection, then encodes the answer with the baton that continues the stream (None once closed)."""

    def run(self, stream: Any) -> None:
        """Run every request on ``stream`` (an :class:`~.streams.StreamConnection`), recording the results."""

    def finish(self, baton: str | None) -> Body:
        """The answer's bytes."""

    @property
    def closed(self) -> bool:
        """The program closed the stream."""
