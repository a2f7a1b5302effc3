"""Schedules run by a real `cairn agent` on a manual clock: drift detection whose command
emulates `pulumi refresh --preview-only --expect-no-changes` (exit code and output), with and
without remediation, and a TTL stack destroyed and deleted at expiry."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.config import Settings
from tests import waiting
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn
from tests.gateway.test_agent_e2e import start_agent, stop_agent

S = "/api/stacks/admin/web/dev"
POOLS = "/api/orgs/admin/agent-pools"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NEXT_HOUR = 1_700_002_800.0  # 23:00:00
INTERVAL = 0.05
WAIT_SECONDS = 30.0

# What the job runs for each operation, against the backend as the CLI would with the token
# and URL the agent hands it: a drift check is a refresh preview (an update of kind refresh,
# dry run) that finds drift while the flag file exists (it prints the preview's summary and
# the CLI's --expect-no-changes error and exits 255); remediation is an update that removes
# the flag; a destroy succeeds.
JOB = """\
import json, os, pathlib, sys, urllib.request

flag = pathlib.Path(sys.argv[1])
operation = os.environ["PULUMI_OPERATION"]
backend = os.environ["PULUMI_BACKEND_URL"]
stack = "/api/stacks/" + os.environ["PULUMI_STACK"]
token = "token " + os.environ["PULUMI_ACCESS_TOKEN"]


