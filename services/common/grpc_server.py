"""Builds grpc.aio servers and channels: size limits, the RPC interceptor (errors, request
ids, metrics), health, reflection."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import exc as sa_exc

from services.common.auth import REQUEST_ID_KEY, VERIFIED_CALLER, Caller
from services.common.errors import DomainError
from services.common.local_calls import (
    LocalChannel,
    LocalServer,
    serve_locally,
    stop_serving_locally,
)
from services.common.logging import get_logger
from services.common.metrics import Metrics, default_metrics
from services.common.signing import CallSigner, SigningChannel
from services.common.tls import Tls
from services.common.verification import AuthenticatedCall, CallAuthenticator, is_exempt

log = get_logger("cairn.grpc")

GENERIC_INTERNAL = "Internal error."
# A refused or timed-out database connection can surface as a bare OSError from the driver
# rather than wrapped by SQLAlchemy; TimeoutError: the pool is empty.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
)
DATABASE_UNAVAILABLE = "Service Unavailable: the database is unavailable; try again."


def message_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Raised send/receive limits shared by servers and channels (checkpoints are large)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class RpcInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The one server interceptor: authenticates, binds the request id, translates errors,
    counts and times.

    Every method but the health check needs a credential (`verification.py`); the verified
    caller is what servicers see (`caller_from_context`). Domain errors become their status
    code once; anything else becomes a sanitised INTERNAL. Every unary RPC is counted by its
    final status code and timed. Calls made with an access token that change something are
    recorded in the audit log, like their REST twins.
    """

    def __init__(self, metrics: Metrics, authenticator: CallAuthenticator) -> None:
        self._metrics = metrics
        self._authenticator = authenticator
        # method -> (the servicer's handler, its guarded twin): a registered method's handler
        # is the same object on every call, so it is wrapped once, not on every RPC.
        self._guarded: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if handler.unary_unary is None:
            return self._guard_stream(handler, method)
        known = self._guarded.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = self._guard_unary(handler, method)
        self._guarded[method] = (handler, guarded)
        return guarded

    def _guard_unary(self, handler: Any, method: str) -> Any:
        inner = handler.unary_unary
        metrics = self._metrics
        authenticator = self._authenticator
        is_open = is_exempt(method)

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = context.invocation_metadata()
            structlog.contextvars.bind_contextvars(request_id=_request_id(metadata), rpc=method)
            started = time.perf_counter()
            started_at = time.time()
            code = grpc.StatusCode.UNKNOWN
            call: AuthenticatedCall | None = None
            try:
                if is_open:
                    call = AuthenticatedCall(Caller(request_id=_request_id(metadata)))
                else:
                    call = await authenticator.authenticate(method, request, metadata)
                reset = VERIFIED_CALLER.set(call.caller)
                try:
                    reply = await inner(request, context)
                finally:
                    VERIFIED_CALLER.reset(reset)
                code = context.code() or grpc.StatusCode.OK
                return reply
            except DomainError as error:
                code = error.code
                await context.abort(error.code, error.message)
            except DATABASE_UNAVAILABLE_ERRORS as error:
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
                if call is not None and call.grant is not None and call.access is not None:
                    await _record_token_call(authenticator, call, method, code, context, started_at)
                structlog.contextvars.unbind_contextvars("request_id", "rpc")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guard_stream(self, handler: Any, method: str) -> Any:
        """Streaming methods (server reflection) answer authenticated callers only."""
        authenticator = self._authenticator

        async def authenticated(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            try:
                await authenticator.authenticate(method, None, context.invocation_metadata())
            except DomainError as error:
                await context.abort(error.code, error.message)

        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def guarded_stream(
                requests: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await authenticated(context)
                async for reply in inner_stream(requests, context):
                    yield reply

            return grpc.stream_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        # No other streaming shape is served; refuse rather than pass one through unchecked.
        async def refused(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented.")

        return grpc.unary_unary_rpc_method_handler(refused)


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return value
    return ""


async def _record_token_call(
    authenticator: CallAuthenticator,
    call: AuthenticatedCall,
    method: str,
    code: grpc.StatusCode,
    context: grpc.aio.ServicerContext[Any, Any],
    started_at: float,
) -> None:
    tokens = authenticator.tokens
    if tokens is None or call.grant is None or call.access is None:
        return
    user_agent = ""
    for key, value in context.invocation_metadata() or ():
        if key == "user-agent" and isinstance(value, str):
            user_agent = value
    await tokens.record(
        call.grant, call.access, method, code, context.peer(), user_agent, started_at
    )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health's aio HealthServicer (untyped)
    local: LocalServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float = 5.0) -> None:
        stop_serving_locally(self.address, self.local)
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


class GenericHandlersOnly:
    """A server as the generated `add_*_to_server` functions see it: each service is served
    through the generic handler they add, and their per-method registration is skipped.

    grpcio's asyncio server keeps one pending request per registered method and, for every
    RPC that arrives, waits again on all of them (`asyncio.wait` adds and removes a callback
    on each): work in proportion to the number of methods, 30 to 60 here, on every call.
    Unregistered, a call reaches the same handler (interceptors included) through the one
    generic request. Everything else is the server's own.
    """

    def __init__(self, server: grpc.aio.Server, local: LocalServer) -> None:
        self._server = server
        self._local = local

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(handlers)
        self._local.add(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


async def start_server(
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    authenticator: CallAuthenticator,
    metrics: Metrics | None = None,
    is_reflection_served: bool = True,
    tls: Tls | None = None,
    health_servicer: Any | None = None,
) -> RunningServer:
    """Create, wire and start a server; `register` adds the servicers. Port 0 picks a free one.

    Every call is authenticated by `authenticator` (health checks aside); reflection, when
    served, answers authenticated callers only. RPCs are counted in `metrics`, by default
    the process's shared families. With `tls`, the port speaks (mutual) TLS only.
    `health_servicer` replaces the plain health service (readiness that follows the
    service's dependencies).
    """
    interceptor = RpcInterceptor(metrics or default_metrics(), authenticator)
    server = grpc.aio.server(interceptors=[interceptor], options=message_options(max_message_bytes))
    # Peers in this process call the same handlers through the same interceptor, without the
    # socket (`local_calls.py`).
    local = LocalServer([], interceptor)
    registrar = cast(grpc.aio.Server, GenericHandlersOnly(server, local))
    register(registrar)
    if health_servicer is None:
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    if is_reflection_served:
        # The real server: reflection picks its asyncio servicer by the server's type, and
        # its one registered method costs little.
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    if tls is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        bound = server.add_secure_port(f"{host}:{port}", tls.server_credentials())
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server=server, port=bound, health=health_servicer, local=local)
    serve_locally(running.address, local)
    return running


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
        "CheckOrganizationRole",
        "ListUsers",
        "GetUser",
        "GetInviteLink",
    ),
    "cairn.v1.StacksService": (
        "GetStack",
        "ListStacks",
        "ProjectExists",
        "GetAnnotation",
        "GetStarterWorkflow",
        "ListDownstreamReferences",
        "ListDeletedStacks",
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
        "GetStateRetention",
        "SetStateRetention",
        "ListUpdatesByTokens",
        "RenewLease",
        "PatchCheckpoint",
        "PatchCheckpointVerbatim",
        "PatchCheckpointDelta",
        "AppendJournalEntries",
        "RecordEngineEvents",
        "CompleteUpdate",
    ),
    "cairn.v1.ConsoleSessionService": ("RevokeSession", "CheckSession"),
    "cairn.v1.OidcService": (
        "ListOidcIssuers",
        "GetOidcIssuer",
        "GetAuthPolicy",
        "GetSignInOptions",
    ),
    "cairn.v1.SecretsService": ("ListDecryptionEvents",),
    # PublishEvent stores an event once by its id.
    "cairn.v1.HookService": ("ListHooks", "GetHook", "ListHookDeliveries", "PublishEvent"),
    "cairn.v1.AgentPoolsService": (
        "ListPools",
        "GetPool",
        "GetDeploymentSettings",
        "ListDeployments",
        "GetDeployment",
        "GetDeploymentLogs",
        "FindDeploymentsByTokens",
    ),
    "cairn.v1.DeploymentSchedulesService": (
        "ListSchedules",
        "GetSchedule",
        "ListScheduleHistory",
        "ListDriftRuns",
        "GetDriftRun",
        "GetDriftStatus",
        "SetDeploymentsPaused",
        "GetStackDeploymentsMetadata",
        "GetOrgDeploymentsMetadata",
        "LocateDeployment",
    ),
    "grpc.health.v1.Health": ("Check",),
}
RETRY_ATTEMPTS = 3  # the first try included
RETRY_INITIAL_BACKOFF_SECONDS = 0.05
RETRY_MAX_BACKOFF_SECONDS = 0.5
# A dead replica's subchannel is retried after 100 ms, then at most every 2 s, so a restarted
# one rejoins fast.
RECONNECT_MIN_MS = 100
RECONNECT_MAX_MS = 2_000
# How long one connection attempt may take (gRPC reads `grpc.min_reconnect_backoff_ms` as
# this, not as a backoff): long enough for a busy peer to answer the HTTP/2 handshake, which
# at 100 ms made calls fail as UNAVAILABLE under load. A refused connection fails at once.
CONNECT_TIMEOUT_MS = 5_000


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
        # Connections of this channel only: with grpc's process-wide pool, a new channel took
        # over another channel's connection to the same address, with its state (a server
        # gone from that address left it refusing, in backoff, even once a new server
        # listened there).
        ("grpc.use_local_subchannel_pool", 1),
        # A retried call keeps its request until committed; checkpoints can be large.
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_MIN_MS),
        ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_MS),
    ]


