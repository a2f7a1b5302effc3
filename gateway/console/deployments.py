"""Console pages of deployments: a stack's and an organization's lists, one deployment with
its logs (followed live while it runs) and the updates its job made, and cancelling one.

Each page is authorised as the REST route it mirrors (`gateway/console/routes.py`) and reads
the same RPCs; the deployment's page is the `consoleUrl` the API returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from aiohttp import web

from gateway import audit_events as events
from gateway.audit_middleware import record_console_call
from gateway.console.csrf import checked_form
from gateway.console.handlers import STOPPING, see_other
from gateway.console.render import render, secure
from gateway.console.schedules import drift
from gateway.context import BACKENDS, STACK, call_options
from gateway.errors import ApiError, rpc_error_response
from gateway.views import made_updates
from protos.cairn.v1 import agent_pools_pb2, updates_pb2

PAGE_SIZE = 25
LOG_PAGE_LINES = 1000
# Lines shown on the page itself; the rest are a click away in the REST logs route.
MAX_SHOWN_LOG_LINES = 20_000
LIVE_POLL_SECONDS = 0.5
# A live stream ends after this long; the browser's EventSource reconnects where it stopped.
LIVE_MAX_SECONDS = 300.0
RUNNING_STATUSES = frozenset({"not-started", "accepted", "running"})


@dataclass(frozen=True)
class Listed:
    """A deployment and the updates its job made, for a list row."""

    deployment: agent_pools_pb2.Deployment
    updates: tuple[updates_pb2.UpdateInfo, ...]


def _page(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1


def _version(request: web.Request) -> int:
    version = int(request.match_info["version"])
    if version < 1:
        raise ApiError(404, "Not Found: deployment versions start at 1")
    return version


async def _listing(request: web.Request, stack_id: str) -> tuple[list[Listed], int, int, int]:
    """A page of deployments (newest first) of the organization or of one stack."""
    page = _page(request)
    reply = await request.app[BACKENDS].agent_pools.ListDeployments(
        agent_pools_pb2.ListDeploymentsRequest(
            organization=request.match_info["orgName"],
            stack_id=stack_id,
            page=page,
            page_size=PAGE_SIZE,
        ),
        **call_options(request),
    )
    deployments = list(reply.deployments)
    made = await made_updates(request, deployments)
    rows = [Listed(d, tuple(made.get(d.id, ()))) for d in deployments]
    pages = max(1, -(-reply.total // PAGE_SIZE))
    return rows, int(reply.total), page, pages


async def stack_deployments(request: web.Request) -> web.Response:
    """The stack's deployments (`GET S/deployments`)."""
    rows, total, page, pages = await _listing(request, request[STACK].id)
    return render(
        request,
        "deployments.html",
        org=request.match_info["orgName"],
        stack=request[STACK],
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        drift=await drift(request),
    )


async def org_deployments(request: web.Request) -> web.Response:
    """The organization's deployments (`GET /api/orgs/{orgName}/deployments`)."""
    rows, total, page, pages = await _listing(request, "")
    return render(
        request,
        "deployments.html",
        org=request.match_info["orgName"],
        stack=None,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        drift=None,
    )


async def _deployment(request: web.Request) -> agent_pools_pb2.Deployment:
    reply: agent_pools_pb2.Deployment = await request.app[BACKENDS].agent_pools.GetDeployment(
        agent_pools_pb2.GetDeploymentRequest(stack_id=request[STACK].id, version=_version(request)),
        **call_options(request),
    )
    return reply


async def _logs(
    request: web.Request, deployment_id: str, offset: int, count: int
) -> agent_pools_pb2.GetDeploymentLogsResponse:
    reply: agent_pools_pb2.GetDeploymentLogsResponse = await request.app[
        BACKENDS
    ].agent_pools.GetDeploymentLogs(
        agent_pools_pb2.GetDeploymentLogsRequest(
            stack_id=request[STACK].id, deployment_id=deployment_id, offset=offset, count=count
        ),
        **call_options(request),
    )
    return reply


async def deployment(request: web.Request) -> web.Response:
    """One deployment: status, who asked, its updates and its logs (live while it runs)."""
    found = await _deployment(request)
    lines: list[agent_pools_pb2.LogLine] = []
    offset = 0
    while len(lines) < MAX_SHOWN_LOG_LINES:
        reply = await _logs(request, found.id, offset, LOG_PAGE_LINES)
        lines.extend(reply.lines)
        if reply.next_offset < 0 or not reply.lines:
            break
        offset = reply.next_offset
    made = await made_updates(request, [found])
    is_running = found.status in RUNNING_STATUSES
    return render(
        request,
        "deployment.html",
        stack=request[STACK],
        deployment=found,
        lines=lines,
        is_truncated=len(lines) >= MAX_SHOWN_LOG_LINES,
        updates=made.get(found.id, []),
        is_running=is_running,
        live_after=lines[-1].index + 1 if lines else 0,
    )


def _event(name: str, data: Any, event_id: str = "") -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _status(found: agent_pools_pb2.Deployment) -> dict[str, Any]:
    return {
        "status": found.status,
        "message": found.message,
        "isRunning": found.status in RUNNING_STATUSES,
    }


async def deployment_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events of a deployment's new log lines, its status, and its end.

    Resumes after `Last-Event-ID` (or `?after=`), the index of the next line to send.
    """
    after = request.headers.get("Last-Event-ID") or request.query.get("after", "")
    if after and (not after.isdigit() or len(after) > 18):
        raise ApiError(400, "Bad Request: 'after' must be a log line index")
    offset = int(after or 0)
    found = await _deployment(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    secure(response)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVE_MAX_SECONDS
    last_status: dict[str, Any] | None = None
    stopping = request.app[STOPPING]
    with contextlib.suppress(ConnectionResetError):
        while loop.time() < deadline and not stopping.is_set():
            try:
                reply = await _logs(request, found.id, offset, LOG_PAGE_LINES)
                found = await _deployment(request)
            except grpc.aio.AioRpcError as error:
                await response.write(_event("failure", {"message": error.details() or ""}))
                break
            for line in reply.lines:
                item = {"index": line.index, "timestamp": line.timestamp, "text": line.text}
                await response.write(_event("line", item, str(line.index + 1)))
            if reply.lines:
                offset = reply.lines[-1].index + 1
            status = _status(found)
            if status != last_status:
                await response.write(_event("status", status))
                last_status = status
            if reply.next_offset < 0:
                await response.write(_event("end", status))
                break
            if len(reply.lines) < LOG_PAGE_LINES:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), LIVE_POLL_SECONDS)
    return response


async def cancel(request: web.Request) -> web.Response:
    """Cancel the deployment (`POST S/deployments/{deploymentId}/cancel`), then show it."""
    await checked_form(request)
    found = await _deployment(request)
    try:
        await request.app[BACKENDS].agent_pools.CancelDeployment(
            agent_pools_pb2.CancelDeploymentRequest(
                stack_id=request[STACK].id, deployment_id=found.id
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        record_console_call(request, events.DEPLOYMENT_CANCEL, rpc_error_response(error).status)
        raise
    record_console_call(request, events.DEPLOYMENT_CANCEL, 204)
    ref = request[STACK].ref
    return see_other(
        f"/orgs/{ref.organization}/{ref.project}/{ref.stack}/deployments/{found.version}"
    )
