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
use; :attr:`RateLimiter.blocks` says whether it may block on the network.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from . import errors
from .state import SlidingWindow, Storage, StorageUnavailable, make_storage, storage_blocks

__all__ = ["Admission", "Policy", "RateLimiter", "client_address", "namespace_for"]

logger = logging.getLogger("sqlhttp_middleware.ratelimit")


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
    def __init__(self, *, limit: int, window: float, per_client: int, storage: str, fail_open: bool,
                 namespace: str) -> None:
        self.window = window
        self.mount = Policy("mount", limit, window) if limit else None
        self.client = Policy("client", per_client, window) if per_client else None
        self.fail_open = fail_open
        self._spec = storage
        self._namespace = namespace
        # Opened on first use: a server's master process that only imports the app never touches it.
        self.storage: Storage | None = None

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
            self._count(admission, self.client, "client:" + client)
        return admission

    def admit_target(self, admission: Admission, target: str, policy: Policy | None) -> None:
        if policy is not None:
            self._count(admission, policy, "target:" + target)

    def _count(self, admission: Admission, policy: Policy, key: str) -> None:
        storage = self.shared_storage()
        try:
            window = storage.acquire_sliding_window_entry(key, policy.limit, policy.window)
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
            raise errors.RateLimited(
                f"rate limit exceeded: at most {policy.limit} requests per {_seconds(policy.window)} s "
                f"({policy.name}); retry in {retry} s",
                headers={"Retry-After": str(retry), **admission.headers()},
            )

    def shared_storage(self) -> Storage:
        """The storage counts live in, opened on first use; the login brake shares it."""
        if self.storage is None:
            self.storage = make_storage(self._spec, self._namespace)
        return self.storage

    def close(self) -> None:
        if self.storage is not None:
            self.storage.close()


def namespace_for(path: str, targets: list[str]) -> str:
    """A stable name for one app's counters: the same in every worker and across restarts."""
    digest = hashlib.sha256(("\0".join([path, *sorted(targets)])).encode()).hexdigest()
    return digest[:16]
