"""Stack deployment settings and deployments, in the official SDK's `DeploymentsApi` shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, call_options, public_url
from gateway.convert import (
    INT64_BITS,
    bool_query,
    int_query,
    json_response,
    optional_string,
    parse_int,
    read_json_object,
)
from gateway.errors import bad_request
from gateway.views import latest_version, made_updates, update_json
from protos.cairn.v1 import agent_pools_pb2, updates_pb2

# What the SDK's JobStatus / StepStatus enums allow.
_STEP_STATUS = {"not-started": "not-started", "accepted": "running", "running": "running"}


def _iso(seconds: int) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stack_id(request: web.Request) -> str:
    return request[STACK].id


def _settings_json(reply: agent_pools_pb2.DeploymentSettings) -> web.Response:
    return web.Response(body=reply.settings or b"{}", content_type="application/json")


# -- settings ----------------------------------------------------------------------------


async def get_deployment_settings(request: web.Request) -> web.Response:
    """`GET S/deployments/settings` ({} when none are set); secrets show only ciphertext."""
    reply = await request.app[BACKENDS].agent_pools.GetDeploymentSettings(
        agent_pools_pb2.GetDeploymentSettingsRequest(stack_id=_stack_id(request)),
        **call_options(request),
    )
    return _settings_json(reply)


async def _update_settings(request: web.Request, *, replace: bool) -> web.Response:
    body = await read_json_object(request)
    reply = await request.app[BACKENDS].agent_pools.UpdateDeploymentSettings(
        agent_pools_pb2.UpdateDeploymentSettingsRequest(
            stack_id=_stack_id(request),
            organization=request.match_info["orgName"],
            patch=orjson.dumps(body),
            replace=replace,
        ),
        **call_options(request),
    )
    return _settings_json(reply)


async def patch_deployment_settings(request: web.Request) -> web.Response:
    """`POST S/deployments/settings`: merge; null members leave values as they are."""
    return await _update_settings(request, replace=False)


async def replace_deployment_settings(request: web.Request) -> web.Response:
    """`PUT S/deployments/settings`: the body becomes the settings."""
    return await _update_settings(request, replace=True)


async def delete_deployment_settings(request: web.Request) -> web.Response:
    """Answers `true` (the SDK reads a boolean)."""
    await request.app[BACKENDS].agent_pools.DeleteDeploymentSettings(
        agent_pools_pb2.DeleteDeploymentSettingsRequest(stack_id=_stack_id(request)),
        **call_options(request),
    )
    return json_response(True)


async def encrypt_deployment_settings_secret(request: web.Request) -> web.Response:
    """`POST S/deployments/settings/encrypt` `{"secret": "<plain text>"}` → its ciphertext."""
    body = await read_json_object(request)
    value = optional_string(body, "secret") or optional_string(body, "plaintext")
    if not value:
        raise bad_request("'secret' is required")
    reply = await request.app[BACKENDS].agent_pools.EncryptSettingsSecret(
        agent_pools_pb2.EncryptSettingsSecretRequest(stack_id=_stack_id(request), value=value),
        **call_options(request),
    )
    return json_response({"secret": "", "ciphertext": reply.ciphertext})


# -- deployments -------------------------------------------------------------------------


async def create_api_deployment_handler_v2(request: web.Request) -> web.Response:
    """`POST S/deployments`: queue an operation for the stack's agent pool."""
    body = await read_json_object(request)
    overrides = {k: v for k, v in body.items() if k not in ("operation", "inheritSettings")}
    operation = optional_string(body, "operation")
    if not operation:
        context = body.get("operationContext")
        operation = (
            optional_string(context, "operation") if isinstance(context, dict) else ""
        ) or "update"
    inherit = body.get("inheritSettings")
    if inherit is None:  # absent or null (the SDK's model is nullable): the stack's settings
        inherit = True
    if not isinstance(inherit, bool):
        raise bad_request("'inheritSettings' must be a boolean")
    stack = request[STACK]
    reply = await request.app[BACKENDS].agent_pools.CreateDeployment(
        agent_pools_pb2.CreateDeploymentRequest(
            stack_id=stack.id,
            organization=stack.ref.organization,
            project=stack.ref.project,
            stack=stack.ref.stack,
            operation=operation,
            overrides=orjson.dumps(overrides),
            inherit_settings=inherit,
        ),
        **call_options(request),
    )
    return json_response(
        {"id": reply.id, "consoleUrl": _console_url(request, reply), "version": reply.version}
    )


