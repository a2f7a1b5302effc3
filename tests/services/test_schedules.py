"""The scheduler over real gRPC with two agent_pools replicas on one database and a manual
clock: one firing per due time, missed due times fired once after a restart, one-time
schedules, paused deployments held in the queue, bad schedules refused with nothing kept, and
firings and follow-ups a stopped replica left carried out once.

Runs on SQLite and, when reachable, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import orjson
import pytest
from sqlalchemy import func, select, update

from protos.cairn.v1 import (
    agent_pools_pb2,
    agent_pools_pb2_grpc,
    schedules_pb2,
    schedules_pb2_grpc,
)
from services.agent_pools import server as agent_pools_server
from services.agent_pools.domain import SUCCEEDED
from services.agent_pools.models import HOOK_OUTBOX, Base, DeploymentRow
from services.agent_pools.schedule_rules import STALE_CLAIM_SECONDS
from services.agent_pools.schedule_store import ScheduleStore
from services.agent_pools.server import MIGRATIONS
from services.common.auth import USER_LOGIN_KEY
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.service import RunningService, open_database
from services.identity import server as identity_server
from services.secrets import server as secrets_server
from tests import waiting
from tests.conftest import signed_channel

ORG, PROJECT, STACK, STACK_ID = "acme", "web", "dev", "stack-0001"
INTERVAL = 0.02
WAIT_SECONDS = 10.0
# 2023-11-14T22:13:20Z: the next "*/5" minute is 22:15:00.
START = 1_700_000_000.0
NEXT_FIVE = 1_700_000_100.0
AS_ALICE = ((USER_LOGIN_KEY, "alice"),)


@dataclass
class Replica:
    service: RunningService
    channel: grpc.aio.Channel
    pools: agent_pools_pb2_grpc.AgentPoolsServiceAsyncStub
    schedules: schedules_pb2_grpc.DeploymentSchedulesServiceAsyncStub


@dataclass
class Cluster:
    settings: Settings
    clock: ManualClock
    replicas: list[Replica] = field(default_factory=list)

    async def start_replica(self) -> Replica:
        service = await agent_pools_server.start(
            self.settings, host="127.0.0.1", port=0, clock=self.clock
        )
        channel = signed_channel(self.settings, f"127.0.0.1:{service.port}")
        replica = Replica(
            service,
            channel,
            agent_pools_pb2_grpc.AgentPoolsServiceStub(channel),
            schedules_pb2_grpc.DeploymentSchedulesServiceStub(channel),
        )
        self.replicas.append(replica)
        return replica

    async def stop_all(self) -> None:
        while self.replicas:
            replica = self.replicas.pop()
            await replica.channel.close(None)
            await replica.service.stop(0)

    @property
    def first(self) -> Replica:
        return self.replicas[0]


@pytest.fixture
async def cluster(any_settings: Settings) -> AsyncIterator[Cluster]:
    clock = ManualClock(START)
    secrets = await secrets_server.start(any_settings, host="127.0.0.1", port=0)
    identity = await identity_server.start(any_settings, host="127.0.0.1", port=0, clock=clock)
    settings = any_settings.model_copy(
        update={
            "secrets_address": f"127.0.0.1:{secrets.port}",
            "identity_address": f"127.0.0.1:{identity.port}",
            "grpc_timeout_seconds": 10.0,
            "schedule_interval_seconds": INTERVAL,
        }
    )
    running = Cluster(settings, clock)
    try:
        yield running
    finally:
        await running.stop_all()
        await identity.stop(0)
        await secrets.stop(0)


SCOPE = schedules_pb2.StackScope(stack_id=STACK_ID, organization=ORG, project=PROJECT, stack=STACK)


async def make_pool(replica: Replica) -> str:
    created = await replica.pools.CreatePool(
        agent_pools_pb2.CreatePoolRequest(organization=ORG, name="runners")
    )
    return created.token


async def schedule(replica: Replica, *, cron: str = "", once_at: int = 0) -> schedules_pb2.Schedule:
    return await replica.schedules.CreateSchedule(
        schedules_pb2.CreateScheduleRequest(
            stack=SCOPE,
            kind="deployment",
            cron=cron,
            once_at=once_at,
            request=orjson.dumps({"operation": "refresh", "inheritSettings": True}),
        ),
        metadata=AS_ALICE,
    )


async def history(replica: Replica, schedule_id: str) -> list[schedules_pb2.ScheduleFiring]:
    reply = await replica.schedules.ListScheduleHistory(
        schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id=schedule_id)
    )
    return list(reply.firings)


async def deployments(replica: Replica) -> list[agent_pools_pb2.Deployment]:
    reply = await replica.pools.ListDeployments(
        agent_pools_pb2.ListDeploymentsRequest(organization=ORG, stack_id=STACK_ID, ascending=True)
    )
    return list(reply.deployments)


async def eventually(check: Callable[[], Awaitable[object]], what: str) -> None:
    """Wait (bounded) until the async check answers true."""
    await waiting.eventually(check, what, seconds=WAIT_SECONDS, interval=INTERVAL)


async def several_rounds() -> None:
    """Long enough for every replica to run its scheduler many times."""
    await asyncio.sleep(INTERVAL * 15)


async def firings_queued(replica: Replica, schedule_id: str, count: int) -> bool:
    """At least `count` firings carried out (their deployment queued), not merely claimed:
    a claim still open when the clock jumps looks like a stopped replica's, and is retried."""
    firings = await history(replica, schedule_id)
    return sum(1 for firing in firings if firing.deployment_id) >= count


