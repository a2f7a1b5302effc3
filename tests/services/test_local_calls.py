"""Calls to a server in the same process skip the socket but nothing else: the principal is
signed and verified, the interceptor translates domain errors and aborts into the status a
stub raises, the caller's deadline holds, the handler's context variables stay its own, and a
stopped server is reached over the network as before (and refuses like a closed port)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.common.errors import NotFound
from services.common.grpc_server import RunningServer, open_channel, start_server
from services.common.local_calls import LocalChannel
from services.common.signing import CallSigner, SigningChannel
from services.common.verification import CallAuthenticator

PROBE = "test.v1.LocalProbe"
KEY = bytes(range(32))
MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="caller's")
network_calls: list[str] = []


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    MARK.set("handler's")
    return b"echo:" + request + b" from " + context.peer().encode()


async def missing(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise NotFound("Not Found: probe")


async def slow(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(5)
    return request


async def refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not now")
    return request


def register(server: grpc.aio.Server) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(function)
        for name, function in (
            ("Echo", echo),
            ("Missing", missing),
            ("Slow", slow),
            ("Refuse", refuse),
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(PROBE, handlers),))


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=1024 * 1024,
        register=register,
        service_names=[PROBE],
        authenticator=CallAuthenticator(KEY, tokens=None),
    )
    try:
        yield running
    finally:
        await running.stop(0)


def call(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(f"/{PROBE}/{method}", None, None)


async def test_a_call_in_the_process_skips_the_socket_and_keeps_its_context(
    server: RunningServer,
) -> None:
    channel = open_channel(server.address, 1024 * 1024, signer=CallSigner(KEY), local_calls=True)
    try:
        assert isinstance(channel, SigningChannel)
        MARK.set("caller's")
        # The network peer would be `ipv4:127.0.0.1:…`; in the process it is `local`.
        assert await call(channel, "Echo")(b"hi", timeout=5) == b"echo:hi from local"
        assert MARK.get() == "caller's"
    finally:
        await channel.close(None)


async def test_errors_deadlines_and_credentials_are_those_of_a_network_call(
    server: RunningServer,
) -> None:
    signed = open_channel(server.address, 1024 * 1024, signer=CallSigner(KEY), local_calls=True)
    unsigned = open_channel(server.address, 1024 * 1024, signer=None, local_calls=True)
    wrong_key = open_channel(
        server.address, 1024 * 1024, signer=CallSigner(bytes(32)), local_calls=True
    )
    try:
        assert isinstance(unsigned, LocalChannel)
        with pytest.raises(grpc.aio.AioRpcError) as found:
            await call(signed, "Missing")(b"", timeout=5)
        assert (found.value.code(), found.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            "Not Found: probe",
        )
        with pytest.raises(grpc.aio.AioRpcError) as aborted:
            await call(signed, "Refuse")(b"", timeout=5)
        assert (aborted.value.code(), aborted.value.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "not now",
        )
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await call(signed, "Slow")(b"", timeout=0.2)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        for channel in (unsigned, wrong_key):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(channel, "Echo")(b"hi", timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await call(signed, "Nothing")(b"", timeout=5)
        assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as large:
            await call(signed, "Echo")(b"x" * (1024 * 1024 + 1), timeout=5)
        assert large.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for channel in (signed, unsigned, wrong_key):
            await channel.close(None)


async def test_a_stopped_server_is_reached_over_the_network_and_refuses(
    server: RunningServer,
) -> None:
    channel = open_channel(server.address, 1024 * 1024, signer=CallSigner(KEY), local_calls=True)
    try:
        await server.stop(0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, "Echo")(b"hi", timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close(None)


async def test_without_the_setting_every_call_goes_over_the_network(
    server: RunningServer,
) -> None:
    channel = open_channel(server.address, 1024 * 1024, signer=None)
    try:
        assert not isinstance(channel, LocalChannel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(channel, "Echo")(b"hi", timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await channel.close(None)
