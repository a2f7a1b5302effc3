"""SQL for pools, deployment settings and deployments; returns frozen records, never rows.

What agents do with deployments (claims, logs, job tokens) is in `agent_store`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.agent_pools.domain import (
    ACCEPTED,
    BY_API,
    FAILED,
    FINISHED,
    MAX_ATTEMPTS,
    NOT_STARTED,
    OFFLINE_AFTER_SECONDS,
    RUNNING,
    AgentRecord,
    DeploymentLink,
    DeploymentPage,
    DeploymentRecord,
    LogLine,
    PoolRecord,
    StackName,
    StoredSettings,
    TokenToRevoke,
    check_cancellable,
    check_pool_deletion,
)
from services.agent_pools.models import (
    HOOK_OUTBOX,
    AgentRow,
    DeploymentPauseRow,
    DeploymentRow,
    JobTokenRow,
    LogLineRow,
    PoolRow,
    SettingsRow,
)
from services.common.db import Sessions
from services.common.errors import Aborted, AlreadyExists, NotFound
from services.common.hook_events import add_event

POOL_NOT_FOUND = "Not Found: AgentPool"
VERSION_ATTEMPTS = 20
DEPLOYMENT_NOT_FOUND = "Not Found: Deployment"
ABANDONED = "the agent running this deployment stopped responding"


@dataclass(frozen=True)
class DeploymentEvents:
    """Webhook events of deployments: `events` builds those a change writes to the outbox in
    its own transaction (queued, started, succeeded, failed, and a remediation's outcome;
    none for no event); `written` is told after such a commit."""

    events: Callable[[DeploymentRecord, str], Sequence[PublishEventRequest]]
    written: Callable[[], None]


async def announce(
    session: AsyncSession, events: DeploymentEvents | None, record: DeploymentRecord, status: str
) -> bool:
    """Write a deployment's events in the open transaction; True when one was written."""
    found = () if events is None else events.events(record, status)
    for event in found:
        await add_event(session, HOOK_OUTBOX, event)
    return bool(found)


def told(events: DeploymentEvents | None, written: bool) -> None:
    if written and events is not None:
        events.written()


