"""A shallow SQL lexer: enough to refuse, before it reaches the database, text that would hold a backend past any
deadline, and to print a statement's shape in logs without its values.

PostgreSQL's lexer rescans a run of operator characters once for every comment opener in it (the ``xcstart`` rule
matches ``/*`` and every operator character after it, then backs up to the ``/*``), so a run of ``/*/*/*...`` takes
time quadratic in its length: half a megabyte keeps a backend lexing for minutes, and a backend that is lexing
answers neither a cancel nor ``pg_terminate_backend``. No deadline can stop it; refusing the text can. So:

* a statement longer than ``max_sql_bytes`` is refused;
* in a statement that has a block comment, a run of more than :data:`MAX_OPERATOR_RUN` operator characters is
  refused (no real statement has one: operators are a few characters long);
* a block comment that is never closed, or nested deeper than :data:`MAX_COMMENT_DEPTH`, is refused (every
  database would refuse it too, after lexing to the end of the text).

Quotes are followed so that a ``/*`` inside a string or a quoted name is not taken for a comment: ``'...'`` (with
``''``, and backslash escapes where the database takes them), ``"..."``, MySQL's backquotes, PostgreSQL's
``$tag$...$tag$``, ``--`` and ``#`` line comments.
"""

from __future__ import annotations

import contextlib
import re

__all__ = ["MAX_COMMENT_DEPTH", "MAX_OPERATOR_RUN", "problem", "shape"]

MAX_OPERATOR_RUN = 1000
MAX_COMMENT_DEPTH = 100

_OPERATOR_RUN = re.compile(r"[~!@#^&|`?+\-*/%<>=]{" + str(MAX_OPERATOR_RUN + 1) + ",}")
# What changes the lexer's state; everything between these is plain text.
_TOKEN = re.compile(r"'|\"|`|\$(?:[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$|--|#|/\*")
_DOLLAR = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_NUMBER = re.compile(r"(?<![\w$])(?:0[xX][0-9A-Fa-f]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_SPACE = re.compile(r"\s+")


def problem(sql: str, family: str, max_bytes: int) -> str | None:
    """What makes ``sql`` unfit to send to a ``family`` database, or None. Linear in the length of ``sql``."""
    if len(sql) * 4 > max_bytes and len(sql.encode("utf-8", "surrogatepass")) > max_bytes:
        return f"the SQL text is longer than the limit of {max_bytes} bytes"
    if "/*" not in sql:
        return None  # the fast path: most statements have no block comment
    if _OPERATOR_RUN.search(sql):
        return (f"the SQL text has a run of more than {MAX_OPERATOR_RUN} operator characters next to a comment, "
                "which the database would take minutes to read")
    try:
        _lex(sql, family, None)
    except _Unfit as unfit:
        return str(unfit)
    return None


def shape(sql: str, family: str = "postgresql", limit: int = 500) -> str:
    """``sql`` with its comments dropped, its strings and numbers replaced by ``?`` and its spaces collapsed, cut
    to ``limit`` characters: what a log line may show of a statement."""
    parts: list[str] = []
    with contextlib.suppress(_Unfit):  # what could be read; the rest is not shown
        _lex(sql, family, parts)
    text = _SPACE.sub(" ", _NUMBER.sub("?", "".join(parts))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Unfit(Exception):
    pass


def _lex(sql: str, family: str, out: list[str] | None) -> None:
    """Walk ``sql``; raise :class:`_Unfit` for a comment that never closes or nests too deep. With ``out``,
    collect the text outside comments, each literal as ``?``."""
    backslashes = family == "mysql"
    nested = family in ("postgresql", "mssql")
    position, end = 0, len(sql)
    while position < end:
        match = _TOKEN.search(sql, position)
        if match is None:
            if out is not None:
                out.append(sql[position:])
            return
        start, mark = match.start(), match.group()
        if out is not None:
            out.append(sql[position:start])
        if mark == "'":
            escapes = _escape_string(sql, start)
            position = _close_quote(sql, start + 1, "'", backslashes or escapes)
            if out is not None:
                if escapes:
                    out[-1] = out[-1][:-1]  # the E of E'...'
                out.append("?")
        elif mark in ('"', "`"):
            position = _close_quote(sql, start + 1, mark, backslashes and mark == '"')
            if out is not None:
                out.append(sql[start:position] if mark == "`" or family != "mysql" else "?")
        elif mark.startswith("$"):
            if family != "postgresql" or (start and (sql[start - 1].isalnum() or sql[start - 1] in "_$")):
                if out is not None:
                    out.append(mark)
                position = match.end()
                continue
            close = sql.find(mark, match.end())
            position = end if close < 0 else close + len(mark)
            if out is not None:
                out.append("?")
        elif mark == "--" or (mark == "#" and family == "mysql"):
            newline = sql.find("\n", start)
            position = end if newline < 0 else newline + 1
            if out is not None:
                out.append(" ")
        elif mark == "#":
            if out is not None:
                out.append(mark)
            position = match.end()
        else:  # /*
            position = _close_comment(sql, start, nested)
            if out is not None:
                out.append(" ")


def _escape_string(sql: str, quote: int) -> bool:
    """PostgreSQL's E'...' strings take backslash escapes."""
    return quote > 0 and sql[quote - 1] in "eE" and (quote == 1 or not (sql[quote - 2].isalnum() or
                                                                          sql[quote - 2] == "_"))


def _close_quote(sql: str, position: int, quote: str, backslashes: bool) -> int:
    """The position just past the quote that closes the literal starting at ``position`` (the end if none)."""
    end = len(sql)
    while True:
        close = sql.find(quote, position)
        if close < 0:
            return end
        if backslashes:
            slashes = 0
            back = close - 1
            while back >= position and sql[back] == "\\":
                slashes += 1
                back -= 1
            if slashes % 2:
                position = close + 1
                continue
        if close + 1 < end and sql[close + 1] == quote:  # a doubled quote stands for itself
            position = close + 2
            continue
        return close + 1


def _close_comment(sql: str, start: int, nested: bool) -> int:
    if not nested:
        close = sql.find("*/", start + 2)
        if close < 0:
            raise _Unfit("the SQL text has a /* comment that is never closed")
        return close + 2
    depth = 0
    position = start
    for mark in _COMMENT_MARK.finditer(sql, position):
        if mark.group() == "/*":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                raise _Unfit(f"the SQL text nests /* comments more than {MAX_COMMENT_DEPTH} deep")
        else:
            depth -= 1
            if depth == 0:
                return mark.end()
    raise _Unfit("the SQL text has a /* comment that is never closed")
