"""The agent_pools service over real gRPC, with the real secrets and identity services and a
manual clock.

Runs on SQLite and, when reachable, PostgreSQL: claims racing between agents, leases of
silent agents, heartbeat timeouts and cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest

from protos.cairn.v1 import agent_pools_pb2, agent_pools_pb2_grpc, identity_pb2, identity_pb2_grpc
from services.agent_pools import server as agent_pools_server
from services.agent_pools.domain import (
    HEARTBEAT_SECONDS,
    JOB_LEASE_SECONDS,
    MAX_ATTEMPTS,
    OFFLINE_AFTER_SECONDS,
)
from services.common.auth import USER_ID_KEY, USER_LOGIN_KEY
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.service import RunningService
from services.identity import server as identity_server
from services.secrets import server as secrets_server
from tests.conftest import signed_channel

ORG = "acme"
PROJECT = "web"
STACK = "dev"
STACK_ID = "stack-0001"
ABANDONED = "the agent running this deployment stopped responding"
REQUESTER_GONE = "the user who queued this deployment no longer exists"
SWEEP_SECONDS = 0.05
# Bounds the wait for the periodic sweep.
WAIT_SECONDS = 10.0


@dataclass
class Harness:
    stub: agent_pools_pb2_grpc.AgentPoolsServiceAsyncStub
    clock: ManualClock
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    identity_service: RunningService
    secrets_service: RunningService


@pytest.fixture
async def harness(any_settings: Settings) -> AsyncIterator[Harness]:
    clock = ManualClock()
    secrets = await secrets_server.start(any_settings, host="127.0.0.1", port=0)
    identity = await identity_server.start(any_settings, host="127.0.0.1", port=0, clock=clock)
    try:
        settings = any_settings.model_copy(
            update={
                "secrets_address": f"127.0.0.1:{secrets.port}",
                "identity_address": f"127.0.0.1:{identity.port}",
                "grpc_timeout_seconds": 10.0,
                "deployment_token_sweep_seconds": SWEEP_SECONDS,
            }
        )
        service = await agent_pools_server.start(settings, host="127.0.0.1", port=0, clock=clock)
        channel = signed_channel(any_settings, f"127.0.0.1:{service.port}")
        identity_channel = signed_channel(any_settings, f"127.0.0.1:{identity.port}")
        try:
            yield Harness(
                agent_pools_pb2_grpc.AgentPoolsServiceStub(channel),
                clock,
                identity_pb2_grpc.IdentityServiceStub(identity_channel),
                identity,
                secrets,
            )
        finally:
            await identity_channel.close(None)
            await channel.close(None)
            await service.stop(0)
    finally:
        await identity.stop(0)
        await secrets.stop(0)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def new_pool(harness: Harness, name: str = "pool") -> tuple[str, str]:
    """A pool's id and its token."""
    reply = await harness.stub.CreatePool(
        agent_pools_pb2.CreatePoolRequest(organization=ORG, name=name, description="")
    )
    return reply.pool.id, reply.token


async def register(harness: Harness, token: str, hostname: str = "host-1") -> str:
    reply = await harness.stub.RegisterAgent(
        agent_pools_pb2.RegisterAgentRequest(
            pool_token=token,
            version="1.2.3",
            platform="linux",
            hostname=hostname,
            ip="10.0.0.7",
            pid="4242",
        )
    )
    assert reply.heartbeat_seconds == HEARTBEAT_SECONDS
    return reply.agent_id


def creds(token: str, agent_id: str) -> agent_pools_pb2.AgentCredentials:
    return agent_pools_pb2.AgentCredentials(pool_token=token, agent_id=agent_id)


async def create_deployment(
    harness: Harness,
    overrides: dict[str, Any] | None = None,
    operation: str = "update",
    *,
    user: tuple[str, str] | None = None,
) -> agent_pools_pb2.Deployment:
    """Queued by alice without a user id (as by a machine token), or by `user` (id, login)."""
    metadata: tuple[tuple[str, str], ...] = ((USER_LOGIN_KEY, "alice"),)
    if user is not None:
        metadata = ((USER_ID_KEY, user[0]), (USER_LOGIN_KEY, user[1]))
    return await harness.stub.CreateDeployment(
        agent_pools_pb2.CreateDeploymentRequest(
            stack_id=STACK_ID,
            organization=ORG,
            project=PROJECT,
            stack=STACK,
            operation=operation,
            overrides=orjson.dumps(overrides or {}),
            inherit_settings=True,
        ),
        metadata=metadata,
    )


