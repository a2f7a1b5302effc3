"""gRPC edge of the audit log (hosted by the identity process): protobuf <-> entries."""

from __future__ import annotations

from typing import Any

import grpc

from protos.cairn.v1 import audit_pb2, audit_pb2_grpc
from services.common.clock import Clock
from services.common.db import Sessions
from services.identity.audit.domain import ActorKind, AuditEntry, AuditQuery
from services.identity.audit.service import AuditLog, RetentionPruner
from services.identity.audit.store import AuditStore

AUDIT_SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]

_KIND_BY_ENUM: dict[audit_pb2.AuditActorKind.ValueType, ActorKind] = {
    audit_pb2.AUDIT_ACTOR_KIND_USER: ActorKind.USER,
    audit_pb2.AUDIT_ACTOR_KIND_UPDATE_TOKEN: ActorKind.UPDATE_TOKEN,
    audit_pb2.AUDIT_ACTOR_KIND_AGENT_POOL: ActorKind.AGENT_POOL,
    audit_pb2.AUDIT_ACTOR_KIND_ANONYMOUS: ActorKind.ANONYMOUS,
}
_ENUM_BY_KIND = {kind: value for value, kind in _KIND_BY_ENUM.items()}


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Append and read; there is deliberately no RPC that changes or deletes an entry."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def RecordAuditEvents(
        self, request: audit_pb2.RecordAuditEventsRequest, context: Context
    ) -> audit_pb2.RecordAuditEventsResponse:
        now = self._audit.now_micros()
        recorded = await self._audit.record([_entry(e, now) for e in request.events])
        return audit_pb2.RecordAuditEventsResponse(recorded=recorded)

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: Context
    ) -> audit_pb2.ListAuditEventsResponse:
        page = await self._audit.page(
            _query(request.filter), request.continuation_token, request.page_size
        )
        return audit_pb2.ListAuditEventsResponse(
            events=[_event(e) for e in page.entries], continuation_token=page.continuation_token
        )

    async def ExportAuditEvents(
        self, request: audit_pb2.ExportAuditEventsRequest, context: Context
    ) -> audit_pb2.ExportAuditEventsResponse:
        entries = await self._audit.export(_query(request.filter))
        return audit_pb2.ExportAuditEventsResponse(events=[_event(e) for e in entries])


def audit_service(
    sessions: Sessions, clock: Clock, retention_days: int
) -> tuple[AuditServicer, RetentionPruner]:
    """The servicer and the pruner over one store."""
    store = AuditStore(sessions)
    return AuditServicer(AuditLog(store, clock)), RetentionPruner(store, clock, retention_days)


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
