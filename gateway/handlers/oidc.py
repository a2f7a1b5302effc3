"""OIDC issuers, their authorization policies, and the token exchange (OrganizationsApi
`*_oidc_issuer*`, `get_auth_policy`, `update_auth_policy`; MiscellaneousApi `token`).

The exchange (`POST /api/oauth/token`) takes RFC 8693 members as a form (what the Pulumi
CLI sends for `pulumi login --oidc-token`) or as JSON (the SDK); the CI's JWT is the
credential, so the route needs no access token.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.bodies import read_body, read_form
from gateway.context import AUTH_FAILURES, BACKENDS, REQUEST_ID, call_options
from gateway.convert import (
    json_response,
    no_content,
    optional_int,
    optional_object,
    optional_string,
    parse_object,
    read_json_object,
    read_optional_json_object,
    required_string,
    string_list,
)
from gateway.errors import bad_request
from gateway.views import iso_time
from protos.cairn.v1 import oidc_pb2

_FORM = "application/x-www-form-urlencoded"
_USER_AGENT_LIMIT = 512


def _issuer_json(issuer: oidc_pb2.OidcIssuer) -> dict[str, Any]:
    """Pulumi's `OidcIssuerRegistrationResponse`. A registration's own key set is not shown:
    the SDK reads keys in another shape than the JWK JSON it was given as."""
    return {
        "id": issuer.id,
        "name": issuer.name,
        "url": issuer.url,
        "issuer": issuer.issuer,
        "thumbprints": list(issuer.thumbprints),
        "maxExpiration": issuer.max_expiration,
        "created": iso_time(issuer.created),
        "modified": iso_time(issuer.modified),
        "lastUsed": iso_time(issuer.last_used) if issuer.last_used else None,
        "policyId": issuer.policy_id,
        "hasJwks": bool(issuer.jwks),
    }


def _policy_json(policy: oidc_pb2.AuthPolicy) -> dict[str, Any]:
    return {
        "id": policy.id,
        "version": policy.version,
        "created": iso_time(policy.created),
        "modified": iso_time(policy.modified),
        "policies": [
            {
                "decision": p.decision,
                "tokenType": p.token_type,
                "teamName": p.team_name or None,
                "userLogin": p.user_login or None,
                "runnerID": p.runner_id or None,
                "roleID": p.role_id or None,
                "authorizedPermissions": list(p.authorized_permissions),
                "rules": orjson.loads(p.rules or "{}"),
            }
            for p in policy.policies
        ],
    }


def _jwks(body: dict[str, Any]) -> str | None:
    """A key set member as JSON text (standard JWK Set), None when absent."""
    value = body.get("jwks")
    if value is None:
        return None
    return orjson.dumps(optional_object(value, "jwks")).decode()


def _issuer_request(request: web.Request) -> oidc_pb2.OidcIssuerRequest:
    return oidc_pb2.OidcIssuerRequest(
        organization=request.match_info["orgName"], issuer_id=request.match_info["issuerId"]
    )


async def register_oidc_issuer(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    issuer = await request.app[BACKENDS].oidc.RegisterOidcIssuer(
        oidc_pb2.RegisterOidcIssuerRequest(
            organization=request.match_info["orgName"],
            name=required_string(body, "name"),
            url=required_string(body, "url"),
            thumbprints=string_list(body.get("thumbprints"), "thumbprints"),
            max_expiration=optional_int(body, "maxExpiration"),
            jwks=_jwks(body) or "",
        ),
        **call_options(request),
    )
    return json_response(_issuer_json(issuer))


async def list_orgs_oidc_issuers(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].oidc.ListOidcIssuers(
        oidc_pb2.ListOidcIssuersRequest(organization=request.match_info["orgName"]),
        **call_options(request),
    )
    return json_response({"oidcIssuers": [_issuer_json(i) for i in reply.issuers]})


async def get_oidc_issuer(request: web.Request) -> web.Response:
    issuer = await request.app[BACKENDS].oidc.GetOidcIssuer(
        _issuer_request(request), **call_options(request)
    )
    return json_response(_issuer_json(issuer))


async def update_oidc_issuer(request: web.Request) -> web.Response:
    body = await read_optional_json_object(request)
    update = oidc_pb2.UpdateOidcIssuerRequest(
        organization=request.match_info["orgName"], issuer_id=request.match_info["issuerId"]
    )
    if body.get("name") is not None:
        update.name = required_string(body, "name")
    if body.get("thumbprints") is not None:
        update.has_thumbprints = True
        update.thumbprints.extend(string_list(body["thumbprints"], "thumbprints"))
    if body.get("maxExpiration") is not None:
        update.max_expiration = optional_int(body, "maxExpiration")
    jwks = _jwks(body)
    if jwks is not None:
        update.jwks = jwks
    issuer = await request.app[BACKENDS].oidc.UpdateOidcIssuer(update, **call_options(request))
    return json_response(_issuer_json(issuer))


async def delete_oidc_issuer(request: web.Request) -> web.Response:
    await request.app[BACKENDS].oidc.DeleteOidcIssuer(
        _issuer_request(request), **call_options(request)
    )
    return no_content()


async def regenerate_thumbprints(request: web.Request) -> web.Response:
    issuer = await request.app[BACKENDS].oidc.RegenerateThumbprints(
        _issuer_request(request), **call_options(request)
    )
    return json_response(_issuer_json(issuer))


async def get_auth_policy(request: web.Request) -> web.Response:
    policy = await request.app[BACKENDS].oidc.GetAuthPolicy(
        _issuer_request(request), **call_options(request)
    )
    return json_response(_policy_json(policy))


def _definition(value: Any) -> oidc_pb2.AuthPolicyDefinition:
    entry = optional_object(value, "policies[]")
    rules = entry.get("rules")
    if not isinstance(rules, dict):
        raise bad_request("each policy needs 'rules', an object of claim -> value")
    return oidc_pb2.AuthPolicyDefinition(
        decision=required_string(entry, "decision"),
        token_type=required_string(entry, "tokenType"),
        team_name=optional_string(entry, "teamName"),
        user_login=optional_string(entry, "userLogin"),
        runner_id=optional_string(entry, "runnerID"),
        role_id=optional_string(entry, "roleID"),
        authorized_permissions=string_list(
            entry.get("authorizedPermissions"), "authorizedPermissions"
        ),
        rules=orjson.dumps(rules).decode(),
    )


async def update_auth_policy(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    policies = body.get("policies")
    if not isinstance(policies, list):
        raise bad_request("'policies' must be an array")
    policy = await request.app[BACKENDS].oidc.UpdateAuthPolicy(
        oidc_pb2.UpdateAuthPolicyRequest(
            organization=request.match_info["orgName"],
            policy_id=request.match_info["policyId"],
            policies=[_definition(value) for value in policies],
        ),
        **call_options(request),
    )
    return json_response(_policy_json(policy))


async def _exchange_members(request: web.Request) -> dict[str, Any]:
    """The request's members, from a form (the CLI) or a JSON object (the SDK)."""
    if request.content_type == _FORM:
        return dict(await read_form(request))
    return parse_object(await read_body(request))


