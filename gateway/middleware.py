"""Metrics, request id, error translation, the Accept rule and authentication, applied to
every route."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import grpc
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.context import (
    AGENT_TOKEN,
    AUTH_FAILURES,
    BACKENDS,
    CALLER,
    PRINCIPAL,
    REQUEST_ID,
    ROLE,
    STACK,
    TOKEN,
    UPDATE_TOKEN,
    stack_ref,
)
from gateway.errors import ApiError, error_response, reason, rpc_error_response
from gateway.route import Access, Route
from gateway.routes import ROUTES_BY_OPERATION
from protos.cairn.v1 import identity_pb2, stacks_pb2
from services.common.auth import Caller
from services.common.logging import get_logger
from services.common.metrics import METRICS
from services.common.stack_authorization import authorize_stack

SITE_ADMINS_ONLY = "Forbidden: this is for site admins"

log = get_logger("cairn.gateway")

_ACCEPTED = re.compile(r"^(application/vnd\.pulumi\+\d+|application/json|\*/\*|application/\*)$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Every credential Cairn issues is printable ASCII without spaces. Anything else (control
# characters, bytes that are not UTF-8) is no credential: refused, never logged or echoed.
_CREDENTIAL = re.compile(r"[\x21-\x7e]{1,4096}")
UNAUTHORIZED = "Unauthorized: No credentials provided or are invalid."
TOO_MANY_FAILURES = (
    "Too Many Requests: too many failed authentications from this address; "
    "retry after the time in Retry-After."
)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route operation id (never the raw path) and status."""
    started = time.perf_counter()
    # Anything escaping the error middleware is a failure; a vanished client is 499.
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        request.app[METRICS].observe_http(
            request.match_info.route.name, request.method, status, time.perf_counter() - started
        )


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Use the caller's X-Request-ID when sane, else make one; echo it on every response."""
    supplied = request.headers.get("X-Request-ID", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-ID"] = request_id
        exc.headers["X-Pulumi-Request-ID"] = request_id
        raise
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    response.headers["X-Request-ID"] = request_id
    response.headers["X-Pulumi-Request-ID"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as Pulumi's `{"code", "message"}` body with the right status."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.message)
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            log.error("backend_failed", status=error.code().name, path=request.path)
        return rpc_error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            message = "Request Entity Too Large: the request body exceeds the size limit."
        elif exc.status == 404:
            message = f"Not Found: no route for {request.method} {request.path}"
        elif exc.status == 405:
            message = f"Method Not Allowed: {request.method} is not supported on {request.path}"
        else:
            message = f"{reason(exc.status)}: {exc.text or exc.reason}"
        response = error_response(exc.status, message)
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # RFC 9110: a 405 lists the methods the resource does support.
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("request_failed", path=request.path)
        return error_response(500, "Internal Server Error: something went wrong; see the log.")


def _accepts(header: str) -> bool:
    for item in header.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if _ACCEPTED.match(media):
            return True
    return False


def _accepts_text(header: str) -> bool:
    return any(
        item.split(";", 1)[0].strip().lower() in ("text/plain", "text/csv", "text/*")
        for item in header.split(",")
    )


@web.middleware
async def accept_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """/api/ answers only clients that accept Pulumi's media type, JSON or anything (415)."""
    header = request.headers.get("Accept", "")
    if request.path.startswith("/api/") and not _accepts(header):
        route = _route(request)
        if route is not None and route.is_text_accepted and _accepts_text(header):
            return await handler(request)
        if route is not None and route.is_credential_exchange:
            return await handler(request)
        raise ApiError(
            415,
            "Unsupported Media Type: send Accept: application/vnd.pulumi+8 (or +9), "
            "application/json or */*",
        )
    return await handler(request)


def _route(request: web.Request) -> Route | None:
    name = request.match_info.route.name
    return ROUTES_BY_OPERATION.get(name) if name else None


def _credential(request: web.Request, scheme: str, message: str) -> str:
    header = request.headers.get("Authorization", "")
    given, _, value = header.strip().partition(" ")
    value = value.strip()
    if given.lower() != scheme or not _CREDENTIAL.fullmatch(value):
        raise ApiError(401, message)
    return value


def access_token(request: web.Request) -> str:
    """The `Authorization: token <value>` credential, or a 401."""
    return _credential(request, "token", UNAUTHORIZED)


def update_token(request: web.Request) -> str:
    """The `Authorization: update-token <lease>` credential of calls made for an update."""
    return _credential(
        request, "update-token", "Unauthorized: this call needs the update's lease token"
    )


@web.middleware
async def auth_failure_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each 401 per client address; past the limit, 429 before any credential is
    checked. Routes that need no credential are left alone; a credential exchange counts its
    refusals (401 and 403) the same way."""
    route = _route(request)
    is_exchange = route is not None and route.is_credential_exchange
    if route is not None and route.access is Access.PUBLIC and not is_exchange:
        return await handler(request)
    failures = request.app[AUTH_FAILURES]
    address = failures.client_address(request)
    retry_after = await failures.retry_after(address)
    if retry_after is not None:
        refusal = error_response(429, TOO_MANY_FAILURES)
        refusal.headers["Retry-After"] = str(retry_after)
        return refusal
    response = await handler(request)
    if response.status == 401 or (is_exchange and response.status == 403):
        await failures.record(address)
    return response


@web.middleware
async def no_store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers of routes that show a token or secret are never stored by any cache."""
    response = await handler(request)
    route = _route(request)
    if route is not None and route.shows_secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check the organization role, and resolve the stack, as the route says."""
    route = _route(request)
    if route is None or route.access is Access.PUBLIC:
        return await handler(request)
    if route.access is Access.AGENT:
        # A pool token; the agent_pools service checks it.
        request[AGENT_TOKEN] = access_token(request)
        request[CALLER] = Caller(request_id=request[REQUEST_ID])
        return await handler(request)
    if route.access is Access.UPDATE:
        # The lease token is the credential; the updates service checks it against the row.
        request[UPDATE_TOKEN] = update_token(request)
        request[CALLER] = Caller(request_id=request[REQUEST_ID])
        return await handler(request)
    await authorize(request, route, access_token(request))
    return await handler(request)


async def authorize(request: web.Request, route: Route, token: str) -> None:
    """Check `token` against a route's access rule and remember who called.

    The one authorisation path: the REST middleware and the console's pages both use it, so
    a page never shows what the API would refuse. `{orgName}` (and the stack's names) come
    from the request's path. Sets TOKEN, PRINCIPAL, CALLER and, as the rule says, ROLE and
    STACK; raises the services' errors (401, 403, 404) otherwise.
    """
    request[TOKEN] = token
    backends = request.app[BACKENDS]
    options: dict[str, Any] = {
        "timeout": backends.timeout,
        "metadata": Caller(request_id=request[REQUEST_ID]).metadata(),
    }
    if route.access in (Access.USER, Access.SITE_ADMIN):
        is_site_route = route.access is Access.SITE_ADMIN
        principal = await backends.identity.Authenticate(
            identity_pb2.AuthenticateRequest(
                token=token, manages_access=route.manages_access or is_site_route
            ),
            **options,
        )
        _remember(request, principal)
        if is_site_route and not principal.is_site_admin:
            raise ApiError(403, SITE_ADMINS_ONLY)
        return

    org = request.match_info["orgName"]
    if route.access is Access.ORG:
        authorized = await backends.identity.Authorize(
            identity_pb2.AuthorizeRequest(
                token=token,
                organization=org,
                minimum_role=route.role,
                create_organization_if_missing=route.create_organization,
                manages_access=route.manages_access,
            ),
            **options,
        )
    else:
        authorized = await _authorize_stack(request, route, token, options)
    request[ROLE] = authorized.role
    _remember(request, authorized.principal)


async def _authorize_stack(
    request: web.Request, route: Route, token: str, options: dict[str, Any]
) -> identity_pb2.AuthorizeResponse:
    """Resolve the stack the path names, then check the caller's permission on it."""
    backends = request.app[BACKENDS]
    stack, authorized = await authorize_stack(
        backends.identity,
        backends.stacks,
        stacks_pb2.GetStackRequest(ref=stack_ref(request)),
        token=token,
        permission=route.permission,
        manages_access=route.manages_access,
        options=options,
    )
    request[STACK] = stack
    return authorized


def _remember(request: web.Request, principal: identity_pb2.Principal) -> None:
    request[PRINCIPAL] = principal
    request[CALLER] = Caller(
        user_id=principal.user_id,
        login=principal.login,
        request_id=request[REQUEST_ID],
        # Services that check the caller's own rights (a transfer's destination) need it.
        token_id=principal.token_info.token_id,
    )
    structlog.contextvars.bind_contextvars(user=principal.login)


__all__ = [
    "accept_middleware",
    "auth_failure_middleware",
    "auth_middleware",
    "authorize",
    "error_middleware",
    "metrics_middleware",
    "no_store_middleware",
    "request_id_middleware",
]
