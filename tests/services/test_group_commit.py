"""Group commit on SQLite: writes that queued together commit in one transaction, each in its
own savepoint, so one refused write writes nothing and the others of its group still commit;
an answered write is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from protos.cairn.v1 import updates_pb2, updates_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import (
    GroupWriter,
    create_engine,
    group_writer,
    read_session_factory,
    session_factory,
)
from services.common.errors import DomainError, FailedPrecondition, Unauthenticated, Unavailable
from services.updates import server as updates_server
from services.updates.domain import EngineEvent, LeaseRef, StackPath
from services.updates.store import UpdateStore
from tests.conftest import signed_channel

WAIT_S = 5.0


class Refused(DomainError):
    """What a write's own check raises in these tests."""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}", timeout_seconds=5.0)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def group(engine: AsyncEngine) -> AsyncIterator[GroupWriter]:
    writer = group_writer(engine, queue_timeout_seconds=WAIT_S)
    assert writer is not None
    try:
        yield writer
    finally:
        await writer.close()


def insert(n: int, *, refuse: bool = False) -> Any:
    def write(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t (n) VALUES (?)", (n,))
        if refuse:  # after its insert: the savepoint must take the row back
            raise Refused(f"refused {n}")
        return n

    return write


async def rows(engine: AsyncEngine) -> list[int]:
    async with read_session_factory(engine).begin() as session:
        return list((await session.scalars(text("SELECT n FROM t ORDER BY n"))).all())


async def until_queued(group: GroupWriter, count: int) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if group.queued >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{group.queued} writes queued, not {count}")


async def queued_behind_a_writer(
    engine: AsyncEngine, group: GroupWriter, writes: list[Any]
) -> list[Any]:
    """Run `writes` while another writer of the file holds its turn, so they queue together;
    then let the writer finish. Each write's value or error, in order."""
    holding = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with session_factory(engine).begin() as session:
            await session.execute(text("INSERT INTO t (n) VALUES (1000)"))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(writer())
    async with asyncio.timeout(WAIT_S):
        await holding.wait()
        tasks = [asyncio.create_task(group.write(write)) for write in writes]
        await until_queued(group, len(writes))
        release.set()
        await holder
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_writes_that_queue_together_commit_in_one_group(
    engine: AsyncEngine, group: GroupWriter
) -> None:
    outcomes = await queued_behind_a_writer(
        engine, group, [insert(1), insert(2, refuse=True), insert(3), insert(4)]
    )
    assert outcomes[0] == 1 and outcomes[2] == 3 and outcomes[3] == 4
    assert isinstance(outcomes[1], Refused)
    assert (group.groups, group.writes) == (1, 4)
    # The refused write's insert was rolled back; the writer ahead of the group committed.
    assert await rows(engine) == [1, 3, 4, 1000]


async def test_a_write_failing_in_sqlite_does_not_fail_its_group(
    engine: AsyncEngine, group: GroupWriter
) -> None:
    outcomes = await queued_behind_a_writer(engine, group, [insert(1), insert(1), insert(2)])
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], sqlite3.IntegrityError)  # the same key twice
    assert await rows(engine) == [1, 2, 1000]


async def test_an_answered_write_is_on_disk(
    engine: AsyncEngine, group: GroupWriter, tmp_path: Path
) -> None:
    for n in range(1, 4):
        assert await group.write(insert(n)) == n
        # A connection of its own (as another process would have) sees it at once.
        other = sqlite3.connect(tmp_path / "cairn.db")
        try:
            assert other.execute("SELECT n FROM t WHERE n = ?", (n,)).fetchone() == (n,)
        finally:
            other.close()
    assert group.groups == 3


async def test_a_closed_group_writer_refuses_writes(group: GroupWriter) -> None:
    await group.close()
    with pytest.raises(Unavailable):
        await group.write(insert(1))


async def test_a_caller_that_gave_up_before_its_group_writes_nothing(
    engine: AsyncEngine, group: GroupWriter
) -> None:
    holding = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with session_factory(engine).begin():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(writer())
    async with asyncio.timeout(WAIT_S):
        await holding.wait()
        gone = asyncio.create_task(group.write(insert(7)))
        kept = asyncio.create_task(group.write(insert(8)))
        await until_queued(group, 2)
        gone.cancel()
        release.set()
        await holder
        assert await kept == 8
    assert await rows(engine) == [8]


