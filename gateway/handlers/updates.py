"""Update routes: protocol doc §3.4 (lifecycle), §4 (persistence), §3.2.9–3.2.12, §7.

Calls made for a running update carry `Authorization: update-token <lease>`; the updates
service checks it, the update id and the path's stack against the update's row before
writing anything.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, UPDATE_TOKEN, call_options, stack_ref
from gateway.convert import (
    INT32_BITS,
    bool_query,
    int_query,
    json_response,
    no_content,
    ok_without_body,
    optional_int,
    optional_object,
    optional_string,
    parse_object,
    path_version,
    read_body,
    read_json_object,
    read_optional_json_object,
    string_map,
)
from gateway.errors import bad_request
from gateway.views import import_request, updates_json
from protos.cairn.v1 import stacks_pb2, updates_pb2


def _lease(request: web.Request) -> updates_pb2.LeaseRef:
    """The update, lease and stack path of an update-token call: the updates service refuses
    the call unless the update was created under that very path and the lease is its own."""
    return updates_pb2.LeaseRef(
        update_id=request.match_info["updateID"],
        token=request[UPDATE_TOKEN],
        stack=stack_ref(request),
    )


# -- lifecycle -------------------------------------------------------------------------------


async def create_update(request: web.Request) -> web.Response:
    """`POST S/{update|preview|refresh|destroy}` with an UpdateProgramRequest (§3.4.1)."""
    raw = await read_body(request)
    body = parse_object(raw)
    options = optional_object(body.get("options"), "options")
    dry_run = options.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise bad_request("'options.dryRun' must be a boolean")
    config = optional_object(body.get("config"), "config")
    for key, value in config.items():
        if not isinstance(value, dict):
            raise bad_request(f"config value '{key}' must be an object")
    metadata = optional_object(body.get("metadata"), "metadata")
    environment = string_map(metadata.get("environment"), "metadata.environment")
    reply = await request.app[BACKENDS].updates.CreateUpdate(
        updates_pb2.CreateUpdateRequest(
            stack_id=request[STACK].id,
            kind=request.match_info["updateKind"],
            program=raw,
            is_dry_run=dry_run,
            message=optional_string(metadata, "message"),
            environment=environment,
            config=orjson.dumps(config),
            stack=request[STACK].ref,
        ),
        **call_options(request),
    )
    return json_response(
        {
            "updateID": reply.update_id,
            "requiredPolicies": [],
            "messages": [],
            "aiSettings": {"copilotIsEnabled": False},
        }
    )


async def start_update(request: web.Request) -> web.Response:
    """`POST U` (§3.4.2): the lease token, the version, and journaling if the CLI speaks it."""
    body = await read_optional_json_object(request)
    tags = string_map(body.get("tags"), "tags")
    journal_version = optional_int(body, "journalVersion", bits=INT32_BITS)
    # The stacks service starts the update and retags the stack when the tags differ.
    started = await request.app[BACKENDS].stacks.StartStackUpdate(
        stacks_pb2.StartStackUpdateRequest(
            ref=request[STACK].ref,
            update_id=request.match_info["updateID"],
            journal_version=journal_version,
            tags=tags,
        ),
        **call_options(request),
    )
    payload: dict[str, Any] = {
        "version": started.version,
        "token": started.token,
        "tokenExpiration": started.token_expiration,
    }
    if started.journal_version:
        payload["journalVersion"] = started.journal_version
    return json_response(payload)


async def renew_update_lease(request: web.Request) -> web.Response:
    """`POST U/renew_lease`: the same token comes back, valid for `duration` more seconds."""
    body = await read_optional_json_object(request)
    reply = await request.app[BACKENDS].updates.RenewLease(
        updates_pb2.RenewLeaseRequest(
            lease=_lease(request), duration_seconds=optional_int(body, "duration", bits=INT32_BITS)
        ),
        **call_options(request),
    )
    return json_response({"token": reply.token, "tokenExpiration": reply.token_expiration})


async def complete_update(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    status = optional_string(body, "status")
    if not status:
        raise bad_request("'status' is required")
    await request.app[BACKENDS].updates.CompleteUpdate(
        updates_pb2.CompleteUpdateRequest(lease=_lease(request), status=status),
        **call_options(request),
    )
    return no_content()


async def cancel_update(request: web.Request) -> web.Response:
    """`POST U/cancel` with the API token (`pulumi cancel`, §2.8)."""
    await request.app[BACKENDS].updates.CancelUpdate(
        updates_pb2.CancelUpdateRequest(
            stack_id=request[STACK].id, update_id=request.match_info["updateID"]
        ),
        **call_options(request),
    )
    return no_content()


# -- persistence -----------------------------------------------------------------------------


async def patch_update_checkpoint(request: web.Request) -> web.Response:
    """Full checkpoint: `{isInvalid, version, features, deployment}` (§4.3, last part).

    The checkpoint routes forward the body's bytes: the updates service decodes and checks
    them once (a body that is not JSON is its 400 too)."""
    await request.app[BACKENDS].updates.PatchCheckpoint(
        updates_pb2.PatchCheckpointRequest(lease=_lease(request), body=await read_body(request)),
        **call_options(request),
    )
    return no_content()


async def patch_update_checkpoint_verbatim(request: web.Request) -> web.Response:
    """`{version, untypedDeployment, sequenceNumber}`: stored exactly as sent."""
    await request.app[BACKENDS].updates.PatchCheckpointVerbatim(
        updates_pb2.PatchCheckpointVerbatimRequest(
            lease=_lease(request), body=await read_body(request)
        ),
        **call_options(request),
    )
    return no_content()


async def patch_update_checkpoint_delta(request: web.Request) -> web.Response:
    """`{checkpointHash, deploymentDelta, sequenceNumber}`: edits of the last text."""
    await request.app[BACKENDS].updates.PatchCheckpointDelta(
        updates_pb2.PatchCheckpointDeltaRequest(
            lease=_lease(request), body=await read_body(request)
        ),
        **call_options(request),
    )
    return no_content()


async def patch_update_journal_entries(request: web.Request) -> web.Response:
    """`{entries: [...]}` (§3.4.5): forwarded as received, decoded by the updates service."""
    await request.app[BACKENDS].updates.AppendJournalEntries(
        updates_pb2.AppendJournalEntriesRequest(
            lease=_lease(request), body=await read_body(request)
        ),
        **call_options(request),
    )
    return no_content()


async def post_engine_event_batch(request: web.Request) -> web.Response:
    """`{events: [...]}` (§3.4.7): forwarded as received, decoded by the updates service.
    200 with no body, as seed 000 documents (the CLI takes any 2xx)."""
    await request.app[BACKENDS].updates.RecordEngineEvents(
        updates_pb2.RecordEngineEventsRequest(lease=_lease(request), body=await read_body(request)),
        **call_options(request),
    )
    return ok_without_body()


async def post_engine_event(request: web.Request) -> web.Response:
    """Legacy single-event upload (§3.4.10); 200 like the batch."""
    await request.app[BACKENDS].updates.RecordEngineEvents(
        updates_pb2.RecordEngineEventsRequest(
            lease=_lease(request), event_body=await read_body(request)
        ),
        **call_options(request),
    )
    return ok_without_body()


async def append_update_log_entry(request: web.Request) -> web.Response:
    """Legacy pre-rendered log lines; kept as the update's status events."""
    body = await read_json_object(request)
    kind = optional_string(body, "kind") or "stdout"
    await request.app[BACKENDS].updates.AppendLogEntry(
        updates_pb2.AppendLogEntryRequest(
            lease=_lease(request),
            kind=kind[:16],
            fields=orjson.dumps(optional_object(body.get("fields"), "fields")),
        ),
        **call_options(request),
    )
    return no_content()


