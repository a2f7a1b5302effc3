"""gRPC edge of the stacks service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc

from protos.cairn.v1 import (
    agent_pools_pb2_grpc,
    common_pb2,
    hooks_pb2_grpc,
    identity_pb2_grpc,
    secrets_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
    updates_pb2_grpc,
)
from services.common.auth import Caller, caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, peer_channel, serve_service
from services.stacks.bodies import stack_creation
from services.stacks.deletion import DeletedStackSweeper
from services.stacks.domain import (
    Annotation,
    DeletedStack,
    NewAnnotation,
    NewStack,
    NotificationSettings,
    StackConfig,
    StackPath,
    StackRecord,
    annotation_query,
    stack_query,
    validate_name,
    validate_path,
)
from services.stacks.hooks.server import HOOK_SERVICE_NAME, PurgeStackHooks, hook_service
from services.stacks.models import Base
from services.stacks.peers import (
    DeleteSecretsKey,
    ImportInitialState,
    OrganizationAdmin,
    OrganizationMembers,
    PurgeDeployments,
    PurgeStackGrants,
    PurgeUpdates,
    RecordRename,
    ReferencesToStack,
    RefuseWhileUpdating,
    StartUpdate,
)
from services.stacks.service import DeletedStackWindow, Peers, StackService
from services.stacks.store import StackStore

# Bodies above this size (an initial state) are decoded off the event loop.
OFFLOAD_BYTES = 256 * 1024
SERVICE_NAME = stacks_pb2.DESCRIPTOR.services_by_name["StacksService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]


class StacksServicer(stacks_pb2_grpc.StacksServiceServicer):
    """Protocol doc §3.2.1–3.2.7 and seed 000's stack settings: create, read, list, rename,
    retag, delete, transfer and re-own stacks; notification settings, annotations and starter
    workflows."""

    def __init__(self, service: StackService) -> None:
        self._service = service

    async def CreateStack(
        self, request: stacks_pb2.CreateStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        if request.body:
            stack, initial_state = await _creation_from_body(
                request.ref, request.body, caller_from_context(context).login
            )
        else:
            stack = NewStack(
                path=_path(request.ref),
                tags=dict(request.tags),
                config=_config_from_message(request.config) if request.HasField("config") else None,
                teams=tuple(request.teams),
                owner_login=caller_from_context(context).login,
            )
            initial_state = request.initial_state if request.HasField("initial_state") else None
        created = await self._service.create(stack, caller_from_context(context), initial_state)
        return _stack_message(created)

    async def GetStack(
        self, request: stacks_pb2.GetStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        if request.stack_id and not request.HasField("ref"):
            return _stack_message(await self._service.get_by_id(request.stack_id))
        return _stack_message(await self._service.get(_path(request.ref)))

    async def ProjectExists(
        self, request: stacks_pb2.ProjectExistsRequest, context: Context
    ) -> stacks_pb2.ProjectExistsResponse:
        organization = validate_name("organization", request.organization)
        project = validate_name("project", request.project)
        exists = await self._service.project_exists(organization, project)
        return stacks_pb2.ProjectExistsResponse(exists=exists)

    async def DeleteStack(
        self, request: stacks_pb2.DeleteStackRequest, context: Context
    ) -> stacks_pb2.DeleteStackResponse:
        stack = await self._service.delete(
            _path(request.ref), force=request.force, caller=caller_from_context(context)
        )
        return stacks_pb2.DeleteStackResponse(stack_id=stack.id)

    async def ListDeletedStacks(
        self, request: stacks_pb2.ListDeletedStacksRequest, context: Context
    ) -> stacks_pb2.ListDeletedStacksResponse:
        stacks = await self._service.list_deleted(request.organization)
        return stacks_pb2.ListDeletedStacksResponse(
            stacks=[_deleted_message(stack) for stack in stacks]
        )

    async def RestoreStack(
        self, request: stacks_pb2.RestoreStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        restored = await self._service.restore(
            request.organization,
            request.stack_id,
            request.stack_name,
            caller_from_context(context),
        )
        return _stack_message(restored)

    async def ListStacks(
        self, request: stacks_pb2.ListStacksRequest, context: Context
    ) -> stacks_pb2.ListStacksResponse:
        query = stack_query(
            visible_organizations=request.visible_organizations,
            organization=request.organization,
            project=request.project,
            tag_name=request.tag_name,
            tag_value=request.tag_value if request.HasField("tag_value") else None,
            continuation_token=request.continuation_token,
            page_size=request.page_size,
            stack_ids=request.stack_ids,
        )
        page = await self._service.list_stacks(query)
        return stacks_pb2.ListStacksResponse(
            stacks=[_stack_message(stack) for stack in page.stacks],
            continuation_token=page.continuation_token,
        )

    async def RenameStack(
        self, request: stacks_pb2.RenameStackRequest, context: Context
    ) -> stacks_pb2.RenameStackResponse:
        renamed, update_id = await self._service.rename(
            _path(request.ref),
            request.new_project,
            request.new_name,
            caller_from_context(context),
        )
        return stacks_pb2.RenameStackResponse(stack=_stack_message(renamed), update_id=update_id)

    async def ReplaceStackTags(
        self, request: stacks_pb2.ReplaceStackTagsRequest, context: Context
    ) -> stacks_pb2.Stack:
        stack = await self._service.replace_tags(
            _path(request.ref), dict(request.tags), validate_only=request.validate_only
        )
        return _stack_message(stack)

    async def UpdateNotificationSettings(
        self, request: stacks_pb2.UpdateNotificationSettingsRequest, context: Context
    ) -> stacks_pb2.Stack:
        settings = NotificationSettings(
            notify_update_failure=request.settings.notify_update_failure,
            notify_update_success=request.settings.notify_update_success,
        )
        return _stack_message(await self._service.set_notifications(_path(request.ref), settings))

    async def ReassignStackOwner(
        self, request: stacks_pb2.ReassignStackOwnerRequest, context: Context
    ) -> stacks_pb2.ReassignStackOwnerResponse:
        stack, previous = await self._service.reassign_owner(
            _path(request.ref), request.new_owner_login, caller_from_context(context)
        )
        return stacks_pb2.ReassignStackOwnerResponse(
            stack=_stack_message(stack), previous_owner_login=previous
        )

    async def TransferStack(
        self, request: stacks_pb2.TransferStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        moved = await self._service.transfer(
            _path(request.ref), request.destination_organization, caller_from_context(context)
        )
        return _stack_message(moved)

    async def GetAnnotation(
        self, request: stacks_pb2.GetAnnotationRequest, context: Context
    ) -> stacks_pb2.Annotation:
        path = validate_path(_path(request.ref))
        query = annotation_query(request.kind, request.source, request.version)
        return _annotation_message(await self._service.get_annotation(path, query))

    async def UpsertAnnotation(
        self, request: stacks_pb2.UpsertAnnotationRequest, context: Context
    ) -> stacks_pb2.Annotation:
        annotation = NewAnnotation(
            kind=request.kind,
            source=request.source,
            content=request.content,
            modified_by=caller_from_context(context).login,
            expected_version=(
                request.expected_version if request.HasField("expected_version") else None
            ),
        )
        return _annotation_message(
            await self._service.put_annotation(_path(request.ref), annotation)
        )

    async def GetStarterWorkflow(
        self, request: stacks_pb2.GetStarterWorkflowRequest, context: Context
    ) -> stacks_pb2.GetStarterWorkflowResponse:
        content = await self._service.starter_pipeline(
            _path(request.ref),
            ci_system=request.ci_system,
            working_directory=request.working_directory,
            enable_path_filters=request.enable_path_filters,
            backend_url=request.backend_url,
        )
        return stacks_pb2.GetStarterWorkflowResponse(content=content)

    async def ListDownstreamReferences(
        self, request: stacks_pb2.ListDownstreamReferencesRequest, context: Context
    ) -> stacks_pb2.ListDownstreamReferencesResponse:
        found = await self._service.downstream_references(
            _path(request.ref), caller_from_context(context)
        )
        return stacks_pb2.ListDownstreamReferencesResponse(
            references=[
                stacks_pb2.DownstreamReference(ref=_ref(entry.path), version=entry.version)
                for entry in found
            ]
        )

    async def StartStackUpdate(
        self, request: stacks_pb2.StartStackUpdateRequest, context: Context
    ) -> stacks_pb2.StartStackUpdateResponse:
        started = await self._service.start_update(
            _path(request.ref),
            request.update_id,
            journal_version=request.journal_version,
            tags=dict(request.tags),
            caller=caller_from_context(context),
        )
        return stacks_pb2.StartStackUpdateResponse(
            version=started.version,
            token=started.token,
            token_expiration=started.token_expiration,
            journal_version=started.journal_version,
        )


def _ref(path: StackPath) -> common_pb2.StackRef:
    return common_pb2.StackRef(
        organization=path.organization, project=path.project, stack=path.stack
    )


async def _creation_from_body(
    ref: common_pb2.StackRef, body: bytes, owner_login: str
) -> tuple[NewStack, bytes | None]:
    """The stack a creation body asks for under the route's organization and project."""
    if len(body) >= OFFLOAD_BYTES:
        creation = await asyncio.to_thread(stack_creation, body)
    else:
        creation = stack_creation(body)
    stack = NewStack(
        path=StackPath(ref.organization, ref.project, creation.stack_name),
        tags=creation.tags,
        config=creation.config,
        teams=creation.teams,
        owner_login=owner_login,
    )
    return stack, creation.initial_state


