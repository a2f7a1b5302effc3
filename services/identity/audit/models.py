"""The audit log's table; it shares the identity service's metadata and migration history.

Only the audit store touches it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.identity.base import Base


class AuditEventRow(Base):
    __tablename__ = "identity_audit_events"
    __table_args__ = (
        # Listing an organization's entries newest first.
        Index("ix_identity_audit_events_organization_time_micros", "organization", "time_micros"),
        # The instance-wide export and the retention prune.
        Index("ix_identity_audit_events_time_micros", "time_micros"),
    )

    # Breaks ties between entries of the same microsecond when paging.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time_micros: Mapped[int] = mapped_column(BigInteger)
    organization: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(String(1024))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_login: Mapped[str] = mapped_column(String(100))
    actor_name: Mapped[str] = mapped_column(String(255))
    token_id: Mapped[str] = mapped_column(String(64))
    token_name: Mapped[str] = mapped_column(String(255))
    source_ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))
    status: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    request_id: Mapped[str] = mapped_column(String(128))
    is_org_admin_required: Mapped[bool] = mapped_column(Boolean)
    is_auth_failure: Mapped[bool] = mapped_column(Boolean)
