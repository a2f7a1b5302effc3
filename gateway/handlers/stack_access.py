"""Who may use one stack: its teams and collaborators (seed 000's stack-permission routes).

Grants live in the identity service by stable stack id; the stacks service names stacks.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, STACK, call_options
from gateway.convert import json_response, no_content, read_json_object
from gateway.views import ROLE_LABELS, parse_permission, pulumi_role, user_info_json
from protos.cairn.v1 import identity_pb2


def _stack_id(request: web.Request) -> str:
    return request[STACK].id


def _org(request: web.Request) -> str:
    return request.match_info["orgName"]


def team_summary_json(team: identity_pb2.Team) -> dict[str, Any]:
    return {
        "kind": "pulumi",
        "name": team.name,
        "displayName": team.display_name,
        "description": team.description,
    }


async def list_stack_teams(request: web.Request) -> web.Response:
    """`GET {stack}/teams`: the teams holding a permission on the stack."""
    reply = await request.app[BACKENDS].identity.ListStackGrants(
        identity_pb2.ListStackGrantsRequest(
            organization=_org(request),
            stack_id=_stack_id(request),
            viewer_login=request[PRINCIPAL].login,
        ),
        **call_options(request),
    )
    return json_response(
        {
            "projectName": request[STACK].ref.project,
            "teams": [
                {
                    "name": grant.team.name,
                    "displayName": grant.team.display_name,
                    "description": grant.team.description,
                    "permission": grant.permission,
                    "isMember": grant.is_member,
                }
                for grant in reply.teams
            ],
        }
    )


async def list_stack_permissions(request: web.Request) -> web.Response:
    """`GET {stack}/collaborators` (deprecated): users with an explicit grant."""
    reply = await request.app[BACKENDS].identity.ListStackGrants(
        identity_pb2.ListStackGrantsRequest(
            organization=_org(request), stack_id=_stack_id(request)
        ),
        **call_options(request),
    )
    return json_response(
        {
            "users": [
                {"user": user_info_json(grant.user), "permission": grant.permission}
                for grant in reply.users
            ]
        }
    )


async def update_stack_collaborator(request: web.Request) -> web.Response:
    """`PATCH {stack}/collaborators/{userName}` (extension): `{"permission": 101|102|103}`."""
    body = await read_json_object(request)
    await _set_user_permission(request, parse_permission(body.get("permission"), "permission"))
    return no_content()


async def delete_stack_permission(request: web.Request) -> web.Response:
    """`DELETE {stack}/collaborators/{userName}`: take a user's explicit grant away."""
    await _set_user_permission(request, identity_pb2.STACK_PERMISSION_NONE)
    return no_content()


async def _set_user_permission(request: web.Request, permission: int) -> None:
    await request.app[BACKENDS].identity.SetUserStackPermission(
        identity_pb2.SetUserStackPermissionRequest(
            organization=_org(request),
            user_login=request.match_info["userName"],
            stack_id=_stack_id(request),
            permission=identity_pb2.StackPermission.ValueType(permission),
        ),
        **call_options(request),
    )


async def update_team_stack_permissions(request: web.Request) -> web.Response:
    """`PATCH /api/console/stacks/{org}/{project}/{stack}/teams/{teamName}`; null or 0
    clears the team's permission."""
    body = await read_json_object(request)
    permission = parse_permission(body.get("permissions"), "permissions", allow_none=True)
    await request.app[BACKENDS].identity.SetTeamStackPermission(
        identity_pb2.SetTeamStackPermissionRequest(
            organization=_org(request),
            team=request.match_info["teamName"],
            stack_id=_stack_id(request),
            permission=identity_pb2.StackPermission.ValueType(permission),
        ),
        **call_options(request),
    )
    return no_content()


async def list_member_stack_permissions(request: web.Request) -> web.Response:
    """`GET /api/console/orgs/{org}/members/{userLogin}/stacks/{project}/{stack}`: why a
    member holds what they hold on the stack."""
    reply = await request.app[BACKENDS].identity.GetMemberStackPermissions(
        identity_pb2.GetMemberStackPermissionsRequest(
            organization=_org(request),
            user_login=request.match_info["userLogin"],
            stack_id=_stack_id(request),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "userInfo": user_info_json(reply.user),
            "organizationRole": pulumi_role(reply.role),
            "roleId": ROLE_LABELS[reply.role],
            "organizationDefault": reply.organization_default,
            "teamPermissions": [
                {"team": team_summary_json(grant.team), "permission": grant.permission}
                for grant in reply.teams
            ],
            "explicitPermission": reply.explicit_permission,
            "effectivePermission": reply.effective_permission,
        }
    )
