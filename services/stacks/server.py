"""gRPC edge of the stacks service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

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
from services.common.service import RunningService, open_database, peer_channel, serve_service
from services.stacks.deletion import (
    DeleteSecretsKey,
    PurgeDeployments,
    PurgeStackGrants,
    PurgeUpdates,
    RecordRename,
    RefuseWhileUpdating,
    StackDeletion,
    StackRename,
)
from services.stacks.domain import (
    NewStack,
    StackConfig,
    StackPath,
    StackRecord,
    rename_target,
    stack_query,
    validate_name,
    validate_new_stack,
    validate_path,
    validate_tags,
)
from services.stacks.models import Base
from services.stacks.store import StackStore

SERVICE_NAME = stacks_pb2.DESCRIPTOR.services_by_name["StacksService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]


class StacksServicer(stacks_pb2_grpc.StacksServiceServicer):
    """Protocol doc §3.2.1–3.2.7: create, read, list, rename, retag and delete stacks."""

    def __init__(self, store: StackStore, deletion: StackDeletion, renaming: StackRename) -> None:
        self._store = store
        self._deletion = deletion
        self._renaming = renaming

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
            )
        )
        return _stack_message(await self._store.create(stack))

    async def GetStack(
        self, request: stacks_pb2.GetStackRequest, context: Context
    ) -> stacks_pb2.Stack:
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
        )
        page = await self._store.list_stacks(query)
        return stacks_pb2.ListStacksResponse(
            stacks=[_stack_message(stack) for stack in page.stacks],
            continuation_token=page.continuation_token,
        )

    async def RenameStack(
        self, request: stacks_pb2.RenameStackRequest, context: Context
    ) -> stacks_pb2.Stack:
        path = validate_path(_path(request.ref))
        target = rename_target(path, request.new_project, request.new_name)
        renamed = await self._renaming.rename(path, target, caller_from_context(context))
        return _stack_message(renamed)

    async def ReplaceStackTags(
        self, request: stacks_pb2.ReplaceStackTagsRequest, context: Context
    ) -> stacks_pb2.Stack:
        path = validate_path(_path(request.ref))
        tags = validate_tags(dict(request.tags))
        if request.validate_only:
            return _stack_message(await self._store.get(path))
        return _stack_message(await self._store.replace_tags(path, tags))


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


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Migrate, wire and start the stacks service; port 0 picks a free port."""
    database = await open_database(settings, "stacks", MIGRATIONS, Base.metadata)
    try:
        secrets_channel = peer_channel(settings, "secrets")
        updates_channel = peer_channel(settings, "updates")
        agent_pools_channel = peer_channel(settings, "agent_pools")
        identity_channel = peer_channel(settings, "identity")
    except BaseException:
        await database.engine.dispose()
        raise

    async def close_channels() -> None:
        await secrets_channel.close(None)
        await updates_channel.close(None)
        await agent_pools_channel.close(None)
        await identity_channel.close(None)

    store = StackStore(database.sessions, clock or SystemClock())
    timeout = settings.grpc_timeout_seconds
    updates = updates_pb2_grpc.UpdatesServiceStub(updates_channel)
    deletion = StackDeletion(
        store=store,
        checks=(RefuseWhileUpdating(updates, timeout),),
        purges=(
            PurgeUpdates(updates, timeout),
            PurgeDeployments(
                agent_pools_pb2_grpc.AgentPoolsServiceStub(agent_pools_channel), timeout
            ),
            DeleteSecretsKey(secrets_pb2_grpc.SecretsServiceStub(secrets_channel), timeout),
            PurgeStackGrants(identity_pb2_grpc.IdentityServiceStub(identity_channel), timeout),
        ),
    )
    renaming = StackRename(
        store=store,
        checks=(RefuseWhileUpdating(updates, timeout),),
        followups=(RecordRename(updates, timeout),),
    )
    servicer = StacksServicer(store, deletion, renaming)

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
    )
