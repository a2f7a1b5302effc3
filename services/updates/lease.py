"""Serialising contenders for a stack's update lock.

The database row (active update, lease token hash, expiry) is always the truth and every
write is fenced by it. With Redis configured, contenders on different replicas are turned
away quickly by a `SET NX PX` key per stack, renewed and released by compare-and-act scripts
on the lease token; without Redis the row alone decides (correct across processes sharing
the database).
"""

from __future__ import annotations

from typing import Any, Protocol

from services.common.errors import Unavailable
from services.common.logging import get_logger

log = get_logger("cairn.updates.lease")

KEY_PREFIX = "cairn:update-lock:"
REDIS_DOWN = "Service Unavailable: the update lock service (Redis) cannot be reached; try again."

# Renew: extend only while the key still holds our token.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Release: delete only our own key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Take over a key the database says is stale: replace it only if it still holds that value.
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class StackLock(Protocol):
    """Fast mutual exclusion in front of the database's lock row."""

    async def acquire(self, stack_id: str, token: str, ttl_seconds: float) -> str | None:
        """Take the stack; on refusal return the holder's token (the caller checks the row)."""
        ...

    async def take_over(self, stack_id: str, stale: str, token: str, ttl_seconds: float) -> bool:
        """Replace a holder the database says is gone; False if someone else was faster."""
        ...

    async def renew(self, stack_id: str, token: str, ttl_seconds: float) -> None: ...

    async def release(self, stack_id: str, token: str) -> None: ...

    async def close(self) -> None: ...


class DatabaseOnlyLock:
    """No Redis: the lock row in the database decides alone."""

    async def acquire(self, stack_id: str, token: str, ttl_seconds: float) -> str | None:
        return None

    async def take_over(self, stack_id: str, stale: str, token: str, ttl_seconds: float) -> bool:
        return True

    async def renew(self, stack_id: str, token: str, ttl_seconds: float) -> None:
        return None

    async def release(self, stack_id: str, token: str) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisStackLock:
    """SET NX PX per stack id; scripts compare the token before acting."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, timeout_seconds: float) -> RedisStackLock:
        import redis.asyncio as redis

        client = redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            decode_responses=True,
        )
        return cls(client)

    async def acquire(self, stack_id: str, token: str, ttl_seconds: float) -> str | None:
        key = KEY_PREFIX + stack_id
        try:
            if await self._client.set(key, token, nx=True, px=_millis(ttl_seconds)):
                return None
            holder = await self._client.get(key)
        except Exception as error:
            raise _unavailable(error) from None
        # The key vanished between SET and GET: report an empty holder; a takeover decides.
        return str(holder) if holder is not None else ""

    async def take_over(self, stack_id: str, stale: str, token: str, ttl_seconds: float) -> bool:
        key = KEY_PREFIX + stack_id
        try:
            if not stale:
                return bool(await self._client.set(key, token, nx=True, px=_millis(ttl_seconds)))
            replaced = await self._client.eval(_REPLACE, 1, key, stale, token, _millis(ttl_seconds))
        except Exception as error:
            raise _unavailable(error) from None
        return bool(replaced)

    async def renew(self, stack_id: str, token: str, ttl_seconds: float) -> None:
        # The database already extended the lease; Redis only mirrors it, so failures wait
        # for the next renewal instead of failing the client.
        try:
            await self._client.eval(_RENEW, 1, KEY_PREFIX + stack_id, token, _millis(ttl_seconds))
        except Exception as error:
            log.warning("lock_renew_failed", stack_id=stack_id, error=type(error).__name__)

    async def release(self, stack_id: str, token: str) -> None:
        # A key left behind expires with the lease, and the database overrules it earlier.
        try:
            await self._client.eval(_RELEASE, 1, KEY_PREFIX + stack_id, token)
        except Exception as error:
            log.warning("lock_release_failed", stack_id=stack_id, error=type(error).__name__)

    async def ping(self) -> None:
        """Raises when Redis does not answer (the readiness probe)."""
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _unavailable(error: Exception) -> Unavailable:
    log.warning("lock_unavailable", error=type(error).__name__)
    return Unavailable(REDIS_DOWN)
