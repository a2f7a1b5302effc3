"""OIDC issuers and their authorization policies (token exchange for CI logins), and the
identities console single sign-on links to users.

Revision ID: identity_0006_oidc_issuers
Revises: identity_0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0006_oidc_issuers"
down_revision = "identity_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_oidc_issuers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("thumbprints", sa.Text(), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=False),
        sa.Column("max_expiration", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["identity_organizations.id"],
            name=op.f("fk_identity_oidc_issuers_organization_id_identity_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_oidc_issuers")),
        sa.UniqueConstraint(
            "organization_id",
            "issuer",
            name=op.f("uq_identity_oidc_issuers_organization_id_issuer"),
        ),
    )
    op.create_index(
        "ix_identity_oidc_issuers_organization_id", "identity_oidc_issuers", ["organization_id"]
    )
    op.create_table(
        "identity_oidc_policies",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("issuer_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("policies", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["identity_oidc_issuers.id"],
            name=op.f("fk_identity_oidc_policies_issuer_id_identity_oidc_issuers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_oidc_policies")),
        sa.UniqueConstraint("issuer_id", name=op.f("uq_identity_oidc_policies_issuer_id")),
    )
    op.create_table(
        "identity_oidc_identities",
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_oidc_identities_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issuer", "subject", name=op.f("pk_identity_oidc_identities")),
    )
    op.create_index("ix_identity_oidc_identities_user_id", "identity_oidc_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_oidc_identities_user_id", table_name="identity_oidc_identities")
    op.drop_table("identity_oidc_identities")
    op.drop_table("identity_oidc_policies")
    op.drop_index("ix_identity_oidc_issuers_organization_id", table_name="identity_oidc_issuers")
    op.drop_table("identity_oidc_issuers")
