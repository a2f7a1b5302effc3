"""gRPC edge of the updates service: protobuf in, lifecycle and history calls, protobuf out."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import grpc

from protos.cairn.v1 import common_pb2, hooks_pb2, updates_pb2, updates_pb2_grpc
from services.common.auth import caller_from_context
from services.common.blobs import open_blob_store
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.db import driver_statements, group_writer
from services.common.hook_events import (
    Outbox,
    OutboxDispatcher,
    forward_lease,
    forward_to_hooks,
    hook_event,
)
from services.common.readiness import Dependency, database_dependency
from services.common.service import (
    Database,
    RunningService,
    open_database,
    peer_channel,
    serve_service,
)
from services.updates import bodies
from services.updates.domain import (
    EngineEvent,
    LeaseRef,
    NewUpdate,
    StackPath,
    StackReference,
    StackState,
    UpdateRecord,
    event_filter,
    history_result,
    normalised_config,
    status_text,
    validate_kind,
)
from services.updates.history import UpdateHistory
from services.updates.history_store import HistoryStore
from services.updates.lease import DatabaseOnlyLock, RedisStackLock, StackLock
from services.updates.maintenance import (
    Collection,
    Collector,
    Retentions,
    collect_garbage,
    move_texts,
)
from services.updates.models import HOOK_OUTBOX, Base
from services.updates.service import Updates
from services.updates.state_store import Retention, StateStore
from services.updates.states import StateTexts
from services.updates.store import UpdateStore
from services.updates.texts import off_loop
from services.updates.views import projected_count

# Update kinds reported to webhooks.
WEBHOOK_KINDS = ("update", "preview", "refresh", "destroy")

SERVICE_NAME = updates_pb2.DESCRIPTOR.services_by_name["UpdatesService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]
EMPTY = updates_pb2.PatchResponse()


class UpdatesServicer(updates_pb2_grpc.UpdatesServiceServicer):
    """Protocol doc §3.4 (lifecycle), §4 (persistence), §3.2.9–3.2.12 (export, import, history)."""

    def __init__(self, updates: Updates, history: UpdateHistory, retentions: Retentions) -> None:
        self._updates = updates
        self._history = history
        self._retentions = retentions

    async def CreateUpdate(
        self, request: updates_pb2.CreateUpdateRequest, context: Context
    ) -> updates_pb2.CreateUpdateResponse:
        caller = caller_from_context(context)
        update = await self._updates.create(
            NewUpdate(
                stack_id=request.stack_id,
                kind=validate_kind(request.kind),
                is_dry_run=request.is_dry_run,
                program=request.program,
                config=normalised_config(request.config),
                message=request.message,
                environment=dict(request.environment),
                requested_by=caller.login,
                stack_path=_path(request.stack),
                requested_by_token=caller.token_id,
            )
        )
        return updates_pb2.CreateUpdateResponse(update_id=update.id)

    async def StartUpdate(
        self, request: updates_pb2.StartUpdateRequest, context: Context
    ) -> updates_pb2.StartUpdateResponse:
        started = await self._updates.start(
            request.stack_id, request.update_id, request.journal_version
        )
        return updates_pb2.StartUpdateResponse(
            version=started.version,
            token=started.lease.token,
            token_expiration=int(started.lease.expires_at),
            journal_version=started.journal_version,
        )

    async def RenewLease(
        self, request: updates_pb2.RenewLeaseRequest, context: Context
    ) -> updates_pb2.RenewLeaseResponse:
        lease = await self._updates.renew(_lease(request.lease), request.duration_seconds)
        return updates_pb2.RenewLeaseResponse(
            token=lease.token, token_expiration=int(lease.expires_at)
        )

    async def PatchCheckpoint(
        self, request: updates_pb2.PatchCheckpointRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        if request.body:
            write = await off_loop(len(request.body), bodies.checkpoint_write, request.body)
        else:
            write = await off_loop(
                len(request.untyped_deployment),
                bodies.text_fields,
                request.untyped_deployment,
                request.is_invalid,
            )
        await self._updates.patch_checkpoint(_lease(request.lease), write)
        return EMPTY

    async def PatchCheckpointVerbatim(
        self, request: updates_pb2.PatchCheckpointVerbatimRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        if request.body:
            write = await off_loop(len(request.body), bodies.verbatim_write, request.body)
        else:
            write = await off_loop(
                len(request.untyped_deployment),
                bodies.text_fields,
                request.untyped_deployment,
                False,
                request.sequence_number,
            )
        await self._updates.patch_verbatim(_lease(request.lease), write)
        return EMPTY

    async def PatchCheckpointDelta(
        self, request: updates_pb2.PatchCheckpointDeltaRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        if request.body:
            write = await off_loop(len(request.body), bodies.delta_write, request.body)
        else:
            write = bodies.delta_fields(
                request.deployment_delta, request.checkpoint_hash, request.sequence_number
            )
        await self._updates.patch_delta(_lease(request.lease), write)
        return EMPTY

    async def AppendJournalEntries(
        self, request: updates_pb2.AppendJournalEntriesRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        if request.body:
            entries = await off_loop(len(request.body), bodies.journal_entries, request.body)
        else:
            entries = bodies.journal_fields([entry.data for entry in request.entries])
        await self._updates.append_journal(_lease(request.lease), entries)
        return EMPTY

    async def RecordEngineEvents(
        self, request: updates_pb2.RecordEngineEventsRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        if request.body:
            batch = await off_loop(len(request.body), bodies.event_batch, request.body)
        elif request.event_body:
            batch = bodies.single_event(request.event_body)
        else:
            batch = bodies.event_fields(
                [
                    EngineEvent(event.sequence, event.timestamp, event.kind, event.data)
                    for event in request.events
                ]
            )
        await self._updates.record_events(_lease(request.lease), batch)
        return EMPTY

    async def AppendLogEntry(
        self, request: updates_pb2.AppendLogEntryRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        await self._updates.append_log(_lease(request.lease), request.kind, request.fields)
        return EMPTY

    async def CompleteUpdate(
        self, request: updates_pb2.CompleteUpdateRequest, context: Context
    ) -> updates_pb2.PatchResponse:
        await self._updates.complete(_lease(request.lease), request.status)
        return EMPTY

    async def CancelUpdate(
        self, request: updates_pb2.CancelUpdateRequest, context: Context
    ) -> updates_pb2.CancelUpdateResponse:
        await self._updates.cancel(request.stack_id, request.update_id)
        return updates_pb2.CancelUpdateResponse()

    async def GetUpdateStatus(
        self, request: updates_pb2.GetUpdateStatusRequest, context: Context
    ) -> updates_pb2.GetUpdateStatusResponse:
        update, events, token = await self._history.status(
            request.stack_id, request.update_id, request.continuation_token
        )
        return updates_pb2.GetUpdateStatusResponse(
            status=status_text(update),
            events=[
                updates_pb2.UpdateStatusEvent(index=str(e.index), kind=e.kind, fields=e.fields)
                for e in events
            ],
            continuation_token=token,
        )

    async def ListEngineEvents(
        self, request: updates_pb2.ListEngineEventsRequest, context: Context
    ) -> updates_pb2.ListEngineEventsResponse:
        events, token = await self._history.engine_events(
            request.stack_id,
            request.update_id,
            request.continuation_token,
            request.page_size,
            event_filter(request.types, request.urn),
        )
        return updates_pb2.ListEngineEventsResponse(
            events=[
                updates_pb2.EngineEvent(
                    sequence=e.sequence, timestamp=e.timestamp, kind=e.kind, data=e.data
                )
                for e in events
            ],
            continuation_token=token,
        )

    async def ListUpdates(
        self, request: updates_pb2.ListUpdatesRequest, context: Context
    ) -> updates_pb2.ListUpdatesResponse:
        page = await self._history.history(request.stack_id, request.page_size, request.page)
        pruned = await self._history.pruned(request.stack_id, page.updates)
        return updates_pb2.ListUpdatesResponse(
            updates=[_info(update, update.version in pruned) for update in page.updates],
            total=page.total,
        )

    async def GetUpdate(
        self, request: updates_pb2.GetUpdateRequest, context: Context
    ) -> updates_pb2.UpdateInfo:
        update = await self._history.by_version(request.stack_id, request.version)
        pruned = await self._history.pruned(request.stack_id, [update])
        return _info(update, update.version in pruned)

    async def ExportDeployment(
        self, request: updates_pb2.ExportDeploymentRequest, context: Context
    ) -> updates_pb2.ExportDeploymentResponse:
        text = await self._updates.export(request.stack_id, request.version)
        return updates_pb2.ExportDeploymentResponse(untyped_deployment=text)

    async def ImportDeployment(
        self, request: updates_pb2.ImportDeploymentRequest, context: Context
    ) -> updates_pb2.ImportDeploymentResponse:
        update_id = await self._updates.import_deployment(
            request.stack_id,
            (request.organization, request.project, request.stack),
            request.untyped_deployment,
            caller_from_context(context).login,
        )
        return updates_pb2.ImportDeploymentResponse(update_id=update_id)

    async def GetStackStates(
        self, request: updates_pb2.GetStackStatesRequest, context: Context
    ) -> updates_pb2.GetStackStatesResponse:
        states = await self._updates.stack_states(list(request.stack_ids))
        return updates_pb2.GetStackStatesResponse(states=[_state(state) for state in states])

    async def CheckStackDeletion(
        self, request: updates_pb2.CheckStackDeletionRequest, context: Context
    ) -> updates_pb2.CheckStackDeletionResponse:
        await self._updates.check_deletion(request.stack_id, force=request.force)
        return updates_pb2.CheckStackDeletionResponse()

    async def RecordRename(
        self, request: updates_pb2.RecordRenameRequest, context: Context
    ) -> updates_pb2.RecordRenameResponse:
        update_id = await self._updates.record_rename(
            request.stack_id,
            (request.organization, request.project, request.stack),
            caller_from_context(context).login,
        )
        return updates_pb2.RecordRenameResponse(update_id=update_id)

    async def ListResources(
        self, request: updates_pb2.ListResourcesRequest, context: Context
    ) -> updates_pb2.ListResourcesResponse:
        version, count, resources = await self._history.resources(
            request.stack_id, request.version, request.urn, count_only=request.count_only
        )
        return updates_pb2.ListResourcesResponse(
            version=version, resource_count=count, resources=resources
        )

    async def GetPreview(
        self, request: updates_pb2.GetPreviewRequest, context: Context
    ) -> updates_pb2.UpdateInfo:
        return _info(await self._history.preview(request.stack_id, request.update_id))

    async def ListPreviews(
        self, request: updates_pb2.ListPreviewsRequest, context: Context
    ) -> updates_pb2.ListUpdatesResponse:
        page, size = await self._history.previews(
            request.stack_id,
            request.version,
            request.page,
            request.page_size,
            ascending=request.ascending,
        )
        return updates_pb2.ListUpdatesResponse(
            updates=[_info(update) for update in page.updates],
            total=page.total,
            items_per_page=size,
        )

    async def ListActivity(
        self, request: updates_pb2.ListActivityRequest, context: Context
    ) -> updates_pb2.ListUpdatesResponse:
        page, size = await self._history.activity(request.stack_id, request.page, request.page_size)
        return updates_pb2.ListUpdatesResponse(
            updates=[_info(update) for update in page.updates],
            total=page.total,
            items_per_page=size,
        )

    async def GetUpdateTimeline(
        self, request: updates_pb2.GetUpdateTimelineRequest, context: Context
    ) -> updates_pb2.GetUpdateTimelineResponse:
        timeline = await self._history.timeline(request.stack_id, request.version)
        return updates_pb2.GetUpdateTimelineResponse(
            update=_info(timeline.update),
            previews=[_info(preview) for preview in timeline.other_previews],
            collated_previews=[_info(preview) for preview in timeline.collated],
        )

    async def SummariseUpdate(
        self, request: updates_pb2.SummariseUpdateRequest, context: Context
    ) -> updates_pb2.SummariseUpdateResponse:
        path = "/".join((request.organization, request.project, request.stack))
        update, text = await self._history.summarise(request.stack_id, request.update_id, path)
        return updates_pb2.SummariseUpdateResponse(text=text, update_id=update.id)

    async def ListStackReferences(
        self, request: updates_pb2.ListStackReferencesRequest, context: Context
    ) -> updates_pb2.ListStackReferencesResponse:
        return _references(await self._history.references(request.stack_id))

    async def ListReferencingStacks(
        self, request: updates_pb2.ListReferencingStacksRequest, context: Context
    ) -> updates_pb2.ListStackReferencesResponse:
        return _references(await self._history.referencing(list(request.names)))

    async def ListUpdatesByTokens(
        self, request: updates_pb2.ListUpdatesByTokensRequest, context: Context
    ) -> updates_pb2.ListUpdatesResponse:
        found = await self._history.by_tokens(list(request.token_ids), list(request.stack_ids))
        return updates_pb2.ListUpdatesResponse(
            updates=[_info(update) for update in found], total=len(found)
        )

    async def PurgeStack(
        self, request: updates_pb2.PurgeStackRequest, context: Context
    ) -> updates_pb2.PurgeStackResponse:
        await self._updates.purge(request.stack_id)
        return updates_pb2.PurgeStackResponse()

    async def GetStateRetention(
        self, request: updates_pb2.GetStateRetentionRequest, context: Context
    ) -> updates_pb2.StateRetention:
        found = await self._retentions.get(request.organization)
        return _retention(found, request.stack_id)

    async def SetStateRetention(
        self, request: updates_pb2.SetStateRetentionRequest, context: Context
    ) -> updates_pb2.StateRetention:
        keep = request.keep_versions if request.HasField("keep_versions") else None
        if request.stack_id:
            found = await self._retentions.set_stack(request.organization, request.stack_id, keep)
        else:
            found = await self._retentions.set_organization(request.organization, keep)
        return _retention(found, request.stack_id)


def _path(stack: common_pb2.StackRef) -> StackPath:
    return StackPath(stack.organization, stack.project, stack.stack)


def _lease(lease: updates_pb2.LeaseRef) -> LeaseRef:
    return LeaseRef(update_id=lease.update_id, token=lease.token, stack_path=_path(lease.stack))


def _retention(found: Retention, stack_id: str) -> updates_pb2.StateRetention:
    message = updates_pb2.StateRetention()
    effective = found.keep_versions
    if found.keep_versions is not None:
        message.organization_keep_versions = found.keep_versions
    own = found.stacks.get(stack_id) if stack_id else None
    if own is not None:
        message.stack_keep_versions = own
        effective = own
    if effective is not None:
        message.effective_keep_versions = effective
    return message


def _info(update: UpdateRecord, state_pruned: bool = False) -> updates_pb2.UpdateInfo:
    return updates_pb2.UpdateInfo(
        state_pruned=state_pruned,
        update_id=update.id,
        kind=update.kind,
        start_time=int(update.started_at or update.created_at),
        end_time=int(update.ended_at or 0),
        message=update.message,
        environment={str(k): str(v) for k, v in update.environment.items()},
        config=normalised_config(update.config),
        result=history_result(update),
        version=update.version,
        resource_changes=dict(update.resource_changes),
        resource_count=_resource_count(update),
        requested_by=update.requested_by,
        requested_by_token=update.requested_by_token,
        is_dry_run=update.is_preview,
        status=status_text(update),
    )


def _resource_count(update: UpdateRecord) -> int:
    """A version's resource count; for a preview, what its changes would leave."""
    if update.is_preview:
        return projected_count(update.resource_changes)
    return update.resource_count or 0


