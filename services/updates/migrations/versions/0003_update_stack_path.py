"""The stack path each update was created under, which its update-token calls must name.

Revision ID: updates_0003
Revises: updates_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "updates_0003"
down_revision = "updates_0002"
branch_labels = None
depends_on = None

COLUMNS = ("stack_organization", "stack_project", "stack_name")


def upgrade() -> None:
    # Rows made before this revision keep empty names: update-token calls for them are refused
    # (an update running across the upgrade must be restarted).
    with op.batch_alter_table("updates_updates") as batch:
        for name in COLUMNS:
            batch.add_column(
                sa.Column(name, sa.String(255), nullable=False, server_default=sa.text("''"))
            )


def downgrade() -> None:
    with op.batch_alter_table("updates_updates") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
