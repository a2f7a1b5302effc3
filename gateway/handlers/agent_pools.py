"""Agent pools (seed 003) and the protocol self-hosted agents speak.

Agents authenticate with their pool's token (`Authorization: token <pool token>`); the
agent_pools service checks it. Protocol, in order: register, then heartbeat every
`heartbeatIntervalSeconds`, claim work (204 when none is queued), send log lines, finish.

A claimed job's `environment` holds what the job must see besides its settings' variables:
a short-lived access token of the user who queued it (`PULUMI_ACCESS_TOKEN`, revoked when the
deployment ends) and this gateway's URL (`PULUMI_BACKEND_URL`); it is empty when the stack's
settings bring their own PULUMI_ACCESS_TOKEN. `secretValues` lists the settings' secret
values in the clear, which the agent masks in the lines it sends.
"""

from __future__ import annotations

import socket
from typing import Any

import orjson
from aiohttp import web

from gateway.context import AGENT_TOKEN, BACKENDS, call_options, public_url
from gateway.convert import (
    bool_query,
    json_response,
    no_content,
    optional_string,
    read_json_object,
    read_optional_json_object,
    string_list,
)
from gateway.errors import bad_request
from protos.cairn.v1 import agent_pools_pb2


def _org(request: web.Request) -> str:
    return request.match_info["orgName"]


def pool_json(pool: agent_pools_pb2.Pool) -> dict[str, Any]:
    """One pool as seed 003 lists it (`lastDeployment` only once a deployment ran)."""
    payload: dict[str, Any] = {
        "created": pool.created,
        "id": pool.id,
        "name": pool.name,
        "description": pool.description,
        "lastSeen": pool.last_seen,
        "status": pool.status,
        "isDefault": pool.is_default,
    }
    if pool.last_deployment:
        payload["lastDeployment"] = pool.last_deployment
    return payload


async def list_org_agent_pool(request: web.Request) -> web.Response:
    """`GET /api/orgs/{org}/agent-pools`."""
    reply = await request.app[BACKENDS].agent_pools.ListPools(
        agent_pools_pb2.ListPoolsRequest(organization=_org(request)), **call_options(request)
    )
    payload: dict[str, Any] = {"agentPools": [pool_json(pool) for pool in reply.pools]}
    if reply.default_pool_id:
        payload["defaultAgentPoolID"] = reply.default_pool_id
    return json_response(payload)


async def create_org_agent_pool(request: web.Request) -> web.Response:
    """`POST /api/orgs/{org}/agent-pools`: the token is in this response and nowhere else."""
    body = await read_json_object(request)
    name = optional_string(body, "name")
    if not name:
        raise bad_request("'name' is required")
    reply = await request.app[BACKENDS].agent_pools.CreatePool(
        agent_pools_pb2.CreatePoolRequest(
            organization=_org(request),
            name=name,
            description=optional_string(body, "description"),
        ),
        **call_options(request),
    )
    return json_response({"id": reply.pool.id, "tokenValue": reply.token})


async def get_agent_pool(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].agent_pools.GetPool(
        agent_pools_pb2.GetPoolRequest(
            organization=_org(request), pool_id=request.match_info["poolId"]
        ),
        **call_options(request),
    )
    return json_response(
        {
            "created": reply.pool.created,
            "id": reply.pool.id,
            "name": reply.pool.name,
            "description": reply.pool.description,
            "agents": [
                {
                    "version": agent.version,
                    "platform": agent.platform,
                    "hostname": agent.hostname,
                    "ip": agent.ip,
                    "pid": agent.pid,
                    "lastSeen": agent.last_seen,
                    "status": agent.status,
                }
                for agent in reply.agents
            ],
        }
    )


async def patch_org_agent_pool(request: web.Request) -> web.Response:
    """Only the fields given (not null) change."""
    body = await read_json_object(request)
    name = body.get("name")
    description = body.get("description")
    for field, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise bad_request(f"'{field}' must be a string")
    reply = await request.app[BACKENDS].agent_pools.UpdatePool(
        agent_pools_pb2.UpdatePoolRequest(
            organization=_org(request),
            pool_id=request.match_info["poolId"],
            name=name,
            description=description,
        ),
        **call_options(request),
    )
    return json_response({"name": reply.name, "description": reply.description})


