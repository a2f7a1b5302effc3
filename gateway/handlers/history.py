"""History views: seed 000's resources, update summaries, timelines, previews, activity and
downstream references, and the console aggregates built on them.

Every view is computed by the updates service from stored versions and engine events (the
stacks service resolves downstream references to stacks); the gateway adds the stack's names
and tags.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, call_options
from gateway.convert import bool_query, int_query, json_response, path_version
from gateway.errors import bad_request
from gateway.views import updates_json
from protos.cairn.v1 import common_pb2, stacks_pb2, updates_pb2
from services.common.stack_references import resolve_reference

# Checkpoints carry no region; the SDK requires the field.
REGION = ""


def _paging(request: web.Request) -> tuple[int, int]:
    """`page` and `pageSize`; the updates service checks their meaning."""
    page = int_query(request, "page", 0)
    page_size = int_query(request, "pageSize", 0)
    return page, page_size


def _urn(request: web.Request) -> str:
    urn = request.match_info["urn"]
    if not urn.startswith("urn:pulumi:"):
        raise bad_request(f"'{urn}' is not a resource URN")
    return urn


# -- resources ---------------------------------------------------------------------------------


async def _resources(
    request: web.Request, version: int, urn: str = ""
) -> updates_pb2.ListResourcesResponse:
    reply: updates_pb2.ListResourcesResponse = await request.app[BACKENDS].updates.ListResources(
        updates_pb2.ListResourcesRequest(stack_id=request[STACK].id, version=version, urn=urn),
        **call_options(request),
    )
    return reply


def _resources_json(reply: updates_pb2.ListResourcesResponse) -> dict[str, Any]:
    return {
        "resources": [{"resource": orjson.Fragment(data)} for data in reply.resources],
        "region": REGION,
        "version": reply.version,
    }


def _resource_json(reply: updates_pb2.ListResourcesResponse) -> dict[str, Any]:
    (data,) = reply.resources
    return {
        "resource": {"resource": orjson.Fragment(data)},
        "region": REGION,
        "version": reply.version,
    }


async def get_latest_stack_resources(request: web.Request) -> web.Response:
    """`GET S/resources/latest`: the newest version's resources (none before the first)."""
    return json_response(_resources_json(await _resources(request, 0)))


async def get_stack_resources(request: web.Request) -> web.Response:
    """`GET S/resources/{version}`: 404 for a version the stack never had."""
    return json_response(_resources_json(await _resources(request, path_version(request))))


async def get_latest_stack_resource(request: web.Request) -> web.Response:
    """`GET S/resources/latest/{urn}` (the URN path-encoded)."""
    return json_response(_resource_json(await _resources(request, 0, _urn(request))))


async def get_stack_resource(request: web.Request) -> web.Response:
    """`GET S/resources/{version}/{urn}`: 404 for an unknown version or URN."""
    reply = await _resources(request, path_version(request), _urn(request))
    return json_response(_resource_json(reply))


async def get_stack_resource_count(request: web.Request) -> web.Response:
    """`GET S/resources/count`: the newest stored version and how many resources it has."""
    reply = await request.app[BACKENDS].updates.ListResources(
        updates_pb2.ListResourcesRequest(stack_id=request[STACK].id, count_only=True),
        **call_options(request),
    )
    return json_response({"resourceCount": reply.resource_count, "version": reply.version})


# -- updates and previews ----------------------------------------------------------------------


def _summary_json(info: updates_pb2.UpdateInfo) -> dict[str, Any]:
    """UpdateSummary, plus the kind and change counts the seed's prose mentions."""
    return {
        "result": info.result,
        "startTime": info.start_time,
        "endTime": info.end_time,
        "resourceCount": info.resource_count,
        "kind": info.kind,
        "resourceChanges": dict(info.resource_changes),
    }


async def get_stack_update_summary(request: web.Request) -> web.Response:
    """`GET S/updates/{version}/summary`."""
    info = await request.app[BACKENDS].updates.GetUpdate(
        updates_pb2.GetUpdateRequest(stack_id=request[STACK].id, version=path_version(request)),
        **call_options(request),
    )
    return json_response(_summary_json(info))


async def _preview(request: web.Request) -> updates_pb2.UpdateInfo:
    info: updates_pb2.UpdateInfo = await request.app[BACKENDS].updates.GetPreview(
        updates_pb2.GetPreviewRequest(
            stack_id=request[STACK].id, update_id=request.match_info["updateID"]
        ),
        **call_options(request),
    )
    return info


async def get_stack_preview(request: web.Request) -> web.Response:
    """`GET S/previews/{updateID}`: 404 unless the id names a preview of this stack."""
    (shown,) = await updates_json(request, [await _preview(request)])
    return json_response(shown)


async def get_stack_preview_summary(request: web.Request) -> web.Response:
    """`GET S/previews/{updateID}/summary`: the resource count the preview's changes leave."""
    return json_response(_summary_json(await _preview(request)))


