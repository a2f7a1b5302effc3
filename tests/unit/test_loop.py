"""The event loop the process entry points run on."""

from __future__ import annotations

import asyncio
import gc

import uvloop

from services.common.config import Settings
from services.common.loop import run_process, settle_heap


async def _loop_class() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default() -> None:
    assert issubclass(run_process(_loop_class(), Settings()), uvloop.Loop)


def test_asyncio_loop_when_configured() -> None:
    loop_class = run_process(_loop_class(), Settings(event_loop="asyncio"))
    assert not issubclass(loop_class, uvloop.Loop)


def test_settling_the_heap_hides_what_starting_left_from_the_collector() -> None:
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
