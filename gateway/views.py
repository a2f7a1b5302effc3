"""Views several handlers render: update entries, a stack's newest version, the stacks a
caller may read. Handlers share these through here, never by importing each other."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, TOKEN, call_options
from protos.cairn.v1 import identity_pb2, stacks_pb2, updates_pb2


def _flat_info(info: updates_pb2.UpdateInfo) -> dict[str, Any]:
    """The CLI's UpdateInfo (`pulumi stack history`)."""
    payload: dict[str, Any] = {
        "kind": info.kind,
        "startTime": info.start_time,
        "endTime": info.end_time,
        "message": info.message,
        "environment": dict(info.environment),
        "config": orjson.Fragment(info.config or b"{}"),
        "result": info.result,
        "version": info.version,
        "resourceChanges": dict(info.resource_changes),
    }
    if info.resource_count:
        payload["resourceCount"] = info.resource_count
    return payload


def update_json(info: updates_pb2.UpdateInfo, latest_version: int) -> dict[str, Any]:
    """Both shapes at once: the CLI reads the flat fields, the SDK reads `info` and the rest."""
    flat = _flat_info(info)
    return {
        **flat,
        "info": flat,
        "updateID": info.update_id,
        "latestVersion": latest_version,
        "requestedBy": {
            "name": info.requested_by,
            "githubLogin": info.requested_by,
            "avatarUrl": "",
        },
    }


async def latest_version(request: web.Request) -> int:
    """The stack's newest version (0 before its first update)."""
    reply = await request.app[BACKENDS].updates.GetStackStates(
        updates_pb2.GetStackStatesRequest(stack_ids=[request[STACK].id]), **call_options(request)
    )
    return reply.states[0].version if reply.states else 0


async def readable_stacks(
    request: web.Request, stacks: list[stacks_pb2.Stack]
) -> list[stacks_pb2.Stack]:
    """The stacks the caller may read, in order: a list never shows what `GET S` refuses."""
    if not stacks:
        return []
    reply = await request.app[BACKENDS].identity.FilterReadableStacks(
        identity_pb2.FilterReadableStacksRequest(
            token=request[TOKEN],
            stacks=[
                identity_pb2.StackCandidate(
                    stack_id=stack.id,
                    organization=stack.ref.organization,
                    owner_login=stack.owner_login,
                )
                for stack in stacks
            ],
        ),
        **call_options(request),
    )
    readable = set(reply.stack_ids)
    return [stack for stack in stacks if stack.id in readable]
