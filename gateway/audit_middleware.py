"""The audit middleware: records each audited call once its outcome is known.

Who made a call (user and token id, update token or agent pool), the organization, the event
its route names, the target, source address, user agent, time and HTTP status are recorded.
Request bodies, secret values and credentials never are: only names from the path and, for a
few calls, one name-like member of the body (a new stack's or pool's name).

An entry goes into an organization's log only when the caller was verified: a user whose
token authenticated, or an update token the updates service accepted for that organization's
stack (the call succeeded). Everything else (no token, a token that did not authenticate, a
refused update or agent token) is recorded once at site level, under no organization, and
never under the organization a URL names; such refusals are rate-limited (RefusalLimiter).
Site admins read site-level entries through the instance-wide export.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

import grpc
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.audit import AUDIT_RECORDER
from gateway.audit_events import AuditEventType
from gateway.audit_policy import AUDIT_POLICY, AUDIT_REFUSAL_LIMITER
from gateway.bodies import BODY, read_body
from gateway.context import AUTH_FAILURES, BACKENDS, PRINCIPAL, REQUEST_ID
from gateway.route import Access
from protos.cairn.v1 import audit_pb2, identity_pb2
from services.common.logging import get_logger
from services.common.metrics import METRICS

log = get_logger("cairn.audit")

# Path parameters naming what a call acts on, after the stack path, in this order.
_TARGET_PARTS: tuple[tuple[str, str], ...] = (
    ("updateID", "updates"),
    ("deploymentId", "deployments"),
    ("poolId", "agent-pools"),
    ("agentId", "agents"),
    ("teamName", "teams"),
    ("userLogin", "members"),
    ("userName", "collaborators"),
    ("tokenId", "tokens"),
    ("inviteID", "invites"),
    ("issuerId", "oidc/issuers"),
    ("policyId", "auth/policies"),
    ("login", "users"),
)
# A body member is recorded only when it looks like a name, never free text or a secret.
_NAME_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_MAX_NAMED_BODY_BYTES = 64 * 1024
# Where a call matched no route (404, 405), the organization its path names, if any.
_PATH_ORGANIZATION = re.compile(r"/api/(?:orgs|stacks)/([A-Za-z0-9][A-Za-z0-9_.\-]{0,99})(?:/|$)")
_USER_AGENT_LIMIT = 512
# A refused call's principal is looked up once more; the call itself is already answered.
_LOOKUP_TIMEOUT_SECONDS = 2.0


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the call once its outcome is known; recording never changes that outcome."""
    kind = request.app[AUDIT_POLICY].event_for(request)
    if kind is None:
        return await handler(request)
    received = time.time()
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        # The client went away: record what is known without awaiting anything more.
        _submit(request, kind, 499, received, request.get(PRINCIPAL), "")
        raise
    except web.HTTPException as exc:
        await _record(request, kind, exc.status, received)
        raise
    await _record(request, kind, response.status, received)
    return response


def record_console_call(
    request: web.Request, kind: AuditEventType, status: int, detail: str = ""
) -> None:
    """Record a console form's change as its REST twin would be recorded (the console's
    pages are outside /api/, so the middleware does not see them); `detail` is a name-like
    value the REST body would have carried (a new login), never free text."""
    try:
        name = detail if _NAME_VALUE.fullmatch(detail) else ""
        _submit(request, kind, status, time.time(), request.get(PRINCIPAL), name)
    except Exception:
        log.exception("audit_entry_failed", audit_event=kind.name, status=status)


async def _record(request: web.Request, kind: AuditEventType, status: int, at: float) -> None:
    if not kind.records(status):
        return
    try:
        principal = request.get(PRINCIPAL) or await _refused_principal(request, status)
        detail = await _body_name(
            request, kind.target_field or kind.detail_field, is_caller_known=principal is not None
        )
        _submit(request, kind, status, at, principal, detail)
    except Exception:
        log.exception("audit_entry_failed", audit_event=kind.name, status=status)


