"""Scheduled deployments, drift detection, TTL stacks and pausing deployments, in the
official SDK's `DeploymentsApi` shapes (ScheduledAction, DriftRun, StackDriftStatus, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, TOKEN, call_options
from gateway.convert import int_query, json_response, no_content, read_json_object
from gateway.errors import bad_request
from gateway.views import updates_by_tokens
from protos.cairn.v1 import identity_pb2, schedules_pb2, stacks_pb2, updates_pb2
from services.common.stack_authorization import authorize_stack

# What the SDK's ScheduledAction.lastExecuted holds for a schedule that never fired.
NEVER = "0001-01-01T00:00:00Z"
DEPLOYMENT = "deployment"
DRIFT = "drift"
TTL = "ttl"


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_or_never(seconds: int) -> str:
    return _iso(seconds) if seconds else NEVER


def _seconds(value: Any, name: str) -> int:
    """An RFC 3339 date-time (naive means UTC) as Unix seconds; 400 otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"'{name}' must be an RFC 3339 date-time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise bad_request(f"'{name}' must be an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    if seconds <= 0:
        raise bad_request(f"'{name}' must be after 1970")
    return seconds


def _cron(body: dict[str, Any]) -> str:
    value = body.get("scheduleCron")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request("'scheduleCron' must be a string")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean")
    return value


def _scope(request: web.Request) -> schedules_pb2.StackScope:
    stack = request[STACK]
    return schedules_pb2.StackScope(
        stack_id=stack.id,
        organization=stack.ref.organization,
        project=stack.ref.project,
        stack=stack.ref.stack,
    )


def _ref(request: web.Request) -> schedules_pb2.ScheduleRef:
    return schedules_pb2.ScheduleRef(
        stack_id=request[STACK].id, schedule_id=request.match_info["scheduleID"]
    )


def scheduled_action(schedule: schedules_pb2.Schedule) -> dict[str, Any]:
    """The SDK's ScheduledAction."""
    definition = orjson.loads(schedule.definition or b"{}")
    if schedule.kind == TTL and schedule.once_at:
        definition["timestamp"] = _iso(schedule.once_at)
    next_at = schedule.next_at or schedule.once_at or schedule.last_executed
    payload: dict[str, Any] = {
        "id": schedule.id,
        "orgID": schedule.organization,
        "nextExecution": _iso_or_never(next_at),
        "paused": schedule.paused,
        "kind": DEPLOYMENT,
        "definition": {**definition, "scheduleKind": schedule.kind},
        "created": _iso(schedule.created),
        "modified": _iso(schedule.modified),
        "lastExecuted": _iso_or_never(schedule.last_executed),
    }
    if schedule.cron:
        payload["scheduleCron"] = schedule.cron
    else:
        payload["scheduleOnce"] = _iso(schedule.once_at)
    return payload


async def _create(
    request: web.Request, create: schedules_pb2.CreateScheduleRequest
) -> web.Response:
    backends = request.app[BACKENDS]
    schedule_id = request.match_info.get("scheduleID")
    if schedule_id is None:
        reply = await backends.schedules.CreateSchedule(create, **call_options(request))
    else:
        reply = await backends.schedules.UpdateSchedule(
            schedules_pb2.UpdateScheduleRequest(schedule_id=schedule_id, schedule=create),
            **call_options(request),
        )
    return json_response(scheduled_action(reply))


