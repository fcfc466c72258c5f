"""Options from environment variables: ``SQLHTTP_TARGETS`` and ``SQLHTTP_<OPTION>`` for every other option.

Used by the standalone server and the examples, so a deployment configures them the same way:
``SQLHTTP_TARGETS="pg=postgresql://127.0.0.1:5432 maria=mariadb://127.0.0.1:3306"``, ``SQLHTTP_POOL_TIMEOUT=3``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .options import OPTIONS, ConfigurationError, parse_targets

__all__ = ["env_name", "options_from_env"]


def env_name(option: str) -> str:
    return "SQLHTTP_" + option.upper()


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options set in ``environ`` (default ``os.environ``), converted to their types. Unset ones are absent."""
    environ = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    for option in OPTIONS:
        name = env_name(option.name)
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        if option.name == "targets":
            options["targets"] = parse_targets(raw)
            continue
        options[option.name] = _convert(name, option.kind, raw)
    return options


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(name: str, kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.lower() not in _BOOLEANS:
            raise ConfigurationError(f"{name}: expected true or false, got {raw!r}")
        return _BOOLEANS[raw.lower()]
    if kind is tuple:
        return tuple(raw.split())
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a number ({kind.__name__}), got {raw!r}") from None
    return raw
