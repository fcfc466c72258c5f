"""The rate limiter: which requests count against which limit, and the headers that say so.

Every request to the endpoint counts against up to three limits, each a sliding window of ``rate_limit_window``
seconds:

* ``mount``: all requests to this endpoint (default 60,000 a minute, PolyScale's), however many workers or hosts
  serve it, as long as they share the storage;
* ``client``: the requests of one client address, when ``rate_limit_per_client`` is set (the address is the peer's,
  or, behind ``trusted_proxies`` proxies, the one they vouch for in ``X-Forwarded-For``: :func:`client_address`);
* ``target``: the requests to one target, when the target sets ``rate_limit``.

The mount and client limits are checked before the body is parsed, so a flood of malformed requests is limited too;
the target limit once the target is known. Over a limit: 429 with ``Retry-After``. Every answer carries the IETF
draft headers ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers).

The counts live in a storage from :mod:`sqlhttp_middleware.state` (memory, shared memory or Redis), opened on first
use; :attr:`RateLimiter.blocks` says whether it may block on the network. The login brake shares it
(:meth:`RateLimiter.share`).

**Bounded, never let through.** The mount's and the targets' counters, and the fallback keys, are pinned: the
storage never drops them. Every other key is written only for a request the mount admitted, so the mount's limit
bounds how many are live at once (:meth:`RateLimiter.live_keys`), and that bound sizes the storage. A client whose
key finds no room in the storage anyway (a table smaller than the bound, or unlucky probing) is counted against the
pinned key ``overflow:client``, with the per-client limit: every such client shares one client's budget, limited
more strictly than alone, never let through.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import errors
from .state import NoRoom, SlidingWindow, Storage, StorageUnavailable, make_storage, storage_blocks, warn_overflow

__all__ = ["CLIENT_OVERFLOW", "Admission", "Policy", "RateLimiter", "client_address", "live_keys",
           "namespace_for"]

logger = logging.getLogger("sqlhttp_middleware.ratelimit")

#: The pinned key that clients whose own key finds no room in the storage are counted against, together.
CLIENT_OVERFLOW = "overflow:client"


def client_address(peer: str | None, headers: Mapping[str, str], trusted_proxies: int) -> str:
    """The client's address, as werkzeug's ``ProxyFix(x_for=trusted_proxies)`` finds it.

    Each proxy appends the address it received the request from, so with N trusted proxies the N-th entry of
    X-Forwarded-For from the right is the one the outermost trusted proxy saw: the client. With fewer entries than
    that, the header did not come through all N of them (or a client wrote it), so the peer's address is kept.
    Entries left of the N-th are whatever the client sent, and are never used.
    """
    if trusted_proxies > 0:
        forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    return peer or "unknown"


def live_keys(limit: int, window: float, key_windows: Iterable[float]) -> int | None:
    """The most unpinned keys live at once when a mount admits ``limit`` requests per ``window`` seconds and each
    admitted request writes at most one key in windows of each length in ``key_windows``; None: no bound (no
    mount limit).

    A key of ``L``-second windows written at ``t`` is live until both of its windows are over, at
    ``(floor(t / L) + 2) * L``: the keys live now were written since the start of the previous ``L``-window, less
    than ``2L`` seconds ago. That stretch touches at most ``ceil(2L / window) + 1`` of the mount's windows (exactly
    ``2L / window`` when ``L`` is a whole number of them, as both start at multiples of their length), and the mount
    admits at most ``limit`` requests in each.
    """
    windows = list(key_windows)
    if not windows:
        return 0
    if not limit:
        return None
    total = 0
    for length in windows:
        ratio = length / window
        total += limit * (round(2 * ratio) if ratio.is_integer() else math.ceil(2 * ratio) + 1)
    return total


@dataclass(frozen=True)
class Policy:
    name: str
    limit: int
    window: float

    @functools.cached_property
    def header(self) -> str:
        return f'"{self.name}";q={self.limit};w={_seconds(self.window)}'


@dataclass
class Admission:
    """The windows a request was counted in, for the response headers."""

    checked: list[tuple[Policy, SlidingWindow]]

    def headers(self) -> dict[str, str]:
        return dict(self.header_items())

    def header_items(self) -> list[tuple[str, str]]:
        """The headers, names lower-cased, as the core's responses carry them."""
        if not self.checked:
            return []
        if len(self.checked) == 1:
            (policy, window), = self.checked
            return [("ratelimit-policy", policy.header),
                    ("ratelimit", f'"{policy.name}";r={window.remaining(policy.limit)};t={_reset(policy, window)}')]
        policies = ", ".join(policy.header for policy, _ in self.checked)
        states = ", ".join(
            f'"{policy.name}";r={window.remaining(policy.limit)};t={_reset(policy, window)}'
            for policy, window in self.checked
        )
        return [("ratelimit-policy", policies), ("ratelimit", states)]


