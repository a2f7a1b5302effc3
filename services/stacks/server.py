"""gRPC edge of the stacks service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from protos.cairn.v1 import (
    agent_pools_pb2_grpc,
    common_pb2,
    identity_pb2_grpc,
    secrets_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
    updates_pb2_grpc,
)
from services.common.auth import caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, peer_channel, serve_service
from services.stacks.deletion import (
    DeleteSecretsKey,
    OrganizationMembers,
    PurgeDeployments,
    PurgeStackGrants,
    PurgeUpdates,
    RecordRename,
    RefuseWhileUpdating,
    StackDeletion,
    StackOwnership,
    StackRename,
    StackTransfer,
)
from services.stacks.domain import (
    Annotation,
    NewAnnotation,
    NewStack,
    NotificationSettings,
    StackConfig,
    StackPath,
    StackRecord,
    annotation_not_found,
    annotation_query,
    rename_target,
    stack_query,
    transfer_target,
    validate_name,
    validate_new_annotation,
    validate_new_stack,
    validate_owner_login,
    validate_path,
    validate_tags,
)
from services.stacks.models import Base
from services.stacks.store import StackStore
from services.stacks.workflows import RUNTIME_TAG, WorkflowRequest, starter_workflow

SERVICE_NAME = stacks_pb2.DESCRIPTOR.services_by_name["StacksService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class StackOperations:
    """The multi-service operations a servicer delegates to."""

    deletion: StackDeletion
    renaming: StackRename
    transfer: StackTransfer
    ownership: StackOwnership


class StacksServicer(stacks_pb2_grpc.StacksServiceServicer):
    """Protocol doc §3.2.1–3.2.7 and seed 000's stack settings: create, read, list, rename,
    retag, delete, transfer and re-own stacks; notification settings, annotations and starter
    workflows."""

    def __init__(self, store: StackStore, operations: StackOperations) -> None:
        self._store = store
        self._deletion = operations.deletion
        self._renaming = operations.renaming
        self._transfer = operations.transfer
        self._ownership = operations.ownership

    async def CreateStack(
        self, request: stacks_pb2.CreateStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        config = _config_from_message(request.config) if request.HasField("config") else None
        stack = validate_new_stack(
            NewStack(
                path=_path(request.ref),
                tags=dict(request.tags),
                config=config,
                teams=tuple(request.teams),
                owner_login=caller_from_context(context).login,
            )
        )
        return _stack_message(await self._store.create(stack))

    async def GetStack(
        self, request: stacks_pb2.GetStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        if request.stack_id and not request.HasField("ref"):
            return _stack_message(await self._store.get_by_id(request.stack_id))
        return _stack_message(await self._store.get(validate_path(_path(request.ref))))

    async def ProjectExists(
        self, request: stacks_pb2.ProjectExistsRequest, context: Context
    ) -> stacks_pb2.ProjectExistsResponse:
        organization = validate_name("organization", request.organization)
        project = validate_name("project", request.project)
        exists = await self._store.project_exists(organization, project)
        return stacks_pb2.ProjectExistsResponse(exists=exists)

    async def DeleteStack(
        self, request: stacks_pb2.DeleteStackRequest, context: Context
    ) -> stacks_pb2.DeleteStackResponse:
        stack = await self._deletion.delete(
            validate_path(_path(request.ref)),
            force=request.force,
            caller=caller_from_context(context),
        )
        return stacks_pb2.DeleteStackResponse(stack_id=stack.id)

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
        page = await self._store.list_stacks(query)
        return stacks_pb2.ListStacksResponse(
            stacks=[_stack_message(stack) for stack in page.stacks],
            continuation_token=page.continuation_token,
        )

    async def RenameStack(
        self, request: stacks_pb2.RenameStackRequest, context: Context
    ) -> stacks_pb2.RenameStackResponse:
        path = validate_path(_path(request.ref))
        target = rename_target(path, request.new_project, request.new_name)
        renamed, update_id = await self._renaming.rename(path, target, caller_from_context(context))
        return stacks_pb2.RenameStackResponse(stack=_stack_message(renamed), update_id=update_id)

    async def ReplaceStackTags(
        self, request: stacks_pb2.ReplaceStackTagsRequest, context: Context
    ) -> stacks_pb2.Stack:
        path = validate_path(_path(request.ref))
        tags = validate_tags(dict(request.tags))
        if request.validate_only:
            return _stack_message(await self._store.get(path))
        return _stack_message(await self._store.replace_tags(path, tags))

    async def UpdateNotificationSettings(
        self, request: stacks_pb2.UpdateNotificationSettingsRequest, context: Context
    ) -> stacks_pb2.Stack:
        settings = NotificationSettings(
            notify_update_failure=request.settings.notify_update_failure,
            notify_update_success=request.settings.notify_update_success,
        )
        path = validate_path(_path(request.ref))
        return _stack_message(await self._store.set_notifications(path, settings))

    async def ReassignStackOwner(
        self, request: stacks_pb2.ReassignStackOwnerRequest, context: Context
    ) -> stacks_pb2.ReassignStackOwnerResponse:
        path = validate_path(_path(request.ref))
        new_owner = validate_owner_login(request.new_owner_login)
        stack, previous = await self._ownership.reassign(
            path, new_owner, caller_from_context(context)
        )
        return stacks_pb2.ReassignStackOwnerResponse(
            stack=_stack_message(stack), previous_owner_login=previous
        )

    async def TransferStack(
        self, request: stacks_pb2.TransferStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        path = validate_path(_path(request.ref))
        target = transfer_target(path, request.destination_organization)
        moved = await self._transfer.transfer(path, target, caller_from_context(context))
        return _stack_message(moved)

    async def GetAnnotation(
        self, request: stacks_pb2.GetAnnotationRequest, context: Context
    ) -> stacks_pb2.Annotation:
        path = validate_path(_path(request.ref))
        query = annotation_query(request.kind, request.source, request.version)
        found = await self._store.get_annotation(path, query)
        if found is None:
            raise annotation_not_found(query.kind)
        return _annotation_message(found)

    async def UpsertAnnotation(
        self, request: stacks_pb2.UpsertAnnotationRequest, context: Context
    ) -> stacks_pb2.Annotation:
        path = validate_path(_path(request.ref))
        annotation = validate_new_annotation(
            NewAnnotation(
                kind=request.kind,
                source=request.source,
                content=request.content,
                modified_by=caller_from_context(context).login,
                expected_version=(
                    request.expected_version if request.HasField("expected_version") else None
                ),
            )
        )
        return _annotation_message(await self._store.put_annotation(path, annotation))

    async def GetStarterWorkflow(
        self, request: stacks_pb2.GetStarterWorkflowRequest, context: Context
    ) -> stacks_pb2.GetStarterWorkflowResponse:
        stack = await self._store.get(validate_path(_path(request.ref)))
        content = starter_workflow(
            WorkflowRequest(
                stack=stack.path,
                runtime=stack.tags.get(RUNTIME_TAG, ""),
                ci_system=request.ci_system,
                working_directory=request.working_directory,
                enable_path_filters=request.enable_path_filters,
                backend_url=request.backend_url,
            )
        )
        return stacks_pb2.GetStarterWorkflowResponse(content=content)


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
        ref=common_pb2.StackRef(
            organization=stack.path.organization,
            project=stack.path.project,
            stack=stack.path.stack,
        ),
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

    store = StackStore(database.sessions, clock or SystemClock())
    timeout = settings.grpc_timeout_seconds
    updates = updates_pb2_grpc.UpdatesServiceStub(channels["updates"])
    not_updating = RefuseWhileUpdating(updates, timeout)
    identity = identity_pb2_grpc.IdentityServiceStub(channels["identity"])
    members = OrganizationMembers(identity, timeout)
    operations = StackOperations(
        deletion=StackDeletion(
            store=store,
            checks=(not_updating,),
            purges=(
                PurgeUpdates(updates, timeout),
                PurgeDeployments(
                    agent_pools_pb2_grpc.AgentPoolsServiceStub(channels["agent_pools"]), timeout
                ),
                DeleteSecretsKey(secrets_pb2_grpc.SecretsServiceStub(channels["secrets"]), timeout),
                PurgeStackGrants(identity, timeout),
            ),
        ),
        renaming=StackRename(
            store=store, checks=(not_updating,), history=RecordRename(updates, timeout)
        ),
        transfer=StackTransfer(
            store=store,
            members=members,
            checks=(not_updating,),
            history=RecordRename(updates, timeout),
            followups=(PurgeStackGrants(identity, timeout),),
        ),
        ownership=StackOwnership(store=store, members=members),
    )
    servicer = StacksServicer(store, operations)

    def register(server: grpc.aio.Server) -> None:
        stacks_pb2_grpc.add_StacksServiceServicer_to_server(servicer, server)

    return await serve_service(
        name="stacks",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME],
        closers=[database.engine.dispose, close_channels],
        dependencies=[database_dependency(database.engine)],
    )
