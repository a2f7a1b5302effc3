"""Calls made with an access token: checked through identity exactly like their REST twin.

A team's own tool sends `authorization: token <value>` metadata. The method's entry in
`call_access.TOKEN_ACCESS` says what it needs; this module finds the organization or stack
the request names, asks identity whether the token holds that role or permission (the same
`Authorize` the gateway uses for REST routes), and records changes in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

from protos.cairn.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
)
from services.common.auth import Caller
from services.common.call_access import MethodAccess, Scope
from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    from_rpc_error,
    http_status,
)
from services.common.logging import get_logger
from services.common.stack_authorization import authorize_stack

if TYPE_CHECKING:
    from protos.cairn.v1.audit_pb2_grpc import AuditServiceAsyncStub
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.stacks_pb2_grpc import StacksServiceAsyncStub

log = get_logger("cairn.grpc")

# Members naming the stack beside its id: they must name the same stack.
STACK_NAME_FIELDS = (("organization", "organization"), ("project", "project"), ("stack", "stack"))
USER_AGENT_LIMIT = 256


@dataclass(frozen=True)
class TokenGrant:
    """What identity answered for a token call: who, and where the call acts."""

    caller: Caller
    principal: identity_pb2.Principal
    organization: str
    target: str


def field_value(request: Message, path: str) -> Any:
    """A request member by (dotted) name."""
    value: Any = request
    for name in path.split("."):
        value = getattr(value, name)
    return value


class TokenAuthorizer:
    """Resolves access tokens through identity (and stacks, for a stack's id and owner).

    `connect(service)` opens a signed channel to a Cairn service; channels are opened on the
    first token call, so a service started alone needs no peers until one arrives.
    """

    def __init__(self, connect: Callable[[str], grpc.aio.Channel], timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}

    def _stub(self, service: str, kind: str, make: Callable[[grpc.aio.Channel], Any]) -> Any:
        """One stub per kind, on one channel per service, made on first use."""
        if kind not in self._stubs:
            if service not in self._channels:
                self._channels[service] = self._connect(service)
            self._stubs[kind] = make(self._channels[service])
        return self._stubs[kind]

    @property
    def _identity(self) -> IdentityServiceAsyncStub:
        stub: IdentityServiceAsyncStub = self._stub(
            "identity", "identity", identity_pb2_grpc.IdentityServiceStub
        )
        return stub

    @property
    def _stacks(self) -> StacksServiceAsyncStub:
        stub: StacksServiceAsyncStub = self._stub(
            "stacks", "stacks", stacks_pb2_grpc.StacksServiceStub
        )
        return stub

    @property
    def _audit(self) -> AuditServiceAsyncStub:
        stub: AuditServiceAsyncStub = self._stub(
            "identity", "audit", audit_pb2_grpc.AuditServiceStub
        )
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._stubs.clear()

    async def authorize(
        self, token: str, access: MethodAccess, request: Message | None, request_id: str
    ) -> TokenGrant:
        """Check the token against the method's rule; raises the REST twin's errors.

        `request` is None for streaming methods, which only ever need a valid token.
        """
        try:
            if request is None or access.scope is Scope.USER:
                grant = await self._authenticate(token, access)
            else:
                grant = await self._authorize(token, access, request)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        if request is not None:
            _bind_caller_fields(access, request, grant.principal.login)
        caller = Caller(
            user_id=grant.principal.user_id,
            login=grant.principal.login,
            request_id=request_id,
            token_id=grant.principal.token_info.token_id,
        )
        return TokenGrant(caller, grant.principal, grant.organization, grant.target)

    async def _authenticate(self, token: str, access: MethodAccess) -> TokenGrant:
        principal = await self._identity.Authenticate(
            identity_pb2.AuthenticateRequest(token=token, manages_access=access.manages_access),
            timeout=self._timeout,
        )
        return TokenGrant(Caller(), principal, "", "")

    async def _authorize(self, token: str, access: MethodAccess, request: Message) -> TokenGrant:
        options: dict[str, Any] = {"timeout": self._timeout}
        if access.scope is Scope.ORG:
            organization = str(field_value(request, access.field))
            authorized = await self._identity.Authorize(
                identity_pb2.AuthorizeRequest(
                    token=token,
                    organization=organization,
                    minimum_role=access.role,
                    manages_access=access.manages_access,
                ),
                **options,
            )
            return TokenGrant(Caller(), authorized.principal, organization, organization)
        if access.scope is Scope.STACK_ID:
            stack_id = str(field_value(request, access.field))
            if not stack_id:
                raise InvalidArgument(f"Bad Request: `{access.field}` is required")
            lookup = stacks_pb2.GetStackRequest(stack_id=stack_id)
        else:
            lookup = stacks_pb2.GetStackRequest(ref=field_value(request, access.field))
        try:
            stack, authorized = await authorize_stack(
                self._identity,
                self._stacks,
                lookup,
                token=token,
                permission=access.permission,
                manages_access=access.manages_access,
                options=options,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND and not lookup.HasField("ref"):
                raise NotFound("Not Found: stack not found") from None
            raise
        if access.scope is Scope.STACK_ID:
            _check_stack_names(request, stack)
        ref = stack.ref
        target = f"{ref.organization}/{ref.project}/{ref.stack}"
        return TokenGrant(Caller(), authorized.principal, ref.organization, target)

    async def record(
        self,
        grant: TokenGrant,
        access: MethodAccess,
        method: str,
        code: grpc.StatusCode,
        peer: str,
        user_agent: str,
        started_at: float,
    ) -> None:
        """Write the audit entry of a changing call, like the REST twin's; never fails it."""
        if not access.audit_event:
            return
        principal = grant.principal
        event = audit_pb2.AuditEvent(
            time_micros=int(started_at * 1_000_000),
            organization=grant.organization,
            event=access.audit_event,
            target=grant.target,
            description=f"{access.audit_event} (gRPC {method.rsplit('/', 1)[-1]}): {grant.target}",
            actor_kind=audit_pb2.AUDIT_ACTOR_KIND_USER,
            actor_login=principal.login,
            actor_name=principal.name or principal.login,
            token_id=principal.token_info.token_id,
            token_name=principal.token_info.name,
            source_ip=peer_address(peer),
            user_agent=user_agent[:USER_AGENT_LIMIT],
            status=http_status(code),
            method="GRPC",
            path=method,
            request_id=grant.caller.request_id,
            is_org_admin_required=access.role == common_pb2.ROLE_ADMIN,
        )
        try:
            await self._audit.RecordAuditEvents(
                audit_pb2.RecordAuditEventsRequest(events=[event]), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            log.error(
                "audit_entry_failed", audit_event=access.audit_event, status=error.code().name
            )


def peer_address(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` → `127.0.0.1`; `ipv6:[::1]:5000` → `::1`."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host.strip("[]")


def _check_stack_names(request: Message, stack: stacks_pb2.Stack) -> None:
    fields = request.DESCRIPTOR.fields_by_name
    for member, part in STACK_NAME_FIELDS:
        if member in fields and fields[member].type == fields[member].TYPE_STRING:
            named = getattr(request, member)
            if named and named != getattr(stack.ref, part):
                raise InvalidArgument(
                    f"Bad Request: `{member}` names another stack than `stack_id`"
                )


def _bind_caller_fields(access: MethodAccess, request: Message, login: str) -> None:
    for member in access.caller_fields:
        named = getattr(request, member)
        if named and named != login:
            raise PermissionDenied(f"Forbidden: `{member}` must name the caller")
        setattr(request, member, login)
