"""Tables of the identity service; only its stores (store.py, team_store.py, rows.py) touch
them.

`Base.metadata` is what the identity process migrates, so it also gathers the tables of the
audit log, the console sessions and the OIDC issuers, which depend on this package's base and
never back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from services.identity.audit.models import AuditEventRow
from services.identity.base import Base
from services.identity.oidc.models import OidcIdentityRow, OidcIssuerRow, OidcPolicyRow
from services.identity.sessions.models import RevokedSessionRow

__all__ = [
    "AccessTokenRow",
    "AuditEventRow",
    "Base",
    "BootstrapRow",
    "InviteRow",
    "MembershipRow",
    "OidcIdentityRow",
    "OidcIssuerRow",
    "OidcPolicyRow",
    "OrganizationRow",
    "RevokedSessionRow",
    "TeamMemberRow",
    "TeamRow",
    "TeamStackGrantRow",
    "UserRow",
    "UserStackGrantRow",
]


class UserRow(Base):
    __tablename__ = "identity_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    is_site_admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    avatar_url: Mapped[str] = mapped_column(String(2048), server_default="")
    # Set while a site admin has disabled the user: no token of theirs authenticates.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OrganizationRow(Base):
    __tablename__ = "identity_organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What members hold on every stack unless granted more (0, 101, 102 or 103).
    default_stack_permission: Mapped[int] = mapped_column(Integer, server_default="102")


class MembershipRow(Base):
    __tablename__ = "identity_memberships"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'member', 'admin')", name="role"),)

    organization_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_organizations.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed because authentication loads a user's memberships on every request.
    user_id: Mapped[str] = mapped_column(
        String(32),
        ForeignKey("identity_users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    role: Mapped[str] = mapped_column(String(16))
    # Empty for memberships older than this column.
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AccessTokenRow(Base):
    __tablename__ = "identity_access_tokens"
    __table_args__ = (CheckConstraint("kind IN ('personal', 'organization', 'team')", name="kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The owner of a personal token; empty for organization and team tokens.
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16), server_default="personal")
    organization_id: Mapped[str | None] = mapped_column(
        String(32),
        ForeignKey("identity_organizations.id", ondelete="CASCADE"),
        index=True,
        nullable=True,
    )
    team_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("identity_teams.id", ondelete="CASCADE"), index=True, nullable=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024), server_default="")
    created_by: Mapped[str] = mapped_column(String(100), server_default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=false())
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # SHA-256 hex of the token; the plaintext is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BootstrapRow(Base):
    """At most one row: inserting it is how exactly one first-admin bootstrap wins."""

    __tablename__ = "identity_bootstrap"
    __table_args__ = (CheckConstraint("id = 1", name="singleton"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TeamRow(Base):
    __tablename__ = "identity_teams"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_organizations.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TeamMemberRow(Base):
    __tablename__ = "identity_team_members"
    __table_args__ = (CheckConstraint("role IN ('member', 'admin')", name="role"),)

    team_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(32),
        ForeignKey("identity_users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    role: Mapped[str] = mapped_column(String(16))


class TeamStackGrantRow(Base):
    """A team's permission on one stack, by the stack's stable id."""

    __tablename__ = "identity_team_stack_grants"

    team_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_teams.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed: every stack route looks up the grants of one stack.
    stack_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    permission: Mapped[int] = mapped_column(Integer)


class UserStackGrantRow(Base):
    """A user's explicit permission on one stack of an organization they belong to."""

    __tablename__ = "identity_user_stack_grants"

    stack_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32),
        ForeignKey("identity_users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    organization_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_organizations.id", ondelete="CASCADE"), index=True
    )
    permission: Mapped[int] = mapped_column(Integer)


class InviteRow(Base):
    """An invitation of a registered user (`user_id`), or of an email address without an
    account (`email`, with a one-time link: only the SHA-256 of its secret is kept)."""

    __tablename__ = "identity_invites"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'member', 'admin')", name="role"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    role: Mapped[str] = mapped_column(String(16))
    invited_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Link invitations are kept once used, so a second use is told so.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
