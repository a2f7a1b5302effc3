"""SQL for what agents do: registering, heartbeats, claiming jobs, their logs and tokens.

A call checks, inside its transaction, that the agent belongs to the pool and
(for a job's logs and end) that the job is its own, with the rules of `domain`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.agent_pools.domain import (
    ACCEPTED,
    FAILED,
    JOB_LEASE_SECONDS,
    NOT_STARTED,
    RUNNING,
    AgentMetadata,
    DeploymentRecord,
    TokenToRevoke,
    check_agent_of_pool,
    check_own_job,
)
from services.agent_pools.models import (
    AgentRow,
    DeploymentPauseRow,
    DeploymentRow,
    JobTokenRow,
    LogLineRow,
    PoolRow,
)
from services.agent_pools.store import (
    DEPLOYMENT_NOT_FOUND,
    DeploymentEvents,
    announce,
    deployment_record,
    recover_abandoned,
    told,
)
from services.common.db import Sessions
from services.common.errors import NotFound


class AgentStore:
    """Agents and the jobs they run; one transaction per call."""

    def __init__(self, sessions: Sessions, events: DeploymentEvents | None = None) -> None:
        self._sessions = sessions
        self._events = events

    async def pool_for_token(self, token_hash: str) -> str | None:
        """The pool whose token has this hash, if any."""
        async with self._sessions.begin() as session:
            pool_id: str | None = await session.scalar(
                select(PoolRow.id).where(PoolRow.token_hash == token_hash)
            )
        return pool_id

    async def register_agent(self, pool_id: str, metadata: AgentMetadata, now: float) -> str:
        row = AgentRow(
            id=uuid.uuid4().hex,
            pool_id=pool_id,
            version=metadata.version,
            platform=metadata.platform,
            hostname=metadata.hostname,
            ip=metadata.ip,
            pid=metadata.pid,
            registered_at=now,
            last_seen_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return row.id

    async def heartbeat(self, pool_id: str, agent_id: str, now: float) -> list[str]:
        """Record the agent as seen, extend its jobs' leases; return its cancelled jobs."""
        async with self._sessions.begin() as session:
            agent = await _agent_row(session, pool_id, agent_id)
            agent.last_seen_at = now
            # A job whose lease already ran out was given up; the heartbeat cannot revive it.
            await recover_abandoned(session, now, pool_id=pool_id)
            await session.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.agent_id == agent_id,
                    DeploymentRow.status.in_([ACCEPTED, RUNNING]),
                )
                .values(lease_expires_at=now + JOB_LEASE_SECONDS)
            )
            cancelled = await session.scalars(
                select(DeploymentRow.id).where(
                    DeploymentRow.agent_id == agent_id,
                    DeploymentRow.status.in_([ACCEPTED, RUNNING]),
                    DeploymentRow.is_cancel_requested.is_(True),
                )
            )
            return list(cancelled)

    async def claim(self, pool_id: str, agent_id: str, now: float) -> DeploymentRecord | None:
        """Hand the oldest queued deployment of the pool to this agent, atomically."""
        async with self._sessions.begin() as session:
            agent = await _agent_row(session, pool_id, agent_id)
            agent.last_seen_at = now
            await recover_abandoned(session, now, pool_id=pool_id)
            statement = (
                select(DeploymentRow)
                .where(
                    DeploymentRow.pool_id == pool_id,
                    DeploymentRow.status == NOT_STARTED,
                    # A requeued job waits until its previous run's token is revoked.
                    DeploymentRow.access_token_id.is_(None),
                    # Paused deployments (their stack's or organization's) stay queued.
                    ~_paused(DeploymentRow.organization, DeploymentRow.stack_id),
                )
                .order_by(DeploymentRow.created_at, DeploymentRow.id)
                .limit(1)
            )
            # Two agents never get the same job: the row is locked (and skipped by the
            # other claimant) on PostgreSQL; SQLite has one writer at a time anyway.
            statement = statement.with_for_update(skip_locked=True)
            row = await session.scalar(statement)
            if row is None:
                return None
            row.status = ACCEPTED
            row.agent_id = agent_id
            row.attempts += 1
            row.started_at = now
            row.modified_at = now
            row.lease_expires_at = now + JOB_LEASE_SECONDS
            record = deployment_record(row)
            written = await announce(session, self._events, record, "started")
        told(self._events, written)
        return record

    async def running_job(
        self, pool_id: str, agent_id: str, deployment_id: str
    ) -> DeploymentRecord:
        """The agent's own running job, checked as `append_logs` and `finish` check it."""
        async with self._sessions.begin() as session:
            agent = await session.get(AgentRow, agent_id)
            check_agent_of_pool(None if agent is None else agent.pool_id, pool_id)
            row = await session.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFound(DEPLOYMENT_NOT_FOUND)
            check_own_job(row.agent_id, row.status, agent_id)
            return deployment_record(row)

    async def append_logs(
        self, pool_id: str, agent_id: str, deployment_id: str, lines: Sequence[str], now: float
    ) -> bool:
        """Store log lines of the agent's own job; True when the job was cancelled."""
        async with self._sessions.begin() as session:
            agent = await _agent_row(session, pool_id, agent_id)
            agent.last_seen_at = now
            row = await _own_job(session, agent_id, deployment_id)
            if row.status == ACCEPTED:
                row.status = RUNNING
            row.modified_at = now
            row.lease_expires_at = now + JOB_LEASE_SECONDS
            last = await session.scalar(
                select(func.max(LogLineRow.index)).where(LogLineRow.deployment_id == row.id)
            )
            start = 0 if last is None else int(last) + 1
            session.add_all(
                LogLineRow(deployment_id=row.id, index=start + offset, timestamp=now, text=text)
                for offset, text in enumerate(lines)
            )
            return row.is_cancel_requested

    async def finish(
        self,
        pool_id: str,
        agent_id: str,
        deployment_id: str,
        *,
        status: str,
        message: str,
        now: float,
    ) -> None:
        async with self._sessions.begin() as session:
            agent = await _agent_row(session, pool_id, agent_id)
            agent.last_seen_at = now
            row = await _own_job(session, agent_id, deployment_id)
            row.status = FAILED if row.is_cancel_requested else status
            row.message = "cancelled" if row.is_cancel_requested else message
            row.finished_at = now
            row.modified_at = now
            row.lease_expires_at = None
            written = await announce(session, self._events, deployment_record(row), row.status)
        told(self._events, written)

    # -- job tokens ------------------------------------------------------------------------

    async def attach_token(
        self, deployment_id: str, agent_id: str, token_id: str, now: float
    ) -> bool:
        """Remember the token minted for the agent's job (for revocation, and for good as the
        link to the updates it creates); False when the job is not its."""
        async with self._sessions.begin() as session:
            row = await session.get(DeploymentRow, deployment_id, with_for_update=True)
            if row is None or row.agent_id != agent_id or row.finished_at is not None:
                return False
            row.access_token_id = token_id
            session.add(JobTokenRow(token_id=token_id, deployment_id=deployment_id, created_at=now))
            return True

    async def release_claim(self, deployment_id: str, agent_id: str, now: float) -> None:
        """Put a job its agent could not be given back in the queue, as if never claimed."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.id == deployment_id,
                    DeploymentRow.agent_id == agent_id,
                    DeploymentRow.status == ACCEPTED,
                )
                .values(
                    status=NOT_STARTED,
                    agent_id=None,
                    attempts=DeploymentRow.attempts - 1,
                    started_at=None,
                    modified_at=now,
                    lease_expires_at=None,
                )
            )

    async def fail_claim(self, deployment_id: str, agent_id: str, message: str, now: float) -> None:
        """End a job that cannot run at all before its agent starts it."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(DeploymentRow)
                .where(
                    DeploymentRow.id == deployment_id,
                    DeploymentRow.agent_id == agent_id,
                    DeploymentRow.status == ACCEPTED,
                )
                .values(
                    status=FAILED,
                    message=message,
                    finished_at=now,
                    modified_at=now,
                    lease_expires_at=None,
                )
            )

    async def tokens_to_revoke(self, limit: int) -> list[TokenToRevoke]:
        """Tokens of jobs that ended, were requeued or are being cancelled."""
        async with self._sessions.begin() as session:
            rows = await session.execute(
                select(DeploymentRow.id, DeploymentRow.requested_by, DeploymentRow.access_token_id)
                .where(
                    DeploymentRow.access_token_id.is_not(None),
                    DeploymentRow.status.not_in([ACCEPTED, RUNNING])
                    | DeploymentRow.is_cancel_requested.is_(True),
                )
                .order_by(DeploymentRow.modified_at, DeploymentRow.id)
                .limit(limit)
            )
            return [TokenToRevoke(str(d), str(login), str(t)) for d, login, t in rows]

    async def forget_token(self, deployment_id: str, token_id: str) -> None:
        """The token was revoked: nothing to do for this job any more."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(DeploymentRow)
                .where(DeploymentRow.id == deployment_id, DeploymentRow.access_token_id == token_id)
                .values(access_token_id=None)
            )

    async def recover_abandoned(self, now: float, pool_id: str | None = None) -> None:
        """Give up the jobs whose agent went silent, in one pool or in every pool."""
        async with self._sessions.begin() as session:
            await recover_abandoned(session, now, pool_id=pool_id)


async def _agent_row(session: AsyncSession, pool_id: str, agent_id: str) -> AgentRow:
    row = await session.get(AgentRow, agent_id, with_for_update=True)
    check_agent_of_pool(None if row is None else row.pool_id, pool_id)
    assert row is not None  # checked by the rule above
    return row


async def _own_job(session: AsyncSession, agent_id: str, deployment_id: str) -> DeploymentRow:
    row = await session.get(DeploymentRow, deployment_id, with_for_update=True)
    if row is None:
        raise NotFound(DEPLOYMENT_NOT_FOUND)
    check_own_job(row.agent_id, row.status, agent_id)
    return row


def _paused(organization: Any, stack_id: Any) -> Exists:
    """True for a deployment whose stack's or organization's deployments are paused."""
    return (
        select(DeploymentPauseRow.stack_id)
        .where(
            DeploymentPauseRow.organization == organization,
            or_(DeploymentPauseRow.stack_id == stack_id, DeploymentPauseRow.stack_id == ""),
        )
        .exists()
    )
