"""Fault tests against one running distributed topology (its processes are never killed or
stopped here): concurrent starts, a bounded load run, the internal plane, and PostgreSQL and
Redis outages through the proxies, which the `cluster` fixture restores after each test."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc
import orjson
import pytest

from protos.cairn.v1 import common_pb2, stacks_pb2
from scripts.bench_updates import Names, percentile
from tests.faults.conftest import (
    ADMIN_TOKEN,
    ORG,
    Cluster,
    begin,
    checkpoint_text,
    create_stack,
    create_update,
    start_update,
    write_verbatim,
)
from tests.security.test_internal_grpc import every_method, raw_call

pytestmark = [
    pytest.mark.faults,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.asyncio(loop_scope="module"),
]

ANOTHER_UPDATE = "Another update is currently in progress"
BOUND_S = 60.0


async def test_fifty_concurrent_starts_on_one_stack_have_one_winner(cluster: Cluster) -> None:
    names = Names("race", "dev")
    await create_stack(cluster.api, names)
    paths = await asyncio.gather(*(create_update(cluster.apis[i % 2], names) for i in range(50)))

    replies = await asyncio.gather(
        *(start_update(cluster.apis[i % 2], path) for i, path in enumerate(paths))
    )

    winners = [i for i, reply in enumerate(replies) if reply.status == 200]
    assert len(winners) == 1, [reply.status for reply in replies]
    losers = [reply for reply in replies if reply.status != 200]
    assert all(reply.is_json_error(409) for reply in losers), losers[:3]
    assert all(ANOTHER_UPDATE in reply.json()["message"] for reply in losers), losers[:3]
    stack = await cluster.apis[1].json("GET", names.path)
    assert paths[winners[0]].endswith(stack["activeUpdate"])
    assert cluster.apis[0].failures == cluster.apis[1].failures == []


LOAD_REQUESTS = 800
LOAD_CONCURRENCY = 16
LOAD_STACKS = 8


async def test_bounded_load_run_has_no_server_errors(cluster: Cluster) -> None:
    stacks = [Names("load", f"s{index}") for index in range(LOAD_STACKS)]
    for names in stacks:
        await create_stack(cluster.api, names)
        path, lease = await begin(cluster.api, names)
        await write_verbatim(cluster.api, path, lease, checkpoint_text(20), 1)
        await cluster.api.call(
            "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
        )
    for api in cluster.apis:
        api.latencies.clear()
        api.statuses.clear()
    issued = 0

    def take(count: int) -> bool:
        nonlocal issued
        if issued >= LOAD_REQUESTS:
            return False
        issued += count
        return True

    async def worker(index: int) -> None:
        api = cluster.apis[index % 2]
        for step in range(LOAD_REQUESTS):
            names = stacks[(index + step) % LOAD_STACKS]
            kind = step % 8
            if kind < 3 and take(1):
                await api.call("GET", names.path)
            elif kind < 5 and take(1):
                await api.call("GET", f"{names.path}/export")
            elif kind < 7 and take(1):
                await api.call("GET", f"{names.path}/updates?pageSize=10&page=1")
            elif kind == 7 and index < LOAD_STACKS and take(4):
                # A small update on this worker's own stack: create, start, checkpoint, complete.
                own = stacks[index]
                path, lease = await begin(api, own)
                await write_verbatim(api, path, lease, checkpoint_text(20 + step % 5), 1)
                await api.call(
                    "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
                )
            if issued >= LOAD_REQUESTS:
                return

    began = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker(index) for index in range(LOAD_CONCURRENCY))), BOUND_S * 2
    )
    elapsed = time.perf_counter() - began
    latencies = [s for api in cluster.apis for s in api.latencies]
    statuses = sum((api.statuses for api in cluster.apis), start=Counter[int]())
    p50 = percentile(latencies, 0.50) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    print(
        f"load: {len(latencies)} requests, concurrency {LOAD_CONCURRENCY}, {elapsed:.1f} s "
        f"({len(latencies) / elapsed:.0f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"statuses {dict(statuses)}"
    )
    rejections = [line for api in cluster.apis for line in api.rejections]
    assert len(latencies) >= LOAD_REQUESTS
    assert not [status for status in statuses if status >= 500], statuses
    assert cluster.apis[0].failures == cluster.apis[1].failures == []
    # Exports racing a completing update read the stored version, never a refusal.
    assert rejections == []


async def test_the_internal_plane_needs_a_credential_across_processes(cluster: Cluster) -> None:
    """A process reaching every replica's port without a credential gets nothing; a token
    caller gets what its REST twin gives (the compose topology as local processes)."""
    names = Names("guarded", "dev")
    await create_stack(cluster.api, names)
    ref = common_pb2.StackRef(organization=ORG, project=names.project, stack=names.stack)
    get_stack = stacks_pb2.GetStackRequest(ref=ref).SerializeToString()
    methods = every_method()
    for child in cluster.topology.services:
        channel = grpc.aio.insecure_channel(child.address)
        try:
            own = [method for service, method in methods if service == child.name]
            results = await asyncio.gather(*(raw_call(channel, method) for method in own))
            assert {code for code, _ in results} == {grpc.StatusCode.UNAUTHENTICATED}, child
            if child.name == "stacks":
                credential = (("authorization", f"token {ADMIN_TOKEN}"),)
                method = "/cairn.v1.StacksService/GetStack"
                assert (await raw_call(channel, method, get_stack, credential))[0] is (
                    grpc.StatusCode.OK
                )
        finally:
            await channel.close(None)


async def test_redis_outage_refuses_new_updates_only(cluster: Cluster) -> None:
    api = cluster.api
    running = Names("redis", "running")
    waiting = Names("redis", "waiting")
    for names in (running, waiting):
        await create_stack(api, names)
    path, lease = await begin(api, running)
    assert (await write_verbatim(api, path, lease, checkpoint_text(1), 1)).status in (200, 204)
    pending = await create_update(api, waiting)

    await cluster.redis.cut()
    # The running update's writes are fenced by the database: they go on.
    for sequence in range(2, 6):
        saved = await write_verbatim(api, path, lease, checkpoint_text(sequence), sequence)
        assert saved.status in (200, 204), saved
    renewed = await api.call("POST", f"{path}/renew_lease", orjson.dumps({"duration": 120}))
    assert renewed.status == 401  # needs the update token, not an access token
    renewed = await api.call(
        "POST", f"{path}/renew_lease", orjson.dumps({"duration": 120}), lease=lease
    )
    assert renewed.status == 200, renewed
    # A new update cannot take the lock: 503 with Pulumi's error body.
    refused = await start_update(api, pending)
    assert refused.is_json_error(503), refused
    # Reads keep working.
    for reply in await asyncio.gather(
        api.call("GET", f"{running.path}/export"),
        api.call("GET", waiting.path),
        api.call("GET", f"{running.path}/updates"),
    ):
        assert reply.status == 200, reply
    exported = await api.call("GET", f"{running.path}/export")
    assert exported.body == checkpoint_text(5)
    # Completing releases nothing in Redis (it is down); the key left behind must not wedge.
    done = await api.call(
        "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
    )
    assert done.status in (200, 204), done

    # A hung Redis: the start is refused within the Redis timeout, not left hanging.
    await cluster.redis.restore()
    cluster.redis.pause()
    began = time.perf_counter()
    refused = await start_update(api, pending)
    hung_s = time.perf_counter() - began
    assert refused.is_json_error(503), refused
    assert hung_s < cluster.topology.settings.redis_timeout_seconds * 2 + 2, hung_s

    await cluster.redis.restore()
    started = await start_update(api, pending)
    assert started.status == 200, started
    _, again_lease = await begin(cluster.apis[1], running)
    assert again_lease
    assert (await api.call("GET", f"{running.path}/export")).body == checkpoint_text(5)
    print(f"start refused after {hung_s:.2f} s with Redis hung; recovered after restore")


async def test_postgres_outage_fails_cleanly_and_recovers(cluster: Cluster) -> None:
    api = cluster.api
    names = Names("pg", "dev")
    await create_stack(api, names)
    path, lease = await begin(api, names)
    assert (await write_verbatim(api, path, lease, checkpoint_text(1), 1)).status in (200, 204)

    await cluster.postgres.cut()
    during = await asyncio.gather(
        api.call("GET", names.path),
        api.call("GET", f"{names.path}/export"),
        write_verbatim(api, path, lease, checkpoint_text(2), 2),
        api.call("POST", f"/api/stacks/{ORG}/pg", orjson.dumps({"stackName": "other"})),
    )
    await asyncio.sleep(1.0)
    await cluster.postgres.restore()
    print(f"during the outage: {[(reply.status, reply.json()) for reply in during]}")

    # Recovery without restarting anything: the CLI's retry of the failed write succeeds,
    # and nothing written before or during the outage is lost or half-applied.
    saved = await write_verbatim(api, path, lease, checkpoint_text(2), 2)
    assert saved.status in (200, 204), saved
    assert (await api.call("GET", f"{names.path}/export")).body == checkpoint_text(2)
    done = await api.call(
        "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
    )
    assert done.status in (200, 204), done
    assert (await api.call("GET", f"{names.path}/export")).body == checkpoint_text(2)
    created = await api.call("POST", f"/api/stacks/{ORG}/pg", orjson.dumps({"stackName": "other"}))
    assert created.status == 200, created
    assert all(child.is_running() for child in cluster.topology.children)
    # While it was down: Pulumi error bodies, never a hang.
    assert all(reply.is_json_error(reply.status) and reply.status >= 500 for reply in during)
    assert all(reply.is_json_error(503) for reply in during), during
