"""Calls to a service that runs in this same process, without the socket in between.

`cairn up` (the embedded topology) runs every service and the gateway in one process: each
service still listens on its gRPC port (for other processes and a team's own tools), but a
peer in the same process reaches it through `LocalChannel`. The call goes through the same
steps as one over the network, minus HTTP/2: the request and the reply are serialised and
parsed by the method's own functions (nobody shares a message object), the metadata carries
the signed principal, the server's one interceptor authenticates it, translates errors and
counts the call, and an abort becomes the `AioRpcError` a stub raises. The handler runs in a
task of its own, so context variables it binds stay its own; the caller's deadline bounds it.

A server in this process is found by its address at every call; when none is (not started
yet, stopped, or in another process) the call goes over the network channel as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from services.common.channel_wrapper import DelegatingChannel

# The servers of this process, by the address their peers are configured with.
_SERVERS: dict[str, LocalServer] = {}

DEADLINE_DETAILS = "Deadline Exceeded"


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


class LocalServer:
    """A running server's handlers and its interceptor, as a call in this process uses them."""

    def __init__(
        self,
        handlers: Sequence[grpc.GenericRpcHandler[Any, Any]],
        interceptor: grpc.aio.ServerInterceptor[Any, Any],
    ) -> None:
        self._handlers = list(handlers)
        self._interceptor = interceptor

    def add(self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]) -> None:
        self._handlers.extend(handlers)

    async def _continuation(self, details: grpc.HandlerCallDetails) -> Any:
        for generic in self._handlers:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    async def handler(self, details: grpc.HandlerCallDetails) -> Any:
        return await self._interceptor.intercept_service(self._continuation, details)


def serve_locally(address: str, server: LocalServer) -> None:
    _SERVERS[address] = server


def stop_serving_locally(address: str, server: LocalServer) -> None:
    if _SERVERS.get(address) is server:
        del _SERVERS[address]


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string=None
    )


def _too_large(what: str, size: int, limit: int) -> grpc.aio.AioRpcError:
    """The refusal gRPC gives a message over the channel's limit."""
    return _error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, f"{what} message larger than max ({size} vs. {limit})"
    )


async def _refused(error: grpc.aio.AioRpcError) -> Any:
    raise error


class LocalContext:
    """The part of `grpc.aio.ServicerContext` that Cairn's servicers and interceptor use."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...], deadline: float | None):
        self._metadata = metadata
        self._deadline = deadline
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        self._code = code
        self._details = details
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def peer(self) -> str:
        return "local"

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def cancelled(self) -> bool:
        return False


class _LocalUnaryUnary:
    def __init__(
        self,
        address: str,
        method: str,
        request_serializer: Callable[[Any], bytes] | None,
        response_deserializer: Callable[[bytes], Any] | None,
        default_timeout: float | None,
        max_message_bytes: int,
        remote: Any,
    ) -> None:
        self._address = address
        self._method = method
        self._serialize = request_serializer
        self._deserialize = response_deserializer
        self._default_timeout = default_timeout
        self._max_message_bytes = max_message_bytes
        self._remote = remote

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Awaitable[Any]:
        server = _SERVERS.get(self._address)
        if server is None:
            return self._remote(  # type: ignore[no-any-return]
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        payload = self._serialize(request) if self._serialize is not None else request
        if len(payload) > self._max_message_bytes:
            return _refused(_too_large("Sent", len(payload), self._max_message_bytes))
        return self._call(server, payload, timeout or self._default_timeout, tuple(metadata or ()))

    async def _call(
        self,
        server: LocalServer,
        payload: Any,
        timeout: float | None,
        metadata: tuple[tuple[str, str | bytes], ...],
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        task = loop.create_task(self._serve(server, payload, metadata, deadline))
        try:
            async with asyncio.timeout_at(deadline):
                reply = await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, DEADLINE_DETAILS) from None
        except asyncio.CancelledError:
            task.cancel()
            raise
        if len(reply) > self._max_message_bytes:
            raise _too_large("Received", len(reply), self._max_message_bytes)
        return self._deserialize(reply) if self._deserialize is not None else reply

    async def _serve(
        self,
        server: LocalServer,
        payload: Any,
        metadata: tuple[tuple[str, str | bytes], ...],
        deadline: float | None,
    ) -> Any:
        handler = await server.handler(_CallDetails(self._method, metadata))
        if handler is None or handler.unary_unary is None:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        request = (
            handler.request_deserializer(payload)
            if handler.request_deserializer is not None
            else payload
        )
        context = LocalContext(metadata, deadline)
        try:
            reply = await handler.unary_unary(request, context)
        except grpc.aio.AbortError:
            raise _error(context.code() or grpc.StatusCode.UNKNOWN, context.details()) from None
        except grpc.aio.AioRpcError:
            raise
        except Exception as error:
            raise _error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(error)}") from None
        code = context.code()
        if code is not None and code is not grpc.StatusCode.OK:
            raise _error(code, context.details())
        return (
            handler.response_serializer(reply) if handler.response_serializer is not None else reply
        )


class LocalChannel(DelegatingChannel):
    """A channel to one address: in this process when a server there runs in it, else over
    `remote`, the network channel to the same address (see the module's description)."""

    def __init__(
        self,
        address: str,
        remote: grpc.aio.Channel,
        max_message_bytes: int,
        default_timeout: float | None = None,
    ) -> None:
        super().__init__(remote)
        self._address = address.strip()
        self._max_message_bytes = max_message_bytes
        self._default_timeout = default_timeout

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        if self._address in _SERVERS:
            return grpc.ChannelConnectivity.READY
        return self._inner.get_state(try_to_connect)

    async def channel_ready(self) -> None:
        if self._address not in _SERVERS:
            await self._inner.channel_ready()

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        name = method.decode() if isinstance(method, bytes) else str(method)
        remote = self._inner.unary_unary(  # type: ignore[call-arg]
            method, request_serializer, response_deserializer, _registered_method
        )
        return _LocalUnaryUnary(
            self._address,
            name,
            request_serializer,
            response_deserializer,
            self._default_timeout,
            self._max_message_bytes,
            remote,
        )
