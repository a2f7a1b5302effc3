"""Turns at an SQLite file's write lock: the update path's appends and every other write
transaction wait in two first-come lines that alternate, so a running update's journal write
never waits behind a crowd of updates being created, started and completed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import (
    WriterQueue,
    WriteTurns,
    create_engine,
    group_writer,
    session_factory,
)
from services.common.errors import Unavailable

WAIT_S = 5.0


async def settle() -> None:
    """Let every task that can run do so."""
    for _ in range(20):
        await asyncio.sleep(0)


async def take(turns: WriteTurns, name: str, update_path: bool, order: list[str]) -> None:
    await turns.acquire(update_path=update_path)
    order.append(name)
    turns.release()


async def test_the_two_lines_alternate_and_each_keeps_its_order() -> None:
    turns = WriteTurns()
    await turns.acquire(update_path=False)
    order: list[str] = []
    arrivals = [("o1", False), ("o2", False), ("u1", True), ("o3", False), ("u2", True)]
    tasks = []
    for name, update_path in arrivals:
        tasks.append(asyncio.create_task(take(turns, name, update_path, order)))
        await settle()
    turns.release()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    # The holder was an other write: the update path goes next, then one each in turn.
    assert order == ["u1", "o1", "u2", "o2", "o3"]


async def test_one_line_alone_is_first_come_first_served() -> None:
    turns = WriteTurns()
    await turns.acquire(update_path=True)
    order: list[str] = []
    tasks = []
    for name in ("a", "b", "c"):
        tasks.append(asyncio.create_task(take(turns, name, False, order)))
        await settle()
    turns.release()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    assert order == ["a", "b", "c"]


@dataclass
class Quitting:
    """A held turn, then a waiter that will give up (the quitter) and one that stays."""

    turns: WriteTurns
    quitter: asyncio.Task[None]
    stayer: asyncio.Task[None]
    order: list[str]

    async def stayer_alone_took_its_turn(self) -> None:
        await asyncio.wait_for(self.stayer, WAIT_S)
        assert self.order == ["stayer"]


async def quitting(*, quitter_on_update_path: bool, stayer_on_update_path: bool) -> Quitting:
    turns = WriteTurns()
    await turns.acquire(update_path=False)
    order: list[str] = []
    quitter = asyncio.create_task(turns.acquire(update_path=quitter_on_update_path))
    await settle()
    stayer = asyncio.create_task(take(turns, "stayer", stayer_on_update_path, order))
    await settle()
    return Quitting(turns, quitter, stayer, order)


async def test_a_waiter_that_gives_up_leaves_its_line_and_the_next_gets_the_turn() -> None:
    case = await quitting(quitter_on_update_path=True, stayer_on_update_path=True)
    case.quitter.cancel()
    await settle()
    case.turns.release()
    await case.stayer_alone_took_its_turn()
    # Nobody holds the turn now: it is had at once.
    await asyncio.wait_for(case.turns.acquire(update_path=False), WAIT_S)
    case.turns.release()


async def test_a_waiter_dropped_by_a_release_before_it_woke_up_ends_cancelled() -> None:
    case = await quitting(quitter_on_update_path=False, stayer_on_update_path=False)
    case.quitter.cancel()
    case.turns.release()  # before the quitter's task runs again
    with pytest.raises(asyncio.CancelledError):
        await case.quitter
    await case.stayer_alone_took_its_turn()


async def test_a_turn_handed_to_a_waiter_that_gave_up_is_passed_on() -> None:
    case = await quitting(quitter_on_update_path=False, stayer_on_update_path=False)
    # The turn is handed to the quitter, which is cancelled before it runs again.
    case.turns.release()
    case.quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await case.quitter
    await case.stayer_alone_took_its_turn()


async def test_waiting_longer_than_the_timeout_is_a_busy_database() -> None:
    queue = WriterQueue("busy.db", timeout_seconds=0.05)
    async with queue.turn():
        with pytest.raises(Unavailable):
            async with queue.turn(update_path=True):
                pass
    # The one that gave up left nothing behind.
    async with asyncio.timeout(WAIT_S), queue.turn(update_path=True):
        pass


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}", timeout_seconds=5.0)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, who TEXT)"))
    try:
        yield engine
    finally:
        await engine.dispose()


def append_row(connection: sqlite3.Connection) -> None:
    connection.execute("INSERT INTO t (who) VALUES ('append')")


async def test_an_append_waits_for_one_transaction_not_for_every_one_queued(
    engine: AsyncEngine,
) -> None:
    """Twenty write transactions queued before a group append: it commits second."""
    sessions = session_factory(engine, queue_timeout_seconds=WAIT_S)
    group = group_writer(engine, queue_timeout_seconds=WAIT_S)
    assert group is not None
    holder_may_finish = asyncio.Event()

    async def transaction(who: str, wait: asyncio.Event | None = None) -> None:
        async with sessions.begin() as session:
            await session.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})
            if wait is not None:
                await wait.wait()

    try:
        holder = asyncio.create_task(transaction("holder", holder_may_finish))
        await settle()
        crowd = [asyncio.create_task(transaction(f"other{i}")) for i in range(20)]
        await settle()
        append = asyncio.create_task(group.write(append_row))
        await settle()
        holder_may_finish.set()
        await asyncio.wait_for(asyncio.gather(holder, append, *crowd), WAIT_S)
    finally:
        await group.close()
    async with engine.connect() as connection:
        committed = (await connection.execute(text("SELECT who FROM t ORDER BY n"))).scalars().all()
    assert committed[:3] == ["holder", "append", "other0"]
    assert sorted(committed[3:]) == sorted(f"other{i}" for i in range(1, 20))
