"""What the copilot reads from other services, over gRPC, on behalf of the asker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from protos.cairn.v1 import common_pb2, identity_pb2, stacks_pb2, updates_pb2
from services.common.auth import Caller
from services.common.errors import from_rpc_error

if TYPE_CHECKING:
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.stacks_pb2_grpc import StacksServiceAsyncStub
    from protos.cairn.v1.updates_pb2_grpc import UpdatesServiceAsyncStub

# Bounds on what one answer reads.
MAX_STACKS = 500
MAX_EVENT_PAGES = 50
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


class Peers:
    """Stubs of the identity, stacks and updates services, called as the asker."""

    def __init__(
        self,
        identity: IdentityServiceAsyncStub,
        stacks: StacksServiceAsyncStub,
        updates: UpdatesServiceAsyncStub,
        timeout_seconds: float,
    ) -> None:
        self._identity = identity
        self._stacks = stacks
        self._updates = updates
        self._timeout = timeout_seconds

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

    async def stacks(self, organization: str, project: str, caller: Caller) -> list[StackInfo]:
        """The organization's stacks (only ever one organization the asker belongs to)."""
        found: list[stacks_pb2.Stack] = []
        token = ""
        try:
            while len(found) < MAX_STACKS:
                reply = await self._stacks.ListStacks(
                    stacks_pb2.ListStacksRequest(
                        visible_organizations=[organization],
                        organization=organization,
                        project=project,
                        continuation_token=token,
                    ),
                    **self._options(caller),
                )
                found.extend(reply.stacks)
                token = reply.continuation_token
                if not token:
                    break
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
    )
