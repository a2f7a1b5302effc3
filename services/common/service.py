"""What every service shares at start-up: its database, its server, and an orderly stop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import Settings
from services.common.datadir import prepare_database_files
from services.common.db import (
    Sessions,
    create_engine_for,
    read_session_factory,
    session_factory,
)
from services.common.errors import Unavailable
from services.common.grpc_server import RunningServer, open_channel, start_server
from services.common.logging import get_logger
from services.common.metrics import default_metrics, serve_metrics
from services.common.migrations import upgrade_to_head
from services.common.readiness import Dependency, ReadinessHealthServicer
from services.common.signing import CallSigner, load_internal_key
from services.common.tls import load_tls
from services.common.token_callers import TokenAuthorizer
from services.common.verification import CallAuthenticator

log = get_logger("cairn.service")


@dataclass
class Database:
    engine: AsyncEngine
    sessions: Sessions  # write transactions
    reads: Sessions  # read-only transactions (no write lock on SQLite)


async def open_database(
    settings: Settings, service: str, migrations: Path, metadata: MetaData
) -> Database:
    """Connect to the configured database and migrate this service's tables to head."""
    url = settings.resolved_database_url()
    prepare_database_files(url, settings.data_dir)
    engine = create_engine_for(settings)
    try:
        applied = await upgrade_to_head(engine, service, migrations, metadata)
    except BaseException:
        await engine.dispose()
        raise
    if applied:
        log.info("migrated", service=service, revisions=applied)
    return Database(
        engine=engine,
        sessions=session_factory(engine, queue_timeout_seconds=settings.database_timeout_seconds),
        reads=read_session_factory(engine),
    )


def peer_channel(settings: Settings, service: str) -> grpc.aio.Channel:
    """A signed channel to another service, from its configured address (TLS when set)."""
    address = settings.service_address(service)
    if not address:
        raise ValueError(f"CAIRN_{service.upper()}_ADDRESS is not set")
    return open_channel(
        address,
        settings.max_message_bytes,
        signer=CallSigner(load_internal_key(settings)),
        tls=load_tls(settings),
        local_calls=settings.local_calls,
    )


def call_authenticator(settings: Settings) -> CallAuthenticator:
    """What a service checks every call with: the internal key and, for access tokens,
    identity and stacks reached over signed channels."""

    def connect(service: str) -> grpc.aio.Channel:
        try:
            return peer_channel(settings, service)
        except ValueError:
            raise Unavailable(
                "Service Unavailable: access tokens cannot be checked: "
                f"CAIRN_{service.upper()}_ADDRESS is not set"
            ) from None

    tokens = TokenAuthorizer(connect, settings.grpc_timeout_seconds)
    return CallAuthenticator(load_internal_key(settings), tokens)


@dataclass
class RunningService:
    """A started service: its gRPC server plus what must be closed after it stops."""

    name: str
    server: RunningServer
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        for close in reversed(self.closers):
            await close()


async def serve_service(
    *,
    name: str,
    settings: Settings,
    host: str,
    port: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    closers: list[Callable[[], Awaitable[None]]],
    dependencies: Sequence[Dependency] = (),
) -> RunningService:
    """Start the gRPC server for a wired service; on failure close what was opened.

    With `CAIRN_METRICS_PORT` set (`cairn serve <service>`: one service per process), the
    process's registry is also served as `/metrics` on that port. `cairn up` leaves it unset
    and scrapes everything through the gateway's `/metrics`. The service answers health
    checks NOT_SERVING while one of its `dependencies` is unreachable.
    """
    try:
        authenticator = call_authenticator(settings)
        if authenticator.tokens is not None:
            closers.insert(0, authenticator.tokens.close)
        server = await start_server(
            host=host,
            port=port,
            max_message_bytes=settings.max_message_bytes,
            register=register,
            service_names=service_names,
            authenticator=authenticator,
            is_reflection_served=settings.grpc_reflection,
            tls=load_tls(settings),
            health_servicer=ReadinessHealthServicer.from_settings(settings, dependencies),
        )
    except BaseException:
        for close in reversed(closers):
            await close()
        raise
    service = RunningService(name=name, server=server, closers=closers)
    if settings.metrics_port:
        try:
            endpoint = await serve_metrics(
                default_metrics(), settings.grpc_host, settings.metrics_port
            )
        except BaseException:
            await service.stop(grace=0)
            raise
        # Closers run last to first: the endpoint goes before the database.
        closers.append(endpoint.cleanup)
    return service


StartFunction = Callable[..., Awaitable[RunningService]]


async def serve_until_signal(start: StartFunction, settings: Settings, default_port: int) -> None:
    """Run one service in the foreground until SIGINT/SIGTERM, then stop with a grace period."""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = settings.grpc_port or default_port
    service = await start(settings, host=settings.grpc_host, port=port)
    try:
        await stop.wait()
    finally:
        await service.stop()
