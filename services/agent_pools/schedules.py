"""Deployments that run themselves: schedules, drift detection, TTL stacks, pauses.

Every replica of agent_pools runs `tick()` every few seconds; all coordination is in the
database (schedule_store): a due firing is claimed by moving the schedule's next due time
forward from the value read, so one due time fires once whatever the number of replicas,
and a replica that was down finds the missed due time and fires it once. Each firing queues
a normal deployment (as the user who made the schedule) and is kept in the schedule's
history. A later tick follows up on the deployment once it ended: a drift detection records
drift or no drift (and may queue a remediation); a TTL destroy that succeeded deletes the
stack when asked to. A follow-up is claimed like a firing and marked done only after its
effects are committed; one whose claim is left open for STALE_CLAIM_SECONDS (its replica
stopped, or it failed) is taken again, and doing it again changes nothing that was done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.agent_pools.domain import (
    BY_DRIFT_REMEDIATION,
    OFFLINE_AFTER_SECONDS,
    SUCCEEDED,
    DeploymentRecord,
    StackName,
    page_window,
    validate_operation,
)
from services.agent_pools.schedule_rules import (
    DETECT_DRIFT,
    DRIFT,
    DUE_BATCH,
    FIRING_FAILED,
    FIRING_SUCCEEDED,
    FOLLOW_UP_BATCH,
    MAX_HISTORY,
    REMEDIATE_DRIFT,
    STALE_CLAIM_SECONDS,
    TTL,
    DriftRunRecord,
    FiringRecord,
    ScheduleRecord,
    ScheduleSpec,
    definition_of,
    drift_outcome,
    first_due,
    following_due,
    initiator_of,
    operation_of,
    split_request,
    validate_spec,
)
from services.agent_pools.schedule_store import ScheduleStore
from services.agent_pools.service import AgentPools
from services.agent_pools.store import AgentPoolStore
from services.common.clock import Clock
from services.common.errors import DomainError, NotFound, Unavailable
from services.common.logging import get_logger

log = get_logger("cairn.schedules")

# Log lines of a drift detection read to find its outcome.
DRIFT_LOG_LINES = 5000


class StackRemover(Protocol):
    """Deletes a stack in the stacks service (a TTL stack once destroyed)."""

    async def delete_stack(self, stack_id: str) -> None:
        """NotFound when the stack is gone already."""
        ...


@dataclass(frozen=True)
class DriftEvents:
    """Webhook events of a finished drift run: `events` builds those written to the outbox
    in the transaction recording the run's outcome (the detection deployment, the finished
    run, who owns the schedule); `written` is told after that commit."""

    events: Callable[[DeploymentRecord, DriftRunRecord, str], Sequence[PublishEventRequest]]
    written: Callable[[], None]


@dataclass(frozen=True)
class DriftRunView:
    run: DriftRunRecord
    deployment: DeploymentRecord | None
    remediation: DeploymentRecord | None = None


@dataclass(frozen=True)
class DriftStatusView:
    drift_detected: bool
    latest_drift_run: str
    run_in_progress: bool


@dataclass(frozen=True)
class StackMetadata:
    stack_paused: bool
    organization_paused: bool
    has_schedules: bool
    drift: DriftStatusView | None


@dataclass(frozen=True)
class OrgMetadata:
    paused: bool
    concurrency: int
    counts: Mapping[str, int]


class Schedules:
    def __init__(
        self,
        store: ScheduleStore,
        deployments: AgentPoolStore,
        pools: AgentPools,
        clock: Clock,
        stacks: StackRemover | None,
        drift_events: DriftEvents | None = None,
    ) -> None:
        self._store = store
        self._deployments = deployments
        self._pools = pools
        self._clock = clock
        self._stacks = stacks
        self._drift_events = drift_events

    # -- schedules -------------------------------------------------------------------------

    async def _prepared(
        self, stack_id: str, spec: ScheduleSpec
    ) -> tuple[ScheduleSpec, dict[str, Any], float | None]:
        now = self._clock.now()
        checked = validate_spec(spec, now)
        sealed: dict[str, Any] = {}
        if checked.kind not in (DRIFT, TTL):
            operation, _, _ = split_request(checked.request)
            validate_operation(operation)
            sealed = await self._pools.seal_settings(stack_id, checked.request)
        definition = definition_of(checked, sealed)
        return checked, definition, first_due(checked.cron, checked.once_at, now)

    async def create(
        self, stack: StackName, spec: ScheduleSpec, *, requested_by: str, requested_by_user_id: str
    ) -> ScheduleRecord:
        checked, definition, next_at = await self._prepared(stack.stack_id, spec)
        return await self._store.create_schedule(
            stack,
            kind=checked.kind,
            cron=checked.cron or None,
            once_at=checked.once_at,
            next_at=next_at,
            definition=definition,
            requested_by=requested_by,
            requested_by_user_id=requested_by_user_id,
            now=self._clock.now(),
        )

    async def update(self, stack_id: str, schedule_id: str, spec: ScheduleSpec) -> ScheduleRecord:
        await self._store.get_schedule(stack_id, schedule_id)  # 404 before 400
        checked, definition, next_at = await self._prepared(stack_id, spec)
        return await self._store.replace_schedule(
            stack_id,
            schedule_id,
            kind=checked.kind,
            cron=checked.cron or None,
            once_at=checked.once_at,
            next_at=next_at,
            definition=definition,
            now=self._clock.now(),
        )

    async def list_schedules(self, stack_id: str) -> list[ScheduleRecord]:
        return await self._store.list_schedules(stack_id)

    async def get(self, stack_id: str, schedule_id: str) -> ScheduleRecord:
        return await self._store.get_schedule(stack_id, schedule_id)

    async def delete(self, stack_id: str, schedule_id: str) -> None:
        await self._store.delete_schedule(stack_id, schedule_id)

    async def set_paused(self, stack_id: str, schedule_id: str, paused: bool) -> ScheduleRecord:
        """Pause, or resume: a resumed cron schedule fires next at its first due time from
        now (what was missed while paused is not fired); a one-time one keeps its time."""
        schedule = await self._store.get_schedule(stack_id, schedule_id)
        now = self._clock.now()
        resumed_next = first_due(schedule.cron or "", schedule.next_at, now)
        return await self._store.set_paused(stack_id, schedule_id, paused, resumed_next, now)

    async def history(self, stack_id: str, schedule_id: str) -> list[FiringRecord]:
        return await self._store.list_firings(stack_id, schedule_id, MAX_HISTORY)

    # -- the scheduler ---------------------------------------------------------------------

    async def tick(self) -> int:
        """One round: fire what is due, retry firings a stopped replica left, follow up on
        ended deployments. Returns how many firings this replica carried out."""
        fired = 0
        now = self._clock.now()
        for schedule in await self._store.due_schedules(now, DUE_BATCH):
            firing = await self._store.claim_firing(
                schedule, following_due(schedule, now), self._clock.now()
            )
            if firing is not None:
                await self._queue(schedule, firing)
                fired += 1
        for firing in await self._store.stale_claims(now - STALE_CLAIM_SECONDS, DUE_BATCH):
            if await self._store.reclaim(firing, self._clock.now()):
                owner = await self._store.schedule_definition(firing.schedule_id)
                if owner is not None:
                    await self._queue(owner, firing)
                    fired += 1
        stale_before = now - STALE_CLAIM_SECONDS
        for firing, deployment in await self._store.finished_firings(stale_before, FOLLOW_UP_BATCH):
            claimed_at = self._clock.now()
            if await self._store.claim_follow_up(firing.id, stale_before, claimed_at):
                await self._follow_up(firing, deployment, claimed_at)
        return fired

    async def _queue(self, schedule: ScheduleRecord, firing: FiringRecord) -> None:
        operation, overrides, inherit = operation_of(schedule)
        names = schedule.stack
        try:
            deployment = await self._pools.create_deployment(
                StackName(names.stack_id, names.organization, names.project, names.stack),
                operation,
                overrides,
                inherit_settings=inherit,
                requested_by=schedule.requested_by,
                requested_by_user_id=schedule.requested_by_user_id,
                initiator=initiator_of(schedule.kind),
            )
        except Unavailable:
            raise  # the claim stays; a later round queues it (stale claims)
        except DomainError as error:
            log.warning("schedule_firing_failed", schedule_id=schedule.id, error=error.message)
            await self._store.record_firing(
                firing.id,
                result=FIRING_FAILED,
                message=error.message,
                deployment=None,
                drift_run_id=None,
                auto_remediate=False,
                now=self._clock.now(),
            )
            return
        is_drift = schedule.kind == DRIFT
        await self._store.record_firing(
            firing.id,
            result=FIRING_SUCCEEDED,
            message="",
            deployment=deployment,
            drift_run_id=uuid.uuid4().hex if is_drift else None,
            auto_remediate=bool(schedule.definition.get("autoRemediate")) if is_drift else False,
            now=self._clock.now(),
        )
        log.info(
            "schedule_fired",
            schedule_id=schedule.id,
            kind=schedule.kind,
            deployment_id=deployment.id,
            due_at=firing.due_at,
        )

    async def _follow_up(
        self, firing: FiringRecord, deployment: DeploymentRecord, claimed_at: float
    ) -> None:
        """Done only once its effects are committed; any other failure leaves the claim to
        go stale, and a later round does it again."""
        try:
            if deployment.operation == DETECT_DRIFT:
                await self._finish_drift_run(deployment)
            elif firing.kind == TTL:
                await self._finish_ttl(firing, deployment)
        except Unavailable:
            # A peer is away: give the follow-up back for a later round.
            await self._store.release_follow_up(firing.id, claimed_at)
            raise
        await self._store.finish_follow_up(firing.id)

    async def _finish_drift_run(self, deployment: DeploymentRecord) -> None:
        run = await self._store.drift_run_of(deployment.id)
        if run is None or run.finished_at is not None:
            return  # finished by an earlier follow-up: no second outcome or remediation
        lines = [
            line.text for line in await self._deployments.logs(deployment.id, 0, DRIFT_LOG_LINES)
        ]
        outcome = drift_outcome(deployment.status, [*lines, deployment.message])
        remediation: DeploymentRecord | None = None
        if outcome is not None and outcome.drift_detected and run.auto_remediate:
            remediation = await self._remediate(deployment)
        now = self._clock.now()
        finished = replace(
            run,
            drift_detected=None if outcome is None else outcome.drift_detected,
            resource_changes={} if outcome is None else dict(outcome.resource_changes),
            remediation_deployment_id=None if remediation is None else remediation.id,
            finished_at=now,
        )
        events: Sequence[PublishEventRequest] = ()
        if self._drift_events is not None:
            schedule = await self._store.schedule_definition(run.schedule_id)
            owner = schedule.requested_by if schedule is not None else deployment.requested_by
            events = self._drift_events.events(deployment, finished, owner)
        recorded = await self._store.finish_drift_run(
            run.id,
            drift_detected=finished.drift_detected,
            resource_changes=finished.resource_changes,
            remediation_deployment_id=finished.remediation_deployment_id,
            now=now,
            events=events,
        )
        if not recorded:
            return
        if events and self._drift_events is not None:
            self._drift_events.written()
        if finished.drift_detected:
            log.info("drift_detected", stack_id=deployment.stack.stack_id, drift_run_id=run.id)

    async def _remediate(self, detection: DeploymentRecord) -> DeploymentRecord | None:
        try:
            return await self._pools.create_deployment(
                detection.stack,
                REMEDIATE_DRIFT,
                {},
                inherit_settings=True,
                requested_by=detection.requested_by,
                requested_by_user_id=detection.requested_by_user_id,
                initiator=BY_DRIFT_REMEDIATION,
            )
        except Unavailable:
            raise
        except DomainError as error:
            log.warning(
                "drift_remediation_not_queued",
                stack_id=detection.stack.stack_id,
                error=error.message,
            )
            return None

    async def _finish_ttl(self, firing: FiringRecord, deployment: DeploymentRecord) -> None:
        schedule = await self._store.schedule_definition(firing.schedule_id)
        if schedule is None or deployment.status != SUCCEEDED:
            return
        if not schedule.definition.get("deleteAfterDestroy"):
            return
        if self._stacks is None:
            await self._store.note_firing(
                firing.id, "the stack was not deleted: the stacks service is not configured"
            )
            return
        try:
            await self._stacks.delete_stack(deployment.stack.stack_id)
        except NotFound:
            return
        except Unavailable:
            raise
        except DomainError as error:
            log.warning(
                "ttl_stack_not_deleted", stack_id=deployment.stack.stack_id, error=error.message
            )
            await self._store.note_firing(firing.id, f"the stack was not deleted: {error.message}")
            return
        log.info("ttl_stack_deleted", stack_id=deployment.stack.stack_id)

    # -- drift -----------------------------------------------------------------------------

    async def drift_runs(
        self, stack_id: str, page: int, page_size: int
    ) -> tuple[list[DriftRunView], int]:
        limit, offset = page_window(page, page_size)
        runs, total = await self._store.list_drift_runs(stack_id, limit, offset)
        return [DriftRunView(*found) for found in runs], total

    async def drift_run(self, stack_id: str, run_id: str) -> DriftRunView:
        run, deployment, remediation = await self._store.get_drift_run(stack_id, run_id)
        return DriftRunView(run, deployment, remediation)

    async def drift_status(self, stack_id: str) -> DriftStatusView | None:
        """None when the stack never had a drift run."""
        newest, ended = await self._store.latest_drift_runs(stack_id)
        if newest is None:
            return None
        return DriftStatusView(
            drift_detected=bool(ended is not None and ended.drift_detected),
            latest_drift_run=newest.id,
            run_in_progress=newest.finished_at is None,
        )

    # -- pauses and metadata ---------------------------------------------------------------

    async def set_deployments_paused(self, organization: str, stack_id: str, paused: bool) -> None:
        await self._store.set_deployments_paused(organization, stack_id, paused, self._clock.now())

    async def stack_metadata(self, organization: str, stack_id: str) -> StackMetadata:
        stack_paused, org_paused = await self._store.pauses(organization, stack_id)
        return StackMetadata(
            stack_paused=stack_paused,
            organization_paused=org_paused,
            has_schedules=await self._store.has_schedules(stack_id),
            drift=await self.drift_status(stack_id),
        )

    async def org_metadata(self, organization: str) -> OrgMetadata:
        _, paused = await self._store.pauses(organization, "")
        since = self._clock.now() - OFFLINE_AFTER_SECONDS
        return OrgMetadata(
            paused=paused,
            concurrency=await self._store.online_agents(organization, since),
            counts=await self._store.deployment_counts(organization),
        )

    async def locate(self, deployment_id: str) -> DeploymentRecord:
        return await self._store.locate_deployment(deployment_id)

    async def purge(self, stack_id: str) -> None:
        await self._store.purge(stack_id)
