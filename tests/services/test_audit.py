"""The audit service over real gRPC and its store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from protos.cairn.v1 import audit_pb2, audit_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_engine, session_factory
from services.identity import server as identity_server
from services.identity.audit.domain import MICROS_PER_DAY, MICROS_PER_SECOND
from services.identity.audit.service import RetentionPruner
from services.identity.audit.store import AuditStore
from tests.conftest import signed_channel

NOW = 1_700_000_000
USER = audit_pb2.AUDIT_ACTOR_KIND_USER


@dataclass
class Harness:
    stub: audit_pb2_grpc.AuditServiceAsyncStub
    store: AuditStore
    clock: ManualClock


@pytest.fixture
async def harness(any_settings: Settings) -> AsyncIterator[Harness]:
    clock = ManualClock(float(NOW))
    service = await identity_server.start(any_settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(any_settings, f"127.0.0.1:{service.port}")
    engine = create_engine(any_settings.resolved_database_url())
    try:
        yield Harness(
            audit_pb2_grpc.AuditServiceStub(channel), AuditStore(session_factory(engine)), clock
        )
    finally:
        await engine.dispose()
        await channel.close(None)
        await service.stop(0)


def event(
    seconds: float, *, org: str = "acme", name: str = "stack.create", login: str = "alice"
) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        time_micros=int(seconds * MICROS_PER_SECOND),
        organization=org,
        event=name,
        target=f"{org}/web/dev",
        description="Stack Created",
        actor_kind=USER,
        actor_login=login,
        actor_name=login.title(),
        token_id="t1",
        token_name="ci",
        source_ip="127.0.0.1",
        user_agent="pulumi-cli/3",
        status=200,
        method="POST",
        path=f"/api/stacks/{org}/web",
        request_id="r1",
    )


async def record(h: Harness, *events: audit_pb2.AuditEvent) -> None:
    reply = await h.stub.RecordAuditEvents(audit_pb2.RecordAuditEventsRequest(events=events))
    assert reply.recorded == len(events)


async def page(
    h: Harness, token: str = "", size: int = 0, **filters: object
) -> audit_pb2.ListAuditEventsResponse:
    return await h.stub.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(
            filter=audit_pb2.AuditFilter(**filters),  # type: ignore[arg-type]
            continuation_token=token,
            page_size=size,
        )
    )


async def test_entries_round_trip_and_page_newest_first(harness: Harness) -> None:
    h = harness
    await record(h, *[event(NOW + i) for i in range(25)])
    await record(h, event(NOW, org="other"))
    seen: list[int] = []
    token = ""
    for _ in range(10):
        reply = await page(h, token, 10, organization="acme")
        seen += [e.time_micros // MICROS_PER_SECOND - NOW for e in reply.events]
        token = reply.continuation_token
        if not token:
            break
    assert seen == list(range(24, -1, -1))
    first = (await page(h, size=1, organization="acme")).events[0]
    expected = event(NOW + 24)
    expected.id = first.id
    assert first == expected
    # Everything, every organization (the operator's view).
    assert len((await page(h, size=1000)).events) == 26


async def test_filters_by_time_user_and_event(harness: Harness) -> None:
    h = harness
    await record(
        h,
        event(NOW - 10),
        event(NOW, login="bob"),
        event(NOW + 10, name="secret.decrypt"),
        event(NOW + 20),
    )

    def times(reply: audit_pb2.ListAuditEventsResponse) -> list[int]:
        return [e.time_micros // MICROS_PER_SECOND - NOW for e in reply.events]

    m = MICROS_PER_SECOND
    assert times(await page(h, since_micros=NOW * m, until_micros=(NOW + 20) * m)) == [10, 0]
    assert times(await page(h, until_micros=NOW * m)) == [-10]
    assert times(await page(h, user_login="bob")) == [0]
    assert times(await page(h, event="secret.decrypt")) == [10]
    for bad in (
        page(h, since_micros=2 * m, until_micros=m),
        page(h, token="not-a-token"),
        page(h, size=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bad
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_export_needs_a_bounded_window(harness: Harness) -> None:
    h = harness
    await record(h, event(NOW), event(NOW + 5), event(NOW + 50))
    m = MICROS_PER_SECOND
    reply = await h.stub.ExportAuditEvents(
        audit_pb2.ExportAuditEventsRequest(
            filter=audit_pb2.AuditFilter(since_micros=NOW * m, until_micros=(NOW + 10) * m)
        )
    )
    assert [e.time_micros // m - NOW for e in reply.events] == [5, 0]
    for window in (
        audit_pb2.AuditFilter(since_micros=NOW * m),
        audit_pb2.AuditFilter(until_micros=NOW * m),
        audit_pb2.AuditFilter(since_micros=NOW * m, until_micros=NOW * m + 93 * MICROS_PER_DAY),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await h.stub.ExportAuditEvents(audit_pb2.ExportAuditEventsRequest(filter=window))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_and_nul_fields_are_cut_not_refused(harness: Harness) -> None:
    h = harness
    long = event(NOW)
    long.user_agent = "x" * 5000
    long.target = "a\x00b"
    long.time_micros = 0  # the service's clock fills it in
    await record(h, long)
    stored = (await page(h)).events[0]
    assert stored.user_agent == "x" * 512
    assert stored.target == "ab"
    assert stored.time_micros == NOW * MICROS_PER_SECOND


async def test_no_rpc_changes_or_deletes_an_entry() -> None:
    methods = set(audit_pb2.DESCRIPTOR.services_by_name["AuditService"].methods_by_name)
    assert methods == {"RecordAuditEvents", "ListAuditEvents", "ExportAuditEvents"}


async def test_retention_prunes_old_entries_by_the_injected_clock(harness: Harness) -> None:
    h = harness
    day = 86_400
    await record(h, event(NOW - 40 * day), event(NOW - 31 * day), event(NOW - 29 * day))
    pruner = RetentionPruner(h.store, h.clock, retention_days=30)
    assert await pruner.prune_once() == 2
    assert len((await page(h)).events) == 1
    assert await pruner.prune_once() == 0
    h.clock.advance(2 * day)
    assert await pruner.prune_once() == 1
    assert (await page(h)).events == []

    await record(h, event(NOW - 4000 * day))
    keep_forever = RetentionPruner(h.store, h.clock, retention_days=0)
    assert await keep_forever.prune_once() == 0
    assert len((await page(h)).events) == 1


async def test_the_pruner_runs_in_the_background_until_stopped(harness: Harness) -> None:
    h = harness
    rounds: list[float] = []

    async def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) >= 3:
            # Park the loop; stop() cancels it here.
            await asyncio.Event().wait()

    await record(h, event(NOW - 400 * 86_400))
    pruner = RetentionPruner(h.store, h.clock, retention_days=365, interval_seconds=7, sleep=sleep)
    pruner.start()
    for _ in range(200):
        if len(rounds) >= 3:
            break
        await asyncio.sleep(0.01)
    await pruner.stop()
    assert rounds == [7, 7, 7]
    assert (await page(h)).events == []
