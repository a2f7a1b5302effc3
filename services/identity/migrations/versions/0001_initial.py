"""Users, organizations, memberships, access tokens and the bootstrap marker.

Revision ID: identity_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("login", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("is_site_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_users")),
        sa.UniqueConstraint("login", name=op.f("uq_identity_users_login")),
    )
    op.create_table(
        "identity_organizations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_identity_organizations_name")),
    )
    op.create_table(
        "identity_memberships",
        sa.Column("organization_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'member', 'admin')", name=op.f("ck_identity_memberships_role")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["identity_organizations.id"],
            name=op.f("fk_identity_memberships_organization_id_identity_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_memberships_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "user_id", name=op.f("pk_identity_memberships")),
    )
    op.create_index(op.f("ix_identity_memberships_user_id"), "identity_memberships", ["user_id"])
    op.create_table(
        "identity_access_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_access_tokens_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_identity_access_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_identity_access_tokens_user_id"), "identity_access_tokens", ["user_id"]
    )
    op.create_table(
        "identity_bootstrap",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_identity_bootstrap_singleton")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_bootstrap")),
    )


def downgrade() -> None:
    op.drop_table("identity_bootstrap")
    op.drop_index(op.f("ix_identity_access_tokens_user_id"), table_name="identity_access_tokens")
    op.drop_table("identity_access_tokens")
    op.drop_index(op.f("ix_identity_memberships_user_id"), table_name="identity_memberships")
    op.drop_table("identity_memberships")
    op.drop_table("identity_organizations")
    op.drop_table("identity_users")