def _submit(
    request: web.Request,
    kind: AuditEventType,
    status: int,
    at: float,
    principal: identity_pb2.Principal | None,
    detail: str,
) -> None:
    if not kind.records(status):
        return
    policy = request.app[AUDIT_POLICY]
    operation = request.match_info.route.name or ""
    route = policy.route(operation)
    info = request.match_info
    target = _target(info)
    if detail and kind.target_field:
        target = f"{target}/{detail}" if target else detail
    description = f"{kind.display_name}: {target}" if target else kind.display_name
    if detail and kind.detail_field:
        description += f" ({kind.detail_field} {detail})"
    event = audit_pb2.AuditEvent(
        time_micros=int(at * 1_000_000),
        organization=info.get("orgName") or _path_organization(request.path),
        event=kind.name,
        target=target,
        description=description,
        # The client as the failed-authentication limit counts it (behind a trusted proxy,
        # the address X-Forwarded-For names).
        source_ip=request.app[AUTH_FAILURES].client_address(request),
        user_agent=request.headers.get("User-Agent", "")[:_USER_AGENT_LIMIT],
        status=status,
        method=request.method,
        path=request.path,
        request_id=request.get(REQUEST_ID, ""),
        is_org_admin_required=route is not None and route.requires_org_admin,
        is_auth_failure=status == 401,
    )
    access = route.access if route is not None else None
    # Whether the caller was verified for the organization the path names.
    is_verified = True
    if principal is not None:
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_USER
        event.actor_login = principal.login
        event.actor_name = principal.name or principal.login
        event.token_id = principal.token_info.token_id
        event.token_name = principal.token_info.name
    elif access is Access.UPDATE and status != 401:
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_UPDATE_TOKEN
        event.actor_name = "update token"
        # Only a call the updates service accepted proves the update belongs to the stack
        # the path names, and so to its organization.
        is_verified = status < 400
    elif access is Access.AGENT and status != 401:
        # Agent routes name no organization: their entries are site-level anyway.
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_AGENT_POOL
        event.actor_name = "agent pool"
    else:
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_ANONYMOUS
        event.actor_name = "anonymous"
        is_verified = False
    if not is_verified:
        # Never the organization the URL names.
        event.organization = ""
    # Site-level refusals (unverified callers, and agents, whose routes name no organization)
    # are kept within the limits: nobody can flood the site-level log either.
    is_limited = not event.organization and status >= 400
    if is_limited and not request.app[AUDIT_REFUSAL_LIMITER].allow(event.source_ip):
        request.app[METRICS].audit_refusals_dropped.inc()
        return
    request.app[AUDIT_RECORDER].submit(event)


async def _refused_principal(request: web.Request, status: int) -> identity_pb2.Principal | None:
    """Who made a call refused before the gateway learnt it (403/404 on an organization)."""
    if status == 401:
        return None
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    route = request.app[AUDIT_POLICY].route(request.match_info.route.name or "")
    if scheme.lower() != "token" or not token.strip():
        return None
    # An unmatched path or method (404/405) takes whatever token comes; a matched route only
    # a user's token (an agent pool's token is no user).
    if route is not None and route.access not in (
        Access.USER,
        Access.ORG,
        Access.STACK,
        Access.SITE_ADMIN,
    ):
        return None
    try:
        principal: identity_pb2.Principal = await request.app[BACKENDS].identity.Authenticate(
            identity_pb2.AuthenticateRequest(token=token.strip()),
            timeout=_LOOKUP_TIMEOUT_SECONDS,
        )
    except grpc.aio.AioRpcError:
        return None
    return principal


async def _body_name(request: web.Request, field: str, *, is_caller_known: bool) -> str:
    """A name-like string member of a small JSON body, else ''.

    The body the call read is used as read (inflated). A body nobody read (a refused call)
    is read only for an authenticated caller, uncompressed and declared small: an anonymous
    or oversized refusal never costs a read for the audit log's sake.
    """
    if not field:
        return ""
    raw = request.get(BODY)
    if raw is None:
        length = request.content_length
        if (
            not is_caller_known
            or request.headers.get("Content-Encoding")
            or length is None
            or length > _MAX_NAMED_BODY_BYTES
        ):
            return ""
        try:
            raw = await read_body(request)
        except Exception:
            return ""
    if len(raw) > _MAX_NAMED_BODY_BYTES:
        return ""
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    value = body.get(field) if isinstance(body, dict) else None
    if isinstance(value, str) and _NAME_VALUE.fullmatch(value):
        return value
    return ""


def _path_organization(path: str) -> str:
    found = _PATH_ORGANIZATION.match(path)
    return found.group(1) if found else ""


def _target(info: Mapping[str, str]) -> str:
    org, project, stack = info.get("orgName"), info.get("projectName"), info.get("stackName")
    parts: list[str] = []
    if org and project:
        parts.append("/".join(p for p in (org, project, stack) if p))
    for key, label in _TARGET_PARTS:
        value = info.get(key)
        if value:
            parts.append(f"{label}/{value}")
    return "/".join(parts)
