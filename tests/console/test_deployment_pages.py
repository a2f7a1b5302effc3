"""Deployment pages through the real gateway: the lists, the `consoleUrl` page with its logs
and updates, live logs while a job runs, cancelling, escaping, and who may see and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tests.console.conftest import Browser, csrf_of
from tests.console.data import EVIL, create_stack
from tests.gateway.cli import begin
from tests.gateway.conftest import VIEWER, Cairn

OpenBrowser = Callable[[], Browser]
STACK = "/orgs/admin/web/dev"
POOLS = "/api/orgs/admin/agent-pools"


class Agent:
    """The agent protocol driven by hand: register once, then claim, log and finish jobs."""

    def __init__(self, cairn: Cairn, token: str, agent_id: str) -> None:
        self.cairn = cairn
        self.token = token
        self.agent_id = agent_id

    @classmethod
    async def register(cls, cairn: Cairn) -> Agent:
        pool = await cairn.json("POST", POOLS, body={"name": "runners", "description": "ci"})
        token = pool["tokenValue"]
        registered = await cairn.json(
            "POST", "/api/agents/register", token=token, body={"hostname": "runner-1"}
        )
        return cls(cairn, token, registered["agentID"])

    async def call(self, path: str, body: Any = None) -> Any:
        return await self.cairn.json(
            "POST", f"/api/agents/{self.agent_id}{path}", token=self.token, body=body or {}
        )

    async def claim(self) -> dict[str, Any]:
        job: dict[str, Any] = await self.call("/claim")
        return job

    async def log(self, deployment_id: str, *lines: str) -> None:
        await self.call(f"/deployments/{deployment_id}/logs", {"lines": list(lines)})

    async def finish(self, deployment_id: str, status: str, message: str = "") -> None:
        await self.cairn.json(
            "POST",
            f"/api/agents/{self.agent_id}/deployments/{deployment_id}/finish",
            204,
            token=self.token,
            body={"status": status, "message": message},
        )


async def queue(cairn: Cairn, operation: str = "update") -> dict[str, Any]:
    queued: dict[str, Any] = await cairn.json(
        "POST", "/api/stacks/admin/web/dev/deployments", body={"operation": operation}
    )
    return queued


async def test_the_console_url_shows_the_deployment_its_logs_and_its_updates(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    path = await create_stack(cairn)
    agent = await Agent.register(cairn)
    queued = await queue(cairn)
    job = await agent.claim()
    # The job makes an update with its own token; the update's message is the job's text.
    run = await begin(cairn, path, message=EVIL, token=job["environment"]["PULUMI_ACCESS_TOKEN"])
    await run.complete()
    await agent.log(queued["id"], EVIL, "Resources: 1 created")
    await agent.finish(queued["id"], "failed", EVIL)

    browser = open_browser()
    await browser.sign_in()
    console_path = URL(queued["consoleUrl"]).path
    assert console_path == f"{STACK}/deployments/1"
    page = await browser.get(console_path)
    assert page.status == 200, page.text
    assert "Deployment #1: update" in page.text
    assert EVIL not in page.text and "&lt;script&gt;" in page.text
    assert "deployment-failed" in page.text and "Resources: 1 created" in page.text
    assert f'href="{STACK}/updates/1"' in page.text
    assert "data-live-url" not in page.text and 'id="cancel-deployment"' not in page.text

    # The update names its deployment, and links back to it.
    update = await browser.get(f"{STACK}/updates/1")
    assert f'id="update-deployment" href="{STACK}/deployments/1"' in update.text
    assert EVIL not in update.text

    # The stack's and the organization's lists.
    for listing in (f"{STACK}/deployments", "/orgs/admin/deployments"):
        shown = await browser.get(listing)
        assert shown.status == 200, listing
        assert f'href="{STACK}/deployments/1"' in shown.text
        assert "update #1" in shown.text and "admin" in shown.text
        assert EVIL not in shown.text and "&lt;script&gt;" in shown.text
    org = await browser.get("/orgs/admin/deployments")
    assert ">web/dev<" in org.text
    stack = await browser.get(STACK)
    assert f'href="{STACK}/deployments"' in stack.text

    missing = await browser.get(f"{STACK}/deployments/9")
    assert missing.status == 404


async def test_live_logs_stream_until_the_job_ends(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn)
    agent = await Agent.register(cairn)
    queued = await queue(cairn)
    await agent.claim()
    await agent.log(queued["id"], "cloning")
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/deployments/1")
    assert "data-live-url" in page.text and 'id="cancel-deployment"' in page.text
    assert "cloning" in page.text

    url = browser.base.join(URL(f"{STACK}/deployments/1/live?after=1"))
    seen: list[tuple[str, dict[str, Any]]] = []
    async with browser.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        sent = False
        async for raw in stream.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                seen.append((name, orjson.loads(line[len("data: ") :])))
                if name == "status" and not sent:
                    sent = True
                    await agent.log(queued["id"], EVIL, "done")
                    await asyncio.sleep(0.2)
                    await agent.finish(queued["id"], "succeeded")
                if name == "end":
                    break
    lines = [data for name, data in seen if name == "line"]
    assert [line["text"] for line in lines] == [EVIL, "done"]
    assert [line["index"] for line in lines] == [1, 2]
    assert seen[0] == ("status", {"status": "running", "message": "", "isRunning": True})
    assert seen[-1] == ("end", {"status": "succeeded", "message": "", "isRunning": False})

    bad = await browser.get(f"{STACK}/deployments/1/live?after=x")
    assert bad.status == 400


async def test_cancel_from_the_console(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn)
    await Agent.register(cairn)
    await queue(cairn)

    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/deployments/1")
    token = csrf_of(page.text)
    # Without the form's CSRF token nothing happens.
    refused = await browser.post(f"{STACK}/deployments/1/cancel", {})
    assert refused.status == 403
    still = await cairn.json("GET", "/api/stacks/admin/web/dev/deployments")
    assert still["deployments"][0]["status"] == "not-started"

    cancelled = await browser.post(f"{STACK}/deployments/1/cancel", {"csrf_token": token})
    assert cancelled.status == 303 and cancelled.location == f"{STACK}/deployments/1"
    after = await browser.get(f"{STACK}/deployments/1")
    assert "deployment-failed" in after.text and 'id="cancel-deployment"' not in after.text
    listed = await cairn.json("GET", "/api/stacks/admin/web/dev/deployments")
    assert listed["deployments"][0]["status"] == "failed"
    audit = await cairn.json("GET", "/api/orgs/admin/auditlogs")
    assert any(e["event"] == "deployment.cancel" for e in audit["auditLogEvents"])


async def test_who_may_see_and_cancel_deployments(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn)
    await Agent.register(cairn)
    await queue(cairn)

    viewer = open_browser()
    await viewer.sign_in(await cairn.new_user("vera", org_role=("admin", VIEWER)))
    for page_path in ("/orgs/admin/deployments", f"{STACK}/deployments", f"{STACK}/deployments/1"):
        assert (await viewer.get(page_path)).status == 200, page_path
    page = await viewer.get(f"{STACK}/deployments/1")
    cancel = await viewer.post(f"{STACK}/deployments/1/cancel", {"csrf_token": csrf_of(page.text)})
    assert cancel.status == 403
    listed = await cairn.json("GET", "/api/stacks/admin/web/dev/deployments")
    assert listed["deployments"][0]["status"] == "not-started"

    outsider = open_browser()
    await outsider.sign_in(await cairn.new_user("mallory"))
    for page_path in ("/orgs/admin/deployments", f"{STACK}/deployments/1"):
        page = await outsider.get(page_path)
        assert page.status == 404, page_path
