"""The stacks service's use cases: create (with an initial state), read, list, delete, rename,
transfer, re-own, retag, start an update, notification settings, annotations, downstream
references and starter pipelines. What they ask of other services is a protocol here, made
by a step in `peers.py`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.common.auth import Caller
from services.common.clock import Clock
from services.common.errors import DomainError, NotFound
from services.common.logging import get_logger
from services.common.stack_references import reference_names, resolve_reference
from services.stacks.domain import (
    Annotation,
    AnnotationQuery,
    DeletedStack,
    DownstreamReference,
    NewAnnotation,
    NewStack,
    NotificationSettings,
    ReferenceRecord,
    StackPage,
    StackPath,
    StackQuery,
    StackRecord,
    StartedUpdate,
    annotation_not_found,
    rename_target,
    restore_cutoff,
    stack_query,
    transfer_target,
    validate_name,
    validate_new_annotation,
    validate_new_stack,
    validate_owner_login,
    validate_path,
    validate_tags,
)
from services.stacks.pipelines import RUNTIME_TAG, WorkflowRequest, starter_workflow
from services.stacks.store import Announce, StackStore

log = get_logger("cairn.stacks")


class DeleteCheck(Protocol):
    """Refuses a deletion by raising a domain error; runs before anything is deleted."""

    async def __call__(self, stack: StackRecord, *, force: bool, caller: Caller) -> None: ...


class PurgeStep(Protocol):
    """Destroys what another service keeps for a stack whose row is already gone."""

    @property
    def name(self) -> str: ...

    async def __call__(self, stack: StackRecord, caller: Caller) -> None: ...


class HistoryStep(Protocol):
    """Records a move in the stack's history; returns the id of the recorded entry."""

    @property
    def name(self) -> str: ...

    async def __call__(self, stack: StackRecord, caller: Caller) -> str: ...


class StateImport(Protocol):
    """Stores an UntypedDeployment as a stack's next version; raises when it is refused."""

    async def __call__(self, stack: StackRecord, untyped: bytes, caller: Caller) -> None: ...


class AdminCheck(Protocol):
    """Refuses a caller who does not administer an organization (404 outsider, 403 member)."""

    async def __call__(self, organization: str, caller: Caller) -> None: ...


class ReferencingStacks(Protocol):
    """The StackReferences, held by stacks' newest states, that use one of some names."""

    async def __call__(self, names: list[str], caller: Caller) -> list[ReferenceRecord]: ...


class UpdateStart(Protocol):
    """Starts a created update of a stack in the updates service."""

    async def __call__(
        self, stack: StackRecord, update_id: str, journal_version: int, caller: Caller
    ) -> StartedUpdate: ...


class Members(Protocol):
    """The logins of an organization's members."""

    async def __call__(self, organization: str, caller: Caller) -> frozenset[str]: ...


@dataclass(frozen=True)
class Peers:
    """What the use cases ask of other services."""

    members: Members
    # Imports a new stack's initial state.
    state_import: StateImport
    # A transfer's caller must administer the destination.
    destination_admin: AdminCheck
    # Finds the states that reference a stack.
    referencing: ReferencingStacks
    # Starts an update.
    update_start: UpdateStart
    # Run before a deletion; with force=True before a rename or transfer: a move only needs
    # the stack not to be in the middle of an update.
    checks: Sequence[DeleteCheck] = ()
    # Run once a stack's row is gone.
    purges: Sequence[PurgeStep] = ()
    # Records a rename or transfer; the service secrets provider state names the path.
    history: HistoryStep | None = None
    # Grants name the old organization's teams and members; they do not travel.
    transfer_followups: Sequence[PurgeStep] = ()


class StackEvents(Protocol):
    """Webhook events of stack changes: `event` builds the one a change writes in its own
    transaction (created, deleted, renamed, transferred); `written` is told after commit."""

    def event(self, stack: StackRecord, action: str, user_login: str) -> PublishEventRequest: ...

    def written(self) -> None: ...


@dataclass(frozen=True)
class DeletedStackWindow:
    """How long a deleted stack stays restorable, by whose clock."""

    retention_days: float
    clock: Clock


# Tombstones purged per sweep round at most; the next round takes the rest.
PURGE_BATCH = 100