def _seconds(value: float) -> int:
    return max(0, math.ceil(value))


def _reset(policy: Policy, window: SlidingWindow) -> int:
    if window.remaining(policy.limit) == 0:
        return max(1, _seconds(window.retry_after(policy.limit)))
    return _seconds(window.expiry - window.elapsed)


class RateLimiter:
    """Counts requests against the mount's, clients' and targets' limits, in a storage it opens on first use.

    ``targets`` names the targets, whose counters are pinned; ``slots``: the size of a shared-memory table (0: sized
    from :meth:`live_keys`).
    """

    def __init__(self, *, limit: int, window: float, per_client: int, storage: str, fail_open: bool,
                 namespace: str, targets: Iterable[str] = (), slots: int = 0) -> None:
        self.window = window
        self.mount = Policy("mount", limit, window) if limit else None
        self.client = Policy("client", per_client, window) if per_client else None
        self.fail_open = fail_open
        self._spec = storage
        self._namespace = namespace
        self._slots = slots
        self._pinned = {"mount", CLIENT_OVERFLOW, *("target:" + name for name in targets)}
        self._key_windows = [window] if per_client else []  # one client key per admitted request
        # Opened on first use: a server's master process that only imports the app never touches it.
        self.storage: Storage | None = None

    def share(self, *, pinned: Iterable[str] = (), window: float | None = None) -> None:
        """Make room for another user of the storage (the login brake): keys it needs pinned, and, with
        ``window``, that it writes at most one key per admitted request, in windows of that many seconds."""
        if self.storage is not None:
            raise RuntimeError("share() the storage before it is opened: its size is fixed then")
        self._pinned.update(pinned)
        if window is not None:
            self._key_windows.append(window)

    def live_keys(self) -> int | None:
        """The most unpinned keys live at once in the storage (:func:`live_keys`); None: no bound."""
        return live_keys(self.mount.limit if self.mount else 0, self.window, self._key_windows)

    @property
    def blocks(self) -> bool:
        """Whether a count may block on the network (the storage is Redis), known without opening the storage."""
        return storage_blocks(self._spec)

    def target_policy(self, limit: int | None) -> Policy | None:
        return Policy("target", limit, self.window) if limit else None

    def admit_request(self, client: str) -> Admission:
        """Count the request against the mount limit, and ``client``'s (its address); raise ``RateLimited`` over
        either."""
        admission = Admission([])
        if self.mount is not None:
            self._count(admission, self.mount, "mount")
        if self.client is not None:
            self._count(admission, self.client, "client:" + client, CLIENT_OVERFLOW)
        return admission

    def admit_target(self, admission: Admission, target: str, policy: Policy | None) -> None:
        if policy is not None:
            self._count(admission, policy, "target:" + target)

    def _acquire(self, policy: Policy, key: str, fallback: str | None) -> SlidingWindow:
        storage = self.shared_storage()
        try:
            return storage.acquire_sliding_window_entry(key, policy.limit, policy.window)
        except NoRoom:
            if fallback is None:  # a pinned key always has room, unless another configuration shares the file
                raise StorageUnavailable(f"no room for the pinned key {key!r}") from None
        warn_overflow(key, fallback)
        try:
            return storage.acquire_sliding_window_entry(fallback, policy.limit, policy.window)
        except NoRoom:
            raise StorageUnavailable(f"no room for the pinned key {fallback!r}") from None

    def _count(self, admission: Admission, policy: Policy, key: str, fallback: str | None = None) -> None:
        try:
            window = self._acquire(policy, key, fallback)
        except StorageUnavailable:
            if self.fail_open:
                logger.warning("sqlhttp-middleware: rate-limit storage unavailable; admitting (fail open)")
                return
            raise errors.RateLimiterUnavailable(
                "the rate limiter cannot reach its storage; try again shortly", headers={"Retry-After": "1"}
            ) from None
        admission.checked.append((policy, window))
        if not window.admitted:
            retry = max(1, math.ceil(window.retry_after(policy.limit)))
            refused = errors.RateLimited(
                f"rate limit exceeded: at most {policy.limit} requests per {_seconds(policy.window)} s "
                f"({policy.name}); retry in {retry} s",
                headers={"Retry-After": str(retry), **admission.headers()},
            )
            refused.policy = policy.name
            raise refused

    def shared_storage(self) -> Storage:
        """The storage counts live in, opened on first use; the login brake shares it."""
        if self.storage is None:
            self.storage = make_storage(self._spec, self._namespace, pinned=sorted(self._pinned),
                                        live_keys=self.live_keys(), slots=self._slots)
        return self.storage

    def close(self) -> None:
        if self.storage is not None:
            self.storage.close()


def namespace_for(path: str, targets: list[str]) -> str:
    """A stable name for one app's counters: the same in every worker and across restarts."""
    digest = hashlib.sha256(("\0".join([path, *sorted(targets)])).encode()).hexdigest()
    return digest[:16]
