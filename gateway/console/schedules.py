"""Console pages of a stack's schedules (scheduled deployments, drift detection, TTL) with
their recent firings, pausing and resuming one, and the stack's drift detection status.

Each page is authorised as the REST route it mirrors (`gateway/console/routes.py`) and reads
the same RPCs as `gateway/handlers/deployment_schedules.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
import orjson
from aiohttp import web

from gateway import audit_events as events
from gateway.audit_events import AuditEventType
from gateway.audit_middleware import record_console_call
from gateway.console.csrf import checked_form
from gateway.console.handlers import see_other
from gateway.console.render import render, stack_url
from gateway.context import BACKENDS, STACK, call_options
from gateway.errors import rpc_error_response
from gateway.views import updates_by_tokens
from protos.cairn.v1 import schedules_pb2, updates_pb2

# Firings shown under each schedule, newest first.
SHOWN_FIRINGS = 5
# Drift runs shown on the deployments page, newest first.
SHOWN_DRIFT_RUNS = 10


@dataclass(frozen=True)
class Listed:
    """A schedule, what it runs, and its newest firings."""

    schedule: schedules_pb2.Schedule
    operation: str
    firings: tuple[schedules_pb2.ScheduleFiring, ...]


@dataclass(frozen=True)
class Drift:
    """The stack's drift detection status, its newest runs, and the updates their detecting
    and remediating jobs made (by deployment id)."""

    status: schedules_pb2.DriftStatus
    runs: tuple[schedules_pb2.DriftRun, ...]
    total: int
    made: Mapping[str, list[updates_pb2.UpdateInfo]] = field(default_factory=dict)


def _scope(request: web.Request) -> schedules_pb2.StackScope:
    stack = request[STACK]
    return schedules_pb2.StackScope(
        stack_id=stack.id,
        organization=stack.ref.organization,
        project=stack.ref.project,
        stack=stack.ref.stack,
    )


def _operation(schedule: schedules_pb2.Schedule) -> str:
    """The deployment operation a firing queues (`update` unless the request names one)."""
    definition = orjson.loads(schedule.definition or b"{}")
    asked = definition.get("request") if isinstance(definition, dict) else None
    operation = asked.get("operation") if isinstance(asked, dict) else None
    return operation if isinstance(operation, str) and operation else "update"


async def drift(request: web.Request) -> Drift:
    """The stack's drift status and newest drift runs (for the deployments page)."""
    backends = request.app[BACKENDS]
    options = call_options(request)
    status = await backends.schedules.GetDriftStatus(_scope(request), **options)
    runs = await backends.schedules.ListDriftRuns(
        schedules_pb2.ListDriftRunsRequest(
            stack_id=request[STACK].id, page=1, page_size=SHOWN_DRIFT_RUNS
        ),
        **options,
    )
    owners = {token: run.deployment_id for run in runs.runs for token in run.job_token_ids}
    owners.update(
        (token, run.remediation_deployment_id)
        for run in runs.runs
        for token in run.remediation_job_token_ids
    )
    made = await updates_by_tokens(request, owners, [request[STACK].id])
    return Drift(status, tuple(runs.runs), int(runs.total), made)


async def schedules(request: web.Request) -> web.Response:
    """The stack's schedules (`GET S/deployments/schedules`) with their newest firings."""
    backends = request.app[BACKENDS]
    options = call_options(request)
    reply = await backends.schedules.ListSchedules(_scope(request), **options)
    rows: list[Listed] = []
    for schedule in reply.schedules:
        history = await backends.schedules.ListScheduleHistory(
            schedules_pb2.ScheduleRef(stack_id=request[STACK].id, schedule_id=schedule.id),
            **options,
        )
        newest = sorted(
            history.firings, key=lambda firing: firing.executed or firing.due, reverse=True
        )
        rows.append(Listed(schedule, _operation(schedule), tuple(newest[:SHOWN_FIRINGS])))
    return render(request, "schedules.html", stack=request[STACK], rows=rows)


async def _set_paused(request: web.Request, paused: bool, event: AuditEventType) -> web.Response:
    await checked_form(request)
    try:
        await request.app[BACKENDS].schedules.SetSchedulePaused(
            schedules_pb2.SetSchedulePausedRequest(
                schedule=schedules_pb2.ScheduleRef(
                    stack_id=request[STACK].id, schedule_id=request.match_info["scheduleID"]
                ),
                paused=paused,
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        record_console_call(request, event, rpc_error_response(error).status)
        raise
    record_console_call(request, event, 204)
    ref = request[STACK].ref
    return see_other(stack_url(ref.organization, ref.project, ref.stack, "/deployments/schedules"))


async def pause_schedule(request: web.Request) -> web.Response:
    """Pause a schedule (`POST S/deployments/schedules/{scheduleID}/pause`), then list them."""
    return await _set_paused(request, True, events.SCHEDULE_PAUSE)


async def resume_schedule(request: web.Request) -> web.Response:
    """Resume a schedule; a cron schedule fires next at its first due time from now."""
    return await _set_paused(request, False, events.SCHEDULE_RESUME)
