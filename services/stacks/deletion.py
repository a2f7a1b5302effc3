"""Deleting, renaming, transferring or re-owning a stack: checks that may refuse it, the row,
then the other services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from protos.cairn.v1 import agent_pools_pb2, identity_pb2, secrets_pb2, updates_pb2
from services.common.auth import Caller
from services.common.errors import InvalidArgument, from_rpc_error
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


class HistoryStep(Protocol):
    """Records a move in the stack's history; returns the id of the recorded entry."""

    @property
    def name(self) -> str: ...

    async def __call__(self, stack: StackRecord, caller: Caller) -> str: ...


@dataclass(frozen=True)
class StackRename:
    store: StackStore
    # Run with force=True: a rename only needs the stack not to be in the middle of an update.
    checks: Sequence[DeleteCheck] = ()
    history: HistoryStep | None = None
    followups: Sequence[RenameStep] = ()

    async def rename(
        self, path: StackPath, target: StackPath, caller: Caller
    ) -> tuple[StackRecord, str]:
        """Rename a stack, then let other services follow; returns it and its history entry."""
        stack = await self.store.get(path)
        for check in self.checks:
            await check(stack, force=True, caller=caller)
        renamed = await self.store.rename(path, target)
        # The rename has happened; a failed follow-up is logged, not turned into a failure.
        update_id = await _record(self.history, renamed, caller, "stack_rename_followup_failed")
        await _run_all(self.followups, renamed, caller, "stack_rename_followup_failed")
        return renamed, update_id


class Members(Protocol):
    """The logins of an organization's members."""

    async def __call__(self, organization: str, caller: Caller) -> frozenset[str]: ...


@dataclass(frozen=True)
class StackTransfer:
    """Moves a stack to another organization under the same stable id.

    Everything other services keep for the stack (history, checkpoints, deployments, the
    secrets key) is keyed by that id and so follows without being copied.
    """

    store: StackStore
    members: Members
    # Run with force=True, as for a rename.
    checks: Sequence[DeleteCheck] = ()
    # As for a rename: the service secrets provider state in the checkpoint names the path.
    history: HistoryStep | None = None
    # Grants name the old organization's teams and members; they do not travel.
    followups: Sequence[PurgeStep] = ()

    async def transfer(self, path: StackPath, target: StackPath, caller: Caller) -> StackRecord:
        stack = await self.store.get(path)
        for check in self.checks:
            await check(stack, force=True, caller=caller)
        # The owner must belong to the stack's organization; the caller, who administers the
        # destination, takes over from an owner who does not.
        owner = stack.owner_login
        if owner not in await self.members(target.organization, caller):
            owner = caller.login
        moved = await self.store.transfer(stack, target, owner)
        await _record(self.history, moved, caller, "stack_transfer_followup_failed")
        await _run_all(self.followups, moved, caller, "stack_transfer_followup_failed")
        return moved


@dataclass(frozen=True)
class StackOwnership:
    store: StackStore
    members: Members

    async def reassign(
        self, path: StackPath, new_owner: str, caller: Caller
    ) -> tuple[StackRecord, str]:
        """Make a member of the stack's organization its owner; returns the previous owner."""
        if new_owner not in await self.members(path.organization, caller):
            raise InvalidArgument(
                f"Bad Request: user '{new_owner}' is not a member of organization "
                f"'{path.organization}'"
            )
        return await self.store.set_owner(path, new_owner)


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


async def _run_all(
    steps: Sequence[PurgeStep], stack: StackRecord, caller: Caller, event: str
) -> None:
    """Run every step; one failing (logged) never keeps the others from running."""
    for step in steps:
        try:
            await step(stack, caller)
        except Exception as error:
            log.warning(event, step=step.name, stack_id=stack.id, error=_describe(error))


async def _record(step: HistoryStep | None, stack: StackRecord, caller: Caller, event: str) -> str:
    """Run a history step after the fact; a failure is logged and leaves no entry id."""
    if step is None:
        return ""
    try:
        return await step(stack, caller)
    except Exception as error:
        log.warning(event, step=step.name, stack_id=stack.id, error=_describe(error))
        return ""


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return type(error).__name__
