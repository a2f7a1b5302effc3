"""Metric families on private registries: the gRPC interceptor, the HTTP middleware, exposure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.middleware import error_middleware, metrics_middleware
from services.common.auth import REQUEST_ID_KEY
from services.common.errors import NotFound
from services.common.grpc_server import RunningServer, open_channel, start_server
from services.common.metrics import (
    METRICS,
    Metrics,
    default_metrics,
    default_registry,
    serve_metrics,
)
from services.common.signing import CallSigner
from services.common.verification import CallAuthenticator

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
PROBE = "test.v1.Probe"
KEY = bytes(range(32))


async def echo_request_id(
    _request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]
) -> bytes:
    """Answers with the request id the interceptor bound for this call's log lines."""
    return str(structlog.contextvars.get_contextvars().get("request_id")).encode()


async def missing(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise NotFound("Not Found: nothing here")


async def broken(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise RuntimeError("a bug")


async def aborting(_request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
    raise AssertionError("abort raises")


def register_probe(server: grpc.aio.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(function)
        for name, function in (
            ("Echo", echo_request_id),
            ("Missing", missing),
            ("Broken", broken),
            ("Aborting", aborting),
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(PROBE, handlers),))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def probe(metrics: Metrics) -> AsyncIterator[grpc.aio.Channel]:
    server: RunningServer = await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=1024 * 1024,
        register=register_probe,
        service_names=[PROBE],
        authenticator=CallAuthenticator(KEY, tokens=None),
        metrics=metrics,
    )
    channel = open_channel(server.address, 1024 * 1024, signer=CallSigner(KEY))
    try:
        yield channel
    finally:
        await channel.close(None)
        await server.stop(0)


def rpc_count(metrics: Metrics, method: str, code: str, service: str = PROBE) -> float | None:
    return metrics.registry.get_sample_value(
        "cairn_grpc_requests_total", {"service": service, "method": method, "code": code}
    )


def raw(channel: grpc.aio.Channel, method: str) -> Any:
    """A byte-in, byte-out callable for one probe method."""
    return channel.unary_unary(f"/{PROBE}/{method}", None, None)


async def call(channel: grpc.aio.Channel, method: str) -> grpc.StatusCode:
    try:
        await raw(channel, method)(b"")
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_interceptor_counts_every_rpc_by_its_final_code(
    probe: grpc.aio.Channel, metrics: Metrics
) -> None:
    assert await call(probe, "Echo") == grpc.StatusCode.OK
    assert await call(probe, "Echo") == grpc.StatusCode.OK
    assert await call(probe, "Missing") == grpc.StatusCode.NOT_FOUND
    assert await call(probe, "Broken") == grpc.StatusCode.INTERNAL
    assert await call(probe, "Aborting") == grpc.StatusCode.PERMISSION_DENIED

    # The server counts a call as it ends, which may be just after its client saw the status.
    for _ in range(100):
        if rpc_count(metrics, "Aborting", "PERMISSION_DENIED") is not None:
            break
        await asyncio.sleep(0.02)
    assert rpc_count(metrics, "Echo", "OK") == 2
    assert rpc_count(metrics, "Missing", "NOT_FOUND") == 1
    assert rpc_count(metrics, "Broken", "INTERNAL") == 1
    assert rpc_count(metrics, "Aborting", "PERMISSION_DENIED") == 1
    assert rpc_count(metrics, "Echo", "INTERNAL") is None
    timed = metrics.registry.get_sample_value(
        "cairn_grpc_request_seconds_count", {"service": PROBE, "method": "Echo"}
    )
    assert timed == 2


async def test_interceptor_counts_health_checks_too(
    probe: grpc.aio.Channel, metrics: Metrics
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(probe)
    await stub.Check(health_pb2.HealthCheckRequest(service=PROBE))
    assert rpc_count(metrics, "Check", "OK", service="grpc.health.v1.Health") == 1


async def test_interceptor_binds_the_callers_request_id_for_log_lines(
    probe: grpc.aio.Channel,
) -> None:
    reply = await raw(probe, "Echo")(b"", metadata=((REQUEST_ID_KEY, "req-42"),))
    assert reply == b"req-42"
    assert structlog.contextvars.get_contextvars().get("request_id") is None


def http_count(metrics: Metrics, route: str, method: str, status: str) -> float | None:
    return metrics.registry.get_sample_value(
        "cairn_http_requests_total", {"route": route, "method": method, "status": status}
    )


async def get_thing(request: web.Request) -> web.Response:
    if request.match_info["thingId"] == "gone":
        raise web.HTTPConflict()
    if request.match_info["thingId"] == "bug":
        raise RuntimeError("a bug")
    return web.json_response({"id": request.match_info["thingId"]})


async def test_middleware_counts_by_route_name_not_raw_path(
    aiohttp_client: AiohttpClient, metrics: Metrics
) -> None:
    app = web.Application(middlewares=[metrics_middleware, error_middleware])
    app[METRICS] = metrics
    app.router.add_route("GET", "/things/{thingId}", get_thing, name="get_thing")
    client = await aiohttp_client(app)

    for thing in ("a", "b", "c"):
        assert (await client.get(f"/things/{thing}")).status == 200
    assert (await client.get("/things/gone")).status == 409
    assert (await client.get("/things/bug")).status == 500
    assert (await client.get("/elsewhere/1")).status == 404
    assert (await client.request("PROPFIND", "/things/a")).status == 405

    assert http_count(metrics, "get_thing", "GET", "200") == 3
    assert http_count(metrics, "get_thing", "GET", "409") == 1
    assert http_count(metrics, "get_thing", "GET", "500") == 1
    assert http_count(metrics, "unmatched", "GET", "404") == 1
    assert http_count(metrics, "unmatched", "other", "405") == 1
    timed = metrics.registry.get_sample_value(
        "cairn_http_request_seconds_count", {"route": "get_thing", "method": "GET"}
    )
    assert timed == 5


async def test_middleware_counts_exceptions_that_leave_it(
    aiohttp_client: AiohttpClient, metrics: Metrics
) -> None:
    app = web.Application(middlewares=[metrics_middleware])
    app[METRICS] = metrics
    app.router.add_route("GET", "/things/{thingId}", get_thing, name="get_thing")
    client = await aiohttp_client(app)

    assert (await client.get("/things/gone")).status == 409
    assert (await client.get("/things/bug")).status == 500
    assert http_count(metrics, "get_thing", "GET", "409") == 1
    assert http_count(metrics, "get_thing", "GET", "500") == 1


def test_private_registries_do_not_collide() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.update_lock_conflicts.inc()
    assert first.registry.get_sample_value("cairn_update_lock_conflicts_total") == 1
    assert second.registry.get_sample_value("cairn_update_lock_conflicts_total") == 0


def test_default_metrics_are_registered_once_on_the_default_registry() -> None:
    assert default_metrics() is default_metrics()
    assert default_metrics().registry is default_registry()


def test_rpc_labels_split_service_and_method(metrics: Metrics) -> None:
    metrics.observe_rpc("/cairn.v1.StacksService/GetStack", grpc.StatusCode.NOT_FOUND, 0.01)
    assert rpc_count(metrics, "GetStack", "NOT_FOUND", service="cairn.v1.StacksService") == 1


async def test_a_lone_service_serves_its_registry_on_the_metrics_port(metrics: Metrics) -> None:
    metrics.checkpoint_bytes.labels("full").inc(123)
    runner = await serve_metrics(metrics, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://{host}:{port}/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            ) as response,
        ):
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    finally:
        await runner.cleanup()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("cairn_checkpoint_bytes_total", (("kind", "full"),))] == 123
