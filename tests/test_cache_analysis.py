"""The result cache's rules, per dialect: a corpus of statements that must be cached, that must not be (and why),
and of those that must invalidate, including writes hidden in CTEs and functions with side effects."""

from __future__ import annotations

import pytest

from sqlhttp_middleware.cache.analysis import analyse

# (family, sql): cacheable reads.
CACHEABLE = [
    ("postgresql", "SELECT * FROM t WHERE a = $1"),
    ("postgresql", "SELECT count(*), lower(b) FROM t JOIN u ON t.id = u.id WHERE t.x > $1 GROUP BY 2 ORDER BY 1 "
                   "LIMIT 10"),
    ("postgresql", "WITH recent AS (SELECT * FROM orders WHERE at > $1) SELECT id FROM recent"),
    ("postgresql", "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT n FROM c"),
    ("postgresql", "SELECT a FROM t UNION SELECT b FROM u EXCEPT SELECT c FROM v"),
    ("postgresql", "SELECT x->>'a', coalesce(y, 0)::text, CASE WHEN z THEN 1 ELSE 2 END FROM t"),
    ("postgresql", "SELECT row_number() OVER (ORDER BY a), sum(a) OVER () FROM t"),
    ("postgresql", "SELECT * FROM s.t WHERE a IN (SELECT b FROM u) AND EXISTS (SELECT 1 FROM v)"),
    ("postgresql", "SELECT to_char(d, 'YYYY'), jsonb_build_object('a', a), string_agg(b, ',') FROM t GROUP BY d, a"),
    ("postgresql", "VALUES (1, 'a'), (2, 'b')"),
    ("mysql", "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%'"),
    ("mysql", "SELECT ifnull(a, 1), date_format(d, '%%Y'), group_concat(b) FROM t GROUP BY a, d"),
    ("mysql", "SELECT `a`, COUNT(*) FROM `t` GROUP BY `a` HAVING COUNT(*) > 1"),
    ("sqlite", "SELECT * FROM t WHERE a = ? AND b = :b"),
    ("sqlite", "SELECT json_extract(a, '$.x'), ifnull(b, 0), typeof(c), printf('%d', d) FROM t"),
    ("sqlite", "SELECT date('2024-01-02', '+1 day'), julianday('2020-01-01') FROM t"),
    ("mssql", "SELECT TOP 5 a FROM t WHERE b = %s ORDER BY a"),
]

# (family, sql, reason): reads that change nothing but must not be cached.
READS_NOT_CACHED = [
    ("postgresql", "SELECT now()", "volatile"),
    ("postgresql", "SELECT current_timestamp, current_user", "volatile"),
    ("postgresql", "SELECT random()", "volatile"),
    ("postgresql", "SELECT gen_random_uuid()", "volatile"),
    ("postgresql", "SELECT 'now'::timestamp", "volatile"),
    ("postgresql", "SELECT * FROM t WHERE at > 'today'", "volatile"),
    ("postgresql", "SELECT * FROM t FOR UPDATE", "locking"),
    ("postgresql", "SELECT * FROM t FOR SHARE", "locking"),
    ("postgresql", "SELECT * FROM pg_stat_activity", "system-table"),
    ("postgresql", "SELECT * FROM information_schema.tables", "system-table"),
    ("postgresql", "SELECT * FROM pg_catalog.pg_class", "system-table"),
    ("mysql", "SELECT NOW()", "volatile"),
    ("mysql", "SELECT RAND()", "volatile"),
    ("mysql", "SELECT UUID()", "volatile"),
    ("mysql", "SELECT @x", "variable"),
    ("mysql", "SELECT @@version", "variable"),
    ("mysql", "SELECT * FROM t LOCK IN SHARE MODE", "locking"),
    ("mysql", "SELECT * FROM t FOR UPDATE", "locking"),
    ("mysql", "SELECT * FROM mysql.user", "system-table"),
    ("mysql", "SELECT * FROM performance_schema.threads", "system-table"),
    ("sqlite", "SELECT date('now')", "volatile"),
    ("sqlite", "SELECT datetime('now', 'localtime')", "volatile"),
    ("sqlite", "SELECT random()", "volatile"),
    ("sqlite", "SELECT randomblob(4)", "volatile"),
    ("sqlite", "SELECT changes()", "volatile"),
    ("sqlite", "SELECT last_insert_rowid()", "volatile"),
    ("sqlite", "SELECT * FROM sqlite_master", "system-table"),
    ("mssql", "SELECT GETDATE()", "volatile"),
    ("mssql", "SELECT NEWID()", "volatile"),
    ("mssql", "SELECT * FROM t WITH (UPDLOCK)", "locking"),
    ("mssql", "SELECT * FROM sys.objects", "system-table"),
]

