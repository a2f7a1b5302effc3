"""A real `cairn up` process and the system's headless Chromium driven by Playwright.

Shared by the browser tests and `scripts/screenshots.py`. Never downloads a browser: without
/usr/bin/chromium or the playwright package, `browser_problem()` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from tests.gateway.conftest import ADMIN_TOKEN, Cairn

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_SECONDS = 90.0
STOP_SECONDS = 30.0
CONSOLE_LINE = "web console "


def browser_problem() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@contextlib.asynccontextmanager
async def cairn_up(data_dir: Path, **settings: str) -> AsyncIterator[str]:
    """`cairn up` on a free loopback port with the tests' admin token; yields the console URL.
    `settings` are further CAIRN_ variables (`schedule_interval_seconds="0.5"`, say)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAIRN_")}
    env.update(CAIRN_ADMIN_TOKEN=ADMIN_TOKEN, CAIRN_LOG_LEVEL="warning")
    env.update({f"CAIRN_{name.upper()}": value for name, value in settings.items()})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cairn",
        "up",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        url = await asyncio.wait_for(_console_url(process.stdout, output), START_SECONDS)
        drain = asyncio.create_task(_drain(process.stdout, output))
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _console_url(stream: asyncio.StreamReader, output: list[str]) -> str:
    while True:
        line = (await stream.readline()).decode(errors="replace")
        if not line:
            raise AssertionError("cairn up exited before serving:\n" + "".join(output))
        output.append(line)
        if CONSOLE_LINE in line:
            return line.split(CONSOLE_LINE, 1)[1].strip().rstrip("/")


async def _drain(stream: asyncio.StreamReader, output: list[str]) -> None:
    """Keep reading the process's output so it never blocks on a full pipe."""
    while line := await stream.readline():
        output.append(line.decode(errors="replace"))


@contextlib.asynccontextmanager
async def rest_client(url: str) -> AsyncIterator[Cairn]:
    """The REST driver the gateway tests use, speaking to a `cairn up` process over HTTP."""
    async with aiohttp.ClientSession(base_url=url) as session:
        # Only `client.request` is used by the CLI driver; no in-process system exists here.
        yield Cairn(client=cast(Any, session), system=cast(Any, None), identity=cast(Any, None))


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system's Chromium, headless, through Playwright."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()
