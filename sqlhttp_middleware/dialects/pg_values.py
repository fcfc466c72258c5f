"""PostgreSQL values as each protocol answers them, through psycopg's loaders.

Neon's protocol answers every value as the server's own text (:func:`text_adapters`: psycopg's C text loader for
every type). PolyScale's answers a value as a Python value only where that value is exact, else as the server's text
or its exact form (:func:`exact_adapters`): JSON embedded as the server wrote it, ISO 8601 timestamps rebuilt from the
server's text with their offsets to the second, arrays of any element type, user types included
(:class:`ArrayCatalog`), as JSON arrays.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def text_adapters() -> Any:
    """psycopg adapters that load every value as the text PostgreSQL sent: its own output, untouched (psycopg's
    text loader, in C, for every type it knows and as the fallback for those it does not: enums, domains...)."""
    import psycopg
    from psycopg.adapt import AdaptersMap
    from psycopg.types.string import TextLoader

    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_loader(0, TextLoader)
    for info in psycopg.adapters.types:
        for oid in (info.oid, getattr(info, "array_oid", 0)):
            if oid:
                adapters.register_loader(oid, TextLoader)
    return adapters


# The types whose psycopg loader gives a Python value the JSON encoding carries exactly (numbers within what a double
# holds are checked when encoded; bytes become base64). Every other type the server ships loads as PostgreSQL's
# own text, except those below with a form of their own.
_PYTHON_VALUES = frozenset({"bool", "int2", "int4", "int8", "oid", "float4", "float8", "bytea"})


def _stamp(text: str) -> str:
    """A timestamp in PostgreSQL's ISO output (``2024-01-02 03:04:05.5``) as ISO 8601, its text otherwise (infinity,
    BC, a year past 9999, another DateStyle): nothing a datetime cannot hold is rounded or refused."""
    if len(text) < 19 or text[4] != "-" or text[10] != " " or text[-1] == "C":
        return text
    return text[:10] + "T" + text[11:]


def _offset(text: str) -> str:
    """An offset PostgreSQL wrote as ``+05`` spelled ``+05:00``; ``+05:30`` and ``-04:56:02`` stay as they are."""
    return text + ":00" if len(text) > 3 and text[-3] in "+-" else text


@functools.cache
def _exact_loaders() -> dict[str, type]:
    import orjson
    from psycopg.adapt import Loader

    class JsonLoader(Loader):
        """The document as the server wrote it, embedded in the answer unparsed: its numbers stay exact and no
        depth the server accepts is too deep."""

        def load(self, data: Any) -> Any:
            return orjson.Fragment(bytes(data))

    class TimestampLoader(Loader):
        def load(self, data: Any) -> Any:
            return _stamp(str(data, "utf-8"))

    class TimestamptzLoader(Loader):
        def load(self, data: Any) -> Any:
            text = _stamp(str(data, "utf-8"))
            return _offset(text) if text[10:11] == "T" else text

    class TimetzLoader(Loader):
        def load(self, data: Any) -> Any:
            return _offset(str(data, "utf-8"))

    class UnknownLoader(Loader):
        """A type psycopg does not know (an enum, a domain's or a user's type, ...): its text, except an array,
        which is a JSON array of its elements, each loaded as its element's (a domain's: its base type's) values
        are. Which types are arrays is read from the catalog (:class:`ArrayCatalog`)."""

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._catalog = None if self.connection is None else array_catalog(self.connection)

        def load(self, data: Any) -> Any:
            element = None if self._catalog is None else self._catalog.element(self.oid)
            if element is None:
                return str(data, "utf-8")
            return _load_text(data, element[1], element[0])

    from psycopg.types.array import _load_text

    return {"json": JsonLoader, "jsonb": JsonLoader, "timestamp": TimestampLoader,
            "timestamptz": TimestamptzLoader, "timetz": TimetzLoader, "": UnknownLoader}


# Each array type with its element's delimiter and the type whose loader reads an element (a domain's base type).
_ARRAYS_SQL = (
    "SELECT a.oid::int8, e.typdelim, (CASE WHEN e.typtype = 'd' THEN e.typbasetype ELSE e.oid END)::int8"
    " FROM pg_type a JOIN pg_type e ON e.oid = a.typelem AND e.typarray = a.oid"
    " WHERE %s::int8[] IS NULL OR a.oid = ANY(%s::int8[])"
)


class ArrayCatalog:
    """The array types of a connection's database, for the types psycopg does not know: read whole at the
    connection's first statement, and again for any type met since that the catalog did not have (a type created
    after the first read: its arrays are one text until the next statement on that connection looks it up)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.loaded = False
        self.arrays: dict[int, tuple[bytes, int] | None] = {}  # array OID -> (delimiter, element OID); None: no array
        self.missed: set[int] = set()
        self._loaders: dict[int, tuple[bytes, Any]] = {}

    def query(self) -> tuple[str, list[Any]] | None:
        """The catalog query to run before the next statement, if there is anything to look up."""
        if not self.loaded:
            return _ARRAYS_SQL, [None, None]
        if self.missed:
            missed = sorted(self.missed)
            return _ARRAYS_SQL, [missed, missed]
        return None

    def store(self, rows: list[Any]) -> None:
        for oid in self.missed:
            self.arrays[oid] = None
        self.missed.clear()
        for oid, delimiter, element in rows:
            self.arrays[oid] = (delimiter.encode(), element)
        self.loaded = True

    def element(self, oid: int) -> tuple[bytes, Any] | None:
        """(delimiter, element loader) of an array type; None for a type that is not an array."""
        found = self._loaders.get(oid)
        if found is not None:
            return found
        if oid not in self.arrays:
            self.missed.add(oid)
            return None
        entry = self.arrays[oid]
        if entry is None:
            return None
        from psycopg.pq import Format
        from psycopg.types.string import TextLoader

        delimiter, element = entry
        cls = exact_adapters(self.connection).get_loader(element, Format.TEXT)
        loader = (TextLoader if cls is None or cls is _exact_loaders()[""] else cls)(element, self.connection)
        found = self._loaders[oid] = (delimiter, loader)
        return found


def array_catalog(connection: Any) -> ArrayCatalog:
    catalog = connection.__dict__.get("_sqlhttp_arrays")
    if catalog is None:
        catalog = connection.__dict__["_sqlhttp_arrays"] = ArrayCatalog(connection)
    return catalog  # type: ignore[no-any-return]


def exact_adapters(connection: Any) -> Any:
    """psycopg adapters for PolyScale's values, over the connection's own dumpers, made once per connection (its
    cursors share them): each type as a Python value only where that value is exact, else as the server's text
    (numeric, interval, date, time, money, ranges, network types, ...) or its exact form (JSON embedded as written,
    ISO 8601 timestamps with their offsets to the second). Arrays take their elements' loaders."""
    adapters = connection.__dict__.get("_sqlhttp_exact")
    if adapters is None:
        import psycopg
        from psycopg.adapt import AdaptersMap
        from psycopg.types.string import TextLoader

        adapters = AdaptersMap(connection.adapters)
        own = _exact_loaders()
        for info in psycopg.adapters.types:
            if info.name not in _PYTHON_VALUES:
                adapters.register_loader(info.oid, own.get(info.name, TextLoader))
        adapters.register_loader(0, own[""])  # every type psycopg does not know
        connection.__dict__["_sqlhttp_exact"] = adapters
    return adapters
