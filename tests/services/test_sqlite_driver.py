"""The SQLite engine's statements take one trip each to the driver's thread and answer exactly
as SQLAlchemy's stock aiosqlite adapter does: rows, row counts, last row ids, RETURNING,
executemany, errors and rollbacks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import create_engine, read_session_factory, session_factory
from services.common.sqlite_driver import OneTripCursor


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    size: Mapped[int] = mapped_column(Integer, default=0)


async def _ready(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _ready(
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}", timeout_seconds=5.0)
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def stock(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _ready(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _script(engine: AsyncEngine) -> list[Any]:
    """The same statements on either engine; everything they answer."""
    seen: list[Any] = []
    async with engine.begin() as connection:
        inserted = await connection.execute(insert(Item).values(name="a", size=1))
        seen.append((inserted.rowcount, inserted.inserted_primary_key))
        many = await connection.execute(
            insert(Item), [{"name": "b", "size": 2}, {"name": "c", "size": 3}]
        )
        seen.append(many.rowcount)
        changed = await connection.execute(update(Item).where(Item.size >= 2).values(size=9))
        seen.append(changed.rowcount)
        returned = await connection.execute(
            update(Item).where(Item.name == "a").values(size=5).returning(Item.id, Item.size)
        )
        seen.append([tuple(row) for row in returned])
        rows = await connection.execute(select(Item.name, Item.size).order_by(Item.name))
        seen.append([tuple(row) for row in rows])
        seen.append(list(rows.keys()))
        seen.append(await connection.scalar(select(func.count()).select_from(Item)))
        nothing = await connection.execute(select(Item).where(Item.name == "z"))
        seen.append(nothing.first())
        raw = await connection.exec_driver_sql("SELECT name FROM items WHERE size = ?", (9,))
        seen.append(sorted(raw.scalars()))
        with pytest.raises(IntegrityError):
            await connection.execute(insert(Item).values(name="a"))
        seen.append(await connection.scalar(select(func.count()).select_from(Item)))
    return seen


async def test_statements_answer_as_with_the_stock_adapter(
    engine: AsyncEngine, stock: AsyncEngine
) -> None:
    assert await _script(engine) == await _script(stock)


async def test_the_engine_uses_one_trip_cursors(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection.cursor(), OneTripCursor)  # type: ignore[union-attr]


async def test_orm_sessions_commit_and_roll_back(engine: AsyncEngine) -> None:
    writes = session_factory(engine)
    reads = read_session_factory(engine)
    async with writes.begin() as session:
        session.add(Item(name="kept", size=1))
    with pytest.raises(RuntimeError):
        async with writes.begin() as session:
            session.add(Item(name="dropped", size=2))
            await session.flush()
            raise RuntimeError("give up")
    async with reads.begin() as session:
        names = (await session.scalars(select(Item.name))).all()
        kept = await session.get(Item, 1)
    assert names == ["kept"]
    assert kept is not None and kept.size == 1


async def test_a_bad_statement_raises_the_driver_error_and_the_connection_goes_on(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        with pytest.raises(OperationalError) as caught:
            await connection.execute(text("SELECT * FROM no_such_table"))
        assert isinstance(caught.value.orig, sqlite3.OperationalError)
        await connection.rollback()
        assert await connection.scalar(text("SELECT 41 + 1")) == 42


async def test_streamed_results_still_work(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(Item), [{"name": f"n{i}", "size": i} for i in range(50)])
    async with engine.connect() as connection:
        result = await connection.stream(select(Item.size).order_by(Item.size))
        sizes = [size async for size in result.scalars()]
    assert sizes == list(range(50))


async def test_a_transaction_begins_before_its_first_statement_even_a_streamed_one(
    engine: AsyncEngine,
) -> None:
    """BEGIN rides with a transaction's first statement; a streamed first statement (run on
    the stock cursor) still runs inside the transaction, and a transaction that ran nothing
    leaves none open."""
    async with engine.begin() as connection:
        await connection.execute(insert(Item), [{"name": "a", "size": 1}])
    for stream_first in (False, True):
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection._conn  # type: ignore[union-attr]
            async with connection.begin():
                assert not driver.in_transaction  # nothing sent yet
                if stream_first:
                    result = await connection.stream(select(Item.size))
                    assert [size async for size in result.scalars()] == [1]
                else:
                    assert await connection.scalar(select(Item.size)) == 1
                assert driver.in_transaction
            assert not driver.in_transaction
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection._conn  # type: ignore[union-attr]
        async with connection.begin():
            pass
        assert not driver.in_transaction
        assert await connection.scalar(select(func.count()).select_from(Item)) == 1
