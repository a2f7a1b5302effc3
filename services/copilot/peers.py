"""What the copilot reads from other services, over gRPC, on behalf of the asker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from protos.cairn.v1 import (
    agent_pools_pb2,
    audit_pb2,
    common_pb2,
    identity_pb2,
    stacks_pb2,
    updates_pb2,
)
from services.common.auth import Caller
from services.common.errors import from_rpc_error

if TYPE_CHECKING:
    from protos.cairn.v1.agent_pools_pb2_grpc import AgentPoolsServiceAsyncStub
    from protos.cairn.v1.audit_pb2_grpc import AuditServiceAsyncStub
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.stacks_pb2_grpc import StacksServiceAsyncStub
    from protos.cairn.v1.updates_pb2_grpc import UpdatesServiceAsyncStub

# Bounds on what one answer reads.
MAX_STACKS = 500
MAX_EVENT_PAGES = 50
MAX_LOG_LINES = 5000
MAX_AUDIT_PAGES = 10
LOG_PAGE = 1000
ROLE_NAMES = {common_pb2.ROLE_VIEWER: "viewer", common_pb2.ROLE_MEMBER: "member"}


@dataclass(frozen=True)
class MemberInfo:
    login: str
    name: str
    role: str


@dataclass(frozen=True)
class StackInfo:
    id: str
    organization: str
    project: str
    stack: str
    version: int = 0
    resource_count: int = 0
    last_update: int = 0

    @property
    def name(self) -> str:
        return f"{self.project}/{self.stack}"


@dataclass(frozen=True)
class UpdateSummary:
    update_id: str
    kind: str
    result: str
    version: int
    start_time: int
    end_time: int
    message: str
    resource_changes: Mapping[str, int]
    requested_by: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    urn: str
    type: str

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class DeploymentInfo:
    id: str
    version: int
    operation: str
    status: str
    requested_by: str
    created: int
    finished: int
    message: str


@dataclass(frozen=True)
class AuditEntry:
    time: int
    login: str
    event: str
    target: str
    description: str


class Peers:
    """Stubs of the identity, stacks and updates services, called as the asker."""

    def __init__(
        self,
        identity: IdentityServiceAsyncStub,
        stacks: StacksServiceAsyncStub,
        updates: UpdatesServiceAsyncStub,
        timeout_seconds: float,
        agent_pools: AgentPoolsServiceAsyncStub | None = None,
        audit: AuditServiceAsyncStub | None = None,
    ) -> None:
        self._identity = identity
        self._stacks = stacks
        self._updates = updates
        self._timeout = timeout_seconds
        self._agent_pools = agent_pools
        self._audit = audit

    def _options(self, caller: Caller) -> dict[str, Any]:
        return {"timeout": self._timeout, "metadata": caller.metadata()}

    async def members(self, organization: str, caller: Caller) -> list[MemberInfo]:
        try:
            reply = await self._identity.ListMembers(
                identity_pb2.ListMembersRequest(organization=organization),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [
            MemberInfo(m.user.login, m.user.name, ROLE_NAMES.get(m.role, "admin"))
            for m in reply.members
        ]

    async def stacks(
        self, organization: str, project: str, caller: Caller, token: str = ""
    ) -> list[StackInfo]:
        """The organization's stacks the asker may read (one organization the asker is in).

        With the asker's credential, stacks their role and grants do not let them read are
        left out, exactly as the REST listing leaves them out.
        """
        found: list[stacks_pb2.Stack] = []
        page = ""
        try:
            while len(found) < MAX_STACKS:
                reply = await self._stacks.ListStacks(
                    stacks_pb2.ListStacksRequest(
                        visible_organizations=[organization],
                        organization=organization,
                        project=project,
                        continuation_token=page,
                    ),
                    **self._options(caller),
                )
                found.extend(reply.stacks)
                page = reply.continuation_token
                if not page:
                    break
            if token and found:
                found = await self._readable(found, token, caller)
            states = await self._states([stack.id for stack in found], caller)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [_stack_info(stack, states.get(stack.id)) for stack in found]

    async def stack(
        self, organization: str, project: str, stack: str, caller: Caller
    ) -> StackInfo | None:
        """One stack, or None when it does not exist (the asker's organization is checked)."""
        try:
            found = await self._stacks.GetStack(
                stacks_pb2.GetStackRequest(
                    ref=common_pb2.StackRef(organization=organization, project=project, stack=stack)
                ),
                **self._options(caller),
            )
            states = await self._states([found.id], caller)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise from_rpc_error(error) from None
        return _stack_info(found, states.get(found.id))

    async def _readable(
        self, stacks: list[stacks_pb2.Stack], token: str, caller: Caller
    ) -> list[stacks_pb2.Stack]:
        reply = await self._identity.FilterReadableStacks(
            identity_pb2.FilterReadableStacksRequest(
                token=token,
                stacks=[
                    identity_pb2.StackCandidate(
                        stack_id=stack.id,
                        organization=stack.ref.organization,
                        owner_login=stack.owner_login,
                    )
                    for stack in stacks
                ],
            ),
            **self._options(caller),
        )
        readable = set(reply.stack_ids)
        return [stack for stack in stacks if stack.id in readable]

    async def _states(
        self, stack_ids: list[str], caller: Caller
    ) -> dict[str, updates_pb2.StackState]:
        if not stack_ids:
            return {}
        reply = await self._updates.GetStackStates(
            updates_pb2.GetStackStatesRequest(stack_ids=stack_ids), **self._options(caller)
        )
        return {state.stack_id: state for state in reply.states}

    async def updates(self, stack_id: str, limit: int, caller: Caller) -> list[UpdateSummary]:
        try:
            reply = await self._updates.ListUpdates(
                updates_pb2.ListUpdatesRequest(stack_id=stack_id, page_size=limit, page=1),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [_update(info) for info in reply.updates]

    async def update(self, stack_id: str, version: int, caller: Caller) -> UpdateSummary | None:
        try:
            info = await self._updates.GetUpdate(
                updates_pb2.GetUpdateRequest(stack_id=stack_id, version=version),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise from_rpc_error(error) from None
        return _update(info)

    async def events(self, stack_id: str, update_id: str, caller: Caller) -> list[Any]:
        """Every engine event of an update, in sequence order (bounded)."""
        events: list[Any] = []
        token = ""
        try:
            for _ in range(MAX_EVENT_PAGES):
                reply = await self._updates.ListEngineEvents(
                    updates_pb2.ListEngineEventsRequest(
                        stack_id=stack_id, update_id=update_id, continuation_token=token
                    ),
                    **self._options(caller),
                )
                events.extend(orjson.loads(event.data) for event in reply.events)
                if not reply.continuation_token or not reply.events:
                    break
                token = reply.continuation_token
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return events

    async def resources(
        self, stack_id: str, version: int, caller: Caller
    ) -> tuple[int, list[ResourceInfo]]:
        """The version read (0 for none) and its resources; version 0 reads the newest."""
        try:
            reply = await self._updates.ListResources(
                updates_pb2.ListResourcesRequest(stack_id=stack_id, version=version),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0, []
            raise from_rpc_error(error) from None
        found = []
        for raw in reply.resources:
            data = orjson.loads(raw)
            found.append(ResourceInfo(str(data.get("urn", "")), str(data.get("type", ""))))
        return int(reply.version), found

    async def deployments(
        self, organization: str, stack_id: str, limit: int, caller: Caller
    ) -> list[DeploymentInfo]:
        """A stack's newest deployments, newest first (none when deployments are not wired)."""
        if self._agent_pools is None:
            return []
        try:
            reply = await self._agent_pools.ListDeployments(
                agent_pools_pb2.ListDeploymentsRequest(
                    organization=organization, stack_id=stack_id, page=1, page_size=limit
                ),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [
            DeploymentInfo(
                id=d.id,
                version=d.version,
                operation=d.operation,
                status=d.status,
                requested_by=d.requested_by,
                created=d.created,
                finished=d.finished,
                message=d.message,
            )
            for d in reply.deployments
        ]

    async def deployment_logs(self, stack_id: str, deployment_id: str, caller: Caller) -> list[str]:
        """A deployment's log lines, oldest first (bounded)."""
        if self._agent_pools is None:
            return []
        lines: list[str] = []
        offset = 0
        try:
            while len(lines) < MAX_LOG_LINES:
                reply = await self._agent_pools.GetDeploymentLogs(
                    agent_pools_pb2.GetDeploymentLogsRequest(
                        stack_id=stack_id,
                        deployment_id=deployment_id,
                        offset=offset,
                        count=LOG_PAGE,
                    ),
                    **self._options(caller),
                )
                lines.extend(line.text for line in reply.lines)
                if reply.next_offset < 0 or not reply.lines or reply.next_offset <= offset:
                    break
                offset = reply.next_offset
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return lines

    async def audit(self, organization: str, limit: int, caller: Caller) -> list[AuditEntry]:
        """The organization's newest audit entries (the asker must be an admin)."""
        if self._audit is None:
            return []
        found: list[AuditEntry] = []
        token = ""
        try:
            for _ in range(MAX_AUDIT_PAGES):
                reply = await self._audit.ListAuditEvents(
                    audit_pb2.ListAuditEventsRequest(
                        filter=audit_pb2.AuditFilter(organization=organization),
                        continuation_token=token,
                    ),
                    **self._options(caller),
                )
                found.extend(
                    AuditEntry(
                        time=e.time_micros // 1_000_000,
                        login=e.actor_login,
                        event=e.event,
                        target=e.target,
                        description=e.description,
                    )
                    for e in reply.events
                )
                token = reply.continuation_token
                if not token or len(found) >= limit:
                    break
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                return []
            raise from_rpc_error(error) from None
        return found[:limit]


def _stack_info(stack: stacks_pb2.Stack, state: updates_pb2.StackState | None) -> StackInfo:
    state = state or updates_pb2.StackState()
    return StackInfo(
        id=stack.id,
        organization=stack.ref.organization,
        project=stack.ref.project,
        stack=stack.ref.stack,
        version=state.version,
        resource_count=state.resource_count,
        last_update=state.last_update,
    )


def _update(info: updates_pb2.UpdateInfo) -> UpdateSummary:
    return UpdateSummary(
        update_id=info.update_id,
        kind=info.kind,
        result=info.result,
        version=info.version,
        start_time=info.start_time,
        end_time=info.end_time,
        message=info.message,
        resource_changes=dict(info.resource_changes),
        requested_by=info.requested_by,
    )
