"""Discovery, health and metrics: protocol doc §3.1.3 (capabilities) and §3.1.4 (CLI version),
plus liveness, readiness and Prometheus metrics for operators."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.context import BACKENDS, OPENAPI_DOCUMENT, SETTINGS
from gateway.convert import json_response
from gateway.errors import RETRY_AFTER_SECONDS
from services.common.grpc_server import check_health
from services.common.metrics import METRICS, exposition
from services.common.readiness import DEPENDENCY_NAMES, unreachable_dependencies

# How long a service may take to answer a health check, on top of its dependency probes.
HEALTH_TIMEOUT_SECONDS = 2.0
# The highest deployment schema stored (texts are kept as received, so v4 with features too).
DEPLOYMENT_SCHEMA_VERSION = 4


def capabilities(checkpoint_cutoff_bytes: int) -> list[dict[str, object]]:
    """Only what works end to end: one malformed entry makes the CLI ignore them all (§3.1.3)."""
    return [
        {"capability": "batch-encrypt"},
        {
            "capability": "delta-checkpoint-uploads-v2",
            "version": 2,
            "configuration": {"checkpointCutoffSizeBytes": checkpoint_cutoff_bytes},
        },
        {
            "capability": "deployment-schema-version",
            "version": 1,
            "configuration": {"version": DEPLOYMENT_SCHEMA_VERSION},
        },
    ]


# The CLI release this protocol implementation follows, and the oldest one that speaks
# API version 8 (`Accept: application/vnd.pulumi+8`).
PROTOCOL_CLI_VERSION = "3.259.0"
OLDEST_SUPPORTED_CLI_VERSION = "3.9.0"


async def health(request: web.Request) -> web.Response:
    """200 only when every service answers its gRPC health check (the same as /readyz)."""
    return await _services_health(request)


async def get_liveness(_request: web.Request) -> web.Response:
    """`/livez`: 200 whenever this process answers HTTP; it asks no backend."""
    return json_response({"status": "ok"})


async def get_readiness(request: web.Request) -> web.Response:
    """`/readyz`: 200 only when every service answers SERVING to its gRPC health check.

    A service answers NOT_SERVING while it cannot reach its database (or Redis); the 503 body
    names each unreachable dependency and the services that reported it.
    """
    return await _services_health(request)


async def get_metrics(request: web.Request) -> web.Response:
    """`/metrics`: Prometheus exposition of this process (every service too under `cairn up`)."""
    return exposition(request.app[METRICS].registry, request.headers.get("Accept", ""))


async def get_openapi_document(request: web.Request) -> web.Response:
    """`/openapi.json`: every route with its parameters, bodies, answers and credentials."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT](), content_type="application/json")


async def get_pulumi_spec(request: web.Request) -> web.Response:
    """The same document under the path `pulumi cloud api` fetches it from."""
    return await get_openapi_document(request)


async def _services_health(request: web.Request) -> web.Response:
    backends = request.app[BACKENDS]
    names = list(backends.channels)
    # A service answers once its dependency probes are done or cut short.
    timeout = request.app[SETTINGS].dependency_probe_timeout_seconds + HEALTH_TIMEOUT_SECONDS
    results = await asyncio.gather(
        *(check_health(backends.channels[name], timeout) for name in names)
    )
    services = {
        name: ("serving" if ok else "unavailable") for name, ok in zip(names, results, strict=True)
    }
    if all(results):
        return json_response({"status": "ok", "services": services})
    not_ready = [name for name, ok in zip(names, results, strict=True) if not ok]
    # Only services that are not ready are asked which of their dependencies is down.
    reports = await asyncio.gather(
        *(unreachable_dependencies(backends.channels[name], timeout) for name in not_ready)
    )
    down_by_service = dict(zip(not_ready, reports, strict=True))
    dependencies = {
        dependency: sorted(name for name, down in down_by_service.items() if dependency in down)
        for dependency in DEPENDENCY_NAMES
    }
    reasons = [
        f"{dependency} unreachable from {', '.join(services_down)}"
        for dependency, services_down in dependencies.items()
        if services_down
    ]
    silent = [name for name, down in down_by_service.items() if not down]
    if silent:
        reasons.append(f"not answering: {', '.join(silent)}")
    response = json_response(
        {
            "code": 503,
            "message": f"Service Unavailable: {'; '.join(reasons)}",
            "status": "unavailable",
            "services": services,
            # Each unreachable dependency, with the services that cannot reach it.
            "unavailableDependencies": {
                dependency: services_down
                for dependency, services_down in dependencies.items()
                if services_down
            },
        },
        status=503,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def get_capabilities(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return json_response({"capabilities": capabilities(settings.checkpoint_cutoff_bytes)})


async def get_cli_version(_request: web.Request) -> web.Response:
    return json_response(
        {
            "latestVersion": PROTOCOL_CLI_VERSION,
            "oldestWithoutWarning": OLDEST_SUPPORTED_CLI_VERSION,
            "latestDevVersion": "",
        }
    )
