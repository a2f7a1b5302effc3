"""Deleting or renaming a stack: checks that may refuse it, the row, then the other services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from protos.cairn.v1 import agent_pools_pb2, identity_pb2, secrets_pb2, updates_pb2
from services.common.auth import Caller
from services.common.errors import from_rpc_error
from services.common.logging import get_logger
from services.stacks.domain import StackPath, StackRecord
from services.stacks.store import StackStore

if TYPE_CHECKING:
    from protos.cairn.v1.agent_pools_pb2_grpc import AgentPoolsServiceAsyncStub
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.secrets_pb2_grpc import SecretsServiceAsyncStub
    from protos.cairn.v1.updates_pb2_grpc import UpdatesServiceAsyncStub

log = get_logger("cairn.stacks")


class DeleteCheck(Protocol):
    """Refuses a deletion by raising a domain error; runs before anything is deleted."""

    async def __call__(self, stack: StackRecord, *, force: bool, caller: Caller) -> None: ...


class PurgeStep(Protocol):
    """Destroys what another service keeps for a stack whose row is already gone."""

    @property
    def name(self) -> str: ...

    async def __call__(self, stack: StackRecord, caller: Caller) -> None: ...


@dataclass(frozen=True)
class StackDeletion:
    store: StackStore
    checks: Sequence[DeleteCheck] = ()
    purges: Sequence[PurgeStep] = ()

    async def delete(self, path: StackPath, *, force: bool, caller: Caller) -> StackRecord:
        """Delete a stack and purge its data elsewhere; returns what was deleted."""
        stack = await self.store.get(path)
        for check in self.checks:
            await check(stack, force=force, caller=caller)
        # Deleting by the stable id means a concurrent rename cannot redirect the delete.
        await self.store.delete(stack)
        # The stack is gone and a retry would get NotFound, so a failed purge leaves an
        # orphan behind (unreachable, hence harmless) rather than failing the call.
        await _run_all(self.purges, stack, caller, "stack_purge_failed")
        return stack


# Tells another service about a rename that has already happened.
RenameStep = PurgeStep


@dataclass(frozen=True)
class StackRename:
    store: StackStore
    # Run with force=True: a rename only needs the stack not to be in the middle of an update.
    checks: Sequence[DeleteCheck] = ()
    followups: Sequence[RenameStep] = ()

    async def rename(self, path: StackPath, target: StackPath, caller: Caller) -> StackRecord:
        """Rename a stack, then let other services follow; returns the renamed stack."""
        stack = await self.store.get(path)
        for check in self.checks:
            await check(stack, force=True, caller=caller)
        renamed = await self.store.rename(path, target)
        # The rename has happened; a failed follow-up is logged, not turned into a failure.
        await _run_all(self.followups, renamed, caller, "stack_rename_followup_failed")
        return renamed


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


class RecordRename(PeerStep):
    """Records the rename in the stack's history and points its secrets state at the new path."""

    _stub: UpdatesServiceAsyncStub

    name = "updates"

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.RecordRename(
            updates_pb2.RecordRenameRequest(
                stack_id=stack.id,
                organization=stack.path.organization,
                project=stack.path.project,
                stack=stack.path.stack,
            ),
            **self._options(caller),
        )


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


async def _run_all(
    steps: Sequence[PurgeStep], stack: StackRecord, caller: Caller, event: str
) -> None:
    """Run every step; one failing (logged) never keeps the others from running."""
    for step in steps:
        try:
            await step(stack, caller)
        except Exception as error:
            log.warning(event, step=step.name, stack_id=stack.id, error=_describe(error))


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return type(error).__name__
