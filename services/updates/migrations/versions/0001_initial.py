"""Updates, leases, checkpoints, journal entries, engine events and stack versions.

Revision ID: updates_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "updates_0001"
down_revision = None
branch_labels = None
depends_on = None


def _update_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["update_id"],
        ["updates_updates.id"],
        name=f"fk_{table}_update_id_updates_updates",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "updates_stacks",
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("active_update_id", sa.String(32), nullable=True),
        sa.Column("last_update_at", sa.Float(), nullable=True),
        sa.Column("resource_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("stack_id", name="pk_updates_stacks"),
    )
    op.create_table(
        "updates_updates",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("is_dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_finalised", sa.Boolean(), nullable=False),
        sa.Column("program", sa.LargeBinary(), nullable=False),
        sa.Column("config", sa.LargeBinary(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("base_version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("lease_token_hash", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("journal_version", sa.Integer(), nullable=False),
        sa.Column("checkpoint_sequence", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_hash", sa.String(64), nullable=False),
        sa.Column("materialised_sequence", sa.BigInteger(), nullable=False),
        sa.Column("pending_delta_bytes", sa.BigInteger(), nullable=False),
        sa.Column("pending_delta_count", sa.Integer(), nullable=False),
        sa.Column("journal_entry_count", sa.BigInteger(), nullable=False),
        sa.Column("resource_changes", sa.JSON(), nullable=True),
        sa.Column("resource_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_updates_updates"),
    )
    op.create_index(
        "ix_updates_updates_stack_id_version", "updates_updates", ["stack_id", "version"]
    )
    op.create_table(
        "updates_working_checkpoints",
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        _update_fk("updates_working_checkpoints"),
        sa.PrimaryKeyConstraint("update_id", name="pk_updates_working_checkpoints"),
    )
    op.create_table(
        "updates_checkpoint_deltas",
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("edits", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        _update_fk("updates_checkpoint_deltas"),
        sa.PrimaryKeyConstraint("update_id", "sequence", name="pk_updates_checkpoint_deltas"),
    )
    op.create_table(
        "updates_journal_entries",
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("sequence_id", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _update_fk("updates_journal_entries"),
        sa.PrimaryKeyConstraint("update_id", "sequence_id", name="pk_updates_journal_entries"),
    )
    op.create_table(
        "updates_engine_events",
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _update_fk("updates_engine_events"),
        sa.PrimaryKeyConstraint("update_id", "sequence", name="pk_updates_engine_events"),
    )
    op.create_table(
        "updates_log_entries",
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("index", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fields", sa.LargeBinary(), nullable=False),
        _update_fk("updates_log_entries"),
        sa.PrimaryKeyConstraint("update_id", "index", name="pk_updates_log_entries"),
    )
    op.create_table(
        "updates_stack_versions",
        sa.Column("stack_id", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("update_id", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("resource_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stack_id", "version", name="pk_updates_stack_versions"),
    )


def downgrade() -> None:
    op.drop_table("updates_stack_versions")
    op.drop_table("updates_log_entries")
    op.drop_table("updates_engine_events")
    op.drop_table("updates_journal_entries")
    op.drop_table("updates_checkpoint_deltas")
    op.drop_table("updates_working_checkpoints")
    op.drop_index("ix_updates_updates_stack_id_version", table_name="updates_updates")
    op.drop_table("updates_updates")
    op.drop_table("updates_stacks")