# (family, sql, reason): statements that may write: never cached, and they invalidate.
WRITES = [
    ("postgresql", "INSERT INTO t VALUES (1)", "write"),
    ("postgresql", "UPDATE t SET a = 1", "write"),
    ("postgresql", "DELETE FROM t", "write"),
    ("postgresql", "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", "write"),
    ("postgresql", "WITH x AS (DELETE FROM t RETURNING id) SELECT count(*) FROM x", "write"),
    ("postgresql", "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", "write"),
    ("postgresql", "SELECT nextval('s')", "function"),
    ("postgresql", "SELECT setval('s', 5)", "function"),
    ("postgresql", "SELECT set_config('a.b', 'c', false)", "function"),
    ("postgresql", "SELECT pg_advisory_lock(1)", "function"),
    ("postgresql", "SELECT my_function(1)", "function"),
    ("postgresql", "SELECT * FROM my_function(1)", "table-function"),
    ("postgresql", "SELECT * FROM generate_series(1, 3)", "table-function"),
    ("postgresql", "SELECT * INTO copy FROM t", "into"),
    ("postgresql", "CREATE TABLE x (a int)", "write"),
    ("postgresql", "DROP TABLE t", "write"),
    ("postgresql", "TRUNCATE t", "write"),
    ("postgresql", "CALL refresh_everything()", "write"),
    ("postgresql", "REFRESH MATERIALIZED VIEW v", "write"),
    ("postgresql", "SELECT 1; DELETE FROM t", "multiple"),
    ("postgresql", "SELEC 1", "unparsed"),
    ("mysql", "INSERT INTO t VALUES (%s)", "write"),
    ("mysql", "REPLACE INTO t VALUES (1)", "write"),
    ("mysql", "SELECT SLEEP(1)", "function"),
    ("mysql", "SELECT GET_LOCK('a', 1)", "function"),
    ("mysql", "SELECT a INTO @x FROM t", "into"),
    ("mysql", "CALL p()", "write"),
    ("sqlite", "INSERT INTO t VALUES (?)", "write"),
    ("sqlite", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "write"),
    ("sqlite", "PRAGMA journal_mode = WAL", "write"),
    ("sqlite", "SELECT * FROM pragma_table_info('t')", "table-function"),
    ("sqlite", "SELECT my_udf(a) FROM t", "function"),
    ("mssql", "SELECT * INTO #copy FROM t", "into"),
    ("mssql", "EXEC sp_who", "write"),
]


@pytest.mark.parametrize(("family", "sql"), CACHEABLE)
def test_cacheable_reads(family: str, sql: str) -> None:
    verdict = analyse(sql, family, "format" if "%s" in sql or "%%" in sql else "qmark")
    assert verdict.cacheable and verdict.reads_only and verdict.reason == "", verdict


@pytest.mark.parametrize(("family", "sql", "reason"), READS_NOT_CACHED)
def test_reads_that_are_not_cached(family: str, sql: str, reason: str) -> None:
    verdict = analyse(sql, family)
    assert not verdict.cacheable and verdict.reads_only, verdict
    assert verdict.reason == reason


@pytest.mark.parametrize(("family", "sql", "reason"), WRITES)
def test_statements_that_may_write(family: str, sql: str, reason: str) -> None:
    verdict = analyse(sql, family, "format" if "%s" in sql else "qmark")
    assert not verdict.cacheable and not verdict.reads_only, verdict
    assert verdict.reason == reason


def test_an_unknown_dialect_caches_nothing() -> None:
    assert analyse("SELECT 1", "oracle").reason == "unparsed"


def test_analyses_are_memoised_by_text() -> None:
    first = analyse("SELECT a FROM memo_t WHERE b = ?", "sqlite")
    assert analyse("SELECT a FROM memo_t WHERE b = ?", "sqlite") is first
