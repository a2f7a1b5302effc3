"""Cairn's own user routes (extensions): site admins create, list, disable and enable users;
every user edits their own profile; an invitation link is redeemed without a token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, call_options
from gateway.convert import (
    int_query,
    json_response,
    optional_bool,
    optional_string,
    read_json_object,
    read_optional_json_object,
    required_string,
)
from gateway.errors import bad_request
from gateway.invitations import login_command
from gateway.views import organization_summary_json
from protos.cairn.v1 import identity_pb2

_DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 500
_STATES = {
    "": identity_pb2.USER_STATE_UNSPECIFIED,
    "enabled": identity_pb2.USER_STATE_ENABLED,
    "disabled": identity_pb2.USER_STATE_DISABLED,
}


def admin_user_json(user: identity_pb2.User) -> dict[str, Any]:
    """A user as site admins see one: Pulumi's `UserInfo` members and the account's state."""
    return {
        "id": user.id,
        "githubLogin": user.login,
        "name": user.name or user.login,
        "email": user.email,
        "avatarUrl": user.avatar_url,
        "siteAdmin": user.is_site_admin,
        "created": user.created_at,
        "disabled": bool(user.disabled_at),
        "disabledAt": user.disabled_at,
    }


def _login(request: web.Request) -> str:
    return request.match_info["login"]


async def create_user(request: web.Request) -> web.Response:
    """`POST /api/admin/users` (extension): a new user; with `"issueToken": true`, also their
    first personal access token, shown this once."""
    body = await read_json_object(request)
    reply = await request.app[BACKENDS].identity.RegisterUser(
        identity_pb2.RegisterUserRequest(
            login=required_string(body, "login"),
            name=optional_string(body, "name"),
            email=required_string(body, "email"),
            avatar_url=optional_string(body, "avatarUrl"),
            issue_token=optional_bool(body, "issueToken"),
        ),
        **call_options(request),
    )
    payload: dict[str, Any] = {"user": admin_user_json(reply.user)}
    if reply.token:
        payload["token"] = {"id": reply.token_id, "tokenValue": reply.token}
    return json_response(payload, status=201)


async def list_users(request: web.Request) -> web.Response:
    """`GET /api/admin/users?query=&state=enabled|disabled&pageSize=&continuationToken=`."""
    state = request.query.get("state", "")
    if state not in _STATES:
        raise bad_request("'state' must be enabled or disabled")
    page_size = int_query(request, "pageSize", _DEFAULT_PAGE_SIZE)
    if not 1 <= page_size <= _MAX_PAGE_SIZE:
        raise bad_request(f"'pageSize' must be 1 to {_MAX_PAGE_SIZE}")
    reply = await request.app[BACKENDS].identity.ListUsers(
        identity_pb2.ListUsersRequest(
            query=request.query.get("query", ""),
            state=_STATES[state],
            page_size=page_size,
            continuation_token=request.query.get("continuationToken", ""),
        ),
        **call_options(request),
    )
    payload: dict[str, Any] = {"users": [admin_user_json(u) for u in reply.users]}
    if reply.continuation_token:
        payload["continuationToken"] = reply.continuation_token
    return json_response(payload)


async def get_user(request: web.Request) -> web.Response:
    """`GET /api/admin/users/{login}`."""
    user = await request.app[BACKENDS].identity.GetUser(
        identity_pb2.GetUserRequest(login=_login(request)), **call_options(request)
    )
    return json_response(admin_user_json(user))


async def disable_user(request: web.Request) -> web.Response:
    """`POST /api/admin/users/{login}/disable`: every token and console session of the user
    stops at once; 409 for the last enabled site admin."""
    return await _set_disabled(request, is_disabled=True)


async def enable_user(request: web.Request) -> web.Response:
    """`POST /api/admin/users/{login}/enable`: no revoked token comes back; with
    `{"issueToken": true}`, a new personal access token is answered, shown this once."""
    body = await read_optional_json_object(request)
    return await _set_disabled(
        request, is_disabled=False, issue_token=optional_bool(body, "issueToken")
    )


async def _set_disabled(
    request: web.Request, *, is_disabled: bool, issue_token: bool = False
) -> web.Response:
    reply = await request.app[BACKENDS].identity.SetUserDisabled(
        identity_pb2.SetUserDisabledRequest(
            login=_login(request), disabled=is_disabled, issue_token=issue_token
        ),
        **call_options(request),
    )
    payload = admin_user_json(reply.user)
    if reply.token:
        payload["token"] = {"id": reply.token_id, "tokenValue": reply.token}
    return json_response(payload)


async def accept_invite_link(request: web.Request) -> web.Response:
    """`POST /api/invites/accept` (extension): redeem an invitation link's `code` as a new
    user with the chosen `login` (and `name`); answers the user, the membership and their
    first access token, shown this once."""
    body = await read_json_object(request)
    reply = await request.app[BACKENDS].identity.RedeemInviteLink(
        identity_pb2.RedeemInviteLinkRequest(
            secret=required_string(body, "code"),
            login=required_string(body, "login"),
            name=optional_string(body, "name"),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "user": admin_user_json(reply.user),
            "organization": organization_summary_json(reply.membership),
            "token": {"id": reply.token_id, "tokenValue": reply.token},
            "loginCommand": login_command(request),
        },
        status=201,
    )
