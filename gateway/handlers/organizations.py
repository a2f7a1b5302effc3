"""Organizations, members and invitations (Pulumi's OrganizationsApi), plus two extensions:
creating an organization and listing the caller's organizations."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, ROLE, call_options
from gateway.convert import (
    json_response,
    ok_without_body,
    optional_object,
    read_json_object,
    read_optional_json_object,
    required_string,
)
from gateway.errors import bad_request
from gateway.invitations import JOIN_PATH, invite_link, send_invitations
from gateway.views import (
    ROLE_LABELS,
    iso_time,
    organization_stacks,
    organization_summary_json,
    parse_role,
    pulumi_role,
    user_info_json,
)
from protos.cairn.v1 import common_pb2, identity_pb2

# Pulumi's stack permission wire values.
STACK_PERMISSIONS = (0, 101, 102, 103, 104)


def _org(request: web.Request) -> str:
    return request.match_info["orgName"]


def organization_json(details: identity_pb2.OrganizationDetails) -> dict[str, Any]:
    """Pulumi's `Organization`, with Cairn's organization settings beside it."""
    return {
        "githubLogin": details.organization.name,
        "name": details.organization.name,
        "avatarUrl": "",
        "repos": [],
        "id": details.organization.id,
        "created": details.organization.created_at,
        "defaultStackPermission": details.default_stack_permission,
        "memberCount": details.member_count,
    }


def member_json(org: str, member: identity_pb2.Member) -> dict[str, Any]:
    """Pulumi's `OrganizationMember`; the exact role is the `fgaRole`."""
    label = ROLE_LABELS[member.role]
    joined = member.joined_at
    return {
        "role": pulumi_role(member.role),
        "user": user_info_json(member.user),
        "created": iso_time(joined),
        "knownToPulumi": True,
        "virtualAdmin": False,
        "fgaRole": {"id": label, "name": label, "modifiedAt": iso_time(joined)},
        "teams": list(member.teams),
        "links": {"self": f"/api/orgs/{org}/members/{member.user.login}"},
    }


def invite_json(invite: identity_pb2.Invite, now: float | None = None) -> dict[str, Any]:
    """Pulumi's `PendingOrganizationInvite`; `email` names the invitee (email or login).
    Email invitations of people without an account carry `expiresAt` and turn `expired`."""
    is_expired = bool(invite.expires_at) and invite.expires_at <= (now or time.time())
    return {
        "id": invite.id,
        "email": invite.email or invite.user.email or invite.user.login,
        "role": pulumi_role(invite.role),
        "roleId": ROLE_LABELS[invite.role],
        "sentBy": {"name": invite.invited_by, "githubLogin": invite.invited_by, "avatarUrl": ""},
        "sentAt": invite.created_at,
        "acceptInviteUrl": JOIN_PATH if invite.email else _accept_url(invite),
        "status": "expired" if is_expired else "pending",
        "organization": invite.organization,
        "userLogin": invite.user.login,
        "expiresAt": invite.expires_at,
    }


def _accept_url(invite: identity_pb2.Invite) -> str:
    return f"/api/orgs/{invite.organization}/invites/{invite.id}"


def sent_invite_json(request: web.Request, invite: identity_pb2.Invite) -> dict[str, Any]:
    """Pulumi's `CreateOrganizationInviteResponse`: for an email address without an account,
    `acceptInviteUrl` is the one-time link (shown this once) and `expiresAt` its end."""
    if not invite.link_secret:
        return {"id": invite.id, "acceptInviteUrl": _accept_url(invite)}
    return {
        "id": invite.id,
        "acceptInviteUrl": invite_link(request, invite.link_secret),
        "email": invite.email,
        "expiresAt": invite.expires_at,
    }


async def list_user_organizations(request: web.Request) -> web.Response:
    """`GET /api/user/organizations` (extension): the caller's organizations and roles."""
    memberships = sorted(request[PRINCIPAL].memberships, key=lambda m: m.organization)
    return json_response({"organizations": [organization_summary_json(m) for m in memberships]})


async def create_organization(request: web.Request) -> web.Response:
    """`POST /api/orgs` (extension): a new organization with the caller as its admin."""
    body = await read_json_object(request)
    name = required_string(body, "name")
    backends = request.app[BACKENDS]
    org = await backends.identity.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name=name, admin_login=request[PRINCIPAL].login),
        **call_options(request),
    )
    details = await backends.identity.GetOrganization(
        identity_pb2.GetOrganizationRequest(organization=org.name), **call_options(request)
    )
    payload = organization_json(details)
    payload["role"] = "admin"
    return json_response(payload, status=201)


