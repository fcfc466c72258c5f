"""The ``SQLHTTP`` Django setting: read lazily, translated to the core's options, and the one core built from it.

``SQLHTTP = {"TARGETS": {...}, "PATH": "/sql", "POOL_SIZE": 2, ...}``: each key is an option of
:data:`sqlhttp_middleware.options.OPTIONS`, upper-cased. A target is a URL, a :class:`Target`, or a dict that reuses
an entry of ``DATABASES`` (``{"DATABASE": "default"}``) for its engine, host, port and database name, never its login.

The setting is read from ``django.conf.settings`` when used, so ``override_settings`` works, and the core is rebuilt
when ``SQLHTTP`` or ``DATABASES`` changes. Each problem carries the id of the system check that reports it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string
from sqlalchemy.engine import URL

from ..core import SQLHTTPCore
from ..options import OPTIONS, ConfigurationError, Options, Target

__all__ = [
    "ENGINES", "KEYS", "TARGET_FIELDS", "Problem", "Settings", "build_core", "conf", "database_target", "get_core",
]

KEYS = {option.name.upper(): option.name for option in OPTIONS}  # setting key -> the core's option name
# A DATABASES-form target: "DATABASE" (the alias), and Target's other fields upper-cased ("USERS", "PROVIDERS"...).
TARGET_FIELDS = {field.name.upper(): field.name for field in dataclasses.fields(Target) if field.name != "url"}

# The Django database backends a target can serve, and the URL scheme that reaches their server.
ENGINES = {
    "django.db.backends.postgresql": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
}
EXAMPLE = 'SQLHTTP = {"TARGETS": {"main": {"DATABASE": "default"}}}'
E001, E002, E003, E004 = "sqlhttp.E001", "sqlhttp.E002", "sqlhttp.E003", "sqlhttp.E004"


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong with the setting, as its system check reports it. Never carries a password."""

    id: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"({self.id}) {self.message}" + (f" HINT: {self.hint}" if self.hint else "")


class UnusableDatabase(ValueError):
    """A TARGETS entry of the DATABASES form cannot become a target (``sqlhttp.E004``)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Settings:
    """``django.conf.settings`` as the middleware sees it, read at every access."""

    @property
    def SQLHTTP(self) -> object:
        return getattr(settings, "SQLHTTP", None)

    @property
    def DATABASES(self) -> Mapping[str, Mapping[str, Any]]:
        databases: Mapping[str, Mapping[str, Any]] = settings.DATABASES
        return databases

    def translate(self) -> tuple[dict[str, Any], list[Problem]]:
        """The core's keyword options, and what is wrong before the core sees them (E001, E002, E004)."""
        raw = self.SQLHTTP
        if not isinstance(raw, Mapping):
            what = "is not set" if raw is None else f"must be a dict, not {type(raw).__name__}"
            return {}, [Problem(E001, f"SQLHTTP {what}", f"For example: {EXAMPLE}")]
        if "TARGETS" not in raw:
            return {}, [Problem(E001, 'SQLHTTP has no "TARGETS"', f"For example: {EXAMPLE}")]
        problems = [_unknown_key(key) for key in raw if key not in KEYS]
        options = {KEYS[key]: value for key, value in raw.items() if key in KEYS}
        if isinstance(options.get("authorize"), str):
            # The Django way to name a callable in settings: a dotted path.
            try:
                options["authorize"] = import_string(options["authorize"])
            except ImportError as error:
                problems.append(Problem(E003, f"SQLHTTP: AUTHORIZE: cannot import {options['authorize']!r}: {error}"))
                del options["authorize"]
        if isinstance(options["targets"], Mapping):
            options["targets"] = {
                name: self._target(name, spec, problems) for name, spec in options["targets"].items()
            }
        return options, problems

    def problems(self) -> list[Problem]:
        """Everything the system checks report, E003 included (what the core refuses)."""
        options, problems = self.translate()
        if not any(problem.id in (E001, E004) for problem in problems):
            try:
                Options.from_kwargs(**options)
            except ConfigurationError as error:
                problems.append(_refused(error))
        return problems

    def _target(self, name: object, spec: object, problems: list[Problem]) -> object:
        if not isinstance(spec, Mapping):
            return spec  # a URL or a Target: the core validates it
        try:
            return database_target(spec, self.DATABASES)
        except UnusableDatabase as error:
            problems.append(Problem(E004, f'SQLHTTP["TARGETS"][{name!r}]: {error}', error.hint))
            return spec


conf = Settings()


