"""Deployment schedules and their firings, drift runs, and paused deployments.

Revision ID: agent_pools_0003
Revises: agent_pools_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0003"
down_revision = "agent_pools_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_pools_schedules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("stack", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("once_at", sa.Float(), nullable=True),
        sa.Column("next_at", sa.Float(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_by_user_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("modified_at", sa.Float(), nullable=False),
        sa.Column("last_executed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_schedules")),
    )
    op.create_index(
        "ix_agent_pools_schedules_stack_id", "agent_pools_schedules", ["stack_id"], unique=False
    )
    op.create_index(
        "ix_agent_pools_schedules_next_at", "agent_pools_schedules", ["next_at"], unique=False
    )
    op.create_table(
        "agent_pools_schedule_firings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("executed_at", sa.Float(), nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("is_followed_up", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["agent_pools_schedules.id"],
            name=op.f("fk_agent_pools_schedule_firings_schedule_id_agent_pools_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_schedule_firings")),
    )
    op.create_index(
        "ix_agent_pools_schedule_firings_schedule_id_due_at",
        "agent_pools_schedule_firings",
        ["schedule_id", "due_at"],
        unique=True,
    )
    op.create_index(
        "ix_agent_pools_schedule_firings_stack_id",
        "agent_pools_schedule_firings",
        ["stack_id"],
        unique=False,
    )
    op.create_index(
        "ix_agent_pools_schedule_firings_is_followed_up",
        "agent_pools_schedule_firings",
        ["is_followed_up"],
        unique=False,
    )
    op.create_table(
        "agent_pools_drift_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("deployment_id", sa.String(length=32), nullable=False),
        sa.Column("auto_remediate", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("drift_detected", sa.Boolean(), nullable=True),
        sa.Column("resource_changes", sa.JSON(), nullable=False),
        sa.Column("remediation_deployment_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_pools_drift_runs")),
        sa.UniqueConstraint("deployment_id", name=op.f("uq_agent_pools_drift_runs_deployment_id")),
    )
    op.create_index(
        "ix_agent_pools_drift_runs_stack_id", "agent_pools_drift_runs", ["stack_id"], unique=False
    )
    op.create_table(
        "agent_pools_deployment_pauses",
        sa.Column("organization", sa.String(length=100), nullable=False),
        sa.Column("stack_id", sa.String(length=255), nullable=False),
        sa.Column("paused_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization", "stack_id", name=op.f("pk_agent_pools_deployment_pauses")
        ),
    )


def downgrade() -> None:
    op.drop_table("agent_pools_deployment_pauses")
    op.drop_index("ix_agent_pools_drift_runs_stack_id", table_name="agent_pools_drift_runs")
    op.drop_table("agent_pools_drift_runs")
    op.drop_table("agent_pools_schedule_firings")
    op.drop_index("ix_agent_pools_schedules_next_at", table_name="agent_pools_schedules")
    op.drop_index("ix_agent_pools_schedules_stack_id", table_name="agent_pools_schedules")
    op.drop_table("agent_pools_schedules")
