"""Schedule and drift pages through the real gateway on a manual clock: schedules with their
next run and firings, pausing and resuming (CSRF, write permission), the drift status and
runs on the stack's deployments page, and escaping."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.console.render import templates
from gateway.console.schedules import Listed
from protos.cairn.v1 import schedules_pb2
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.console.conftest import Browser, csrf_of
from tests.console.data import EVIL
from tests.console.test_deployment_pages import Agent
from tests.gateway.cli import begin
from tests.gateway.conftest import VIEWER, AiohttpClient, Cairn, running_cairn

OpenBrowser = Callable[[], Browser]
STACK = "/orgs/admin/web/dev"
S = "/api/stacks/admin/web/dev"
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NEXT_HOUR = 1_700_002_800.0  # 23:00:00
INTERVAL = 0.05


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def cairn(
    settings: Settings, aiohttp_client: AiohttpClient, clock: ManualClock
) -> AsyncIterator[Cairn]:
    """The system on SQLite with a manual clock and a fast scheduler, with a stack."""
    fast = settings.model_copy(update={"schedule_interval_seconds": INTERVAL})
    async for running in running_cairn(fast, aiohttp_client, clock=clock):
        await running.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
        yield running


def row_of(html: str, schedule_id: str) -> str:
    found = re.search(rf'<tr class="schedule" id="schedule-{schedule_id}">(.*?)</tr>', html, re.S)
    assert found, f"no row for schedule {schedule_id}"
    return found.group(1)


async def test_schedules_show_their_kind_next_run_and_firings(
    cairn: Cairn, clock: ManualClock, open_browser: OpenBrowser
) -> None:
    await Agent.register(cairn)
    hourly = await cairn.json(
        "POST",
        f"{S}/deployments/schedules",
        body={"scheduleCron": "0 * * * *", "request": {"operation": "preview"}},
    )
    drift = await cairn.json(
        "POST", f"{S}/deployments/drift/schedules", body={"scheduleCron": "30 2 * * *"}
    )
    ttl = await cairn.json(
        "POST", f"{S}/deployments/ttl/schedules", body={"timestamp": "2030-01-02T03:04:05Z"}
    )

    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/deployments/schedules")
    assert page.status == 200, page.text
    row = row_of(page.text, hourly["id"])
    assert "deployment" in row and "<code>preview</code>" in row and "0 * * * *" in row
    assert "2023-11-14 23:00:00 UTC" in row and "never" in row and ">Pause<" in row
    drift_row = row_of(page.text, drift["id"])
    assert "drift detection" in drift_row and "2023-11-15 02:30:00 UTC" in drift_row
    ttl_row = row_of(page.text, ttl["id"])
    assert "time to live" in ttl_row and "once at" in ttl_row
    assert "2030-01-02 03:04:05 UTC" in ttl_row
    listed = await browser.get(f"{STACK}/deployments")
    assert f'href="{STACK}/deployments/schedules"' in listed.text

    # The hour comes: the schedule fires and queues deployment #1, linked from its row.
    clock.current = NEXT_HOUR + 1
    for _ in range(200):
        history = await cairn.json("GET", f"{S}/deployments/schedules/{hourly['id']}/history")
        if history["scheduleHistoryEvents"]:
            break
        await _sleep()
    else:
        pytest.fail("the schedule never fired")
    page = await browser.get(f"{STACK}/deployments/schedules")
    assert f'href="{STACK}/deployments/1">deployment #1</a>' in page.text
    row = row_of(page.text, hourly["id"])
    assert "2023-11-15 00:00:00 UTC" in row  # the next run moved on
    # The deployment says the schedule queued it (for the user who made the schedule).
    listed = await browser.get(f"{STACK}/deployments")
    assert (
        '<span class="trigger" data-initiator="schedule">schedule '
        '<span class="muted">(for admin)</span></span>'
    ) in listed.text
    queued = await browser.get(f"{STACK}/deployments/1")
    assert 'id="deployment-trigger"><span class="trigger" data-initiator="schedule">' in queued.text


async def _sleep() -> None:
    await asyncio.sleep(INTERVAL)


async def test_pause_and_resume_from_the_console(cairn: Cairn, open_browser: OpenBrowser) -> None:
    schedule = await cairn.json(
        "POST", f"{S}/deployments/schedules", body={"scheduleCron": "0 * * * *"}
    )
    base = f"{STACK}/deployments/schedules/{schedule['id']}"
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/deployments/schedules")
    token = csrf_of(page.text)

    refused = await browser.post(f"{base}/pause", {})
    assert refused.status == 403
    cross = await browser.post(f"{base}/pause", {"csrf_token": token}, Origin="https://evil.test")
    assert cross.status == 403
    stored = await cairn.json("GET", f"{S}/deployments/schedules/{schedule['id']}")
    assert stored["paused"] is False

    paused = await browser.post(f"{base}/pause", {"csrf_token": token})
    assert paused.status == 303 and paused.location == f"{STACK}/deployments/schedules"
    stored = await cairn.json("GET", f"{S}/deployments/schedules/{schedule['id']}")
    assert stored["paused"] is True
    page = await browser.get(f"{STACK}/deployments/schedules")
    row = row_of(page.text, schedule["id"])
    assert "schedule-paused" in row and ">Resume<" in row and f'action="{base}/resume"' in row

    resumed = await browser.post(f"{base}/resume", {"csrf_token": token})
    assert resumed.status == 303
    stored = await cairn.json("GET", f"{S}/deployments/schedules/{schedule['id']}")
    assert stored["paused"] is False

    missing = await browser.post(f"{STACK}/deployments/schedules/nope/pause", {"csrf_token": token})
    assert missing.status == 404
    audit = await cairn.json("GET", "/api/orgs/admin/auditlogs")
    kinds = [e["event"] for e in audit["auditLogEvents"]]
    assert kinds.count("deployment_schedule.pause") == 2  # one refused: no such schedule
    assert "deployment_schedule.resume" in kinds


async def test_paused_deployments_are_shown_as_held(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    await Agent.register(cairn)
    await cairn.json("POST", f"{S}/deployments", body={"operation": "update"})
    browser = open_browser()
    await browser.sign_in()
    assert 'id="deployments-paused"' not in (await browser.get(STACK)).text
    assert 'id="deployment-paused"' not in (await browser.get(f"{STACK}/deployments/1")).text
    await cairn.json("POST", f"{S}/deployments/pause", 204)
    page = await browser.get(STACK)
    assert (
        '<span class="badge deployment-paused" id="deployments-paused">deployments paused</span>'
        in page.text
    )
    listed = await browser.get(f"{STACK}/deployments")
    assert 'not-started</span> <span class="badge deployment-paused">paused</span>' in listed.text
    assert 'id="deployment-paused"' in (await browser.get(f"{STACK}/deployments/1")).text
    await cairn.json("POST", f"{S}/deployments/resume", 204)
    await cairn.json("POST", "/api/orgs/admin/deployments/pause", 204)
    page = await browser.get(STACK)
    assert "deployments paused (organization)" in page.text
    org_listed = await browser.get("/orgs/admin/deployments")
    assert '<span class="badge deployment-paused">paused</span>' in org_listed.text
    await cairn.json("POST", "/api/orgs/admin/deployments/resume", 204)
    listed = await browser.get(f"{STACK}/deployments")
    assert "deployment-paused" not in listed.text


async def test_viewers_see_schedules_but_may_not_pause_them(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    schedule = await cairn.json(
        "POST", f"{S}/deployments/schedules", body={"scheduleCron": "0 * * * *"}
    )
    viewer = open_browser()
    await viewer.sign_in(await cairn.new_user("vera", org_role=("admin", VIEWER)))
    page = await viewer.get(f"{STACK}/deployments/schedules")
    assert page.status == 200 and schedule["id"] in page.text
    refused = await viewer.post(
        f"{STACK}/deployments/schedules/{schedule['id']}/pause", {"csrf_token": csrf_of(page.text)}
    )
    assert refused.status == 403
    stored = await cairn.json("GET", f"{S}/deployments/schedules/{schedule['id']}")
    assert stored["paused"] is False

    outsider = open_browser()
    await outsider.sign_in(await cairn.new_user("mallory"))
    assert (await outsider.get(f"{STACK}/deployments/schedules")).status == 404


async def test_drift_status_and_runs_on_the_deployments_page(
    cairn: Cairn, clock: ManualClock, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/deployments")
    assert "No drift run yet" in page.text
    stack_page = await browser.get(STACK)
    assert "Drift: no drift run yet" in stack_page.text

    agent = await Agent.register(cairn)
    await cairn.json("POST", f"{S}/deployments/drift/schedules", body={"scheduleCron": "0 * * * *"})
    clock.current = NEXT_HOUR + 1
    for _ in range(200):
        status = await cairn.json("GET", f"{S}/drift/status")
        if status["latestDriftRun"]:
            break
        await _sleep()
    else:
        pytest.fail("no drift run started")
    page = await browser.get(f"{STACK}/deployments")
    assert 'id="drift-in-progress"' in page.text and status["latestDriftRun"] in page.text
    assert f'href="{STACK}/deployments/1">#1</a>' in page.text

    # The refresh preview finds changes: drift is detected and its changes are shown.
    runs = await cairn.json("GET", f"{S}/drift/runs")
    deployment_id = runs["driftRuns"][0]["deploymentId"]
    await agent.claim()
    await agent.log(deployment_id, "Resources:", "    ~ 2 to update", EVIL)
    await agent.finish(deployment_id, "failed", "error: no changes were expected")
    for _ in range(200):
        status = await cairn.json("GET", f"{S}/drift/status")
        if status["driftDetected"]:
            break
        await _sleep()
    else:
        pytest.fail("the drift was not recorded")
    page = await browser.get(f"{STACK}/deployments")
    assert "drift detected" in page.text and 'id="drift-in-progress"' not in page.text
    assert "update: 2" in page.text
    assert EVIL not in page.text
    assert 'data-initiator="drift-detection">drift detection' in page.text
    # The stack's own page shows the drift status too.
    stack_page = await browser.get(STACK)
    drift_line = re.search(r'<p class="muted" id="stack-drift">(.*?)</p>', stack_page.text, re.S)
    assert drift_line and "drift detected" in drift_line.group(1)
    assert f'href="{STACK}/deployments#drift"' in drift_line.group(1)


async def wait_for(check: Callable[[], Any], what: str) -> Any:
    for _ in range(200):
        found = await check()
        if found:
            return found
        await _sleep()
    pytest.fail(f"timed out waiting for {what}")


async def test_drift_remediated_and_a_ttl_stack_destroyed_as_the_console_shows_them(
    cairn: Cairn, clock: ManualClock, open_browser: OpenBrowser
) -> None:
    agent = await Agent.register(cairn)
    await cairn.json(
        "POST",
        f"{S}/deployments/drift/schedules",
        body={"scheduleCron": "0 * * * *", "autoRemediate": True},
    )
    await cairn.json(
        "POST",
        f"{S}/deployments/ttl/schedules",
        body={"timestamp": "2023-11-14T23:30:00Z", "deleteAfterDestroy": True},
    )
    browser = open_browser()
    await browser.sign_in()

    # 23:00: the drift check finds drift; its remediation is queued, then run.
    clock.current = NEXT_HOUR + 1
    detection = await agent_job(agent, "detect-drift")
    await agent.log(detection["deploymentID"], "Resources:", "    - 1 to delete")
    await agent.finish(detection["deploymentID"], "failed", "error: no changes were expected")

    async def remediation_queued() -> dict[str, Any] | None:
        (run,) = (await cairn.json("GET", f"{S}/drift/runs"))["driftRuns"]
        return run if "remediateUpdate" in run else None

    run = await wait_for(remediation_queued, "the remediation")
    page = await browser.get(f"{STACK}/deployments")
    runs_table = re.search(r'<table class="list" id="drift-runs">(.*?)</table>', page.text, re.S)
    assert runs_table and "delete: 1" in runs_table.group(1)
    assert "deployment-not-started" in runs_table.group(1)
    assert 'data-initiator="drift-remediation">drift remediation' in page.text
    remediation = await agent_job(agent, "remediate-drift")
    assert remediation["deploymentID"] == run["remediationDeploymentId"]
    # The remediating job runs `pulumi up` with the token minted for it.
    made = await begin(cairn, S, token=remediation["environment"]["PULUMI_ACCESS_TOKEN"])
    await made.complete()
    await agent.finish(remediation["deploymentID"], "succeeded")

    async def remediated() -> bool:
        found = await cairn.json("GET", f"{S}/drift/runs/{run['id']}")
        return bool(found["remediateUpdate"]["status"] == "succeeded")

    await wait_for(remediated, "the remediation's end")
    page = await browser.get(f"{STACK}/deployments")
    runs_table = re.search(r'<table class="list" id="drift-runs">(.*?)</table>', page.text, re.S)
    assert runs_table and "deployment-succeeded" in runs_table.group(1)
    # The run links the update its remediation made.
    assert f'<a href="{STACK}/updates/1">update #1</a>' in runs_table.group(1)
    remediation_page = await browser.get(f"{STACK}/deployments/2")
    assert "Deployment #2: remediate-drift" in remediation_page.text
    assert "drift remediation" in remediation_page.text

    # 23:30: the stack's time to live is up; its destroy runs and the stack is deleted.
    clock.current = NEXT_HOUR + 1801
    destroy = await agent_job(agent, "destroy")
    page = await browser.get(f"{STACK}/deployments")
    assert 'data-initiator="ttl">time to live' in page.text
    await agent.finish(destroy["deploymentID"], "succeeded")

    async def deleted() -> bool:
        return (await cairn.call("GET", S)).status == 404

    await wait_for(deleted, "the stack's deletion")
    assert (await browser.get(STACK)).status == 404


async def agent_job(agent: Agent, operation: str) -> dict[str, Any]:
    """The next job the agent claims once one is queued; it must be this operation."""

    async def claimed() -> dict[str, Any] | None:
        response = await agent.cairn.call(
            "POST", f"/api/agents/{agent.agent_id}/claim", token=agent.token, body={}
        )
        return None if response.status == 204 else dict(await response.json())

    job: dict[str, Any] = await wait_for(claimed, f"a {operation} job")
    assert job["operation"] == operation
    return job


def test_text_from_a_schedule_is_shown_as_text() -> None:
    """The API admits no free text in a schedule, so the page is rendered with one that
    holds some (as a stored definition or a firing's error message could)."""
    schedule = schedules_pb2.Schedule(
        id="s1", kind="deployment", cron="0 * * * *", next_at=int(NEXT_HOUR)
    )
    firing = schedules_pb2.ScheduleFiring(
        id="f1", executed=int(START), result="failed", message=EVIL, version=3
    )
    stack = SimpleNamespace(ref=SimpleNamespace(organization="admin", project="web", stack="dev"))
    html = (
        templates()
        .get_template("schedules.html")
        .render(
            principal=None,
            csrf_token="0" * 64,
            request_path="/",
            stack=stack,
            rows=[Listed(schedule, EVIL, (firing,))],
        )
    )
    assert EVIL not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 2
    assert f'href="{STACK}/deployments/3">deployment #3</a>' in html


@pytest.mark.parametrize(
    ("initiator", "shown"),
    [
        ("api", "admin"),
        ("", "admin"),
        ("schedule", 'schedule <span class="muted">(for admin)</span>'),
        ("drift-detection", 'drift detection <span class="muted">(for admin)</span>'),
        ("drift-remediation", 'drift remediation <span class="muted">(for admin)</span>'),
        ("ttl", 'time to live <span class="muted">(for admin)</span>'),
    ],
)
def test_each_trigger_of_a_deployment_is_named(initiator: str, shown: str) -> None:
    deployment = SimpleNamespace(initiator=initiator, requested_by="admin")
    macros = templates().get_template("macros.html").module
    html = str(macros.deployment_trigger(deployment))  # type: ignore[attr-defined]
    assert html == (f'<span class="trigger" data-initiator="{initiator or "api"}">{shown}</span>')


async def test_the_stack_page_is_shown_while_agent_pools_is_away(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    await browser.sign_in()
    assert 'id="stack-drift"' in (await browser.get(STACK)).text
    (agent_pools,) = [s for s in cairn.system.services if s.name == "agent_pools"]
    cairn.system.services.remove(agent_pools)
    await agent_pools.stop(0)
    page = await browser.get(STACK)
    assert page.status == 200, page.text
    assert "<h1>web/dev</h1>" in page.text and 'id="stack-drift"' not in page.text
