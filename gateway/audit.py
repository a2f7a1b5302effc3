"""The audit trail of the gateway: which calls are recorded, as what, and the recorder.

Every mutating `/api/` call (POST, PUT, PATCH, DELETE), whatever its outcome, is recorded
with who made it (user and token id, update token or agent pool), the organization, a stable
event name, the target, source address, user agent, time and HTTP status. Request bodies,
secret values and credentials are never recorded: only names from the path and, for a few
calls, one name-like member of the body (a new stack's or pool's name).

An entry goes into an organization's log only when the caller was verified: a user whose
token authenticated, or an update token the updates service accepted for that organization's
stack (the call succeeded). Everything else (no token, a token that did not authenticate, a
refused update or agent token) is recorded once at site level, under no organization, and
never under the organization a URL names. Every site-level entry of a refused call (these,
and refusals on routes naming no organization, such as the agents') is rate-limited per
client address and in all (`RefusalLimiter`), the rest counted and dropped. The hot
update-token and agent calls that are otherwise not recorded leave a site-level entry when
refused for their credential or path (401, 404). Site admins read site-level entries through
the instance-wide export.

Auditing fails open: entries go through a bounded in-memory queue to the audit service in
batches, after the response is decided. A record that cannot be written (the identity
service away for all retries, or the queue full) is logged as an error and dropped; it never
delays the call beyond building the entry, and never turns its answer into an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.bodies import BODY, read_body
from gateway.context import BACKENDS, PRINCIPAL, REQUEST_ID, SETTINGS
from protos.cairn.v1 import audit_pb2, common_pb2, identity_pb2
from services.common.clock import Clock, SystemClock
from services.common.logging import get_logger
from services.common.metrics import METRICS

if TYPE_CHECKING:
    from gateway.routes import Route
    from protos.cairn.v1.audit_pb2_grpc import AuditServiceAsyncStub

log = get_logger("cairn.audit")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class AuditEventType:
    """One kind of audit entry and the route operations that produce it."""

    name: str
    display_name: str
    description: str
    operations: tuple[str, ...]
    # A member of the JSON body naming what a create makes; appended to the target.
    target_field: str = ""
    # A member of the JSON body worth naming in the description (a rename's new name).
    detail_field: str = ""
    # Outcomes that are not recorded: an agent's claim finding no work (every few seconds).
    quiet_statuses: frozenset[int] = frozenset()
    # When set, the only outcomes that are recorded.
    recorded_statuses: frozenset[int] | None = None

    def records(self, status: int) -> bool:
        """Whether a call that ended with `status` is recorded as this event."""
        if status in self.quiet_statuses:
            return False
        return self.recorded_statuses is None or status in self.recorded_statuses


# THE table: route operation id -> event. Operations of other branches' routes may be listed
# before their routes exist; only events with a served route appear in the catalogue.
EVENT_TYPES: tuple[AuditEventType, ...] = (
    AuditEventType(
        "stack.create",
        "Stack Created",
        "A stack was created.",
        ("create_stack",),
        target_field="stackName",
    ),
    AuditEventType("stack.delete", "Stack Deleted", "A stack was deleted.", ("delete_stack",)),
    AuditEventType(
        "stack.rename",
        "Stack Renamed",
        "A stack was renamed.",
        ("rename_stack",),
        detail_field="newName",
    ),
    AuditEventType(
        "stack.tags.update",
        "Stack Tags Updated",
        "A stack's tags were changed.",
        ("update_stack_tags",),
    ),
    AuditEventType(
        "stack.transfer",
        "Stack Transferred",
        "A stack moved to another organization.",
        ("transfer_stack",),
    ),
    AuditEventType(
        "stack.ownership.update",
        "Stack Ownership Changed",
        "A stack's owner was changed.",
        ("reassign_stack_ownership",),
    ),
    AuditEventType(
        "stack.permission.update",
        "Stack Permission Changed",
        "A team's or collaborator's access to a stack was changed.",
        ("update_team_stack_permissions", "delete_stack_permission", "update_stack_collaborator"),
    ),
    AuditEventType(
        "stack.notifications.update",
        "Stack Notifications Changed",
        "A stack's notification settings were changed.",
        ("update_stack_notification_settings",),
    ),
    AuditEventType(
        "stack.annotation.update",
        "Stack Annotation Written",
        "A new version of a stack annotation was stored.",
        ("upsert_stacks_annotations",),
    ),
    AuditEventType(
        "stack.import",
        "Stack Imported",
        "A stack's state was replaced by an import.",
        ("import_stack",),
    ),
    AuditEventType(
        "update.create",
        "Update Created",
        "An update, preview, refresh or destroy was created.",
        ("create_update",),
    ),
    AuditEventType("update.start", "Update Started", "An update was started.", ("start_update",)),
    AuditEventType(
        "update.cancel", "Update Cancelled", "An update was cancelled.", ("cancel_update",)
    ),
    AuditEventType(
        "update.complete",
        "Update Completed",
        "An update ended (succeeded or failed).",
        ("complete_update",),
    ),
    AuditEventType(
        "secret.encrypt",
        "Secret Encrypted",
        "Values were encrypted with a stack's key.",
        ("encrypt_value", "batch_encrypt_value"),
    ),
    AuditEventType(
        "secret.decrypt",
        "Secret Decrypted",
        "Values were decrypted with a stack's key.",
        ("decrypt_value", "batch_decrypt_value"),
    ),
    AuditEventType(
        "secret.decrypt.logged",
        "Secret Decryption Reported",
        "A client reported decrypting values itself.",
        ("log_only_decrypt_value", "log_only_batch_decrypt_value"),
    ),
    AuditEventType(
        "agent_pool.create",
        "Agent Pool Created",
        "An agent pool was created.",
        ("create_org_agent_pool",),
        detail_field="name",
    ),
    AuditEventType(
        "agent_pool.update",
        "Agent Pool Updated",
        "An agent pool was changed.",
        ("patch_org_agent_pool",),
        detail_field="name",
    ),
    AuditEventType(
        "agent_pool.delete",
        "Agent Pool Deleted",
        "An agent pool was deleted.",
        ("delete_org_agent_pool",),
    ),
    AuditEventType(
        "agent.register", "Agent Registered", "An agent joined its pool.", ("register_agent",)
    ),
    AuditEventType(
        "deployment.claim",
        "Deployment Claimed",
        "An agent took a queued deployment.",
        ("claim_deployment",),
        quiet_statuses=frozenset({204}),
    ),
    AuditEventType(
        "deployment.finish",
        "Deployment Finished",
        "An agent reported a deployment's end.",
        ("finish_deployment",),
    ),
    AuditEventType(
        "deployment.create",
        "Deployment Created",
        "A deployment was queued.",
        ("create_api_deployment_handler_v2",),
    ),
    AuditEventType(
        "deployment.cancel",
        "Deployment Cancelled",
        "A deployment was cancelled.",
        ("cancel_deployment",),
    ),
    AuditEventType(
        "deployment_settings.update",
        "Deployment Settings Updated",
        "A stack's deployment settings were changed.",
        ("patch_deployment_settings", "replace_deployment_settings"),
    ),
    AuditEventType(
        "deployment_settings.delete",
        "Deployment Settings Deleted",
        "A stack's deployment settings were removed.",
        ("delete_deployment_settings",),
    ),
    AuditEventType(
        "deployment_settings.encrypt",
        "Deployment Secret Encrypted",
        "A deployment settings value was encrypted.",
        ("encrypt_deployment_settings_secret",),
    ),
    AuditEventType(
        "token.create",
        "Access Token Created",
        "An access token was created.",
        ("create_personal_token", "create_org_token", "create_team_token"),
    ),
    AuditEventType(
        "token.rotate",
        "Access Token Rotated",
        "An access token got a new value; the old one stopped working.",
        ("rotate_personal_token", "rotate_org_token", "rotate_team_token"),
    ),
    AuditEventType(
        "token.delete",
        "Access Token Deleted",
        "An access token was revoked.",
        ("delete_personal_token", "delete_org_token", "delete_team_token"),
    ),
    AuditEventType(
        "member.add",
        "Member Added",
        "A user joined an organization.",
        ("add_organization_member",),
    ),
    AuditEventType(
        "member.update",
        "Member Role Changed",
        "A member's role was changed.",
        ("update_organization_member", "set_sole_organization_admin"),
    ),
    AuditEventType(
        "member.remove",
        "Member Removed",
        "A user left an organization.",
        ("delete_organization_member",),
    ),
    AuditEventType(
        "invite.create",
        "Invitations Sent",
        "Users were invited to an organization.",
        ("batch_create_org_invite_email",),
    ),
    AuditEventType(
        "invite.accept",
        "Invitation Accepted",
        "An invitation was accepted.",
        ("accept_org_invite",),
    ),
    AuditEventType(
        "invite.cancel",
        "Invitation Cancelled",
        "An invitation was withdrawn.",
        ("cancel_org_invite",),
    ),
    AuditEventType(
        "team.create",
        "Team Created",
        "A team was created.",
        ("create_pulumi_team",),
        detail_field="name",
    ),
    AuditEventType("team.update", "Team Updated", "A team was changed.", ("update_team",)),
    AuditEventType("team.delete", "Team Deleted", "A team was deleted.", ("delete_team",)),
    AuditEventType(
        "organization.create",
        "Organization Created",
        "An organization was created.",
        ("create_organization",),
        target_field="name",
    ),
    AuditEventType(
        "organization.update",
        "Organization Updated",
        "An organization's settings changed.",
        ("update_organization_settings",),
    ),
    AuditEventType(
        "user.default_organization.update",
        "Default Organization Changed",
        "A user chose another default organization.",
        ("update_default_organization",),
    ),
    AuditEventType(
        "instance.bootstrap",
        "First Admin Created",
        "The instance's first admin was created.",
        ("bootstrap_first_admin", "bootstrap_first_admin_alias"),
        target_field="login",
    ),
    AuditEventType(
        "copilot.chat",
        "Copilot Asked",
        "A copilot conversation was started or continued.",
        ("copilot_skill",),
    ),
)


def needs_admin(route: Route) -> bool:
    """An organization admin's call: by role, by stack permission, or changing who may do what."""
    return (
        route.role == common_pb2.ROLE_ADMIN
        or route.permission == identity_pb2.STACK_PERMISSION_ADMIN
        or route.manages_access
    )


