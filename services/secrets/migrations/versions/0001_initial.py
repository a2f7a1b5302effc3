"""Stack data keys and the decryption audit trail.

Revision ID: secrets_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "secrets_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets_stack_keys",
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stack_id", name="pk_secrets_stack_keys"),
    )
    op.create_table(
        "secrets_decryption_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("user_login", sa.String(255), nullable=False),
        sa.Column("secret_name", sa.Text(), nullable=False),
        sa.Column("command_name", sa.Text(), nullable=False),
        sa.Column("value_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_secrets_decryption_events"),
    )
    op.create_index(
        "ix_secrets_decryption_events_stack_id", "secrets_decryption_events", ["stack_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_secrets_decryption_events_stack_id", table_name="secrets_decryption_events")
    op.drop_table("secrets_decryption_events")
    op.drop_table("secrets_stack_keys")
