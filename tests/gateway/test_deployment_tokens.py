"""A claimed deployment's job acts as the user who queued it, with a short-lived token that
stops working when the deployment ends, is cancelled or is given up."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.agent_pools.domain import JOB_LEASE_SECONDS
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, AiohttpClient, Cairn, running_cairn
from tests.gateway.test_agent_pools import (
    append_logs,
    claim,
    create_pool,
    deployment,
    error_of,
    finish,
    heartbeat,
    register,
)

STACKS = "/api/stacks/admin/web"
ABANDONED = "the agent running this deployment stopped responding"
TTL_SECONDS = 2 * 60 * 60


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Cairn, ManualClock]]:
    """The system on SQLite with a clock the test moves."""
    clock = ManualClock()
    async for running in running_cairn(settings, aiohttp_client, clock=clock):
        yield running, clock


async def status(cairn: Cairn, method: str, path: str, token: str, body: Any = None) -> int:
    response = await cairn.call(method, path, token=token, body=body)
    await response.read()
    return response.status


async def login_of(cairn: Cairn, token: str) -> str | int:
    """Who the token acts as, or the status refusing it."""
    response = await cairn.call("GET", "/api/user", token=token)
    if response.status != 200:
        await response.read()
        return response.status
    login: str = (await response.json())["githubLogin"]
    return login


async def queue(cairn: Cairn, stack: str = "dev", token: str = ADMIN_TOKEN) -> str:
    created = await cairn.json(
        "POST",
        f"{STACKS}/{stack}/deployments",
        token=token,
        body={"operation": "update", "inheritSettings": True},
    )
    deployment_id: str = created["id"]
    return deployment_id


async def claimed_job(cairn: Cairn, pool_token: str, agent_id: str) -> dict[str, Any]:
    job = await claim(cairn, pool_token, agent_id)
    assert job is not None
    return job


def job_token(job: dict[str, Any]) -> str:
    environment = job["environment"]
    assert set(environment) == {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL"}
    token: str = environment["PULUMI_ACCESS_TOKEN"]
    assert token.startswith("pul-") and token not in (ADMIN_TOKEN,)
    return token


async def personal_tokens(cairn: Cairn, token: str = ADMIN_TOKEN) -> list[dict[str, Any]]:
    listing = await cairn.json("GET", "/api/user/tokens?filter=all", token=token)
    tokens: list[dict[str, Any]] = listing["tokens"]
    return tokens


async def test_a_job_acts_as_its_requester_until_the_deployment_ends(any_cairn: Cairn) -> None:
    cairn = any_cairn
    for stack in ("dev", "prod"):
        await cairn.json("POST", STACKS, body={"stackName": stack})
    mo = await cairn.new_user("mo", org_role=("admin", MEMBER))
    # Members read every stack; mo writes dev only, through a team.
    await cairn.json("PATCH", "/api/orgs/admin", body={"setDefaultStackPermission": 101})
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "deployers"})
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/deployers",
        200,
        body={
            "memberAction": "add",
            "member": "mo",
            "addStackPermission": {"projectName": "web", "stackName": "dev", "permission": 102},
        },
    )
    _, pool_token = await create_pool(cairn, "builders")
    agent_id = await register(cairn, pool_token)

    claimed_from = int(time.time())
    deployment_id = await queue(cairn, "dev", token=mo)
    job = await claimed_job(cairn, pool_token, agent_id)
    assert job["deploymentID"] == deployment_id
    token = job_token(job)
    backend = str(cairn.client.make_url("")).rstrip("/")
    assert job["environment"]["PULUMI_BACKEND_URL"] == backend

    # The token is mo's, with exactly mo's permissions.
    assert await login_of(cairn, token) == "mo"
    dev, prod = f"{STACKS}/dev", f"{STACKS}/prod"
    assert await status(cairn, "PATCH", f"{dev}/tags", token, {"by": "job"}) == 204
    assert await status(cairn, "PATCH", f"{prod}/tags", token, {"by": "job"}) == 403
    assert await status(cairn, "GET", prod, token) == 200
    assert await status(cairn, "DELETE", dev, token) == 403
    assert await status(cairn, "GET", "/api/orgs/admin/agent-pools", token) == 403
    assert (await cairn.json("GET", dev))["tags"]["by"] == "job"
    assert "by" not in (await cairn.json("GET", prod))["tags"]

    # Listed among mo's tokens while the job runs, described by its deployment.
    (listed,) = [t for t in await personal_tokens(cairn, mo) if t["name"] != "tests"]
    assert listed["description"] == f"deployment {deployment_id}"
    assert listed["type"] == "personal"
    assert claimed_from + TTL_SECONDS <= listed["expires"] <= int(time.time()) + TTL_SECONDS
    assert listed["revoked"] == 0
    # Nobody else ever sees the token: not the deployment, its logs nor the listing.
    await append_logs(cairn, pool_token, agent_id, deployment_id, ["working"])
    for path in (
        f"{dev}/deployments/{deployment_id}",
        f"{dev}/deployments/{deployment_id}/logs",
        f"{dev}/deployments",
        "/api/user/tokens?filter=all",
    ):
        text = await (await cairn.call("GET", path)).text()
        assert token not in text

    await finish(cairn, pool_token, agent_id, deployment_id, "succeeded")
    assert await login_of(cairn, token) == 401
    assert await status(cairn, "PATCH", f"{dev}/tags", token, {"by": "late"}) == 401
    assert (await cairn.json("GET", dev))["tags"]["by"] == "job"
    (revoked,) = [t for t in await personal_tokens(cairn, mo) if t["name"] != "tests"]
    assert revoked["id"] == listed["id"] and revoked["revoked"] > 0
    assert (await deployment(cairn, deployment_id))["status"] == "succeeded"


async def test_cancelling_a_running_deployment_revokes_its_token_at_once(cairn: Cairn) -> None:
    await cairn.json("POST", STACKS, body={"stackName": "dev"})
    _, pool_token = await create_pool(cairn, "builders")
    agent_id = await register(cairn, pool_token)
    before = await personal_tokens(cairn)

    # Work cancelled before any agent took it never gets a token.
    queued = await queue(cairn)
    await cairn.json("POST", f"{STACKS}/dev/deployments/{queued}/cancel", 204)
    assert await claim(cairn, pool_token, agent_id) is None
    assert await personal_tokens(cairn) == before

    running = await queue(cairn)
    token = job_token(await claimed_job(cairn, pool_token, agent_id))
    assert await login_of(cairn, token) == "admin"
    await cairn.json("POST", f"{STACKS}/dev/deployments/{running}/cancel", 204)
    assert await login_of(cairn, token) == 401
    # The agent learns of the cancellation and ends the job; the token stays dead.
    assert await heartbeat(cairn, pool_token, agent_id) == [running]
    await finish(cairn, pool_token, agent_id, running, "succeeded")
    ended = await deployment(cairn, running)
    assert (ended["status"], ended["message"]) == ("failed", "cancelled")
    assert await login_of(cairn, token) == 401
    minted = [t for t in await personal_tokens(cairn) if t not in before]
    assert [(t["description"], t["revoked"] > 0) for t in minted] == [
        (f"deployment {running}", True)
    ]


async def test_a_silent_agents_job_loses_its_token(clocked: tuple[Cairn, ManualClock]) -> None:
    cairn, clock = clocked
    await cairn.json("POST", STACKS, body={"stackName": "dev"})
    _, pool_token = await create_pool(cairn, "builders")
    silent = await register(cairn, pool_token, "runner-1")
    alive = await register(cairn, pool_token, "runner-2")

    deployment_id = await queue(cairn)
    first = job_token(await claimed_job(cairn, pool_token, silent))
    assert await login_of(cairn, first) == "admin"

    # The first agent goes silent: the job is requeued and goes to the other agent with a
    # new token; the old one is dead.
    clock.advance(JOB_LEASE_SECONDS + 1)
    job = await claimed_job(cairn, pool_token, alive)
    assert job["deploymentID"] == deployment_id
    second = job_token(job)
    assert second != first
    assert await login_of(cairn, first) == 401
    assert await login_of(cairn, second) == "admin"
    await error_of(
        cairn,
        "POST",
        f"/api/agents/{silent}/deployments/{deployment_id}/finish",
        409,
        token=pool_token,
        body={"status": "succeeded"},
    )

    # The second agent goes silent too, on the last attempt: the deployment fails.
    clock.advance(JOB_LEASE_SECONDS + 1)
    assert await heartbeat(cairn, pool_token, silent) == []
    assert await login_of(cairn, second) == 401
    failed = await deployment(cairn, deployment_id)
    assert (failed["status"], failed["message"]) == ("failed", ABANDONED)
    minted = [t for t in await personal_tokens(cairn) if t["description"].startswith("deploy")]
    assert len(minted) == 2 and all(t["revoked"] > 0 for t in minted)


async def test_settings_with_their_own_token_keep_it(cairn: Cairn) -> None:
    await cairn.json("POST", STACKS, body={"stackName": "dev"})
    _, pool_token = await create_pool(cairn, "builders")
    agent_id = await register(cairn, pool_token)
    variables = {
        "PULUMI_ACCESS_TOKEN": {"secret": "pul-theirs"},
        "PULUMI_BACKEND_URL": "https://elsewhere.example",
    }
    await cairn.json(
        "POST",
        f"{STACKS}/dev/deployments/settings",
        body={"operationContext": {"environmentVariables": variables}},
    )
    before = await personal_tokens(cairn)

    deployment_id = await queue(cairn)
    job = await claimed_job(cairn, pool_token, agent_id)
    assert job["deploymentID"] == deployment_id
    assert job["environment"] == {}
    assert job["settings"]["operationContext"]["environmentVariables"] == {
        "PULUMI_ACCESS_TOKEN": "pul-theirs",
        "PULUMI_BACKEND_URL": "https://elsewhere.example",
    }
    await finish(cairn, pool_token, agent_id, deployment_id, "succeeded")
    assert await personal_tokens(cairn) == before


async def test_work_queued_by_an_organization_token_gets_no_token(cairn: Cairn) -> None:
    """A machine token has no user to act for (its login is the organization's name, which
    is also the admin's login here: nothing must be minted for that user)."""
    await cairn.json("POST", STACKS, body={"stackName": "dev"})
    _, pool_token = await create_pool(cairn, "builders")
    agent_id = await register(cairn, pool_token)
    created = await cairn.json("POST", "/api/orgs/admin/tokens", body={"name": "ci"})
    before = await personal_tokens(cairn)

    deployment_id = await queue(cairn, token=created["tokenValue"])
    job = await claimed_job(cairn, pool_token, agent_id)
    assert (job["deploymentID"], job["environment"]) == (deployment_id, {})
    await finish(cairn, pool_token, agent_id, deployment_id, "succeeded")
    assert await personal_tokens(cairn) == before
