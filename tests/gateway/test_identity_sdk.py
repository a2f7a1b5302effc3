"""Users, organizations, members, invitations, teams, tokens and stack access through the
official Python SDK (`pulumi-cloud-sdk`).

The SDK refuses answers missing a required field or carrying an unknown enum value, so each
call returning proves the shape; the values are checked as well. The SDK blocks (urllib),
so every call runs in a thread.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

try:
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.apis.users_api_ import UsersApi
    from pulumi_cloud_sdk.models import (
        AddOrganizationMemberRequest,
        BatchCreateOrganizationInviteRequest,
        CreateOrgAccessTokenRequest,
        CreateOrganizationInviteRequest,
        CreatePersonalAccessTokenRequest,
        CreatePulumiTeamRequest,
        CreateTeamAccessTokenRequest,
        MemberAction,
        OrganizationInviteRole,
        OrganizationRole,
        StackPermission,
        TeamStackPermission,
        UpdateOrganizationMemberRequest,
        UpdateOrganizationRequest,
        UpdateTeamRequest,
        UpdateTeamStackPermissionsRequest,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.conftest import ADMIN_TOKEN, Cairn
from tests.gateway.sdk import SdkCaller

ORG = "admin"
T = TypeVar("T")


class Sdk(SdkCaller):
    """The SDK's user, organization and stack APIs on the test server, as one caller."""

    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        client = self.client
        self.users = UsersApi(client)
        self.orgs = OrganizationsApi(client)
        self.stacks = StacksApi(client)

    async def status(self, method: Callable[..., Any], *args: Any) -> int:
        """The HTTP status of a call the server refuses."""
        with pytest.raises(urllib.error.HTTPError) as refused:
            await self(method, *args)
        return refused.value.code


async def test_users_and_tokens_through_the_sdk(cairn: Cairn) -> None:
    sdk = Sdk(cairn)
    user = await sdk(sdk.users.get_current_user)
    assert user.github_login == "admin" and user.site_admin
    assert [(o.github_login, o.role.value) for o in user.organizations] == [("admin", "admin")]
    default = await sdk(sdk.users.get_default_organization)
    assert default.git_hub_login == "admin"

    created = await sdk(
        sdk.users.create_personal_token,
        CreatePersonalAccessTokenRequest(description="sdk laptop", expires=0),
    )
    assert created.token_value.startswith("pul-")
    listed = await sdk(sdk.users.list_personal_tokens)
    mine = next(t for t in listed.tokens if t.id == created.id)
    assert (mine.description, mine.expires, mine.last_used, mine.type.value) == (
        "sdk laptop",
        0,
        0,
        "personal",
    )
    fresh = Sdk(cairn, created.token_value)
    assert (await fresh(fresh.users.get_current_user)).github_login == "admin"
    await sdk(sdk.users.delete_personal_token, created.id)
    assert await fresh.status(fresh.users.get_current_user) == 401
    assert created.id not in [t.id for t in (await sdk(sdk.users.list_personal_tokens)).tokens]


async def test_organizations_members_and_invites_through_the_sdk(cairn: Cairn) -> None:
    sdk = Sdk(cairn)
    for login in ("bob", "carol"):
        await cairn.new_user(login)
    carol = Sdk(cairn, await cairn.new_user("dave"))

    org = await sdk(sdk.orgs.get_organization, ORG)
    assert (org.github_login, org.name) == (ORG, ORG)
    metadata = await sdk(
        sdk.orgs.update_organization_settings,
        ORG,
        UpdateOrganizationRequest(set_default_stack_permission=StackPermission.Read),
    )
    assert metadata.default_stack_permission == StackPermission.Read
    assert (metadata.member_count, metadata.user_role.value) == (1, "admin")

    added = await sdk(
        sdk.orgs.add_organization_member,
        ORG,
        "bob",
        AddOrganizationMemberRequest(role=OrganizationRole.Member),
    )
    assert (added.user.github_login, added.role.value) == ("bob", "member")
    await sdk(
        sdk.orgs.update_organization_member,
        ORG,
        "bob",
        UpdateOrganizationMemberRequest(role=OrganizationRole.Admin),
    )
    await sdk(
        sdk.orgs.update_organization_member,
        ORG,
        "bob",
        UpdateOrganizationMemberRequest(role=OrganizationRole.Member, fga_role_id="viewer"),
    )
    members = await sdk(sdk.orgs.list_organization_members, ORG)
    assert [(m.user.github_login, m.role.value, m.fga_role.id) for m in members.members] == [
        ("admin", "admin", "admin"),
        ("bob", "member", "viewer"),
    ]
    await sdk(sdk.orgs.delete_organization_member, ORG, "bob")
    assert await sdk.status(sdk.orgs.delete_organization_member, ORG, "admin") == 409

    sent = await sdk(
        sdk.orgs.batch_create_org_invite_email,
        ORG,
        BatchCreateOrganizationInviteRequest(
            invites=[
                CreateOrganizationInviteRequest(email="carol", role=OrganizationInviteRole.Member),
                CreateOrganizationInviteRequest(email="dave", role=OrganizationInviteRole.Admin),
            ]
        ),
    )
    assert len(sent.sent_invites) == 2 and sent.failed_invites == []
    pending = await sdk(sdk.orgs.list_org_invites, ORG)
    assert [(i.email, i.role.value) for i in pending.invites] == [
        ("carol", "member"),
        ("dave", "admin"),
    ]
    carol_invite, dave_invite = (i.id for i in pending.invites)
    await sdk(sdk.orgs.cancel_org_invite, ORG, carol_invite)
    mine = await carol(carol.users.list_user_org_invites)
    assert [i.id for i in mine.invites] == [dave_invite]
    await carol(carol.orgs.accept_org_invite, ORG, dave_invite)
    assert (await sdk(sdk.orgs.list_org_invites, ORG)).invites == []
    joined = await carol(carol.users.get_current_user)
    assert ("admin", "admin") in [(o.github_login, o.role.value) for o in joined.organizations]


