"""gRPC edge of the agent_pools service: protobuf in, AgentPools calls, protobuf out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import orjson

from protos.cairn.v1 import (
    agent_pools_pb2,
    agent_pools_pb2_grpc,
    hooks_pb2,
    identity_pb2_grpc,
    schedules_pb2_grpc,
    secrets_pb2_grpc,
    stacks_pb2_grpc,
)
from services.agent_pools.agent_store import AgentStore
from services.agent_pools.domain import (
    OFFLINE,
    ONLINE,
    AgentMetadata,
    AgentRecord,
    DeploymentRecord,
    PoolRecord,
    StackName,
    StoredSettings,
)
from services.agent_pools.models import HOOK_OUTBOX, Base
from services.agent_pools.peers import IdentityPeer, SecretsPeer, StacksPeer
from services.agent_pools.schedule_rules import REMEDIATE_DRIFT
from services.agent_pools.schedule_server import (
    SERVICE_NAME as SCHEDULES_SERVICE_NAME,
)
from services.agent_pools.schedule_server import (
    DeploymentSchedulesServicer,
    ScheduleLoop,
    drift_events,
)
from services.agent_pools.schedule_store import ScheduleStore
from services.agent_pools.schedules import DriftEvents, Schedules
from services.agent_pools.service import AgentPools
from services.agent_pools.store import AgentPoolStore, DeploymentEvents
from services.common.auth import caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_server import DATABASE_UNAVAILABLE_ERRORS
from services.common.hook_events import (
    DEPLOYMENT_FAILED,
    DEPLOYMENT_QUEUED,
    DEPLOYMENT_STARTED,
    DEPLOYMENT_SUCCEEDED,
    DRIFT_REMEDIATION_FAILED,
    DRIFT_REMEDIATION_SUCCEEDED,
    Outbox,
    OutboxDispatcher,
    forward_lease,
    forward_to_hooks,
    hook_event,
)
from services.common.logging import get_logger
from services.common.loop import cancel_and_wait
from services.common.readiness import database_dependency
from services.common.service import (
    Database,
    RunningService,
    open_database,
    peer_channel,
    serve_service,
)

log = get_logger("cairn.agent_pools")

SERVICE_NAME = agent_pools_pb2.DESCRIPTOR.services_by_name["AgentPoolsService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]


# A database or peer that is away for a while: logged in one line, retried next round.
SWEEP_RETRIED_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_UNAVAILABLE_ERRORS, Unavailable)


class AgentPoolsServicer(agent_pools_pb2_grpc.AgentPoolsServiceServicer):
    """Seed 003 (agent pools), the SDK's deployment settings and deployments, and agents."""

    def __init__(self, pools: AgentPools, clock: Clock, schedules: Schedules) -> None:
        self._pools = pools
        self._clock = clock
        self._schedules = schedules

    async def ListPools(
        self, request: agent_pools_pb2.ListPoolsRequest, context: Context
    ) -> agent_pools_pb2.ListPoolsResponse:
        pools = await self._pools.list_pools(request.organization)
        default = next((pool.id for pool in pools if pool.is_default), "")
        return agent_pools_pb2.ListPoolsResponse(
            pools=[_pool(pool) for pool in pools], default_pool_id=default
        )

    async def CreatePool(
        self, request: agent_pools_pb2.CreatePoolRequest, context: Context
    ) -> agent_pools_pb2.CreatePoolResponse:
        pool, token = await self._pools.create_pool(
            request.organization, request.name, request.description
        )
        return agent_pools_pb2.CreatePoolResponse(pool=_pool(pool), token=token)

    async def GetPool(
        self, request: agent_pools_pb2.GetPoolRequest, context: Context
    ) -> agent_pools_pb2.PoolDetail:
        pool, agents = await self._pools.get_pool(request.organization, request.pool_id)
        now = self._clock.now()
        return agent_pools_pb2.PoolDetail(
            pool=_pool(pool), agents=[_agent(agent, now) for agent in agents]
        )

    async def UpdatePool(
        self, request: agent_pools_pb2.UpdatePoolRequest, context: Context
    ) -> agent_pools_pb2.Pool:
        pool = await self._pools.update_pool(
            request.organization,
            request.pool_id,
            request.name if request.HasField("name") else None,
            request.description if request.HasField("description") else None,
        )
        return _pool(pool)

    async def DeletePool(
        self, request: agent_pools_pb2.DeletePoolRequest, context: Context
    ) -> agent_pools_pb2.DeletePoolResponse:
        await self._pools.delete_pool(request.organization, request.pool_id, force=request.force)
        return agent_pools_pb2.DeletePoolResponse()

    async def GetDeploymentSettings(
        self, request: agent_pools_pb2.GetDeploymentSettingsRequest, context: Context
    ) -> agent_pools_pb2.DeploymentSettings:
        return _settings(await self._pools.get_settings(request.stack_id))

    async def UpdateDeploymentSettings(
        self, request: agent_pools_pb2.UpdateDeploymentSettingsRequest, context: Context
    ) -> agent_pools_pb2.DeploymentSettings:
        patch = _json_object(request.patch, "the deployment settings")
        stored = await self._pools.update_settings(
            request.stack_id, request.organization, patch, replace=request.replace
        )
        return _settings(stored)

    async def DeleteDeploymentSettings(
        self, request: agent_pools_pb2.DeleteDeploymentSettingsRequest, context: Context
    ) -> agent_pools_pb2.DeleteDeploymentSettingsResponse:
        deleted = await self._pools.delete_settings(request.stack_id)
        return agent_pools_pb2.DeleteDeploymentSettingsResponse(deleted=deleted)

    async def EncryptSettingsSecret(
        self, request: agent_pools_pb2.EncryptSettingsSecretRequest, context: Context
    ) -> agent_pools_pb2.EncryptSettingsSecretResponse:
        ciphertext = await self._pools.encrypt_secret(request.stack_id, request.value)
        return agent_pools_pb2.EncryptSettingsSecretResponse(ciphertext=ciphertext)

    async def CreateDeployment(
        self, request: agent_pools_pb2.CreateDeploymentRequest, context: Context
    ) -> agent_pools_pb2.Deployment:
        overrides = _json_object(request.overrides or b"{}", "the deployment settings")
        caller = caller_from_context(context)
        deployment = await self._pools.create_deployment(
            StackName(request.stack_id, request.organization, request.project, request.stack),
            request.operation,
            overrides,
            inherit_settings=request.inherit_settings,
            requested_by=caller.login,
            # Organization and team tokens carry no user id: their jobs get no token.
            requested_by_user_id=caller.user_id,
        )
        return _deployment(deployment)

    async def ListDeployments(
        self, request: agent_pools_pb2.ListDeploymentsRequest, context: Context
    ) -> agent_pools_pb2.ListDeploymentsResponse:
        page = await self._pools.list_deployments(
            request.organization,
            request.stack_id,
            request.page,
            request.page_size,
            ascending=request.ascending,
        )
        return agent_pools_pb2.ListDeploymentsResponse(
            deployments=[_deployment(d) for d in page.deployments], total=page.total
        )

    async def GetDeployment(
        self, request: agent_pools_pb2.GetDeploymentRequest, context: Context
    ) -> agent_pools_pb2.Deployment:
        deployment = await self._pools.get_deployment(
            request.stack_id, request.deployment_id, request.version
        )
        message = _deployment(deployment)
        message.latest_version = await self._pools.latest_version(request.stack_id)
        return message

    async def FindDeploymentsByTokens(
        self, request: agent_pools_pb2.FindDeploymentsByTokensRequest, context: Context
    ) -> agent_pools_pb2.FindDeploymentsByTokensResponse:
        links = await self._pools.deployments_for_tokens(request.stack_id, list(request.token_ids))
        return agent_pools_pb2.FindDeploymentsByTokensResponse(
            links=[
                agent_pools_pb2.DeploymentLink(
                    token_id=link.token_id, deployment_id=link.deployment_id, version=link.version
                )
                for link in links
            ]
        )

    async def GetDeploymentLogs(
        self, request: agent_pools_pb2.GetDeploymentLogsRequest, context: Context
    ) -> agent_pools_pb2.GetDeploymentLogsResponse:
        lines, following = await self._pools.logs(
            request.stack_id, request.deployment_id, request.offset, request.count
        )
        return agent_pools_pb2.GetDeploymentLogsResponse(
            lines=[
                agent_pools_pb2.LogLine(
                    index=line.index, timestamp=int(line.timestamp), text=line.text
                )
                for line in lines
            ],
            next_offset=following,
        )

    async def CancelDeployment(
        self, request: agent_pools_pb2.CancelDeploymentRequest, context: Context
    ) -> agent_pools_pb2.Deployment:
        return _deployment(await self._pools.cancel(request.stack_id, request.deployment_id))

    async def PurgeStack(
        self, request: agent_pools_pb2.PurgeDeploymentsRequest, context: Context
    ) -> agent_pools_pb2.PurgeDeploymentsResponse:
        await self._schedules.purge(request.stack_id)
        await self._pools.purge(request.stack_id)
        return agent_pools_pb2.PurgeDeploymentsResponse()

    async def RegisterAgent(
        self, request: agent_pools_pb2.RegisterAgentRequest, context: Context
    ) -> agent_pools_pb2.RegisterAgentResponse:
        metadata = AgentMetadata(
            version=request.version[:64],
            platform=request.platform[:64],
            hostname=request.hostname[:255],
            ip=request.ip[:64],
            pid=request.pid[:32],
        )
        agent_id, pool_id, heartbeat = await self._pools.register(request.pool_token, metadata)
        return agent_pools_pb2.RegisterAgentResponse(
            agent_id=agent_id, pool_id=pool_id, heartbeat_seconds=heartbeat
        )

    async def Heartbeat(
        self, request: agent_pools_pb2.HeartbeatRequest, context: Context
    ) -> agent_pools_pb2.HeartbeatResponse:
        cancelled = await self._pools.heartbeat(request.agent.pool_token, request.agent.agent_id)
        return agent_pools_pb2.HeartbeatResponse(cancelled_deployment_ids=cancelled)

    async def ClaimDeployment(
        self, request: agent_pools_pb2.ClaimDeploymentRequest, context: Context
    ) -> agent_pools_pb2.ClaimDeploymentResponse:
        claimed = await self._pools.claim(request.agent.pool_token, request.agent.agent_id)
        if claimed is None:
            return agent_pools_pb2.ClaimDeploymentResponse()
        return agent_pools_pb2.ClaimDeploymentResponse(
            job=agent_pools_pb2.Job(
                deployment=_deployment(claimed.deployment),
                settings=orjson.dumps(dict(claimed.settings)),
                access_token=claimed.access_token,
                secret_values=claimed.secret_values,
            )
        )

    async def AppendDeploymentLogs(
        self, request: agent_pools_pb2.AppendDeploymentLogsRequest, context: Context
    ) -> agent_pools_pb2.AppendDeploymentLogsResponse:
        cancelled = await self._pools.append_logs(
            request.agent.pool_token,
            request.agent.agent_id,
            request.deployment_id,
            list(request.lines),
        )
        return agent_pools_pb2.AppendDeploymentLogsResponse(is_cancelled=cancelled)

    async def FinishDeployment(
        self, request: agent_pools_pb2.FinishDeploymentRequest, context: Context
    ) -> agent_pools_pb2.FinishDeploymentResponse:
        await self._pools.finish(
            request.agent.pool_token,
            request.agent.agent_id,
            request.deployment_id,
            request.status,
            request.message,
        )
        return agent_pools_pb2.FinishDeploymentResponse()


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidArgument(f"Bad Request: {what} must be JSON") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"Bad Request: {what} must be a JSON object")
    return value


