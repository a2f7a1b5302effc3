"""PostgreSQL connections of the pool: handed out without a ping while recently used, pinged
after idling, replaced once the server closed them; statements run by the driver itself
answer a broken connection as 503 and do not pool it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util.concurrency import greenlet_spawn

from services.common import db
from services.common.db import DATABASE_DOWN, create_engine, driver_statements
from services.common.errors import Unavailable
from tests.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.empty_database]

WAIT_S = 5.0


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0, timeout_seconds=5.0)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _queries_on_checkout(engine: AsyncEngine) -> list[str]:
    """What goes over the pooled connection when a read checks it out."""
    seen: list[str] = []

    def logged(record: Any) -> None:
        seen.append(record.query)

    raw = await engine.raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    driver.add_query_logger(logged)
    await _close(raw)
    try:
        await _backend_pid(engine)
    finally:
        driver.remove_query_logger(logged)
    return [query for query in seen if "pg_backend_pid" not in query]


async def _close(raw: Any) -> None:
    await greenlet_spawn(raw.close)


async def test_a_connection_used_moments_ago_is_not_pinged(engine: AsyncEngine) -> None:
    await _backend_pid(engine)
    # The transaction's own BEGIN and ROLLBACK only: no empty query before them.
    assert await _queries_on_checkout(engine) == ["BEGIN;", "ROLLBACK;"]


async def test_an_idle_connection_is_pinged_first(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _backend_pid(engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert ";" in await _queries_on_checkout(engine)


async def test_a_connection_the_server_closed_is_replaced(engine: AsyncEngine) -> None:
    raw = await engine.raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    first = int(await driver.fetchval("SELECT pg_backend_pid()"))
    await _close(raw)
    terminator = create_engine(engine.url.render_as_string(hide_password=False))
    try:
        async with terminator.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    finally:
        await terminator.dispose()

    async def closed() -> bool:
        return bool(driver.is_closed())

    await eventually(
        closed, "the driver to see its connection closed", seconds=WAIT_S, interval=0.02
    )
    # No failed call: the pool sees the closed connection and opens another.
    assert await _backend_pid(engine) != first


async def test_driver_statements_answer_a_broken_connection_as_unavailable(
    engine: AsyncEngine,
) -> None:
    statements = driver_statements(engine)
    assert statements is not None
    assert await statements.value(statements.compile(select(func.abs(-2))), {}) == 2
    first = await _backend_pid(engine)
    suicide = statements.compile(select(func.pg_terminate_backend(func.pg_backend_pid())))
    with pytest.raises(Unavailable) as refused:
        await statements.value(suicide, {})
    assert refused.value.message == DATABASE_DOWN
    # The broken connection was thrown away: the next statement gets a new one.
    assert await statements.value(statements.compile(select(func.abs(-3))), {}) == 3
    assert await _backend_pid(engine) != first


async def test_no_driver_statements_on_sqlite(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}")
    try:
        assert driver_statements(engine) is None
    finally:
        await engine.dispose()


async def test_driver_statements_without_a_database_are_unavailable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none", timeout_seconds=2.0)
    try:
        statements = driver_statements(engine)
        assert statements is not None
        with pytest.raises(Unavailable) as refused:
            await statements.value(statements.compile(select(func.abs(-2))), {})
        assert refused.value.message == DATABASE_DOWN
    finally:
        await engine.dispose()
