"""Agent pools, agents, deployment settings, deployments and their log lines.

Revision ID: agent_pools_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_pools_deployments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("stack", sa.String(length=100), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pool_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("modified_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("is_cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_deployments")),
    )
    op.create_index(
        "ix_agent_pools_deployments_organization_created_at",
        "agent_pools_deployments",
        ["organization", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_agent_pools_deployments_pool_id_status",
        "agent_pools_deployments",
        ["pool_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_agent_pools_deployments_stack_id_version",
        "agent_pools_deployments",
        ["stack_id", "version"],
        unique=True,
    )
    op.create_table(
        "agent_pools_pools",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_pools")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_agent_pools_pools_token_hash")),
    )
    op.create_index(
        op.f("ix_agent_pools_pools_organization"),
        "agent_pools_pools",
        ["organization"],
        unique=False,
    )
    op.create_table(
        "agent_pools_settings",
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("agent_pool_id", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stack_id", name=op.f("pk_agent_pools_settings")),
    )
    op.create_index(
        op.f("ix_agent_pools_settings_agent_pool_id"),
        "agent_pools_settings",
        ["agent_pool_id"],
        unique=False,
    )
    op.create_table(
        "agent_pools_agents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("pool_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.String(length=32), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools_pools.id"],
            name=op.f("fk_agent_pools_agents_pool_id_agent_pools_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_agents")),
    )
    op.create_index(
        op.f("ix_agent_pools_agents_pool_id"), "agent_pools_agents", ["pool_id"], unique=False
    )
    op.create_table(
        "agent_pools_log_lines",
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["agent_pools_deployments.id"],
            name=op.f("fk_agent_pools_log_lines_deployment_id_agent_pools_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", "index", name=op.f("pk_agent_pools_log_lines")),
    )


def downgrade() -> None:
    op.drop_table("agent_pools_log_lines")
    op.drop_index(op.f("ix_agent_pools_agents_pool_id"), table_name="agent_pools_agents")
    op.drop_table("agent_pools_agents")
    op.drop_index(op.f("ix_agent_pools_settings_agent_pool_id"), table_name="agent_pools_settings")
    op.drop_table("agent_pools_settings")
    op.drop_index(op.f("ix_agent_pools_pools_organization"), table_name="agent_pools_pools")
    op.drop_table("agent_pools_pools")
    op.drop_index(
        "ix_agent_pools_deployments_stack_id_version", table_name="agent_pools_deployments"
    )
    op.drop_index("ix_agent_pools_deployments_pool_id_status", table_name="agent_pools_deployments")
    op.drop_index(
        "ix_agent_pools_deployments_organization_created_at", table_name="agent_pools_deployments"
    )
    op.drop_table("agent_pools_deployments")