# For a mutating call whose operation has no event of its own (or no route at all).
FALLBACK_EVENT = AuditEventType(
    "api.call", "API Call", "A mutating call with no more specific event.", ()
)

# Made thousands of times per update, or every few seconds per agent; the update's
# create/start/cancel/complete and the agent's register/claim/finish are recorded instead.
UNRECORDED_OPERATIONS = frozenset(
    {
        # A read that takes its options as a POST body.
        "get_stack_starter_workflow",
        "renew_update_lease",
        "patch_update_checkpoint",
        "patch_update_checkpoint_verbatim",
        "patch_update_checkpoint_delta",
        "patch_update_journal_entries",
        "post_engine_event",
        "post_engine_event_batch",
        "append_update_log_entry",
        "agent_heartbeat",
        "append_deployment_logs",
    }
)

# Refusals of the unrecorded update-token and agent calls for their credential or their path:
# kept (at site level), so spraying tokens or update ids at the hot routes leaves a trace.
CREDENTIAL_REFUSALS = frozenset({401, 404})
REFUSED_HOT_CALL_EVENT = dataclasses.replace(FALLBACK_EVENT, recorded_statuses=CREDENTIAL_REFUSALS)
# Route access rules whose credential is not a user's token (see gateway.routes.Access).
_UPDATE_ACCESS = "update"
_AGENT_ACCESS = "agent"

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
)
# A body member is recorded only when it looks like a name, never free text or a secret.
_NAME_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_MAX_NAMED_BODY_BYTES = 64 * 1024
# Where a call matched no route (404, 405), the organization its path names, if any.
_PATH_ORGANIZATION = re.compile(r"/api/(?:orgs|stacks)/([A-Za-z0-9][A-Za-z0-9_.\-]{0,99})(?:/|$)")
_USER_AGENT_LIMIT = 512
# A refused call's principal is looked up once more; the call itself is already answered.
_LOOKUP_TIMEOUT_SECONDS = 2.0