def call(path, body, authorization):
    request = urllib.request.Request(
        backend + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": authorization,
            "Accept": "application/vnd.pulumi+8",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def run(kind, dry_run, result):
    program = {
        "name": "web", "runtime": "python", "main": "", "description": "",
        "options": {"dryRun": dry_run}, "config": {},
        "metadata": {"message": operation, "environment": {}},
    }
    update_id = call(stack + "/" + kind, program, token)["updateID"]
    started = call(stack + "/" + kind + "/" + update_id, {"tags": {}}, token)
    call(
        stack + "/" + kind + "/" + update_id + "/complete",
        {"status": result},
        "update-token " + started["token"],
    )
    return update_id


if operation == "detect-drift":
    drifted = flag.exists()
    print("made " + run("refresh", True, "failed" if drifted else "succeeded"))
    print("Resources:")
    if drifted:
        print("    ~ 2 to update")
        print("    - 1 to delete")
        print("    4 unchanged")
        print("error: no changes were expected but changes occurred")
        sys.exit(255)
    print("    7 unchanged")
elif operation == "remediate-drift":
    print("made " + run("update", False, "succeeded"))
    flag.unlink(missing_ok=True)
    print("remediated")
elif operation == "destroy":
    print("made " + run("destroy", False, "succeeded"))
    print("destroyed")
else:
    print("unexpected " + operation)
    sys.exit(3)
"""


def job_command(tmp_path: Path, flag: Path) -> str:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    return f"{sys.executable} {script} {flag}"


async def made_update(cairn: Cairn, deployment_id: str) -> str:
    """The update id the job printed it made."""
    logs = await cairn.json("GET", f"{S}/deployments/{deployment_id}/logs")
    (made,) = [line["line"][5:] for line in logs["lines"] if line["line"].startswith("made ")]
    return str(made)


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
    return await waiting.eventually(check, what, seconds=WAIT_SECONDS, interval=INTERVAL)


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
    agent = await start_agent(cairn, token, job_command(tmp_path, flag), tmp_path / "work")

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
        # The run names the refresh preview its job made, and that update its deployment.
        detect_update = await made_update(cairn, clean["deploymentId"])
        assert clean["detectUpdate"]["updateId"] == detect_update
        (made,) = await cairn.json("GET", f"{S}/deployments/{clean['deploymentId']}/updates")
        assert (made["updateID"], made["info"]["kind"]) == (detect_update, "refresh")
        assert made["deploymentId"] == clean["deploymentId"]
        detection = await cairn.json("GET", f"{S}/deployments/{clean['deploymentId']}")
        assert (detection["initiator"], detection["pulumiOperation"]) == (
            "drift-detection",
            "detect-drift",
        )
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

        done = await eventually(remediated, "the remediation")
        remediation = await cairn.json("GET", f"{S}/deployments/{remediation_id}")
        assert (remediation["pulumiOperation"], remediation["initiator"]) == (
            "remediate-drift",
            "drift-remediation",
        )
        logs = await cairn.json("GET", f"{S}/deployments/{remediation_id}/logs")
        assert logs["lines"][-1]["line"] == "remediated"
        # Both halves of the run name the updates their jobs made.
        assert done["detectUpdate"]["updateId"] == await made_update(cairn, drifted["deploymentId"])
        fix = await made_update(cairn, remediation_id)
        assert done["remediateUpdate"]["updateId"] == fix
        assert [u["updateID"] for u in remediation["updates"]] == [fix]
        listed_run = next(run for run in await runs() if run["id"] == drifted["id"])
        assert listed_run["remediateUpdate"]["updateId"] == fix
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
    await drift_runs_parse_in_the_sdk(cairn, drifted["id"], done)


async def drift_runs_parse_in_the_sdk(cairn: Cairn, run_id: str, expected: dict[str, Any]) -> None:
    """The official SDK reads the remediated run, with the updates both jobs made."""
    pytest.importorskip("pulumi_cloud_sdk", reason="pulumi-cloud-sdk is not installed")
    from pulumi_cloud_sdk.apis.deployments_api_ import DeploymentsApi

    from tests.gateway.sdk import SdkCaller

    sdk = SdkCaller(cairn)
    api = DeploymentsApi(sdk.client)
    run = await sdk(api.get_drift_run, "admin", "web", "dev", run_id)
    assert run.drift_detected is True
    assert run.detect_update.update_id == expected["detectUpdate"]["updateId"]
    assert run.detect_update.resource_changes == {"update": 2, "delete": 1}
    assert run.remediate_update.update_id == expected["remediateUpdate"]["updateId"]
    assert run.remediate_update.status == "succeeded"
    listed = await sdk(api.list_drift_runs, "admin", "web", "dev")
    assert [r.id for r in listed.drift_runs][1] == run_id
    assert listed.drift_runs[1].remediate_update.update_id == run.remediate_update.update_id


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
        cairn, token, job_command(tmp_path, tmp_path / "x"), tmp_path / "work"
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


async def test_a_ttl_stack_without_delete_after_destroy_is_destroyed_and_kept(
    clocked: Cairn, clock: ManualClock, tmp_path: Path
) -> None:
    cairn = clocked
    token = await pool_token(cairn)
    ttl = await cairn.json(
        "POST",
        f"{S}/deployments/ttl/schedules",
        body={"timestamp": "2023-11-14T22:23:20Z", "deleteAfterDestroy": False},
    )
    agent = await start_agent(
        cairn, token, job_command(tmp_path, tmp_path / "x"), tmp_path / "work"
    )
    try:
        clock.current = START + 601

        async def destroyed() -> dict[str, Any] | None:
            listed = (await cairn.json("GET", f"{S}/deployments"))["deployments"]
            done = [d for d in listed if d["status"] == "succeeded"]
            return done[0] if done else None

        destroy = await eventually(destroyed, "the destroy")
        assert (destroy["pulumiOperation"], destroy["initiator"]) == ("destroy", "ttl")
        made = await made_update(cairn, destroy["id"])
        assert [u["updateID"] for u in destroy["updates"]] == [made]
        await asyncio.sleep(INTERVAL * 10)
    finally:
        code = await stop_agent(agent)
    assert code == 0, (await agent.stderr.read()).decode()
    # The stack stays, and the one-time schedule is done.
    await cairn.json("GET", S)
    history = await cairn.json("GET", f"{S}/deployments/schedules/{ttl['id']}/history")
    assert [e["result"] for e in history["scheduleHistoryEvents"]] == ["succeeded"]
    (listed,) = (await cairn.json("GET", f"{S}/deployments"))["deployments"]
    assert listed["id"] == destroy["id"]
