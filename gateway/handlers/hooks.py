"""Webhook routes of organizations (`/api/orgs/{orgName}/hooks...`) and stacks
(`S/hooks...`): the SDK's `Webhook` in, `WebhookResponse` / `WebhookDelivery` out.

The secret is write-only: bodies never carry it back (`hasSecret` says whether one is set;
`secretCiphertext` is always empty).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, call_options
from gateway.convert import (
    json_response,
    no_content,
    optional_string,
    read_json_object,
    string_list,
)
from gateway.errors import bad_request
from protos.cairn.v1 import hooks_pb2


def _scope(request: web.Request) -> hooks_pb2.HookScope:
    info = request.match_info
    return hooks_pb2.HookScope(
        organization=info["orgName"],
        project=info.get("projectName", ""),
        stack=info.get("stackName", ""),
    )


def _check_names(body: dict[str, Any], scope: hooks_pb2.HookScope) -> None:
    """Names in the body, when sent, must be those of the path."""
    for member, expected in (
        ("organizationName", scope.organization),
        ("projectName", scope.project),
        ("stackName", scope.stack),
    ):
        value = optional_string(body, member)
        if value and value != expected:
            raise bad_request(f"'{member}' does not match the path")
    if optional_string(body, "envName"):
        raise bad_request("environment webhooks are not supported")


def _active(body: dict[str, Any]) -> bool:
    value = body.get("active")
    if value is None:
        return True
    if not isinstance(value, bool):
        raise bad_request("'active' must be a boolean")
    return value


async def _spec(request: web.Request, scope: hooks_pb2.HookScope) -> hooks_pb2.HookSpec:
    body = await read_json_object(request)
    _check_names(body, scope)
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise bad_request("'secret' must be a string")
    return hooks_pb2.HookSpec(
        name=optional_string(body, "name"),
        display_name=optional_string(body, "displayName"),
        payload_url=optional_string(body, "payloadUrl"),
        secret=secret or "",
        has_secret=secret is not None,
        active=_active(body),
        format=optional_string(body, "format"),
        filters=string_list(body.get("filters"), "filters"),
        groups=string_list(body.get("groups"), "groups"),
    )


def _hook_json(hook: hooks_pb2.Hook) -> dict[str, Any]:
    """`WebhookResponse`."""
    body: dict[str, Any] = {"organizationName": hook.scope.organization}
    if hook.scope.stack:
        body["projectName"] = hook.scope.project
        body["stackName"] = hook.scope.stack
    body.update(
        {
            "name": hook.name,
            "displayName": hook.display_name,
            "payloadUrl": hook.payload_url,
            "active": hook.active,
            "format": hook.format,
            "filters": list(hook.filters),
            "groups": list(hook.groups),
            "hasSecret": hook.has_secret,
            "secretCiphertext": "",
        }
    )
    return body


def _delivery_json(delivery: hooks_pb2.HookDelivery) -> dict[str, Any]:
    """`WebhookDelivery`."""
    return {
        "id": delivery.id,
        "kind": delivery.kind,
        "payload": delivery.payload,
        # Unix seconds, as Pulumi's CLI reads it (kept in milliseconds, for ordering).
        "timestamp": delivery.timestamp // 1000,
        "duration": delivery.duration_ms,
        "requestUrl": delivery.request_url,
        "requestHeaders": delivery.request_headers,
        "responseCode": delivery.response_code,
        "responseHeaders": delivery.response_headers,
        "responseBody": delivery.response_body,
    }


async def _create(request: web.Request) -> web.Response:
    scope = _scope(request)
    reply = await request.app[BACKENDS].hooks.CreateHook(
        hooks_pb2.CreateHookRequest(scope=scope, spec=await _spec(request, scope)),
        **call_options(request),
    )
    return json_response(_hook_json(reply))


async def _list(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].hooks.ListHooks(
        hooks_pb2.ListHooksRequest(scope=_scope(request)), **call_options(request)
    )
    return json_response([_hook_json(hook) for hook in reply.hooks])


async def _get(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].hooks.GetHook(
        hooks_pb2.GetHookRequest(scope=_scope(request), name=request.match_info["hookName"]),
        **call_options(request),
    )
    return json_response(_hook_json(reply))


async def _update(request: web.Request) -> web.Response:
    scope = _scope(request)
    reply = await request.app[BACKENDS].hooks.UpdateHook(
        hooks_pb2.UpdateHookRequest(
            scope=scope, name=request.match_info["hookName"], spec=await _spec(request, scope)
        ),
        **call_options(request),
    )
    return json_response(_hook_json(reply))


async def _delete(request: web.Request) -> web.Response:
    await request.app[BACKENDS].hooks.DeleteHook(
        hooks_pb2.DeleteHookRequest(scope=_scope(request), name=request.match_info["hookName"]),
        **call_options(request),
    )
    return no_content()


async def _deliveries(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].hooks.ListHookDeliveries(
        hooks_pb2.ListHookDeliveriesRequest(
            scope=_scope(request), name=request.match_info["hookName"]
        ),
        **call_options(request),
    )
    return json_response([_delivery_json(delivery) for delivery in reply.deliveries])


async def _ping(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].hooks.PingHook(
        hooks_pb2.PingHookRequest(scope=_scope(request), name=request.match_info["hookName"]),
        **call_options(request),
    )
    return json_response(_delivery_json(reply))


async def _redeliver(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].hooks.RedeliverHookEvent(
        hooks_pb2.RedeliverHookEventRequest(
            scope=_scope(request),
            name=request.match_info["hookName"],
            delivery_id=request.match_info["event"],
        ),
        **call_options(request),
    )
    return json_response(_delivery_json(reply))


# One handler per operation id (the SDK's method names); org and stack share the bodies.
async def create_organization_webhook(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/hooks`."""
    return await _create(request)


