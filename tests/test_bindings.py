"""Unit and property tests for :mod:`sqlhttp_middleware.bindings` (no database needed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlhttp_middleware.bindings import Dialect, ParamStyle, compile_sql
from sqlhttp_middleware.errors import BindingError

DIALECTS: list[Dialect] = ["postgresql", "mysql", "sqlite", "mssql"]
STYLES: list[ParamStyle] = ["qmark", "format"]
# The paramstyle each dialect's driver actually uses (psycopg 3, PyMySQL, sqlite3, pyodbc).
NATIVE: dict[Dialect, ParamStyle] = {
    "postgresql": "format",
    "mysql": "format",
    "sqlite": "qmark",
    "mssql": "qmark",
}
MARK: dict[ParamStyle, str] = {"qmark": "?", "format": "%s"}


def dq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def bt(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


QUOTE: dict[Dialect, Callable[[str], str]] = {"postgresql": dq, "mysql": bt, "sqlite": dq, "mssql": dq}


def run(
    sql: str,
    bindings: Any,
    dialect: Dialect = "postgresql",
    paramstyle: ParamStyle | None = None,
) -> tuple[str, list[Any]]:
    return compile_sql(
        sql,
        bindings,
        dialect=dialect,
        paramstyle=paramstyle or NATIVE[dialect],
        quote_identifier=QUOTE[dialect],
    )


def error(
    sql: str, bindings: Any, dialect: Dialect = "postgresql", paramstyle: ParamStyle | None = None
) -> str:
    with pytest.raises(BindingError) as info:
        run(sql, bindings, dialect, paramstyle)
    assert info.value.status == 400
    return info.value.message


every_dialect = pytest.mark.parametrize("dialect", DIALECTS)
every_style = pytest.mark.parametrize("paramstyle", STYLES)


# --- positional bindings --------------------------------------------------------------------------


@every_dialect
@every_style
def test_positional_values_become_placeholders(dialect: Dialect, paramstyle: ParamStyle) -> None:
    sql, params = run("select * from t where a = ? and b = ? and c=?", [1, "x", None], dialect, paramstyle)
    m = MARK[paramstyle]
    assert sql == f"select * from t where a = {m} and b = {m} and c={m}"
    assert params == [1, "x", None]


@every_dialect
def test_scalar_types_pass_through_unchanged(dialect: Dialect) -> None:
    values = ["s", 0, -5, 1.5, True, False, None, ""]
    _, params = run(", ".join("?" * len(values)), values, dialect)
    assert params == values
    assert all(type(a) is type(b) for a, b in zip(params, values, strict=True))


@every_dialect
def test_positional_identifiers(dialect: Dialect) -> None:
    q = QUOTE[dialect]
    sql, params = run("select ?? from ?? where ?? = ?", ["id", "public.users", "u.name", "bob"], dialect)
    mark = MARK[NATIVE[dialect]]
    assert sql == f"select {q('id')} from {q('public')}.{q('users')} where {q('u')}.{q('name')} = {mark}"
    assert params == ["bob"]


@pytest.mark.parametrize("spelling", [" as ", " AS ", " As ", " aS "])
def test_identifier_alias(spelling: str) -> None:
    sql, _ = run("select ?? from ??", [f"u.name{spelling}n", f"public.users{spelling}u"])
    assert sql == 'select "u"."name" as "n" from "public"."users" as "u"'


def test_identifier_list_is_columnized() -> None:
    sql, params = run("select ?? from t", [["a", "b.c", "d as e"]])
    assert sql == 'select "a", "b"."c", "d" as "e" from t'
    assert params == []


def test_identifier_quoting_is_delegated_and_escaped() -> None:
    assert run("select ??", ['we"ird'])[0] == 'select "we""ird"'
    assert run("select ??", ["we`ird"], "mysql")[0] == "select `we``ird`"


def test_triple_question_mark_is_identifier_then_value() -> None:
    assert run("select ???", ["a", 1]) == ('select "a"%s', [1])


# --- named bindings -------------------------------------------------------------------------------


@every_dialect
@every_style
def test_named_values_repeat_per_occurrence(dialect: Dialect, paramstyle: ParamStyle) -> None:
    sql, params = run("select :a, :b, :a, :_x1", {"a": 1, "b": "two", "_x1": None}, dialect, paramstyle)
    m = MARK[paramstyle]
    assert sql == f"select {m}, {m}, {m}, {m}"
    assert params == [1, "two", 1, None]


@every_dialect
def test_named_identifiers(dialect: Dialect) -> None:
    q = QUOTE[dialect]
    sql, params = run(
        "select :col: from :tbl: where :col: = :v", {"col": "name", "tbl": "s.t", "v": 3}, dialect
    )
    assert sql == f"select {q('name')} from {q('s')}.{q('t')} where {q('name')} = {MARK[NATIVE[dialect]]}"
    assert params == [3]


def test_named_identifier_list() -> None:
    assert run("select :cols: from t", {"cols": ["a", "b"]}) == ('select "a", "b" from t', [])


@pytest.mark.parametrize(
    ("sql", "bindings", "expected"),
    [
        ("select :v::int", {"v": "1"}, "select %s::int"),
        ("select :v::int, x::text", {"v": "1"}, "select %s::int, x::text"),
        ("select :v ::int", {"v": "1"}, "select %s ::int"),
        ("select x::int, :int", {"int": 5}, "select x::int, %s"),
        ("select :v::timestamp::date", {"v": "1"}, "select %s::timestamp::date"),
        ("select :c:::int", {"c": "x"}, 'select "x"::int'),  # as knex reads it: the identifier, cast
        ("select arr[1:n]", {"n": 2}, "select arr[1%s]"),
        ("select :1abc, :v", {"v": 1}, "select :1abc, %s"),
        ("select :v:", {"v": "col"}, 'select "col"'),
        ("select :v:x", {"v": "col"}, 'select "col"x'),
    ],
)
def test_named_edge_cases(sql: str, bindings: dict[str, Any], expected: str) -> None:
    assert run(sql, bindings)[0] == expected


def test_cast_is_never_a_binding() -> None:
    msg = error("select x::int", {"int": 1})
    assert "'int'" in msg and "not used" in msg


def test_named_text_is_left_alone_with_a_list() -> None:
    assert run("select :a, ?, :b:", [1]) == ("select :a, %s, :b:", [1])


def test_question_mark_is_text_with_a_dict_in_format_style() -> None:
    assert run("select data ? 'k', :v", {"v": 1}) == ("select data ? 'k', %s", [1])
    assert run("select data ?? :v", {"v": 1}, "mysql") == ("select data ?? %s", [1])


# --- no bindings ----------------------------------------------------------------------------------


@every_dialect
@pytest.mark.parametrize("empty", [None, [], {}])
def test_no_bindings_leaves_sql_alone(dialect: Dialect, empty: Any) -> None:
    sql = "select :a, :b:, x::int from t where y = 'it''s ?'"
    for style in STYLES:
        assert run(sql, empty, dialect, style) == (sql, [])


@pytest.mark.parametrize("empty", [None, [], {}])
def test_no_bindings_format_style(empty: Any) -> None:
    assert run("select ?, ??, '?'", empty, "postgresql") == ("select ?, ??, '?'", [])
    assert run(r"select data \? 'k', '\?' -- 50%", empty) == (r"select data ? 'k', '\?' -- 50%%", [])


def test_no_bindings_fast_path_returns_the_same_text() -> None:
    sql = "select 1 from t where a = 'x'"
    assert run(sql, None, "sqlite")[0] is sql
    assert run(sql, None, "postgresql")[0] is sql


# --- \? and qmark literal question marks ----------------------------------------------------------


@pytest.mark.parametrize("op", ["?", "?|", "?&"])
def test_escaped_question_mark_for_jsonb(op: str) -> None:
    escaped = "\\" + op
    sql, params = run(f"select data {escaped} ? from t", ["key"])
    assert sql == f"select data {op} %s from t"
    assert params == ["key"]
    assert run(f"select data {escaped} :k", {"k": "key"}) == (f"select data {op} %s", ["key"])


def test_escaped_question_mark_followed_by_placeholder() -> None:
    assert run(r"select a \?? b", [1]) == ("select a ?%s b", [1])


@every_dialect
def test_backslash_inside_strings_and_comments_is_kept(dialect: Dialect) -> None:
    sql = r"select ?, 'a\?b' -- \?"
    assert run(sql, [1], dialect)[0] == sql.replace("?,", MARK[NATIVE[dialect]] + ",", 1)


@pytest.mark.parametrize("dialect", ["sqlite", "mssql"])
@pytest.mark.parametrize(
    ("sql", "bindings"),
    [
        (r"select a \? b, ?", [1]),
        (r"select a \? b", None),
        ("select a ? b, :v", {"v": 1}),
        ("select a ?? b, :v", {"v": 1}),
        ("select ?", None),
        ("select ?", []),
        ("select ?", {}),
    ],
)
def test_qmark_cannot_express_a_literal_question_mark(dialect: Dialect, sql: str, bindings: Any) -> None:
    msg = error(sql, bindings, dialect)
    assert "literal ?" in msg and dialect in msg


def test_qmark_literal_error_for_any_dialect_using_qmark() -> None:
    assert "postgresql" in error(r"select \?", None, "postgresql", "qmark")


@pytest.mark.parametrize("dialect", ["sqlite", "mssql"])
def test_qmark_question_marks_inside_strings_are_fine(dialect: Dialect) -> None:
    sql = "select '?', \"a?\" /* ? */ -- ?\n, :v"
    assert run(sql, {"v": 1}, dialect) == (sql.replace(":v", "?"), [1])
    assert run(sql.replace(", :v", ""), None, dialect) == (sql.replace(", :v", ""), [])


@every_dialect
def test_placeholder_glued_to_a_digit_is_rejected(dialect: Dialect) -> None:
    assert "#2" in error("select ?, ?1", [1, 2], dialect)
    assert run("select ? 1", [1], dialect)[1] == [1]


# --- quoting and comments per dialect -------------------------------------------------------------

COMMON_VERBATIM = [
    "'a ? :a ?? \\?'",
    "'it''s ? :a'",
    "'' ",
    '"col ? :a"',
    '"a""? :a"',
    "-- ? :a ??\n",
    "/* ? :a \n ?? */",
    "/**/",
]
VERBATIM: dict[Dialect, list[str]] = {
    "postgresql": [
        *COMMON_VERBATIM,
        r"E'it\'s ? :a'",
        r"e'\\' ",
        "$$ ? :a ' $$",
        "$tag$ ? $$ :a $tag$",
        "$_t1$ ? $_t1$",
        "/* a /* ? */ :a ? */",
        "U&'? :a'",
    ],
    "mysql": [
        *COMMON_VERBATIM,
        r"'it\'s ? :a'",
        r'"it\"s ? :a"',
        '"it""s ? :a"',
        "`a ? :a`",
        "`a``? :a`",
        "# ? :a\n",
        "--\t? :a\n",
        "/*! ? :a */",
    ],
    "sqlite": [*COMMON_VERBATIM, "`a ? :a`", "`a``?`", "[a ? :a]"],
    "mssql": [*COMMON_VERBATIM, "[a ? :a]", "[a]]? :a]", "/* a /* ? */ :a ? */", "N'? :a'"],
}


@pytest.mark.parametrize(
    ("dialect", "fragment"), [(d, f) for d in DIALECTS for f in VERBATIM[d]], ids=lambda v: repr(v)
)
@every_style
def test_quoted_text_and_comments_are_copied_verbatim(
    dialect: Dialect, fragment: str, paramstyle: ParamStyle
) -> None:
    m = MARK[paramstyle]
    assert run(f"select ?, {fragment} ?", [1, 2], dialect, paramstyle) == (
        f"select {m}, {fragment} {m}",
        [1, 2],
    )
    assert run(f"select :x, {fragment} :y", {"x": 1, "y": 2}, dialect, paramstyle) == (
        f"select {m}, {fragment} {m}",
        [1, 2],
    )


@pytest.mark.parametrize(
    ("dialect", "sql", "expected"),
    [
        # PostgreSQL standard strings do not treat a backslash as an escape.
        ("postgresql", r"select '\', ?", r"select '\', %s"),
        # An E glued to an identifier does not start an escape string.
        ("postgresql", r"select xe'\', ?", r"select xe'\', %s"),
        ("postgresql", r"select a$$ ?", "select a$$ %s"),
        ("postgresql", "select $1, ?", "select $1, %s"),
        ("sqlite", r"select '\', ?", r"select '\', ?"),
        ("mssql", r"select '\', ?", r"select '\', ?"),
        # MySQL's -- needs a following space; --? is two minus signs.
        ("mysql", "select 1--?", "select 1--%s"),
        # Block comments nest only in postgresql and mssql.
        ("mysql", "/* /* */ ?", "/* /* */ %s"),
        ("sqlite", "/* /* */ ?", "/* /* */ ?"),
        ("postgresql", "/* /* */ */ ?", "/* /* */ */ %s"),
        ("mssql", "/* /* */ */ ?", "/* /* */ */ ?"),
        # `#` is only a comment in MySQL; `[` only quotes in mssql and sqlite.
        ("postgresql", "select '{}'::jsonb #> ?", "select '{}'::jsonb #> %s"),
        ("postgresql", "select arr[?]", "select arr[%s]"),
        ("mysql", "select `a` [?]", "select `a` [%s]"),
        # sqlite brackets have no escape: `[a]` ends at the first `]`.
        ("sqlite", "select [a]]?]", "select [a]]?]"),
    ],
)
def test_dialect_specific_lexing(dialect: Dialect, sql: str, expected: str) -> None:
    # For qmark dialects input and output look alike; accepting the one binding proves ? was a placeholder.
    assert run(sql, [1], dialect) == (expected, [1])


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("postgresql", "select 'abc ?"),
        ("postgresql", 'select "abc ?'),
        ("postgresql", "select E'abc \\' ?"),
        ("postgresql", "select $$ ?"),
        ("postgresql", "select $t$ ? $t"),
        ("postgresql", "select /* ? /* ? */ ?"),
        ("mysql", "select `a ?"),
        ("mysql", "select 'a\\"),
        ("mysql", "select /* ?"),
        ("mysql", "select # ?"),
        ("mssql", "select [a ?"),
        ("mssql", "select [a]] ?"),
        ("sqlite", "select -- ?"),
    ],
)
def test_unterminated_quotes_and_comments_run_to_the_end(dialect: Dialect, sql: str) -> None:
    for style in STYLES:
        assert run(sql, None, dialect, style) == (sql, [])
    msg = error(sql, [1], dialect)
    assert "0 placeholders" in msg and "1 binding was given" in msg


# --- % doubling -----------------------------------------------------------------------------------


@every_dialect
def test_format_doubles_every_percent(dialect: Dialect) -> None:
    sql = "select '50%', \"a%\", ? % 2 -- 100%\n /* %s */"
    out, _ = run(sql, [7], dialect, "format")
    assert out == "select '50%%', \"a%%\", %s %% 2 -- 100%%\n /* %%s */"
    assert out % ("7",) == sql.replace("?", "7")


@every_dialect
def test_qmark_leaves_percent_alone(dialect: Dialect) -> None:
    sql = "select '50%', ? % 2"
    assert run(sql, [7], dialect, "qmark") == (sql, [7])


def test_format_doubles_percent_in_identifiers() -> None:
    assert run("select ??, :c:", ["a%b"], "postgresql")[0] == 'select "a%%b", :c:'
    assert run("select :c:", {"c": "x%"}, "mysql")[0] == "select `x%%`"
    assert run("select ??", ["a%b"], "sqlite")[0] == 'select "a%b"'


# --- list values ----------------------------------------------------------------------------------


@every_dialect
def test_list_value_expands(dialect: Dialect) -> None:
    m = MARK[NATIVE[dialect]]
    assert run("where id in (?)", [[1, 2, 3]], dialect) == (f"where id in ({m}, {m}, {m})", [1, 2, 3])
    assert run("where id in (:ids) and x = :x", {"ids": ["a", None], "x": 0}, dialect) == (
        f"where id in ({m}, {m}) and x = {m}",
        ["a", None, 0],
    )
    assert run("where a in (?) and b = ?", [[1, 2], 3], dialect)[1] == [1, 2, 3]


@every_dialect
def test_empty_list_expands_to_null(dialect: Dialect) -> None:
    assert run("where id in (?) and b = ?", [[], 1], dialect) == (
        f"where id in (NULL) and b = {MARK[NATIVE[dialect]]}",
        [1],
    )
    assert run("where id in (:ids)", {"ids": []}, dialect) == ("where id in (NULL)", [])


@pytest.mark.parametrize(
    ("sql", "bindings", "needles"),
    [
        ("select ?", [[1, [2]]], ["#1", "a list containing a list"]),
        ("select ?, ?", [1, [{"a": 1}]], ["#2", "an object"]),
        ("select :meta", {"meta": {"a": 1}}, [":meta", "is an object", "lists of them"]),
        ("select ?", [{"a": 1}], ["#1", "is an object"]),
        ("select :ids", {"ids": [1, {"x": 2}]}, [":ids", "an object"]),
        ("select ?", [b"raw"], ["#1", "bytes"]),
        ("select ?", [[object()]], ["#1", "object"]),
    ],
)
def test_unbindable_values(sql: str, bindings: Any, needles: list[str]) -> None:
    msg = error(sql, bindings)
    for needle in needles:
        assert needle in msg


@pytest.mark.parametrize(
    ("sql", "bindings", "label"),
    [
        ("select ??", [1], "#1"),
        ("select ??", [""], "#1"),
        ("select ??", [None], "#1"),
        ("select ??", [[]], "#1"),
        ("select ??", [{"a": 1}], "#1"),
        ("select ?, ??", [1, ["a", 2]], "#2"),
        ("select ??", ["a..b"], "#1"),
        ("select ??", [".a"], "#1"),
        ("select ??", ["a."], "#1"),
        ("select ??", ["a as "], "#1"),
        ("select ??", [" as b"], "#1"),
        ("select :t:", {"t": 5}, ":t"),
        ("select :t:", {"t": ""}, ":t"),
    ],
)
def test_bad_identifiers(sql: str, bindings: Any, label: str) -> None:
    assert label in error(sql, bindings)


# --- counts and names -----------------------------------------------------------------------------


@every_dialect
@pytest.mark.parametrize(
    ("sql", "bindings", "needles"),
    [
        ("select ?, ?", [1], ["2 placeholders", "1 binding was given"]),
        ("select ?", [1, 2], ["1 placeholder ", "2 bindings were given"]),
        ("select 1", [1], ["0 placeholders", "1 binding"]),
        ("select ??, ?, ?", ["a"], ["3 placeholders", "1 binding"]),
        ("select '?'", [1], ["0 placeholders", "1 binding"]),
        ("select ?, ?, ?", [1, 2, 3, 4, 5], ["3 placeholders", "5 bindings"]),
    ],
)
def test_count_mismatch(dialect: Dialect, sql: str, bindings: list[Any], needles: list[str]) -> None:
    msg = error(sql, bindings, dialect)
    for needle in needles:
        assert needle in msg


@every_dialect
def test_missing_named_binding(dialect: Dialect) -> None:
    msg = error("select :a, :missing_one", {"a": 1}, dialect)
    assert ":missing_one" in msg and '"missing_one"' in msg
    assert "typo" in error("select :typo:", {"a": 1}, dialect)


@every_dialect
def test_unused_named_bindings(dialect: Dialect) -> None:
    msg = error("select :a", {"a": 1, "b": 2, "typo": 3}, dialect)
    assert "'b'" in msg and "'typo'" in msg and "'a'" not in msg and "not used" in msg
    assert "'a'" in error("select ':a'", {"a": 1}, dialect)
    assert "'not-a-name'" in error("select :x", {"x": 1, "not-a-name": 2}, dialect)


def test_many_unused_keys_are_summarised() -> None:
    msg = error("select 1", {f"k{i}": i for i in range(25)})
    assert "'k0'" in msg and "and 15 more" in msg and "'k24'" not in msg


@pytest.mark.parametrize("bindings", ["abc", 5, 1.5, True])
def test_bindings_must_be_list_dict_or_null(bindings: Any) -> None:
    assert "bindings must be" in error("select ?", bindings)


def test_sql_must_be_a_string() -> None:
    assert "sql" in error(b"select 1", None)  # type: ignore[arg-type]


def test_tuples_are_accepted_like_lists() -> None:
    assert run("select ? in (?)", (1, (2, 3))) == ("select %s in (%s, %s)", [1, 2, 3])


def test_unknown_dialect_or_paramstyle_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="dialect"):
        compile_sql("select 1", None, dialect="oracle", paramstyle="qmark", quote_identifier=dq)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paramstyle"):
        compile_sql("select 1", None, dialect="sqlite", paramstyle="named", quote_identifier=dq)  # type: ignore[arg-type]


@every_dialect
@every_style
@pytest.mark.parametrize(
    "sql",
    [
        "",
        "?",
        "??",
        "\\",
        "\\\\?",
        ":",
        "::",
        "select :",
        "select :a:",
        "$",
        "$$",
        "$a",
        "E",
        "e'",
        "'",
        '"',
        "`",
        "[",
        "]",
        "-",
        "--",
        "/",
        "/*",
        "*/",
        "/*/",
        "#",
        "%",
        "%%s",
        "\x00?",
        "é ?",
        "\U0001f600?",
    ],
)
def test_odd_inputs_do_not_crash(dialect: Dialect, paramstyle: ParamStyle, sql: str) -> None:
    for bindings in (None, [], [1], ["a", "b"], {"a": 1}):
        try:
            out, params = run(sql, bindings, dialect, paramstyle)
        except BindingError:
            continue
        assert isinstance(out, str) and isinstance(params, list)


# --- properties -----------------------------------------------------------------------------------

fast = settings(max_examples=200, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,3}", fullmatch=True)
any_bindings = (
    st.none()
    | st.lists(json_values, max_size=5)
    | st.dictionaries(names | st.text(max_size=4), json_values, max_size=4)
    | json_scalars
)
sqlish_text = st.text() | st.text(alphabet="?:\\'\"`[]-/*#$%Ee \n\tab1_.;()", max_size=40)


@fast
@given(
    sql=sqlish_text,
    bindings=any_bindings,
    dialect=st.sampled_from(DIALECTS),
    paramstyle=st.sampled_from(STYLES),
)
def test_property_only_binding_errors(
    sql: str, bindings: Any, dialect: Dialect, paramstyle: ParamStyle
) -> None:
    try:
        out, params = run(sql, bindings, dialect, paramstyle)
    except BindingError:
        return
    assert isinstance(out, str) and isinstance(params, list)
    if paramstyle == "format":
        out % tuple(repr(p) for p in params)


SAFE_FRAGMENTS = [
    "select",
    "a",
    "b_1",
    "t.c",
    "=",
    ",",
    "(",
    ")",
    "+",
    "<>",
    "1",
    "2.5",
    "'lit'",
    "'it''s'",
    '"Col"',
    "-- note\n",
    "/* note */",
    "x::int",
    "and",
    "or",
    "not",
    "null",
    "'%'",
    "a % 3",
    "like '%x%'",
]
values = st.uuids().map(lambda u: "v_" + u.hex[:16])


@st.composite
def sql_with_values(draw: st.DrawFn) -> tuple[str, list[Any]]:
    parts: list[str] = []
    bound: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            if draw(st.integers(0, 4)) == 0:
                value: Any = draw(st.lists(values, max_size=3))
            else:
                value = draw(values)
            parts.append("?")
            bound.append(value)
        else:
            parts.append(draw(st.sampled_from(SAFE_FRAGMENTS)))
    return " ".join(parts), bound


def count_placeholders(sql: str, paramstyle: ParamStyle) -> int:
    if paramstyle == "qmark":
        return sql.count("?")
    return sum(1 for m in re.finditer(r"%%|%s", sql) if m.group() == "%s")


@fast
@given(case=sql_with_values(), dialect=st.sampled_from(DIALECTS), paramstyle=st.sampled_from(STYLES))
def test_property_values_never_reach_the_sql(
    case: tuple[str, list[Any]], dialect: Dialect, paramstyle: ParamStyle
) -> None:
    sql, bound = case
    out, params = run(sql, bound, dialect, paramstyle)
    flat = [v for b in bound for v in (b if isinstance(b, list) else [b])]
    assert params == flat
    for value in flat:
        assert value not in out
    assert count_placeholders(out, paramstyle) == len(params)


@fast
@given(case=sql_with_values(), dialect=st.sampled_from(DIALECTS))
def test_property_named_values_never_reach_the_sql(case: tuple[str, list[Any]], dialect: Dialect) -> None:
    sql, bound = case
    pieces = sql.split("?")
    named_sql = "".join(p + (f":n{i}" if i < len(bound) else "") for i, p in enumerate(pieces))
    out, params = run(named_sql, {f"n{i}": v for i, v in enumerate(bound)}, dialect)
    for value in params:
        assert value not in out
    assert count_placeholders(out, NATIVE[dialect]) == len(params)


@fast
@given(case=sql_with_values(), dialect=st.sampled_from(DIALECTS))
def test_property_format_substitution_never_raises(case: tuple[str, list[Any]], dialect: Dialect) -> None:
    sql, bound = case
    out, params = run(sql, bound, dialect, "format")
    substituted = out % tuple(repr(p) for p in params)
    for value in params:
        assert repr(value) in substituted


@fast
@given(sql=st.text(), dialect=st.sampled_from(DIALECTS))
def test_property_no_bindings_round_trips(sql: str, dialect: Dialect) -> None:
    out, params = run(sql, None, dialect, "format")
    assert params == []
    assert out % () == sql.replace("\\?", "?") or "\\?" in sql
    if "?" not in sql:
        assert run(sql, None, dialect, "qmark") == (sql, [])


# --- as knex.raw does it (tests/test_knex_compat.py compares with the real knex) -------------------------------


@every_dialect
def test_a_star_identifier_stays_bare(dialect: Dialect) -> None:
    q = QUOTE[dialect]
    assert run("select ?? from t", ["*"], dialect)[0] == "select * from t"
    assert run("select ?? from t", [["t.*", "a"]], dialect)[0] == f"select {q('t')}.*, {q('a')} from t"
    assert run("select :c: from t", {"c": "s.t.*"}, dialect)[0] == f"select {q('s')}.{q('t')}.* from t"
    assert run("select ?? from t", ["**"], dialect)[0] == f"select {q('**')} from t"


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "mssql"])
def test_an_escaped_name_is_text_with_named_bindings(dialect: Dialect) -> None:
    m = MARK[NATIVE[dialect]]
    assert run(r"select \:a, :b", {"b": 1}, dialect) == (f"select :a, {m}", [1])
    assert run(r"select \:a, ?", [1], dialect) == (f"select \\:a, {m}", [1])  # knex leaves it with a list
    assert run(r"select '\:a', :b", {"b": 1}, dialect)[0] == f"select '\\:a', {m}"  # literals are untouched


def test_sqlite_refuses_an_escaped_name_its_driver_would_bind() -> None:
    assert "outside a string cannot be used with sqlite" in error(r"select \:a, :b", {"b": 1}, "sqlite")
    assert run(r"select '\:a', :b", {"b": 1}, "sqlite")[0] == r"select '\:a', ?"
