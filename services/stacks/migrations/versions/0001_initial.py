"""Stacks and their tags.

Revision ID: stacks_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "stacks_0001"
down_revision = None
branch_labels = None
depends_on = None


def _name() -> sa.types.TypeEngine[str]:
    # Bytewise order on PostgreSQL too, as in models.py.
    return sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stacks_stacks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization", _name(), nullable=False),
        sa.Column("project", _name(), nullable=False),
        sa.Column("name", _name(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stacks_stacks"),
        sa.UniqueConstraint(
            "organization", "project", "name", name="uq_stacks_stacks_organization_project_name"
        ),
    )
    op.create_table(
        "stacks_stack_tags",
        sa.Column("stack_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.ForeignKeyConstraint(
            ["stack_id"],
            ["stacks_stacks.id"],
            name="fk_stacks_stack_tags_stack_id_stacks_stacks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stack_id", "name", name="pk_stacks_stack_tags"),
    )
    op.create_index(
        "ix_stacks_stack_tags_name_value", "stacks_stack_tags", ["name", "value"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_stacks_stack_tags_name_value", table_name="stacks_stack_tags")
    op.drop_table("stacks_stack_tags")
    op.drop_table("stacks_stacks")
