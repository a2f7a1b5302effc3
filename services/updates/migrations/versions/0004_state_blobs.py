"""Stack state versions in the blob store: the digest naming each version's blob, when
retention pruned a version, the garbage collector's candidates, and retention settings.

Revision ID: updates_0004
Revises: updates_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "updates_0004"
down_revision = "updates_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows keep their text in `data` (blob_digest NULL) until `cairn migrate` moves
    # it into the blob store; reads take it from either place meanwhile.
    with op.batch_alter_table("updates_stack_versions") as batch:
        batch.add_column(sa.Column("blob_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pruned_at", sa.Float(), nullable=True))
        batch.create_index("ix_updates_stack_versions_blob_digest", ["blob_digest"])
    op.create_table(
        "updates_blob_candidates",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
    )
    op.create_table(
        "updates_retention",
        sa.Column("organization", sa.String(255), primary_key=True),
        sa.Column("stack_id", sa.String(255), primary_key=True),
        sa.Column("keep_versions", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("updates_retention")
    op.drop_table("updates_blob_candidates")
    with op.batch_alter_table("updates_stack_versions") as batch:
        batch.drop_index("ix_updates_stack_versions_blob_digest")
        batch.drop_column("pruned_at")
        batch.drop_column("blob_digest")
