"""gRPC edge of the audit log (hosted by the identity process), and its retention prune."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protos.cairn.v1 import audit_pb2, audit_pb2_grpc
from services.common.clock import Clock
from services.common.logging import get_logger
from services.identity.audit_domain import (
    MAX_EXPORT_EVENTS,
    ActorKind,
    AuditEntry,
    AuditQuery,
    page_size,
    parse_continuation_token,
    retention_cutoff,
    too_many_to_export,
    validate_export,
    validate_query,
)
from services.identity.audit_store import AuditStore

AUDIT_SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
# Pruning is cheap (one indexed DELETE); hourly keeps the table within a day of the setting.
PRUNE_INTERVAL_SECONDS = 3600.0

Context = grpc.aio.ServicerContext[Any, Any]

log = get_logger("cairn.audit")

_KIND_BY_ENUM: dict[audit_pb2.AuditActorKind.ValueType, ActorKind] = {
    audit_pb2.AUDIT_ACTOR_KIND_USER: ActorKind.USER,
    audit_pb2.AUDIT_ACTOR_KIND_UPDATE_TOKEN: ActorKind.UPDATE_TOKEN,
    audit_pb2.AUDIT_ACTOR_KIND_AGENT_POOL: ActorKind.AGENT_POOL,
    audit_pb2.AUDIT_ACTOR_KIND_ANONYMOUS: ActorKind.ANONYMOUS,
}
_ENUM_BY_KIND = {kind: value for value, kind in _KIND_BY_ENUM.items()}


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Append and read; there is deliberately no RPC that changes or deletes an entry."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def RecordAuditEvents(
        self, request: audit_pb2.RecordAuditEventsRequest, context: Context
    ) -> audit_pb2.RecordAuditEventsResponse:
        now = int(self._clock.now() * 1_000_000)
        recorded = await self._store.record([_entry(e, now) for e in request.events])
        return audit_pb2.RecordAuditEventsResponse(recorded=recorded)

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        query = validate_query(_query(request.filter))
        page = await self._store.page(
            query,
            after=parse_continuation_token(request.continuation_token),
            limit=page_size(request.page_size),
        )
        return audit_pb2.ListAuditEventsResponse(
            events=[_event(e) for e in page.entries], continuation_token=page.continuation_token
        )

    async def ExportAuditEvents(
        self, request: audit_pb2.ExportAuditEventsRequest, context: Context
    ) -> audit_pb2.ExportAuditEventsResponse:
        query = validate_export(_query(request.filter))
        entries = await self._store.export(query, limit=MAX_EXPORT_EVENTS)
        if entries is None:
            raise too_many_to_export()
        return audit_pb2.ExportAuditEventsResponse(events=[_event(e) for e in entries])


class RetentionPruner:
    """Deletes entries older than the retention setting: once at start, then periodically."""

    def __init__(
        self,
        store: AuditStore,
        clock: Clock,
        retention_days: int,
        *,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention_days = retention_days
        self._interval = interval_seconds
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def prune_once(self) -> int:
        """Prune now; returns how many entries went."""
        cutoff = retention_cutoff(self._clock.now(), self._retention_days)
        if cutoff is None:
            return 0
        pruned = await self._store.prune(cutoff)
        if pruned:
            log.info("audit_pruned", entries=pruned, retention_days=self._retention_days)
        return pruned

    def start(self) -> None:
        if self._retention_days > 0 and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                # The database may be away for a while; the next round tries again.
                log.exception("audit_prune_failed")
            await self._sleep(self._interval)


def audit_service(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, retention_days: int
) -> tuple[AuditServicer, RetentionPruner]:
    """The servicer and the pruner over one store."""
    store = AuditStore(sessions)
    return AuditServicer(store, clock), RetentionPruner(store, clock, retention_days)


def _query(message: audit_pb2.AuditFilter) -> AuditQuery:
    return AuditQuery(
        organization=message.organization,
        since_micros=message.since_micros,
        until_micros=message.until_micros,
        user_login=message.user_login,
        event=message.event,
        is_site_level=message.is_site_level,
    )


def _entry(event: audit_pb2.AuditEvent, now_micros: int) -> AuditEntry:
    return AuditEntry(
        time_micros=event.time_micros or now_micros,
        organization=event.organization,
        event=event.event,
        target=event.target,
        description=event.description,
        actor_kind=_KIND_BY_ENUM.get(event.actor_kind, ActorKind.ANONYMOUS),
        actor_login=event.actor_login,
        actor_name=event.actor_name,
        token_id=event.token_id,
        token_name=event.token_name,
        source_ip=event.source_ip,
        user_agent=event.user_agent,
        status=event.status,
        method=event.method,
        path=event.path,
        request_id=event.request_id,
        is_org_admin_required=event.is_org_admin_required,
        is_auth_failure=event.is_auth_failure,
    )


def _event(entry: AuditEntry) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        id=entry.id,
        time_micros=entry.time_micros,
        organization=entry.organization,
        event=entry.event,
        target=entry.target,
        description=entry.description,
        actor_kind=_ENUM_BY_KIND[entry.actor_kind],
        actor_login=entry.actor_login,
        actor_name=entry.actor_name,
        token_id=entry.token_id,
        token_name=entry.token_name,
        source_ip=entry.source_ip,
        user_agent=entry.user_agent,
        status=entry.status,
        method=entry.method,
        path=entry.path,
        request_id=entry.request_id,
        is_org_admin_required=entry.is_org_admin_required,
        is_auth_failure=entry.is_auth_failure,
    )