# -- the update store's fenced appends in one group -------------------------------------


async def rpc(call: Awaitable[Any]) -> Any:
    async with asyncio.timeout(WAIT_S * 4):
        return await call


async def test_fenced_appends_in_one_group_refuse_only_the_stale_lease(settings: Settings) -> None:
    clock = ManualClock()
    service = await updates_server.start(settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(settings, f"127.0.0.1:{service.port}")
    engine = create_engine(settings.resolved_database_url(), timeout_seconds=WAIT_S)
    group = group_writer(engine, queue_timeout_seconds=WAIT_S)
    assert group is not None
    try:
        stub = updates_pb2_grpc.UpdatesServiceStub(channel)
        leases: list[LeaseRef] = []
        for stack_id in ("stack-1", "stack-2"):
            created = await rpc(
                stub.CreateUpdate(
                    updates_pb2.CreateUpdateRequest(stack_id=stack_id, kind="update", program=b"{}")
                )
            )
            started = await rpc(
                stub.StartUpdate(
                    updates_pb2.StartUpdateRequest(
                        stack_id=stack_id, update_id=created.update_id, journal_version=1
                    )
                )
            )
            leases.append(LeaseRef(created.update_id, started.token, StackPath()))
        one, two = leases
        store = UpdateStore(
            session_factory(engine), "sqlite", read_session_factory(engine), group=group
        )
        now = clock.now()
        forged = LeaseRef(one.update_id, "not-the-lease", StackPath())
        elsewhere = LeaseRef(one.update_id, one.token, StackPath("other", "web", "dev"))
        event = EngineEvent(1, 0, "diagnosticEvent", b"{}")
        writes = [
            store.append_journal(one, now, [(1, b"a")]),
            store.append_journal(forged, now, [(2, b"forged")]),
            store.append_events(one, now + 3600.0, [event], {"create": 9}),  # lease ran out
            store.append_journal(elsewhere, now, [(3, b"elsewhere")]),
            store.append_events(two, now, [event], {"create": 1}),
            store.append_journal(two, now, [(1, b"b")]),
        ]
        holding = asyncio.Event()
        release = asyncio.Event()

        async def writer() -> None:
            async with session_factory(engine).begin():
                holding.set()
                await release.wait()

        holder = asyncio.create_task(writer())
        async with asyncio.timeout(WAIT_S * 4):
            await holding.wait()
            tasks = [asyncio.ensure_future(write) for write in writes]
            await until_queued(group, len(writes))
            release.set()
            await holder
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert (group.groups, group.writes) == (1, len(writes))
        assert outcomes[0] is None and outcomes[4] is None and outcomes[5] is None
        assert isinstance(outcomes[1], Unauthenticated)
        assert isinstance(outcomes[2], FailedPrecondition)
        assert str(outcomes[2]) == "Conflict: The Update has already timed out"
        assert str(outcomes[3]) == "Not Found: Update"

        # Only the current leases wrote: entries, counts and resource changes.
        assert await store.journal(one.update_id) == [b"a"]
        assert await store.journal(two.update_id) == [b"b"]
        first = await store.get("stack-1", one.update_id)
        second = await store.get("stack-2", two.update_id)
        assert first.journal_entry_count == 1 and first.resource_changes == {}
        assert second.journal_entry_count == 1 and second.resource_changes == {"create": 1}
        listed = await rpc(
            stub.ListEngineEvents(
                updates_pb2.ListEngineEventsRequest(stack_id="stack-1", update_id=one.update_id)
            )
        )
        assert list(listed.events) == []
        listed = await rpc(
            stub.ListEngineEvents(
                updates_pb2.ListEngineEventsRequest(stack_id="stack-2", update_id=two.update_id)
            )
        )
        assert [event.sequence for event in listed.events] == [1]
    finally:
        await group.close()
        await engine.dispose()
        await channel.close(None)
        await service.stop(0)
