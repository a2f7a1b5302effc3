"""The only code issuing SQL for the audit table: append, read and prune, never update."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, insert, or_, select

from services.common.db import Sessions
from services.identity.audit.domain import (
    ActorKind,
    AuditEntry,
    AuditPage,
    AuditQuery,
    continuation_token,
)
from services.identity.audit.models import AuditEventRow


def _entry(row: AuditEventRow) -> AuditEntry:
    return AuditEntry(
        id=str(row.id),
        time_micros=row.time_micros,
        organization=row.organization,
        event=row.event,
        target=row.target,
        description=row.description,
        actor_kind=ActorKind(row.actor_kind),
        actor_login=row.actor_login,
        actor_name=row.actor_name,
        token_id=row.token_id,
        token_name=row.token_name,
        source_ip=row.source_ip,
        user_agent=row.user_agent,
        status=row.status,
        method=row.method,
        path=row.path,
        request_id=row.request_id,
        is_org_admin_required=row.is_org_admin_required,
        is_auth_failure=row.is_auth_failure,
    )


def _values(entry: AuditEntry) -> dict[str, Any]:
    return {
        "time_micros": entry.time_micros,
        "organization": entry.organization,
        "event": entry.event,
        "target": entry.target,
        "description": entry.description,
        "actor_kind": entry.actor_kind.value,
        "actor_login": entry.actor_login,
        "actor_name": entry.actor_name,
        "token_id": entry.token_id,
        "token_name": entry.token_name,
        "source_ip": entry.source_ip,
        "user_agent": entry.user_agent,
        "status": entry.status,
        "method": entry.method,
        "path": entry.path,
        "request_id": entry.request_id,
        "is_org_admin_required": entry.is_org_admin_required,
        "is_auth_failure": entry.is_auth_failure,
    }


def _matching(query: AuditQuery) -> Select[AuditEventRow]:
    statement = select(AuditEventRow)
    if query.organization or query.is_site_level:
        statement = statement.where(AuditEventRow.organization == query.organization)
    if query.since_micros:
        statement = statement.where(AuditEventRow.time_micros >= query.since_micros)
    if query.until_micros:
        statement = statement.where(AuditEventRow.time_micros < query.until_micros)
    if query.user_login:
        statement = statement.where(AuditEventRow.actor_login == query.user_login)
    if query.event:
        statement = statement.where(AuditEventRow.event == query.event)
    return statement.order_by(AuditEventRow.time_micros.desc(), AuditEventRow.id.desc())


class AuditStore:
    """Audit entries; one session and transaction per call."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def record(self, entries: Sequence[AuditEntry]) -> int:
        """Append entries (already bounded to the column widths) in one transaction; returns
        how many were stored."""
        if not entries:
            return 0
        async with self._sessions.begin() as session:
            await session.execute(insert(AuditEventRow), [_values(e) for e in entries])
        return len(entries)

    async def page(
        self, query: AuditQuery, *, after: tuple[int, int] | None, limit: int
    ) -> AuditPage:
        """Up to `limit` entries newest first, past the (time, id) `after` when resuming."""
        statement = _matching(query)
        if after is not None:
            at, last_id = after
            statement = statement.where(
                or_(
                    AuditEventRow.time_micros < at,
                    and_(AuditEventRow.time_micros == at, AuditEventRow.id < last_id),
                )
            )
        async with self._sessions.begin() as session:
            rows = list((await session.scalars(statement.limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        token = continuation_token(rows[-1].time_micros, rows[-1].id) if more and rows else ""
        return AuditPage(entries=tuple(_entry(row) for row in rows), continuation_token=token)

    async def export(self, query: AuditQuery, *, limit: int) -> tuple[AuditEntry, ...] | None:
        """Every matching entry newest first, or None when there are more than `limit`."""
        async with self._sessions.begin() as session:
            rows = list((await session.scalars(_matching(query).limit(limit + 1))).all())
        if len(rows) > limit:
            return None
        return tuple(_entry(row) for row in rows)

    async def prune(self, before_micros: int) -> int:
        """Delete entries recorded before a moment (the retention rule); returns the count."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(AuditEventRow).where(AuditEventRow.time_micros < before_micros)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
