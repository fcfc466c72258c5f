"""Which statements the result cache may answer, and which may change what it holds.

A statement is **cacheable** only when it certainly changes nothing and depends on nothing but the data of its
database: one statement whose root is a query (SELECT, a set operation, VALUES), with no data-changing statement
anywhere in it (a ``WITH x AS (UPDATE ...)`` included), no locking clause or table hint, no ``INTO``, no variables,
no table function, no system catalog, no literal that means the current time (``'now'``), and no function outside
an allow-list of functions known to be immutable (everything else, ``now()``, ``random()``, ``nextval()``,
``current_user``, a user's own function, is refused). What the parser cannot read is not cached.

A statement that is not cacheable is a **read** when it certainly writes nothing (a SELECT that calls ``now()`` or
locks rows); every other statement (DML, DDL, an unknown function, what the parser cannot read, a CALL) may write,
and invalidates after it ran.

Analyses are memoised by text: applications repeat few statements, and a lookup costs a fraction of a microsecond
where a parse costs tens.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

__all__ = ["Verdict", "analyse"]

_DIALECTS = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite", "mssql": "tsql"}


@dataclass(frozen=True)
class Verdict:
    cacheable: bool
    reason: str  # why not, as a metric label: "" when cacheable
    reads_only: bool  # certainly changes nothing (cacheable ones too)


CACHEABLE = Verdict(True, "", True)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _verdict(reason: str, reads_only: bool = False) -> Verdict:
    return Verdict(False, reason, reads_only)


# sqlglot's typed functions that are immutable: the same arguments give the same answer, and nothing changes.
_IMMUTABLE = _words("""
    Abs Acos Asin Atan Atan2 Cbrt Ceil Cos Cot Degrees Exp Floor Ln Log Log2 Log10 Mod Pow Radians Round Sign
    Sin Sqrt Tan Trunc SafeDivide Greatest Least Coalesce Nullif If Case Cast TryCast Between In Exists And Or
    Xor ArrayContainedBy ArrayContainsAll ArrayPosition Corr JSONBContainsAllTopKeys JSONBContainsAnyTopKeys
    JSONBContainsTopKey JSONBPathExists RegexpFullMatch RegexpILike Lower Upper Length ByteLength BitLength
    Substring Left Right Concat ConcatWs Trim Replace Reverse Repeat Pad Lpad Rpad StrPosition Initcap Chr Ascii
    Unicode Hex Unhex MD5 MD5Digest SHA SHA2 ToBase64 FromBase64 Split SplitPart RegexpLike RegexpExtract
    RegexpReplace Like ILike Typeof Format Quote Translate Soundex Levenshtein Lower LowerHex Space StartsWith
    EndsWith Contains ToChar ToNumber ToDouble JSONExtract JSONExtractScalar JSONBExtract JSONBExtractScalar
    JSONBContains JSONArrayContains JSONObject JSONArray JSONFormat ParseJSON JSONKeys JSONType JSONBObjectAgg
    JSONObjectAgg JSONArrayAgg Array ArraySize ArrayContains ArrayToString ArrayConcat ArrayOverlaps ArrayFilter
    Unnest Explode Extract DateTrunc TimestampTrunc DateAdd DateSub DateDiff TimestampAdd TimestampSub
    TimestampDiff DatetimeAdd DatetimeSub DatetimeDiff DateFromParts TimeFromParts TimestampFromParts
    MakeInterval StrToDate StrToTime TimeToStr TimeStrToTime TimeStrToDate TsOrDsToDate TsOrDsToTimestamp
    TsOrDsAdd UnixToTime TimeToUnix Date Time Timestamp Datetime Year Month Day DayOfWeek DayOfMonth DayOfYear
    WeekOfYear Quarter Hour Minute Second LastDay DateToDateStr DateStrToDate DiToDate Interval ToDays RowNumber
    Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue NthValue Bracket Struct
    StructExtract Map VarMap MapFromEntries Filter Nvl2 Decode Encode Collate
""")

# Functions sqlglot does not type, by dialect: immutable in that database.
_IMMUTABLE_NAMED = {
    "postgres": _words("""
        to_char to_number to_date to_timestamp date_part age_of array_length array_upper array_lower cardinality
        jsonb_build_object json_build_object jsonb_build_array json_build_array jsonb_agg json_agg jsonb_typeof
        json_typeof jsonb_array_length json_array_length jsonb_extract_path jsonb_extract_path_text
        jsonb_strip_nulls jsonb_set jsonb_insert row_to_json to_json to_jsonb array_to_json string_agg array_agg
        btrim ltrim rtrim strpos overlay octet_length char_length character_length position format_type
        regexp_split_to_array split_part lpad rpad encode decode md5 sha256 num_nulls num_nonnulls width_bucket
        div gcd lcm factorial numeric_scale trim_scale
    """),
    "mysql": _words("""
        ifnull date_format str_to_date field find_in_set elt make_set locate instr lcase ucase mid char_length
        character_length octet_length bit_count conv oct bin format inet_aton inet_ntoa json_unquote json_length
        json_depth json_valid json_contains json_search json_merge_patch json_merge_preserve json_set
        json_insert json_replace json_remove json_quote json_arrayagg json_objectagg group_concat to_days
        from_days period_add period_diff datediff makedate maketime sec_to_time time_to_sec weekday yearweek
        dayname monthname
    """),
    "sqlite": _words("""
        ifnull iif instr printf format quote hex unhex zeroblob unicode char ltrim rtrim glob likely unlikely
        likelihood julianday unixepoch strftime datetime date time total group_concat json json_array
        json_array_length json_extract json_insert json_object json_patch json_remove json_replace json_set
        json_type json_valid json_quote json_group_array json_group_object
    """),
    "tsql": _words("""
        isnull iif len datalength charindex patindex stuff replicate str format datefromparts eomonth datename
        datepart json_value json_query isjson
    """),
}

# Functions that read the clock, the session or chance, and change nothing: a statement calling them is a read
# that cannot be cached. Any other function not known to be immutable may write.
_READS_ONLY = _words("""
    CurrentTimestamp CurrentTimestampLTZ CurrentDate CurrentTime CurrentDatetime CurrentUser CurrentSchema
    CurrentCatalog CurrentRole Localtime Localtimestamp Rand Randn Random Uuid GenRandomUUID UnixSeconds
    SysTimestamp
