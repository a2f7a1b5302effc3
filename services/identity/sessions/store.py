"""The only code issuing SQL for the signed-out console sessions."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from services.common.db import Sessions
from services.identity.sessions.models import RevokedSessionRow


class RevokedSessionStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def revoke(self, session_id: str, expires_at: int, now: int) -> None:
        """Record a signed-out session (again is fine) and forget those expired by now."""
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    delete(RevokedSessionRow).where(RevokedSessionRow.expires_at <= now)
                )
                if await session.get(RevokedSessionRow, session_id) is None:
                    session.add(RevokedSessionRow(session_id=session_id, expires_at=expires_at))
        except IntegrityError:
            # Signed out twice at once: the other call recorded it.
            return

    async def is_revoked(self, session_id: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(RevokedSessionRow.session_id).where(
                    RevokedSessionRow.session_id == session_id
                )
            )
        return found is not None
