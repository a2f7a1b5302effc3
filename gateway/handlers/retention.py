"""History retention routes (Cairn's own): how many newest versions of a stack keep their
full state, set per organization (`ORG/state-retention`) and per stack (`S/state-retention`).

Body and answer: `{"keepVersions": N}` with N >= 1, or `null` for every version (on a stack:
follow the organization's setting). Older versions keep their update, events and summary;
their export answers 410.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, STACK, call_options
from gateway.convert import json_response, read_json_object
from gateway.errors import bad_request
from protos.cairn.v1 import updates_pb2

# The most versions a setting may name (the updates service checks the same bound).
MAX_KEEP = 1_000_000


def _keep(body: dict[str, Any]) -> int | None:
    if "keepVersions" not in body:
        raise bad_request("'keepVersions' is required (a number of versions, or null for all)")
    value = body["keepVersions"]
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        # JSON does not tell 3 from 3.0; JSON Schema calls both integers.
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_KEEP:
        raise bad_request(
            f"'keepVersions' must be a whole number from 1 to {MAX_KEEP}, or null for every version"
        )
    return value


def _optional(message: updates_pb2.StateRetention, field: str) -> int | None:
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[arg-type]


def _organization_json(reply: updates_pb2.StateRetention) -> dict[str, Any]:
    return {"keepVersions": _optional(reply, "organization_keep_versions")}


def _stack_json(reply: updates_pb2.StateRetention) -> dict[str, Any]:
    return {
        "keepVersions": _optional(reply, "stack_keep_versions"),
        "organizationKeepVersions": _optional(reply, "organization_keep_versions"),
        "effectiveKeepVersions": _optional(reply, "effective_keep_versions"),
    }


async def get_organization_state_retention(request: web.Request) -> web.Response:
    reply = await request.app[BACKENDS].updates.GetStateRetention(
        updates_pb2.GetStateRetentionRequest(organization=request.match_info["orgName"]),
        **call_options(request),
    )
    return json_response(_organization_json(reply))


async def set_organization_state_retention(request: web.Request) -> web.Response:
    keep = _keep(await read_json_object(request))
    message = updates_pb2.SetStateRetentionRequest(organization=request.match_info["orgName"])
    if keep is not None:
        message.keep_versions = keep
    reply = await request.app[BACKENDS].updates.SetStateRetention(message, **call_options(request))
    return json_response(_organization_json(reply))


async def get_stack_state_retention(request: web.Request) -> web.Response:
    stack = request[STACK]
    reply = await request.app[BACKENDS].updates.GetStateRetention(
        updates_pb2.GetStateRetentionRequest(
            organization=stack.ref.organization, stack_id=stack.id
        ),
        **call_options(request),
    )
    return json_response(_stack_json(reply))


async def set_stack_state_retention(request: web.Request) -> web.Response:
    keep = _keep(await read_json_object(request))
    stack = request[STACK]
    message = updates_pb2.SetStateRetentionRequest(
        organization=stack.ref.organization, stack_id=stack.id
    )
    if keep is not None:
        message.keep_versions = keep
    reply = await request.app[BACKENDS].updates.SetStateRetention(message, **call_options(request))
    return json_response(_stack_json(reply))