""")
_READS_ONLY_NAMED = _words("""
    now clock_timestamp statement_timestamp transaction_timestamp timeofday random gen_random_uuid uuid
    current_setting current_database version pg_backend_pid inet_client_addr session_user user system_user
    sysdate utc_timestamp utc_date utc_time curdate curtime unix_timestamp connection_id database schema rand
    uuid_short last_insert_id found_rows row_count getdate getutcdate sysdatetime sysutcdatetime newid
    randomblob changes total_changes last_insert_rowid sqlite_version
""")

_QUERIES = ("Select", "Union", "Intersect", "Except", "Values", "Subquery")
_WRITES = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Command", "TruncateTable", "Copy",
           "Set", "Use", "Grant", "Revoke", "Transaction", "Commit", "Rollback", "Pragma", "Analyze", "Refresh",
           "Cache", "Uncache", "LoadData")
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "mysql", "performance_schema", "sys", "pg_temp",
                             "temp", "pg_toast"})
_SQLITE_SYSTEM = ("sqlite_", "pragma_")
_TIME_WORDS = frozenset({"now", "today", "tomorrow", "yesterday", "localtime", "utc", "current_timestamp",
                         "current_date", "current_time", "allballs"})


class _Quiet(logging.Filter):
    """sqlglot warns of every statement it reads as a bare Command; those are answers here, not news."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


_QUIET = _Quiet()


def analyse(sql: str, family: str, paramstyle: str = "qmark") -> Verdict:
    """The verdict on ``sql`` (one request's statement, in the driver's ``paramstyle``) for ``family``."""
    return _analyse(sql, family, paramstyle == "format")


@functools.lru_cache(maxsize=4096)
def _analyse(sql: str, family: str, format_style: bool) -> Verdict:
    try:
        import sqlglot
        from sqlglot import exp
        from sqlglot.errors import SqlglotError
    except ImportError:  # pragma: no cover - checked when an option turns the cache on
        return _verdict("unparsed")
    dialect = _DIALECTS.get(family)
    if dialect is None:
        return _verdict("unparsed")
    if format_style:  # the DB-API's %s, which sqlglot reads as a modulo: back to the ? it stands for
        sql = sql.replace("%%", "\0").replace("%s", "?").replace("\0", "%")
    logger = logging.getLogger("sqlglot")
    _QUIET.local.on = True
    logger.addFilter(_QUIET)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (SqlglotError, ValueError, RecursionError):
        return _verdict("unparsed")
    finally:
        _QUIET.local.on = False
        logger.removeFilter(_QUIET)
    if len(statements) != 1:
        return _verdict("multiple" if statements else "unparsed")
    root = statements[0]
    if type(root).__name__ not in _QUERIES:
        return _verdict("write" if not isinstance(root, exp.Show) else "not-a-query", isinstance(root, exp.Show))
    named = _IMMUTABLE_NAMED.get(dialect, frozenset())
    reads_only_reason = ""
    for node in root.walk():
        kind = type(node).__name__
        if kind in _WRITES:
            return _verdict("write")
        if isinstance(node, exp.Lock):
            reads_only_reason = reads_only_reason or "locking"
        elif isinstance(node, exp.Select) and node.args.get("into") is not None:
            return _verdict("into")
        elif isinstance(node, exp.SessionParameter) or (
                isinstance(node, exp.Parameter) and dialect != "postgres"):
            reads_only_reason = reads_only_reason or "variable"
        elif isinstance(node, exp.Table):
            problem = _table_problem(node, dialect)
            if problem == "table-function":
                return _verdict(problem)  # a function in FROM: whatever it is, it may write
            reads_only_reason = reads_only_reason or problem
        elif isinstance(node, exp.Literal) and node.is_string and node.this.strip().lower() in _TIME_WORDS:
            reads_only_reason = reads_only_reason or "volatile"
        elif isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            if name in named:
                continue
            if name in _READS_ONLY_NAMED:
                reads_only_reason = reads_only_reason or "volatile"
                continue
            return _verdict("function")  # unknown: it may do anything, writes included
        elif isinstance(node, exp.Func):
            if kind in _IMMUTABLE or isinstance(node, exp.AggFunc):
                continue
            if kind in _READS_ONLY:
                reads_only_reason = reads_only_reason or "volatile"
                continue
            return _verdict("function")
    if reads_only_reason:
        return _verdict(reads_only_reason, True)
    return CACHEABLE


def _table_problem(table: object, dialect: str) -> str:
    from sqlglot import exp

    assert isinstance(table, exp.Table)
    name = table.name.lower()
    if not name:
        return "table-function"
    if table.args.get("hints"):
        return "locking"
    schema = (table.db or "").lower()
    if schema in _SYSTEM_SCHEMAS or (table.catalog or "").lower() in _SYSTEM_SCHEMAS:
        return "system-table"
    if dialect == "postgres" and name.startswith("pg_"):
        return "system-table"
    if dialect == "sqlite" and name.startswith(_SQLITE_SYSTEM):
        return "system-table"
    if dialect == "tsql" and (name.startswith("#") or schema == "sys"):
        return "system-table"
    return ""