def _pool(pool: PoolRecord) -> agent_pools_pb2.Pool:
    return agent_pools_pb2.Pool(
        id=pool.id,
        organization=pool.organization,
        name=pool.name,
        description=pool.description,
        created=int(pool.created_at),
        last_seen=int(pool.last_seen_at),
        status=ONLINE if pool.is_online else OFFLINE,
        last_deployment=int(pool.last_deployment_at),
        is_default=pool.is_default,
    )


def _agent(agent: AgentRecord, now: float) -> agent_pools_pb2.Agent:
    return agent_pools_pb2.Agent(
        id=agent.id,
        version=agent.version,
        platform=agent.platform,
        hostname=agent.hostname,
        ip=agent.ip,
        pid=agent.pid,
        last_seen=int(agent.last_seen_at),
        status=ONLINE if agent.is_online(now) else OFFLINE,
    )


def _settings(stored: StoredSettings) -> agent_pools_pb2.DeploymentSettings:
    return agent_pools_pb2.DeploymentSettings(
        settings=orjson.dumps(dict(stored.settings)),
        agent_pool_id=stored.agent_pool_id or "",
        exists=stored.exists,
    )


def _deployment(deployment: DeploymentRecord) -> agent_pools_pb2.Deployment:
    return agent_pools_pb2.Deployment(
        id=deployment.id,
        stack_id=deployment.stack.stack_id,
        organization=deployment.stack.organization,
        project=deployment.stack.project,
        stack=deployment.stack.stack,
        version=deployment.version,
        operation=deployment.operation,
        status=deployment.status,
        pool_id=deployment.pool_id,
        agent_id=deployment.agent_id or "",
        requested_by=deployment.requested_by,
        created=int(deployment.created_at),
        modified=int(deployment.modified_at),
        started=int(deployment.started_at or 0),
        finished=int(deployment.finished_at or 0),
        message=deployment.message,
        is_cancel_requested=deployment.is_cancel_requested,
        attempts=deployment.attempts,
        settings=orjson.dumps(dict(deployment.settings)),
        job_token_ids=list(deployment.job_token_ids),
        initiator=deployment.initiator,
        paused=deployment.paused,
    )


