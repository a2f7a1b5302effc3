"""Readiness follows the services' dependencies: `/readyz` answers 503 naming the unreachable
database or Redis while calls would fail, `/livez` stays 200, and a service's own health check
turns NOT_SERVING (probing at most once per cache period)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from services.common.grpc_server import RunningServer, start_server
from services.common.readiness import (
    LIVENESS_HEALTH_NAME,
    Dependency,
    ReadinessHealthServicer,
    dependency_health_name,
    unreachable_dependencies,
)
from services.common.verification import CallAuthenticator
from tests.conftest import REDIS_URL, make_settings, redis_available
from tests.faults.tcp_proxy import TcpProxy
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn

SERVICES = {"identity", "stacks", "secrets", "updates", "agent_pools", "copilot"}
WAIT_SECONDS = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FlakyProbe:
    """A dependency probe that counts its calls and fails while `is_down` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.is_down = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.is_down:
            raise ConnectionRefusedError("down")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _health_server(servicer: ReadinessHealthServicer) -> RunningServer:
    return await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=4 * 1024 * 1024,
        register=lambda _server: None,
        service_names=["cairn.v1.ExampleService"],
        authenticator=CallAuthenticator(bytes(32), tokens=None),
        health_servicer=servicer,
    )


async def _status(stub: Any, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = reply.status
    return status


async def test_health_turns_not_serving_while_a_dependency_probe_fails() -> None:
    database, redis = FlakyProbe(), FlakyProbe()
    clock = ManualClock()
    servicer = ReadinessHealthServicer(
        [Dependency("database", database), Dependency("redis", redis)],
        timeout_seconds=1.0,
        cache_seconds=2.0,
        clock=clock,
    )
    server = await _health_server(servicer)
    channel = grpc.aio.insecure_channel(server.address)
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        assert await _status(stub, "") == SERVING
        assert await _status(stub, "cairn.v1.ExampleService") == SERVING
        # Within the cache period no probe runs again, however often the check is asked.
        for _ in range(5):
            assert await _status(stub, "") == SERVING
        assert database.calls == 1 and redis.calls == 1

        redis.is_down = True
        clock.now += 2.5
        assert await _status(stub, "") == NOT_SERVING
        assert await _status(stub, "cairn.v1.ExampleService") == NOT_SERVING
        assert await _status(stub, dependency_health_name("redis")) == NOT_SERVING
        assert await _status(stub, dependency_health_name("database")) == SERVING
        # Liveness (what Kubernetes' liveness probe asks) holds: an outage restarts nothing.
        assert await _status(stub, LIVENESS_HEALTH_NAME) == SERVING
        assert await unreachable_dependencies(channel) == ["redis"]
        assert redis.calls == 2

        redis.is_down = False
        clock.now += 2.5
        assert await _status(stub, "cairn.v1.ExampleService") == SERVING
        assert await _status(stub, "") == SERVING
        assert await unreachable_dependencies(channel) == []

        # A shutting-down server stays NOT_SERVING whatever its dependencies say.
        await servicer.enter_graceful_shutdown()
        clock.now += 2.5
        assert await _status(stub, "") == NOT_SERVING
    finally:
        await channel.close(None)
        await server.stop(grace=0)


async def test_a_hung_dependency_counts_as_down_within_the_probe_timeout() -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    servicer = ReadinessHealthServicer(
        [Dependency("database", hang)], timeout_seconds=0.2, cache_seconds=0.0
    )
    server = await _health_server(servicer)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        started = time.monotonic()
        assert await _status(health_pb2_grpc.HealthStub(channel), "") == NOT_SERVING
        assert time.monotonic() - started < 2.0
    finally:
        await channel.close(None)
        await server.stop(grace=0)


async def test_concurrent_checks_share_one_probe() -> None:
    gate = asyncio.Event()
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await gate.wait()

    servicer = ReadinessHealthServicer(
        [Dependency("database", slow)], timeout_seconds=5.0, cache_seconds=10.0
    )
    server = await _health_server(servicer)
    channel = grpc.aio.insecure_channel(server.address)
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        checks = [asyncio.create_task(_status(stub, "")) for _ in range(10)]
        await asyncio.sleep(0.3)
        gate.set()
        assert await asyncio.gather(*checks) == [SERVING] * 10
        assert calls == 1
    finally:
        await channel.close(None)
        await server.stop(grace=0)


# -- the whole system on PostgreSQL and Redis behind TCP proxies --------------------------


async def _proxy(url: str, default_port: int) -> TcpProxy:
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or default_port)
    await proxy.start()
    return proxy