# -- reads -----------------------------------------------------------------------------------


async def get_update_status(request: web.Request) -> web.Response:
    """`GET U[?continuationToken=]` (§3.4.9); the token is omitted once everything was read."""
    reply = await request.app[BACKENDS].updates.GetUpdateStatus(
        updates_pb2.GetUpdateStatusRequest(
            stack_id=request[STACK].id,
            update_id=request.match_info["updateID"],
            continuation_token=request.query.get("continuationToken", ""),
        ),
        **call_options(request),
    )
    payload: dict[str, Any] = {
        "status": reply.status,
        "events": [
            {"index": e.index, "kind": e.kind, "fields": orjson.Fragment(e.fields)}
            for e in reply.events
        ],
    }
    if reply.continuation_token:
        payload["continuationToken"] = reply.continuation_token
    return json_response(payload)


async def get_update_events(request: web.Request) -> web.Response:
    """`GET U/events`: engine events in sequence order; the SDK needs a string token and
    each event's `type`. `type` (repeated or comma-separated) and `urn` filter (seed 000);
    every stored event is activated, so `include_non_activated` only needs to be a boolean."""
    bool_query(request, "include_non_activated")
    types = [
        part.strip()
        for value in request.query.getall("type", [])
        for part in value.split(",")
        if part.strip()
    ]
    reply = await request.app[BACKENDS].updates.ListEngineEvents(
        updates_pb2.ListEngineEventsRequest(
            stack_id=request[STACK].id,
            update_id=request.match_info["updateID"],
            continuation_token=request.query.get("continuationToken", ""),
            page_size=int_query(request, "pageSize", 0),
            types=types,
            urn=request.query.get("urn", ""),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "events": [_typed_event(event) for event in reply.events],
            "continuationToken": reply.continuation_token,
        }
    )


