"""Services are served through their generic handlers: the per-method registration the
generated code also asks for is skipped (grpcio's asyncio server does work in proportion to
the registered methods on every call), and calls reach the same handlers, interceptor included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from services.common.grpc_server import (
    GenericHandlersOnly,
    RunningServer,
    open_channel,
    start_server,
)
from services.common.local_calls import LocalServer
from services.common.signing import CallSigner
from services.common.verification import CallAuthenticator

PROBE = "test.v1.Probe"
KEY = bytes(range(32))


async def echo(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b"echo:" + request


registered: list[str] = []


def register_as_generated(server: grpc.aio.Server) -> None:
    """What a generated `add_*Servicer_to_server` does: a generic handler, then registration."""
    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(PROBE, handlers),))
    server.add_registered_method_handlers(PROBE, handlers)  # type: ignore[attr-defined]
    registered.append(type(server).__name__)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=1024 * 1024,
        register=register_as_generated,
        service_names=[PROBE],
        authenticator=CallAuthenticator(KEY, tokens=None),
    )
    try:
        yield running
    finally:
        await running.stop(0)


def _echo(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{PROBE}/Echo", request_serializer=None, response_deserializer=None
    )


async def test_a_generated_registration_is_served_through_the_generic_handler(
    server: RunningServer,
) -> None:
    assert registered[-1] == GenericHandlersOnly.__name__
    channel = open_channel(server.address, 1024 * 1024, signer=CallSigner(KEY))
    try:
        assert await _echo(channel)(b"hi", timeout=5) == b"echo:hi"
    finally:
        await channel.close(None)


async def test_the_interceptor_still_refuses_an_unsigned_call(server: RunningServer) -> None:
    channel = grpc.aio.insecure_channel(server.address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _echo(channel)(b"hi", timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close(None)


async def test_everything_else_is_the_servers_own() -> None:
    server = grpc.aio.server()
    local = LocalServer([], cast(Any, None))  # no call is made through it here
    registrar = GenericHandlersOnly(server, local)
    assert registrar.add_insecure_port == server.add_insecure_port
    registrar.add_registered_method_handlers(PROBE, {})  # accepted, and nothing registered
