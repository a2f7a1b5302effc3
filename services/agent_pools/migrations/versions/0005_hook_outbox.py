"""The webhook outbox: events written with the change that caused them, until delivered.

Revision ID: agent_pools_0005
Revises: agent_pools_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0005"
down_revision = "agent_pools_0004"
branch_labels = None
depends_on = None

TABLE = "agent_pools_hook_outbox"


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


def downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_available_at", table_name=TABLE)
    op.drop_table(TABLE)