def _typed_event(event: updates_pb2.EngineEvent) -> dict[str, Any]:
    """The stored event plus `type`, the name of its payload member (`stdoutEvent`, ...): the
    SDK's EngineEvent requires it so that `event[event.type]` is the payload."""
    stored: dict[str, Any] = orjson.loads(event.data)
    return {**stored, "type": event.kind}


async def get_stack_updates(request: web.Request) -> web.Response:
    """`GET S/updates?pageSize=&page=` (§2.11): newest first, previews excluded."""
    page_size = int_query(request, "pageSize", 0)
    page = int_query(request, "page", 0)
    reply = await request.app[BACKENDS].updates.ListUpdates(
        updates_pb2.ListUpdatesRequest(stack_id=request[STACK].id, page_size=page_size, page=page),
        **call_options(request),
    )
    return json_response(
        {
            "updates": await updates_json(request, reply.updates),
            "itemsPerPage": page_size or len(reply.updates),
            "total": reply.total,
        }
    )


async def _get_update(request: web.Request, version: int) -> web.Response:
    info = await request.app[BACKENDS].updates.GetUpdate(
        updates_pb2.GetUpdateRequest(stack_id=request[STACK].id, version=version),
        **call_options(request),
    )
    (shown,) = await updates_json(request, [info])
    return json_response(shown)


async def get_latest_stack_update(request: web.Request) -> web.Response:
    """`GET S/updates/latest` (§3.2.11): 404 when the stack was never updated."""
    return await _get_update(request, 0)


async def get_stack_update(request: web.Request) -> web.Response:
    return await _get_update(request, path_version(request))


async def _export(request: web.Request, version: int) -> web.Response:
    reply = await request.app[BACKENDS].updates.ExportDeployment(
        updates_pb2.ExportDeploymentRequest(stack_id=request[STACK].id, version=version),
        **call_options(request),
    )
    return web.Response(body=reply.untyped_deployment, content_type="application/json")


async def export_stack(request: web.Request) -> web.Response:
    """`GET S/export`: the current deployment (a running update's latest state)."""
    return await _export(request, 0)


async def export_stack_at_version(request: web.Request) -> web.Response:
    return await _export(request, path_version(request))


async def import_stack(request: web.Request) -> web.Response:
    """`POST S/import` (§2.10): recorded as a finished update of kind import."""
    raw = await read_body(request)
    parse_object(raw)
    reply = await request.app[BACKENDS].updates.ImportDeployment(
        import_request(request[STACK], raw), **call_options(request)
    )
    return json_response({"updateId": reply.update_id})
