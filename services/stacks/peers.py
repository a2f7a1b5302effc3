"""The stacks service's clients of other services: each step makes one call with a deadline
and the caller's metadata, and turns a peer's refusal back into its domain error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from protos.cairn.v1 import agent_pools_pb2, common_pb2, identity_pb2, secrets_pb2, updates_pb2
from services.common.auth import Caller
from services.common.errors import from_rpc_error
from services.stacks.domain import ReferenceRecord, StackRecord, StartedUpdate

if TYPE_CHECKING:
    from protos.cairn.v1.agent_pools_pb2_grpc import AgentPoolsServiceAsyncStub
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.secrets_pb2_grpc import SecretsServiceAsyncStub
    from protos.cairn.v1.updates_pb2_grpc import UpdatesServiceAsyncStub


class PeerStep:
    """A step that calls another service, with the deadline and the caller's metadata."""

    def __init__(self, stub: Any, timeout_seconds: float) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    def _options(self, caller: Caller) -> dict[str, Any]:
        return {"timeout": self._timeout_seconds, "metadata": caller.metadata()}


class DeleteSecretsKey(PeerStep):
    """Destroys the stack's data key in the secrets service."""

    _stub: SecretsServiceAsyncStub

    name = "secrets"

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.DeleteStackKey(
            secrets_pb2.DeleteStackKeyRequest(stack_id=stack.id), **self._options(caller)
        )


class RefuseWhileUpdating(PeerStep):
    """Asks the updates service: no active update, and no resources unless forced."""

    _stub: UpdatesServiceAsyncStub

    async def __call__(self, stack: StackRecord, *, force: bool, caller: Caller) -> None:
        try:
            await self._stub.CheckStackDeletion(
                updates_pb2.CheckStackDeletionRequest(stack_id=stack.id, force=force),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


class OrganizationMembers(PeerStep):
    """Asks the identity service who belongs to an organization."""

    _stub: IdentityServiceAsyncStub

    async def __call__(self, organization: str, caller: Caller) -> frozenset[str]:
        try:
            reply = await self._stub.ListMembers(
                identity_pb2.ListMembersRequest(organization=organization),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return frozenset(member.user.login for member in reply.members)


class ImportInitialState(PeerStep):
    """Imports a deployment through the updates service (which checks a service secrets
    provider's state against the stack's path)."""

    _stub: UpdatesServiceAsyncStub

    async def __call__(self, stack: StackRecord, untyped: bytes, caller: Caller) -> None:
        try:
            await self._stub.ImportDeployment(
                updates_pb2.ImportDeploymentRequest(
                    stack_id=stack.id,
                    untyped_deployment=untyped,
                    organization=stack.path.organization,
                    project=stack.path.project,
                    stack=stack.path.stack,
                ),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


class OrganizationAdmin(PeerStep):
    """Asks the identity service whether the caller's access token administers an
    organization, with the errors an organization route answers."""

    _stub: IdentityServiceAsyncStub

    async def __call__(self, organization: str, caller: Caller) -> None:
        try:
            await self._stub.CheckOrganizationRole(
                identity_pb2.CheckOrganizationRoleRequest(
                    token_id=caller.token_id,
                    organization=organization,
                    minimum_role=common_pb2.ROLE_ADMIN,
                ),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


class ReferencesToStack(PeerStep):
    """Asks the updates service which stacks' newest states reference some names."""

    _stub: UpdatesServiceAsyncStub

    async def __call__(self, names: list[str], caller: Caller) -> list[ReferenceRecord]:
        try:
            reply = await self._stub.ListReferencingStacks(
                updates_pb2.ListReferencingStacksRequest(names=names), **self._options(caller)
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [
            ReferenceRecord(stack_id=record.stack_id, version=record.version, name=record.name)
            for record in reply.references
        ]


class StartUpdate(PeerStep):
    """Starts a created update: the updates service takes the lease and answers its token."""

    _stub: UpdatesServiceAsyncStub

    async def __call__(
        self, stack: StackRecord, update_id: str, journal_version: int, caller: Caller
    ) -> StartedUpdate:
        try:
            reply = await self._stub.StartUpdate(
                updates_pb2.StartUpdateRequest(
                    stack_id=stack.id, update_id=update_id, journal_version=journal_version
                ),
                **self._options(caller),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return StartedUpdate(
            version=reply.version,
            token=reply.token,
            token_expiration=reply.token_expiration,
            journal_version=reply.journal_version,
        )


class RecordRename(PeerStep):
    """Records the rename in the stack's history and points its secrets state at the new path."""

    _stub: UpdatesServiceAsyncStub

    name = "updates"

    async def __call__(self, stack: StackRecord, caller: Caller) -> str:
        reply = await self._stub.RecordRename(
            updates_pb2.RecordRenameRequest(
                stack_id=stack.id,
                organization=stack.path.organization,
                project=stack.path.project,
                stack=stack.path.stack,
            ),
            **self._options(caller),
        )
        return reply.update_id


class PurgeUpdates(PeerStep):
    """Forgets the stack's updates, events, versions and checkpoints."""

    _stub: UpdatesServiceAsyncStub

    name = "updates"

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.PurgeStack(
            updates_pb2.PurgeStackRequest(stack_id=stack.id),
            **self._options(caller),
        )


class PurgeDeployments(PeerStep):
    """Forgets the stack's deployment settings and deployments."""

    _stub: AgentPoolsServiceAsyncStub

    name = "agent_pools"

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.PurgeStack(
            agent_pools_pb2.PurgeDeploymentsRequest(stack_id=stack.id),
            **self._options(caller),
        )


class PurgeStackGrants(PeerStep):
    """Forgets the team and user permissions granted on the stack."""

    _stub: IdentityServiceAsyncStub

    name = "identity"

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.PurgeStackGrants(
            identity_pb2.PurgeStackGrantsRequest(stack_id=stack.id),
            **self._options(caller),
        )
