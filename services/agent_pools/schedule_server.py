"""gRPC edge of schedules, drift runs and pauses (DeploymentSchedulesService), the loop that
runs the scheduler in every replica, and where a finished drift run becomes webhook events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson

from protos.cairn.v1 import hooks_pb2, schedules_pb2, schedules_pb2_grpc
from services.agent_pools.domain import DeploymentRecord, StackName
from services.agent_pools.schedule_rules import (
    DriftRunRecord,
    FiringRecord,
    ScheduleRecord,
    ScheduleSpec,
)
from services.agent_pools.schedules import (
    DriftRunView,
    DriftStatusView,
    Schedules,
)
from services.common.auth import caller_from_context
from services.common.clock import Clock
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_server import DATABASE_UNAVAILABLE_ERRORS
from services.common.hook_events import (
    DRIFT_DETECTED,
    DRIFT_DETECTION_FAILED,
    DRIFT_DETECTION_SUCCEEDED,
    hook_event,
)
from services.common.logging import get_logger
from services.common.loop import cancel_and_wait

log = get_logger("cairn.schedules")

SERVICE_NAME = schedules_pb2.DESCRIPTOR.services_by_name["DeploymentSchedulesService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]
ROUND_RETRIED_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_UNAVAILABLE_ERRORS, Unavailable)


class DeploymentSchedulesServicer(schedules_pb2_grpc.DeploymentSchedulesServiceServicer):
    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    async def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        caller = caller_from_context(context)
        scope = request.stack
        schedule = await self._schedules.create(
            StackName(scope.stack_id, scope.organization, scope.project, scope.stack),
            _spec(request),
            requested_by=caller.login,
            requested_by_user_id=caller.user_id,
        )
        return _schedule(schedule)

    async def UpdateSchedule(
        self, request: schedules_pb2.UpdateScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        schedule = await self._schedules.update(
            request.schedule.stack.stack_id, request.schedule_id, _spec(request.schedule)
        )
        return _schedule(schedule)

    async def ListSchedules(
        self, request: schedules_pb2.StackScope, context: Context
    ) -> schedules_pb2.ListSchedulesResponse:
        schedules = await self._schedules.list_schedules(request.stack_id)
        return schedules_pb2.ListSchedulesResponse(schedules=[_schedule(s) for s in schedules])

    async def GetSchedule(
        self, request: schedules_pb2.ScheduleRef, context: Context
    ) -> schedules_pb2.Schedule:
        return _schedule(await self._schedules.get(request.stack_id, request.schedule_id))

    async def DeleteSchedule(
        self, request: schedules_pb2.ScheduleRef, context: Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        await self._schedules.delete(request.stack_id, request.schedule_id)
        return schedules_pb2.DeleteScheduleResponse()

    async def SetSchedulePaused(
        self, request: schedules_pb2.SetSchedulePausedRequest, context: Context
    ) -> schedules_pb2.Schedule:
        schedule = await self._schedules.set_paused(
            request.schedule.stack_id, request.schedule.schedule_id, request.paused
        )
        return _schedule(schedule)

    async def ListScheduleHistory(
        self, request: schedules_pb2.ScheduleRef, context: Context
    ) -> schedules_pb2.ListScheduleHistoryResponse:
        firings = await self._schedules.history(request.stack_id, request.schedule_id)
        return schedules_pb2.ListScheduleHistoryResponse(firings=[_firing(f) for f in firings])

    async def ListDriftRuns(
        self, request: schedules_pb2.ListDriftRunsRequest, context: Context
    ) -> schedules_pb2.ListDriftRunsResponse:
        runs, total = await self._schedules.drift_runs(
            request.stack_id, request.page, request.page_size
        )
        return schedules_pb2.ListDriftRunsResponse(
            runs=[_drift_run(view) for view in runs], total=total
        )

    async def GetDriftRun(
        self, request: schedules_pb2.GetDriftRunRequest, context: Context
    ) -> schedules_pb2.DriftRun:
        return _drift_run(await self._schedules.drift_run(request.stack_id, request.drift_run_id))

    async def GetDriftStatus(
        self, request: schedules_pb2.StackScope, context: Context
    ) -> schedules_pb2.DriftStatus:
        status = await self._schedules.drift_status(request.stack_id)
        return schedules_pb2.DriftStatus() if status is None else _drift_status(status)

    async def SetDeploymentsPaused(
        self, request: schedules_pb2.SetDeploymentsPausedRequest, context: Context
    ) -> schedules_pb2.SetDeploymentsPausedResponse:
        if not request.organization:
            raise InvalidArgument("Bad Request: the organization is required")
        await self._schedules.set_deployments_paused(
            request.organization, request.stack_id, request.paused
        )
        return schedules_pb2.SetDeploymentsPausedResponse()

    async def GetStackDeploymentsMetadata(
        self, request: schedules_pb2.StackScope, context: Context
    ) -> schedules_pb2.StackDeploymentsMetadata:
        metadata = await self._schedules.stack_metadata(request.organization, request.stack_id)
        reply = schedules_pb2.StackDeploymentsMetadata(
            stack_paused=metadata.stack_paused,
            organization_paused=metadata.organization_paused,
            has_schedules=metadata.has_schedules,
        )
        if metadata.drift is not None:
            reply.drift.CopyFrom(_drift_status(metadata.drift))
        return reply

    async def GetOrgDeploymentsMetadata(
        self, request: schedules_pb2.OrgScope, context: Context
    ) -> schedules_pb2.OrgDeploymentsMetadata:
        metadata = await self._schedules.org_metadata(request.organization)
        counts = metadata.counts
        return schedules_pb2.OrgDeploymentsMetadata(
            paused=metadata.paused,
            concurrency=metadata.concurrency,
            counts=schedules_pb2.DeploymentCounts(
                not_started=counts.get("not-started", 0),
                accepted=counts.get("accepted", 0),
                running=counts.get("running", 0),
                failed=counts.get("failed", 0),
                succeeded=counts.get("succeeded", 0),
                total=sum(counts.values()),
            ),
        )

    async def LocateDeployment(
        self, request: schedules_pb2.LocateDeploymentRequest, context: Context
    ) -> schedules_pb2.LocatedDeployment:
        deployment = await self._schedules.locate(request.deployment_id)
        return schedules_pb2.LocatedDeployment(
            stack_id=deployment.stack.stack_id, status=deployment.status
        )


def _spec(request: schedules_pb2.CreateScheduleRequest) -> ScheduleSpec:
    body: Any = {}
    if request.request:
        try:
            body = orjson.loads(request.request)
        except orjson.JSONDecodeError:
            raise InvalidArgument("Bad Request: the deployment request must be JSON") from None
        if not isinstance(body, dict):
            raise InvalidArgument("Bad Request: the deployment request must be a JSON object")
    return ScheduleSpec(
        kind=request.kind,
        cron=request.cron,
        once_at=float(request.once_at) if request.once_at else None,
        request=body,
        auto_remediate=request.auto_remediate,
        delete_after_destroy=request.delete_after_destroy,
    )


def _schedule(schedule: ScheduleRecord) -> schedules_pb2.Schedule:
    return schedules_pb2.Schedule(
        id=schedule.id,
        stack_id=schedule.stack.stack_id,
        organization=schedule.stack.organization,
        kind=schedule.kind,
        cron=schedule.cron or "",
        once_at=int(schedule.once_at or 0),
        next_at=int(schedule.next_at or 0),
        paused=schedule.paused,
        # Secret values of a deployment request are kept (and shown) as ciphertext only.
        definition=orjson.dumps(dict(schedule.definition)),
        created=int(schedule.created_at),
        modified=int(schedule.modified_at),
        last_executed=int(schedule.last_executed_at or 0),
    )


def _firing(firing: FiringRecord) -> schedules_pb2.ScheduleFiring:
    return schedules_pb2.ScheduleFiring(
        id=firing.id,
        schedule_id=firing.schedule_id,
        due=int(firing.due_at),
        executed=int(firing.executed_at),
        deployment_id=firing.deployment_id or "",
        version=firing.version,
        result=firing.result,
        message=firing.message,
    )


def _drift_run(view: DriftRunView) -> schedules_pb2.DriftRun:
    run = view.run
    reply = schedules_pb2.DriftRun(
        id=run.id,
        stack_id=run.stack_id,
        schedule_id=run.schedule_id,
        deployment_id=run.deployment_id,
        deployment_version=view.deployment.version if view.deployment is not None else 0,
        status=view.deployment.status if view.deployment is not None else "failed",
        drift_detected=bool(run.drift_detected),
        resource_changes=dict(run.resource_changes),
        created=int(run.created_at),
        finished=int(run.finished_at or 0),
        auto_remediate=run.auto_remediate,
        remediation_deployment_id=run.remediation_deployment_id or "",
        job_token_ids=list(view.deployment.job_token_ids) if view.deployment is not None else [],
    )
    if view.remediation is not None:
        reply.remediation_status = view.remediation.status
        reply.remediation_modified = int(view.remediation.modified_at)
        reply.remediation_job_token_ids.extend(view.remediation.job_token_ids)
    return reply


def _drift_status(status: DriftStatusView) -> schedules_pb2.DriftStatus:
    return schedules_pb2.DriftStatus(
        drift_detected=status.drift_detected,
        latest_drift_run=status.latest_drift_run,
        run_in_progress=status.run_in_progress,
    )


def drift_events(
    clock: Clock, deployment: DeploymentRecord, run: DriftRunRecord, user_login: str
) -> list[hooks_pb2.PublishEventRequest]:
    """The one place a finished drift run becomes webhook events, written with its outcome:
    `drift_detection_succeeded` (and `drift_detected` when it found drift) or, when the run
    found nothing either way, `drift_detection_failed`."""
    if run.drift_detected is None:
        kinds = [DRIFT_DETECTION_FAILED]
    elif run.drift_detected:
        kinds = [DRIFT_DETECTION_SUCCEEDED, DRIFT_DETECTED]
    else:
        kinds = [DRIFT_DETECTION_SUCCEEDED]
    stack = deployment.stack
    outcome = hooks_pb2.DriftOutcome(
        drift_run_id=run.id,
        drift_detected=bool(run.drift_detected),
        resource_changes=dict(run.resource_changes),
        deployment_id=deployment.id,
        deployment_version=deployment.version,
        remediation_deployment_id=run.remediation_deployment_id or "",
    )
    return [
        hook_event(
            stack.stack_id,
            kind,
            at=clock.now(),
            user_login=user_login,
            organization=stack.organization,
            project=stack.project,
            stack_name=stack.stack,
            drift=outcome,
        )
        for kind in kinds
    ]


class ScheduleLoop:
    """Runs `Schedules.tick` every few seconds in this replica; a failed round is logged and
    the next one tries again."""

    def __init__(self, tick: Callable[[], Awaitable[int]], interval_seconds: float) -> None:
        self._tick = tick
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except ROUND_RETRIED_ERRORS as error:
                log.warning("schedule_round_failed", error=type(error).__name__)
            except Exception:
                log.exception("schedule_round_failed")
            await asyncio.sleep(self._interval)
