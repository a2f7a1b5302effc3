"""Calls that arrive while one is running go together in the next run.

The first call of a quiet moment runs at once, alone: no call waits for company. Under load,
the calls that queued while a run was under way are taken together (up to a bound) by the
next one, so one round trip serves them all. Each caller gets its own result, or the error of
the run it was in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Batches(Generic[ItemT, ResultT]):
    """`submit` an item; `run` is called with the items taken together and returns one result
    per item, in order. A caller that gave up before its item was taken is skipped; once
    taken, its item runs with the others (as if the answer were lost on the way)."""

    def __init__(
        self, run: Callable[[list[ItemT]], Awaitable[list[ResultT]]], *, max_items: int
    ) -> None:
        self._run = run
        self._max_items = max_items
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._leader: asyncio.Task[None] | None = None
        # Runs made and items in them (for tests and metrics).
        self.runs = 0
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._pending.append((item, future))
        if self._leader is None or self._leader.done():
            self._leader = loop.create_task(self._lead())
        return await future

    async def _lead(self) -> None:
        while self._pending:
            taken = self._pending[: self._max_items]
            del self._pending[: len(taken)]
            batch = [(item, future) for item, future in taken if not future.done()]
            if not batch:
                continue
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            except BaseException:
                for _, future in (*batch, *self._pending):
                    future.cancel()
                self._pending.clear()
                raise
            self.runs += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
