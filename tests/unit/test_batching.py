"""`Batches`: the first call of a quiet moment runs alone at once; calls that arrive while a
run is under way go together in the next one, each with its own result or its run's error."""

from __future__ import annotations

import asyncio

import pytest

from services.common.batching import Batches

WAIT_S = 5.0


class Recorder:
    """A run that records the batches it was given and waits to be let go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_on: int | None = None

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_on in items:
            raise ValueError(f"refused {self.fail_on}")
        return [item * 10 for item in items]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_calls_during_a_run_go_together_in_the_next_one() -> None:
    recorder = Recorder()
    batches = Batches(recorder.run, max_items=3)
    first = asyncio.create_task(batches.submit(1))
    await settle()
    assert recorder.batches == [[1]]  # alone, at once
    rest = [asyncio.create_task(batches.submit(item)) for item in (2, 3, 4, 5)]
    await settle()
    recorder.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), WAIT_S)
    assert results == [10, 20, 30, 40, 50]
    assert recorder.batches == [[1], [2, 3, 4], [5]]  # at most max_items in one run
    assert (batches.runs, batches.items) == (3, 5)


async def test_a_failing_run_fails_only_its_own_callers() -> None:
    recorder = Recorder()
    recorder.fail_on = 2
    batches = Batches(recorder.run, max_items=2)
    first = asyncio.create_task(batches.submit(1))
    await settle()
    failing = [asyncio.create_task(batches.submit(item)) for item in (2, 3)]
    after = asyncio.create_task(batches.submit(4))
    await settle()
    recorder.release.set()
    assert await asyncio.wait_for(first, WAIT_S) == 10
    for task in failing:
        with pytest.raises(ValueError, match="refused 2"):
            await asyncio.wait_for(task, WAIT_S)
    assert await asyncio.wait_for(after, WAIT_S) == 40


async def test_a_caller_that_gave_up_before_its_run_is_left_out() -> None:
    recorder = Recorder()
    batches = Batches(recorder.run, max_items=10)
    first = asyncio.create_task(batches.submit(1))
    await settle()
    quitter = asyncio.create_task(batches.submit(2))
    stayer = asyncio.create_task(batches.submit(3))
    await settle()
    quitter.cancel()
    recorder.release.set()
    assert await asyncio.wait_for(stayer, WAIT_S) == 30
    assert await asyncio.wait_for(first, WAIT_S) == 10
    assert recorder.batches == [[1], [3]]