class TokenSweeper:
    """Runs `AgentPools.sweep` every few seconds, so tokens of jobs whose agent vanished are
    revoked even when no agent of their pool calls in."""

    def __init__(self, sweep: Callable[[], Awaitable[int]], interval_seconds: float) -> None:
        self._sweep = sweep
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._sweep()
            except SWEEP_RETRIED_ERRORS as error:
                # The database may be away for a while; the next round tries again.
                log.warning("deployment_token_sweep_failed", error=type(error).__name__)
            except Exception:
                log.exception("deployment_token_sweep_failed")


DEPLOYMENT_EVENTS = {
    "queued": DEPLOYMENT_QUEUED,
    "started": DEPLOYMENT_STARTED,
    "succeeded": DEPLOYMENT_SUCCEEDED,
    "failed": DEPLOYMENT_FAILED,
}


# A remediate-drift deployment's end is also the outcome of the drift's remediation.
REMEDIATION_EVENTS = {
    "succeeded": DRIFT_REMEDIATION_SUCCEEDED,
    "failed": DRIFT_REMEDIATION_FAILED,
}


def deployment_events(
    clock: Clock, deployment: DeploymentRecord, status: str
) -> list[hooks_pb2.PublishEventRequest]:
    """The webhook events of a deployment queued, started (claimed by an agent) or ended, and
    of a drift remediation ended."""
    kind = DEPLOYMENT_EVENTS.get(status)
    if kind is None:
        return []
    kinds = [kind]
    if deployment.operation == REMEDIATE_DRIFT and status in REMEDIATION_EVENTS:
        kinds.append(REMEDIATION_EVENTS[status])
    stack = deployment.stack
    outcome = hooks_pb2.DeploymentOutcome(
        deployment_id=deployment.id,
        version=deployment.version,
        operation=deployment.operation,
        status=status,
    )
    return [
        hook_event(
            stack.stack_id,
            each,
            at=clock.now(),
            user_login=deployment.requested_by,
            organization=stack.organization,
            project=stack.project,
            stack_name=stack.stack,
            deployment=outcome,
        )
        for each in kinds
    ]


