"""Builds grpc.aio servers and channels: size limits, the RPC interceptor (errors, request
ids, metrics), health, reflection."""

from __future__ import annotations

import asyncio
import json
import time
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
from services.common.metrics import Metrics, default_metrics

log = get_logger("cairn.grpc")

GENERIC_INTERNAL = "Internal error."
DATABASE_UNAVAILABLE = "Service Unavailable: the database is unavailable; try again."


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


class RpcInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The one server interceptor: binds the request id, translates errors, counts and times.

    Domain errors become their status code once; anything else becomes a sanitised
    INTERNAL. Every unary RPC is counted by its final status code and timed.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

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
        metrics = self._metrics

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            structlog.contextvars.bind_contextvars(request_id=_request_id(context), rpc=method)
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                reply = await inner(request, context)
                code = context.code() or grpc.StatusCode.OK
                return reply
            except DomainError as error:
                code = error.code
                await context.abort(error.code, error.message)
            # A refused or timed-out database connection can surface as a bare OSError from
            # the driver rather than wrapped by SQLAlchemy; TimeoutError: the pool is empty.
            except (
                sa_exc.OperationalError,
                sa_exc.InterfaceError,
                sa_exc.TimeoutError,
                OSError,
            ) as error:
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("database_unavailable", error=type(error).__name__)
                await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc_failed")
                await context.abort(grpc.StatusCode.INTERNAL, GENERIC_INTERNAL)
            finally:
                metrics.observe_rpc(method, code, time.perf_counter() - started)
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
    metrics: Metrics | None = None,
    health_servicer: Any | None = None,
) -> RunningServer:
    """Create, wire and start a server; `register` adds the servicers. Port 0 picks a free one.

    RPCs are counted in `metrics`, by default the process's shared families. `health_servicer`
    replaces the plain health service (readiness that follows the service's dependencies).
    """
    server = grpc.aio.server(
        interceptors=[RpcInterceptor(metrics or default_metrics())],
        options=message_options(max_message_bytes),
    )
    register(server)
    if health_servicer is None:
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


# Methods a channel retries on another replica after UNAVAILABLE (the replica died or its
# database is down): reads, and the update writes that are idempotent by design — a replayed
# checkpoint with the same sequence number (and hash), journal entry, engine event, renewal
# or completion with the same status is accepted and changes nothing. Every other write
# fails once with UNAVAILABLE (503) because nobody can tell whether it was applied.
RETRYABLE_METHODS: dict[str, tuple[str, ...]] = {
    "cairn.v1.IdentityService": (
        "Authenticate",
        "Authorize",
        "GetBootstrapStatus",
        "ListMembers",
        "GetOrganization",
        "ListInvites",
        "ListTeams",
        "GetTeam",
        "ListMemberTeams",
        "ListStackGrants",
        "GetMemberStackPermissions",
        "ListAccessTokens",
        "PurgeStackGrants",
    ),
    "cairn.v1.StacksService": (
        "GetStack",
        "ListStacks",
        "ProjectExists",
        "GetAnnotation",
        "GetStarterWorkflow",
    ),
    "cairn.v1.UpdatesService": (
        "GetUpdateStatus",
        "ListEngineEvents",
        "ListUpdates",
        "GetUpdate",
        "ExportDeployment",
        "GetStackStates",
        "CheckStackDeletion",
        "ListResources",
        "GetPreview",
        "ListPreviews",
        "ListActivity",
        "GetUpdateTimeline",
        "SummariseUpdate",
        "ListStackReferences",
        "ListReferencingStacks",
        "RenewLease",
        "PatchCheckpoint",
        "PatchCheckpointVerbatim",
        "PatchCheckpointDelta",
        "AppendJournalEntries",
        "RecordEngineEvents",
        "CompleteUpdate",
    ),
    "cairn.v1.ConsoleSessionService": ("RevokeSession", "CheckSession"),
    "cairn.v1.SecretsService": ("ListDecryptionEvents",),
    "cairn.v1.AgentPoolsService": (
        "ListPools",
        "GetPool",
        "GetDeploymentSettings",
        "ListDeployments",
        "GetDeployment",
        "GetDeploymentLogs",
    ),
    "grpc.health.v1.Health": ("Check",),
}
RETRY_ATTEMPTS = 3  # the first try included
RETRY_INITIAL_BACKOFF_SECONDS = 0.05
RETRY_MAX_BACKOFF_SECONDS = 0.5
# A dead replica's subchannel is retried this often at most, so a restarted one rejoins fast.
RECONNECT_MIN_MS = 100
RECONNECT_MAX_MS = 2_000


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def service_config(timeout_seconds: float | None = None) -> dict[str, Any]:
    """Round-robin, bounded retries of idempotent methods, and an optional deadline backstop.

    gRPC retries a call only while no response has started, within the call's own deadline,
    and stops retrying altogether when most recent calls failed (retry throttling).
    """
    retry_policy = {
        "maxAttempts": RETRY_ATTEMPTS,
        "initialBackoff": _duration(RETRY_INITIAL_BACKOFF_SECONDS),
        "maxBackoff": _duration(RETRY_MAX_BACKOFF_SECONDS),
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    retryable: dict[str, Any] = {
        "name": [
            {"service": service, "method": method}
            for service, methods in RETRYABLE_METHODS.items()
            for method in methods
        ],
        "retryPolicy": retry_policy,
    }
    default: dict[str, Any] = {"name": [{}]}
    if timeout_seconds is not None:
        # The stricter of this and the caller's deadline applies; covers calls made without one.
        retryable["timeout"] = _duration(timeout_seconds)
        default["timeout"] = _duration(timeout_seconds)
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [retryable, default],
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
    }


def channel_options(
    max_message_bytes: int, timeout_seconds: float | None = None
) -> list[tuple[str, Any]]:
    """Options of every channel to a service: sizes, balancing, retries, dead-peer detection."""
    return [
        *message_options(max_message_bytes),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(timeout_seconds))),
        # Our own config wins; never look for one in DNS.
        ("grpc.service_config_disable_resolution", 1),
        # A retried call keeps its request until committed; checkpoints can be large.
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
    ]


def open_channel(
    addresses: str, max_message_bytes: int, *, timeout_seconds: float | None = None
) -> grpc.aio.Channel:
    """An insecure channel (loopback or a private network) balancing across replicas."""
    options = channel_options(max_message_bytes, timeout_seconds)
    return grpc.aio.insecure_channel(channel_target(addresses), options=options)


async def check_health(channel: grpc.aio.Channel, timeout: float = 2.0) -> bool:
    """Whether the server behind a channel answers SERVING to the standard health check."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
