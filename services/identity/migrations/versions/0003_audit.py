"""The audit log.

Revision ID: identity_0003
Revises: identity_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0003"
down_revision = "identity_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time_micros", sa.BigInteger(), nullable=False),
        sa.Column("organization", sa.String(100), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_login", sa.String(100), nullable=False),
        sa.Column("actor_name", sa.String(255), nullable=False),
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("token_name", sa.String(255), nullable=False),
        sa.Column("source_ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("is_org_admin_required", sa.Boolean(), nullable=False),
        sa.Column("is_auth_failure", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_audit_events")),
    )
    op.create_index(
        "ix_identity_audit_events_organization_time_micros",
        "identity_audit_events",
        ["organization", "time_micros"],
    )
    op.create_index(
        "ix_identity_audit_events_time_micros", "identity_audit_events", ["time_micros"]
    )


def downgrade() -> None:
    op.drop_index("ix_identity_audit_events_time_micros", table_name="identity_audit_events")
    op.drop_index(
        "ix_identity_audit_events_organization_time_micros", table_name="identity_audit_events"
    )
    op.drop_table("identity_audit_events")