def _expiration(members: dict[str, Any]) -> int:
    value = members.get("expiration")
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        return int(value)
    raise bad_request("invalid_request: 'expiration' must be whole seconds")


async def token(request: web.Request) -> web.Response:
    """RFC 8693 token exchange: a CI's OIDC token for a short-lived Cairn access token."""
    members = await _exchange_members(request)
    for name in ("grant_type", "subject_token", "subject_token_type", "audience"):
        if not isinstance(members.get(name), str) or not members[name]:
            raise bad_request(f"invalid_request: '{name}' is required")
    reply = await request.app[BACKENDS].oidc.ExchangeToken(
        oidc_pb2.ExchangeTokenRequest(
            grant_type=members["grant_type"],
            subject_token=members["subject_token"],
            subject_token_type=members["subject_token_type"],
            audience=members["audience"],
            requested_token_type=optional_string(members, "requested_token_type")
            or "urn:pulumi:token-type:access_token:organization",
            scope=optional_string(members, "scope"),
            expiration=_expiration(members),
            source_ip=request.app[AUTH_FAILURES].client_address(request),
            user_agent=request.headers.get("User-Agent", "")[:_USER_AGENT_LIMIT],
            request_id=request.get(REQUEST_ID, ""),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "access_token": reply.access_token,
            "issued_token_type": reply.issued_token_type,
            "token_type": reply.token_type,
            "expires_in": reply.expires_in,
            "scope": reply.scope,
        }
    )
