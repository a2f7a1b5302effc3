"""Console pages of webhooks: an organization's hooks (org admins) and a stack's (stack
admins), each hook's recent deliveries, and sending a ping.

Each page is authorised as the REST route it mirrors (`gateway/console/routes.py`) and calls
the same HookService RPCs. Hooks are answered without their secret, so none can be shown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from aiohttp import web

from gateway import audit_events as events
from gateway.audit_middleware import record_console_call
from gateway.console.csrf import checked_form
from gateway.console.handlers import see_other
from gateway.console.render import render, segment, stack_url
from gateway.context import BACKENDS, STACK, call_options
from gateway.errors import rpc_error_response
from protos.cairn.v1 import hooks_pb2

# Deliveries shown per hook, newest first (the service keeps more; the REST route lists them).
SHOWN_DELIVERIES = 10
PING = "ping"


@dataclass(frozen=True)
class Attempt:
    """A recorded delivery and which attempt at its event it was (1 for the first)."""

    delivery: hooks_pb2.HookDelivery
    number: int

    @property
    def is_success(self) -> bool:
        return 200 <= self.delivery.response_code < 300


@dataclass(frozen=True)
class HookRow:
    hook: hooks_pb2.Hook
    attempts: tuple[Attempt, ...]
    total: int


def numbered(deliveries: list[hooks_pb2.HookDelivery]) -> list[Attempt]:
    """Number each delivery (newest first, as listed) within its event.

    Retries and redeliveries send the same payload again, so deliveries of one kind with the
    same payload are attempts at one event, counted oldest first. Each ping is its own event.
    """
    seen: dict[tuple[str, str], int] = {}
    numbers: list[int] = []
    for delivery in reversed(deliveries):
        if delivery.kind == PING:
            numbers.append(1)
            continue
        key = (delivery.kind, delivery.payload)
        seen[key] = seen.get(key, 0) + 1
        numbers.append(seen[key])
    return [Attempt(d, n) for d, n in zip(deliveries, reversed(numbers), strict=True)]


def _scope(request: web.Request) -> hooks_pb2.HookScope:
    info = request.match_info
    return hooks_pb2.HookScope(
        organization=info["orgName"],
        project=info.get("projectName", ""),
        stack=info.get("stackName", ""),
    )


def _base(request: web.Request) -> str:
    scope = _scope(request)
    if scope.stack:
        return stack_url(scope.organization, scope.project, scope.stack, "/hooks")
    return f"/orgs/{segment(scope.organization)}/hooks"


async def _row(request: web.Request, hook: hooks_pb2.Hook) -> HookRow:
    reply = await request.app[BACKENDS].hooks.ListHookDeliveries(
        hooks_pb2.ListHookDeliveriesRequest(scope=hook.scope, name=hook.name),
        **call_options(request),
    )
    attempts = numbered(list(reply.deliveries))
    return HookRow(hook, tuple(attempts[:SHOWN_DELIVERIES]), len(attempts))


async def _hooks_page(request: web.Request) -> web.Response:
    scope = _scope(request)
    reply = await request.app[BACKENDS].hooks.ListHooks(
        hooks_pb2.ListHooksRequest(scope=scope), **call_options(request)
    )
    hooks = sorted(reply.hooks, key=lambda h: h.name)
    rows = await asyncio.gather(*(_row(request, hook) for hook in hooks))
    pinged_id = request.query.get("pinged", "")
    pinged = next(
        (
            (row.hook, attempt)
            for row in rows
            for attempt in row.attempts
            if pinged_id and attempt.delivery.id == pinged_id
        ),
        None,
    )
    return render(
        request,
        "hooks.html",
        org=scope.organization,
        stack=request[STACK] if scope.stack else None,
        base=_base(request),
        rows=rows,
        pinged=pinged,
        shown=SHOWN_DELIVERIES,
    )


async def org_hooks(request: web.Request) -> web.Response:
    """The organization's hooks and their deliveries (`GET /api/orgs/{orgName}/hooks`)."""
    return await _hooks_page(request)


async def stack_hooks(request: web.Request) -> web.Response:
    """The stack's hooks and their deliveries (`GET S/hooks`)."""
    return await _hooks_page(request)


async def _ping(request: web.Request) -> web.Response:
    await checked_form(request)
    try:
        reply = await request.app[BACKENDS].hooks.PingHook(
            hooks_pb2.PingHookRequest(scope=_scope(request), name=request.match_info["hookName"]),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        record_console_call(request, events.WEBHOOK_PING, rpc_error_response(error).status)
        raise
    record_console_call(request, events.WEBHOOK_PING, 200)
    return see_other(f"{_base(request)}?pinged={reply.id}#delivery-{reply.id}")


async def ping_org_hook(request: web.Request) -> web.Response:
    """Send a ping event to an organization's hook now
    (`POST /api/orgs/{orgName}/hooks/{hookName}/ping`), then show the delivery."""
    return await _ping(request)


async def ping_stack_hook(request: web.Request) -> web.Response:
    """Send a ping event to a stack's hook now (`POST S/hooks/{hookName}/ping`), then show
    the delivery."""
    return await _ping(request)
