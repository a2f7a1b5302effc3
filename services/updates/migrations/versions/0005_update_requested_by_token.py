"""The access token (its id) each update was created with, linking a deployment's updates.

Revision ID: updates_0005
Revises: updates_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "updates_0005"
down_revision = "updates_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Earlier updates keep an empty id: no deployment claims them.
    with op.batch_alter_table("updates_updates") as batch:
        batch.add_column(
            sa.Column(
                "requested_by_token", sa.String(64), nullable=False, server_default=sa.text("''")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("updates_updates") as batch:
        batch.drop_column("requested_by_token")
