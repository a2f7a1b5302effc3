"""SQL for schedules, their firings, drift runs and pauses; one transaction per call.

Replicas coordinate only through these rows: a firing is claimed by moving the schedule's
`next_at` forward from the value read (compare and set) in the same transaction that inserts
the firing, whose (schedule, due time) is unique; the follow-up of a firing's deployment is
claimed by setting its `follow_up_claimed_at` the same way (when unset or stale), and marked
done (`is_followed_up`) only once its effects are committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.agent_pools.domain import FINISHED, DeploymentRecord, StackName
from services.agent_pools.models import (
    HOOK_OUTBOX,
    AgentRow,
    DeploymentPauseRow,
    DeploymentRow,
    DriftRunRow,
    PoolRow,
    ScheduleFiringRow,
    ScheduleRow,
)
from services.agent_pools.schedule_rules import (
    CLAIMED,
    SINGLE_KINDS,
    DriftRunRecord,
    FiringRecord,
    ScheduleRecord,
)
from services.agent_pools.store import deployment_record, job_tokens
from services.common.db import Sessions
from services.common.errors import AlreadyExists, NotFound
from services.common.hook_events import add_event

SCHEDULE_NOT_FOUND = "Not Found: Schedule"
DRIFT_RUN_NOT_FOUND = "Not Found: Drift run"
DEPLOYMENT_NOT_FOUND = "Not Found: Deployment"


class ScheduleStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(
        self,
        stack: StackName,
        *,
        kind: str,
        cron: str | None,
        once_at: float | None,
        next_at: float | None,
        definition: Mapping[str, Any],
        requested_by: str,
        requested_by_user_id: str,
        now: float,
    ) -> ScheduleRecord:
        async with self._sessions.begin() as session:
            if kind in SINGLE_KINDS:
                existing = await session.scalar(
                    select(ScheduleRow.id)
                    .where(ScheduleRow.stack_id == stack.stack_id, ScheduleRow.kind == kind)
                    .limit(1)
                )
                if existing is not None:
                    raise AlreadyExists(
                        f"Conflict: the stack already has a {kind} schedule ({existing}); "
                        "update it instead"
                    )
            row = ScheduleRow(
                id=uuid.uuid4().hex,
                stack_id=stack.stack_id,
                organization=stack.organization,
                project=stack.project,
                stack=stack.stack,
                kind=kind,
                cron=cron,
                once_at=once_at,
                next_at=next_at,
                paused=False,
                definition=dict(definition),
                requested_by=requested_by,
                requested_by_user_id=requested_by_user_id,
                created_at=now,
                modified_at=now,
                last_executed_at=None,
            )
            session.add(row)
            await session.flush()
            return _schedule(row)

    async def replace_schedule(
        self,
        stack_id: str,
        schedule_id: str,
        *,
        kind: str,
        cron: str | None,
        once_at: float | None,
        next_at: float | None,
        definition: Mapping[str, Any],
        now: float,
    ) -> ScheduleRecord:
        async with self._sessions.begin() as session:
            row = await _schedule_row(session, stack_id, schedule_id, lock=True)
            if row.kind != kind:
                raise NotFound(SCHEDULE_NOT_FOUND)
            row.cron = cron
            row.once_at = once_at
            row.next_at = next_at
            row.definition = dict(definition)
            row.modified_at = now
            return _schedule(row)

    async def list_schedules(self, stack_id: str) -> list[ScheduleRecord]:
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(ScheduleRow)
                .where(ScheduleRow.stack_id == stack_id)
                .order_by(ScheduleRow.created_at, ScheduleRow.id)
            )
            return [_schedule(row) for row in rows]

    async def get_schedule(self, stack_id: str, schedule_id: str) -> ScheduleRecord:
        async with self._sessions.begin() as session:
            return _schedule(await _schedule_row(session, stack_id, schedule_id))

    async def delete_schedule(self, stack_id: str, schedule_id: str) -> None:
        async with self._sessions.begin() as session:
            row = await _schedule_row(session, stack_id, schedule_id, lock=True)
            await session.execute(
                delete(ScheduleFiringRow).where(ScheduleFiringRow.schedule_id == row.id)
            )
            await session.delete(row)

    async def set_paused(
        self, stack_id: str, schedule_id: str, paused: bool, next_at: float | None, now: float
    ) -> ScheduleRecord:
        """Pause, or resume with the given next due time (kept when None is given for a
        schedule that still has one)."""
        async with self._sessions.begin() as session:
            row = await _schedule_row(session, stack_id, schedule_id, lock=True)
            if row.paused != paused:
                row.paused = paused
                if not paused and row.next_at is not None:
                    row.next_at = next_at
                row.modified_at = now
            return _schedule(row)

    async def has_schedules(self, stack_id: str) -> bool:
        async with self._sessions.begin() as session:
            found = await session.scalar(
                select(ScheduleRow.id).where(ScheduleRow.stack_id == stack_id).limit(1)
            )
            return found is not None

    # -- firing ----------------------------------------------------------------------------

    async def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]:
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(ScheduleRow)
                .where(
                    ScheduleRow.next_at.is_not(None),
                    ScheduleRow.next_at <= now,
                    ScheduleRow.paused.is_(False),
                )
                .order_by(ScheduleRow.next_at, ScheduleRow.id)
                .limit(limit)
            )
            return [_schedule(row) for row in rows]

    async def claim_firing(
        self, schedule: ScheduleRecord, following: float | None, now: float
    ) -> FiringRecord | None:
        """Claim the schedule's due firing for this replica: None when another took it."""
        if schedule.next_at is None:
            return None
        try:
            async with self._sessions.begin() as session:
                moved = await session.execute(
                    update(ScheduleRow)
                    .where(
                        ScheduleRow.id == schedule.id,
                        ScheduleRow.next_at == schedule.next_at,
                        ScheduleRow.paused.is_(False),
                    )
                    .values(next_at=following, last_executed_at=now, modified_at=now)
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(moved) != 1:
                    return None
                row = ScheduleFiringRow(
                    id=uuid.uuid4().hex,
                    schedule_id=schedule.id,
                    stack_id=schedule.stack.stack_id,
                    kind=schedule.kind,
                    due_at=schedule.next_at,
                    executed_at=now,
                    deployment_id=None,
                    version=0,
                    result=CLAIMED,
                    message="",
                    is_followed_up=False,
                    follow_up_claimed_at=None,
                )
                session.add(row)
                await session.flush()
                return _firing(row)
        except IntegrityError:
            return None  # the same due time was fired already

    async def record_firing(
        self,
        firing_id: str,
        *,
        result: str,
        message: str,
        deployment: DeploymentRecord | None,
        drift_run_id: str | None,
        auto_remediate: bool,
        now: float,
    ) -> None:
        """What a claimed firing queued (and, for drift, the run it started)."""
        async with self._sessions.begin() as session:
            row = await session.get(ScheduleFiringRow, firing_id)
            if row is None:
                return  # its schedule was deleted meanwhile
            row.result = result
            row.message = message[:4096]
            if deployment is None:
                row.is_followed_up = True
                return
            row.deployment_id = deployment.id
            row.version = deployment.version
            if drift_run_id is not None:
                session.add(
                    DriftRunRow(
                        id=drift_run_id,
                        stack_id=row.stack_id,
                        schedule_id=row.schedule_id,
                        deployment_id=deployment.id,
                        auto_remediate=auto_remediate,
                        created_at=now,
                        finished_at=None,
                        drift_detected=None,
                        resource_changes={},
                        remediation_deployment_id=None,
                    )
                )

    async def stale_claims(self, before: float, limit: int) -> list[FiringRecord]:
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(ScheduleFiringRow)
                .where(
                    ScheduleFiringRow.result == CLAIMED,
                    ScheduleFiringRow.executed_at < before,
                )
                .limit(limit)
            )
            return [_firing(row) for row in rows]

    async def reclaim(self, firing: FiringRecord, now: float) -> bool:
        """Take over a firing a stopped replica claimed but never queued."""
        async with self._sessions.begin() as session:
            taken = await session.execute(
                update(ScheduleFiringRow)
                .where(
                    ScheduleFiringRow.id == firing.id,
                    ScheduleFiringRow.result == CLAIMED,
                    ScheduleFiringRow.executed_at == firing.executed_at,
                )
                .values(executed_at=now)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(taken) == 1

    async def note_firing(self, firing_id: str, message: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(ScheduleFiringRow, firing_id)
            if row is not None:
                row.message = message[:4096]

    async def list_firings(self, stack_id: str, schedule_id: str, limit: int) -> list[FiringRecord]:
        async with self._sessions.begin() as session:
            await _schedule_row(session, stack_id, schedule_id)
            rows = await session.scalars(
                select(ScheduleFiringRow)
                .where(ScheduleFiringRow.schedule_id == schedule_id)
                .order_by(ScheduleFiringRow.executed_at.desc(), ScheduleFiringRow.id)
                .limit(limit)
            )
            return [_firing(row) for row in rows]

    # -- following up on queued deployments ------------------------------------------------

    async def finished_firings(
        self, stale_before: float, limit: int
    ) -> list[tuple[FiringRecord, DeploymentRecord]]:
        """Firings whose deployment ended and whose outcome is still to handle: unclaimed, or
        claimed before `stale_before` by a replica that stopped or failed."""
        async with self._sessions.begin() as session:
            rows = await session.execute(
                select(ScheduleFiringRow, DeploymentRow)
                .join(DeploymentRow, DeploymentRow.id == ScheduleFiringRow.deployment_id)
                .where(
                    ScheduleFiringRow.is_followed_up.is_(False),
                    _follow_up_open(stale_before),
                    DeploymentRow.status.in_(FINISHED),
                )
                .order_by(ScheduleFiringRow.executed_at)
                .limit(limit)
            )
            return [(_firing(firing), deployment_record(dep)) for firing, dep in rows.all()]

    async def claim_follow_up(self, firing_id: str, stale_before: float, now: float) -> bool:
        """Claim a firing's follow-up at `now`: False when it is done, or another replica
        holds a claim taken at or after `stale_before`."""
        async with self._sessions.begin() as session:
            changed = await session.execute(
                update(ScheduleFiringRow)
                .where(
                    ScheduleFiringRow.id == firing_id,
                    ScheduleFiringRow.is_followed_up.is_(False),
                    _follow_up_open(stale_before),
                )
                .values(follow_up_claimed_at=now)
                .execution_options(synchronize_session=False)
            )
            return _rowcount(changed) == 1

    async def finish_follow_up(self, firing_id: str) -> None:
        """The follow-up's effects are committed: it is not taken again."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ScheduleFiringRow)
                .where(ScheduleFiringRow.id == firing_id)
                .values(is_followed_up=True, follow_up_claimed_at=None)
                .execution_options(synchronize_session=False)
            )

    async def release_follow_up(self, firing_id: str, claimed_at: float) -> None:
        """Give back this replica's claim (taken at `claimed_at`) for a later round."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ScheduleFiringRow)
                .where(
                    ScheduleFiringRow.id == firing_id,
                    ScheduleFiringRow.is_followed_up.is_(False),
                    ScheduleFiringRow.follow_up_claimed_at == claimed_at,
                )
                .values(follow_up_claimed_at=None)
                .execution_options(synchronize_session=False)
            )

    async def schedule_definition(self, schedule_id: str) -> ScheduleRecord | None:
        async with self._sessions.begin() as session:
            row = await session.get(ScheduleRow, schedule_id)
            return None if row is None else _schedule(row)

    # -- drift runs ------------------------------------------------------------------------

    async def drift_run_of(self, deployment_id: str) -> DriftRunRecord | None:
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(DriftRunRow).where(DriftRunRow.deployment_id == deployment_id)
            )
            return None if row is None else _drift_run(row)

    async def finish_drift_run(
        self,
        run_id: str,
        *,
        drift_detected: bool | None,
        resource_changes: Mapping[str, int],
        remediation_deployment_id: str | None,
        now: float,
        events: Sequence[PublishEventRequest] = (),
    ) -> bool:
        """Record a run's outcome with its webhook events (in the same transaction); False
        (nothing written) when the run is gone or was finished already."""
        async with self._sessions.begin() as session:
            row = await session.get(DriftRunRow, run_id, with_for_update=True)
            if row is None or row.finished_at is not None:
                return False
            row.drift_detected = drift_detected
            row.resource_changes = dict(resource_changes)
            row.remediation_deployment_id = remediation_deployment_id
            row.finished_at = now
            for event in events:
                await add_event(session, HOOK_OUTBOX, event)
            return True

    async def list_drift_runs(
        self, stack_id: str, limit: int, offset: int
    ) -> tuple[list[tuple[DriftRunRecord, DeploymentRecord | None, DeploymentRecord | None]], int]:
        """A page of runs, each with its detecting deployment and its remediation."""
        async with self._sessions.begin() as session:
            condition = DriftRunRow.stack_id == stack_id
            total = await session.scalar(select(func.count()).where(condition))
            rows = list(
                await session.scalars(
                    select(DriftRunRow)
                    .where(condition)
                    .order_by(DriftRunRow.created_at.desc(), DriftRunRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            wanted = {row.deployment_id for row in rows} | {
                row.remediation_deployment_id for row in rows if row.remediation_deployment_id
            }
            found = await _deployments(session, sorted(wanted))
            runs = [
                (
                    _drift_run(row),
                    found.get(row.deployment_id),
                    found.get(row.remediation_deployment_id or ""),
                )
                for row in rows
            ]
            return runs, int(total or 0)

    async def get_drift_run(
        self, stack_id: str, run_id: str
    ) -> tuple[DriftRunRecord, DeploymentRecord | None, DeploymentRecord | None]:
        """The run, its detecting deployment and its remediation (when queued)."""
        async with self._sessions.begin() as session:
            row = await session.get(DriftRunRow, run_id)
            if row is None or row.stack_id != stack_id:
                raise NotFound(DRIFT_RUN_NOT_FOUND)
            remediation = (
                await _deployment(session, row.remediation_deployment_id)
                if row.remediation_deployment_id
                else None
            )
            return _drift_run(row), await _deployment(session, row.deployment_id), remediation

    async def latest_drift_runs(
        self, stack_id: str
    ) -> tuple[DriftRunRecord | None, DriftRunRecord | None]:
        """The newest drift run, and the newest one that ended."""
        async with self._sessions.begin() as session:
            newest = await session.scalar(
                select(DriftRunRow)
                .where(DriftRunRow.stack_id == stack_id)
                .order_by(DriftRunRow.created_at.desc(), DriftRunRow.id.desc())
                .limit(1)
            )
            ended = await session.scalar(
                select(DriftRunRow)
                .where(DriftRunRow.stack_id == stack_id, DriftRunRow.finished_at.is_not(None))
                .order_by(DriftRunRow.finished_at.desc(), DriftRunRow.id.desc())
                .limit(1)
            )
            return (
                None if newest is None else _drift_run(newest),
                None if ended is None else _drift_run(ended),
            )

    # -- pauses ----------------------------------------------------------------------------

    async def set_deployments_paused(
        self, organization: str, stack_id: str, paused: bool, now: float
    ) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(DeploymentPauseRow, (organization, stack_id))
            if paused and row is None:
                session.add(
                    DeploymentPauseRow(organization=organization, stack_id=stack_id, paused_at=now)
                )
            elif not paused and row is not None:
                await session.delete(row)

    async def pauses(self, organization: str, stack_id: str) -> tuple[bool, bool]:
        """(the stack's deployments are paused, the organization's are)."""
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(DeploymentPauseRow.stack_id).where(
                    DeploymentPauseRow.organization == organization,
                    DeploymentPauseRow.stack_id.in_((stack_id, "")),
                )
            )
            found = set(rows)
            return bool(stack_id) and stack_id in found, "" in found

    # -- organization view -----------------------------------------------------------------

    async def deployment_counts(self, organization: str) -> dict[str, int]:
        async with self._sessions.begin() as session:
            rows = await session.execute(
                select(DeploymentRow.status, func.count())
                .where(DeploymentRow.organization == organization)
                .group_by(DeploymentRow.status)
            )
            return {str(status): int(count) for status, count in rows.all()}

    async def online_agents(self, organization: str, since: float) -> int:
        async with self._sessions.begin() as session:
            value = await session.scalar(
                select(func.count())
                .select_from(AgentRow)
                .join(PoolRow, PoolRow.id == AgentRow.pool_id)
                .where(PoolRow.organization == organization, AgentRow.last_seen_at >= since)
            )
            return int(value or 0)

    async def locate_deployment(self, deployment_id: str) -> DeploymentRecord:
        async with self._sessions.begin() as session:
            found = await _deployment(session, deployment_id)
            if found is None:
                raise NotFound(DEPLOYMENT_NOT_FOUND)
            return found

    # -- a deleted stack -------------------------------------------------------------------

    async def purge(self, stack_id: str) -> None:
        async with self._sessions.begin() as session:
            for table in (ScheduleFiringRow, DriftRunRow, ScheduleRow):
                await session.execute(delete(table).where(table.stack_id == stack_id))
            await session.execute(
                delete(DeploymentPauseRow).where(DeploymentPauseRow.stack_id == stack_id)
            )


def _follow_up_open(stale_before: float) -> Any:
    """A follow-up nobody holds: never claimed, given back, or claimed before the bound."""
    claimed_at = ScheduleFiringRow.follow_up_claimed_at
    return or_(claimed_at.is_(None), claimed_at < stale_before)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def _schedule_row(
    session: Any, stack_id: str, schedule_id: str, *, lock: bool = False
) -> ScheduleRow:
    row = await session.get(ScheduleRow, schedule_id, with_for_update=lock or None)
    if row is None or row.stack_id != stack_id:
        raise NotFound(SCHEDULE_NOT_FOUND)
    assert isinstance(row, ScheduleRow)
    return row


async def _deployment(session: Any, deployment_id: str) -> DeploymentRecord | None:
    """The deployment with its job token ids (the updates its job made are found by them)."""
    row = await session.get(DeploymentRow, deployment_id)
    if row is None:
        return None
    tokens = await job_tokens(session, [row.id])
    return deployment_record(row, tokens.get(row.id, ()))


async def _deployments(session: Any, deployment_ids: list[str]) -> dict[str, DeploymentRecord]:
    """These deployments (those that exist) with their job token ids, by id: two queries."""
    if not deployment_ids:
        return {}
    rows = list(
        await session.scalars(select(DeploymentRow).where(DeploymentRow.id.in_(deployment_ids)))
    )
    tokens = await job_tokens(session, [row.id for row in rows])
    return {row.id: deployment_record(row, tokens.get(row.id, ())) for row in rows}


def _schedule(row: ScheduleRow) -> ScheduleRecord:
    return ScheduleRecord(
        id=row.id,
        stack=StackName(row.stack_id, row.organization, row.project, row.stack),
        kind=row.kind,
        cron=row.cron,
        once_at=row.once_at,
        next_at=row.next_at,
        paused=row.paused,
        definition=dict(row.definition or {}),
        requested_by=row.requested_by,
        requested_by_user_id=row.requested_by_user_id,
        created_at=row.created_at,
        modified_at=row.modified_at,
        last_executed_at=row.last_executed_at,
    )


def _firing(row: ScheduleFiringRow) -> FiringRecord:
    return FiringRecord(
        id=row.id,
        schedule_id=row.schedule_id,
        stack_id=row.stack_id,
        kind=row.kind,
        due_at=row.due_at,
        executed_at=row.executed_at,
        deployment_id=row.deployment_id,
        version=row.version,
        result=row.result,
        message=row.message,
    )


def _drift_run(row: DriftRunRow) -> DriftRunRecord:
    return DriftRunRecord(
        id=row.id,
        stack_id=row.stack_id,
        schedule_id=row.schedule_id,
        deployment_id=row.deployment_id,
        auto_remediate=row.auto_remediate,
        created_at=row.created_at,
        finished_at=row.finished_at,
        drift_detected=row.drift_detected,
        resource_changes={str(k): int(v) for k, v in (row.resource_changes or {}).items()},
        remediation_deployment_id=row.remediation_deployment_id,
    )