def hook_dispatcher(
    settings: Settings, database: Database
) -> tuple[OutboxDispatcher, grpc.aio.Channel] | None:
    """Deployment and drift events go to the webhooks in the stacks process, when it is
    addressed."""
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
        name="agent_pools",
    )
    return dispatcher, channel


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Migrate, wire and start the agent_pools service; port 0 picks a free port."""
    database = await open_database(settings, "agent_pools", MIGRATIONS, Base.metadata)
    channels: list[grpc.aio.Channel] = []
    try:
        for name in ("secrets", "identity"):
            channels.append(peer_channel(settings, name))
        # TTL stacks are deleted, and webhook events are delivered, by the stacks
        # process; without its address (this service run alone) neither happens.
        if settings.service_address("stacks"):
            channels.append(peer_channel(settings, "stacks"))
    except BaseException:
        for channel in channels:
            await channel.close(None)
        await database.engine.dispose()
        raise
    secrets_channel, identity_channel = channels[:2]
    stacks_channel = channels[2] if len(channels) > 2 else None

    async def close_channels() -> None:
        for channel in channels:
            await channel.close(None)

    the_clock = clock or SystemClock()
    timeout = settings.grpc_timeout_seconds
    secrets = SecretsPeer(secrets_pb2_grpc.SecretsServiceStub(secrets_channel), timeout)
    identity = IdentityPeer(identity_pb2_grpc.IdentityServiceStub(identity_channel), timeout)
    hooks = hook_dispatcher(settings, database)
    events = (
        None
        if hooks is None
        else DeploymentEvents(partial(deployment_events, the_clock), hooks[0].wake)
    )
    store = AgentPoolStore(
        database.sessions, database.engine.dialect.name, events, reads=database.reads
    )
    pools = AgentPools(
        store,
        AgentStore(database.sessions, events),
        the_clock,
        secrets.encrypt,
        secrets.decrypt,
        identity,
        token_ttl_seconds=settings.deployment_token_ttl_seconds,
    )
    schedules = Schedules(
        ScheduleStore(database.sessions),
        store,
        pools,
        the_clock,
        None
        if stacks_channel is None
        else StacksPeer(stacks_pb2_grpc.StacksServiceStub(stacks_channel), timeout),
        None if hooks is None else DriftEvents(partial(drift_events, the_clock), hooks[0].wake),
    )
    servicer = AgentPoolsServicer(pools, the_clock, schedules)
    sweeper = TokenSweeper(pools.sweep, settings.deployment_token_sweep_seconds)
    scheduler = ScheduleLoop(schedules.tick, settings.schedule_interval_seconds)

    def register(server: grpc.aio.Server) -> None:
        agent_pools_pb2_grpc.add_AgentPoolsServiceServicer_to_server(servicer, server)
        schedules_pb2_grpc.add_DeploymentSchedulesServiceServicer_to_server(
            DeploymentSchedulesServicer(schedules), server
        )

    async def close_hooks() -> None:
        if hooks is not None:
            await hooks[0].close()
            await hooks[1].close(None)

    running = await serve_service(
        name="agent_pools",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME, SCHEDULES_SERVICE_NAME],
        # Closers run last to first: the loops stop before the channels and the database.
        closers=[
            database.engine.dispose,
            close_channels,
            close_hooks,
            sweeper.stop,
            scheduler.stop,
        ],
        dependencies=[database_dependency(database.engine)],
    )
    sweeper.start()
    scheduler.start()
    if hooks is not None:
        hooks[0].start()
    return running
