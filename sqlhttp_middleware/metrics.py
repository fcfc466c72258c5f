"""Prometheus metrics (skeleton: the engine's calls are in place; recording comes with the metrics module).

The engine reports the events only it sees through these functions; they cost nothing while metrics are off.
"""

from __future__ import annotations

__all__ = ["connection_abandoned", "connect_refused_fast"]


def connection_abandoned(target: str, reason: str) -> None:
    """A connection given up and closed rather than reused: ``reason`` is ``deadline`` (the database did not answer
    by the hard deadline) or ``disconnect`` (the client went away and the statement could not be stopped in time)."""


def connect_refused_fast(target: str) -> None:
    """A request answered 503 at once because its database was down a moment ago (reconnect back-off)."""
