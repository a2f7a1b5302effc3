"""Schedules and drift detection in headless Chromium against a real `cairn up` (real time, a
fast scheduler): the schedules page with each schedule's next run, pausing and resuming one
from its row, a one-time schedule firing and its deployment marked as the schedule's, and a
drift detection run by an agent (driven through the agent routes) shown as drift on the
stack's page and its deployments page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import waiting
from tests.console.data import create_stack
from tests.console.live import browser_problem, cairn_up, rest_client
from tests.console.test_browser import page
from tests.gateway.conftest import ADMIN_TOKEN, Cairn

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["page"]

PROBLEM = browser_problem()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"browser tests skipped: {PROBLEM}"),
    pytest.mark.timeout(240),
]
S = "/api/stacks/admin/web/dev"
STACK = "/orgs/admin/web/dev"
# A cron drift schedule fires at the next minute: at most this long to wait for it.
WAIT_SECONDS = 100.0
POLL_SECONDS = 0.5


@pytest.fixture
async def console_url(tmp_path: Path) -> AsyncIterator[str]:
    """`cairn up` whose scheduler looks for due schedules every half second."""
    async with cairn_up(tmp_path / "data", schedule_interval_seconds=str(POLL_SECONDS)) as url:
        yield url


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    return await waiting.eventually(check, what, seconds=WAIT_SECONDS, interval=POLL_SECONDS)


class Agent:
    """The agent routes driven by hand: claim each queued job and finish it as told."""

    def __init__(self, cairn: Cairn, token: str, agent_id: str) -> None:
        self.cairn = cairn
        self.token = token
        self.agent_id = agent_id

    async def claim(self) -> dict[str, Any] | None:
        response = await self.cairn.call(
            "POST", f"/api/agents/{self.agent_id}/claim", token=self.token, body={}
        )
        assert response.status in (200, 204), await response.text()
        return None if response.status == 204 else dict(await response.json())

    async def run(self, deployment_id: str, lines: list[str], status: str, message: str) -> None:
        base = f"/api/agents/{self.agent_id}/deployments/{deployment_id}"
        await self.cairn.json("POST", f"{base}/logs", token=self.token, body={"lines": lines})
        await self.cairn.json(
            "POST",
            f"{base}/finish",
            204,
            token=self.token,
            body={"status": status, "message": message},
        )


async def test_schedules_pause_resume_fire_and_show_drift(console_url: str, page: Page) -> None:
    from playwright.async_api import expect

    async with rest_client(console_url) as cairn:
        await create_stack(cairn)
        pool = await cairn.json(
            "POST", "/api/orgs/admin/agent-pools", body={"name": "runners", "description": ""}
        )
        registered = await cairn.json(
            "POST",
            "/api/agents/register",
            token=pool["tokenValue"],
            body={"hostname": "runner-1"},
        )
        agent = Agent(cairn, pool["tokenValue"], registered["agentID"])
        # The stack's page before any drift schedule.
        await page.goto(console_url + STACK)
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("web/dev")
        await expect(page.locator("#stack-drift")).to_contain_text("no drift run yet")

        # A one-time deployment in a few seconds, and a drift check every minute.
        soon = datetime.fromtimestamp(time.time() + 8, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        once = await cairn.json(
            "POST",
            f"{S}/deployments/schedules",
            body={"scheduleOnce": soon, "request": {"operation": "preview"}},
        )
        drift = await cairn.json(
            "POST", f"{S}/deployments/drift/schedules", body={"scheduleCron": "* * * * *"}
        )
        await page.goto(console_url + f"{STACK}/deployments/schedules")
        await expect(page.locator("h1")).to_have_text("Schedules")
        drift_row = page.locator(f"#schedule-{drift['id']}")
        await expect(drift_row).to_contain_text("drift detection")
        await expect(drift_row.locator(".next-run time")).to_have_count(1)
        await expect(page.locator(f"#schedule-{once['id']}")).to_contain_text("once at")

        # Paused from its row: it says so and offers to resume; resumed, it is active again.
        await drift_row.locator("button", has_text="Pause").click()
        await expect(drift_row.locator(".badge")).to_have_text("paused")
        await expect(drift_row.locator(".next-run")).to_have_text("paused")
        await drift_row.locator("button", has_text="Resume").click()
        await expect(drift_row.locator(".badge")).to_have_text("active")
        await expect(drift_row.locator(".next-run time")).to_have_count(1)

        # The one-time schedule fires: its firing links its deployment, marked as the schedule's.
        async def fired() -> int:
            history = await cairn.json("GET", f"{S}/deployments/schedules/{once['id']}/history")
            return max(
                (int(e["version"] or 0) for e in history["scheduleHistoryEvents"]), default=0
            )

        version = await eventually(fired, "the one-time schedule's firing")
        await page.reload()
        firings = page.locator(f"#schedule-{once['id']} + tr.firings")
        await expect(firings).to_contain_text(f"deployment #{version}")
        await expect(page.locator(f"#schedule-{once['id']} .next-run")).to_have_text("none")
        await firings.locator("a", has_text=f"deployment #{version}").click()
        await expect(page.locator("h1")).to_have_text(f"Deployment #{version}: preview")
        await expect(page.locator("#deployment-trigger")).to_contain_text("schedule")

        # The drift schedule fires at the next minute; the agent runs the preview, then the
        # drift detection, which finds changes.
        async def drift_started() -> str:
            status = await cairn.json("GET", f"{S}/drift/status")
            return str(status["latestDriftRun"])

        await eventually(drift_started, "the drift detection")
        for _ in range(2):
            job = await eventually(agent.claim, "a queued job")
            if job["operation"] == "detect-drift":
                await agent.run(
                    job["deploymentID"],
                    ["Resources:", "    ~ 2 to update"],
                    "failed",
                    "error: no changes were expected but changes occurred",
                )
            else:
                await agent.run(job["deploymentID"], ["previewed"], "succeeded", "")

        async def drift_found() -> bool:
            status = await cairn.json("GET", f"{S}/drift/status")
            return bool(status["driftDetected"])

        await eventually(drift_found, "the drift's outcome")

        # The stack's page shows the drift and leads to the runs.
        await page.goto(console_url + STACK)
        await expect(page.locator("#stack-drift")).to_contain_text("drift detected")
        await page.click("#stack-drift >> text=drift runs")
        await expect(page.locator("h1")).to_have_text("Deployments")
        await expect(page.locator("#drift-status")).to_contain_text("drift detected")
        await expect(page.locator("#drift-runs")).to_contain_text("update: 2")
        await expect(page.locator("#deployments")).to_contain_text("drift detection")
        await expect(page.locator("#deployments")).to_contain_text("schedule")
