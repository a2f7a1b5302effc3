"""Conversations and their messages.

Revision ID: copilot_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "copilot_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "copilot_conversations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copilot_conversations")),
    )
    op.create_index(
        "ix_copilot_conversations_user_id_organization",
        "copilot_conversations",
        ["user_id", "organization"],
        unique=False,
    )
    op.create_table(
        "copilot_messages",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("program", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["copilot_conversations.id"],
            name=op.f("fk_copilot_messages_conversation_id_copilot_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "index", name=op.f("pk_copilot_messages")),
    )


def downgrade() -> None:
    op.drop_table("copilot_messages")
    op.drop_index(
        "ix_copilot_conversations_user_id_organization", table_name="copilot_conversations"
    )
    op.drop_table("copilot_conversations")
