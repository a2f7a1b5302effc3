"""Webhooks and their delivery attempts.

Revision ID: stacks_0003
Revises: stacks_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "stacks_0003"
down_revision = "stacks_0002"
branch_labels = None
depends_on = None


def _name(length: int) -> sa.String:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stacks_hooks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization", _name(100), nullable=False),
        sa.Column("stack_id", sa.String(32), nullable=False),
        sa.Column("name", _name(100), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("payload_url", sa.String(2048), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stacks_hooks"),
        sa.UniqueConstraint(
            "organization", "stack_id", "name", name="uq_stacks_hooks_organization_stack_id_name"
        ),
    )
    op.create_table(
        "stacks_hook_deliveries",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("hook_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("request_url", sa.String(2048), nullable=False),
        sa.Column("request_headers", sa.Text(), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("response_headers", sa.Text(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hook_id"],
            ["stacks_hooks.id"],
            name="fk_stacks_hook_deliveries_hook_id_stacks_hooks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stacks_hook_deliveries"),
    )
    op.create_index(
        "ix_stacks_hook_deliveries_hook_id_timestamp",
        "stacks_hook_deliveries",
        ["hook_id", "timestamp"],
    )


def downgrade() -> None:
    op.drop_index("ix_stacks_hook_deliveries_hook_id_timestamp", "stacks_hook_deliveries")
    op.drop_table("stacks_hook_deliveries")
    op.drop_table("stacks_hooks")
