"""The organization page's read-only "OIDC issuers" section for organization admins: the
issuers trusted for CI token exchange, as `GET /api/orgs/{orgName}/oidc/issuers` lists them."""

from __future__ import annotations

from aiohttp import web

from gateway.context import BACKENDS, call_options
from protos.cairn.v1 import oidc_pb2


async def organization_issuers(request: web.Request, org: str) -> tuple[oidc_pb2.OidcIssuer, ...]:
    reply = await request.app[BACKENDS].oidc.ListOidcIssuers(
        oidc_pb2.ListOidcIssuersRequest(organization=org), **call_options(request)
    )
    return tuple(reply.issuers)
