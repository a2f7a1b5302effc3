"""The sweep that purges deleted stacks once their restore window has passed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.common.logging import get_logger
from services.common.loop import cancel_and_wait

log = get_logger("cairn.stacks")


class DeletedStackSweeper:
    """Runs a purge of expired tombstones once at start, then every `interval_seconds`."""

    def __init__(self, purge: Callable[[], Awaitable[int]], interval_seconds: float) -> None:
        self._purge = purge
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._purge()
            except Exception:
                # The database may be away for a while; the next round tries again.
                log.exception("deleted_stack_sweep_failed")
            await asyncio.sleep(self._interval)
