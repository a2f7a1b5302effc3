"""The updates service over real gRPC: leases with an injected clock, fencing, Redis locks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from protos.cairn.v1 import updates_pb2, updates_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import (
    create_engine,
    create_migration_engine,
    driver_statements,
    is_sqlite,
    session_factory,
)
from services.common.migrations import version_table
from services.common.service import RunningService
from services.updates import server as updates_server
from services.updates.domain import EngineEvent, LeaseRef, StackPath
from services.updates.lease import KEY_PREFIX, RedisStackLock
from services.updates.models import Base
from services.updates.store import UpdateStore
from tests.conftest import REDIS_URL, make_settings, redis_available, signed_channel
from tests.gateway.cli import single_edit

UNTYPED = (
    b'{"version":3,"deployment":{"manifest":'
    b'{"time":"2026-11-22T10:00:00Z","magic":"","version":"v"}}}'
)


@dataclass
class Harness:
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub
    clock: ManualClock
    settings: Settings


async def _serve(settings: Settings, clock: ManualClock) -> tuple[RunningService, grpc.aio.Channel]:
    service = await updates_server.start(settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(settings, f"127.0.0.1:{service.port}")
    return service, channel


@pytest.fixture
async def harness(any_settings: Settings) -> AsyncIterator[Harness]:
    clock = ManualClock()
    service, channel = await _serve(any_settings, clock)
    try:
        yield Harness(updates_pb2_grpc.UpdatesServiceStub(channel), clock, any_settings)
    finally:
        await channel.close(None)
        await service.stop(0)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def create(stub: updates_pb2_grpc.UpdatesServiceAsyncStub, stack_id: str) -> str:
    reply = await stub.CreateUpdate(
        updates_pb2.CreateUpdateRequest(stack_id=stack_id, kind="update", program=b"{}")
    )
    return reply.update_id


async def start(
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub, stack_id: str
) -> tuple[str, updates_pb2.StartUpdateResponse]:
    update_id = await create(stub, stack_id)
    started = await stub.StartUpdate(
        updates_pb2.StartUpdateRequest(stack_id=stack_id, update_id=update_id)
    )
    return update_id, started


def lease(update_id: str, started: updates_pb2.StartUpdateResponse) -> updates_pb2.LeaseRef:
    return updates_pb2.LeaseRef(update_id=update_id, token=started.token)


async def checkpoint(
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub, ref: updates_pb2.LeaseRef, body: bytes
) -> None:
    await stub.PatchCheckpoint(
        updates_pb2.PatchCheckpointRequest(lease=ref, untyped_deployment=body)
    )


def with_outputs(marker: str) -> bytes:
    return orjson.dumps(
        {
            "version": 3,
            "deployment": {
                "manifest": {"time": "2026-11-22T10:00:00Z", "magic": "", "version": "v"},
                "resources": [
                    {
                        "urn": f"urn:pulumi:dev::web::pulumi:pulumi:Stack::{marker}",
                        "type": "pulumi:pulumi:Stack",
                    }
                ],
            },
        }
    )


async def test_an_expired_lease_lets_the_next_update_take_over(harness: Harness) -> None:
    stub = harness.stub
    stale_id, stale = await start(stub, "stack-1")
    assert stale.version == 1 and stale.token
    await checkpoint(stub, lease(stale_id, stale), with_outputs("stale"))

    blocked = await rpc_error(start(stub, "stack-1"))
    assert blocked.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert blocked.details() == "Conflict: Another update is currently in progress."

    harness.clock.advance(301)
    # Expired but not yet taken over: writes are refused, renewal says 403.
    late = await rpc_error(checkpoint(stub, lease(stale_id, stale), with_outputs("late")))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert late.details() == "Conflict: The Update has already timed out"
    renew = await rpc_error(
        stub.RenewLease(
            updates_pb2.RenewLeaseRequest(lease=lease(stale_id, stale), duration_seconds=300)
        )
    )
    assert renew.code() == grpc.StatusCode.PERMISSION_DENIED

    fresh_id, fresh = await start(stub, "stack-1")
    assert fresh.version == 2
    # The stale holder is fenced out for good; the newcomer's state wins.
    await checkpoint(stub, lease(fresh_id, fresh), with_outputs("fresh"))
    fenced = await rpc_error(checkpoint(stub, lease(stale_id, stale), with_outputs("stale2")))
    assert fenced.code() == grpc.StatusCode.FAILED_PRECONDITION
    exported = await stub.ExportDeployment(updates_pb2.ExportDeploymentRequest(stack_id="stack-1"))
    assert exported.untyped_deployment == with_outputs("fresh")
    # The abandoned update kept what it had written, as version 1, and failed.
    first = await stub.ExportDeployment(
        updates_pb2.ExportDeploymentRequest(stack_id="stack-1", version=1)
    )
    assert first.untyped_deployment == with_outputs("stale")
    info = await stub.GetUpdate(updates_pb2.GetUpdateRequest(stack_id="stack-1", version=1))
    assert info.result == "failed"


async def test_renewal_extends_the_lease(harness: Harness) -> None:
    stub = harness.stub
    update_id, started = await start(harness.stub, "stack-1")
    harness.clock.advance(200)
    renewed = await stub.RenewLease(
        updates_pb2.RenewLeaseRequest(lease=lease(update_id, started), duration_seconds=300)
    )
    assert renewed.token == started.token
    assert renewed.token_expiration == int(harness.clock.now()) + 300
    harness.clock.advance(200)
    await checkpoint(stub, lease(update_id, started), UNTYPED)
    out_of_range = await rpc_error(
        stub.RenewLease(
            updates_pb2.RenewLeaseRequest(lease=lease(update_id, started), duration_seconds=-1)
        )
    )
    assert out_of_range.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_previews_never_take_the_stack_or_change_its_version(harness: Harness) -> None:
    stub = harness.stub
    holder_id, holder = await start(stub, "stack-1")
    reply = await stub.CreateUpdate(
        updates_pb2.CreateUpdateRequest(
            stack_id="stack-1", kind="update", program=b"{}", is_dry_run=True
        )
    )
    preview = await stub.StartUpdate(
        updates_pb2.StartUpdateRequest(
            stack_id="stack-1", update_id=reply.update_id, journal_version=1
        )
    )
    # The version the running update holds; a preview never moves it.
    assert preview.token and preview.version == 1 and preview.journal_version == 0
    await stub.CompleteUpdate(
        updates_pb2.CompleteUpdateRequest(lease=lease(reply.update_id, preview), status="succeeded")
    )
    await stub.CompleteUpdate(
        updates_pb2.CompleteUpdateRequest(lease=lease(holder_id, holder), status="succeeded")
    )
    (state,) = (
        await stub.GetStackStates(updates_pb2.GetStackStatesRequest(stack_ids=["stack-1"]))
    ).states
    assert state.version == 1 and state.active_update == ""
    history = await stub.ListUpdates(updates_pb2.ListUpdatesRequest(stack_id="stack-1"))
    assert [u.update_id for u in history.updates] == [holder_id]


async def test_purge_forgets_everything(harness: Harness) -> None:
    stub = harness.stub
    update_id, started = await start(stub, "stack-1")
    await checkpoint(stub, lease(update_id, started), UNTYPED)
    await stub.CompleteUpdate(
        updates_pb2.CompleteUpdateRequest(lease=lease(update_id, started), status="succeeded")
    )
    await stub.PurgeStack(updates_pb2.PurgeStackRequest(stack_id="stack-1"))
    missing = await rpc_error(
        stub.ExportDeployment(updates_pb2.ExportDeploymentRequest(stack_id="stack-1", version=1))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    history = await stub.ListUpdates(updates_pb2.ListUpdatesRequest(stack_id="stack-1"))
    assert list(history.updates) == [] and history.total == 0


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"version_table": version_table("updates"), "compare_type": True},
    )
    return list(compare_metadata(context, Base.metadata))


@pytest.mark.empty_database
async def test_migrated_schema_matches_the_models(harness: Harness) -> None:
    engine = create_migration_engine(harness.settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
            version = await connection.scalar(
                text(f"SELECT version_num FROM {version_table('updates')}")
            )
            assert version == "updates_0006"
    finally:
        await engine.dispose()


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    if not redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL


@asynccontextmanager
async def two_replicas(
    settings: Settings,
) -> AsyncIterator[list[updates_pb2_grpc.UpdatesServiceAsyncStub]]:
    """Two updates services on the same settings (database and, maybe, Redis)."""
    clock = ManualClock()
    running = [await _serve(settings, clock) for _ in range(2)]
    try:
        yield [updates_pb2_grpc.UpdatesServiceStub(channel) for _, channel in running]
    finally:
        for service, channel in running:
            await channel.close(None)
            await service.stop(0)


@pytest.fixture
async def replicas(
    data_dir: Path, postgres_url: str, redis_url: str
) -> AsyncIterator[list[updates_pb2_grpc.UpdatesServiceAsyncStub]]:
    """Two updates services sharing one PostgreSQL database and one Redis."""
    async with two_replicas(make_settings(data_dir, postgres_url, redis_url=redis_url)) as stubs:
        yield stubs


async def test_two_replicas_with_redis_let_exactly_one_start_win(
    replicas: list[updates_pb2_grpc.UpdatesServiceAsyncStub],
) -> None:
    stack_id = f"stack-{uuid.uuid4().hex}"
    ids = [await create(replicas[n % 2], stack_id) for n in range(20)]
    results = await asyncio.gather(
        *(
            replicas[n % 2].StartUpdate(
                updates_pb2.StartUpdateRequest(stack_id=stack_id, update_id=update_id)
            )
            for n, update_id in enumerate(ids)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, updates_pb2.StartUpdateResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 19
    assert {error.code() for error in losers} == {grpc.StatusCode.FAILED_PRECONDITION}
    (winner,) = winners
    winner_id = ids[results.index(winner)]
    # Completing on the other replica releases the lock for everyone.
    await replicas[1].CompleteUpdate(
        updates_pb2.CompleteUpdateRequest(lease=lease(winner_id, winner), status="succeeded")
    )
    _, again = await start(replicas[0], stack_id)
    assert again.version == 2


async def test_a_stale_redis_key_does_not_wedge_the_stack(
    replicas: list[updates_pb2_grpc.UpdatesServiceAsyncStub], redis_url: str
) -> None:
    import redis.asyncio as redis

    stack_id = f"stack-{uuid.uuid4().hex}"
    client = redis.from_url(redis_url)
    try:
        # A key left behind by a crashed replica, which the database knows nothing of.
        await client.set(KEY_PREFIX + stack_id, "left-behind", px=600_000)
        _, started = await start(replicas[0], stack_id)
        assert started.version == 1
    finally:
        await client.delete(KEY_PREFIX + stack_id)
        await client.aclose()


async def test_unreachable_redis_refuses_starts_with_503_and_changes_nothing(
    data_dir: Path,
) -> None:
    settings = make_settings(
        data_dir,
        f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}",
        redis_url="redis://127.0.0.1:1/0",
        redis_timeout_seconds=0.5,
    )
    service, channel = await _serve(settings, ManualClock())
    stub = updates_pb2_grpc.UpdatesServiceStub(channel)
    try:
        update_id = await create(stub, "stack-1")
        refused = await rpc_error(
            stub.StartUpdate(
                updates_pb2.StartUpdateRequest(stack_id="stack-1", update_id=update_id)
            )
        )
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis" in (refused.details() or "")
        (state,) = (
            await stub.GetStackStates(updates_pb2.GetStackStatesRequest(stack_ids=["stack-1"]))
        ).states
        assert state.version == 0 and state.active_update == ""
        status = await stub.GetUpdateStatus(
            updates_pb2.GetUpdateStatusRequest(stack_id="stack-1", update_id=update_id)
        )
        assert status.status == "not started"
    finally:
        await channel.close(None)
        await service.stop(0)


async def test_redis_lock_scripts_compare_the_token(redis_url: str) -> None:
    lock = RedisStackLock.from_url(redis_url, 2.0)
    stack_id = f"stack-{uuid.uuid4().hex}"
    try:
        assert await lock.acquire(stack_id, "one", 30) is None
        assert await lock.acquire(stack_id, "two", 30) == "one"
        await lock.release(stack_id, "two")  # not ours: nothing happens
        assert await lock.acquire(stack_id, "two", 30) == "one"
        assert not await lock.take_over(stack_id, "zzz", "two", 30)
        assert await lock.take_over(stack_id, "one", "two", 30)
        await lock.renew(stack_id, "two", 30)
        await lock.release(stack_id, "two")
        assert await lock.acquire(stack_id, "three", 30) is None
        await lock.release(stack_id, "three")
    finally:
        await lock.close()


@pytest.fixture
async def sqlite_replicas(
    settings: Settings,
) -> AsyncIterator[list[updates_pb2_grpc.UpdatesServiceAsyncStub]]:
    """Two updates services sharing one SQLite file and no Redis."""
    async with two_replicas(settings) as stubs:
        yield stubs


async def test_without_redis_the_database_row_lets_one_start_win(
    sqlite_replicas: list[updates_pb2_grpc.UpdatesServiceAsyncStub],
) -> None:
    ids = [await create(sqlite_replicas[n % 2], "stack-1") for n in range(10)]
    results = await asyncio.gather(
        *(
            sqlite_replicas[n % 2].StartUpdate(
                updates_pb2.StartUpdateRequest(stack_id="stack-1", update_id=update_id)
            )
            for n, update_id in enumerate(ids)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, updates_pb2.StartUpdateResponse) for r in results) == 1
    assert all(
        isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.FAILED_PRECONDITION
        for r in results
        if not isinstance(r, updates_pb2.StartUpdateResponse)
    )


async def test_deltas_alternating_between_replicas_stay_consistent(
    sqlite_replicas: list[updates_pb2_grpc.UpdatesServiceAsyncStub],
) -> None:
    """Each replica catches its in-memory text up from the deltas the other one stored."""
    import hashlib

    first, second = sqlite_replicas
    update_id, started = await start(first, "stack-1")
    ref = lease(update_id, started)
    names: list[str] = []

    def text() -> bytes:
        resources = [
            {"urn": f"urn:pulumi:dev::web::random:index/randomPet:RandomPet::{n}", "type": "t"}
            for n in names
        ]
        return orjson.dumps(
            {"version": 3, "deployment": {"manifest": {"time": "t"}, "resources": resources}}
        )

    current = text()
    await first.PatchCheckpointVerbatim(
        updates_pb2.PatchCheckpointVerbatimRequest(
            lease=ref, untyped_deployment=current, sequence_number=1
        )
    )
    for sequence in range(2, 40):
        names.append(f"pet{sequence}")
        following = text()
        stub = sqlite_replicas[sequence % 2]
        await stub.PatchCheckpointDelta(
            updates_pb2.PatchCheckpointDeltaRequest(
                lease=ref,
                deployment_delta=orjson.dumps(single_edit(current, following)),
                checkpoint_hash=hashlib.sha256(following).hexdigest(),
                sequence_number=sequence,
            )
        )
        current = following
    await second.CompleteUpdate(updates_pb2.CompleteUpdateRequest(lease=ref, status="succeeded"))
    exported = await first.ExportDeployment(updates_pb2.ExportDeploymentRequest(stack_id="stack-1"))
    assert exported.untyped_deployment == current


def journal_body(sequence: int) -> bytes:
    resource = {"urn": f"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev-{sequence}"}
    entry = {
        "version": 1,
        "kind": 0,
        "sequenceID": sequence,
        "operationID": sequence,
        "operation": {"resource": {**resource, "type": "pulumi:pulumi:Stack"}, "type": "creating"},
    }
    return orjson.dumps({"entries": [entry]})


async def append_journal(
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub, ref: updates_pb2.LeaseRef, sequence: int
) -> None:
    await stub.AppendJournalEntries(
        updates_pb2.AppendJournalEntriesRequest(lease=ref, body=journal_body(sequence))
    )


async def start_journaling(
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub, stack_id: str, *, is_dry_run: bool = False
) -> updates_pb2.LeaseRef:
    reply = await stub.CreateUpdate(
        updates_pb2.CreateUpdateRequest(
            stack_id=stack_id, kind="update", program=b"{}", is_dry_run=is_dry_run
        )
    )
    started = await stub.StartUpdate(
        updates_pb2.StartUpdateRequest(
            stack_id=stack_id, update_id=reply.update_id, journal_version=1
        )
    )
    return lease(reply.update_id, started)


async def test_journal_writes_are_fenced_on_the_update_row(harness: Harness) -> None:
    stub = harness.stub
    ref = await start_journaling(stub, "stack-1")
    await append_journal(stub, ref, 1)
    await append_journal(stub, ref, 1)  # a retried batch is a duplicate, not an error

    forged = updates_pb2.LeaseRef(update_id=ref.update_id, token="not-the-lease")
    wrong_token = await rpc_error(append_journal(stub, forged, 2))
    assert wrong_token.code() == grpc.StatusCode.UNAUTHENTICATED
    unknown = updates_pb2.LeaseRef(update_id=uuid.uuid4().hex, token=ref.token)
    assert (await rpc_error(append_journal(stub, unknown, 2))).code() == grpc.StatusCode.NOT_FOUND

    harness.clock.advance(301)
    late = await rpc_error(append_journal(stub, ref, 2))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert late.details() == "Conflict: The Update has already timed out"

    # The next update takes the stack; the stale one stays fenced out, even once cancelled.
    fresh = await start_journaling(stub, "stack-1")
    await append_journal(stub, fresh, 1)
    await stub.CancelUpdate(
        updates_pb2.CancelUpdateRequest(stack_id="stack-1", update_id=fresh.update_id)
    )
    cancelled = await rpc_error(append_journal(stub, fresh, 2))
    assert cancelled.details() == "Conflict: The Update has been cancelled"
    assert (await rpc_error(append_journal(stub, ref, 2))).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )

    # No journal without journalVersion 1, and none for a preview.
    plain_id, plain = await start(stub, "stack-2")
    unnegotiated = await rpc_error(append_journal(stub, lease(plain_id, plain), 1))
    assert unnegotiated.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "journalVersion 1" in (unnegotiated.details() or "")
    preview = await start_journaling(stub, "stack-3", is_dry_run=True)
    refused = await rpc_error(append_journal(stub, preview, 1))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED


@asynccontextmanager
async def driver_store(url: str) -> AsyncIterator[UpdateStore]:
    """A store of its own over `url`, with the one-statement appends where there are any."""
    engine = create_engine(url)
    try:
        yield UpdateStore(
            session_factory(engine),
            engine.dialect.name,
            statements=driver_statements(engine),
        )
    finally:
        await engine.dispose()


async def test_fenced_appends_in_one_statement_check_the_lease(harness: Harness) -> None:
    """PostgreSQL: journal entries and events go in with the lease check in one statement,
    which writes nothing when the lease is not current (the full path then says why)."""
    url = harness.settings.resolved_database_url()
    async with driver_store(url) as store:
        update_id = await create(harness.stub, "stack-1")
        started = await harness.stub.StartUpdate(
            updates_pb2.StartUpdateRequest(
                stack_id="stack-1", update_id=update_id, journal_version=1
            )
        )
        good = LeaseRef(update_id, started.token, StackPath())
        now = harness.clock.now()
        if is_sqlite(url):
            # SQLite has no such statement: every write takes the queued, fenced path.
            assert not await store.append_journal_at_once(good, now, [(1, b"a")])
            return
        refusals = [
            (LeaseRef(update_id, "not-the-lease", StackPath()), now),
            (LeaseRef(update_id, started.token, StackPath("other", "web", "dev")), now),
            (LeaseRef(uuid.uuid4().hex, started.token, StackPath()), now),
            (good, now + 3600.0),  # the lease ran out
        ]
        for ref, at in refusals:
            assert not await store.append_journal_at_once(ref, at, [(1, b"no")])
            assert not await store.add_events_at_once(
                ref, at, [EngineEvent(1, 0, "x", b"{}")], {"create": 9}
            )
        assert await store.journal(update_id) == []

        assert await store.append_journal_at_once(good, now, [(2, b"b"), (1, b"a")])
        assert await store.append_journal_at_once(good, now, [(1, b"a")])  # a retry
        assert await store.journal(update_id) == [b"a", b"b"]
        assert await store.add_events_at_once(
            good, now, [EngineEvent(1, 0, "x", b"{}")], {"create": 1}
        )
        assert await store.add_events_at_once(good, now, [EngineEvent(1, 0, "x", b"{}")], None)
        record = await store.get("stack-1", update_id)
        assert record.journal_entry_count == 3
        assert record.resource_changes == {"create": 1}


async def test_journal_appends_that_arrive_together_share_a_statement_each_checked(
    harness: Harness,
) -> None:
    """PostgreSQL: appends queued while one is written go in one statement; each append's
    lease is checked on its own, so the refused ones write nothing and the others commit."""
    url = harness.settings.resolved_database_url()
    async with driver_store(url) as store:
        leases = []
        for stack in ("stack-1", "stack-2", "stack-3"):
            ref = await start_journaling(harness.stub, stack)
            leases.append(LeaseRef(ref.update_id, ref.token, StackPath()))
        now = harness.clock.now()
        first, second, third = leases
        appends = [
            (first, now, [(1, b"1a"), (2, b"1b")]),
            (LeaseRef(second.update_id, "not-the-lease", StackPath()), now, [(1, b"forged")]),
            (second, now, [(1, b"2a")]),
            (third, now + 3600.0, [(1, b"late")]),  # its lease ran out
            (LeaseRef(third.update_id, third.token, StackPath("o", "p", "s")), now, [(1, b"x")]),
            (first, now, [(3, b"1c"), (1, b"1a")]),  # the same update again, a retry within
            (LeaseRef(uuid.uuid4().hex, first.token, StackPath()), now, [(1, b"nobody")]),
        ]
        runs_before = store.journal_appends.runs
        results = await asyncio.gather(
            *(store.append_journal_at_once(lease, at, entries) for lease, at, entries in appends)
        )
        if is_sqlite(url):
            # No such statement: every append takes the queued, fenced path (its groups are
            # the GroupWriter's, test_group_commit.py).
            assert results == [False] * len(appends)
            assert store.journal_appends.runs == runs_before
            return
        assert results == [True, False, True, False, False, True, False]
        assert store.journal_appends.runs == runs_before + 1
        assert await store.journal(first.update_id) == [b"1a", b"1b", b"1c"]
        assert await store.journal(second.update_id) == [b"2a"]
        assert await store.journal(third.update_id) == []
        assert (await store.get("stack-1", first.update_id)).journal_entry_count > 0
        assert (await store.get("stack-3", third.update_id)).journal_entry_count == 0


async def record_events(
    stub: updates_pb2_grpc.UpdatesServiceAsyncStub, ref: updates_pb2.LeaseRef, *sequences: int
) -> None:
    events = [
        {"sequence": sequence, "timestamp": 1, "diagnosticEvent": {"message": f"m{sequence}"}}
        for sequence in sequences
    ]
    await stub.RecordEngineEvents(
        updates_pb2.RecordEngineEventsRequest(lease=ref, body=orjson.dumps({"events": events}))
    )


async def test_engine_events_are_fenced_on_the_update_row(harness: Harness) -> None:
    stub = harness.stub
    update_id, started = await start(stub, "stack-1")
    ref = lease(update_id, started)
    await record_events(stub, ref, 1, 2)
    await record_events(stub, ref, 2, 3)  # a retried event is a duplicate, not an error

    forged = updates_pb2.LeaseRef(update_id=update_id, token="not-the-lease")
    wrong_token = await rpc_error(record_events(stub, forged, 4))
    assert wrong_token.code() == grpc.StatusCode.UNAUTHENTICATED
    harness.clock.advance(301)
    late = await rpc_error(record_events(stub, ref, 4))
    assert late.details() == "Conflict: The Update has already timed out"

    listed = await stub.ListEngineEvents(
        updates_pb2.ListEngineEventsRequest(stack_id="stack-1", update_id=update_id)
    )
    assert [event.sequence for event in listed.events] == [1, 2, 3]