def _path(ref: common_pb2.StackRef) -> StackPath:
    return StackPath(organization=ref.organization, project=ref.project, stack=ref.stack)


def _config_from_message(config: stacks_pb2.StackConfig) -> StackConfig:
    return StackConfig(
        environment=config.environment,
        secrets_provider=config.secrets_provider,
        encrypted_key=config.encrypted_key,
        encryption_salt=config.encryption_salt,
    )


def _stack_message(stack: StackRecord) -> stacks_pb2.Stack:
    message = stacks_pb2.Stack(
        id=stack.id,
        ref=_ref(stack.path),
        tags=stack.tags,
        created_at=int(stack.created_at.timestamp()),
        owner_login=stack.owner_login,
        notifications=stacks_pb2.NotificationSettings(
            notify_update_failure=stack.notifications.notify_update_failure,
            notify_update_success=stack.notifications.notify_update_success,
        ),
    )
    # Presence matters: a `config` switches the CLI into remote-config mode.
    if stack.config is not None:
        message.config.CopyFrom(
            stacks_pb2.StackConfig(
                environment=stack.config.environment,
                secrets_provider=stack.config.secrets_provider,
                encrypted_key=stack.config.encrypted_key,
                encryption_salt=stack.config.encryption_salt,
            )
        )
    return message


