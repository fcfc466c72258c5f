"""Who may ask: logins checked by the middleware, bearer API keys, the host app's hook, and the brute-force brake.

Three ways to authenticate, per target:

* **The database's own login** (PolyScale's way; the default for network databases): the request's username and
  password are passed to the database, which checks them.
* **Credentials held by the server**: the target's URL carries the database login, and clients present a username
  and password the middleware checks against ``users`` (stored hashed), or ``Authorization: Bearer <key>`` checked
  against ``api_keys`` (stored hashed). SQLite targets, which have no login of their own, always work this way.
* **A hook**: ``authorize=`` on the middleware is called with an :class:`AuthContext` for every request; it may
  raise :class:`~sqlhttp_middleware.errors.AuthenticationFailed` (401) or ``PermissionDenied`` (403), or return
  False (403). A target whose URL carries a login and that declares neither users nor keys is reached only
  through the hook.

Repeated failed logins for one (client address, target, username) are refused with 429 before the database is
contacted, so the endpoint cannot be used to guess passwords or to lock a real database account.

The whole sequence (the brake, the checks, the work, counting a failure) is written once, in
:meth:`Authenticator.attempt`, as steps that say whether they may block; :func:`run_steps` runs them in place,
:func:`run_steps_async` on an event loop, sending the blocking ones (a password hash, the hook, a Redis round trip)
to a thread and awaiting the work when it is a coroutine.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import inspect
import math
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors
from .state import NoRoom, Storage, StorageUnavailable, warn_overflow

if TYPE_CHECKING:
    from .engine.work import Login, Work
    from .http import Request

__all__ = ["AuthContext", "Authenticator", "hash_api_key", "hash_password", "run_steps", "run_steps_async",
           "verify_secret"]

T = TypeVar("T")
# A call, and how an event loop runs it: INLINE, on a thread (BLOCKS), or awaiting what it returns (AWAITS).
INLINE, BLOCKS, AWAITS = 0, 1, 2
Step = tuple[Callable[[], Any], int]
Steps = Generator[Step, Any, T]

PBKDF2 = "pbkdf2_sha256"
PBKDF2_ITERATIONS = 600_000
SHA256 = "sha256"


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: str | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>``, the format Django uses, for ``Target(users=...)``."""
    salt = salt or secrets.token_urlsafe(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{PBKDF2}${iterations}${salt}${base64.b64encode(digest).decode()}"


def hash_api_key(key: str) -> str:
    """``sha256$<hex>`` for ``Target(api_keys=...)``: API keys are long random strings, so one hash suffices."""
    return f"{SHA256}${hashlib.sha256(key.encode()).hexdigest()}"


def verify_secret(stored: str, offered: str) -> bool:
    """Check ``offered`` against a stored hash (or, for development, a plain stored value), in constant time."""
    if stored.startswith(PBKDF2 + "$"):
        _, iterations, salt, expected = stored.split("$", 3)
        digest = hashlib.pbkdf2_hmac("sha256", offered.encode("utf-8", "surrogatepass"), salt.encode(),
                                     int(iterations))
        return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
    if stored.startswith(SHA256 + "$"):
        hexdigest = hashlib.sha256(offered.encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(hexdigest, stored[len(SHA256) + 1:])
    return hmac.compare_digest(hashlib.sha256(stored.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(offered.encode("utf-8", "surrogatepass")).digest())


@dataclass(frozen=True)
class AuthContext:
    """What the ``authorize`` hook is told about a request."""

    method: str
    path: str
    headers: Mapping[str, str]
    client: str
    target: str
    username: str
    database: str
    sql: str


Hook = Callable[[AuthContext], Any]


class Authenticator:
    """``targets`` names the targets, each with a fallback brake; ``share`` (the rate limiter's
    :meth:`~sqlhttp_middleware.ratelimit.RateLimiter.share`) is told of the brake's keys, so the storage it shares
    is sized for them."""

    def __init__(self, *, hook: Hook | None, attempts: int, window: float, storage: Callable[[], Storage],
                 storage_blocks: bool = False, targets: Iterable[str] = (),
                 share: Callable[..., None] | None = None) -> None:
        self._hook = hook
        self._attempts = attempts
        self._window = window
        self._storage = storage
        self._storage_blocks = storage_blocks
        if attempts and share is not None:
            # At most one failure key per admitted request (a failed login is counted after admission).
            share(pinned=[self._overflow_key(name) for name in targets], window=window)
        # Successful slow-hash checks, keyed by a keyed digest of the login: a right password costs one PBKDF2.
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._cache_key = secrets.token_bytes(32)

    # -- the brute-force brake ------------------------------------------------------------------------------------
    #
    # Failed logins are counted per (target, client address, username). A key the storage has no room for (NoRoom)
    # is counted, and read, under its target's pinned fallback key instead: every such login on one target shares
    # one brake, held more strictly than alone, never let through. A tripped brake is live until its counts
    # expire, so no flood of new keys can take its place.

    @staticmethod
    def _throttle_key(client: str, target: str, username: str) -> str:
        # NUL between the parts: no address or target holds one, so no username can make two triples one key.
        return f"login:{target}\0{client}\0{username}"

    @staticmethod
    def _overflow_key(target: str) -> str:
        return f"overflow:login:{target}"

    def check_throttle(self, client: str, target: str, username: str) -> None:
        if not self._attempts:
            return
        storage = self._storage()
        try:
            try:
                window = storage.get_sliding_window(self._throttle_key(client, target, username), self._window)
            except NoRoom:
                window = storage.get_sliding_window(self._overflow_key(target), self._window)
        except (StorageUnavailable, NoRoom):
            return  # the rate limiter's fail-open/closed choice already applied to this request
        if window.estimate() >= self._attempts:
            retry = max(1, math.ceil(window.retry_after(self._attempts - 1)))
            raise errors.LoginThrottled(
                f"too many failed logins for user {username!r} on target {target!r}; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )

    def record_failure(self, client: str, target: str, username: str) -> None:
        if not self._attempts:
            return
        storage = self._storage()
        key = self._throttle_key(client, target, username)
        with contextlib.suppress(StorageUnavailable, NoRoom):
            try:
                storage.acquire_sliding_window_entry(key, 1 << 62, self._window)
            except NoRoom:
                fallback = self._overflow_key(target)
                warn_overflow(key, fallback)
                storage.acquire_sliding_window_entry(fallback, 1 << 62, self._window)

    # -- the whole login, once ------------------------------------------------------------------------------------

    def attempt(self, request: Request, work: Work, client: str, run: Callable[[Login], Any]) -> Steps[Any]:
        """Brake, authenticate, ``run(login)``, and count a failed login, whether we or the database refused it.

        ``run`` may return an awaitable (the async executor's run): :func:`run_steps_async` awaits it.
        """
        target, username = work.target, work.claim.username
        storage = BLOCKS if self._storage_blocks else INLINE
        yield partial(self.check_throttle, client, target.name, username), storage
        try:
            login = yield (partial(self.authenticate, request, work, client),
                           INLINE if self.is_quick(request, work) else BLOCKS)
            result = yield partial(run, login), AWAITS
        except errors.AuthenticationFailed:
            yield partial(self.record_failure, client, target.name, username), storage
            raise
        return result

    def is_quick(self, request: Request, work: Work) -> bool:
        """True when authenticating this request cannot block: no hook, no password hash to compute."""
        target, claim = work.target, work.claim
        if self._hook is not None or self._storage_blocks:
            return False
        if target.family != "sqlite" and not target.server_login:
            return True  # the database checks the login
        if request.headers.get("authorization") is not None and target.api_keys:
            return not any(stored.startswith(PBKDF2 + "$") for stored in target.api_keys.values())
        return not target.users or self.login_is_quick(target.name, target.users, claim.username, claim.password)

    def authenticate(self, request: Request, work: Work, client: str) -> Login:
        from .engine.work import Login

        target, claim = work.target, work.claim
        if self._hook is not None:
            self.authorize(AuthContext(
                method=request.method, path=request.path, headers=request.headers, client=client,
                target=target.name, username=claim.username, database=claim.database, sql=work.sql,
            ))
        if target.family != "sqlite" and not target.server_login:
            return Login(claim.username, claim.password, claim.database)  # the database checks it
        authorization = request.headers.get("authorization")
        if authorization is not None and target.api_keys:
            self.check_api_key(target.name, target.api_keys, authorization)
        elif target.users:
            self.check_login(target.name, target.users, claim.username, claim.password)
        elif self._hook is None:
            raise errors.AuthenticationFailed(f"target {target.name!r} takes an API key: send Authorization: Bearer")
        url = target.url
        return Login(url.username or "", url.password or "", url.database or claim.database)

    # -- checks ---------------------------------------------------------------------------------------------------

    def authorize(self, context: AuthContext) -> None:
        if self._hook is None:
            return
        if self._hook(context) is False:
            raise errors.PermissionDenied(f"the application refused this request to target {context.target!r}")

    def _verified_key(self, target: str, username: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{target}\0{username}\0{password}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()

    def login_is_quick(self, target: str, users: Mapping[str, str], username: str, password: str) -> bool:
        """True when :meth:`check_login` will not hash: a login verified recently, or one stored in plain text."""
        stored = users.get(username)
        if stored is None:
            return False  # the dummy hash runs, so unknown names take as long as known ones
        if not stored.startswith(PBKDF2 + "$"):
            return True
        with self._verified_lock:
            return self._verified_key(target, username, password) in self._verified

    def check_login(self, target: str, users: Mapping[str, str], username: str, password: str) -> None:
        stored = users.get(username)
        cache_key = self._verified_key(target, username, password)
        with self._verified_lock:
            if cache_key in self._verified:
                self._verified.move_to_end(cache_key)
                return
        # Same work whether or not the user exists, so timing does not reveal names.
        ok = verify_secret(stored if stored is not None else _dummy(), password) and stored is not None
        if not ok:
            raise errors.AuthenticationFailed(f"authentication failed for user {username!r} on target {target!r}")
        with self._verified_lock:
            self._verified[cache_key] = None
            while len(self._verified) > 1024:
                self._verified.popitem(last=False)

    @staticmethod
    def check_api_key(target: str, api_keys: Mapping[str, str], authorization: str) -> str:
        """The name of the key ``Authorization: Bearer ...`` presents, or 401."""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise errors.AuthenticationFailed("the Authorization header must be 'Bearer <api key>'")
        found = None
        for name, stored in api_keys.items():
            if verify_secret(stored, key.strip()):
                found = name
        if found is None:
            raise errors.AuthenticationFailed(f"the API key is not valid for target {target!r}")
        return found


def run_steps(steps: Steps[T]) -> T:
    """Run ``steps`` in place (the sync path)."""
    try:
        call, _ = next(steps)
        while True:
            try:
                result = call()
            except Exception as error:
                call, _ = steps.throw(error)
            else:
                call, _ = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_steps_async(steps: Steps[T], offload: Callable[[Callable[[], Any]], Awaitable[Any]]) -> T:
    """Run ``steps`` on an event loop: the ones that may block through ``offload`` (a thread)."""
    try:
        call, mode = next(steps)
        while True:
            try:
                if mode == INLINE:
                    result = call()
                elif mode == BLOCKS:
                    result = await offload(call)
                else:
                    result = call()
                    if inspect.isawaitable(result):
                        result = await result
            except Exception as error:
                call, mode = steps.throw(error)
            else:
                call, mode = steps.send(result)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@functools.cache
def _dummy() -> str:
    return hash_password("not a real password", salt="dummy-salt")
