"""What a conversation is about so far: the last skill used and the names it resolved.

Revision ID: copilot_0002
Revises: copilot_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "copilot_0002"
down_revision = "copilot_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("copilot_conversations") as batch:
        batch.add_column(sa.Column("focus", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("copilot_conversations") as batch:
        batch.drop_column("focus")
