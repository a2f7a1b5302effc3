"""The console in headless Chromium against a real `cairn up`: sign in, follow an update to
its failing resource's diagnostic, watch a running update's progress, read the audit log,
sign out."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.console.data import DIAGNOSTIC, PASSWORD, create_stack, failed_update, succeeded_update
from tests.console.live import browser_problem, cairn_up, chromium, rest_client
from tests.gateway.cli import begin
from tests.gateway.conftest import ADMIN_TOKEN

if TYPE_CHECKING:
    from playwright.async_api import Page

PROBLEM = browser_problem()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"browser tests skipped: {PROBLEM}"),
    pytest.mark.timeout(240),
]
WAIT_MS = 15_000


@pytest.fixture
async def console_url(tmp_path: Path) -> AsyncIterator[str]:
    async with cairn_up(tmp_path / "data") as url:
        yield url


@pytest.fixture
async def page(console_url: str) -> AsyncIterator[Page]:
    """A fresh browser page that records any request leaving the gateway and console errors."""
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        tab = await context.new_page()
        tab.set_default_timeout(WAIT_MS)
        foreign: list[str] = []
        errors: list[str] = []
        tab.on(
            "request",
            lambda request: (
                None if request.url.startswith(console_url) else foreign.append(request.url)
            ),
        )
        tab.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
        await context.close()
        assert foreign == [], "the console made requests outside Cairn"
        assert errors == [], errors


async def test_follow_an_update_to_its_diagnostic_and_watch_one_run(
    console_url: str, page: Page
) -> None:
    from playwright.async_api import expect

    async with rest_client(console_url) as cairn:
        path = await create_stack(cairn)
        await succeeded_update(cairn, path)
        await failed_update(cairn, path)

        # Signing in, from the URL `cairn up` printed.
        await page.goto(console_url + "/")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2F$"))
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Organizations")
        assert ADMIN_TOKEN not in await page.content()

        # Organization → stack list → stack.
        await page.click("a[href='/orgs/admin'] >> nth=0")
        row = page.locator("#stack-table tbody tr", has_text="web/dev")
        await expect(row.locator(".badge")).to_have_text("failed")
        await page.fill("input.filter", "nothing-like-it")
        await expect(row).to_be_hidden()
        await page.fill("input.filter", "dev")
        await row.locator("a.stack-link").click()
        await expect(page.locator("h1")).to_have_text("web/dev")
        await expect(page.locator("#resources")).to_contain_text("default_4_16_0")
        assert PASSWORD not in await page.content()

        # History → the failed update → its diagnostic, on the failing resource.
        await page.click("text=Update history")
        await page.click("a.update-link >> text=#2")
        diagnostics = page.locator("#diagnostics")
        await expect(diagnostics).to_contain_text(DIAGNOSTIC)
        await expect(diagnostics.locator(".entry.sev-error").first).to_contain_text("logs")
        await expect(page.locator("#update-result .badge")).to_have_text("failed")

        # A running update: its page follows the engine's events as they arrive.
        run = await begin(cairn, path, message="live")
        await page.goto(f"{console_url}/orgs/admin/web/dev/updates/{run.version}")
        await expect(page.locator("#live-state")).to_have_text("Live")
        await run.send_events(
            [{"stdoutEvent": {"message": "provisioning the queue", "color": "raw"}}]
        )
        await expect(page.locator("#timeline")).to_contain_text("provisioning the queue")
        await run.send_events(
            [{"diagnosticEvent": {"message": "queue is slow", "severity": "warning"}}]
        )
        await expect(page.locator("#timeline .entry.sev-warning")).to_contain_text("queue is slow")
        await run.complete()
        await expect(page.locator("#update-result .badge")).to_have_text("succeeded")

        # The audit log shows the stack's creation.
        await page.goto(console_url + "/orgs/admin/audit")
        created = page.locator("#audit-table tr[data-event='stack.create']")
        await expect(created.first).to_contain_text("admin/web/dev")

        # Signing out ends the session.
        await page.click("text=Sign out")
        await expect(page.locator("h1")).to_have_text("Sign in to Cairn")
        await page.goto(console_url + "/orgs/admin")
        await expect(page).to_have_url(re.compile(r"/signin\?next="))


async def test_a_phone_width_page_fits(console_url: str, page: Page) -> None:
    async with rest_client(console_url) as cairn:
        await create_stack(cairn)
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.goto(console_url + "/signin?next=%2Forgs%2Fadmin")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#stack-table")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the stack list scrolls sideways on a phone ({width} px)"
