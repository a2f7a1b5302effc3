"""A channel's connections are its own: a new channel to an address whose previous server
went away reaches the new server there at once, whatever an older channel still remembers."""

from __future__ import annotations

import grpc
import pytest

from services.common.grpc_server import channel_options

ECHO = "/cairn.test.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _call(channel: grpc.aio.Channel, request: bytes, timeout: float) -> bytes:
    echo = channel.unary_unary(ECHO, request_serializer=None, response_deserializer=None)
    reply: bytes = await echo(request, timeout=timeout)
    return reply


async def _serve(port: int) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("cairn.test.Echo", {"Echo": handler}),)
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def test_a_new_channel_reaches_a_new_server_on_an_address_an_old_channel_saw_fail() -> None:
    options = channel_options(1024 * 1024, 5.0)
    first, port = await _serve(0)
    old = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    try:
        assert await _call(old, b"one", 5) == b"one"
        await first.stop(0)
        with pytest.raises(grpc.aio.AioRpcError):
            await _call(old, b"gone", 1)
        second, _ = await _serve(port)
        new = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        try:
            assert await _call(new, b"two", 5) == b"two"
        finally:
            await new.close(None)
            await second.stop(0)
    finally:
        await old.close(None)