async def test_a_cron_schedule_fires_once_per_due_time_across_two_replicas(
    cluster: Cluster,
) -> None:
    first = await cluster.start_replica()
    await cluster.start_replica()
    await make_pool(first)
    created = await schedule(first, cron="*/5 * * * *")
    assert created.next_at == NEXT_FIVE
    assert created.cron == "*/5 * * * *" and not created.paused and not created.last_executed

    await several_rounds()
    assert await history(first, created.id) == []  # not due yet

    cluster.clock.current = NEXT_FIVE + 1
    await eventually(lambda: firings_queued(first, created.id, 1), "the first firing")
    await several_rounds()
    (firing,) = await history(first, created.id)
    assert (firing.due, firing.result, firing.version) == (int(NEXT_FIVE), "succeeded", 1)
    (queued,) = await deployments(first)
    assert (queued.id, queued.operation, queued.requested_by) == (
        firing.deployment_id,
        "refresh",
        "alice",
    )
    read = await first.schedules.GetSchedule(
        schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id=created.id)
    )
    assert read.next_at == NEXT_FIVE + 300 and read.last_executed == int(NEXT_FIVE + 1)

    cluster.clock.current = NEXT_FIVE + 301
    await eventually(lambda: firings_queued(first, created.id, 2), "the second firing")
    await several_rounds()
    assert len(await history(first, created.id)) == 2
    assert len(await deployments(first)) == 2


async def test_missed_due_times_fire_once_after_a_restart(cluster: Cluster) -> None:
    first = await cluster.start_replica()
    await make_pool(first)
    created = await schedule(first, cron="*/5 * * * *")
    await cluster.stop_all()

    # Down for an hour: twelve due times pass while nothing runs.
    cluster.clock.current = NEXT_FIVE + 3600 + 10
    restarted = await cluster.start_replica()
    await cluster.start_replica()
    await eventually(lambda: firings_queued(restarted, created.id, 1), "the missed firing")
    await several_rounds()
    (firing,) = await history(restarted, created.id)
    assert firing.due == int(NEXT_FIVE)
    assert len(await deployments(restarted)) == 1
    read = await restarted.schedules.GetSchedule(
        schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id=created.id)
    )
    assert read.next_at == NEXT_FIVE + 3900  # the next one after now, not a backlog


async def test_a_one_time_schedule_fires_once_and_is_done(cluster: Cluster) -> None:
    first = await cluster.start_replica()
    await cluster.start_replica()
    await make_pool(first)
    created = await schedule(first, once_at=int(START) + 60)
    assert (created.cron, created.once_at, created.next_at) == ("", int(START) + 60, START + 60)

    cluster.clock.advance(61)
    await eventually(lambda: firings_queued(first, created.id, 1), "the one-time firing")
    cluster.clock.advance(86_400)
    await several_rounds()
    assert len(await history(first, created.id)) == 1
    assert len(await deployments(first)) == 1
    done = await first.schedules.GetSchedule(
        schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id=created.id)
    )
    assert done.next_at == 0 and done.last_executed == int(START) + 61


async def test_a_paused_schedule_does_not_fire_and_resumes_from_now(cluster: Cluster) -> None:
    first = await cluster.start_replica()
    await make_pool(first)
    created = await schedule(first, cron="*/5 * * * *")
    ref = schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id=created.id)
    paused = await first.schedules.SetSchedulePaused(
        schedules_pb2.SetSchedulePausedRequest(schedule=ref, paused=True)
    )
    assert paused.paused
    cluster.clock.current = NEXT_FIVE + 1000
    await several_rounds()
    assert await history(first, created.id) == []
    resumed = await first.schedules.SetSchedulePaused(
        schedules_pb2.SetSchedulePausedRequest(schedule=ref, paused=False)
    )
    assert not resumed.paused and resumed.next_at == NEXT_FIVE + 1200
    await several_rounds()
    assert await history(first, created.id) == []


