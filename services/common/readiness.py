"""Readiness: a service is SERVING only while it can reach what it depends on.

Each service names its dependencies (its database, and Redis when configured) with a cheap
probe each (`SELECT 1`, `PING`). Its health service probes them when asked for its health,
at most once per `dependency_probe_cache_seconds` and each within
`dependency_probe_timeout_seconds`; while one fails, the service and every name it serves
answer NOT_SERVING. Each dependency can also be asked about by its own health name
(`cairn.dependency.database`, ...), which is how the gateway's `/readyz` names what is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import Settings
from services.common.logging import get_logger

log = get_logger("cairn.readiness")

DEPENDENCY_HEALTH_PREFIX = "cairn.dependency."
# Answers SERVING whenever the process answers at all, whatever its dependencies: what a
# liveness probe asks (Kubernetes' gRPC probe names it), so an unreachable database makes a
# service unready without restarting it.
LIVENESS_HEALTH_NAME = "cairn.liveness"
# Every dependency any service may have, in the order `/readyz` reports them.
DEPENDENCY_NAMES: tuple[str, ...] = ("database", "redis")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Context = grpc.aio.ServicerContext[Any, Any]
# grpc_health ships no type information.
_HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Dependency:
    """Something a service cannot work without, and a cheap check that raises when it is down."""

    name: str
    probe: Callable[[], Awaitable[object]]

    @property
    def health_name(self) -> str:
        return dependency_health_name(self.name)


def dependency_health_name(name: str) -> str:
    """The health-check service name a dependency is reported under."""
    return DEPENDENCY_HEALTH_PREFIX + name


def database_dependency(engine: AsyncEngine) -> Dependency:
    """The service's database: one `SELECT 1` through its own pool."""

    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return Dependency("database", probe)


class ReadinessHealthServicer(_HealthServicer):  # type: ignore[misc]
    """The standard health service, NOT_SERVING while a dependency's probe fails.

    `set` records the status the server wants for a name; what a caller sees is that status
    while every dependency answers, NOT_SERVING otherwise. Probes run when a caller asks
    (Check), so an idle service costs nothing; answers are reused for `cache_seconds`.
    """

    def __init__(
        self,
        dependencies: Iterable[Dependency],
        *,
        timeout_seconds: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._dependencies = tuple(dependencies)
        self._by_health_name = {
            dependency.health_name: dependency for dependency in self._dependencies
        }
        self._timeout_seconds = timeout_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._wanted: dict[str, int] = {"": SERVING}
        self._reachable: dict[str, bool] = {
            dependency.name: True for dependency in self._dependencies
        }
        self._checked_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, dependencies: Iterable[Dependency]
    ) -> ReadinessHealthServicer:
        return cls(
            dependencies,
            timeout_seconds=settings.dependency_probe_timeout_seconds,
            cache_seconds=settings.dependency_probe_cache_seconds,
        )

    @property
    def reachable(self) -> Mapping[str, bool]:
        """Each dependency's state as last probed."""
        return dict(self._reachable)

    @property
    def is_ready(self) -> bool:
        return all(self._reachable.values())

    async def set(self, service: str, status: int) -> None:
        self._wanted[service] = status
        await super().set(service, status if self.is_ready else NOT_SERVING)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service == LIVENESS_HEALTH_NAME:
            return health_pb2.HealthCheckResponse(status=SERVING)
        await self.refresh()
        dependency = self._by_health_name.get(request.service)
        if dependency is not None:
            status = SERVING if self._reachable[dependency.name] else NOT_SERVING
            return health_pb2.HealthCheckResponse(status=status)
        reply: health_pb2.HealthCheckResponse = await super().Check(request, context)
        return reply

    async def refresh(self) -> None:
        """Probe every dependency unless the last answers are recent enough."""
        if self._is_fresh():
            return
        asked_at = self._clock()
        async with self._lock:
            # Callers that waited for the lock use the answers produced meanwhile.
            checked_at = self._checked_at
            if self._is_fresh() or (checked_at is not None and checked_at >= asked_at):
                return
            results = await asyncio.gather(*(self._probe(d) for d in self._dependencies))
            was_ready = self.is_ready
            self._reachable = {
                dependency.name: result
                for dependency, result in zip(self._dependencies, results, strict=True)
            }
            self._checked_at = self._clock()
            if self.is_ready != was_ready:
                log.warning(
                    "readiness_changed", is_ready=self.is_ready, dependencies=self._reachable
                )
            for service, wanted in self._wanted.items():
                # The base class ignores this once the server is shutting down.
                await super().set(service, wanted if self.is_ready else NOT_SERVING)

    def _is_fresh(self) -> bool:
        checked_at = self._checked_at
        return checked_at is not None and self._clock() - checked_at < self._cache_seconds

    async def _probe(self, dependency: Dependency) -> bool:
        try:
            await asyncio.wait_for(dependency.probe(), self._timeout_seconds)
        except Exception as error:
            log.warning(
                "dependency_probe_failed", dependency=dependency.name, error=type(error).__name__
            )
            return False
        return True


async def unreachable_dependencies(channel: grpc.aio.Channel, timeout: float = 2.0) -> list[str]:
    """The dependencies the service behind a channel reports down (none when it cannot say)."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def is_down(name: str) -> bool:
        request = health_pb2.HealthCheckRequest(service=dependency_health_name(name))
        try:
            reply = await stub.Check(request, timeout=timeout)
        except grpc.aio.AioRpcError:
            # NOT_FOUND: the service does not use it; anything else: it cannot say.
            return False
        return bool(reply.status != SERVING)

    results = await asyncio.gather(*(is_down(name) for name in DEPENDENCY_NAMES))
    return [name for name, down in zip(DEPENDENCY_NAMES, results, strict=True) if down]
