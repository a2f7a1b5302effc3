"""Failed authentications, counted per client address in a moving window.

Only failures count: a caller whose token is valid is never slowed. An address past
`CAIRN_AUTH_FAILURE_LIMIT` is answered 429 with `Retry-After` until enough of its failures
leave the window, and the identity service is not asked meanwhile. The counts live in this
process (each gateway replica counts its own).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from services.common.config import Settings

Network = IPv4Network | IPv6Network
IPV6_PREFIX_BITS = 64
# Addresses remembered as having failed lately, past which the expired ones are swept.
RECENT_FAILURES_SWEEP_AT = 10_000


class AuthFailures:
    """Counts 401s per client address and says how long a limited address must wait."""

    def __init__(self, limit: str, trusted_proxies: str = "") -> None:
        self._limit: RateLimitItem = parse(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # When each counted address last failed: an address absent here (or whose last
        # failure has left the window) is under the limit without asking the limiter, so the
        # check every authenticated request makes costs a dict lookup.
        self._recent: dict[str, float] = {}
        self._proxies: tuple[Network, ...] = tuple(
            ip_network(part.strip(), strict=False)
            for part in trusted_proxies.split(",")
            if part.strip()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthFailures:
        return cls(settings.auth_failure_limit, settings.trusted_proxies)

    def client_address(self, request: web.Request) -> str:
        """The peer's address, or behind a trusted proxy the client X-Forwarded-For names
        (its right-most entry that is not itself a trusted proxy)."""
        peer = request.remote or ""
        if not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed(hops):
            if not _is_address(hop):
                break
            if not self._is_trusted(hop):
                return hop
        return peer

    async def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may authenticate again; None while under the limit."""
        key = counted_as(address)
        failed_at = self._recent.get(key)
        if failed_at is None:
            return None
        if time.monotonic() - failed_at > self._limit.get_expiry():
            del self._recent[key]
            return None
        if await self._limiter.test(self._limit, key):
            return None
        stats = await self._limiter.get_window_stats(self._limit, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def record(self, address: str) -> None:
        """Count one failed authentication of `address`."""
        key = counted_as(address)
        now = time.monotonic()
        if len(self._recent) >= RECENT_FAILURES_SWEEP_AT:
            window = self._limit.get_expiry()
            self._recent = {k: at for k, at in self._recent.items() if now - at <= window}
        self._recent[key] = now
        await self._limiter.hit(self._limit, key)

    def _is_trusted(self, address: str) -> bool:
        if not self._proxies or not _is_address(address):
            return False
        parsed = ip_address(address)
        return any(parsed in network for network in self._proxies)


@lru_cache(maxsize=4096)
def counted_as(address: str) -> str:
    """Whose failures an address's count: an IPv6 address's whole /64 (one host can hold
    all of it), an IPv4 address itself."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ip_network(f"{parsed}/{IPV6_PREFIX_BITS}", strict=False))
    return str(parsed)


def _is_address(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True
