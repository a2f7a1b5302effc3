"""Schedules, drift detection, TTL stacks and paused deployments through the official Python
SDK (`pulumi-cloud-sdk`), with the whole system on a manual clock.

Every SDK call parses the answer into the SDK's models (which refuse a missing required
field); the values are checked as well. Bad input is sent as REST and must leave nothing.
"""

from __future__ import annotations

import urllib.error
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

try:
    from pulumi_cloud_sdk.apis.deployments_api_ import DeploymentsApi
    from pulumi_cloud_sdk.apis.workflows_api_ import WorkflowsApi
    from pulumi_cloud_sdk.models import (
        CreateDeploymentRequest,
        CreateOrgAgentPoolRequest,
        CreateScheduledDeploymentRequest,
        CreateScheduledDriftDeploymentRequest,
        CreateScheduledTTLDeploymentRequest,
        JobStatus,
        PulumiOperation,
        ScheduledActionKind,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from services.common.clock import ManualClock
from services.common.config import Settings
from tests import waiting
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn
from tests.gateway.sdk import SdkCaller

ORG, PROJECT, STACK = "admin", "web", "dev"
S = f"/api/stacks/{ORG}/{PROJECT}/{STACK}"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
INTERVAL = 0.02
WAIT_SECONDS = 10.0


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        self.workflows = WorkflowsApi(self.client)
        self.deployments = DeploymentsApi(self.client)


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient, clock: ManualClock
) -> AsyncIterator[Cairn]:
    fast = settings.model_copy(update={"schedule_interval_seconds": INTERVAL})
    async for running in running_cairn(fast, aiohttp_client, clock=clock):
        yield running


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    return await waiting.eventually(check, what, seconds=WAIT_SECONDS, interval=INTERVAL)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