async def _deployment_schedule(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    deployment = body.get("request")
    if deployment is not None and not isinstance(deployment, dict):
        raise bad_request("'request' must be an object")
    once = body.get("scheduleOnce")
    return await _create(
        request,
        schedules_pb2.CreateScheduleRequest(
            stack=_scope(request),
            kind=DEPLOYMENT,
            cron=_cron(body),
            once_at=0 if once is None else _seconds(once, "scheduleOnce"),
            request=orjson.dumps(deployment or {}),
        ),
    )


async def create_scheduled_deployment(request: web.Request) -> web.Response:
    """`POST S/deployments/schedules`: `scheduleCron` (5 fields, UTC) or `scheduleOnce`."""
    return await _deployment_schedule(request)


async def update_scheduled_deployment(request: web.Request) -> web.Response:
    return await _deployment_schedule(request)


async def _drift_schedule(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return await _create(
        request,
        schedules_pb2.CreateScheduleRequest(
            stack=_scope(request),
            kind=DRIFT,
            cron=_cron(body),
            auto_remediate=_flag(body, "autoRemediate"),
        ),
    )


async def create_scheduled_drift_deployment(request: web.Request) -> web.Response:
    """`POST S/deployments/drift/schedules`: a refresh preview on a cron schedule."""
    return await _drift_schedule(request)


async def update_scheduled_drift_deployment(request: web.Request) -> web.Response:
    return await _drift_schedule(request)


async def _ttl_schedule(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    timestamp = body.get("timestamp")
    if timestamp is None:
        raise bad_request("'timestamp' is required")
    return await _create(
        request,
        schedules_pb2.CreateScheduleRequest(
            stack=_scope(request),
            kind=TTL,
            once_at=_seconds(timestamp, "timestamp"),
            delete_after_destroy=_flag(body, "deleteAfterDestroy"),
        ),
    )


async def create_scheduled_ttl_deployment(request: web.Request) -> web.Response:
    """`POST S/deployments/ttl/schedules`: destroy (and maybe delete) the stack at a time."""
    return await _ttl_schedule(request)


async def update_scheduled_ttl_deployment(request: web.Request) -> web.Response:
    return await _ttl_schedule(request)


async def list_scheduled_deployment(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].schedules.ListSchedules(
        _scope(request), **call_options(request)
    )
    return json_response({"schedules": [scheduled_action(s) for s in reply.schedules]})


async def read_scheduled_deployment(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].schedules.GetSchedule(
        _ref(request), **call_options(request)
    )
    return json_response(scheduled_action(reply))


async def delete_scheduled_deployment(request: web.Request) -> web.Response:
    await request.app[BACKENDS].schedules.DeleteSchedule(_ref(request), **call_options(request))
    return no_content()


async def _set_schedule_paused(request: web.Request, paused: bool) -> web.Response:
    await request.app[BACKENDS].schedules.SetSchedulePaused(
        schedules_pb2.SetSchedulePausedRequest(schedule=_ref(request), paused=paused),
        **call_options(request),
    )
    return no_content()


async def pause_scheduled_deployment(request: web.Request) -> web.Response:
    return await _set_schedule_paused(request, True)


async def resume_scheduled_deployment(request: web.Request) -> web.Response:
    """A resumed cron schedule fires next at its first due time from now."""
    return await _set_schedule_paused(request, False)


async def list_scheduled_deployment_history(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].schedules.ListScheduleHistory(
        _ref(request), **call_options(request)
    )
    return json_response(
        {
            "scheduleHistoryEvents": [
                {
                    "id": firing.id,
                    "scheduledActionID": firing.schedule_id,
                    "executed": _iso(firing.executed),
                    "version": firing.version,
                    "result": firing.result,
                    "deploymentID": firing.deployment_id or None,
                    "message": firing.message,
                }
                for firing in reply.firings
            ]
        }
    )


# -- drift -------------------------------------------------------------------------------


def drift_run(
    run: schedules_pb2.DriftRun, made: Mapping[str, list[updates_pb2.UpdateInfo]]
) -> dict[str, Any]:
    """The SDK's DriftRun: the detecting deployment, and its remediation when queued; each
    names the update its job made (the newest, when it made several), found in `made` by
    deployment id."""
    payload: dict[str, Any] = {
        "id": run.id,
        "driftDetected": run.drift_detected,
        "created": _iso(run.created),
        "status": run.status,
        "deploymentId": run.deployment_id,
        "deploymentVersion": run.deployment_version,
    }
    if run.finished:
        payload["detectUpdate"] = {
            "updateId": _made_update(made, run.deployment_id),
            "resourceChanges": dict(run.resource_changes),
            "modified": _iso(run.finished),
            "status": run.status,
        }
    if run.remediation_deployment_id:
        payload["remediateUpdate"] = {
            "updateId": _made_update(made, run.remediation_deployment_id),
            "modified": _iso(run.remediation_modified or run.finished),
            "status": run.remediation_status or "not-started",
        }
        payload["remediationDeploymentId"] = run.remediation_deployment_id
    return payload


def _made_update(made: Mapping[str, list[updates_pb2.UpdateInfo]], deployment_id: str) -> str:
    found = made.get(deployment_id)
    return found[-1].update_id if found else ""


async def _drift_updates(
    request: web.Request, runs: list[schedules_pb2.DriftRun]
) -> dict[str, list[updates_pb2.UpdateInfo]]:
    """The updates the runs' detecting and remediating jobs made, by deployment id."""
    owners = {token: run.deployment_id for run in runs for token in run.job_token_ids}
    owners.update(
        (token, run.remediation_deployment_id)
        for run in runs
        for token in run.remediation_job_token_ids
    )
    return await updates_by_tokens(request, owners, [request[STACK].id])


def drift_status(status: schedules_pb2.DriftStatus) -> dict[str, Any]:
    return {
        "driftDetected": status.drift_detected,
        "latestDriftRun": status.latest_drift_run,
        "runInProgress": status.run_in_progress,
    }


async def list_drift_runs(request: web.Request) -> web.Response:
    page_size = int_query(request, "pageSize", 0)
    reply = await request.app[BACKENDS].schedules.ListDriftRuns(
        schedules_pb2.ListDriftRunsRequest(
            stack_id=request[STACK].id, page=int_query(request, "page", 0), page_size=page_size
        ),
        **call_options(request),
    )
    runs = list(reply.runs)
    made = await _drift_updates(request, runs)
    return json_response(
        {
            "driftRuns": [drift_run(run, made) for run in runs],
            "itemsPerPage": page_size or len(reply.runs),
            "total": reply.total,
        }
    )


async def get_drift_run(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].schedules.GetDriftRun(
        schedules_pb2.GetDriftRunRequest(
            stack_id=request[STACK].id, drift_run_id=request.match_info["driftRunId"]
        ),
        **call_options(request),
    )
    return json_response(drift_run(reply, await _drift_updates(request, [reply])))


async def get_stack_drift_status(request: web.Request) -> web.Response:
    """No drift run yet: `latestDriftRun` is empty."""
    reply = await request.app[BACKENDS].schedules.GetDriftStatus(
        _scope(request), **call_options(request)
    )
    return json_response(drift_status(reply))


# -- pausing deployments ------------------------------------------------------------------


async def _set_paused(request: web.Request, stack_id: str, paused: bool) -> web.Response:
    await request.app[BACKENDS].schedules.SetDeploymentsPaused(
        schedules_pb2.SetDeploymentsPausedRequest(
            organization=request.match_info["orgName"], stack_id=stack_id, paused=paused
        ),
        **call_options(request),
    )
    return no_content()


async def pause_stack_deployments(request: web.Request) -> web.Response:
    """Queued deployments of the stack stay queued until resumed."""
    return await _set_paused(request, request[STACK].id, True)


async def resume_stack_deployments(request: web.Request) -> web.Response:
    return await _set_paused(request, request[STACK].id, False)


async def pause_org_deployments(request: web.Request) -> web.Response:
    return await _set_paused(request, "", True)


async def resume_org_deployments(request: web.Request) -> web.Response:
    return await _set_paused(request, "", False)


async def stack_deployments_metadata(request: web.Request) -> web.Response:
    scope = _scope(request)
    reply = await request.app[BACKENDS].schedules.GetStackDeploymentsMetadata(
        scope, **call_options(request)
    )
    payload: dict[str, Any] = {
        "paused": reply.stack_paused or reply.organization_paused,
        "stackPaused": reply.stack_paused,
        "organizationPaused": reply.organization_paused,
        "hasSchedules": reply.has_schedules,
    }
    if reply.HasField("drift"):
        payload["drift"] = drift_status(reply.drift)
    return json_response(payload)


async def org_deployments_metadata(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].schedules.GetOrgDeploymentsMetadata(
        schedules_pb2.OrgScope(organization=request.match_info["orgName"]),
        **call_options(request),
    )
    counts = reply.counts
    return json_response(
        {
            "paused": reply.paused,
            "concurrency": reply.concurrency,
            "deploymentCounts": {
                "notStarted": counts.not_started,
                "accepted": counts.accepted,
                "running": counts.running,
                "failed": counts.failed,
                "succeeded": counts.succeeded,
                "skipped": 0,
                "total": counts.total,
            },
        }
    )


async def get_deployments_status(request: web.Request) -> web.Response:
    """`GET /api/deployments/{deploymentId}/status`: the JobStatus of a deployment the caller
    may read (its stack is found first, then the caller's permission on it is checked)."""
    backends = request.app[BACKENDS]
    options = call_options(request)
    located = await backends.schedules.LocateDeployment(
        schedules_pb2.LocateDeploymentRequest(deployment_id=request.match_info["deploymentId"]),
        **options,
    )
    await authorize_stack(
        backends.identity,
        backends.stacks,
        stacks_pb2.GetStackRequest(stack_id=located.stack_id),
        token=request[TOKEN],
        permission=identity_pb2.STACK_PERMISSION_READ,
        manages_access=False,
        options=options,
    )
    return json_response(located.status)
