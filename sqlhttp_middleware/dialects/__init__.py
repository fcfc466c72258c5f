"""What differs between databases: drivers, sessions, column type names, liveness and error mapping.

The request path is written once against :class:`DialectSupport`; one subclass per dialect family, in a module of
its own, answers the questions whose answer depends on the driver. Driver modules are imported lazily, so a
deployment installs only the drivers of the databases it serves.
"""

from __future__ import annotations

from .base import DialectSupport
from .mssql import MSSQLSupport
from .mysql import MySQLSupport
from .postgresql import PostgreSQLSupport
from .sqlite import SQLiteSupport

__all__ = ["DialectSupport", "dialect_support"]

_SUPPORT: dict[str, DialectSupport] = {
    support.family: support
    for support in (PostgreSQLSupport(), MySQLSupport(), SQLiteSupport(), MSSQLSupport())
}


def dialect_support(family: str) -> DialectSupport:
    return _SUPPORT[family]