async def test_schedules_drift_ttl_and_pauses_through_the_sdk(
    clocked: Cairn, clock: ManualClock
) -> None:
    cairn = clocked
    sdk = Sdk(cairn)
    dep = sdk.deployments
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})
    pool = await sdk(
        sdk.workflows.create_org_agent_pool,
        ORG,
        CreateOrgAgentPoolRequest(name="r", description=""),
    )

    # -- a cron schedule ------------------------------------------------------------------
    created = await sdk(
        dep.create_scheduled_deployment,
        ORG,
        PROJECT,
        STACK,
        CreateScheduledDeploymentRequest(
            schedule_cron="*/5 * * * *",
            request=CreateDeploymentRequest(
                operation=PulumiOperation.Refresh, inherit_settings=True
            ),
        ),
    )
    assert created.kind == ScheduledActionKind.Deployment
    assert (created.schedule_cron, created.schedule_once) == ("*/5 * * * *", None)
    assert created.next_execution == "2023-11-14T22:15:00Z"
    assert created.last_executed == "0001-01-01T00:00:00Z"
    assert created.org_id == ORG and not created.paused
    assert created.definition["request"]["operation"] == "refresh"
    assert created.definition["scheduleKind"] == "deployment"

    listed = await sdk(dep.list_scheduled_deployment, ORG, PROJECT, STACK)
    assert [s.id for s in listed.schedules] == [created.id]
    read = await sdk(dep.read_scheduled_deployment, ORG, PROJECT, STACK, created.id)
    assert read.next_execution == created.next_execution

    await sdk(dep.pause_scheduled_deployment, ORG, PROJECT, STACK, created.id)
    assert (await sdk(dep.read_scheduled_deployment, ORG, PROJECT, STACK, created.id)).paused
    await sdk(dep.resume_scheduled_deployment, ORG, PROJECT, STACK, created.id)
    assert not (await sdk(dep.read_scheduled_deployment, ORG, PROJECT, STACK, created.id)).paused

    clock.current = START + 101  # past 22:15:00

    async def fired() -> Any:
        events = await sdk(dep.list_scheduled_deployment_history, ORG, PROJECT, STACK, created.id)
        # A firing is listed from its claim on; it is carried out once its deployment is queued.
        return [event for event in events.schedule_history_events if event.result != "claimed"]

    (event,) = await eventually(fired, "the cron firing")
    assert (event.scheduled_action_id, event.version, event.result) == (
        created.id,
        1,
        "succeeded",
    )
    assert event.executed == "2023-11-14T22:15:01Z"
    listing = await sdk(dep.list_stack_deployments_handler_v2, ORG, PROJECT, STACK)
    (queued,) = listing.deployments
    assert (queued.version, queued.pulumi_operation) == (1, "refresh")
    assert (queued.initiator, queued.requested_by.github_login) == ("schedule", "admin")
    status = await sdk(dep.get_deployments_status, queued.id)
    assert status == JobStatus.NotStarted

    # Changing it into a one-time schedule.
    once = at(START + 3600)
    updated = await sdk(
        dep.update_scheduled_deployment,
        ORG,
        PROJECT,
        STACK,
        created.id,
        CreateScheduledDeploymentRequest(schedule_once=once, request=CreateDeploymentRequest()),
    )
    assert (updated.schedule_cron, updated.schedule_once) == (None, "2023-11-14T23:13:20Z")
    assert updated.next_execution == "2023-11-14T23:13:20Z"

    # -- drift ------------------------------------------------------------------------------
    drift = await sdk(
        dep.create_scheduled_drift_deployment,
        ORG,
        PROJECT,
        STACK,
        CreateScheduledDriftDeploymentRequest(schedule_cron="0 * * * *", auto_remediate=False),
    )
    assert drift.definition["request"]["operation"] == "detect-drift"
    assert drift.definition["autoRemediate"] is False
    drift = await sdk(
        dep.update_scheduled_drift_deployment,
        ORG,
        PROJECT,
        STACK,
        drift.id,
        CreateScheduledDriftDeploymentRequest(schedule_cron="30 * * * *", auto_remediate=True),
    )
    assert (drift.schedule_cron, drift.definition["autoRemediate"]) == ("30 * * * *", True)
    assert drift.next_execution == "2023-11-14T22:30:00Z"
    status_before = await sdk(dep.get_stack_drift_status, ORG, PROJECT, STACK)
    assert (status_before.drift_detected, status_before.latest_drift_run) == (False, "")
    assert (await sdk(dep.list_drift_runs, ORG, PROJECT, STACK)).drift_runs == []

    clock.current = START + 1000  # past 22:30:00

    async def drift_runs() -> Any:
        return (await sdk(dep.list_drift_runs, ORG, PROJECT, STACK)).drift_runs

    (run,) = await eventually(drift_runs, "the drift run")
    assert (run.status, run.drift_detected, run.deployment_version) == (
        JobStatus.NotStarted,
        False,
        2,
    )
    single = await sdk(dep.get_drift_run, ORG, PROJECT, STACK, run.id)
    assert (single.id, single.deployment_id) == (run.id, run.deployment_id)
    assert single.detect_update is None
    detection = await sdk(dep.get_deployment, ORG, PROJECT, STACK, run.deployment_id)
    assert (detection.initiator, detection.pulumi_operation) == (
        "drift-detection",
        PulumiOperation.DetectDrift,
    )
    drift_status = await sdk(dep.get_stack_drift_status, ORG, PROJECT, STACK)
    assert (drift_status.latest_drift_run, drift_status.run_in_progress) == (run.id, True)

    # -- TTL --------------------------------------------------------------------------------
    ttl = await sdk(
        dep.create_scheduled_ttl_deployment,
        ORG,
        PROJECT,
        STACK,
        CreateScheduledTTLDeploymentRequest(
            timestamp=at(START + 86_400), delete_after_destroy=False
        ),
    )
    assert ttl.schedule_once == "2023-11-15T22:13:20Z"
    assert ttl.definition["request"]["operation"] == "destroy"
    ttl = await sdk(
        dep.update_scheduled_ttl_deployment,
        ORG,
        PROJECT,
        STACK,
        ttl.id,
        CreateScheduledTTLDeploymentRequest(
            timestamp=at(START + 7 * 86_400), delete_after_destroy=True
        ),
    )
    assert ttl.next_execution == "2023-11-21T22:13:20Z"
    assert ttl.definition["deleteAfterDestroy"] is True
    assert ttl.definition["timestamp"] == "2023-11-21T22:13:20Z"

    # -- pausing deployments ----------------------------------------------------------------
    metadata = await sdk(dep.stack_deployments_metadata, ORG, PROJECT, STACK)
    assert (metadata.paused, metadata.stack_paused, metadata.has_schedules) == (
        False,
        False,
        True,
    )
    assert metadata.drift.latest_drift_run == run.id
    await sdk(dep.pause_stack_deployments, ORG, PROJECT, STACK)
    metadata = await sdk(dep.stack_deployments_metadata, ORG, PROJECT, STACK)
    assert (metadata.paused, metadata.stack_paused, metadata.organization_paused) == (
        True,
        True,
        False,
    )
    # The queued deployments say they are held.
    held = await sdk(dep.list_stack_deployments_handler_v2, ORG, PROJECT, STACK)
    assert [(d.status, d.paused) for d in held.deployments] == [(JobStatus.NotStarted, True)] * 2
    assert (await cairn.json("GET", f"{S}/deployments/{queued.id}"))["paused"] is True
    await sdk(dep.resume_stack_deployments, ORG, PROJECT, STACK)
    released = await sdk(dep.list_org_deployments, ORG)
    assert [d.paused for d in released.deployments] == [False, False]
    await sdk(dep.pause_org_deployments, ORG)
    held = await sdk(dep.list_org_deployments, ORG)
    assert [d.paused for d in held.deployments] == [True, True]
    org = await sdk(dep.org_deployments_metadata, ORG)
    assert org.paused and org.concurrency == 0
    assert (org.deployment_counts.not_started, org.deployment_counts.total) == (2, 2)
    metadata = await sdk(dep.stack_deployments_metadata, ORG, PROJECT, STACK)
    assert (metadata.paused, metadata.stack_paused, metadata.organization_paused) == (
        True,
        False,
        True,
    )
    await sdk(dep.resume_org_deployments, ORG)
    assert not (await sdk(dep.org_deployments_metadata, ORG)).paused

    # -- deleting ---------------------------------------------------------------------------
    for schedule_id in (created.id, drift.id, ttl.id):
        await sdk(dep.delete_scheduled_deployment, ORG, PROJECT, STACK, schedule_id)
    assert (await sdk(dep.list_scheduled_deployment, ORG, PROJECT, STACK)).schedules == []
    with pytest.raises(urllib.error.HTTPError) as info:
        await sdk(dep.read_scheduled_deployment, ORG, PROJECT, STACK, created.id)
    assert info.value.code == 404
    assert pool.id