async def get_stack_previews(request: web.Request) -> web.Response:
    """`GET S/updates/{version}/previews?asc=&page=&pageSize=`: page 0 is every preview."""
    page, page_size = _paging(request)
    reply = await request.app[BACKENDS].updates.ListPreviews(
        updates_pb2.ListPreviewsRequest(
            stack_id=request[STACK].id,
            version=path_version(request),
            page=page,
            page_size=page_size,
            ascending=bool_query(request, "asc"),
        ),
        **call_options(request),
    )
    return json_response(
        {
            "updates": await updates_json(request, reply.updates),
            "itemsPerPage": reply.items_per_page,
            "total": reply.total,
        }
    )


async def get_stack_activity(request: web.Request) -> web.Response:
    """`GET S/activity?page=&pageSize=`: updates, imports and renames, newest first."""
    page, page_size = _paging(request)
    reply = await request.app[BACKENDS].updates.ListActivity(
        updates_pb2.ListActivityRequest(stack_id=request[STACK].id, page=page, page_size=page_size),
        **call_options(request),
    )
    return json_response(
        {
            "activity": [{"update": shown} for shown in await updates_json(request, reply.updates)],
            "itemsPerPage": reply.items_per_page,
            "total": reply.total,
        }
    )


async def _timeline(request: web.Request, version: int) -> web.Response:
    reply = await request.app[BACKENDS].updates.GetUpdateTimeline(
        updates_pb2.GetUpdateTimelineRequest(stack_id=request[STACK].id, version=version),
        **call_options(request),
    )
    shown = await updates_json(request, [reply.update, *reply.previews, *reply.collated_previews])
    update = shown[0]
    previews = shown[1 : 1 + len(reply.previews)]
    collated = shown[1 + len(reply.previews) :]
    # Seed 000: the previews of the update's group of work, then the update, in the order they
    # ran (empty when no preview could be associated with it); the other previews apart.
    return json_response(
        {
            "update": update,
            "collatedUpdateEvents": [*collated, update] if collated else [],
            "previews": previews,
        }
    )


async def get_update_timeline(request: web.Request) -> web.Response:
    """`GET S/updates/{version}/timeline`."""
    return await _timeline(request, path_version(request))


async def get_latest_update_timeline(request: web.Request) -> web.Response:
    """`GET S/updates/latest/timeline`: 404 before the first update."""
    return await _timeline(request, 0)


# -- stack references --------------------------------------------------------------------------


def _reference_json(stack: stacks_pb2.Stack, version: int) -> dict[str, Any]:
    return {
        "organization": stack.ref.organization,
        "routingProject": stack.ref.project,
        "name": stack.ref.stack,
        "version": version,
    }


async def list_downstream_stack_references(request: web.Request) -> web.Response:
    """`GET S/downstreamreferences`: stacks of the organization whose newest state reads this
    stack through a StackReference, each with that state's version."""
    reply = await request.app[BACKENDS].stacks.ListDownstreamReferences(
        stacks_pb2.ListDownstreamReferencesRequest(ref=request[STACK].ref),
        **call_options(request),
    )
    return json_response(
        {
            "referencedStacks": [
                _reference_json(stacks_pb2.Stack(ref=entry.ref), entry.version)
                for entry in reply.references
            ]
        }
    )


# -- console -----------------------------------------------------------------------------------


async def get_stack_overview(request: web.Request) -> web.Response:
    """`GET /api/console/stacks/{org}/{project}/{stack}/overview`: tags, the stacks this one
    references (with the version of this stack's state that reads them), its resources."""
    stack = request[STACK]
    references = await request.app[BACKENDS].updates.ListStackReferences(
        updates_pb2.ListStackReferencesRequest(stack_id=stack.id), **call_options(request)
    )
    referenced = []
    for record in references.references:
        resolved = resolve_reference(record.name, stack.ref.organization, stack.ref.project)
        if resolved is None:
            continue
        organization, project, name = resolved
        target = stacks_pb2.Stack(
            ref=common_pb2.StackRef(organization=organization, project=project, stack=name)
        )
        referenced.append(_reference_json(target, record.version))
    resources = await _resources(request, 0)
    return json_response(
        {
            "tags": dict(stack.tags),
            "referencedStacks": referenced,
            "resources": _resources_json(resources),
        }
    )


async def _console_summary(request: web.Request, update_id: str) -> web.Response:
    stack = request[STACK]
    reply = await request.app[BACKENDS].updates.SummariseUpdate(
        updates_pb2.SummariseUpdateRequest(
            stack_id=stack.id,
            update_id=update_id,
            organization=stack.ref.organization,
            project=stack.ref.project,
            stack=stack.ref.stack,
        ),
        **call_options(request),
    )
    return json_response({"summary": reply.text})


async def update_summary(request: web.Request) -> web.Response:
    """`GET /api/console/stacks/{org}/{project}/{stack}/updates/{updateID}/summary`."""
    return await _console_summary(request, request.match_info["updateID"])


async def update_summary_handler_latest(request: web.Request) -> web.Response:
    """`GET /api/console/stacks/{org}/{project}/{stack}/updates/latest/summary`."""
    return await _console_summary(request, "")