def _console_url(request: web.Request, deployment: agent_pools_pb2.Deployment) -> str:
    return (
        f"{public_url(request)}/orgs/{deployment.organization}/{deployment.project}/"
        f"{deployment.stack}/deployments/{deployment.version}"
    )


def _job(deployment: agent_pools_pb2.Deployment) -> dict[str, Any]:
    """The SDK's job view: one job, one step running the Pulumi operation."""
    step_status = _STEP_STATUS.get(deployment.status, deployment.status)
    last = _iso(deployment.finished or deployment.modified)
    started = _iso(deployment.started)
    return {
        "status": deployment.status,
        "started": started,
        "lastUpdated": last,
        "steps": [
            {
                "name": "Pulumi operation",
                "status": step_status,
                "started": started,
                "lastUpdated": last,
            }
        ],
    }


def _requested_by(deployment: agent_pools_pb2.Deployment) -> dict[str, Any]:
    return {
        "name": deployment.requested_by,
        "githubLogin": deployment.requested_by,
        "avatarUrl": "",
    }


def _nested_update(info: updates_pb2.UpdateInfo) -> dict[str, Any]:
    """An update of a deployment, as a listing entry shows it (DeploymentNestedUpdate)."""
    return {
        "id": info.update_id,
        "updateID": info.update_id,
        "version": info.version,
        "startTime": info.start_time,
        "endTime": info.end_time,
        "result": info.result,
        "kind": info.kind,
        "message": info.message,
        "environment": dict(info.environment),
    }


def deployment_summary(
    deployment: agent_pools_pb2.Deployment, made: list[updates_pb2.UpdateInfo] | None = None
) -> dict[str, Any]:
    """One entry of a deployment listing (ListDeploymentSnapshot)."""
    return {
        "id": deployment.id,
        "created": _iso(deployment.created) or "",
        "modified": _iso(deployment.modified) or "",
        "status": deployment.status,
        "version": deployment.version,
        "requestedBy": _requested_by(deployment),
        "projectName": deployment.project,
        "stackName": deployment.stack,
        "paused": deployment.paused,
        "pulumiOperation": deployment.operation,
        "updates": [_nested_update(info) for info in made or ()],
        "jobs": [] if deployment.status == "not-started" else [_job(deployment)],
        "initiator": deployment.initiator or "api",
        "message": deployment.message,
    }


async def _list(request: web.Request, stack_id: str) -> web.Response:
    page_size = int_query(request, "pageSize", 0)
    reply = await request.app[BACKENDS].agent_pools.ListDeployments(
        agent_pools_pb2.ListDeploymentsRequest(
            organization=request.match_info["orgName"],
            stack_id=stack_id,
            page=int_query(request, "page", 0),
            page_size=page_size,
            ascending=bool_query(request, "asc"),
        ),
        **call_options(request),
    )
    made = await made_updates(request, list(reply.deployments))
    return json_response(
        {
            "deployments": [deployment_summary(d, made.get(d.id)) for d in reply.deployments],
            "itemsPerPage": page_size or len(reply.deployments),
            "total": reply.total,
        }
    )


async def list_stack_deployments_handler_v2(request: web.Request) -> web.Response:
    return await _list(request, _stack_id(request))


async def list_org_deployments(request: web.Request) -> web.Response:
    return await _list(request, "")