def _annotation_message(annotation: Annotation) -> stacks_pb2.Annotation:
    return stacks_pb2.Annotation(
        kind=annotation.kind,
        source=annotation.source,
        version=annotation.version,
        content=annotation.content,
        modified_by=annotation.modified_by,
        modified_at=int(annotation.modified_at.timestamp()),
    )


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Migrate, wire and start the stacks service; port 0 picks a free port."""
    database = await open_database(settings, "stacks", MIGRATIONS, Base.metadata)
    try:
        channels = {
            name: peer_channel(settings, name)
            for name in ("secrets", "updates", "agent_pools", "identity")
        }
    except BaseException:
        await database.engine.dispose()
        raise

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.close(None)

    store = StackStore(database.sessions, clock or SystemClock(), database.reads)
    timeout = settings.grpc_timeout_seconds
    updates = updates_pb2_grpc.UpdatesServiceStub(channels["updates"])
    identity = identity_pb2_grpc.IdentityServiceStub(channels["identity"])
    hook_servicer, hooks, intake = hook_service(
        settings,
        database,
        clock or SystemClock(),
        secrets_pb2_grpc.SecretsServiceStub(channels["secrets"]),
        stack_by_id=store.get_by_id,
        stack_by_path=store.get,
    )
    peers = Peers(
        members=OrganizationMembers(identity, timeout),
        state_import=ImportInitialState(updates, timeout),
        destination_admin=OrganizationAdmin(identity, timeout),
        referencing=ReferencesToStack(updates, timeout),
        update_start=StartUpdate(updates, timeout),
        checks=(RefuseWhileUpdating(updates, timeout),),
        purges=(
            PurgeUpdates(updates, timeout),
            PurgeDeployments(
                agent_pools_pb2_grpc.AgentPoolsServiceStub(channels["agent_pools"]), timeout
            ),
            DeleteSecretsKey(secrets_pb2_grpc.SecretsServiceStub(channels["secrets"]), timeout),
            PurgeStackGrants(identity, timeout),
            PurgeStackHooks(hooks),
        ),
        history=RecordRename(updates, timeout),
        transfer_followups=(PurgeStackGrants(identity, timeout),),
    )
    window = DeletedStackWindow(settings.deleted_stack_retention_days, clock or SystemClock())
    service = StackService(store, peers, events=intake, window=window)
    servicer = StacksServicer(service)
    sweeper = DeletedStackSweeper(
        lambda: service.purge_expired(Caller()), settings.deleted_stack_sweep_seconds
    )

    def register(server: grpc.aio.Server) -> None:
        stacks_pb2_grpc.add_StacksServiceServicer_to_server(servicer, server)
        hooks_pb2_grpc.add_HookServiceServicer_to_server(hook_servicer, server)

    async def close_hooks() -> None:
        await intake.dispatcher.close()
        await hooks.close()

    running = await serve_service(
        name="stacks",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME, HOOK_SERVICE_NAME],
        # Closers run last to first: the sweeper stops before the channels and the database.
        closers=[database.engine.dispose, close_channels, close_hooks, sweeper.stop],
        dependencies=[database_dependency(database.engine)],
    )
    intake.dispatcher.start()
    sweeper.start()
    return running


def _deleted_message(stack: DeletedStack) -> stacks_pb2.DeletedStack:
    return stacks_pb2.DeletedStack(
        id=stack.id,
        ref=_ref(stack.path),
        deleted_at=int(stack.deleted_at.timestamp()),
        deleted_by=stack.deleted_by,
    )