class AgentPoolStore:
    """Pools, agents, settings and deployments; one transaction per call."""

    def __init__(
        self,
        sessions: Sessions,
        dialect: str,
        events: DeploymentEvents | None = None,
        *,
        reads: Sessions | None = None,
    ) -> None:
        self._sessions = sessions
        self._dialect = dialect
        self._events = events
        # Read-only transactions (no SQLite write lock) for lookups that history views make.
        self._reads = reads or sessions

    # -- pools -----------------------------------------------------------------------------

    async def list_pools(self, organization: str, now: float) -> list[PoolRecord]:
        async with self._sessions.begin() as session:
            rows = list(
                await session.scalars(
                    select(PoolRow)
                    .where(PoolRow.organization == organization)
                    .order_by(PoolRow.created_at, PoolRow.id)
                )
            )
            return await _pool_records(session, rows, now)

    async def create_pool(
        self, organization: str, name: str, description: str, token_hash: str, now: float
    ) -> PoolRecord:
        row = PoolRow(
            id=uuid.uuid4().hex,
            organization=organization,
            name=name,
            description=description,
            token_hash=token_hash,
            created_at=now,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
                await session.flush()
                (record,) = await _pool_records(session, [row], now)
        except IntegrityError:
            raise AlreadyExists("Conflict: token collision; try again") from None
        return record

    async def get_pool(
        self, organization: str, pool_id: str, now: float
    ) -> tuple[PoolRecord, list[AgentRecord]]:
        async with self._sessions.begin() as session:
            row = await _pool(session, organization, pool_id)
            (record,) = await _pool_records(session, [row], now)
            agents = await session.scalars(
                select(AgentRow).where(AgentRow.pool_id == row.id).order_by(AgentRow.registered_at)
            )
            return record, [_agent(agent) for agent in agents]

    async def update_pool(
        self,
        organization: str,
        pool_id: str,
        *,
        name: str | None,
        description: str | None,
        now: float,
    ) -> PoolRecord:
        async with self._sessions.begin() as session:
            row = await _pool(session, organization, pool_id, for_update=True)
            if name is not None:
                row.name = name
            if description is not None:
                row.description = description
            (record,) = await _pool_records(session, [row], now)
            return record

    async def delete_pool(
        self, organization: str, pool_id: str, *, force: bool, now: float
    ) -> None:
        """Refuse while settings use the pool unless forced; forced, they lose the pool."""
        async with self._sessions.begin() as session:
            row = await _pool(session, organization, pool_id, for_update=True)
            users = list(
                await session.scalars(
                    select(SettingsRow).where(SettingsRow.agent_pool_id == row.id).with_for_update()
                )
            )
            check_pool_deletion(len(users), force=force)
            for settings in users:
                settings.settings = {
                    key: value for key, value in settings.settings.items() if key != "agentPoolID"
                }
                settings.agent_pool_id = None
                settings.updated_at = now
            # Work nobody can run any more ends now rather than waiting forever.
            await session.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.pool_id == row.id,
                    DeploymentRow.status.not_in(sorted(FINISHED)),
                )
                .values(
                    status=FAILED,
                    finished_at=now,
                    modified_at=now,
                    lease_expires_at=None,
                    message="the agent pool was deleted",
                )
            )
            await session.delete(row)

    async def pool_exists(self, organization: str, pool_id: str) -> bool:
        async with self._sessions.begin() as session:
            found = await session.scalar(
                select(PoolRow.id).where(
                    PoolRow.id == pool_id, PoolRow.organization == organization
                )
            )
            return found is not None

    async def default_pool(self, organization: str) -> str | None:
        """The organization's default pool: its oldest one."""
        async with self._sessions.begin() as session:
            value: str | None = await session.scalar(
                select(PoolRow.id)
                .where(PoolRow.organization == organization)
                .order_by(PoolRow.created_at, PoolRow.id)
                .limit(1)
            )
            return value

    # -- settings --------------------------------------------------------------------------

    async def get_settings(self, stack_id: str) -> StoredSettings:
        async with self._sessions.begin() as session:
            row = await session.get(SettingsRow, stack_id)
            if row is None:
                return StoredSettings()
            return StoredSettings(dict(row.settings), row.agent_pool_id, True)

    async def put_settings(
        self,
        stack_id: str,
        organization: str,
        settings: Mapping[str, Any],
        agent_pool_id: str | None,
        now: float,
    ) -> StoredSettings:
        async with self._sessions.begin() as session:
            row = await session.get(SettingsRow, stack_id, with_for_update=True)
            if row is None:
                row = SettingsRow(stack_id=stack_id, organization=organization)
                session.add(row)
            row.settings = dict(settings)
            row.agent_pool_id = agent_pool_id
            row.updated_at = now
        return StoredSettings(dict(settings), agent_pool_id, True)

    async def delete_settings(self, stack_id: str) -> bool:
        async with self._sessions.begin() as session:
            deleted = await session.scalar(
                delete(SettingsRow)
                .where(SettingsRow.stack_id == stack_id)
                .returning(SettingsRow.stack_id)
            )
            return deleted is not None

    # -- deployments -----------------------------------------------------------------------

    async def create_deployment(
        self,
        stack: StackName,
        *,
        operation: str,
        pool_id: str,
        settings: Mapping[str, Any],
        requested_by: str,
        requested_by_user_id: str,
        initiator: str,
        now: float,
    ) -> DeploymentRecord:
        # (stack, version) is unique: a concurrent creation that took the same number makes
        # this one retry with the next.
        for _ in range(VERSION_ATTEMPTS):
            try:
                return await self._insert_deployment(
                    stack,
                    operation=operation,
                    pool_id=pool_id,
                    settings=settings,
                    requested_by=requested_by,
                    requested_by_user_id=requested_by_user_id,
                    initiator=initiator,
                    now=now,
                )
            except IntegrityError:
                continue
        raise Aborted("Conflict: too many deployments created at once; try again")

    async def _insert_deployment(
        self,
        stack: StackName,
        *,
        operation: str,
        pool_id: str,
        settings: Mapping[str, Any],
        requested_by: str,
        requested_by_user_id: str,
        initiator: str,
        now: float,
    ) -> DeploymentRecord:
        async with self._sessions.begin() as session:
            last = await session.scalar(
                select(func.max(DeploymentRow.version)).where(
                    DeploymentRow.stack_id == stack.stack_id
                )
            )
            row = DeploymentRow(
                id=uuid.uuid4().hex,
                stack_id=stack.stack_id,
                organization=stack.organization,
                project=stack.project,
                stack=stack.stack,
                version=(last or 0) + 1,
                operation=operation,
                status=NOT_STARTED,
                pool_id=pool_id,
                requested_by=requested_by,
                requested_by_user_id=requested_by_user_id,
                initiator=initiator,
                settings=dict(settings),
                created_at=now,
                modified_at=now,
                attempts=0,
                is_cancel_requested=False,
                message="",
            )
            session.add(row)
            await session.flush()
            record = deployment_record(row)
            written = await announce(session, self._events, record, "queued")
        told(self._events, written)
        return record

    async def list_deployments(
        self,
        organization: str,
        stack_id: str,
        *,
        limit: int,
        offset: int,
        ascending: bool,
        now: float,
    ) -> DeploymentPage:
        condition = DeploymentRow.organization == organization
        if stack_id:
            condition = condition & (DeploymentRow.stack_id == stack_id)
        order = DeploymentRow.created_at.asc() if ascending else DeploymentRow.created_at.desc()
        async with self._sessions.begin() as session:
            await recover_abandoned(session, now)
            total = await session.scalar(select(func.count()).where(condition))
            rows = list(
                await session.scalars(
                    select(DeploymentRow)
                    .where(condition)
                    .order_by(order)
                    .limit(limit)
                    .offset(offset)
                )
            )
            tokens = await job_tokens(session, [row.id for row in rows])
            held = await held_by_pauses(session, rows)
            return DeploymentPage(
                tuple(
                    deployment_record(row, tokens.get(row.id, ()), paused=row.id in held)
                    for row in rows
                ),
                int(total or 0),
            )

    async def get_deployment(
        self, stack_id: str, deployment_id: str, now: float, *, version: int = 0
    ) -> DeploymentRecord:
        async with self._sessions.begin() as session:
            await recover_abandoned(session, now)
            if deployment_id or version < 1:
                row = await session.get(DeploymentRow, deployment_id) if deployment_id else None
            else:
                row = await session.scalar(
                    select(DeploymentRow).where(
                        DeploymentRow.stack_id == stack_id, DeploymentRow.version == version
                    )
                )
            if row is None or row.stack_id != stack_id:
                raise NotFound(DEPLOYMENT_NOT_FOUND)
            tokens = await job_tokens(session, [row.id])
            held = await held_by_pauses(session, [row])
            return deployment_record(row, tokens.get(row.id, ()), paused=row.id in held)

    async def deployments_for_tokens(
        self, stack_id: str, token_ids: list[str]
    ) -> list[DeploymentLink]:
        """The stack's deployments whose jobs were given one of these tokens."""
        if not token_ids:
            return []
        async with self._reads.begin() as session:
            found = await session.execute(
                select(JobTokenRow.token_id, DeploymentRow.id, DeploymentRow.version)
                .join(DeploymentRow, DeploymentRow.id == JobTokenRow.deployment_id)
                .where(
                    JobTokenRow.token_id.in_(sorted(set(token_ids))),
                    DeploymentRow.stack_id == stack_id,
                )
                .order_by(JobTokenRow.token_id)
            )
            return [DeploymentLink(str(t), str(d), int(v)) for t, d, v in found]

    async def latest_version(self, stack_id: str) -> int:
        async with self._sessions.begin() as session:
            value = await session.scalar(
                select(func.max(DeploymentRow.version)).where(DeploymentRow.stack_id == stack_id)
            )
            return int(value or 0)

    async def logs(self, deployment_id: str, offset: int, count: int) -> list[LogLine]:
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(LogLineRow)
                .where(LogLineRow.deployment_id == deployment_id, LogLineRow.index >= offset)
                .order_by(LogLineRow.index)
                .limit(count)
            )
            return [LogLine(row.index, row.timestamp, row.text) for row in rows]

    async def cancel(self, stack_id: str, deployment_id: str, now: float) -> DeploymentRecord:
        """Queued work ends at once; running work is stopped by its agent at its next call."""
        async with self._sessions.begin() as session:
            row = await session.get(DeploymentRow, deployment_id, with_for_update=True)
            if row is None or row.stack_id != stack_id:
                raise NotFound(DEPLOYMENT_NOT_FOUND)
            check_cancellable(row.status)
            row.is_cancel_requested = True
            row.modified_at = now
            written = False
            if row.status == NOT_STARTED:
                row.status = FAILED
                row.message = "cancelled"
                row.finished_at = now
                written = await announce(session, self._events, deployment_record(row), FAILED)
            record = deployment_record(row)
        told(self._events, written)
        return record

    async def purge(self, stack_id: str) -> list[TokenToRevoke]:
        """Forget the stack's deployments; returns their jobs' tokens, to revoke."""
        async with self._sessions.begin() as session:
            tokens = await session.execute(
                select(
                    DeploymentRow.id, DeploymentRow.requested_by, DeploymentRow.access_token_id
                ).where(
                    DeploymentRow.stack_id == stack_id, DeploymentRow.access_token_id.is_not(None)
                )
            )
            pending = [TokenToRevoke(str(d), str(login), str(t)) for d, login, t in tokens]
            ids = select(DeploymentRow.id).where(DeploymentRow.stack_id == stack_id)
            await session.execute(delete(LogLineRow).where(LogLineRow.deployment_id.in_(ids)))
            await session.execute(delete(JobTokenRow).where(JobTokenRow.deployment_id.in_(ids)))
            await session.execute(delete(DeploymentRow).where(DeploymentRow.stack_id == stack_id))
            await session.execute(delete(SettingsRow).where(SettingsRow.stack_id == stack_id))
        return pending


