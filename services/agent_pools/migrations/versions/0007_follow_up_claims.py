"""When a replica claimed a firing's follow-up: a claim left open longer than the stale bound
(its replica stopped, or the follow-up failed) is taken again, so no follow-up is lost.
Firings followed up already keep no claim time.

Revision ID: agent_pools_0007
Revises: agent_pools_0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "agent_pools_0007"
down_revision = "agent_pools_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "agent_pools_schedule_firings",
        sa.Column("follow_up_claimed_at", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("agent_pools_schedule_firings") as batch:
        batch.drop_column("follow_up_claimed_at")
