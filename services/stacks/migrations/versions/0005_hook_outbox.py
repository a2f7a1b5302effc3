"""The webhook outbox: events written with the change that caused them, until delivered.
Also whether a stack's notification switches were ever set.

Revision ID: stacks_0005
Revises: stacks_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "stacks_0005"
down_revision = "stacks_0004"
branch_labels = None
depends_on = None

TABLE = "stacks_hook_outbox"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("stack_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("available_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
    )
    op.create_index(f"ix_{TABLE}_available_at", TABLE, ["available_at"])
    with op.batch_alter_table("stacks_stacks") as batch:
        batch.add_column(
            sa.Column("notifications_set", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("stacks_stacks") as batch:
        batch.drop_column("notifications_set")
    op.drop_index(f"ix_{TABLE}_available_at", table_name=TABLE)
    op.drop_table(TABLE)