async def get_organization(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}` (OrganizationsApi.get_organization)."""
    details = await request.app[BACKENDS].identity.GetOrganization(
        identity_pb2.GetOrganizationRequest(organization=_org(request)), **call_options(request)
    )
    payload = organization_json(details)
    payload["role"] = ROLE_LABELS.get(common_pb2.Role.ValueType(request[ROLE]), "")
    return json_response(payload)


async def update_organization_settings(request: web.Request) -> web.Response:
    """`PATCH /api/orgs/{orgName}`: the organization's default stack permission. The other
    settings are fixed; the strict body takes them only unset (gateway/schemas/constraints.py
    `ORGANIZATION_SETTINGS`)."""
    body = await read_json_object(request)
    update = identity_pb2.UpdateOrganizationRequest(organization=_org(request))
    permission = body.get("setDefaultStackPermission")
    if permission is not None:
        if permission not in STACK_PERMISSIONS or isinstance(permission, bool):
            raise bad_request("'setDefaultStackPermission' must be 0, 101, 102 or 103")
        update.default_stack_permission = permission
    details = await request.app[BACKENDS].identity.UpdateOrganization(
        update, **call_options(request)
    )
    stacks = await organization_stacks(request, details.organization.name)
    return json_response(
        organization_metadata_json(details, common_pb2.Role.ValueType(request[ROLE]), len(stacks))
    )


def organization_metadata_json(
    details: identity_pb2.OrganizationDetails, role: common_pb2.Role.ValueType, stack_count: int
) -> dict[str, Any]:
    """Pulumi's `OrganizationMetadata`: what this server keeps, and its fixed capabilities."""
    members_default = details.default_stack_permission
    return {
        "id": details.organization.id,
        "kind": "pulumi",
        "created": iso_time(details.organization.created_at),
        "userRole": pulumi_role(role),
        "defaultStackPermission": members_default,
        "defaultEnvironmentPermission": "none",
        "defaultAccountPermission": 0,
        "membersCanCreateStacks": True,
        "membersCanDeleteStacks": members_default >= identity_pb2.STACK_PERMISSION_ADMIN,
        "membersCanTransferStacks": False,
        "membersCanCreateTeams": False,
        "membersCanCreateAccounts": False,
        "neoEnabled": False,
        "neoApprovalMode": "manual",
        "neoTaskSharingMode": "none",
        "neoCLIExplanationsDisabled": True,
        "naturalLanguageSearchDisabled": True,
        "neoAgentDisabled": True,
        "insightsTrialUsingPolicy": False,
        "aiEnablement": "disabled",
        "preferredVCS": "none",
        "auditLogsEnabled": False,
        "webhooksEnabled": False,
        "features": _features(),
        "accountCount": 0,
        "environmentCount": 0,
        "stackCount": stack_count,
        "memberCount": details.member_count,
    }


# Pulumi Cloud's feature flags; this server offers agent pools, self-hosted deployments,
# teams and access-token expiry, nothing else on the list.
_ENABLED_FEATURES = frozenset(
    {
        "agentPoolRegistrationEnabled",
        "selfHostedDeploymentsEnabled",
        "teamsEnabled",
        "accessTokenExpiryPolicyEnabled",
    }
)
_FEATURES = [
    "auditLogsEnabled",
    "crossGuardEnabled",
    "webhooksEnabled",
    "integrationAssistantEnabled",
    "aleEnabled",
    "deployEnabled",
    "scimEnabled",
    "resourceSearchEnabled",
    "resourceExportEnabled",
    "propertySearchUIEnabled",
    "nlpSearchEnabled",
    "customTemplatesEnabled",
    "restoreStacksEnabled",
    "environmentsEnabled",
    "environmentRevisionTagsEnabled",
    "legacyDeploymentsOrgToken",
    "gitHubEnterpriseIntegrationEnabled",
    "gitHubEnterpriseCloudDataResidencyEnabled",
    "agentPoolRegistrationEnabled",
    "driftDetectionEnabled",
    "selfHostedDeploymentsEnabled",
    "auditLogUIFilteringEnabled",
    "dependencyCachingEnabled",
    "environmentsRestoreEnabled",
    "pangeaAccountsScanPageEnabled",
    "customRolesEnabled",
    "environmentSecretRotationEnabled",
    "insightsMonetizationEnabled",
    "selfServeIDPRemoval",
    "iacCloudImportEnabled",
    "bringYourOwnKeyEnabled",
    "approvalsEnabled",
    "escOnboardingEnabled",
    "escOnboardingV2Enabled",
    "escOnboardingAzureOAuthClientEnabled",
    "escOnboardingGcpOAuthClientEnabled",
    "policyManagementV2Enabled",
    "policyIssueManagementEnabled",
    "aiAgentsEnabled",
    "aiAgentsReadOnly",
    "themingEnabled",
    "customRoleCondition",
    "neoTaskSharingEnabled",
    "ghAppDetailedDiffEnabled",
    "neoCustomRolesEnabled",
    "discoveredStacksEnabled",
    "agentIntegrationCatalogEnabled",
    "agentScheduledTasksEnabled",
    "neoCustomAgentsEnabled",
    "neoSecurityEnabled",
    "agentTriggeredTasksEnabled",
    "customVCSEnabled",
    "bitbucketVCSEnabled",
    "insightsAutoPolicyPacksEnabled",
    "fixDriftWithNeoEnabled",
    "cliIntegrationCatalogEnabled",
    "serviceBackedConfigEnabled",
    "neoByokEnabled",
    "entityUserAssignmentsEnabled",
    "policyExceptionsEnabled",
    "staticDefaultRolesEnabled",
    "teamsEnabled",
    "accessTokenExpiryPolicyEnabled",
]


def _features() -> dict[str, bool]:
    return {name: name in _ENABLED_FEATURES for name in _FEATURES}


async def list_organization_members(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/members`: every member in one page."""
    org = _org(request)
    reply = await request.app[BACKENDS].identity.ListMembers(
        identity_pb2.ListMembersRequest(organization=org), **call_options(request)
    )
    return json_response({"members": [member_json(org, m) for m in reply.members]})


def _member_role(body: dict[str, Any]) -> common_pb2.Role.ValueType:
    """`role` (admin, member, viewer), or `fgaRoleId` naming one of them."""
    role_id = body.get("fgaRoleId")
    if role_id is not None:
        return parse_role(role_id, "fgaRoleId")
    return parse_role(body.get("role"))


async def add_organization_member(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/members/{userLogin}`: add a registered user."""
    body = await read_optional_json_object(request)
    role = _member_role({**body, "role": body.get("role") or "member"})
    org = _org(request)
    member = await request.app[BACKENDS].identity.AddMember(
        identity_pb2.MemberRequest(
            organization=org, user_login=request.match_info["userLogin"], role=role
        ),
        **call_options(request),
    )
    return json_response(member_json(org, member))


