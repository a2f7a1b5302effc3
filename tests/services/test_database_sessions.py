"""The two kinds of transaction on the embedded SQLite file: reads never wait for the write
lock, writers of one process take their turns in arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import create_engine, read_session_factory, session_factory
from services.common.errors import Unavailable

WAIT_S = 5.0


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}", timeout_seconds=5.0)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (n INTEGER)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_read_does_not_wait_for_a_writer(engine: AsyncEngine) -> None:
    writes = session_factory(engine)
    reads = read_session_factory(engine)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with writes.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    async with asyncio.timeout(WAIT_S):
        await holding.wait()
        async with reads.begin() as session:  # the writer holds the write lock meanwhile
            assert await session.scalar(text("SELECT count(*) FROM t")) == 0
    release.set()
    await task
    async with reads.begin() as session:
        assert await session.scalar(text("SELECT count(*) FROM t")) == 1


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "t2"
    n: Mapped[int] = mapped_column(primary_key=True)


async def test_a_read_session_refuses_to_write(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="read-only"):
        async with read_session_factory(engine).begin() as session:
            session.add(Row(n=1))


async def test_writers_take_turns_in_arrival_order(engine: AsyncEngine) -> None:
    writes = session_factory(engine)
    order: list[int] = []

    async def writer(n: int) -> None:
        async with writes.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            order.append(n)

    async with asyncio.timeout(WAIT_S):
        first = asyncio.create_task(writer(0))
        await asyncio.sleep(0)
        tasks = [first]
        for n in range(1, 20):
            tasks.append(asyncio.create_task(writer(n)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_a_turn_not_given_in_time_is_a_busy_database(engine: AsyncEngine) -> None:
    writes = session_factory(engine, queue_timeout_seconds=0.2)
    release = asyncio.Event()
    holding = asyncio.Event()

    async def holder() -> None:
        async with writes.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await release.wait()

    task = asyncio.create_task(holder())
    async with asyncio.timeout(WAIT_S):
        await holding.wait()
        with pytest.raises(Unavailable):
            async with writes.begin() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
    release.set()
    await task


async def test_a_connection_given_back_mid_transaction_is_rolled_back(
    engine: AsyncEngine,
) -> None:
    """The pool skips the rollback round trip for connections whose transaction ended, but
    one given back with a transaction still open (begun on the driver) is rolled back."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("INSERT INTO t VALUES (1)")
        assert driver.in_transaction
    # The write lock was released and nothing was kept: the next writer goes straight in.
    async with asyncio.timeout(WAIT_S), session_factory(engine).begin() as session:
        await session.execute(text("INSERT INTO t VALUES (2)"))
    async with read_session_factory(engine).begin() as session:
        assert list((await session.scalars(text("SELECT n FROM t"))).all()) == [2]
    assert not driver.in_transaction