async def _pool(
    session: AsyncSession, organization: str, pool_id: str, *, for_update: bool = False
) -> PoolRow:
    statement = select(PoolRow).where(PoolRow.id == pool_id, PoolRow.organization == organization)
    if for_update:
        statement = statement.with_for_update()
    row = await session.scalar(statement)
    if row is None:
        raise NotFound(POOL_NOT_FOUND)
    return row


async def _pool_records(session: AsyncSession, rows: list[PoolRow], now: float) -> list[PoolRecord]:
    """Pools with what their agents and deployments say about them."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    seen = await _max_by_pool(session, AgentRow.pool_id, AgentRow.last_seen_at, ids)
    deployed = await _max_by_pool(session, DeploymentRow.pool_id, DeploymentRow.started_at, ids)
    organization = rows[0].organization
    default = await session.scalar(
        select(PoolRow.id)
        .where(PoolRow.organization == organization)
        .order_by(PoolRow.created_at, PoolRow.id)
        .limit(1)
    )
    records = []
    for row in rows:
        last_seen = float(seen.get(row.id) or 0.0)
        records.append(
            PoolRecord(
                id=row.id,
                organization=row.organization,
                name=row.name,
                description=row.description,
                created_at=row.created_at,
                last_seen_at=last_seen,
                last_deployment_at=float(deployed.get(row.id) or 0.0),
                is_default=row.id == default,
                is_online=bool(last_seen) and now - last_seen < OFFLINE_AFTER_SECONDS,
            )
        )
    return records


async def _max_by_pool(
    session: AsyncSession, pool_column: Any, value_column: Any, pool_ids: list[str]
) -> dict[str, float]:
    """The largest value per pool (pools without rows are absent)."""
    rows = await session.execute(
        select(pool_column, func.max(value_column))
        .where(pool_column.in_(pool_ids))
        .group_by(pool_column)
    )
    return {str(pool_id): float(value) for pool_id, value in rows if value is not None}


async def recover_abandoned(session: AsyncSession, now: float, pool_id: str | None = None) -> None:
    """Jobs whose agent went silent: requeued while attempts remain, failed after that."""
    abandoned = DeploymentRow.status.in_([ACCEPTED, RUNNING]) & (
        DeploymentRow.lease_expires_at < now
    )
    if pool_id is not None:
        abandoned = abandoned & (DeploymentRow.pool_id == pool_id)
    ended = {"finished_at": now, "modified_at": now, "lease_expires_at": None}
    # Cancelled work ends as cancelled whatever its attempts.
    await session.execute(
        update(DeploymentRow)
        .where(abandoned, DeploymentRow.is_cancel_requested.is_(True))
        .values(status=FAILED, message="cancelled", **ended)
    )
    await session.execute(
        update(DeploymentRow)
        .where(abandoned, DeploymentRow.attempts >= MAX_ATTEMPTS)
        .values(status=FAILED, message=ABANDONED, **ended)
    )
    await session.execute(
        update(DeploymentRow)
        .where(abandoned, DeploymentRow.attempts < MAX_ATTEMPTS)
        .values(status=NOT_STARTED, agent_id=None, modified_at=now, lease_expires_at=None)
    )


def _agent(row: AgentRow) -> AgentRecord:
    return AgentRecord(
        id=row.id,
        pool_id=row.pool_id,
        version=row.version,
        platform=row.platform,
        hostname=row.hostname,
        ip=row.ip,
        pid=row.pid,
        last_seen_at=row.last_seen_at,
    )


async def job_tokens(
    session: AsyncSession, deployment_ids: list[str]
) -> dict[str, tuple[str, ...]]:
    """The job token ids of these deployments, oldest first."""
    if not deployment_ids:
        return {}
    found: dict[str, list[str]] = {}
    rows = await session.execute(
        select(JobTokenRow.deployment_id, JobTokenRow.token_id)
        .where(JobTokenRow.deployment_id.in_(deployment_ids))
        .order_by(JobTokenRow.created_at, JobTokenRow.token_id)
    )
    for deployment_id, token_id in rows:
        found.setdefault(str(deployment_id), []).append(str(token_id))
    return {key: tuple(value) for key, value in found.items()}


async def held_by_pauses(session: AsyncSession, rows: list[DeploymentRow]) -> set[str]:
    """The ids of these deployments that are queued and held: their stack's or their
    organization's deployments are paused."""
    waiting = [row for row in rows if row.status == NOT_STARTED]
    if not waiting:
        return set()
    pauses = await session.execute(
        select(DeploymentPauseRow.organization, DeploymentPauseRow.stack_id).where(
            DeploymentPauseRow.organization.in_(sorted({row.organization for row in waiting}))
        )
    )
    paused = {(organization, stack_id) for organization, stack_id in pauses}
    return {
        row.id
        for row in waiting
        if (row.organization, "") in paused or (row.organization, row.stack_id) in paused
    }


def deployment_record(
    row: DeploymentRow, job_token_ids: tuple[str, ...] = (), *, paused: bool = False
) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        stack=StackName(row.stack_id, row.organization, row.project, row.stack),
        version=row.version,
        operation=row.operation,
        status=row.status,
        pool_id=row.pool_id,
        agent_id=row.agent_id,
        requested_by=row.requested_by,
        settings=dict(row.settings or {}),
        created_at=row.created_at,
        modified_at=row.modified_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        is_cancel_requested=row.is_cancel_requested,
        message=row.message,
        requested_by_user_id=row.requested_by_user_id or "",
        job_token_ids=job_token_ids,
        initiator=row.initiator or BY_API,
        paused=paused,
    )