def _references(references: list[StackReference]) -> updates_pb2.ListStackReferencesResponse:
    return updates_pb2.ListStackReferencesResponse(
        references=[
            updates_pb2.StackReferenceRecord(
                stack_id=reference.stack_id, version=reference.version, name=reference.name
            )
            for reference in references
        ]
    )


def _state(state: StackState) -> updates_pb2.StackState:
    message = updates_pb2.StackState(
        stack_id=state.stack_id,
        version=state.version,
        last_update=int(state.last_update_at or 0),
        resource_count=state.resource_count,
    )
    active = state.active_update
    if active is not None and not active.is_finalised:
        message.active_update = active.id
        message.active_kind = active.kind
        message.active_author = active.requested_by
        message.active_started = int(active.started_at or active.created_at)
    return message


def build_lock(settings: Settings) -> StackLock:
    if settings.redis_url:
        return RedisStackLock.from_url(settings.redis_url, settings.redis_timeout_seconds)
    return DatabaseOnlyLock()


def update_event(
    clock: Clock, update: UpdateRecord, result: str
) -> hooks_pb2.PublishEventRequest | None:
    """The webhook event of an update's start or end (CLI kinds only): `preview_*` for a
    preview, whose payload's kind is the operation previewed (`update` for `pulumi preview`),
    as in Pulumi's `stack_preview` payloads."""
    kind = "preview" if update.is_preview else update.kind
    if kind not in WEBHOOK_KINDS:
        return None
    operation = "update" if update.kind == "preview" else update.kind
    duration = 0
    if update.started_at is not None and update.ended_at is not None:
        duration = max(0, round(update.ended_at - update.started_at))
    return hook_event(
        update.stack_id,
        f"{kind}_{result}",
        at=clock.now(),
        user_login=update.requested_by,
        update=hooks_pb2.UpdateOutcome(
            update_id=update.id,
            kind=operation,
            result=result,
            version=update.version,
            resource_changes=dict(update.resource_changes),
            duration_seconds=duration,
        ),
    )