def open_channel(
    addresses: str,
    max_message_bytes: int,
    *,
    signer: CallSigner | None,
    timeout_seconds: float | None = None,
    tls: Tls | None = None,
    local_calls: bool = False,
) -> grpc.aio.Channel:
    """A channel balancing across a service's replicas, signing every call with `signer`.

    Only a channel used for health checks alone may go without a signer: every other
    method refuses unsigned calls. With `tls`, the channel speaks mutual TLS (calls are
    still signed). With `local_calls` and without TLS, a server at one address that runs in
    this process is called without the socket (`local_calls.py`), signed and checked all the
    same.
    """
    options = channel_options(max_message_bytes, timeout_seconds)
    target = channel_target(addresses)
    if tls is None:
        channel = grpc.aio.insecure_channel(target, options=options)
    else:
        channel = grpc.aio.secure_channel(
            target, tls.channel_credentials(), options=[*options, *tls.channel_options(addresses)]
        )
    if local_calls and tls is None and "," not in addresses:
        # With TLS set, even a call in this process goes through it, certificates checked.
        channel = LocalChannel(addresses, channel, max_message_bytes, timeout_seconds)
    return channel if signer is None else SigningChannel(channel, signer)


async def check_health(channel: grpc.aio.Channel, timeout: float = 2.0) -> bool:
    """Whether the server behind a channel answers SERVING to the standard health check."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
