"""Schedules run by a real `cairn agent` on a manual clock: drift detection whose command
emulates `pulumi refresh --preview-only --expect-no-changes` (exit code and output), with and
without remediation, and a TTL stack destroyed and deleted at expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.config import Settings
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn
from tests.gateway.test_agent_e2e import start_agent, stop_agent

S = "/api/stacks/admin/web/dev"
POOLS = "/api/orgs/admin/agent-pools"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NEXT_HOUR = 1_700_002_800.0  # 23:00:00
INTERVAL = 0.05
WAIT_SECONDS = 30.0

# What the job runs for each operation: a drift check finds drift while the flag file exists
# (printing the preview's summary and the CLI's --expect-no-changes error, exit code 255);
# remediation removes the flag; a destroy succeeds.
DRIFT_COMMAND = """
case "$PULUMI_OPERATION" in
  detect-drift)
    if [ -f "{flag}" ]; then
      echo "Resources:"
      echo "    ~ 2 to update"
      echo "    - 1 to delete"
      echo "    4 unchanged"
      echo "error: no changes were expected but changes occurred"
      exit 255
    fi
    echo "Resources:"
    echo "    7 unchanged"
    ;;
  remediate-drift) echo "remediated"; rm -f "{flag}" ;;
  destroy) echo "destroyed" ;;
  *) echo "unexpected $PULUMI_OPERATION"; exit 3 ;;
esac
"""


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient, clock: ManualClock
) -> AsyncIterator[Cairn]:
    fast = settings.model_copy(update={"schedule_interval_seconds": INTERVAL})
    async for running in running_cairn(fast, aiohttp_client, clock=clock):
        await running.json("POST", POOLS, body={"name": "runners", "description": "ci"})
        await running.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
        yield running


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(INTERVAL)


async def pool_token(cairn: Cairn) -> str:
    """A fresh token of the pool (the pool is made by the fixture; tokens show once)."""
    created = await cairn.json("POST", POOLS, body={"name": "drift", "description": ""})
    token: str = created["tokenValue"]
    settings = {"agentPoolID": created["id"]}
    await cairn.json("POST", f"{S}/deployments/settings", body=settings)
    return token


async def test_scheduled_drift_detection_records_drift_and_remediates_when_asked(
    clocked: Cairn, clock: ManualClock, tmp_path: Path
) -> None:
    cairn = clocked
    flag = tmp_path / "drifted"
    token = await pool_token(cairn)
    schedule = await cairn.json(
        "POST",
        f"{S}/deployments/drift/schedules",
        body={"scheduleCron": "0 * * * *", "autoRemediate": True},
    )
    agent = await start_agent(cairn, token, DRIFT_COMMAND.format(flag=flag), tmp_path / "work")

    async def runs() -> list[dict[str, Any]]:
        listed = await cairn.json("GET", f"{S}/drift/runs")
        return list(listed["driftRuns"])

    async def run_ended(count: int) -> dict[str, Any] | None:
        """The newest run, once `count` runs exist and the newest one was followed up."""
        found = await runs()
        if len(found) < count:
            return None
        newest = await cairn.json("GET", f"{S}/drift/runs/{found[0]['id']}")
        return newest if "detectUpdate" in newest else None

    try:
        # 1. No drift: the refresh preview succeeds.
        clock.current = NEXT_HOUR + 1
        clean = await eventually(lambda: run_ended(1), "the first drift run")
        assert (clean["status"], clean["driftDetected"]) == ("succeeded", False)
        assert clean["detectUpdate"]["resourceChanges"] == {}
        assert "remediateUpdate" not in clean
        status = await cairn.json("GET", f"{S}/drift/status")
        assert status == {
            "driftDetected": False,
            "latestDriftRun": clean["id"],
            "runInProgress": False,
        }

        # 2. Drift, remediated: a remediation deployment is queued and run.
        flag.write_text("yes")
        clock.current = NEXT_HOUR + 3600 + 1
        drifted = await eventually(lambda: run_ended(2), "the drifted run")
        assert (drifted["status"], drifted["driftDetected"]) == ("failed", True)
        assert drifted["detectUpdate"]["resourceChanges"] == {"update": 2, "delete": 1}
        remediation_id = drifted["remediationDeploymentId"]

        async def remediated() -> dict[str, Any] | None:
            run = await cairn.json("GET", f"{S}/drift/runs/{drifted['id']}")
            done = run["remediateUpdate"]["status"] == "succeeded"
            return run if done else None

        await eventually(remediated, "the remediation")
        remediation = await cairn.json("GET", f"{S}/deployments/{remediation_id}")
        assert remediation["pulumiOperation"] == "remediate-drift"
        logs = await cairn.json("GET", f"{S}/deployments/{remediation_id}/logs")
        assert [line["line"] for line in logs["lines"]] == ["remediated"]
        assert not flag.exists()
        status = await cairn.json("GET", f"{S}/drift/status")
        assert (status["driftDetected"], status["latestDriftRun"]) == (True, drifted["id"])

        # 3. Drift again, remediation not asked for: recorded, nothing queued.
        await cairn.json(
            "POST",
            f"{S}/deployments/drift/schedules/{schedule['id']}",
            body={"scheduleCron": "0 * * * *", "autoRemediate": False},
        )
        flag.write_text("yes")
        clock.current = NEXT_HOUR + 7200 + 1
        again = await eventually(lambda: run_ended(3), "the third drift run")
        assert again["driftDetected"] is True and "remediateUpdate" not in again
        await asyncio.sleep(INTERVAL * 10)
        listing = await cairn.json("GET", f"{S}/deployments")
        operations = sorted(d["pulumiOperation"] for d in listing["deployments"])
        assert operations == ["detect-drift"] * 3 + ["remediate-drift"]
        history = await cairn.json("GET", f"{S}/deployments/schedules/{schedule['id']}/history")
        assert [e["result"] for e in history["scheduleHistoryEvents"]] == ["succeeded"] * 3
    finally:
        code = await stop_agent(agent)
    assert code == 0, (await agent.stderr.read()).decode()


async def test_a_ttl_stack_is_destroyed_and_deleted_at_expiry(
    clocked: Cairn, clock: ManualClock, tmp_path: Path
) -> None:
    cairn = clocked
    token = await pool_token(cairn)
    expiry = "2023-11-14T22:23:20Z"  # START + 600
    ttl = await cairn.json(
        "POST",
        f"{S}/deployments/ttl/schedules",
        body={"timestamp": expiry, "deleteAfterDestroy": True},
    )
    assert ttl["scheduleOnce"] == expiry
    agent = await start_agent(
        cairn, token, DRIFT_COMMAND.format(flag=tmp_path / "x"), tmp_path / "work"
    )
    try:
        await asyncio.sleep(INTERVAL * 10)
        # Not expired yet: nothing was queued.
        assert (await cairn.json("GET", f"{S}/deployments"))["deployments"] == []
        clock.current = START + 601

        async def stack_gone() -> bool:
            response = await cairn.call("GET", S)
            return response.status == 404

        await eventually(stack_gone, "the stack's deletion")
    finally:
        code = await stop_agent(agent)
    assert code == 0, (await agent.stderr.read()).decode()
    # Its deployments and schedules went with it.
    await cairn.json("GET", f"{S}/deployments/schedules", 404)
