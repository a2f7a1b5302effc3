"""A deployment in headless Chromium against a real `cairn up`: open the `consoleUrl`, watch
the job's logs arrive live and its status change, and cancel another from its page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.console.data import create_stack
from tests.console.live import browser_problem, rest_client
from tests.console.test_browser import console_url, page
from tests.gateway.conftest import ADMIN_TOKEN, Cairn

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["console_url", "page"]

PROBLEM = browser_problem()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"browser tests skipped: {PROBLEM}"),
    pytest.mark.timeout(240),
]
S = "/api/stacks/admin/web/dev"


async def agent_call(cairn: Cairn, token: str, path: str, body: Any, status: int = 200) -> Any:
    return await cairn.json("POST", f"/api/agents{path}", status, token=token, body=body)


async def test_watch_a_deployment_run_and_cancel_another(console_url: str, page: Page) -> None:
    from playwright.async_api import expect

    async with rest_client(console_url) as cairn:
        await create_stack(cairn)
        pool = await cairn.json(
            "POST", "/api/orgs/admin/agent-pools", body={"name": "runners", "description": ""}
        )
        token = pool["tokenValue"]
        agent = (await agent_call(cairn, token, "/register", {"hostname": "runner-1"}))["agentID"]
        first = await cairn.json("POST", f"{S}/deployments", body={"operation": "update"})
        await agent_call(cairn, token, f"/{agent}/claim", {})
        await agent_call(
            cairn, token, f"/{agent}/deployments/{first['id']}/logs", {"lines": ["cloning"]}
        )

        await page.goto(first["consoleUrl"])
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Deployment #1: update")
        await expect(page.locator("#live-state")).to_have_text("Live")
        await expect(page.locator("#deployment-logs")).to_contain_text("cloning")

        await agent_call(
            cairn, token, f"/{agent}/deployments/{first['id']}/logs", {"lines": ["+ 1 created"]}
        )
        await expect(page.locator("#deployment-logs")).to_contain_text("+ 1 created")
        await agent_call(
            cairn,
            token,
            f"/{agent}/deployments/{first['id']}/finish",
            {"status": "succeeded", "message": ""},
            204,
        )
        await expect(page.locator("#deployment-status .badge")).to_have_text("succeeded")

        # A queued one, cancelled from its page, found through the stack's list.
        await cairn.json("POST", f"{S}/deployments", body={"operation": "destroy"})
        await page.goto(console_url + "/orgs/admin/web/dev")
        await page.click("text=Deployments")
        await page.click("a.deployment-link >> text=#2")
        await expect(page.locator("h1")).to_have_text("Deployment #2: destroy")
        await page.click("#cancel-deployment")
        await expect(page.locator("#deployment-status .badge")).to_have_text("failed")
        await expect(page.locator("#cancel-deployment")).to_have_count(0)
