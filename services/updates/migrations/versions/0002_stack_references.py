"""The StackReference names each stack's newest version reads (downstream references).

Revision ID: updates_0002
Revises: updates_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "updates_0002"
down_revision = "updates_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "updates_stack_references",
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stack_id", "name", name="pk_updates_stack_references"),
    )
    op.create_index("ix_updates_stack_references_name", "updates_stack_references", ["name"])


def downgrade() -> None:
    op.drop_index("ix_updates_stack_references_name", table_name="updates_stack_references")
    op.drop_table("updates_stack_references")
