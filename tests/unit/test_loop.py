"""The event loop the process entry points run on."""

from __future__ import annotations

import asyncio

import uvloop

from services.common.config import Settings
from services.common.loop import run_process


async def _loop_class() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default() -> None:
    assert issubclass(run_process(_loop_class(), Settings()), uvloop.Loop)


def test_asyncio_loop_when_configured() -> None:
    loop_class = run_process(_loop_class(), Settings(event_loop="asyncio"))
    assert not issubclass(loop_class, uvloop.Loop)
