"""Tables of OIDC issuers and their authorization policies; they share the identity
service's metadata and migration history. Only the OIDC store touches them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.identity.base import Base


class OidcIssuerRow(Base):
    """An issuer an organization trusts for token exchange."""

    __tablename__ = "identity_oidc_issuers"
    __table_args__ = (UniqueConstraint("organization_id", "issuer"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(1024))
    # The `iss` tokens carry.
    issuer: Mapped[str] = mapped_column(String(1024))
    # Comma-separated SHA-1 fingerprints.
    thumbprints: Mapped[str] = mapped_column(Text, default="")
    # A JWK Set (JSON) given at registration; "" when the keys are fetched.
    jwks: Mapped[str] = mapped_column(Text, default="")
    max_expiration: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OidcPolicyRow(Base):
    """The authorization policy of one issuer: its definitions as JSON, versioned."""

    __tablename__ = "identity_oidc_policies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_oidc_issuers.id", ondelete="CASCADE"), unique=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A JSON list of definitions (decision, tokenType, teamName, userLogin, rules, ...).
    policies: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcIdentityRow(Base):
    """A console single sign-on identity (issuer and subject) and the user it signs in as."""

    __tablename__ = "identity_oidc_identities"

    issuer: Mapped[str] = mapped_column(String(1024), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