async def test_paused_deployments_stay_queued_until_resumed(cluster: Cluster) -> None:
    first = await cluster.start_replica()
    token = await make_pool(first)
    agent = await first.pools.RegisterAgent(agent_pools_pb2.RegisterAgentRequest(pool_token=token))
    creds = agent_pools_pb2.AgentCredentials(pool_token=token, agent_id=agent.agent_id)
    claim = agent_pools_pb2.ClaimDeploymentRequest(agent=creds)

    async def queue() -> str:
        created = await first.pools.CreateDeployment(
            agent_pools_pb2.CreateDeploymentRequest(
                stack_id=STACK_ID,
                organization=ORG,
                project=PROJECT,
                stack=STACK,
                operation="update",
                inherit_settings=True,
            ),
            metadata=AS_ALICE,
        )
        return created.id

    async def pause(stack_id: str, paused: bool) -> None:
        await first.schedules.SetDeploymentsPaused(
            schedules_pb2.SetDeploymentsPausedRequest(
                organization=ORG, stack_id=stack_id, paused=paused
            )
        )

    for scope in (STACK_ID, ""):  # the stack, then the whole organization
        await pause(scope, True)
        queued = await queue()
        metadata = await first.schedules.GetStackDeploymentsMetadata(SCOPE)
        assert (metadata.stack_paused, metadata.organization_paused) == (
            scope == STACK_ID,
            scope == "",
        )
        assert not (await first.pools.ClaimDeployment(claim)).HasField("job")
        status = await first.schedules.LocateDeployment(
            schedules_pb2.LocateDeploymentRequest(deployment_id=queued)
        )
        assert status.status == "not-started"
        await pause(scope, False)
        job = (await first.pools.ClaimDeployment(claim)).job
        assert job.deployment.id == queued
        await first.pools.FinishDeployment(
            agent_pools_pb2.FinishDeploymentRequest(
                agent=creds, deployment_id=queued, status="succeeded"
            )
        )