class StackService:
    """Protocol doc §3.2.1–3.2.7 and seed 000's stack settings, as use cases."""

    def __init__(
        self,
        store: StackStore,
        peers: Peers,
        events: StackEvents | None = None,
        window: DeletedStackWindow | None = None,
    ) -> None:
        self._store = store
        self._peers = peers
        self._events = events
        # None or zero days: a deletion purges everything at once.
        self._window = window if window is not None and window.retention_days > 0 else None

    def _announce(self, action: str, caller: Caller) -> Announce | None:
        events = self._events
        if events is None:
            return None
        return lambda stack: events.event(stack, action, caller.login)

    def _written(self) -> None:
        if self._events is not None:
            self._events.written()

    async def create(
        self, stack: NewStack, caller: Caller, initial_state: bytes | None = None
    ) -> StackRecord:
        """Create a stack; an initial state becomes its first version, or the stack goes away
        again when the state is refused (the refusal is what the caller gets)."""
        announce = self._announce("created", caller)
        if initial_state is None:
            created = await self._store.create(validate_new_stack(stack), announce)
            self._written()
            return created
        # With a state to import the stack exists for good only once the import succeeded:
        # the event is written then.
        created = await self._store.create(validate_new_stack(stack))
        try:
            await self._peers.state_import(created, initial_state, caller)
        except DomainError:
            await self._delete(created.path, force=True, caller=caller, keep=False)
            raise
        if announce is not None:
            await self._store.announce(created, announce)
            self._written()
        return created

    async def get(self, path: StackPath) -> StackRecord:
        return await self._store.get(validate_path(path))

    async def get_by_id(self, stack_id: str) -> StackRecord:
        return await self._store.get_by_id(stack_id)

    async def project_exists(self, organization: str, project: str) -> bool:
        return await self._store.project_exists(organization, project)

    async def list_stacks(self, query: StackQuery) -> StackPage:
        return await self._store.list_stacks(query)

    async def delete(self, path: StackPath, *, force: bool, caller: Caller) -> StackRecord:
        """Delete a stack and purge its data elsewhere; returns what was deleted."""
        stack = await self._delete(
            path, force=force, caller=caller, announce=self._announce("deleted", caller)
        )
        self._written()
        return stack

    async def _delete(
        self,
        path: StackPath,
        *,
        force: bool,
        caller: Caller,
        announce: Announce | None = None,
        keep: bool = True,
    ) -> StackRecord:
        stack = await self._store.get(validate_path(path))
        for check in self._peers.checks:
            await check(stack, force=force, caller=caller)
        if keep and self._window is not None:
            # Everything other services keep stays under the stable id, out of reach until a
            # restore puts the stack row back or the sweep purges it.
            await self._store.tombstone(stack, caller.login, announce)
            return stack
        # Deleting by the stable id means a concurrent rename cannot redirect the delete.
        await self._store.delete(stack, announce)
        # The stack is gone and a retry would get NotFound, so a failed purge leaves an
        # orphan behind (unreachable, hence harmless) rather than failing the call.
        await _run_all(self._peers.purges, stack, caller, "stack_purge_failed")
        return stack

    def _restorable_after(self) -> float:
        """Tombstones deleted after this time (Unix seconds) can still be restored."""
        if self._window is None:
            return float("inf")
        return restore_cutoff(self._window.clock.now(), self._window.retention_days)

    async def list_deleted(self, organization: str) -> list[DeletedStack]:
        """The organization's deleted stacks still inside the restore window."""
        organization = validate_name("organization", organization)
        if self._window is None:
            return []
        return await self._store.list_deleted(organization, self._restorable_after())

    async def restore(
        self, organization: str, stack_id: str, name: str, caller: Caller
    ) -> StackRecord:
        """Bring a deleted stack back under its id, with its old name or `name`."""
        organization = validate_name("organization", organization)
        if name:
            name = validate_name("stack", name)
        if self._window is None:
            raise NotFound(f"Not Found: no deleted stack with id '{stack_id}'")
        restored = await self._store.restore(organization, stack_id, name, self._restorable_after())
        announce = self._announce("created", caller)
        if announce is not None:
            await self._store.announce(restored, announce)
            self._written()
        return restored

    async def purge_expired(self, caller: Caller) -> int:
        """Purge tombstones past their window everywhere; returns how many went for good.

        A tombstone stays until every purge step succeeded, so a service that is away is
        asked again on the next round instead of leaving an orphan behind."""
        if self._window is None:
            return 0
        expired = await self._store.expired_tombstones(self._restorable_after(), PURGE_BATCH)
        purged = 0
        for stack in expired:
            failed = False
            for step in self._peers.purges:
                try:
                    await step(stack, caller)
                except Exception as error:
                    # Asked again on the next round.
                    failed = True
                    log.warning(
                        "deleted_stack_purge_failed",
                        step=step.name,
                        stack_id=stack.id,
                        error=_describe(error),
                    )
            if not failed:
                await self._store.forget_tombstone(stack.id)
                purged += 1
        if purged:
            log.info("deleted_stacks_purged", stacks=purged)
        return purged

    async def rename(
        self, path: StackPath, new_project: str, new_name: str, caller: Caller
    ) -> tuple[StackRecord, str]:
        """Rename a stack, then let other services follow; returns it and its history entry."""
        path = validate_path(path)
        target = rename_target(path, new_project, new_name)
        stack = await self._store.get(path)
        for check in self._peers.checks:
            await check(stack, force=True, caller=caller)
        renamed = await self._store.rename(path, target, self._announce("renamed", caller))
        self._written()
        # The rename has happened; a failed follow-up is logged, not turned into a failure.
        update_id = await _record(
            self._peers.history, renamed, caller, "stack_rename_followup_failed"
        )
        return renamed, update_id

    async def transfer(self, path: StackPath, destination: str, caller: Caller) -> StackRecord:
        """Move a stack to another organization under the same stable id.

        Everything other services keep for the stack (history, checkpoints, deployments, the
        secrets key) is keyed by that id and so follows without being copied.
        """
        path = validate_path(path)
        # As the REST route always did, the destination is checked before the names: an
        # outsider learns nothing about it (404 whatever the name).
        if caller.token_id:
            await self._peers.destination_admin(destination, caller)
        target = transfer_target(path, destination)
        stack = await self._store.get(path)
        for check in self._peers.checks:
            await check(stack, force=True, caller=caller)
        # The owner must belong to the stack's organization; the caller, who administers the
        # destination, takes over from an owner who does not.
        owner = stack.owner_login
        if owner not in await self._peers.members(target.organization, caller):
            owner = caller.login
        moved = await self._store.transfer(
            stack, target, owner, self._announce("transferred", caller)
        )
        self._written()
        event = "stack_transfer_followup_failed"
        await _record(self._peers.history, moved, caller, event)
        await _run_all(self._peers.transfer_followups, moved, caller, event)
        return moved

    async def reassign_owner(
        self, path: StackPath, new_owner: str, caller: Caller
    ) -> tuple[StackRecord, str]:
        """Make a member of the stack's organization its owner; returns the previous owner."""
        path = validate_path(path)
        new_owner = validate_owner_login(new_owner)
        if new_owner not in await self._peers.members(path.organization, caller):
            # Like an unknown stack, a login the organization does not have names nothing.
            raise NotFound(
                f"Not Found: user '{new_owner}' is not a member of organization "
                f"'{path.organization}'"
            )
        return await self._store.set_owner(path, new_owner)

    async def replace_tags(
        self, path: StackPath, tags: Mapping[str, str], *, validate_only: bool = False
    ) -> StackRecord:
        """Swap the whole tag set; `validate_only` checks the tags and the stack only."""
        path = validate_path(path)
        tags = validate_tags(tags)
        if validate_only:
            return await self._store.get(path)
        return await self._store.replace_tags(path, tags)

    async def start_update(
        self,
        path: StackPath,
        update_id: str,
        *,
        journal_version: int,
        tags: Mapping[str, str],
        caller: Caller,
    ) -> StartedUpdate:
        """Start an update; the client's tags, when they differ from the stack's, replace them
        once the start succeeded (they are checked before it)."""
        path = validate_path(path)
        stack = await self._store.get(path)
        retag = bool(tags) and dict(tags) != dict(stack.tags)
        if retag:
            tags = validate_tags(tags)
        started = await self._peers.update_start(stack, update_id, journal_version, caller)
        if retag:
            await self._store.replace_tags(path, tags)
        return started

    async def set_notifications(
        self, path: StackPath, settings: NotificationSettings
    ) -> StackRecord:
        return await self._store.set_notifications(validate_path(path), settings)

    async def get_annotation(self, path: StackPath, query: AnnotationQuery) -> Annotation:
        found = await self._store.get_annotation(validate_path(path), query)
        if found is None:
            raise annotation_not_found(query.kind)
        return found

    async def put_annotation(self, path: StackPath, annotation: NewAnnotation) -> Annotation:
        path = validate_path(path)
        return await self._store.put_annotation(path, validate_new_annotation(annotation))

    async def downstream_references(
        self, path: StackPath, caller: Caller
    ) -> list[DownstreamReference]:
        """Stacks of the stack's organization whose newest state reads it through a
        StackReference, by project and name."""
        stack = await self._store.get(validate_path(path))
        organization, project, name = stack.path.organization, stack.path.project, stack.path.stack
        target = (organization, project, name)
        found = await self._peers.referencing(reference_names(target), caller)
        records = [record for record in found if record.stack_id != stack.id]
        if not records:
            return []
        ids = sorted({record.stack_id for record in records})
        page = await self._store.list_stacks(
            stack_query(
                visible_organizations=[organization],
                organization=organization,
                project="",
                tag_name="",
                tag_value=None,
                continuation_token="",
                page_size=len(ids),
                stack_ids=ids,
            )
        )
        by_id = {candidate.id: candidate for candidate in page.stacks}
        seen: set[str] = set()
        referencing: list[DownstreamReference] = []
        for record in records:
            candidate = by_id.get(record.stack_id)
            if candidate is None or candidate.id in seen:
                continue
            resolved = resolve_reference(
                record.name, candidate.path.organization, candidate.path.project
            )
            if resolved == target:
                seen.add(candidate.id)
                referencing.append(DownstreamReference(candidate.path, record.version))
        referencing.sort(key=lambda entry: (entry.path.project, entry.path.stack))
        return referencing

    async def starter_pipeline(
        self,
        path: StackPath,
        *,
        ci_system: str,
        working_directory: str,
        enable_path_filters: bool,
        backend_url: str,
    ) -> str:
        """A CI pipeline for the stack, tailored to its runtime tag."""
        stack = await self._store.get(validate_path(path))
        return starter_workflow(
            WorkflowRequest(
                stack=stack.path,
                runtime=stack.tags.get(RUNTIME_TAG, ""),
                ci_system=ci_system,
                working_directory=working_directory,
                enable_path_filters=enable_path_filters,
                backend_url=backend_url,
            )
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
