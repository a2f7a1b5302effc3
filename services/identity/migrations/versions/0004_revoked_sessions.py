"""Signed-out console sessions.

Revision ID: identity_0004
Revises: identity_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0004"
down_revision = "identity_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_revoked_sessions",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_identity_revoked_sessions")),
    )
    op.create_index(
        "ix_identity_revoked_sessions_expires_at", "identity_revoked_sessions", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_identity_revoked_sessions_expires_at", table_name="identity_revoked_sessions")
    op.drop_table("identity_revoked_sessions")
