"""The engine: neutral work (:mod:`.work`), run by the sync :class:`~.executor.Executor` or, for PostgreSQL on
an event loop, its async sibling :class:`~.aio.AsyncPostgres`, into a result builder the protocol owns."""

from __future__ import annotations

from .executor import Executor
from .work import Body, Claim, Limits, Login, ResultBuilder, Statement, Transaction, Work

__all__ = ["Body", "Claim", "Executor", "Limits", "Login", "ResultBuilder", "Statement", "Transaction", "Work"]
