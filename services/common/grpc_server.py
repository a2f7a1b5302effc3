"""Builds grpc.aio servers and channels: size limits, error interceptor, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import exc as sa_exc

from services.common.auth import REQUEST_ID_KEY
from services.common.errors import DomainError
from services.common.logging import get_logger

log = get_logger("cairn.grpc")

GENERIC_INTERNAL = "Internal error."
DATABASE_UNAVAILABLE = "The database is unavailable; try again."


def message_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Raised send/receive limits shared by servers and channels (checkpoints are large)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return value
    return ""


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Translates domain errors to status codes once; anything else becomes a sanitised INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            structlog.contextvars.bind_contextvars(request_id=_request_id(context), rpc=method)
            try:
                return await inner(request, context)
            except DomainError as error:
                await context.abort(error.code, error.message)
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
                log.warning("database_unavailable", error=type(error).__name__)
                await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception:
                log.exception("rpc_failed")
                await context.abort(grpc.StatusCode.INTERNAL, GENERIC_INTERNAL)
            finally:
                structlog.contextvars.unbind_contextvars("request_id", "rpc")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health's aio HealthServicer (untyped)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
) -> RunningServer:
    """Create, wire and start a server; `register` adds the servicers. Port 0 picks a free one."""
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=message_options(max_message_bytes),
    )
    register(server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=bound, health=health_servicer)


def channel_target(addresses: str) -> str:
    """gRPC target for one or more comma-separated host:port addresses (round-robin)."""
    parts = [part.strip() for part in addresses.split(",") if part.strip()]
    if not parts:
        raise ValueError("no service address configured")
    if len(parts) == 1:
        return f"dns:///{parts[0]}"
    if all(_is_ipv4_address(part) for part in parts):
        return "ipv4:" + ",".join(parts)
    raise ValueError("several addresses must be IPv4 host:port pairs; use one DNS name instead")


def _is_ipv4_address(address: str) -> bool:
    host, _, port = address.rpartition(":")
    pieces = host.split(".")
    return port.isdigit() and len(pieces) == 4 and all(p.isdigit() for p in pieces)


def open_channel(addresses: str, max_message_bytes: int) -> grpc.aio.Channel:
    """An insecure channel (loopback or a private network) balancing across replicas."""
    options = [
        *message_options(max_message_bytes),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    return grpc.aio.insecure_channel(channel_target(addresses), options=options)


async def check_health(channel: grpc.aio.Channel, timeout: float = 2.0) -> bool:
    """Whether the server behind a channel answers SERVING to the standard health check."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
