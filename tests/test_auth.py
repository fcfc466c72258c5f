"""Who may ask: server-held credentials (hashed users, bearer API keys), the authorize hook, the brake on failed
logins, and CORS for browsers."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sqlhttp_middleware import errors
from sqlhttp_middleware.auth import AuthContext, hash_api_key, hash_password, verify_secret
from sqlhttp_middleware.options import Target
from sqlhttp_middleware.state.shm import default_directory

from .support import SQLITE_PASSWORD, SQLITE_USER, Client, Database, targets_for


def server_url(db: Database) -> str:
    """The target URL holding ``db``'s login, with the password quoted for a URL."""
    scheme = "postgresql" if db.family == "postgresql" else "mariadb"
    port = 5432 if db.family == "postgresql" else 3306
    password = urllib.parse.quote(db.password, safe="")
    return f"{scheme}://{db.username}:{password}@127.0.0.1:{port}/{db.database}"


@pytest.fixture(params=["pg", "maria"])
def netdb(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue({"pg": "pg_database", "maria": "maria_database"}[request.param])
    return database


def sqlite_url(db: Database) -> str:
    return f"sqlite:///{str(db.admin_url).removeprefix('sqlite:///')}"


def body(db: Database, username: str, password: str, sql: str = "select 1 as one") -> dict[str, Any]:
    return {**db.body(sql), "username": username, "password": password}


def test_hashes() -> None:
    stored = hash_password("s3cret", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and verify_secret(stored, "s3cret")
    assert not verify_secret(stored, "s3cret ")
    assert verify_secret(hash_api_key("key-1"), "key-1") and not verify_secret(hash_api_key("key-1"), "key-2")
    assert verify_secret("plain", "plain") and not verify_secret("plain", "plain2")


def test_server_held_credentials_with_hashed_users(make_client: Callable[..., Client], netdb: Database) -> None:
    users = {"edge": hash_password("edge-password", iterations=1000)}
    client = make_client(targets={netdb.key: Target(server_url(netdb), users=users)})
    whoami = "select current_user as u" if netdb.family == "postgresql" else "select current_user() as u"
    reply = client.post(body(netdb, "edge", "edge-password", whoami))
    assert reply.status == 200, reply.body
    assert reply.json()[0]["u"].startswith(netdb.username)  # ran with the server's login, not the client's
    for username, password in (("edge", "wrong"), ("nobody", "edge-password"), (netdb.username, netdb.password)):
        reply = client.post(body(netdb, username, password))
        assert reply.status == 401 and reply.json()["code"] == "AUTHENTICATION_FAILED"


def test_bearer_api_keys(make_client: Callable[..., Client], pg_database: Database) -> None:
    target = Target(server_url(pg_database), api_keys={"worker": hash_api_key("k-0123456789")})
    client = make_client(targets={"pg": target})
    request = body(pg_database, "anything", "anything")  # PolyScale's client sends a login: it is ignored
    assert client.post(request, headers={"Authorization": "Bearer k-0123456789"}).json() == [{"one": 1}]
    for header in ("Bearer wrong", "Basic k-0123456789", "Bearer "):
        reply = client.post(request, headers={"Authorization": header})
        assert reply.status == 401 and reply.json()["code"] == "AUTHENTICATION_FAILED", header
    assert client.post(request).status == 401  # no key at all


def test_authorize_hook(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    seen: list[AuthContext] = []

    def authorize(context: AuthContext) -> bool:
        seen.append(context)
        if context.headers.get("x-session") == "expired":
            raise errors.AuthenticationFailed("your session has expired; sign in again")
        return "drop" not in context.sql.lower()

    client = make_client(targets=targets_for(sqlite_database), authorize=authorize)
    assert client.query(sqlite_database, "select 1 as one").json() == [{"one": 1}]
    context = seen[-1]
    assert (context.target, context.username, context.sql, context.method) == (
        "lite", sqlite_database.username, "select 1 as one", "POST")
    refused = client.query(sqlite_database, "drop table nothing")
    assert refused.status == 403 and refused.json()["code"] == "PERMISSION_DENIED"
    expired = client.post(sqlite_database.body("select 1"), headers={"X-Session": "expired"})
    assert expired.status == 401 and expired.json()["message"] == "your session has expired; sign in again"


def test_hook_alone_guards_a_target_with_a_login(make_client: Callable[..., Client], pg_database: Database) -> None:
    def authorize(context: AuthContext) -> bool:
        return context.headers.get("authorization") == "Session valid-session"

    client = make_client(targets={"pg": server_url(pg_database)}, authorize=authorize)
    request = body(pg_database, "x", "y")
    assert client.post(request, headers={"Authorization": "Session valid-session"}).json() == [{"one": 1}]
    assert client.post(request).status == 403


def test_failed_logins_are_braked_before_the_database(make_client: Callable[..., Client], netdb: Database,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A day's window: the sliding window's count decays from the moment a window ends, so a test that straddled the
    # end of a 300 s window would see one guess through (seen once in a fresh-clone run).
    client = make_client(targets=targets_for(netdb), login_attempts=10, login_window=86_400)
    reached = 0
    def counting(original: Any) -> Any:
        def count(*args: Any, **kwargs: Any) -> Any:
            nonlocal reached
            reached += 1
            return original(*args, **kwargs)
        return count

    # every piece of work that reaches a database, sync or async
    monkeypatch.setattr(client.core.executor, "run", counting(client.core.executor.run))
    if client.core.aio is not None:
        monkeypatch.setattr(client.core.aio, "run", counting(client.core.aio.run))
    statuses = [client.post(body(netdb, netdb.username, f"guess-{n}")).status for n in range(1000)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    assert reached == 10  # of 1,000 guesses, the database saw ten
    throttled = client.post(body(netdb, netdb.username, netdb.password))
    assert throttled.status == 429 and throttled.json()["code"] == "LOGIN_THROTTLED"  # the right one waits too
    assert int(throttled.headers["retry-after"]) >= 1
    assert reached == 10
    # Another username from the same address is not held back by it.
    assert client.post(body(netdb, "someone_else", "x")).status == 401


def test_failed_logins_with_no_room_are_braked_together(make_client: Callable[..., Client],
                                                         sqlite_database: Database) -> None:
    """A table with no room for a login's own failure key counts it under the target's fallback brake: every such
    login shares one brake, held sooner than its own would be, never let through."""
    users = {SQLITE_USER: SQLITE_PASSWORD, **{f"user{n}": "right" for n in range(20)}}
    name = f"sqlhttp-test-{uuid.uuid4().hex[:12]}"
    client = make_client(targets={"lite": Target(sqlite_url(sqlite_database), users=users)}, login_attempts=3,
                         login_window=86_400, rate_limit_storage=f"shm://{name}", rate_limit_slots=4)
    try:
        statuses = [client.post(body(sqlite_database, f"user{n}", "wrong")).status for n in range(20)]
        # Four keys found room (one failure each); the next three failures went to the fallback, which then held.
        assert statuses == [401] * 7 + [429] * 13
        assert client.post(body(sqlite_database, "user0", "wrong")).status == 401  # its own brake: one failure
        # The price, while the table is full: a login with no room waits with the others, right password or not.
        assert client.post(body(sqlite_database, SQLITE_USER, SQLITE_PASSWORD)).status == 429
    finally:
        (default_directory() / f"{name}.ratelimit").unlink(missing_ok=True)


def test_no_username_can_count_against_another_logins_brake(make_client: Callable[..., Client],
                                                            sqlite_database: Database) -> None:
    """The brake's key separates target, address and username by a character no address holds, so a username
    with a colon in it cannot be counted as another address's login (with colons, ``lite:2001`` from ``db8::1`` and
    ``lite`` from ``2001:db8::1`` were one key)."""
    users = {SQLITE_USER: SQLITE_PASSWORD, f"{SQLITE_USER}:2001": "right"}
    client = make_client(targets={"lite": Target(sqlite_url(sqlite_database), users=users)}, login_attempts=3,
                         trusted_proxies=1, login_window=86_400)
    attacker = {"X-Forwarded-For": "db8::1"}
    statuses = [client.post(body(sqlite_database, f"{SQLITE_USER}:2001", "guess"), headers=attacker).status
                for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    victim = {"X-Forwarded-For": "2001:db8::1"}
    assert client.post(body(sqlite_database, SQLITE_USER, SQLITE_PASSWORD), headers=victim).status == 200


def test_cors_is_off_by_default(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database))
    preflight = client.request("OPTIONS", "/sql", headers={"Origin": "https://app.example",
                                                           "Access-Control-Request-Method": "POST"})
    assert preflight.status == 405
    reply = client.post(sqlite_database.body("select 1"), headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in reply.headers


def test_cors_allow_list(make_client: Callable[..., Client], sqlite_database: Database) -> None:
    client = make_client(targets=targets_for(sqlite_database), cors_origins=["https://app.example"])
    asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type, authorization"}
    preflight = client.request("OPTIONS", "/sql", headers=asked)
    assert preflight.status == 204, preflight.body
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert "Origin" in preflight.headers["vary"]
    assert "access-control-allow-credentials" not in preflight.headers
    reply = client.post(sqlite_database.body("select 1 as one"), headers={"Origin": "https://app.example"})
    assert reply.json() == [{"one": 1}]
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert "RateLimit" in reply.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in reply.headers
    evil = client.request("OPTIONS", "/sql", headers={**asked, "Origin": "https://evil.example"})
    assert evil.status == 403 and "access-control-allow-origin" not in evil.headers
    other = client.post(sqlite_database.body("select 1"), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    wrong_method = client.request("OPTIONS", "/sql", headers={**asked, "Access-Control-Request-Method": "DELETE"})
    assert wrong_method.status == 405
    odd_header = client.request("OPTIONS", "/sql", headers={**asked, "Access-Control-Request-Headers": "x-evil"})
    assert odd_header.status == 403