@pytest.mark.parametrize(
    ("kind", "cron", "once_offset", "message"),
    [
        ("deployment", "not a cron", 0, "cron expression"),
        ("deployment", "0 2 * * * *", 0, "five fields"),
        ("deployment", "61 * * * *", 0, "cron expression"),
        ("deployment", "", -60, "in the future"),
        ("deployment", "", 0, "is required"),
        ("deployment", "0 2 * * *", 60, "not both"),
        ("drift", "", 0, "'scheduleCron' is required"),
        ("ttl", "", 0, "'timestamp' is required"),
        ("ttl", "", -1, "in the future"),
        ("other", "0 2 * * *", 0, "unknown schedule kind"),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_kept(
    cluster: Cluster, kind: str, cron: str, once_offset: int, message: str
) -> None:
    first = await cluster.start_replica()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await first.schedules.CreateSchedule(
            schedules_pb2.CreateScheduleRequest(
                stack=SCOPE,
                kind=kind,
                cron=cron,
                once_at=int(START) + once_offset if once_offset else 0,
            ),
            metadata=AS_ALICE,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    listed = await first.schedules.ListSchedules(SCOPE)
    assert list(listed.schedules) == []


async def test_unknown_schedules_and_runs_are_not_found(cluster: Cluster) -> None:
    first = await cluster.start_replica()
    ref = schedules_pb2.ScheduleRef(stack_id=STACK_ID, schedule_id="missing")
    for call in (
        first.schedules.GetSchedule(ref),
        first.schedules.DeleteSchedule(ref),
        first.schedules.ListScheduleHistory(ref),
        first.schedules.SetSchedulePaused(
            schedules_pb2.SetSchedulePausedRequest(schedule=ref, paused=True)
        ),
        first.schedules.UpdateSchedule(
            schedules_pb2.UpdateScheduleRequest(
                schedule_id="missing",
                schedule=schedules_pb2.CreateScheduleRequest(
                    stack=SCOPE, kind="drift", cron="0 2 * * *"
                ),
            )
        ),
        first.schedules.GetDriftRun(
            schedules_pb2.GetDriftRunRequest(stack_id=STACK_ID, drift_run_id="missing")
        ),
        first.schedules.LocateDeployment(
            schedules_pb2.LocateDeploymentRequest(deployment_id="missing")
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # A schedule of one kind is not updated as another.
    created = await schedule(first, cron="0 2 * * *")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await first.schedules.UpdateSchedule(
            schedules_pb2.UpdateScheduleRequest(
                schedule_id=created.id,
                schedule=schedules_pb2.CreateScheduleRequest(
                    stack=SCOPE, kind="drift", cron="0 3 * * *"
                ),
            )
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_firing_claimed_by_a_replica_that_stopped_is_queued_once(
    cluster: Cluster,
) -> None:
    """A replica claims a due firing (the schedule's next due time moved on, the firing row
    written) and stops before queuing its deployment: the survivors leave the fresh claim
    alone, then queue it once when it has been open for STALE_CLAIM_SECONDS."""
    first = await cluster.start_replica()
    await cluster.start_replica()
    await make_pool(first)
    created = await schedule(first, cron="*/5 * * * *")

    database = await open_database(cluster.settings, "agent_pools", MIGRATIONS, Base.metadata)
    try:
        store = ScheduleStore(database.sessions)
        (due,) = await store.due_schedules(NEXT_FIVE + 1, 10)
        # Claimed at the due time by the replica that then stopped; the survivors' clock is
        # not there yet, so they see no due schedule (its next due time moved on).
        claim = await store.claim_firing(due, NEXT_FIVE + 300, NEXT_FIVE + 1)
        assert claim is not None and claim.deployment_id is None
    finally:
        await database.engine.dispose()

    cluster.clock.current = NEXT_FIVE + 2
    await several_rounds()
    (open_claim,) = await history(first, created.id)
    assert (open_claim.result, open_claim.deployment_id) == ("claimed", "")
    assert await deployments(first) == []

    cluster.clock.current = NEXT_FIVE + 1 + STALE_CLAIM_SECONDS + 1
    await eventually(lambda: firings_queued(first, created.id, 1), "the abandoned firing")
    await several_rounds()
    (firing,) = await history(first, created.id)
    assert (firing.due, firing.result) == (int(NEXT_FIVE), "succeeded")
    (queued,) = await deployments(first)
    assert queued.id == firing.deployment_id


def closed_port() -> int:
    """A loopback port nothing listens on: events sent there stay in the outbox."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_follow_up_claimed_by_a_replica_that_stopped_is_done_once(
    cluster: Cluster,
) -> None:
    """A replica claims the follow-up of a finished drift detection and stops before doing it:
    the survivors leave the fresh claim alone, then finish the drift run once (its events
    written once) when the claim has been open for STALE_CLAIM_SECONDS; a follow-up done
    already is not done again."""
    # Webhook events go to a stacks address nothing answers: they stay in the outbox.
    cluster.settings = cluster.settings.model_copy(
        update={"stacks_address": f"127.0.0.1:{closed_port()}"}
    )
    first = await cluster.start_replica()
    await make_pool(first)
    created = await first.schedules.CreateSchedule(
        schedules_pb2.CreateScheduleRequest(stack=SCOPE, kind="drift", cron="*/5 * * * *"),
        metadata=AS_ALICE,
    )
    cluster.clock.current = NEXT_FIVE + 1
    await eventually(lambda: firings_queued(first, created.id, 1), "the drift detection")
    await cluster.stop_all()

    claimed_at = NEXT_FIVE + 2
    database = await open_database(cluster.settings, "agent_pools", MIGRATIONS, Base.metadata)
    try:
        store = ScheduleStore(database.sessions)
        async with database.sessions.begin() as session:
            await session.execute(update(DeploymentRow).values(status=SUCCEEDED))
        ((firing, detection),) = await store.finished_firings(claimed_at, 10)
        # Claimed by the replica that then stopped; no other takes it while the claim is fresh.
        assert await store.claim_follow_up(firing.id, claimed_at, claimed_at)
        assert not await store.claim_follow_up(firing.id, claimed_at, claimed_at + 1)
        assert await store.finished_firings(claimed_at, 10) == []

        async def drift_events() -> int:
            async with database.sessions.begin() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(HOOK_OUTBOX)
                    .where(HOOK_OUTBOX.c.event.like("drift%"))
                )
                return int(count or 0)

        async def run_finished() -> bool:
            run = await store.drift_run_of(detection.id)
            return run is not None and run.finished_at is not None

        cluster.clock.current = claimed_at + 1
        await cluster.start_replica()
        await cluster.start_replica()
        await several_rounds()
        assert not await run_finished()
        assert await drift_events() == 0

        cluster.clock.current = claimed_at + STALE_CLAIM_SECONDS + 1
        await eventually(run_finished, "the abandoned follow-up")
        await several_rounds()
        finished = await store.drift_run_of(detection.id)
        assert finished is not None and finished.drift_detected is False
        assert await drift_events() == 1
        assert await store.finished_firings(cluster.clock.current + 1, 10) == []

        # Done: not taken again, whatever the time.
        cluster.clock.current += STALE_CLAIM_SECONDS + 1
        assert not await store.claim_follow_up(firing.id, cluster.clock.current, 0.0)
        await several_rounds()
        assert await store.drift_run_of(detection.id) == finished
        assert await drift_events() == 1
    finally:
        await database.engine.dispose()