async def update_organization_member(request: web.Request) -> web.Response:
    """`PATCH /api/orgs/{orgName}/members/{userLogin}`: change a role; 409 for the last
    admin."""
    body = await read_json_object(request)
    await request.app[BACKENDS].identity.UpdateMember(
        identity_pb2.MemberRequest(
            organization=_org(request),
            user_login=request.match_info["userLogin"],
            role=_member_role(body),
        ),
        **call_options(request),
    )
    return ok_without_body()


async def delete_organization_member(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/members/{userLogin}`; 409 for the last admin."""
    await request.app[BACKENDS].identity.RemoveMember(
        identity_pb2.RemoveMemberRequest(
            organization=_org(request), user_login=request.match_info["userLogin"]
        ),
        **call_options(request),
    )
    return ok_without_body()


async def list_org_invites(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/invites`: pending invitations."""
    reply = await request.app[BACKENDS].identity.ListInvites(
        identity_pb2.ListInvitesRequest(organization=_org(request)), **call_options(request)
    )
    return json_response({"invites": [invite_json(i) for i in reply.invites]})


async def batch_create_org_invite_email(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/invites/batch`: invite registered users by email or login,
    and email addresses without an account by a one-time link (in `acceptInviteUrl`, shown
    this once, and mailed when SMTP is configured).

    All or nothing: an unknown login, a member or a pending invitation refuses the batch.
    """
    body = await read_json_object(request)
    entries = body.get("invites")
    if not isinstance(entries, list) or not entries:
        raise bad_request("'invites' must be a non-empty array")
    targets = []
    for index, entry in enumerate(entries):
        item = optional_object(entry, f"invites[{index}]")
        recipient = required_string(item, "email")
        role = parse_role(item.get("roleId") or item.get("role") or "member", "role")
        targets.append(identity_pb2.InviteTarget(recipient=recipient, role=role))
    reply = await request.app[BACKENDS].identity.CreateInvites(
        identity_pb2.CreateInvitesRequest(
            organization=_org(request), targets=targets, invited_by=request[PRINCIPAL].login
        ),
        **call_options(request),
    )
    sent = [sent_invite_json(request, invite) for invite in reply.invites]
    await send_invitations(
        request,
        [(i, s["acceptInviteUrl"]) for i, s in zip(reply.invites, sent, strict=True) if i.email],
    )
    return json_response({"sentInvites": sent, "failedInvites": []})


async def cancel_org_invite(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/invites/{inviteID}`."""
    await request.app[BACKENDS].identity.CancelInvite(
        identity_pb2.CancelInviteRequest(
            organization=_org(request), invite_id=request.match_info["inviteID"]
        ),
        **call_options(request),
    )
    return ok_without_body()


async def list_user_org_invites(request: web.Request) -> web.Response:
    """`GET /api/user/pending-invites`: invitations addressed to the caller."""
    reply = await request.app[BACKENDS].identity.ListInvites(
        identity_pb2.ListInvitesRequest(user_login=request[PRINCIPAL].login),
        **call_options(request),
    )
    return json_response({"invites": [invite_json(i) for i in reply.invites]})


async def accept_org_invite(request: web.Request) -> web.Response:
    """`PATCH /api/orgs/{orgName}/invites/{inviteID}`: the invitee joins (no email needed)."""
    await request.app[BACKENDS].identity.AcceptInvite(
        identity_pb2.AcceptInviteRequest(
            organization=_org(request),
            invite_id=request.match_info["inviteID"],
            user_login=request[PRINCIPAL].login,
        ),
        **call_options(request),
    )
    return ok_without_body()