async def claim(harness: Harness, token: str, agent_id: str) -> agent_pools_pb2.Job | None:
    reply = await harness.stub.ClaimDeployment(
        agent_pools_pb2.ClaimDeploymentRequest(agent=creds(token, agent_id))
    )
    return reply.job if reply.HasField("job") else None


async def get(harness: Harness, deployment_id: str) -> agent_pools_pb2.Deployment:
    return await harness.stub.GetDeployment(
        agent_pools_pb2.GetDeploymentRequest(stack_id=STACK_ID, deployment_id=deployment_id)
    )


async def heartbeat(harness: Harness, token: str, agent_id: str) -> list[str]:
    reply = await harness.stub.Heartbeat(
        agent_pools_pb2.HeartbeatRequest(agent=creds(token, agent_id))
    )
    return list(reply.cancelled_deployment_ids)


async def append(harness: Harness, token: str, agent_id: str, deployment_id: str) -> bool:
    reply = await harness.stub.AppendDeploymentLogs(
        agent_pools_pb2.AppendDeploymentLogsRequest(
            agent=creds(token, agent_id), deployment_id=deployment_id, lines=["working"]
        )
    )
    return reply.is_cancelled


async def finish(
    harness: Harness, token: str, agent_id: str, deployment_id: str, status: str = "succeeded"
) -> None:
    await harness.stub.FinishDeployment(
        agent_pools_pb2.FinishDeploymentRequest(
            agent=creds(token, agent_id), deployment_id=deployment_id, status=status, message=""
        )
    )