class AuditPolicy:
    """Which event a route's call records, built once from the route table."""

    def __init__(self, routes: Sequence[Route]) -> None:
        by_operation = {op: kind for kind in EVENT_TYPES for op in kind.operations}
        self._routes = {route.operation_id: route for route in routes}
        self._events = {
            op: by_operation.get(op, FALLBACK_EVENT)
            for op, route in self._routes.items()
            if route.method in MUTATING_METHODS and op not in UNRECORDED_OPERATIONS
        }
        served = {kind.name for kind in self._events.values()}
        self._events.update(
            {
                op: REFUSED_HOT_CALL_EVENT
                for op, route in self._routes.items()
                if route.method in MUTATING_METHODS
                and op in UNRECORDED_OPERATIONS
                and route.access.value in (_UPDATE_ACCESS, _AGENT_ACCESS)
            }
        )
        # Unmatched paths and methods are recorded under the fallback, so it is always served.
        self.catalogue: tuple[AuditEventType, ...] = (
            *(kind for kind in EVENT_TYPES if kind.name in served),
            FALLBACK_EVENT,
        )
        admin_events = {
            self._events[op].name
            for op, route in self._routes.items()
            if op in self._events and needs_admin(route)
        }
        self.admin_events = frozenset(admin_events)

    def route(self, operation_id: str) -> Route | None:
        return self._routes.get(operation_id)

    def event_for(self, request: web.Request) -> AuditEventType | None:
        """The event this call records, or None when it is not audited."""
        if request.method not in MUTATING_METHODS or not request.path.startswith("/api/"):
            return None
        operation = request.match_info.route.name
        if operation is None or operation not in self._routes:
            # No such route, or a method the path does not take: still an attempt.
            return FALLBACK_EVENT
        return self._events.get(operation)

    def names(self) -> frozenset[str]:
        return frozenset(kind.name for kind in self.catalogue)


