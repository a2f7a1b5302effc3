"""The webhook outbox on SQLite and PostgreSQL: events exist exactly when their transaction
committed, a claim is exclusive until its lease runs out, failed sends come back later, and
dispatchers of several replicas never hold (or send) one event at the same time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from protos.cairn.v1 import hooks_pb2
from services.common.db import (
    create_engine,
    is_sqlite,
    new_metadata,
    read_session_factory,
    session_factory,
)
from services.common.hook_events import (
    DRIFT_DETECTED,
    Outbox,
    OutboxDispatcher,
    add_event,
    hook_event,
    outbox_table,
    retry_delay,
)

METADATA = new_metadata()
TABLE = outbox_table(METADATA, "test_hook_outbox")
WAIT_S = 10.0


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, timeout_seconds=5.0)
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


def outbox_on(engine: AsyncEngine) -> Outbox:
    return Outbox(session_factory(engine), read_session_factory(engine), TABLE, engine.dialect.name)


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(TABLE)) or 0)


async def until_empty(engine: AsyncEngine) -> None:
    """Bounded wait until every row was sent."""
    for _ in range(int(WAIT_S * 3 / 0.05)):
        if not await count(engine):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await count(engine)} events were never sent")


async def test_an_event_exists_only_when_its_transaction_committed(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            await add_event(session, TABLE, hook_event("stack-1", "update_failed", at=time.time()))
            raise RuntimeError("the change failed")
    assert await count(engine) == 0
    async with sessions.begin() as session:
        await add_event(session, TABLE, hook_event("stack-1", "update_succeeded", at=time.time()))
    assert await count(engine) == 1


async def test_publish_is_idempotent_by_id_and_any_kind_can_be_published(
    engine: AsyncEngine,
) -> None:
    outbox = outbox_on(engine)
    event = hook_event("stack-1", DRIFT_DETECTED, at=time.time(), organization="acme", project="p")
    await outbox.publish(event)
    await outbox.publish(event)
    assert await count(engine) == 1
    (claimed,) = await outbox.claim("a", time.time(), 60.0, 10)
    assert claimed.request == event
    assert claimed.attempts == 1


async def test_a_claim_is_exclusive_until_its_lease_runs_out(engine: AsyncEngine) -> None:
    outbox = outbox_on(engine)
    for index in range(3):
        await outbox.publish(hook_event(f"stack-{index}", "stack_created", at=time.time()))
    now = time.time()
    first = await outbox.claim("a", now, 30.0, 2)
    second = await outbox.claim("b", now, 30.0, 10)
    assert len(first) == 2 and len(second) == 1
    assert not {row.id for row in first} & {row.id for row in second}
    assert await outbox.claim("c", now + 1, 30.0, 10) == []
    # The claims ran out (their dispatcher died): the rows are due again, attempts counted.
    again = await outbox.claim("c", now + 31, 30.0, 10)
    assert len(again) == 3
    assert {row.attempts for row in again} == {2}


async def test_a_failed_send_comes_back_after_a_backoff(engine: AsyncEngine) -> None:
    outbox = outbox_on(engine)
    await outbox.publish(hook_event("stack-1", "update_failed", at=time.time()))
    calls: list[float] = []

    async def send(request: hooks_pb2.PublishEventRequest) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("the stacks service is down")

    dispatcher = OutboxDispatcher(outbox, send, lease_seconds=30.0, poll_seconds=0.05)
    dispatcher.start()
    try:
        await until_empty(engine)
    finally:
        await dispatcher.close()
    assert len(calls) == 2
    # The first retry waits between half and all of the base delay.
    assert calls[1] - calls[0] >= retry_delay(1) / 2 - 0.05


@pytest.mark.postgres
async def test_two_dispatchers_on_postgresql_never_send_one_event_twice(
    postgres_url: str,
) -> None:
    assert not is_sqlite(postgres_url)
    engines = [create_engine(postgres_url, timeout_seconds=5.0) for _ in range(2)]
    try:
        async with engines[0].begin() as connection:
            await connection.run_sync(METADATA.create_all)
        total = 200
        async with session_factory(engines[0]).begin() as session:
            for index in range(total):
                await add_event(
                    session, TABLE, hook_event(f"stack-{index}", "stack_created", at=time.time())
                )
        sent: Counter[str] = Counter()
        in_flight: set[str] = set()
        overlaps: list[str] = []

        async def send(request: hooks_pb2.PublishEventRequest) -> None:
            if request.id in in_flight:
                overlaps.append(request.id)
            in_flight.add(request.id)
            await asyncio.sleep(0.001)
            in_flight.discard(request.id)
            sent[request.id] += 1

        dispatchers = [
            OutboxDispatcher(outbox_on(engine), send, lease_seconds=60.0, poll_seconds=0.02)
            for engine in engines
        ]
        # Both claim at once, in lockstep, on separate connections.
        claims = await asyncio.gather(
            *(
                outbox_on(engine).claim(f"r{i}", time.time(), 60.0, 150)
                for i, engine in enumerate(engines)
            )
        )
        first, second = ({row.id for row in rows} for rows in claims)
        assert not first & second
        assert len(first) + len(second) == total
        # Give the rows back and let two running dispatchers race for them.
        async with engines[0].begin() as connection:
            await connection.execute(text("UPDATE test_hook_outbox SET available_at = 0"))
        for dispatcher in dispatchers:
            dispatcher.start()
        try:
            await until_empty(engines[0])
        finally:
            for dispatcher in dispatchers:
                await dispatcher.close()
        assert overlaps == []
        assert len(sent) == total
        assert set(sent.values()) == {1}
    finally:
        for engine in engines:
            await engine.dispose()