def _through(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@pytest.fixture
async def proxied(
    postgres_url: str, data_dir: Path, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Cairn, TcpProxy, TcpProxy]]:
    """The system on PostgreSQL and Redis, each reached through a proxy the test can cut."""
    if not redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    postgres = await _proxy(postgres_url, 5432)
    redis = await _proxy(REDIS_URL.replace("redis://", "redis+x://"), 6379)
    settings = make_settings(
        data_dir,
        _through(postgres_url, postgres),
        redis_url=f"redis://127.0.0.1:{redis.port}/0",
        database_pool_size=2,
        database_max_overflow=2,
        database_timeout_seconds=3.0,
        redis_timeout_seconds=1.0,
        dependency_probe_timeout_seconds=1.0,
        dependency_probe_cache_seconds=0.0,
    )
    try:
        async for cairn in running_cairn(settings, aiohttp_client):
            yield cairn, postgres, redis
    finally:
        await postgres.close()
        await redis.close()


async def _ready(cairn: Cairn) -> tuple[int, Any]:
    response = await cairn.client.get("/readyz")
    return response.status, await response.json()


async def _until(check: Callable[[], Awaitable[tuple[int, Any]]], status: int) -> tuple[int, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        answer = await check()
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.redis
async def test_readyz_names_an_unreachable_database_and_redis(
    proxied: tuple[Cairn, TcpProxy, TcpProxy],
) -> None:
    cairn, postgres, redis = proxied
    assert await _ready(cairn) == (
        200,
        {"status": "ok", "services": dict.fromkeys(SERVICES, "serving")},
    )

    await postgres.cut()
    status, body = await _until(lambda: _ready(cairn), 503)
    assert status == 503, body
    assert body["code"] == 503 and body["message"].startswith("Service Unavailable: database")
    assert set(body["unavailableDependencies"]) == {"database"}
    assert set(body["unavailableDependencies"]["database"]) == SERVICES
    assert set(body["services"].values()) == {"unavailable"}
    assert (await cairn.client.get("/livez")).status == 200
    health = await cairn.client.get("/healthz")
    assert health.status == 503 and health.headers["Retry-After"]
    # What readiness announces is what callers get: 503 JSON, never a 500.
    call = await cairn.call("GET", "/api/user")
    assert call.status == 503
    assert set(await call.json()) == {"code", "message"}

    await postgres.restore()
    status, body = await _until(lambda: _ready(cairn), 200)
    assert status == 200, body

    await redis.cut()
    status, body = await _until(lambda: _ready(cairn), 503)
    assert status == 503, body
    assert body["unavailableDependencies"] == {"redis": ["updates"]}
    assert "redis unreachable from updates" in body["message"]
    assert body["services"]["updates"] == "unavailable"
    assert body["services"]["stacks"] == "serving"

    await redis.restore()
    status, body = await _until(lambda: _ready(cairn), 200)
    assert status == 200, body


@pytest.mark.postgres
@pytest.mark.redis
async def test_hung_dependencies_count_as_down_and_probes_leak_no_connections(
    proxied: tuple[Cairn, TcpProxy, TcpProxy],
) -> None:
    cairn, postgres, redis = proxied
    assert (await _ready(cairn))[0] == 200
    # Bytes stop moving (a partition): every probe times out; more probes than the pools
    # (2 + 2 connections per service) hold, so a connection kept by a timed-out probe shows.
    postgres.pause()
    redis.pause()
    try:
        for _ in range(6):
            started = time.monotonic()
            status, body = await _ready(cairn)
            assert status == 503, body
            assert set(body["unavailableDependencies"]) == {"database", "redis"}
            # Both probes run at once, each cut short by the probe timeout.
            assert time.monotonic() - started < 8.0
    finally:
        await postgres.restore()
        await redis.restore()
    status, body = await _until(lambda: _ready(cairn), 200)
    assert status == 200, body
    for _ in range(10):
        response = await cairn.call("GET", "/api/user")
        assert response.status == 200, await response.text()