def hook_dispatcher(
    settings: Settings, database: Database
) -> tuple[OutboxDispatcher, grpc.aio.Channel] | None:
    """Update events go to the webhooks in the stacks process, when it is addressed."""
    if not settings.service_address("stacks"):
        return None
    channel = peer_channel(settings, "stacks")
    timeout = settings.grpc_timeout_seconds
    outbox = Outbox(database.sessions, database.reads, HOOK_OUTBOX, database.engine.dialect.name)
    dispatcher = OutboxDispatcher(
        outbox,
        forward_to_hooks(channel, timeout),
        lease_seconds=forward_lease(timeout),
        poll_seconds=settings.webhook_poll_seconds,
        name="updates",
    )
    return dispatcher, channel


def lock_dependencies(lock: StackLock) -> list[Dependency]:
    """Redis, when the lock uses it: without it no update can start."""
    if isinstance(lock, RedisStackLock):
        return [Dependency("redis", lock.ping)]
    return []


async def start(
    settings: Settings,
    *,
    host: str,
    port: int,
    clock: Clock | None = None,
    lock: StackLock | None = None,
) -> RunningService:
    """Migrate, wire and start the updates service; port 0 picks a free port."""
    database = await open_database(settings, "updates", MIGRATIONS, Base.metadata)
    stack_lock = lock or build_lock(settings)
    group = group_writer(database.engine, queue_timeout_seconds=settings.database_timeout_seconds)
    store = UpdateStore(
        database.sessions,
        database.engine.dialect.name,
        database.reads,
        driver_statements(database.engine),
        group,
    )
    state_store = StateStore(database.sessions, database.engine.dialect.name, database.reads)
    blobs = open_blob_store(settings)
    states = StateTexts(blobs, state_store)
    the_clock = clock or SystemClock()

    async def collect() -> Collection:
        return await collect_garbage(
            blobs, state_store, now=the_clock.now(), grace_seconds=settings.blob_gc_grace_seconds
        )

    collector = Collector(collect, settings.blob_gc_interval_seconds)
    history = UpdateHistory(store, HistoryStore(database.reads), states)
    hooks = hook_dispatcher(settings, database)
    servicer = UpdatesServicer(
        Updates(
            store,
            stack_lock,
            the_clock,
            states,
            announce=None if hooks is None else partial(update_event, the_clock),
            announced=None if hooks is None else hooks[0].wake,
        ),
        history,
        Retentions(state_store, states, the_clock.now),
    )

    def register(server: grpc.aio.Server) -> None:
        updates_pb2_grpc.add_UpdatesServiceServicer_to_server(servicer, server)

    async def close_hooks() -> None:
        if hooks is not None:
            await hooks[0].close()
            await hooks[1].close(None)

    running = await serve_service(
        name="updates",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME],
        # Closers run last to first: the collector stops before the database.
        closers=[
            database.engine.dispose,
            *([] if group is None else [group.close]),
            stack_lock.close,
            close_hooks,
            collector.stop,
        ],
        dependencies=[database_dependency(database.engine), *lock_dependencies(stack_lock)],
    )
    collector.start()
    if hooks is not None:
        hooks[0].start()
    return running


async def move_state_texts(settings: Settings) -> int:
    """`cairn migrate`: move version texts still held in database rows into the blob store."""
    database = await open_database(settings, "updates", MIGRATIONS, Base.metadata)
    try:
        state_store = StateStore(database.sessions, database.engine.dialect.name, database.reads)
        return await move_texts(open_blob_store(settings), state_store)
    finally:
        await database.engine.dispose()
