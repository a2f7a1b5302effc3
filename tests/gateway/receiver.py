"""A webhook receiver for tests: an aiohttp server on 127.0.0.1, port 0, that records what it
is sent and answers statuses from a script (200 once the script runs out)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    # When set, answers wait (bounded) until it is set: a receiver that hangs.
    hold: asyncio.Event | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.received.append(Received(request.path, dict(request.headers), body))
            self._arrived.notify_all()
        if self.hold is not None:
            async with asyncio.timeout(WAIT_SECONDS):
                await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text=f"answered {status}")

    async def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[Received]:
        """Until `count` requests arrived (bounded); returns them all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return list(self.received)

    def kinds(self) -> list[str]:
        return [r.headers.get("Pulumi-Webhook-Kind", "") for r in self.received]


@asynccontextmanager
async def receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    found = Receiver(url="")
    app = web.Application()
    app.router.add_post(path, found.handle)
    # Bounded: shutting down never waits long for a connection still open.
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield found
    finally:
        await runner.cleanup()
