"""The console's signed-out sessions; the table shares the identity service's metadata and
migration history. Only the sessions store touches it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.identity.base import Base


class RevokedSessionRow(Base):
    """A signed-out console session, kept until its cookie would have expired anyway."""

    __tablename__ = "identity_revoked_sessions"
    __table_args__ = (Index("ix_identity_revoked_sessions_expires_at", "expires_at"),)

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Unix seconds.
    expires_at: Mapped[int] = mapped_column(BigInteger)