async def delete_org_agent_pool(request: web.Request) -> web.Response:
    """400 `Agent pool is in use` while stacks use it, unless `?force=true`."""
    await request.app[BACKENDS].agent_pools.DeletePool(
        agent_pools_pb2.DeletePoolRequest(
            organization=_org(request),
            pool_id=request.match_info["poolId"],
            force=bool_query(request, "force"),
        ),
        **call_options(request),
    )
    return no_content()


# -- the agent protocol ------------------------------------------------------------------


def _agent(request: web.Request) -> agent_pools_pb2.AgentCredentials:
    return agent_pools_pb2.AgentCredentials(
        pool_token=request[AGENT_TOKEN], agent_id=request.match_info["agentId"]
    )


def _peer_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return ""


async def register_agent(request: web.Request) -> web.Response:
    """`POST /api/agents/register` with the agent's version, platform, hostname, ip, pid."""
    body = await read_optional_json_object(request)
    ip = optional_string(body, "ip") or _peer_ip(request)
    pid = body.get("pid")
    reply = await request.app[BACKENDS].agent_pools.RegisterAgent(
        agent_pools_pb2.RegisterAgentRequest(
            pool_token=request[AGENT_TOKEN],
            version=optional_string(body, "version"),
            platform=optional_string(body, "platform"),
            hostname=optional_string(body, "hostname") or socket.gethostname(),
            ip=ip,
            pid=str(pid) if isinstance(pid, int | str) else "",
        ),
        **call_options(request),
    )
    return json_response(
        {
            "agentID": reply.agent_id,
            "poolID": reply.pool_id,
            "heartbeatIntervalSeconds": reply.heartbeat_seconds,
        }
    )


async def agent_heartbeat(request: web.Request) -> web.Response:
    """`POST /api/agents/{agentId}/heartbeat`: names the agent's jobs that were cancelled."""
    reply = await request.app[BACKENDS].agent_pools.Heartbeat(
        agent_pools_pb2.HeartbeatRequest(agent=_agent(request)), **call_options(request)
    )
    return json_response({"cancelledDeployments": list(reply.cancelled_deployment_ids)})


async def claim_deployment(request: web.Request) -> web.Response:
    """`POST /api/agents/{agentId}/claim`: the next queued deployment, or 204."""
    reply = await request.app[BACKENDS].agent_pools.ClaimDeployment(
        agent_pools_pb2.ClaimDeploymentRequest(agent=_agent(request)), **call_options(request)
    )
    if not reply.HasField("job"):
        return no_content()
    deployment = reply.job.deployment
    environment: dict[str, str] = {}
    if reply.job.access_token:
        environment = {
            "PULUMI_ACCESS_TOKEN": reply.job.access_token,
            "PULUMI_BACKEND_URL": public_url(request),
        }
    return json_response(
        {
            "deploymentID": deployment.id,
            "version": deployment.version,
            "operation": deployment.operation,
            "orgName": deployment.organization,
            "projectName": deployment.project,
            "stackName": deployment.stack,
            "settings": _raw(reply.job.settings),
            "environment": environment,
            "secretValues": list(reply.job.secret_values),
        }
    )


async def append_deployment_logs(request: web.Request) -> web.Response:
    """`POST /api/agents/{agentId}/deployments/{deploymentId}/logs` `{"lines": [...]}`."""
    body = await read_json_object(request)
    reply = await request.app[BACKENDS].agent_pools.AppendDeploymentLogs(
        agent_pools_pb2.AppendDeploymentLogsRequest(
            agent=_agent(request),
            deployment_id=request.match_info["deploymentId"],
            lines=string_list(body.get("lines"), "lines"),
        ),
        **call_options(request),
    )
    return json_response({"cancelled": reply.is_cancelled})


async def finish_deployment(request: web.Request) -> web.Response:
    """`POST /api/agents/{agentId}/deployments/{deploymentId}/finish` `{"status", "message"}`."""
    body = await read_json_object(request)
    await request.app[BACKENDS].agent_pools.FinishDeployment(
        agent_pools_pb2.FinishDeploymentRequest(
            agent=_agent(request),
            deployment_id=request.match_info["deploymentId"],
            status=optional_string(body, "status"),
            message=optional_string(body, "message"),
        ),
        **call_options(request),
    )
    return no_content()


def _raw(data: bytes) -> Any:
    return orjson.Fragment(data or b"{}")
