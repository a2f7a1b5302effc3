"""Users' avatar URL and disabled state; invitation links for email addresses.

Revision ID: identity_0005
Revises: identity_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0005"
down_revision = "identity_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_users") as batch:
        batch.add_column(
            sa.Column("avatar_url", sa.String(2048), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("identity_invites") as batch:
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=True)
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("secret_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint(op.f("uq_identity_invites_secret_hash"), ["secret_hash"])


def downgrade() -> None:
    op.execute("DELETE FROM identity_invites WHERE user_id IS NULL")
    with op.batch_alter_table("identity_invites") as batch:
        batch.drop_constraint(op.f("uq_identity_invites_secret_hash"), type_="unique")
        batch.drop_column("used_at")
        batch.drop_column("expires_at")
        batch.drop_column("secret_hash")
        batch.drop_column("email")
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=False)
    with op.batch_alter_table("identity_users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("avatar_url")
