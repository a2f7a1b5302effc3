"""Access tokens of the caller, an organization or a team (UsersApi, OrganizationsApi).

Values are shown once, at creation or rotation; lists never show them. Deleting revokes: the
token stays listed with `filter=revoked` or `filter=all`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, call_options
from gateway.convert import (
    json_response,
    ok_without_body,
    optional_int,
    optional_string,
    read_json_object,
    required_string,
)
from gateway.errors import ApiError, bad_request
from gateway.views import iso_time
from protos.cairn.v1 import identity_pb2

_TYPES = {
    identity_pb2.TOKEN_KIND_PERSONAL: "personal",
    identity_pb2.TOKEN_KIND_ORGANIZATION: "organization",
    identity_pb2.TOKEN_KIND_TEAM: "team",
}
_FILTERS = ("", "active", "revoked", "all")
_SHORT_NAME = 255


def _personal(request: web.Request) -> identity_pb2.TokenScope:
    return identity_pb2.TokenScope(
        kind=identity_pb2.TOKEN_KIND_PERSONAL, user_login=request[PRINCIPAL].login
    )


def _organization(request: web.Request) -> identity_pb2.TokenScope:
    return identity_pb2.TokenScope(
        kind=identity_pb2.TOKEN_KIND_ORGANIZATION, organization=request.match_info["orgName"]
    )


def _team(request: web.Request) -> identity_pb2.TokenScope:
    return identity_pb2.TokenScope(
        kind=identity_pb2.TOKEN_KIND_TEAM,
        organization=request.match_info["orgName"],
        team=request.match_info["teamName"],
    )


def token_json(token: identity_pb2.AccessToken) -> dict[str, Any]:
    """Pulumi's `AccessToken`, plus when it was revoked or rotated (0: never)."""
    return {
        "id": token.id,
        "name": token.name,
        "description": token.description,
        "created": iso_time(token.created_at),
        "lastUsed": token.last_used_at,
        "expires": token.expires_at,
        "admin": token.admin,
        "createdBy": token.created_by,
        "type": _TYPES[token.kind],
        "revoked": token.revoked_at,
        "rotated": token.rotated_at,
    }


async def _list(request: web.Request, scope: identity_pb2.TokenScope) -> web.Response:
    status = request.query.get("filter", "")
    if status not in _FILTERS:
        raise ApiError(400, "Bad Request: 'filter' must be active, revoked or all")
    reply = await request.app[BACKENDS].identity.ListAccessTokens(
        identity_pb2.ListAccessTokensRequest(scope=scope, include_revoked=status != ""),
        **call_options(request),
    )
    tokens = [
        token
        for token in reply.tokens
        if status in ("", "all") or (status == "revoked") == bool(token.revoked_at)
    ]
    return json_response({"tokens": [token_json(t) for t in tokens]})


async def _create(
    request: web.Request, scope: identity_pb2.TokenScope, body: dict[str, Any], name: str
) -> web.Response:
    expires = optional_int(body, "expires")
    admin = body.get("admin")
    if admin is not None and not isinstance(admin, bool):
        raise bad_request("'admin' must be a boolean")
    if body.get("roleID"):
        raise bad_request("custom roles are not supported; use 'admin'")
    reply = await request.app[BACKENDS].identity.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(
            user_login=request[PRINCIPAL].login,
            name=name,
            scope=scope,
            description=optional_string(body, "description"),
            expires_at=expires,
            admin=bool(admin),
        ),
        **call_options(request),
    )
    return json_response({"id": reply.token_id, "tokenValue": reply.token})


async def _revoke(request: web.Request, scope: identity_pb2.TokenScope) -> web.Response:
    await request.app[BACKENDS].identity.RevokeAccessToken(
        identity_pb2.TokenRequest(scope=scope, token_id=request.match_info["tokenId"]),
        **call_options(request),
    )
    return ok_without_body()


async def _rotate(request: web.Request, scope: identity_pb2.TokenScope) -> web.Response:
    reply = await request.app[BACKENDS].identity.RotateAccessToken(
        identity_pb2.TokenRequest(scope=scope, token_id=request.match_info["tokenId"]),
        **call_options(request),
    )
    return json_response({"id": reply.token_id, "tokenValue": reply.token})


async def list_personal_tokens(request: web.Request) -> web.Response:
    """`GET /api/user/tokens`."""
    return await _list(request, _personal(request))


async def create_personal_token(request: web.Request) -> web.Response:
    """`POST /api/user/tokens` `{description, expires}`; the value is shown this once."""
    body = await read_json_object(request)
    description = optional_string(body, "description")
    return await _create(request, _personal(request), body, description[:_SHORT_NAME])


async def delete_personal_token(request: web.Request) -> web.Response:
    """`DELETE /api/user/tokens/{tokenId}`: revoke."""
    return await _revoke(request, _personal(request))


async def rotate_personal_token(request: web.Request) -> web.Response:
    """`POST /api/user/tokens/{tokenId}/rotate` (extension): a new value, same id."""
    return await _rotate(request, _personal(request))


async def list_org_tokens(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/tokens`."""
    return await _list(request, _organization(request))


async def create_org_token(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/tokens` `{name, description, expires, admin}`."""
    body = await read_json_object(request)
    return await _create(request, _organization(request), body, required_string(body, "name"))


async def delete_org_token(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/tokens/{tokenId}`: revoke."""
    return await _revoke(request, _organization(request))


async def rotate_org_token(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/tokens/{tokenId}/rotate` (extension)."""
    return await _rotate(request, _organization(request))


async def list_team_tokens(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/teams/{teamName}/tokens`."""
    return await _list(request, _team(request))


async def create_team_token(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/teams/{teamName}/tokens` `{name, description, expires}`."""
    body = await read_json_object(request)
    if body.get("admin"):
        raise bad_request("team tokens cannot be admin tokens")
    return await _create(request, _team(request), body, required_string(body, "name"))


async def delete_team_token(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/teams/{teamName}/tokens/{tokenId}`: revoke."""
    return await _revoke(request, _team(request))


async def rotate_team_token(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/teams/{teamName}/tokens/{tokenId}/rotate` (extension)."""
    return await _rotate(request, _team(request))