class AuditRecorder:
    """A bounded queue drained in batches into the audit service by one background task."""

    def __init__(
        self,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        attempts: int = 3,
        retry_seconds: float = 0.2,
    ) -> None:
        self._queue: asyncio.Queue[audit_pb2.AuditEvent] = asyncio.Queue(capacity)
        self._batch_size = batch_size
        self._attempts = attempts
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def submit(self, event: audit_pb2.AuditEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("audit_event_dropped", audit_event=event.event, reason="queue full")

    def start(self, stub: AuditServiceAsyncStub, timeout: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(stub, timeout))

    async def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was written (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> None:
        if self._task is None:
            return
        if not await self.flush(timeout):
            log.error("audit_events_lost_at_shutdown", events=self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _drain(self, stub: AuditServiceAsyncStub, timeout: float) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(stub, batch, timeout)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(
        self, stub: AuditServiceAsyncStub, batch: list[audit_pb2.AuditEvent], timeout: float
    ) -> None:
        request = audit_pb2.RecordAuditEventsRequest(events=batch)
        failure = ""
        for attempt in range(self._attempts):
            try:
                await stub.RecordAuditEvents(request, timeout=timeout)
                return
            except grpc.aio.AioRpcError as error:
                failure = error.code().name
            except Exception as error:  # the writer must outlive any one failure
                failure = type(error).__name__
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._retry_seconds * (attempt + 1))
        log.error(
            "audit_record_failed",
            events=len(batch),
            audit_events=sorted({event.event for event in batch}),
            error=failure,
        )


class RefusalLimiter:
    """Bounds the site-level entries of refused, unverified calls: at most `per_address` per
    client address and `total` in all per minute (fixed windows); the rest are counted and
    dropped, and each window that dropped some is logged once when the next one begins.

    Memory stays bounded: an address is remembered only when one of its entries is kept, so
    a window never remembers more than `total` addresses.
    """

    WINDOW_SECONDS = 60.0

    def __init__(self, per_address: int, total: int, clock: Clock | None = None) -> None:
        self._per_address = per_address
        self._total = total
        self._clock = clock or SystemClock()
        self._window_start = self._clock.now()
        self._counts: dict[str, int] = {}
        self._kept = 0
        self._window_dropped = 0
        self.dropped = 0

    def allow(self, address: str) -> bool:
        """Whether one more refusal from `address` may be recorded now."""
        now = self._clock.now()
        if not self._window_start <= now < self._window_start + self.WINDOW_SECONDS:
            self._next_window(now)
        kept = self._counts.get(address, 0)
        if kept >= self._per_address or self._kept >= self._total:
            self._window_dropped += 1
            self.dropped += 1
            return False
        self._counts[address] = kept + 1
        self._kept += 1
        return True

    def _next_window(self, now: float) -> None:
        if self._window_dropped:
            log.warning(
                "audit_refusals_dropped",
                entries=self._window_dropped,
                kept=self._kept,
                window_seconds=self.WINDOW_SECONDS,
            )
        self._window_start = now
        self._counts.clear()
        self._kept = 0
        self._window_dropped = 0


AUDIT_POLICY = web.AppKey("audit_policy", AuditPolicy)
AUDIT_RECORDER = web.AppKey("audit_recorder", AuditRecorder)
AUDIT_REFUSAL_LIMITER = web.AppKey("audit_refusal_limiter", RefusalLimiter)


async def recording(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: run the recorder while the app runs; write what is queued on the way out."""
    recorder = app[AUDIT_RECORDER]
    timeout = app[SETTINGS].grpc_timeout_seconds
    recorder.start(app[BACKENDS].audit, timeout)
    yield
    await recorder.close(timeout)


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
        source_ip=request.remote or "",
        user_agent=request.headers.get("User-Agent", "")[:_USER_AGENT_LIMIT],
        status=status,
        method=request.method,
        path=request.path,
        request_id=request.get(REQUEST_ID, ""),
        is_org_admin_required=route is not None and needs_admin(route),
        is_auth_failure=status == 401,
    )
    access = route.access.value if route is not None else ""
    # Whether the caller was verified for the organization the path names.
    is_verified = True
    if principal is not None:
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_USER
        event.actor_login = principal.login
        event.actor_name = principal.name or principal.login
        event.token_id = principal.token_info.token_id
        event.token_name = principal.token_info.name
    elif access == _UPDATE_ACCESS and status != 401:
        event.actor_kind = audit_pb2.AUDIT_ACTOR_KIND_UPDATE_TOKEN
        event.actor_name = "update token"
        # Only a call the updates service accepted proves the update belongs to the stack
        # the path names, and so to its organization.
        is_verified = status < 400
    elif access == _AGENT_ACCESS and status != 401:
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
    if route is not None and route.access.value not in ("user", "org", "stack"):
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
