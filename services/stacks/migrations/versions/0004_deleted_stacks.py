"""Deleted stacks kept for their restore window.

Revision ID: stacks_0004
Revises: stacks_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "stacks_0004"
down_revision = "stacks_0003"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stacks_deleted_stacks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization", _name(100), nullable=False),
        sa.Column("project", _name(100), nullable=False),
        sa.Column("name", _name(100), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_by", sa.String(100), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stacks_deleted_stacks"),
    )
    op.create_index(
        "ix_stacks_deleted_stacks_organization", "stacks_deleted_stacks", ["organization"]
    )
    op.create_index("ix_stacks_deleted_stacks_deleted_at", "stacks_deleted_stacks", ["deleted_at"])


def downgrade() -> None:
    op.drop_table("stacks_deleted_stacks")
