"""Copilot: `POST /api/ai/chat/preview` (seed 004), new and continued conversations."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, TOKEN, call_options, public_url
from gateway.convert import json_response, optional_object, optional_string, read_json_object
from protos.cairn.v1 import copilot_pb2

# Kinds the official SDK can decode; it fails on the seed's trace and status messages.
SDK_KINDS = frozenset({"response", "program", "improvedProgram"})


def _message(message: copilot_pb2.ChatMessage) -> dict[str, Any]:
    content: Any = message.text
    if message.kind == "program":
        content = orjson.Fragment(message.program or b"{}")
    return {"role": message.role, "kind": message.kind, "content": content}


async def copilot_skill(request: web.Request) -> web.Response:
    """Start or continue a conversation; the answer carries the whole conversation.

    The official SDK always sends `directSkillCall` (null when unused) and cannot decode
    trace or status messages, so those are left out for clients that send that member.
    """
    body = await read_json_object(request)
    state = optional_object(body.get("state"), "state")
    client = optional_object(state.get("client"), "state.client")
    cloud = optional_object(client.get("cloudContext"), "state.client.cloudContext")
    is_sdk = "directSkillCall" in body
    direct = optional_object(body.get("directSkillCall"), "directSkillCall")
    skill = optional_string(direct, "skill")
    output = optional_string(direct, "pulumiUpdateOutput") or optional_string(
        direct, "pulumiPreviewOutput"
    )
    console_url = public_url(request)
    reply = await request.app[BACKENDS].copilot.Chat(
        copilot_pb2.ChatRequest(
            query=optional_string(body, "query"),
            organization=optional_string(cloud, "orgId"),
            url=optional_string(cloud, "url"),
            conversation_id=optional_string(body, "conversationId"),
            visible_organizations=[m.organization for m in request[PRINCIPAL].memberships],
            console_url=console_url,
            client="sdk" if is_sdk else "api",
            direct_skill=skill,
            direct_output=output,
            token=request[TOKEN],
        ),
        **call_options(request),
    )
    messages = [
        _message(message) for message in reply.messages if not is_sdk or message.kind in SDK_KINDS
    ]
    return json_response({"conversationId": reply.conversation_id, "messages": messages})
