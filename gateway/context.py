"""Typed keys for what the app and each request carry, and per-call options for stubs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.auth_failures import AuthFailures
from gateway.backends import Backends
from protos.cairn.v1 import common_pb2, identity_pb2, stacks_pb2
from services.common.auth import Caller
from services.common.config import Settings

BACKENDS = web.AppKey("backends", Backends)
SETTINGS = web.AppKey("settings", Settings)
AUTH_FAILURES = web.AppKey("auth_failures", AuthFailures)
# The serialised /openapi.json, built on first use (gateway/openapi.py).
OPENAPI_DOCUMENT: web.AppKey[Callable[[], bytes]] = web.AppKey("openapi_document")

REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
TOKEN = web.RequestKey("token", str)
UPDATE_TOKEN = web.RequestKey("update_token", str)
AGENT_TOKEN = web.RequestKey("agent_token", str)
PRINCIPAL = web.RequestKey("principal", identity_pb2.Principal)
ROLE = web.RequestKey("role", int)
STACK = web.RequestKey("stack", stacks_pb2.Stack)


def call_options(request: web.Request) -> dict[str, Any]:
    """Deadline and caller metadata for one stub call made on behalf of a request."""
    caller = request.get(CALLER) or Caller(request_id=request.get(REQUEST_ID, ""))
    return {"timeout": request.app[BACKENDS].timeout, "metadata": caller.metadata()}


def public_url(request: web.Request) -> str:
    """The gateway's URL as clients reach it: `CAIRN_PUBLIC_URL`, else the request's host."""
    url = request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"
    return url.rstrip("/")


def stack_ref(request: web.Request) -> common_pb2.StackRef:
    """The stack named by the path."""
    info = request.match_info
    return common_pb2.StackRef(
        organization=info["orgName"], project=info["projectName"], stack=info["stackName"]
    )