async def list_organization_webhooks(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/hooks`."""
    return await _list(request)


async def get_organization_webhook(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/hooks/{hookName}`."""
    return await _get(request)


async def update_organization_webhook(request: web.Request) -> web.Response:
    """`PATCH /api/orgs/{orgName}/hooks/{hookName}`."""
    return await _update(request)


async def delete_organization_webhook(request: web.Request) -> web.Response:
    """`DELETE /api/orgs/{orgName}/hooks/{hookName}`."""
    return await _delete(request)


async def get_organization_webhook_deliveries(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/hooks/{hookName}/deliveries`."""
    return await _deliveries(request)


async def ping_organization_webhook(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/hooks/{hookName}/ping`."""
    return await _ping(request)


async def redeliver_organization_webhook_event(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/hooks/{hookName}/deliveries/{event}/redeliver`."""
    return await _redeliver(request)


async def create_stack_webhook(request: web.Request) -> web.Response:
    """`POST S/hooks`."""
    return await _create(request)


async def list_stack_webhooks(request: web.Request) -> web.Response:
    """`GET S/hooks`."""
    return await _list(request)


async def get_stack_webhook(request: web.Request) -> web.Response:
    """`GET S/hooks/{hookName}`."""
    return await _get(request)


async def update_stack_webhook(request: web.Request) -> web.Response:
    """`PATCH S/hooks/{hookName}`."""
    return await _update(request)


async def delete_stack_webhook(request: web.Request) -> web.Response:
    """`DELETE S/hooks/{hookName}`."""
    return await _delete(request)


async def get_stack_webhook_deliveries(request: web.Request) -> web.Response:
    """`GET S/hooks/{hookName}/deliveries`."""
    return await _deliveries(request)


async def ping_stack_webhook(request: web.Request) -> web.Response:
    """`POST S/hooks/{hookName}/ping`."""
    return await _ping(request)


async def redeliver_stack_webhook_event(request: web.Request) -> web.Response:
    """`POST S/hooks/{hookName}/deliveries/{event}/redeliver`."""
    return await _redeliver(request)