async def test_bad_schedules_answer_4xx_and_store_nothing(clocked: Cairn) -> None:
    cairn = clocked
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})
    past = (at(START) - timedelta(minutes=1)).isoformat()
    bad: list[tuple[str, dict[str, Any], int]] = [
        ("/deployments/schedules", {"scheduleCron": "not a cron"}, 400),
        ("/deployments/schedules", {"scheduleCron": "0 2 * * * *"}, 400),
        ("/deployments/schedules", {"scheduleCron": "99 * * * *"}, 400),
        ("/deployments/schedules", {"scheduleOnce": past}, 400),
        ("/deployments/schedules", {"scheduleOnce": "tomorrow"}, 400),
        ("/deployments/schedules", {}, 400),
        ("/deployments/schedules", {"scheduleCron": "0 2 * * *", "unknown": 1}, 400),
        ("/deployments/schedules", {"scheduleCron": "0 2 * * *", "request": 3}, 400),
        (
            "/deployments/schedules",
            {"scheduleCron": "0 2 * * *", "request": {"operation": "explode"}},
            400,
        ),
        ("/deployments/drift/schedules", {"autoRemediate": True}, 400),
        ("/deployments/drift/schedules", {"scheduleCron": "@daily"}, 400),
        ("/deployments/ttl/schedules", {"timestamp": past}, 400),
        ("/deployments/ttl/schedules", {"deleteAfterDestroy": True}, 400),
        ("/deployments/schedules/unknown", {"scheduleCron": "0 2 * * *"}, 404),
        ("/deployments/drift/schedules/unknown", {"scheduleCron": "0 2 * * *"}, 404),
    ]
    for path, body, status in bad:
        answer = await cairn.json("POST", f"{S}{path}", status, body=body)
        assert answer["code"] == status, (path, body)
    for method, path in (
        ("GET", "/deployments/schedules/unknown"),
        ("DELETE", "/deployments/schedules/unknown"),
        ("POST", "/deployments/schedules/unknown/pause"),
        ("GET", "/deployments/schedules/unknown/history"),
        ("GET", "/drift/runs/unknown"),
    ):
        await cairn.json(method, f"{S}{path}", 404)
    await cairn.json("GET", "/api/deployments/unknown/status", 404)
    listed = await cairn.json("GET", f"{S}/deployments/schedules")
    assert listed == {"schedules": []}
    # Only one drift and one TTL schedule per stack.
    await cairn.json("POST", f"{S}/deployments/drift/schedules", body={"scheduleCron": "0 * * * *"})
    await cairn.json(
        "POST", f"{S}/deployments/drift/schedules", 409, body={"scheduleCron": "0 * * * *"}
    )
    assert len((await cairn.json("GET", f"{S}/deployments/schedules"))["schedules"]) == 1


async def test_a_bad_change_to_a_schedule_leaves_it_as_it_was(clocked: Cairn) -> None:
    cairn = clocked
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})
    past = (at(START) - timedelta(minutes=1)).isoformat()
    made = {
        "/deployments/schedules": {"scheduleCron": "0 2 * * *"},
        "/deployments/drift/schedules": {"scheduleCron": "0 * * * *"},
        "/deployments/ttl/schedules": {"timestamp": at(START + 86_400).isoformat()},
    }
    bad: dict[str, list[dict[str, Any]]] = {
        "/deployments/schedules": [
            {"scheduleCron": "not a cron"},
            {"scheduleOnce": past},
            {"scheduleCron": "0 2 * * *", "scheduleOnce": at(START + 60).isoformat()},
        ],
        "/deployments/drift/schedules": [{"scheduleCron": "0 0 31 2 * 1"}, {}],
        "/deployments/ttl/schedules": [{"timestamp": past}, {"timestamp": "soon"}],
    }
    for path, body in made.items():
        created = await cairn.json("POST", f"{S}{path}", body=body)
        before = await cairn.json("GET", f"{S}/deployments/schedules/{created['id']}")
        for change in bad[path]:
            answer = await cairn.json("POST", f"{S}{path}/{created['id']}", 400, body=change)
            assert answer["code"] == 400 and answer["message"], (path, change)
        after = await cairn.json("GET", f"{S}/deployments/schedules/{created['id']}")
        assert after == before, path
    listed = await cairn.json("GET", f"{S}/deployments/schedules")
    assert len(listed["schedules"]) == 3