def _configuration(settings: dict[str, Any]) -> dict[str, Any]:
    """Environment variables (secret values hidden) and the source of a deployment."""
    context = settings.get("operationContext")
    environment = context.get("environmentVariables") if isinstance(context, dict) else None
    variables = []
    for name, value in sorted((environment or {}).items()):
        is_secret = isinstance(value, dict) and bool(value.get("ciphertext"))
        plain = value.get("plaintext") if isinstance(value, dict) else value
        variables.append({"name": name, "value": None if is_secret else plain, "secret": is_secret})
    configuration: dict[str, Any] = {"environmentVariables": variables}
    source = settings.get("sourceContext")
    git = source.get("git") if isinstance(source, dict) else None
    if isinstance(git, dict) and git.get("repoUrl"):
        configuration["source"] = {
            "git": {
                "repoURL": git["repoUrl"],
                "branch": git.get("branch"),
                "repoDir": git.get("repoDir"),
                "commit": git.get("commit"),
            }
        }
    return configuration


async def _deployment(request: web.Request) -> agent_pools_pb2.Deployment:
    reply: agent_pools_pb2.Deployment = await request.app[BACKENDS].agent_pools.GetDeployment(
        agent_pools_pb2.GetDeploymentRequest(
            stack_id=_stack_id(request), deployment_id=request.match_info["deploymentId"]
        ),
        **call_options(request),
    )
    return reply


async def get_deployment(request: web.Request) -> web.Response:
    reply = await _deployment(request)
    made = await made_updates(request, [reply])
    settings = orjson.loads(reply.settings or b"{}")
    payload = deployment_summary(reply, made.get(reply.id))
    payload["latestVersion"] = reply.latest_version
    payload["configuration"] = _configuration(settings if isinstance(settings, dict) else {})
    return json_response(payload)


async def get_deployment_updates(request: web.Request) -> web.Response:
    """`GET S/deployments/{deploymentId}/updates`: the updates its job created (UpdateInfo),
    oldest first; each names the deployment."""
    deployment = await _deployment(request)
    made = (await made_updates(request, [deployment])).get(deployment.id, [])
    latest = await latest_version(request)
    links = {
        token: agent_pools_pb2.DeploymentLink(
            token_id=token, deployment_id=deployment.id, version=deployment.version
        )
        for token in deployment.job_token_ids
    }
    return json_response(
        [update_json(info, latest, links.get(info.requested_by_token)) for info in made]
    )


async def get_deployment_logs(request: web.Request) -> web.Response:
    """Log lines; `continuationToken`/`nextToken` page them (absent once all was read).

    With `step` (and `offset`) the answer is the step view the SDK also knows.
    """
    token = request.query.get("continuationToken", "")
    if token and not token.isdigit():
        raise bad_request("invalid continuation token")
    step_view = "step" in request.query
    start = parse_int(token, "continuation token", INT64_BITS) if token else 0
    offset = int_query(request, "offset", start, bits=INT64_BITS)
    reply = await request.app[BACKENDS].agent_pools.GetDeploymentLogs(
        agent_pools_pb2.GetDeploymentLogsRequest(
            stack_id=_stack_id(request),
            deployment_id=request.match_info["deploymentId"],
            offset=offset,
            count=int_query(request, "count", 0),
        ),
        **call_options(request),
    )
    if step_view:
        payload: dict[str, Any] = {
            "__type": "DeploymentLogsStep",
            "name": "Pulumi operation",
            "lines": [
                {"timestamp": _iso(line.timestamp), "line": line.text} for line in reply.lines
            ],
        }
        if reply.next_offset >= 0:
            payload["nextOffset"] = reply.next_offset
        return json_response(payload)
    payload = {
        "__type": "DeploymentLogs",
        "lines": [
            {"header": "Pulumi operation", "timestamp": _iso(line.timestamp), "line": line.text}
            for line in reply.lines
        ],
    }
    if reply.next_offset >= 0:
        payload["nextToken"] = str(reply.next_offset)
    return json_response(payload)


async def cancel_deployment(request: web.Request) -> web.Response:
    """Queued: ends now. Running: its agent stops it at its next heartbeat or log call."""
    await request.app[BACKENDS].agent_pools.CancelDeployment(
        agent_pools_pb2.CancelDeploymentRequest(
            stack_id=_stack_id(request), deployment_id=request.match_info["deploymentId"]
        ),
        **call_options(request),
    )
    return web.Response(status=204)
