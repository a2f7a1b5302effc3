"""Teams of an organization, their members and their stack permissions (OrganizationsApi)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, call_options
from gateway.convert import (
    json_response,
    ok_without_body,
    optional_object,
    optional_string,
    read_json_object,
    required_string,
)
from gateway.errors import bad_request
from gateway.views import organization_stacks, parse_permission, user_info_json
from protos.cairn.v1 import common_pb2, identity_pb2, stacks_pb2

_MEMBER_ACTIONS = {
    "add": identity_pb2.MEMBER_ACTION_ADD,
    "remove": identity_pb2.MEMBER_ACTION_REMOVE,
    "promote": identity_pb2.MEMBER_ACTION_PROMOTE,
    "demote": identity_pb2.MEMBER_ACTION_DEMOTE,
}
_TEAM_ROLES = {identity_pb2.TEAM_ROLE_MEMBER: "member", identity_pb2.TEAM_ROLE_ADMIN: "admin"}


def _org(request: web.Request) -> str:
    return request.match_info["orgName"]


async def teams_json(request: web.Request, teams: list[identity_pb2.Team]) -> list[dict[str, Any]]:
    """Pulumi's `Team`s; stack grants are named by the stacks they point at now."""
    names: dict[str, tuple[str, str]] = {}
    if any(team.stacks for team in teams):
        names = {
            stack.id: (stack.ref.project, stack.ref.stack)
            for stack in await organization_stacks(request, _org(request))
        }
    caller = request[PRINCIPAL].login
    payload = []
    for team in teams:
        role = next((m.role for m in team.members if m.user.login == caller), None)
        payload.append(
            {
                "kind": "pulumi",
                "name": team.name,
                "displayName": team.display_name,
                "description": team.description,
                "members": [
                    {**user_info_json(m.user), "role": _TEAM_ROLES[m.role]} for m in team.members
                ],
                "stacks": [
                    {
                        "projectName": names[grant.stack_id][0],
                        "stackName": names[grant.stack_id][1],
                        "permission": grant.permission,
                    }
                    for grant in team.stacks
                    if grant.stack_id in names
                ],
                "environments": [],
                "accounts": [],
                "userRole": "none" if role is None else _TEAM_ROLES[role],
            }
        )
    return payload


async def list_teams(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/teams`."""
    reply = await request.app[BACKENDS].identity.ListTeams(
        identity_pb2.ListTeamsRequest(organization=_org(request)), **call_options(request)
    )
    return json_response({"teams": await teams_json(request, list(reply.teams))})


async def get_team(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/teams/{teamName}`."""
    team = await request.app[BACKENDS].identity.GetTeam(
        identity_pb2.GetTeamRequest(
            organization=_org(request), name=request.match_info["teamName"]
        ),
        **call_options(request),
    )
    return json_response((await teams_json(request, [team]))[0])


async def create_pulumi_team(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/teams/pulumi`: a new team; its creator joins as team admin."""
    body = await read_json_object(request)
    team = await request.app[BACKENDS].identity.CreateTeam(
        identity_pb2.CreateTeamRequest(
            organization=_org(request),
            name=required_string(body, "name"),
            display_name=optional_string(body, "displayName"),
            description=optional_string(body, "description"),
            creator_login=request[PRINCIPAL].login,
        ),
        **call_options(request),
    )
    return json_response((await teams_json(request, [team]))[0])


async def update_team(request: web.Request) -> web.Response:
    """`PATCH /api/orgs/{orgName}/teams/{teamName}`: names, one member change, one stack
    permission change; all of it or nothing. Environment changes are refused by the strict
    body (this server has no environments)."""
    body = await read_json_object(request)
    change = identity_pb2.UpdateTeamRequest(
        organization=_org(request), name=request.match_info["teamName"]
    )
    if body.get("newDisplayName") is not None:
        change.display_name = optional_string(body, "newDisplayName")
    if body.get("newDescription") is not None:
        change.description = optional_string(body, "newDescription")
    action = body.get("memberAction")
    if action is not None:
        # Anything but one of the four names (an object, a number) is the client's mistake.
        if not isinstance(action, str) or action not in _MEMBER_ACTIONS:
            raise bad_request("'memberAction' must be add, remove, promote or demote")
        change.member_action = _MEMBER_ACTIONS[action]
        change.member_login = required_string(body, "member")
    added, edited = body.get("addStackPermission"), body.get("editStackPermission")
    if added is not None and edited is not None:
        raise bad_request("send either 'addStackPermission' or 'editStackPermission'")
    grant = added if added is not None else edited
    if grant is not None:
        item = optional_object(grant, "addStackPermission")
        permission = parse_permission(item.get("permission"), "permission")
        stack = await _stack(request, item)
        change.set_stack.CopyFrom(
            identity_pb2.StackGrant(
                stack_id=stack.id, permission=identity_pb2.StackPermission.ValueType(permission)
            )
        )
    removed = body.get("removeStack")
    if removed is not None:
        change.remove_stack_id = (await _stack(request, optional_object(removed, "removeStack"))).id
    await request.app[BACKENDS].identity.UpdateTeam(change, **call_options(request))
    return ok_without_body()


async def _stack(request: web.Request, item: dict[str, Any]) -> stacks_pb2.Stack:
    """The organization's stack a team change names by project and stack name."""
    stack: stacks_pb2.Stack = await request.app[BACKENDS].stacks.GetStack(
        stacks_pb2.GetStackRequest(
            ref=common_pb2.StackRef(
                organization=_org(request),
                project=required_string(item, "projectName"),
                stack=required_string(item, "stackName"),
            )
        ),
        **call_options(request),
    )
    return stack


async def delete_team(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/teams/{teamName}`: with its grants and tokens."""
    await request.app[BACKENDS].identity.DeleteTeam(
        identity_pb2.DeleteTeamRequest(
            organization=_org(request), name=request.match_info["teamName"]
        ),
        **call_options(request),
    )
    return ok_without_body()


async def get_organization_member_teams(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/members/{userLogin}/teams`: the member's team names."""
    reply = await request.app[BACKENDS].identity.ListMemberTeams(
        identity_pb2.ListMemberTeamsRequest(
            organization=_org(request), user_login=request.match_info["userLogin"]
        ),
        **call_options(request),
    )
    return json_response({"teams": [team.name for team in reply.teams]})
