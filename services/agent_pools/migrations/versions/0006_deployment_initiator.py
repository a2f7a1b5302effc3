"""What queued each deployment: the REST API, a schedule, drift detection or remediation, or
a stack's time to live. Deployments queued before are the API's.

Revision ID: agent_pools_0006
Revises: agent_pools_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0006"
down_revision = "agent_pools_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills the rows that exist already, on SQLite as on PostgreSQL.
    op.add_column(
        "agent_pools_deployments",
        sa.Column("initiator", sa.String(32), server_default="api", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("agent_pools_deployments") as batch:
        batch.drop_column("initiator")