def database_target(entry: Mapping[Any, Any], databases: Mapping[str, Mapping[str, Any]]) -> Target:
    """The target serving one ``DATABASES`` entry: its engine, host, port and NAME, never its USER or PASSWORD.

    Clients send their own login, checked by the database; the NAME pins the target to that one database.
    """
    unknown = [repr(key) for key in entry if key != "DATABASE" and key not in TARGET_FIELDS]
    if unknown:
        optional = ", ".join(f'"{key}"' for key in TARGET_FIELDS)
        raise UnusableDatabase(f"unknown key(s) {', '.join(unknown)}", f'This form takes "DATABASE", and {optional}.')
    alias = entry.get("DATABASE")
    if not isinstance(alias, str) or alias not in databases:
        defined = ", ".join(repr(name) for name in databases) or "nothing"
        raise UnusableDatabase(f'"DATABASE": {alias!r} is not an alias in DATABASES', f"DATABASES defines {defined}.")
    database = databases[alias]
    engine = database.get("ENGINE")
    scheme = ENGINES.get(engine) if isinstance(engine, str) else None
    if scheme is None:
        raise UnusableDatabase(f"DATABASES[{alias!r}] uses ENGINE {engine!r}, which sqlhttp cannot serve",
                               f"Supported engines: {', '.join(ENGINES)}. Or give this target as a URL.")
    extra = {TARGET_FIELDS[key]: value for key, value in entry.items() if key in TARGET_FIELDS}
    if isinstance(extra.get("providers"), list):
        extra["providers"] = tuple(extra["providers"])  # the core wants a tuple; settings often hold lists
    users = extra.get("users", {})
    if not isinstance(users, Mapping):
        raise UnusableDatabase('"USERS" must be a dict of login name to password')
    name = database.get("NAME")
    if scheme == "sqlite":
        if not name or str(name) == ":memory:" or "mode=memory" in str(name):
            raise UnusableDatabase(f"DATABASES[{alias!r}] is an in-memory SQLite database, which only its own "
                                   "connection can see", "Give it a file NAME.")
        if not users:
            raise UnusableDatabase(f"DATABASES[{alias!r}] is SQLite, which has no logins of its own",
                                   'Add "USERS": {"name": "password"}, the logins clients may send.')
        return Target(f"sqlite:///{name}", **extra)
    host = str(database.get("HOST") or "127.0.0.1")
    port = str(database.get("PORT") or "")
    if host.startswith("/"):
        raise UnusableDatabase(f"DATABASES[{alias!r}] connects through a Unix socket, which a target cannot",
                               "Give this target as a URL with a host instead.")
    if port and not port.isdigit():
        raise UnusableDatabase(f"DATABASES[{alias!r}] has a PORT that is not a number")
    if not name:
        raise UnusableDatabase(f"DATABASES[{alias!r}] has no NAME", "The target serves the database NAME names.")
    url = URL.create(scheme, host=host, port=int(port) if port else None, database=str(name))
    return Target(url.render_as_string(hide_password=False), **extra)


def _unknown_key(key: object) -> Problem:
    close = f" Did you mean {key.upper()!r}?" if isinstance(key, str) and key.upper() in KEYS else ""
    return Problem(E002, f"SQLHTTP has an unknown key {key!r}", f"Known keys: {', '.join(KEYS)}.{close}")


def _refused(error: ConfigurationError) -> Problem:
    # The core's message names the option (lower-case, as in docs/configuration.md) and never carries a password.
    return Problem(E003, f"SQLHTTP: {error}", "Each SQLHTTP key is an option name upper-cased: see docs/django.md.")


# -- the one core per process -------------------------------------------------------------------------------------

_core: SQLHTTPCore | None = None
_core_lock = threading.Lock()


def build_core() -> SQLHTTPCore:
    """A core for the current settings; ImproperlyConfigured, with the system check's message, on a bad one."""
    options, problems = conf.translate()
    if problems:
        raise ImproperlyConfigured(str(problems[0]))
    try:
        return SQLHTTPCore(**options)
    except ConfigurationError as error:
        raise ImproperlyConfigured(str(_refused(error))) from error


def get_core() -> SQLHTTPCore:
    """The process's one core (its pools are shared by every handler), built on first use."""
    global _core
    core = _core
    if core is None:
        with _core_lock:
            if _core is None:
                _core = build_core()
            core = _core
    return core


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings in tests: the next request builds a core from the new value; the old one's pools close.
    global _core
    if setting not in ("SQLHTTP", "DATABASES"):
        return
    with _core_lock:
        stale, _core = _core, None
    if stale is not None:
        stale.close()


setting_changed.connect(_settings_changed, dispatch_uid="sqlhttp_middleware.django.conf")
