"""knex-style ``sql`` + ``bindings`` -> driver SQL + a positional parameter list.

This module owns the translation of a request's ``sql``/``bindings`` pair, with knex.raw semantics
(https://knexjs.org/guide/raw.html#raw-parameter-binding), into the driver's placeholder style. Values are
never pasted into the SQL text: only placeholders, ``NULL`` (for an empty list) and quoted identifiers are.

Placeholders
  * list bindings: ``?`` takes the next value, ``??`` the next value as an identifier; ``:name`` is text.
  * dict bindings: ``:name`` binds ``bindings["name"]`` (each occurrence gets its own placeholder) and
    ``:name:`` binds an identifier; ``?`` is text. ``::name`` (a PostgreSQL cast) is never a binding, and
    ``:name:::type`` is the identifier cast (as knex reads it). ``\\:name`` is the text ``:name`` (refused with
    sqlite, whose driver would bind it); with list bindings it is left as it is, as knex leaves it.
  * ``None``, ``[]`` or ``{}``: nothing is a placeholder; the SQL is used as-is apart from ``\\?`` -> ``?``
    and ``%`` doubling. (knex rejects ``?`` with ``[]``; we treat an empty list exactly like no bindings.)
  * ``\\?`` is a literal ``?`` (PostgreSQL jsonb ``?``, ``?|``, ``?&``).
  * Nothing inside quotes or comments is touched: ``'...'``, ``"..."``, PostgreSQL ``E'...'`` and dollar
    quotes, MySQL backslash escapes, backticks and ``#`` comments, ``[...]`` (mssql; also sqlite, which
    accepts backticks too), ``--`` and ``/* */`` comments (nested in postgresql and mssql, as those servers
    do; MySQL's ``--`` needs a following space, as in MySQL). Anything unterminated runs to the end.

Values
  * A scalar (str, int, float, bool, None) is one placeholder; a list expands to ``?, ?, ?`` and an empty
    list to ``NULL``. Objects, nested lists and non-JSON types are rejected.
  * Integers stay exact at any size (the request's parser keeps them so). With SQLite one outside the 64-bit
    range is a BindingError naming the binding: its driver cannot bind it, and as text or REAL it would not
    compare as the number sent.
  * An identifier is a non-empty string (or a list of them, knex's columnize), split on ``.`` and quoted
    part by part with ``quote_identifier``, except a ``*`` part, which stays bare as in knex (``t.*``);
    ``name as alias`` quotes both sides. ``quote_identifier`` must
    return plain SQL: the ``%`` doubling below is done here (SQLAlchemy's preparer for a format-style dialect
    already doubles ``%``, so it has to be undone or the dialect built with ``paramstyle="qmark"``).

Stricter than knex, on purpose: a count mismatch either way, an unknown ``:name`` and dict keys the SQL
never uses (to catch typos) are all :class:`BindingError`. With the ``qmark`` style, any ``?`` outside
quotes that is not a placeholder we wrote (from ``\\?``, or text with dict/no bindings) is a BindingError,
since the driver would read it as a placeholder. A ``?`` value placeholder directly followed by a digit is
rejected too: psycopg turns ``%s1`` into ``$11`` and sqlite reads ``?1`` as a numbered parameter, either
of which could bind the wrong value. With the ``format`` style every ``%`` in the text is doubled, because
the drivers always get a parameter list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .errors import BindingError

__all__ = ["Dialect", "ParamStyle", "compile_sql"]

Dialect = Literal["postgresql", "mysql", "sqlite", "mssql"]
ParamStyle = Literal["qmark", "format"]

_SCALARS = (str, int, float, bool)
# Integers are bound exactly at any size: psycopg sends one beyond int8 as numeric and PyMySQL as a DECIMAL literal.
# SQLite's integers are 64-bit and its driver cannot bind a larger one; as text or REAL it would compare and sort
# differently from the number that was sent, so it is refused, naming the binding.
_SQLITE_INTEGERS = (-(2**63), 2**63 - 1)

# Each quoted form matches up to its closing quote, or to the end of the text when unterminated.
_SINGLE = r"'[^']*(?:''[^']*)*'?"
_SINGLE_BS = r"'[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*'?"
_DOUBLE = r'"[^"]*(?:""[^"]*)*"?'
_DOUBLE_BS = r'"[^"\\]*(?:(?:\\[\s\S]|"")[^"\\]*)*"?'
_BACKTICK = r"`[^`]*(?:``[^`]*)*`?"
_LINE_COMMENT = r"--[^\n]*"
# E'..' and $tag$ start a token only when not glued to an identifier (PostgreSQL names may contain `$`). The
# E is matched by lookbehind so that every token starts with one of the few characters in `first`.
_PG_ESTRING = r"(?<=(?<![\w$])[Ee])" + _SINGLE_BS
_PG_DOLLAR = r"(?<![\w$])\$(?:[^\W\d]\w*)?\$"


def _scanner(first: str, verbatim: list[str], dollar: bool) -> re.Pattern[str]:
    # Used with .match(): the negated class skips plain text in one C-level loop, and `other` swallows a lone
    # first-character (or matches at the end) so the regex never backtracks into that run.
    # `::+` sits in the verbatim group so a cast is consumed before `:name` can match its tail.
    return re.compile(
        f"[^{re.escape(first)}]*(?:"
        "(?P<skip>" + "|".join([*verbatim, "::+"]) + ")"
        r"|(?P<block>/\*)"
        + (f"|(?P<dollar>{_PG_DOLLAR})" if dollar else "")
        # `:name:` is an identifier when the colon after it does not start a `::` (a cast) and also when it is
        # followed by one: `:col:::text` is the identifier cast, as knex reads it.
        + r"|(?P<esc>\\\?)|(?P<escbind>\\:[A-Za-z_][A-Za-z0-9_]*)|(?P<q>\?\??)"
        r"|(?P<bind>:[A-Za-z_][A-Za-z0-9_]*(?::(?!:)|:(?=::))?)"
        r"|(?P<other>[\s\S]|\Z))"
    )


# dialect -> (scanner, block comments nest)
_SCANNERS: dict[str, tuple[re.Pattern[str], bool]] = {
    "postgresql": (
        _scanner("'\"-/?\\:$", [_PG_ESTRING, _SINGLE, _DOUBLE, _LINE_COMMENT], dollar=True),
        True,
    ),
    "mysql": (
        _scanner(
            "'\"`-#/?\\:",
            [_SINGLE_BS, _DOUBLE_BS, _BACKTICK, r"--(?=[\x00-\x20]|\Z)[^\n]*", r"#[^\n]*"],
            dollar=False,
        ),
        False,
    ),
    "sqlite": (
        _scanner("'\"`[-/?\\:", [_SINGLE, _DOUBLE, _BACKTICK, r"\[[^\]]*\]?", _LINE_COMMENT], dollar=False),
        False,
    ),
    "mssql": (
        _scanner(
            "'\"[-/?\\:", [_SINGLE, _DOUBLE, r"\[[^\]]*(?:\]\][^\]]*)*\]?", _LINE_COMMENT], dollar=False
        ),
        True,
    ),
}
_BLOCK_DELIM = re.compile(r"/\*|\*/")
_AS = re.compile(r" as ", re.IGNORECASE | re.ASCII)


def compile_sql(
    sql: str,
    bindings: list[Any] | dict[str, Any] | None,
    *,
    dialect: Dialect,
    paramstyle: ParamStyle,
    quote_identifier: Callable[[str], str],
) -> tuple[str, list[Any]]:
    """Translate knex-style SQL + bindings to driver SQL + a positional parameter list."""
    if dialect not in _SCANNERS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if paramstyle not in ("qmark", "format"):
        raise ValueError(f"unknown paramstyle {paramstyle!r}")
    if not isinstance(sql, str):
        raise BindingError("sql must be a string")
    fmt = paramstyle == "format"
    positional: Sequence[Any] | None = None
    named: dict[str, Any] | None = None
    if bindings is None or (isinstance(bindings, (list, tuple, dict)) and not bindings):
        if "\\?" not in sql and (fmt or "?" not in sql):
            return (sql.replace("%", "%%") if fmt else sql), []
    elif isinstance(bindings, (list, tuple)):
        positional = bindings
    elif isinstance(bindings, dict):
        named = bindings
    else:
        raise BindingError("bindings must be an array, an object or null")

    scanner, nested = _SCANNERS[dialect]
    # `%` appears in no token, so doubling up front is the same as doubling every copied piece.
    text = sql.replace("%", "%%") if fmt else sql
    mark = "%s" if fmt else "?"
    integers = _SQLITE_INTEGERS if dialect == "sqlite" else None
    out: list[str] = []
    params: list[Any] = []
    used: set[str] = set()
    seen = 0  # positional placeholders seen, including those without a value (for the count error)
    done = 0  # text[:done] is already in `out`; verbatim tokens are copied lazily with the text around them
    pos = 0
    match = scanner.match
    end = len(text)
    while pos < end:
        m = match(text, pos)
        if m is None:  # cannot happen: `other` matches any character and the end of the text
            break
        kind = m.lastgroup or "other"
        start, pos = m.start(kind), m.end()
        if kind == "skip" or kind == "other":
            continue
        if kind == "block":
            pos = _block_end(text, pos, nested)
            continue
        if kind == "dollar":
            tag = m.group(kind)
            close = text.find(tag, pos)
            pos = end if close < 0 else close + len(tag)
            continue
        lexeme = m.group(kind)
        if kind == "escbind":
            if named is None:  # knex unescapes `\:name` only with named bindings
                continue
            if dialect == "sqlite":  # sqlite3 reads `:name` anywhere outside quotes as a parameter
                raise BindingError(
                    f"a literal {lexeme[1:]} outside a string cannot be used with sqlite: "
                    "its driver reads it as a parameter"
                )
            piece = lexeme[1:]
        elif kind == "esc":
            if not fmt:
                raise _literal_question_mark(dialect)
            piece = "?"
        elif kind == "q":
            if positional is None:
                if not fmt:
                    raise _literal_question_mark(dialect)
                continue
            index = seen
            seen += 1
            if index >= len(positional):
                continue
            label = f"#{index + 1}"
            if lexeme == "??":
                piece = _identifier(positional[index], label, quote_identifier, fmt)
            elif pos < end and "0" <= text[pos] <= "9":
                raise BindingError(
                    f"binding {label}: a ? placeholder directly followed by a digit is ambiguous; add a space"
                )
            else:
                piece = _value(positional[index], label, mark, params, integers)
        else:  # bind
            if named is None:
                continue
            ident = lexeme.endswith(":")
            name = lexeme[1:-1] if ident else lexeme[1:]
            if name not in named:
                raise BindingError(f'binding :{name} has no value: the bindings object has no key "{name}"')
            used.add(name)
            label = f":{name}"
            if ident:
                piece = _identifier(named[name], label, quote_identifier, fmt)
            else:
                piece = _value(named[name], label, mark, params, integers)
        out.append(text[done:start])
        out.append(piece)
        done = pos

    if positional is not None and seen != len(positional):
        raise BindingError(
            f"the SQL has {seen} placeholder{'' if seen == 1 else 's'} but {len(positional)} "
            f"binding{' was' if len(positional) == 1 else 's were'} given"
        )
    if named is not None and len(used) != len(named):
        unused = [repr(key) for key in named if key not in used]
        more = f" and {len(unused) - 10} more" if len(unused) > 10 else ""
        raise BindingError(
            f"bindings {', '.join(unused[:10])}{more} "
            f"{'is' if len(unused) == 1 else 'are'} not used by the SQL"
        )
    if not out:
        return text, params
    out.append(text[done:])
    return "".join(out), params


def _block_end(text: str, pos: int, nested: bool) -> int:
    if not nested:
        close = text.find("*/", pos)
        return len(text) if close < 0 else close + 2
    depth = 1
    for m in _BLOCK_DELIM.finditer(text, pos):
        depth += 1 if m.group() == "/*" else -1
        if not depth:
            return m.end()
    return len(text)


def _literal_question_mark(dialect: str) -> BindingError:
    return BindingError(
        f"a literal ? outside a string cannot be used with {dialect}: "
        "its driver reads every ? as a placeholder"
    )


def _value(value: Any, label: str, mark: str, params: list[Any], integers: tuple[int, int] | None) -> str:
    if value is None or isinstance(value, _SCALARS):
        if integers is not None and type(value) is int and not integers[0] <= value <= integers[1]:
            raise _integer_out_of_range(label, value)
        params.append(value)
        return mark
    if isinstance(value, (list, tuple)):
        if not value:
            return "NULL"  # `in (NULL)` matches nothing, where `in ()` would be a syntax error
        for item in value:
            if not (item is None or isinstance(item, _SCALARS)):
                raise BindingError(
                    f"binding {label} is a list containing {_kind(item)}; "
                    "only strings, numbers, booleans or null can be in a list binding"
                )
            if integers is not None and type(item) is int and not integers[0] <= item <= integers[1]:
                raise _integer_out_of_range(label, item)
        params.extend(value)
        return ", ".join([mark] * len(value))
    raise BindingError(
        f"binding {label} is {_kind(value)}; "
        "only strings, numbers, booleans, null or lists of them can be bound"
    )


def _integer_out_of_range(label: str, value: int) -> BindingError:
    digits = str(value)
    shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits.lstrip('-'))} digits)"
    return BindingError(
        f"binding {label} is the integer {shown}, beyond SQLite's 64-bit integers "
        "(-9223372036854775808 to 9223372036854775807); send it as a string if text is what you mean"
    )


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a value of type {type(value).__name__}"


def _identifier(value: Any, label: str, quote: Callable[[str], str], fmt: bool) -> str:
    names = value if isinstance(value, (list, tuple)) else [value]
    if not names or not all(isinstance(name, str) and name for name in names):
        raise BindingError(f"identifier binding {label} must be a non-empty string or a list of them")
    quoted = ", ".join(_quote_one(name, label, quote) for name in names)
    return quoted.replace("%", "%%") if fmt else quoted


def _quote_one(name: str, label: str, quote: Callable[[str], str]) -> str:
    alias = ""
    if (m := _AS.search(name)) is not None:
        name, alias = name[: m.start()].strip(), name[m.end() :].strip()
        if not alias:
            raise BindingError(f"identifier binding {label} has an empty alias after 'as'")
    parts = name.split(".")
    if not all(parts):
        raise BindingError(f"identifier binding {label} has an empty part: {name!r}")
    # `*` stays bare, as knex leaves it: quoted, it names no column (and SQLite would read "*" as the string).
    dotted = ".".join(part if part == "*" else quote(part) for part in parts)
    return f"{dotted} as {quote(alias)}" if alias else dotted
