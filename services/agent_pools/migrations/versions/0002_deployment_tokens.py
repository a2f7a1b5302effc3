"""Who queued a deployment (as a user id) and the access token minted for its job.

Revision ID: agent_pools_0002
Revises: agent_pools_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0002"
down_revision = "agent_pools_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills the rows that exist already, on SQLite as on PostgreSQL.
    op.add_column(
        "agent_pools_deployments",
        sa.Column("requested_by_user_id", sa.String(64), server_default="", nullable=False),
    )
    op.add_column(
        "agent_pools_deployments",
        sa.Column("access_token_id", sa.String(64), nullable=True),
    )
    op.create_index(
        "ix_agent_pools_deployments_access_token_id",
        "agent_pools_deployments",
        ["access_token_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_agent_pools_deployments_access_token_id", table_name="agent_pools_deployments"
    )
    with op.batch_alter_table("agent_pools_deployments") as batch:
        batch.drop_column("access_token_id")
        batch.drop_column("requested_by_user_id")
