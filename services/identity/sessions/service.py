"""Use cases of the console's session revocations: sign out, and check a session."""

from __future__ import annotations

from services.common.clock import Clock
from services.identity.sessions.domain import (
    check_session_expiry,
    is_worth_recording,
    validate_session_id,
)
from services.identity.sessions.store import RevokedSessionStore


class ConsoleSessions:
    def __init__(self, store: RevokedSessionStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def revoke(self, session_id: str, expires_at: int) -> None:
        """Remember a signed-out session until its cookie would have expired anyway."""
        session_id = validate_session_id(session_id)
        now = int(self._clock.now())
        check_session_expiry(expires_at, now)
        if is_worth_recording(expires_at, now):
            await self._store.revoke(session_id, expires_at, now)

    async def is_revoked(self, session_id: str) -> bool:
        return await self._store.is_revoked(validate_session_id(session_id))
