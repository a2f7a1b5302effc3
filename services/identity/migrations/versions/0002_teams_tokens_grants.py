"""Teams, stack grants, invitations, organization and team tokens, default stack permission.

Revision ID: identity_0002
Revises: identity_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_teams",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["identity_organizations.id"],
            name=op.f("fk_identity_teams_organization_id_identity_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_teams")),
        sa.UniqueConstraint(
            "organization_id", "name", name=op.f("uq_identity_teams_organization_id_name")
        ),
    )
    op.create_table(
        "identity_team_members",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.CheckConstraint(
            "role IN ('member', 'admin')", name=op.f("ck_identity_team_members_role")
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["identity_teams.id"],
            name=op.f("fk_identity_team_members_team_id_identity_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_team_members_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_identity_team_members")),
    )
    op.create_index(op.f("ix_identity_team_members_user_id"), "identity_team_members", ["user_id"])
    op.create_table(
        "identity_team_stack_grants",
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("stack_id", sa.String(64), nullable=False),
        sa.Column("permission", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["identity_teams.id"],
            name=op.f("fk_identity_team_stack_grants_team_id_identity_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "stack_id", name=op.f("pk_identity_team_stack_grants")),
    )
    op.create_index(
        op.f("ix_identity_team_stack_grants_stack_id"), "identity_team_stack_grants", ["stack_id"]
    )
    op.create_table(
        "identity_user_stack_grants",
        sa.Column("stack_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.String(32), nullable=False),
        sa.Column("permission", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["identity_organizations.id"],
            name=op.f("fk_identity_user_stack_grants_organization_id_identity_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_user_stack_grants_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("stack_id", "user_id", name=op.f("pk_identity_user_stack_grants")),
    )
    op.create_index(
        op.f("ix_identity_user_stack_grants_user_id"), "identity_user_stack_grants", ["user_id"]
    )
    op.create_index(
        op.f("ix_identity_user_stack_grants_organization_id"),
        "identity_user_stack_grants",
        ["organization_id"],
    )
    op.create_table(
        "identity_invites",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'member', 'admin')", name=op.f("ck_identity_invites_role")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["identity_organizations.id"],
            name=op.f("fk_identity_invites_organization_id_identity_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_invites_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_invites")),
    )
    op.create_index(
        op.f("ix_identity_invites_organization_id"), "identity_invites", ["organization_id"]
    )
    op.create_index(op.f("ix_identity_invites_user_id"), "identity_invites", ["user_id"])
    with op.batch_alter_table("identity_organizations") as batch:
        batch.add_column(
            sa.Column(
                "default_stack_permission", sa.Integer(), server_default="102", nullable=False
            )
        )
    with op.batch_alter_table("identity_memberships") as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("identity_access_tokens") as batch:
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=True)
        batch.add_column(
            sa.Column("kind", sa.String(16), server_default="personal", nullable=False)
        )
        batch.add_column(sa.Column("organization_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("team_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("description", sa.String(1024), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("created_by", sa.String(100), server_default="", nullable=False))
        batch.add_column(
            sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(
            op.f("ck_identity_access_tokens_kind"),
            "kind IN ('personal', 'organization', 'team')",
        )
        batch.create_foreign_key(
            op.f("fk_identity_access_tokens_organization_id_identity_organizations"),
            "identity_organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_foreign_key(
            op.f("fk_identity_access_tokens_team_id_identity_teams"),
            "identity_teams",
            ["team_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_identity_access_tokens_organization_id"), ["organization_id"])
        batch.create_index(op.f("ix_identity_access_tokens_team_id"), ["team_id"])


def downgrade() -> None:
    with op.batch_alter_table("identity_access_tokens") as batch:
        batch.drop_index(op.f("ix_identity_access_tokens_team_id"))
        batch.drop_index(op.f("ix_identity_access_tokens_organization_id"))
        batch.drop_constraint(
            op.f("fk_identity_access_tokens_team_id_identity_teams"), type_="foreignkey"
        )
        batch.drop_constraint(
            op.f("fk_identity_access_tokens_organization_id_identity_organizations"),
            type_="foreignkey",
        )
        batch.drop_constraint(op.f("ck_identity_access_tokens_kind"), type_="check")
        for column in (
            "rotated_at",
            "is_admin",
            "created_by",
            "description",
            "team_id",
            "organization_id",
            "kind",
        ):
            batch.drop_column(column)
        batch.alter_column("user_id", existing_type=sa.String(32), nullable=False)
    with op.batch_alter_table("identity_memberships") as batch:
        batch.drop_column("created_at")
    with op.batch_alter_table("identity_organizations") as batch:
        batch.drop_column("default_stack_permission")
    op.drop_index(op.f("ix_identity_invites_user_id"), table_name="identity_invites")
    op.drop_index(op.f("ix_identity_invites_organization_id"), table_name="identity_invites")
    op.drop_table("identity_invites")
    op.drop_index(
        op.f("ix_identity_user_stack_grants_organization_id"),
        table_name="identity_user_stack_grants",
    )
    op.drop_index(
        op.f("ix_identity_user_stack_grants_user_id"), table_name="identity_user_stack_grants"
    )
    op.drop_table("identity_user_stack_grants")
    op.drop_index(
        op.f("ix_identity_team_stack_grants_stack_id"), table_name="identity_team_stack_grants"
    )
    op.drop_table("identity_team_stack_grants")
    op.drop_index(op.f("ix_identity_team_members_user_id"), table_name="identity_team_members")
    op.drop_table("identity_team_members")
    op.drop_table("identity_teams")
