"""The event loop every process entry point runs on: uvloop unless settings say asyncio's.

Chosen by the entry point (`cairn`, `python -m <service>`), never at import: tests and
embedding programs keep whatever loop they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from services.common.config import Settings
from services.common.logging import get_logger

log = get_logger("cairn.loop")

T = TypeVar("T")


def run_process(main: Coroutine[Any, Any, T], settings: Settings) -> T:
    """Run `main` to completion on a new loop of the configured kind, then close it."""
    factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
    log.debug("event_loop", kind=settings.event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Once a process has started serving: collect what starting left behind, then move every
    object still alive (modules, classes, schemas, compiled routes and statements) out of the
    collector's sight. A full collection walks every tracked object; without this it walked
    the whole started system each time and paused the event loop for 100-160 ms under load
    (every request in flight waited), where the objects it can actually free are those of
    the requests since."""
    gc.collect()
    gc.freeze()


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (None: there is none)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