async def test_teams_tokens_and_stack_access_through_the_sdk(cairn: Cairn) -> None:
    sdk = Sdk(cairn)
    await cairn.new_user("erin")
    await cairn.json("POST", f"/api/orgs/{ORG}/members/erin", body={"role": "member"})
    for stack in ("dev", "prod"):
        await cairn.json("POST", f"/api/stacks/{ORG}/web", body={"stackName": stack})

    team = await sdk(
        sdk.orgs.create_pulumi_team,
        ORG,
        CreatePulumiTeamRequest(name="ops", display_name="Operations", description="on call"),
    )
    assert (team.name, team.display_name, team.kind.value) == ("ops", "Operations", "pulumi")
    await sdk(
        sdk.orgs.update_team,
        ORG,
        "ops",
        UpdateTeamRequest(
            member_action=MemberAction.Add,
            member="erin",
            add_stack_permission=TeamStackPermission(
                project_name="web", stack_name="dev", permission=StackPermission.Write
            ),
        ),
    )
    await sdk(
        sdk.stacks.update_team_stack_permissions,
        ORG,
        "web",
        "prod",
        "ops",
        UpdateTeamStackPermissionsRequest(permissions=StackPermission.Read),
    )
    got = await sdk(sdk.orgs.get_team, ORG, "ops")
    assert sorted(m.github_login for m in got.members) == ["admin", "erin"]
    assert sorted((s.stack_name, s.permission.value) for s in got.stacks) == [
        ("dev", 102),
        ("prod", 101),
    ]
    teams = await sdk(sdk.orgs.list_teams, ORG)
    assert [t.name for t in teams.teams] == ["ops"]
    erin_teams = await sdk(sdk.orgs.get_organization_member_teams, ORG, "erin")
    assert erin_teams.teams == ["ops"]

    by_stack = await sdk(sdk.stacks.list_stack_teams, ORG, "web", "dev")
    assert [(t.name, t.permission.value, t.is_member) for t in by_stack.teams] == [
        ("ops", 102, True)
    ]
    await cairn.json(
        "PATCH", f"/api/stacks/{ORG}/web/dev/collaborators/erin", 204, body={"permission": 103}
    )
    collaborators = await sdk(sdk.stacks.list_stack_permissions, ORG, "web", "dev")
    assert [(u.user.github_login, u.permission.value) for u in collaborators.users] == [
        ("erin", 103)
    ]
    why = await sdk(sdk.stacks.list_member_stack_permissions, ORG, "erin", "web", "dev")
    assert (why.organization_role.value, why.organization_default.value) == ("member", 102)
    assert [(t.team.name, t.permission.value) for t in why.team_permissions] == [("ops", 102)]
    assert why.explicit_permission.value == 103
    await sdk(sdk.stacks.delete_stack_permission, ORG, "web", "dev", "erin")
    assert (await sdk(sdk.stacks.list_stack_permissions, ORG, "web", "dev")).users == []

    org_token = await sdk(
        sdk.orgs.create_org_token,
        ORG,
        CreateOrgAccessTokenRequest(description="ci", expires=0, name="ci", admin=False),
    )
    team_token = await sdk(
        sdk.orgs.create_team_token,
        ORG,
        "ops",
        CreateTeamAccessTokenRequest(description="deploys", expires=0, name="deploy"),
    )
    org_tokens = await sdk(sdk.orgs.list_org_tokens, ORG)
    assert [(t.id, t.name, t.type.value) for t in org_tokens.tokens] == [
        (org_token.id, "ci", "organization")
    ]
    team_tokens = await sdk(sdk.orgs.list_team_tokens, ORG, "ops")
    assert [(t.id, t.name, t.type.value) for t in team_tokens.tokens] == [
        (team_token.id, "deploy", "team")
    ]
    as_team = Sdk(cairn, team_token.token_value)
    assert (await as_team(as_team.users.get_current_user)).token_info.team == "ops"
    await sdk(sdk.orgs.delete_team_token, ORG, "ops", team_token.id)
    await sdk(sdk.orgs.delete_org_token, ORG, org_token.id)
    assert await as_team.status(as_team.users.get_current_user) == 401
    assert (await sdk(sdk.orgs.list_org_tokens, ORG)).tokens == []

    await sdk(sdk.orgs.delete_team, ORG, "ops")
    assert (await sdk(sdk.orgs.list_teams, ORG)).teams == []
    assert await sdk.status(sdk.orgs.get_team, ORG, "ops") == 404


async def test_email_invitation_links_keep_the_sdks_shapes(cairn: Cairn) -> None:
    """An invitation of an address without an account answers the SDK's models: the sent
    invite's `acceptInviteUrl` is the one-time link; the pending list names the address."""
    sdk = Sdk(cairn)
    sent = await sdk(
        sdk.orgs.batch_create_org_invite_email,
        ORG,
        BatchCreateOrganizationInviteRequest(
            invites=[
                CreateOrganizationInviteRequest(
                    email="new@example.com", role=OrganizationInviteRole.Member
                )
            ]
        ),
    )
    (invite,) = sent.sent_invites
    assert "/join?code=" in invite.accept_invite_url
    pending = await sdk(sdk.orgs.list_org_invites, ORG)
    assert [(i.email, i.role.value, i.status) for i in pending.invites] == [
        ("new@example.com", "member", "pending")
    ]
    assert pending.invites[0].accept_invite_url == "/join"
