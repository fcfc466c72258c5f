"""The result cache on every mount: off by default, HIT/MISS/BYPASS with Age, never older than a write through the
middleware (whatever target, protocol or session it came through), isolated per login, bounded, single-flight,
and the races the anchors shipped: a read that started before a write storing its answer as fresh, and
invalidating before the write committed. Across real workers and hosts: test_cache_servers.py."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal

from sqlhttp_middleware.cache.stamps import RedisStamps
from sqlhttp_middleware.options import ConfigurationError, Options, Target

from .support import Client, Database, Reply
from .support.clients import make_asgi_client, make_wsgi_client
from .support.hrana import CLOSE, TOKEN, execute, pipeline, results, rows

MakeClient = Callable[..., Client]
SLOW_COUNT = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1500000) "
              "SELECT count(*) AS n FROM c, t WHERE t.id = 1")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "cache.db"
    with sqlite3.connect(path) as connection:
        connection.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT);"
                                 "INSERT INTO t (note) VALUES ('one');")
    return path


def lite(path: Path, cache: bool | float = True, **extra: Any) -> Target:
    return Target(f"sqlite:///{path}", users={"u": "p", "v": "q"}, api_keys={"edge": TOKEN}, cache=cache, **extra)


def options(tmp_path: Path, targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"targets": targets, "session_dir": str(tmp_path / "host"), **extra}


def query(client: Client, sql: str, target: str = "lite", user: str = "u", password: str = "p",
          headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    body = {"cacheId": target, "username": user, "password": password, "database": "main", "provider": "sqlite",
            "sql": sql, **extra}
    return client.post(body, headers=headers)


def seen(reply: Reply) -> tuple[str | None, Any]:
    assert reply.status == 200, reply.body
    return reply.headers.get("x-cache"), reply.json()


@pytest.fixture
def client(make_client: MakeClient, database: Path, tmp_path: Path) -> Client:
    return make_client(**options(tmp_path, {"lite": lite(database)}))


def test_off_unless_the_target_turns_it_on(make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database, cache=False)}))
    for _ in range(2):
        reply = query(client, "SELECT note FROM t")
        assert reply.status == 200 and "x-cache" not in reply.headers


def test_a_read_is_answered_from_the_cache_until_a_write(client: Client) -> None:
    assert seen(query(client, "SELECT note FROM t ORDER BY id")) == ("MISS", [{"note": "one"}])
    hit = query(client, "SELECT note FROM t ORDER BY id")
    assert seen(hit) == ("HIT", [{"note": "one"}]) and hit.headers["age"] == "0"
    write = query(client, "INSERT INTO t (note) VALUES ('two')")
    assert write.headers["x-cache"] == "BYPASS; reason=write"
    assert seen(query(client, "SELECT note FROM t ORDER BY id")) == ("MISS", [{"note": "one"}, {"note": "two"}])
    assert seen(query(client, "SELECT note FROM t ORDER BY id"))[0] == "HIT"


def test_bypass_reasons(client: Client) -> None:
    for sql, reason in (("SELECT random()", "volatile"), ("SELECT * FROM sqlite_master", "system-table"),
                        ("SELECT changes()", "volatile")):
        for _ in range(2):
            assert query(client, sql).headers["x-cache"] == f"BYPASS; reason={reason}"
    batch = client.post({"cacheId": "lite", "username": "u", "password": "p", "database": "main",
                         "provider": "sqlite", "batch": [{"sql": "SELECT 1"}, {"sql": "SELECT 2"}]})
    assert batch.headers["x-cache"] == "BYPASS; reason=batch"


def test_the_client_can_skip_the_cache(client: Client) -> None:
    query(client, "SELECT note FROM t")
    with sqlite3.connect(client.core.options.targets["lite"].url.database) as connection:
        connection.execute("UPDATE t SET note = 'changed elsewhere'")  # not through the middleware: TTL-bound
    assert seen(query(client, "SELECT note FROM t")) == ("HIT", [{"note": "one"}])
    for ask in ({"headers": {"Cache-Control": "no-cache"}}, {"cache": False}):
        skipped = query(client, "SELECT note FROM t", **ask)
        assert seen(skipped) == ("BYPASS; reason=request", [{"note": "changed elsewhere"}])
    assert seen(query(client, "SELECT note FROM t")) == ("HIT", [{"note": "changed elsewhere"}])  # kept fresh
    assert query(client, "SELECT 1", cache="no").status == 400


def test_answers_expire_with_their_ttl(make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database, cache=0.3)}))
    query(client, "SELECT note FROM t")
    assert query(client, "SELECT note FROM t").headers["x-cache"] == "HIT"
    time.sleep(0.35)
    assert query(client, "SELECT note FROM t").headers["x-cache"] == "MISS"


def test_logins_never_share_answers(client: Client) -> None:
    assert query(client, "SELECT note FROM t").headers["x-cache"] == "MISS"
    assert query(client, "SELECT note FROM t", user="v", password="q").headers["x-cache"] == "MISS"
    wrong = query(client, "SELECT note FROM t", password="wrong")
    assert wrong.status == 401 and "x-cache" not in wrong.headers  # never answered, from the cache or otherwise


def test_a_write_through_another_target_or_protocol_invalidates(
        make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database), "plain": lite(database, cache=False)}))
    query(client, "SELECT count(*) AS n FROM t")
    assert query(client, "SELECT count(*) AS n FROM t").headers["x-cache"] == "HIT"
    query(client, "INSERT INTO t (note) VALUES ('via plain')", target="plain")  # same file, cache off there
    assert seen(query(client, "SELECT count(*) AS n FROM t")) == ("MISS", [{"n": 2}])
    results(pipeline(client, [execute("DELETE FROM t WHERE note = 'via plain'"), CLOSE], target="plain"))
    assert seen(query(client, "SELECT count(*) AS n FROM t")) == ("MISS", [{"n": 1}])


def test_hrana_reads_are_cached_and_its_writes_invalidate(client: Client) -> None:
    first = pipeline(client, [execute("SELECT count(*) FROM t"), CLOSE])
    assert first.headers["x-cache"] == "MISS"
    again = pipeline(client, [execute("SELECT count(*) FROM t"), CLOSE])
    assert again.headers["x-cache"] == "HIT" and again.body == first.body
    assert pipeline(client, [execute("INSERT INTO t (note) VALUES ('h')"), CLOSE]).headers["x-cache"] == \
        "BYPASS; reason=write"
    assert rows(results(pipeline(client, [execute("SELECT count(*) FROM t"), CLOSE]))[0]) == [[2]]


def test_a_session_invalidates_when_it_commits_not_before(client: Client) -> None:
    query(client, "SELECT count(*) AS n FROM t")
    opened = pipeline(client, [execute("BEGIN IMMEDIATE"), execute("INSERT INTO t (note) VALUES ('tx')")])
    assert opened.headers["x-cache"] == "BYPASS; reason=session"
    # Uncommitted: every other reader still sees one row, and may keep seeing it from the cache.
    assert seen(query(client, "SELECT count(*) AS n FROM t"))[1] == [{"n": 1}]
    pipeline(client, [execute("COMMIT"), CLOSE], opened.json()["baton"])
    assert seen(query(client, "SELECT count(*) AS n FROM t")) == ("MISS", [{"n": 2}])


def test_a_rolled_back_session_leaves_the_cache_alone(client: Client) -> None:
    query(client, "SELECT count(*) AS n FROM t")
    opened = pipeline(client, [execute("BEGIN"), execute("INSERT INTO t (note) VALUES ('no')")])
    pipeline(client, [execute("ROLLBACK"), CLOSE], opened.json()["baton"])
    assert seen(query(client, "SELECT count(*) AS n FROM t")) == ("HIT", [{"n": 1}])


def test_a_failed_write_invalidates_as_if_it_had_committed(client: Client) -> None:
    query(client, "SELECT count(*) AS n FROM t")
    failed = query(client, "INSERT INTO t (id, note) VALUES (1, 'duplicate')")
    assert failed.status == 409
    assert query(client, "SELECT count(*) AS n FROM t").headers["x-cache"] == "MISS"


def test_big_answers_are_not_kept_and_the_cache_stays_within_its_bytes(
        make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database)}, cache_max_entry_bytes=200,
                                   cache_max_bytes=100))
    big = "SELECT group_concat(n) AS s FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c " \
          "WHERE n < 100) SELECT n FROM c)"
    for _ in range(2):
        assert query(client, big).headers["x-cache"] == "MISS"
    for n in range(10):
        query(client, f"SELECT {n} AS n, note FROM t")
    entries, held = client.core.cache.stats()
    assert held <= 100 and 0 < entries < 10
    assert query(client, "SELECT 9 AS n, note FROM t").headers["x-cache"] == "HIT"  # the most recent stayed
    assert query(client, "SELECT 0 AS n, note FROM t").headers["x-cache"] == "MISS"  # the oldest went


# -- races --------------------------------------------------------------------------------------------------------

def test_a_read_that_started_before_a_write_is_not_kept(
        make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database)}))
    answers: list[Reply] = []
    reader = threading.Thread(target=lambda: answers.append(query(client, SLOW_COUNT)))
    reader.start()
    time.sleep(0.1)  # the read is running (on SQLite, with its snapshot of before the write)
    query(client, "INSERT INTO t (note) VALUES ('during')")
    reader.join()
    assert answers[0].headers["x-cache"] == "MISS"
    # Its answer may predate the write, so it was not kept: the next read runs.
    assert query(client, SLOW_COUNT).headers["x-cache"] == "MISS"
    assert query(client, SLOW_COUNT).headers["x-cache"] == "HIT"


def test_identical_misses_run_once(database: Path, tmp_path: Path) -> None:
    client = make_wsgi_client(options(tmp_path, {"lite": lite(database)}, pool_size=8))
    try:
        replies: list[Reply] = []
        threads = [threading.Thread(target=lambda: replies.append(query(client, SLOW_COUNT))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kinds = sorted(reply.headers["x-cache"] for reply in replies)
        assert kinds == ["HIT"] * 5 + ["MISS"], kinds
        assert len({reply.body for reply in replies}) == 1
    finally:
        client.close()


def test_identical_misses_run_once_on_the_event_loop(
        database: Path, tmp_path: Path, portal: BlockingPortal) -> None:
    client = make_asgi_client(options(tmp_path, {"lite": lite(database)}, pool_size=8), portal)
    try:
        replies: list[Reply] = []
        threads = [threading.Thread(target=lambda: replies.append(query(client, SLOW_COUNT))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(reply.headers["x-cache"] for reply in replies) == ["HIT"] * 3 + ["MISS"]
    finally:
        client.close()


# -- PostgreSQL, both engine paths --------------------------------------------------------------------------------

def test_postgresql_reads_on_both_engine_paths(
        make_engine_client: MakeClient, pg_database: Database, tmp_path: Path) -> None:
    client = make_engine_client(**options(tmp_path, {"pg": Target("postgresql://127.0.0.1:5432", cache=True)}))
    table = f"cache_{int(time.time() * 1000) % 10**8}_{client.kind}"

    def pg(sql: str) -> Reply:
        return client.post(pg_database.body(sql) | {"cacheId": "pg"})

    assert pg(f"CREATE TABLE {table} (id int)").headers["x-cache"] == "BYPASS; reason=write"
    pg(f"INSERT INTO {table} VALUES (1)")
    assert seen(pg(f"SELECT count(*)::int AS n FROM {table}")) == ("MISS", [{"n": 1}])
    assert seen(pg(f"SELECT count(*)::int AS n FROM {table}")) == ("HIT", [{"n": 1}])
    assert pg("SELECT now()").headers["x-cache"] == "BYPASS; reason=volatile"
    assert pg("SELECT nextval('no_such_sequence')").status == 400  # a function that may write: it invalidated
    assert pg(f"SELECT count(*)::int AS n FROM {table}").headers["x-cache"] == "MISS"
    pg(f"INSERT INTO {table} VALUES (2)")
    assert seen(pg(f"SELECT count(*)::int AS n FROM {table}")) == ("MISS", [{"n": 2}])


# -- configuration and storage ------------------------------------------------------------------------------------

def test_configuration_is_checked(database: Path) -> None:
    target = {"lite": lite(database)}
    for bad, words in (({"cache_storage": "nowhere"}, "cache_storage"),
                       ({"cache_shared_results": True}, "cache_shared_results"),
                       ({"cache_max_bytes": 0}, "cache_max_bytes")):
        with pytest.raises(ConfigurationError, match=words):
            Options.from_kwargs(targets=target, **bad)
    with pytest.raises(ConfigurationError, match="cache"):
        Options.from_kwargs(targets={"lite": lite(database, cache=-1)})
    assert Options.from_kwargs(targets=target, cache_ttl=7).targets["lite"].cache_ttl == 7
    assert Options.from_kwargs(targets={"lite": lite(database, cache=3)}).targets["lite"].cache_ttl == 3


def test_redis_stamps_survive_eviction_and_restarts_without_resurrecting(redis_url: str) -> None:
    import redis

    stamps = RedisStamps(redis_url, f"test-{time.time_ns()}")
    try:
        before = stamps.read(["db"])
        assert stamps.read(["db"]) == before
        stamps.bump(["db"])
        bumped = stamps.read(["db"])
        assert bumped != before
        connection = redis.Redis.from_url(redis_url)
        for key in connection.scan_iter(match=f"{stamps._prefix}*"):
            connection.delete(key)  # evicted, or Redis restarted empty
        assert stamps.read(["db"]) not in (before, bumped)
    finally:
        stamps.close()


def test_hits_across_hosts_sharing_redis(database: Path, tmp_path: Path, redis_url: str) -> None:
    shared = {"cache_storage": redis_url, "cache_shared_results": True, "cache_secret": "s3cret",
              "rate_limit_namespace": f"test-{time.time_ns()}"}
    one = make_wsgi_client(options(tmp_path / "one", {"lite": lite(database)}, **shared))
    two = make_wsgi_client(options(tmp_path / "two", {"lite": lite(database)}, **shared))
    try:
        assert query(one, "SELECT note FROM t").headers["x-cache"] == "MISS"
        assert query(two, "SELECT note FROM t").headers["x-cache"] == "HIT"  # from Redis: two never ran it
        query(two, "UPDATE t SET note = 'two'")
        assert seen(query(one, "SELECT note FROM t")) == ("MISS", [{"note": "two"}])
    finally:
        one.close()
        two.close()


def test_metrics_count_what_the_cache_did(database: Path, tmp_path: Path) -> None:
    client = make_wsgi_client(options(tmp_path, {"lite": lite(database)}, metrics_path="/sql/metrics"))
    try:
        query(client, "SELECT note FROM t")
        query(client, "SELECT note FROM t")
        query(client, "SELECT random()")
        query(client, "DELETE FROM t")
        page = client.request("GET", "/sql/metrics").body.decode()
        for line in ('sqlhttp_cache_requests_total{result="hit",target="lite"}',
                     'sqlhttp_cache_requests_total{result="miss",target="lite"}',
                     'sqlhttp_cache_bypasses_total{reason="volatile",target="lite"}',
                     'sqlhttp_cache_invalidations_total{target="lite"}', "sqlhttp_cache_bytes"):
            assert line in page, line
    finally:
        client.close()


def test_the_cache_header_is_readable_by_browsers(make_client: MakeClient, database: Path, tmp_path: Path) -> None:
    client = make_client(**options(tmp_path, {"lite": lite(database)}, cors_origins=["https://app.example"]))
    reply = query(client, "SELECT 1", headers={"Origin": "https://app.example"})
    exposed = reply.headers["access-control-expose-headers"].lower()
    assert "x-cache" in exposed and "age" in exposed
    json.loads(reply.body)


def test_a_read_sent_after_a_write_never_takes_an_identical_misss_older_answer(
        database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The leader of an identical miss is held just after it stored its answer (a thread preempted there), with its
    # flight still open; a write is acknowledged; an identical read sent after it must not take the leader's answer.
    from sqlhttp_middleware.cache import ResultCache

    client = make_wsgi_client(options(tmp_path, {"lite": lite(database)}, pool_size=4))
    original = ResultCache._store
    stored, release, armed = threading.Event(), threading.Event(), [True]

    def held_store(self: ResultCache, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if armed[0]:
            armed[0] = False
            stored.set()
            release.wait(5)
        return result

    monkeypatch.setattr(ResultCache, "_store", held_store)
    replies: dict[str, Reply] = {}
    try:
        leader = threading.Thread(target=lambda: replies.setdefault("leader", query(client, "SELECT count(*) AS n "
                                                                                             "FROM t")))
        leader.start()
        assert stored.wait(5)
        query(client, "INSERT INTO t (note) VALUES ('acknowledged')")
        follower = threading.Thread(target=lambda: replies.setdefault("follower", query(client, "SELECT count(*) "
                                                                                                 "AS n FROM t")))
        follower.start()
        time.sleep(0.3)
        release.set()
        leader.join()
        follower.join()
    finally:
        release.set()
        client.close()
    assert replies["leader"].json() == [{"n": 1}]
    assert seen(replies["follower"]) == ("MISS", [{"n": 2}])
