"""Identity routes the CLI calls (protocol doc §3.1.1, §3.1.2) and first-admin bootstrap."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, TOKEN, call_options
from gateway.convert import (
    json_response,
    optional_string,
    read_json_object,
    read_optional_json_object,
)
from gateway.views import organization_summary_json
from protos.cairn.v1 import identity_pb2


def user_json(principal: identity_pb2.Principal) -> dict[str, Any]:
    """`GET /api/user`: the CLI requires non-empty githubLogin, also on every organization;
    the official SDK requires each organization's role and the account flags."""
    payload: dict[str, Any] = {
        "id": principal.user_id,
        "githubLogin": principal.login,
        "name": principal.name or principal.login,
        "email": principal.email,
        "avatarUrl": principal.avatar_url,
        "organizations": [
            organization_summary_json(m)
            for m in sorted(principal.memberships, key=lambda m: m.organization)
        ],
        "potentialOrganizations": [],
        "identities": [],
        "siteAdmin": principal.is_site_admin,
        "hasMFA": False,
        "isOrgManaged": False,
        "isManagedByMultiOrg": False,
    }
    if principal.token_info.name:
        payload["tokenInfo"] = {
            "name": principal.token_info.name,
            "organization": principal.token_info.organization,
            "team": principal.token_info.team,
        }
    return payload


async def get_current_user(request: web.Request) -> web.Response:
    return json_response(user_json(request[PRINCIPAL]))


async def update_current_user(request: web.Request) -> web.Response:
    """`PATCH /api/user` (extension): the caller's own `name`, `email` and `avatarUrl`;
    answers as `GET /api/user` does."""
    body = await read_json_object(request)
    change = identity_pb2.UpdateProfileRequest()
    for member, field in (("name", "name"), ("email", "email"), ("avatarUrl", "avatar_url")):
        if body.get(member) is not None:
            setattr(change, field, optional_string(body, member))
    backends = request.app[BACKENDS]
    await backends.identity.UpdateProfile(change, **call_options(request))
    principal = await backends.identity.Authenticate(
        identity_pb2.AuthenticateRequest(token=request[TOKEN]), **call_options(request)
    )
    return json_response(user_json(principal))


async def get_default_organization(request: web.Request) -> web.Response:
    """The Go type has no JSON tags, hence the capitalised keys."""
    return json_response({"GitHubLogin": request[PRINCIPAL].default_organization, "Messages": []})


async def get_bootstrap_status(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].identity.GetBootstrapStatus(
        identity_pb2.GetBootstrapStatusRequest(), **call_options(request)
    )
    return json_response(
        {
            "bootstrapNeeded": reply.is_bootstrap_needed,
            "loginMethods": list(reply.login_methods),
            "bootstrapRequired": reply.is_bootstrap_needed,
            "firstAdminConfigured": not reply.is_bootstrap_needed,
            "organizationConfigured": reply.has_organization,
            "nextSteps": _next_steps(reply),
        }
    )


def _next_steps(reply: identity_pb2.GetBootstrapStatusResponse) -> list[str]:
    """What an operator does next on this instance, in order."""
    if reply.is_bootstrap_needed:
        return [
            "Create the first admin: POST /api/admin/bootstrap/first-admin "
            '{"login": ..., "organization": ...} (the response holds its access token, once).',
            "Log the Pulumi CLI in with that token: pulumi login <this server's URL>.",
        ]
    if not reply.has_organization:
        return ['Create an organization: POST /api/orgs {"name": ...}.']
    return [
        "Invite people by email (each gets a one-time link to join, shown in the answer "
        'and mailed when SMTP is configured): POST /api/orgs/{orgName}/invites/batch {"invites": '
        '[{"email": ..., "role": "member"}]}.',
        "Or create users directly (site admins): POST /api/admin/users "
        '{"login": ..., "email": ..., "issueToken": true}.',
        "Create teams and grant them stacks: POST /api/orgs/{orgName}/teams/pulumi.",
        "Create organization or team tokens for CI: POST /api/orgs/{orgName}/tokens.",
    ]


async def bootstrap_first_admin(request: web.Request) -> web.Response:
    """Create the first admin while no user exists; the token is shown this once."""
    body = await read_optional_json_object(request)
    reply = await request.app[BACKENDS].identity.BootstrapFirstAdmin(
        identity_pb2.BootstrapFirstAdminRequest(
            login=optional_string(body, "login"),
            name=optional_string(body, "name"),
            email=optional_string(body, "email"),
            organization=optional_string(body, "organization"),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "token": reply.token,
            "user": {
                "id": reply.user.id,
                "githubLogin": reply.user.login,
                "name": reply.user.name,
                "email": reply.user.email,
                "siteAdmin": reply.user.is_site_admin,
            },
            "organization": {"id": reply.organization.id, "githubLogin": reply.organization.name},
        },
        status=201,
    )


async def bootstrap_first_admin_alias(request: web.Request) -> web.Response:
    """Same as `POST /api/admin/bootstrap`, under the path of the platform design notes."""
    return await bootstrap_first_admin(request)
