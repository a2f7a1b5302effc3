"""Deleting or renaming a stack: checks that may refuse it, the row, then the other services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from protos.cairn.v1 import (
    agent_pools_pb2,
    agent_pools_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    updates_pb2,
    updates_pb2_grpc,
)
from services.common.auth import Caller
from services.common.errors import from_rpc_error
from services.common.logging import get_logger
from services.stacks.domain import StackPath, StackRecord
from services.stacks.store import StackStore

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
        for purge in self.purges:
            # The stack is gone and a retry would get NotFound, so a failed purge leaves an
            # orphan behind (unreachable, hence harmless) rather than failing the call, and
            # never keeps the remaining purges from running.
            try:
                await purge(stack, caller)
            except Exception as error:
                log.warning(
                    "stack_purge_failed",
                    step=purge.name,
                    stack_id=stack.id,
                    error=_describe(error),
                )
        return stack


class RenameStep(Protocol):
    """Tells another service about a rename that has already happened."""

    @property
    def name(self) -> str: ...

    async def __call__(self, stack: StackRecord, caller: Caller) -> None: ...


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
        for step in self.followups:
            # The rename has happened; a failed follow-up is logged, not turned into a failure.
            try:
                await step(renamed, caller)
            except Exception as error:
                log.warning(
                    "stack_rename_followup_failed",
                    step=step.name,
                    stack_id=renamed.id,
                    error=_describe(error),
                )
        return renamed


class DeleteSecretsKey:
    """Destroys the stack's data key in the secrets service."""

    name = "secrets"

    def __init__(
        self, stub: secrets_pb2_grpc.SecretsServiceAsyncStub, timeout_seconds: float
    ) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.DeleteStackKey(
            secrets_pb2.DeleteStackKeyRequest(stack_id=stack.id),
            timeout=self._timeout_seconds,
            metadata=caller.metadata(),
        )


class RefuseWhileUpdating:
    """Asks the updates service: no active update, and no resources unless forced."""

    def __init__(
        self, stub: updates_pb2_grpc.UpdatesServiceAsyncStub, timeout_seconds: float
    ) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    async def __call__(self, stack: StackRecord, *, force: bool, caller: Caller) -> None:
        try:
            await self._stub.CheckStackDeletion(
                updates_pb2.CheckStackDeletionRequest(stack_id=stack.id, force=force),
                timeout=self._timeout_seconds,
                metadata=caller.metadata(),
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


class RecordRename:
    """Records the rename in the stack's history and points its secrets state at the new path."""

    name = "updates"

    def __init__(
        self, stub: updates_pb2_grpc.UpdatesServiceAsyncStub, timeout_seconds: float
    ) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.RecordRename(
            updates_pb2.RecordRenameRequest(
                stack_id=stack.id,
                organization=stack.path.organization,
                project=stack.path.project,
                stack=stack.path.stack,
            ),
            timeout=self._timeout_seconds,
            metadata=caller.metadata(),
        )


class PurgeUpdates:
    """Forgets the stack's updates, events, versions and checkpoints."""

    name = "updates"

    def __init__(
        self, stub: updates_pb2_grpc.UpdatesServiceAsyncStub, timeout_seconds: float
    ) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.PurgeStack(
            updates_pb2.PurgeStackRequest(stack_id=stack.id),
            timeout=self._timeout_seconds,
            metadata=caller.metadata(),
        )


class PurgeDeployments:
    """Forgets the stack's deployment settings and deployments."""

    name = "agent_pools"

    def __init__(
        self, stub: agent_pools_pb2_grpc.AgentPoolsServiceAsyncStub, timeout_seconds: float
    ) -> None:
        self._stub = stub
        self._timeout_seconds = timeout_seconds

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._stub.PurgeStack(
            agent_pools_pb2.PurgeDeploymentsRequest(stack_id=stack.id),
            timeout=self._timeout_seconds,
            metadata=caller.metadata(),
        )


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return type(error).__name__
