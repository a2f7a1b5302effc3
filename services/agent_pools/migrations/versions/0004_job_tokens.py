"""The access tokens minted for deployments' jobs (ids only), kept to link their updates.

Revision ID: agent_pools_0004
Revises: agent_pools_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0004"
down_revision = "agent_pools_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_pools_job_tokens",
        sa.Column("token_id", sa.String(64), nullable=False),
        sa.Column("deployment_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["agent_pools_deployments.id"],
            name=op.f("fk_agent_pools_job_tokens_deployment_id_agent_pools_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_agent_pools_job_tokens")),
    )
    op.create_index(
        op.f("ix_agent_pools_job_tokens_deployment_id"),
        "agent_pools_job_tokens",
        ["deployment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_agent_pools_job_tokens_deployment_id", table_name="agent_pools_job_tokens")
    op.drop_table("agent_pools_job_tokens")
