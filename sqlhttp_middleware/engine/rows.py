"""Encoded rows within the caps, shared by every protocol's result builder and by a batch's statements."""

from __future__ import annotations

from typing import Any

import orjson

from .. import errors
from .work import Body, Limits

__all__ = ["ONE_PIECE", "RowPieces", "answer", "too_large"]

ONE_PIECE = 64 * 1024  # answers smaller than this are sent as one byte string


class RowPieces:
    """JSON-encoded rows kept as the pieces they were encoded in, within ``max_rows`` and ``max_bytes`` for the
    whole answer (a batch shares one). Each piece carries the comma that separates it from the one before, within
    one statement's array; :meth:`take` hands a statement's pieces over and starts the next array."""

    __slots__ = ("count", "limits", "pieces", "size", "total", "truncated")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pieces: list[bytes] = []
        self.count = 0  # rows of the current statement
        self.total = 0  # rows of the whole answer
        self.size = 0  # bytes of the whole answer's rows
        self.truncated = False

    def add(self, shaped: list[Any]) -> bool:
        """Encode a batch of rows already in their JSON form. False: a cap was reached; the rows that fit are in."""
        limits = self.limits
        comma = b"," if self.pieces else b""
        # One orjson call for the whole batch while it fits; row by row only to find where a cap cuts it.
        chunk = orjson.dumps(shaped)[1:-1]
        if self.total + len(shaped) <= limits.max_rows and self.size + len(chunk) + 1 <= limits.max_bytes:
            if chunk:
                self.pieces.append(comma + chunk)
            self.count += len(shaped)
            self.total += len(shaped)
            self.size += len(chunk) + 1
            return True
        accepted: list[bytes] = []
        for value in shaped:
            piece = orjson.dumps(value)
            if self.total >= limits.max_rows or self.size + len(piece) + 1 > limits.max_bytes:
                self.truncated = True
                break
            accepted.append(piece)
            self.count += 1
            self.total += 1
            self.size += len(piece) + 1
        if accepted:
            self.pieces.append(comma + b",".join(accepted))
        return False

    def take(self) -> list[bytes]:
        """The current statement's pieces; the next statement starts a new array."""
        pieces, self.pieces, self.count = self.pieces, [], 0
        return pieces


def too_large(limits: Limits, hint: str = "add a LIMIT") -> errors.ResultTooLarge:
    error = errors.ResultTooLarge(
        f"the result is larger than this target's limit of {limits.max_rows} rows or {limits.max_bytes} bytes; "
        f"{hint}"
    )
    error.max_rows, error.max_bytes = limits.max_rows, limits.max_bytes
    return error


def answer(statements: list[list[bytes]], batch: bool, rows: RowPieces) -> Body:
    """The answer from each statement's encoded pieces: the one statement's, or ``{"results": [...]}`` for a batch.
    A small answer comes as one byte string; a large one as the encoded batches themselves, which the adapters
    send one after the other, so the rows are never copied into one more buffer."""
    if batch:
        parts = [b'{"results":[']
        for position, statement in enumerate(statements):
            if position:
                parts.append(b",")
            parts.extend(statement)
        parts.append(b"]}")
    else:
        [parts] = statements
    return b"".join(parts) if rows.size < ONE_PIECE else parts