async def test_two_agents_racing_claim_every_job_exactly_once(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agents = [await register(harness, token, f"host-{n}") for n in (1, 2)]
    created = []
    for _ in range(10):
        created.append((await create_deployment(harness)).id)
        harness.clock.advance(1)

    claimed: list[tuple[str, str]] = []

    async def claim_for(agent_id: str) -> tuple[str, str] | None:
        job = await claim(harness, token, agent_id)
        return None if job is None else (agent_id, job.deployment.id)

    rounds = 0
    while True:
        rounds += 1
        assert rounds <= 20, "the queue never drained"
        results = await asyncio.gather(*(claim_for(agents[n % 2]) for n in range(8)))
        got = [result for result in results if result is not None]
        if not got:
            break
        claimed.extend(got)

    ids = [deployment_id for _, deployment_id in claimed]
    assert len(ids) == 10
    assert sorted(ids) == sorted(created)  # every job once, none twice, none lost
    for agent_id, deployment_id in claimed:
        stored = await get(harness, deployment_id)
        assert stored.agent_id == agent_id
        assert stored.status == "accepted"
        assert stored.attempts == 1
    # Nothing is left for either agent.
    assert await claim(harness, token, agents[0]) is None
    assert await claim(harness, token, agents[1]) is None


async def test_claims_hand_out_the_oldest_job_first(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    first = await create_deployment(harness)
    harness.clock.advance(1)
    second = await create_deployment(harness, operation="preview")
    assert (first.version, second.version) == (1, 2)
    assert first.requested_by == "alice"

    job = await claim(harness, token, agent)
    assert job is not None
    assert job.deployment.id == first.id
    assert job.deployment.operation == "update"
    assert job.deployment.started == int(harness.clock.now())
    job = await claim(harness, token, agent)
    assert job is not None
    assert job.deployment.id == second.id
    assert job.deployment.operation == "preview"


async def test_a_silent_agents_job_is_requeued_then_failed(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agents = [await register(harness, token, f"host-{n}") for n in (1, 2)]
    deployment = await create_deployment(harness)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        runner = agents[(attempt - 1) % 2]
        job = await claim(harness, token, runner)
        assert job is not None
        assert job.deployment.id == deployment.id
        assert job.deployment.attempts == attempt
        assert await append(harness, token, runner, deployment.id) is False
        running = await get(harness, deployment.id)
        assert (running.status, running.agent_id) == ("running", runner)

        # Just inside the lease the job stays with its agent.
        harness.clock.advance(JOB_LEASE_SECONDS - 1)
        still = await get(harness, deployment.id)
        assert (still.status, still.agent_id, still.attempts) == ("running", runner, attempt)
        harness.clock.advance(2)

        after = await get(harness, deployment.id)
        if attempt < MAX_ATTEMPTS:
            # Requeued for anyone, and the silent agent can no longer touch it.
            assert (after.status, after.agent_id, after.attempts) == ("not-started", "", attempt)
            late = await rpc_error(append(harness, token, runner, deployment.id))
            assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
            late = await rpc_error(finish(harness, token, runner, deployment.id))
            assert late.code() == grpc.StatusCode.FAILED_PRECONDITION

    failed = await get(harness, deployment.id)
    assert failed.status == "failed"
    assert failed.message == ABANDONED
    assert failed.attempts == MAX_ATTEMPTS
    assert failed.finished == int(harness.clock.now())
    # Never handed out again, never "running" forever.
    assert await claim(harness, token, agents[0]) is None
    harness.clock.advance(10 * JOB_LEASE_SECONDS)
    assert (await get(harness, deployment.id)).status == "failed"


async def test_the_requeued_job_goes_to_the_other_agent_on_claim(harness: Harness) -> None:
    _, token = await new_pool(harness)
    killed = await register(harness, token, "killed")
    survivor = await register(harness, token, "survivor")
    deployment = await create_deployment(harness)
    assert (await claim(harness, token, killed)) is not None

    # Nothing to claim while the lease holds; the recovery happens in the claim itself.
    harness.clock.advance(JOB_LEASE_SECONDS - 1)
    assert await claim(harness, token, survivor) is None
    harness.clock.advance(2)
    job = await claim(harness, token, survivor)
    assert job is not None
    assert (job.deployment.id, job.deployment.attempts) == (deployment.id, 2)
    await finish(harness, token, survivor, deployment.id)
    done = await get(harness, deployment.id)
    assert (done.status, done.agent_id) == ("succeeded", survivor)


async def test_heartbeats_extend_the_lease(harness: Harness) -> None:
    _, token = await new_pool(harness)
    runner = await register(harness, token, "runner")
    idle = await register(harness, token, "idle")
    deployment = await create_deployment(harness)
    assert (await claim(harness, token, runner)) is not None

    for _ in range(5):
        harness.clock.advance(JOB_LEASE_SECONDS - 1)
        assert await heartbeat(harness, token, runner) == []
        assert await claim(harness, token, idle) is None
        held = await get(harness, deployment.id)
        assert (held.status, held.agent_id, held.attempts) == ("accepted", runner, 1)
    # Five leases' worth of time later the agent still finishes its own job.
    await finish(harness, token, runner, deployment.id)
    assert (await get(harness, deployment.id)).status == "succeeded"


async def test_agents_go_offline_without_heartbeats(harness: Harness) -> None:
    pool_id, token = await new_pool(harness)
    detail = await harness.stub.GetPool(
        agent_pools_pb2.GetPoolRequest(organization=ORG, pool_id=pool_id)
    )
    assert list(detail.agents) == []
    assert (detail.pool.status, detail.pool.last_seen) == ("offline", 0)

    agent_id = await register(harness, token)
    registered_at = int(harness.clock.now())

    async def state() -> tuple[agent_pools_pb2.Pool, agent_pools_pb2.Agent, agent_pools_pb2.Pool]:
        detail = await harness.stub.GetPool(
            agent_pools_pb2.GetPoolRequest(organization=ORG, pool_id=pool_id)
        )
        (agent,) = detail.agents
        listed = await harness.stub.ListPools(agent_pools_pb2.ListPoolsRequest(organization=ORG))
        (pool,) = listed.pools
        return detail.pool, agent, pool

    pool, agent, listed = await state()
    assert agent.id == agent_id
    assert (agent.version, agent.platform, agent.hostname, agent.ip, agent.pid) == (
        "1.2.3",
        "linux",
        "host-1",
        "10.0.0.7",
        "4242",
    )
    assert (agent.status, agent.last_seen) == ("online", registered_at)
    assert (pool.status, pool.last_seen) == ("online", registered_at)
    assert (listed.status, listed.last_seen) == ("online", registered_at)

    harness.clock.advance(OFFLINE_AFTER_SECONDS - 1)
    pool, agent, listed = await state()
    assert (agent.status, pool.status, listed.status) == ("online", "online", "online")

    harness.clock.advance(1)
    pool, agent, listed = await state()
    assert (agent.status, agent.last_seen) == ("offline", registered_at)
    assert (pool.status, listed.status) == ("offline", "offline")

    # A heartbeat brings it back.
    assert await heartbeat(harness, token, agent_id) == []
    pool, agent, listed = await state()
    assert (agent.status, agent.last_seen) == ("online", int(harness.clock.now()))
    assert (pool.status, listed.status) == ("online", "online")


async def test_cancelling_queued_and_running_deployments(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    queued = await create_deployment(harness)
    harness.clock.advance(1)
    running = await create_deployment(harness)

    cancelled = await harness.stub.CancelDeployment(
        agent_pools_pb2.CancelDeploymentRequest(stack_id=STACK_ID, deployment_id=queued.id)
    )
    assert (cancelled.status, cancelled.message) == ("failed", "cancelled")
    assert cancelled.finished == int(harness.clock.now())

    job = await claim(harness, token, agent)
    assert job is not None and job.deployment.id == running.id  # the cancelled one is skipped
    assert await heartbeat(harness, token, agent) == []
    await harness.stub.CancelDeployment(
        agent_pools_pb2.CancelDeploymentRequest(stack_id=STACK_ID, deployment_id=running.id)
    )
    # Running work keeps running until its agent hears about it.
    assert (await get(harness, running.id)).status == "accepted"
    assert await heartbeat(harness, token, agent) == [running.id]
    assert await append(harness, token, agent, running.id) is True
    await finish(harness, token, agent, running.id, status="succeeded")
    done = await get(harness, running.id)
    assert (done.status, done.message) == ("failed", "cancelled")

    for finished in (queued.id, running.id):
        error = await rpc_error(
            harness.stub.CancelDeployment(
                agent_pools_pb2.CancelDeploymentRequest(stack_id=STACK_ID, deployment_id=finished)
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_cancelled_job_of_a_silent_agent_fails_instead_of_requeueing(
    harness: Harness,
) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    deployment = await create_deployment(harness)
    assert await claim(harness, token, agent) is not None
    await harness.stub.CancelDeployment(
        agent_pools_pb2.CancelDeploymentRequest(stack_id=STACK_ID, deployment_id=deployment.id)
    )
    harness.clock.advance(JOB_LEASE_SECONDS + 1)
    gone = await get(harness, deployment.id)
    assert (gone.status, gone.message, gone.attempts) == ("failed", "cancelled", 1)
    assert await claim(harness, token, agent) is None


async def test_secrets_are_stored_encrypted_and_decrypted_for_the_agent(harness: Harness) -> None:
    pool_id, token = await new_pool(harness)
    agent = await register(harness, token)
    settings = {
        "agentPoolID": pool_id,
        "operationContext": {"environmentVariables": {"A": "plain", "B": {"secret": "s3cret"}}},
    }
    stored = await harness.stub.UpdateDeploymentSettings(
        agent_pools_pb2.UpdateDeploymentSettingsRequest(
            stack_id=STACK_ID, organization=ORG, patch=orjson.dumps(settings)
        )
    )
    assert stored.agent_pool_id == pool_id
    assert b"s3cret" not in stored.settings
    environment = orjson.loads(stored.settings)["operationContext"]["environmentVariables"]
    assert environment["A"] == {"secret": "", "plaintext": "plain"}
    assert environment["B"]["secret"] == ""
    assert environment["B"]["ciphertext"]

    deployment = await create_deployment(harness)
    assert deployment.pool_id == pool_id
    assert b"s3cret" not in deployment.settings
    job = await claim(harness, token, agent)
    assert job is not None
    plain = orjson.loads(job.settings)
    assert plain["operationContext"]["environmentVariables"] == {"A": "plain", "B": "s3cret"}
    assert plain["agentPoolID"] == pool_id


async def test_lines_are_masked_when_stored_and_withheld_when_they_cannot_be(
    harness: Harness,
) -> None:
    pool_id, token = await new_pool(harness)
    agent = await register(harness, token)
    settings = {
        "agentPoolID": pool_id,
        "operationContext": {"environmentVariables": {"A": "plain", "B": {"secret": "s3cret"}}},
    }
    await harness.stub.UpdateDeploymentSettings(
        agent_pools_pb2.UpdateDeploymentSettingsRequest(
            stack_id=STACK_ID, organization=ORG, patch=orjson.dumps(settings)
        )
    )
    deployment = await create_deployment(harness)
    job = await claim(harness, token, agent)
    assert job is not None
    assert list(job.secret_values) == ["s3cret"]

    async def send(*lines: str) -> None:
        await harness.stub.AppendDeploymentLogs(
            agent_pools_pb2.AppendDeploymentLogsRequest(
                agent=creds(token, agent), deployment_id=deployment.id, lines=lines
            )
        )

    await send("B=s3cret A=plain")
    # The secrets service goes away: what cannot be masked is not stored.
    await harness.secrets_service.server.stop(0)
    await send("again s3cret", "and s3cret")
    await harness.stub.FinishDeployment(
        agent_pools_pb2.FinishDeploymentRequest(
            agent=creds(token, agent),
            deployment_id=deployment.id,
            status="failed",
            message="exit: s3cret",
        )
    )
    logs = await harness.stub.GetDeploymentLogs(
        agent_pools_pb2.GetDeploymentLogsRequest(stack_id=STACK_ID, deployment_id=deployment.id)
    )
    assert [line.text for line in logs.lines] == [
        "B=[secret] A=plain",
        "[2 log line(s) withheld: the job's secret values could not be read]",
    ]
    ended = await get(harness, deployment.id)
    assert ended.status == "failed"  # the job could still finish
    assert ended.message == "[withheld: the job's secret values could not be read to mask this]"


async def test_unknown_agents_and_tokens_are_refused(harness: Harness) -> None:
    _, token = await new_pool(harness)
    harness.clock.advance(1)
    _, other_token = await new_pool(harness, "other")
    agent = await register(harness, token)
    await create_deployment(harness)

    wrong = await rpc_error(
        harness.stub.RegisterAgent(agent_pools_pb2.RegisterAgentRequest(pool_token="pul-nope"))
    )
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    # An agent only speaks with its own pool's token.
    foreign = await rpc_error(claim(harness, other_token, agent))
    assert foreign.code() == grpc.StatusCode.UNAUTHENTICATED
    unknown = await rpc_error(heartbeat(harness, token, "no-such-agent"))
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    # The job is still there for the right agent.
    assert await claim(harness, token, agent) is not None


async def test_a_job_cancelled_on_its_last_attempt_ends_as_cancelled(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    deployment = await create_deployment(harness)
    for _ in range(MAX_ATTEMPTS):
        assert await claim(harness, token, agent) is not None
        harness.clock.advance(JOB_LEASE_SECONDS + 1)
        await heartbeat(harness, token, agent)
    assert (await get(harness, deployment.id)).status == "failed"

    second = await create_deployment(harness)
    for attempt in range(MAX_ATTEMPTS):
        assert await claim(harness, token, agent) is not None
        if attempt == MAX_ATTEMPTS - 1:
            await harness.stub.CancelDeployment(
                agent_pools_pb2.CancelDeploymentRequest(stack_id=STACK_ID, deployment_id=second.id)
            )
        harness.clock.advance(JOB_LEASE_SECONDS + 1)
        await heartbeat(harness, token, agent)
    ended = await get(harness, second.id)
    assert (ended.status, ended.message, ended.attempts) == ("failed", "cancelled", MAX_ATTEMPTS)


async def test_concurrent_creations_get_distinct_versions(harness: Harness) -> None:
    # No settings row exists for the stack: nothing but the unique version may serialise them.
    await new_pool(harness)
    created = await asyncio.gather(*(create_deployment(harness) for _ in range(10)))
    assert sorted(d.version for d in created) == list(range(1, 11))


async def new_user(harness: Harness, login: str) -> tuple[str, str]:
    user = await harness.identity.CreateUser(identity_pb2.CreateUserRequest(login=login))
    return user.id, user.login


async def acts_as(harness: Harness, token: str) -> str | grpc.StatusCode:
    """The login a token authenticates as, or the status refusing it."""
    try:
        principal = await harness.identity.Authenticate(
            identity_pb2.AuthenticateRequest(token=token)
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return principal.login


async def test_the_periodic_sweep_revokes_a_vanished_agents_token(harness: Harness) -> None:
    """No agent of the pool calls in again: the service itself gives the job up and revokes."""
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    user = await new_user(harness, "carol")
    deployment = await create_deployment(harness, user=user)
    job = await claim(harness, token, agent)
    assert job is not None and job.deployment.id == deployment.id
    assert job.access_token.startswith("pul-")
    assert await acts_as(harness, job.access_token) == "carol"

    harness.clock.advance(JOB_LEASE_SECONDS + 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while await acts_as(harness, job.access_token) == "carol":
        assert loop.time() < deadline, "the token was never revoked"
        await asyncio.sleep(SWEEP_SECONDS)
    assert await acts_as(harness, job.access_token) == grpc.StatusCode.UNAUTHENTICATED
    requeued = await get(harness, deployment.id)
    assert (requeued.status, requeued.agent_id, requeued.attempts) == ("not-started", "", 1)


async def test_a_job_waits_in_the_queue_while_identity_is_away(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    user = await new_user(harness, "carol")
    deployment = await create_deployment(harness, user=user)
    await harness.identity_service.stop(0)

    error = await rpc_error(claim(harness, token, agent))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    # As if never claimed: queued, no agent, no attempt used.
    waiting = await get(harness, deployment.id)
    assert (waiting.status, waiting.agent_id, waiting.attempts) == ("not-started", "", 0)
    assert waiting.started == 0


async def test_a_job_whose_requester_is_gone_fails(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    deployment = await create_deployment(harness, user=("no-such-id", "ghost"))
    assert await claim(harness, token, agent) is None
    failed = await get(harness, deployment.id)
    assert (failed.status, failed.message) == ("failed", REQUESTER_GONE)
    assert failed.finished == int(harness.clock.now())


async def test_purging_a_stack_revokes_its_running_jobs_tokens(harness: Harness) -> None:
    _, token = await new_pool(harness)
    agent = await register(harness, token)
    user = await new_user(harness, "carol")
    await create_deployment(harness, user=user)
    job = await claim(harness, token, agent)
    assert job is not None and await acts_as(harness, job.access_token) == "carol"
    await harness.stub.PurgeStack(agent_pools_pb2.PurgeDeploymentsRequest(stack_id=STACK_ID))
    assert await acts_as(harness, job.access_token) == grpc.StatusCode.UNAUTHENTICATED


async def test_a_job_identity_refuses_a_token_for_fails_instead_of_looping(
    any_settings: Settings,
) -> None:
    """Identity's clock is far ahead (a skewed host): the token's expiry is already past, which
    asking again would not change, so the job ends with the reason."""
    clock = ManualClock()
    secrets = await secrets_server.start(any_settings, host="127.0.0.1", port=0)
    skewed = ManualClock(clock.now() + 10 * 24 * 60 * 60)
    identity = await identity_server.start(any_settings, host="127.0.0.1", port=0, clock=skewed)
    settings = any_settings.model_copy(
        update={
            "secrets_address": f"127.0.0.1:{secrets.port}",
            "identity_address": f"127.0.0.1:{identity.port}",
        }
    )
    service = await agent_pools_server.start(settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(any_settings, f"127.0.0.1:{service.port}")
    identity_channel = signed_channel(any_settings, f"127.0.0.1:{identity.port}")
    try:
        harness = Harness(
            agent_pools_pb2_grpc.AgentPoolsServiceStub(channel),
            clock,
            identity_pb2_grpc.IdentityServiceStub(identity_channel),
            identity,
            secrets,
        )
        _, token = await new_pool(harness)
        agent = await register(harness, token)
        deployment = await create_deployment(harness, user=await new_user(harness, "carol"))
        assert await claim(harness, token, agent) is None
        failed = await get(harness, deployment.id)
        assert failed.status == "failed"
        assert failed.message.startswith("no access token could be made for this deployment: ")
        assert "expires" in failed.message
    finally:
        await identity_channel.close(None)
        await channel.close(None)
        await service.stop(0)
        await identity.stop(0)
        await secrets.stop(0)
