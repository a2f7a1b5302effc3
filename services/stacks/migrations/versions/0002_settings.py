"""Stack owner, notification settings and annotations.

Revision ID: stacks_0002
Revises: stacks_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "stacks_0002"
down_revision = "stacks_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Server defaults fill the rows that exist already, on SQLite as on PostgreSQL.
    op.add_column(
        "stacks_stacks",
        sa.Column("owner_login", sa.String(100), server_default="", nullable=False),
    )
    op.add_column(
        "stacks_stacks",
        sa.Column("notify_update_failure", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "stacks_stacks",
        sa.Column("notify_update_success", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "stacks_stack_annotations",
        sa.Column("stack_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("modified_by", sa.String(100), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["stack_id"],
            ["stacks_stacks.id"],
            name="fk_stacks_stack_annotations_stack_id_stacks_stacks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stack_id", "kind", "version", name="pk_stacks_stack_annotations"),
    )


def downgrade() -> None:
    op.drop_table("stacks_stack_annotations")
    with op.batch_alter_table("stacks_stacks") as batch:
        batch.drop_column("notify_update_success")
        batch.drop_column("notify_update_failure")
        batch.drop_column("owner_login")
