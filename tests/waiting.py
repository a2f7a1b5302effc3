"""Waiting, bounded in time, for something a test caused to happen in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, *, seconds: float, interval: float
) -> Any:
    """Call `check` every `interval` until it answers something true, and return that; fail
    naming `what` once `seconds` have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)
