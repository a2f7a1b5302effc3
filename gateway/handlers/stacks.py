"""Stack routes: seed 001 and protocol doc §2.2, §2.12–2.16, §3.2.1–3.2.7."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, PRINCIPAL, STACK, call_options, stack_ref
from gateway.convert import (
    bool_query,
    int_query,
    json_response,
    no_content,
    optional_string,
    read_body,
    read_json_object,
    read_optional_json_object,
    string_map,
)
from gateway.errors import ApiError, bad_request
from gateway.views import readable_stacks
from protos.cairn.v1 import common_pb2, stacks_pb2, updates_pb2

MAX_PAGE_SIZE = 1000


async def stack_states(
    request: web.Request, stacks: list[stacks_pb2.Stack]
) -> dict[str, updates_pb2.StackState]:
    """Version, active update and resource count of each stack, from the updates service."""
    if not stacks:
        return {}
    reply = await request.app[BACKENDS].updates.GetStackStates(
        updates_pb2.GetStackStatesRequest(stack_ids=[stack.id for stack in stacks]),
        **call_options(request),
    )
    return {state.stack_id: state for state in reply.states}


def stack_json(
    stack: stacks_pb2.Stack, state: updates_pb2.StackState | None = None
) -> dict[str, Any]:
    """`GET S`: names, tags, version and activeUpdate; `config` only for ESC-backed stacks."""
    state = state or updates_pb2.StackState()
    payload: dict[str, Any] = {
        "id": stack.id,
        "orgName": stack.ref.organization,
        "projectName": stack.ref.project,
        "stackName": stack.ref.stack,
        "activeUpdate": state.active_update,
        "tags": dict(stack.tags),
        "version": state.version,
    }
    if state.active_update:
        payload["currentOperation"] = {
            "kind": state.active_kind,
            "author": state.active_author,
            "started": state.active_started,
        }
    if stack.HasField("config"):
        payload["config"] = {
            "environment": stack.config.environment,
            "secretsProvider": stack.config.secrets_provider,
            "encryptedKey": stack.config.encrypted_key,
            "encryptionSalt": stack.config.encryption_salt,
        }
    return payload


async def create_stack(request: web.Request) -> web.Response:
    """`POST /api/stacks/{org}/{project}`; the project appears on demand, and so does the
    caller's own organization (CAIRN_ALLOW_ORGANIZATION_AUTOCREATE says which ones may).

    An initial `state` (passphrase and cloud secrets providers, §2.2) becomes version 1. The
    body goes to the stacks service as received: it decodes it once.
    """
    info = request.match_info
    stack = await request.app[BACKENDS].stacks.CreateStack(
        stacks_pb2.CreateStackRequest(
            ref=common_pb2.StackRef(organization=info["orgName"], project=info["projectName"]),
            body=await read_body(request),
        ),
        **call_options(request),
    )
    states = await stack_states(request, [stack])
    payload = stack_json(stack, states.get(stack.id))
    payload["messages"] = []
    return json_response(payload)


async def project_exists(request: web.Request) -> web.Response:
    """`HEAD /api/stacks/{org}/{project}`: 200 while any stack is in the project, else 404."""
    info = request.match_info
    reply = await request.app[BACKENDS].stacks.ProjectExists(
        stacks_pb2.ProjectExistsRequest(organization=info["orgName"], project=info["projectName"]),
        **call_options(request),
    )
    if not reply.exists:
        raise ApiError(404, f"Not Found: project '{info['orgName']}/{info['projectName']}'")
    return web.Response(status=200)


async def get_stack(request: web.Request) -> web.Response:
    stack = request[STACK]
    states = await stack_states(request, [stack])
    return json_response(stack_json(stack, states.get(stack.id)))


async def delete_stack(request: web.Request) -> web.Response:
    force = bool_query(request, "force")
    await request.app[BACKENDS].stacks.DeleteStack(
        stacks_pb2.DeleteStackRequest(ref=stack_ref(request), force=force),
        **call_options(request),
    )
    return no_content()


def _rename_target(request: web.Request, body: dict[str, Any]) -> tuple[str, str]:
    """Accept the CLI's `{newName, newProject}` and seed 001's qualified `org/project/stack`."""
    new_name = optional_string(body, "newName")
    new_project = optional_string(body, "newProject")
    if "/" in new_name:
        parts = new_name.split("/")
        if len(parts) == 3:
            org, project, name = parts
            if org != request.match_info["orgName"]:
                raise bad_request(
                    "a stack cannot be renamed into another organization; transfer it instead"
                )
        elif len(parts) == 2:
            project, name = parts
        else:
            raise bad_request(f"invalid fully qualified name '{new_name}'")
        if new_project and new_project != project:
            raise bad_request("'newProject' disagrees with the project in 'newName'")
        return project, name
    return new_project, new_name


async def rename_stack(request: web.Request) -> web.Response:
    """Seed 000 and the SDK get 200 `{updateId}` (the rename's history entry); seed 001's
    fully qualified form gets its 204. The CLI reads neither body."""
    body = await read_json_object(request)
    new_project, new_name = _rename_target(request, body)
    reply = await request.app[BACKENDS].stacks.RenameStack(
        stacks_pb2.RenameStackRequest(
            ref=stack_ref(request), new_project=new_project, new_name=new_name
        ),
        **call_options(request),
    )
    if "/" in optional_string(body, "newName"):
        return no_content()
    return json_response({"updateId": reply.update_id})


async def update_stack_tags(request: web.Request) -> web.Response:
    """The CLI and SDK send the bare map; seed 001 wraps it as `{"tags": {...}}`."""
    body = await read_json_object(request)
    wrapped = body.get("tags")
    tags = string_map(wrapped, "tags") if len(body) == 1 and isinstance(wrapped, dict) else None
    if tags is None:
        tags = string_map(body, "tags")
    await request.app[BACKENDS].stacks.ReplaceStackTags(
        stacks_pb2.ReplaceStackTagsRequest(ref=stack_ref(request), tags=tags),
        **call_options(request),
    )
    return no_content()


def summary_json(
    stack: stacks_pb2.Stack, state: updates_pb2.StackState | None = None
) -> dict[str, Any]:
    """One `/api/user/stacks` entry: the SDK requires `id`; the CLI requires names."""
    state = state or updates_pb2.StackState()
    payload: dict[str, Any] = {
        "id": stack.id,
        "orgName": stack.ref.organization,
        "projectName": stack.ref.project,
        "stackName": stack.ref.stack,
        "tags": dict(stack.tags),
        "version": state.version,
        "activeUpdate": state.active_update,
        "resourceCount": state.resource_count,
    }
    if state.last_update:
        # Unix seconds, as the CLI and the SDK read it.
        payload["lastUpdate"] = state.last_update
    return payload


async def list_user_stacks(request: web.Request) -> web.Response:
    """`GET /api/user/stacks`; the continuation token is omitted on the last page.

    Pages are filtered by what the caller may read, so one may hold fewer stacks than asked
    (even none) while a continuation token says more follow.
    """
    query = request.query
    page_size = int_query(request, "maxResults", int_query(request, "pageSize", 0))
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise ApiError(
            400, f"Bad Request: invalid query parameter 'maxResults': use 1..{MAX_PAGE_SIZE}"
        )
    visible = [m.organization for m in request[PRINCIPAL].memberships]
    tag_value = query.get("tagValue")
    reply = await request.app[BACKENDS].stacks.ListStacks(
        stacks_pb2.ListStacksRequest(
            visible_organizations=visible,
            organization=query.get("organization", ""),
            project=query.get("project", ""),
            tag_name=query.get("tagName", ""),
            tag_value=tag_value,
            continuation_token=query.get("continuationToken", ""),
            page_size=page_size,
        ),
        **call_options(request),
    )
    stacks = await readable_stacks(request, list(reply.stacks))
    states = await stack_states(request, stacks)
    payload: dict[str, Any] = {
        "stacks": [summary_json(stack, states.get(stack.id)) for stack in stacks]
    }
    if reply.continuation_token:
        payload["continuationToken"] = reply.continuation_token
    return json_response(payload)


# -- deleted stacks ----------------------------------------------------------------------------


def _last_update_json(updates: updates_pb2.ListUpdatesResponse) -> dict[str, Any]:
    """UpdateSummary of a stack's newest update (not-started when it never had one)."""
    if not updates.updates:
        return {"result": "not-started", "startTime": 0, "endTime": 0, "resourceCount": 0}
    newest = updates.updates[0]
    return {
        "result": newest.result,
        "startTime": newest.start_time,
        "endTime": newest.end_time,
        "resourceCount": newest.resource_count,
    }


async def list_deleted_stacks(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/restore-stack`: deleted stacks still inside the restore
    window, with the version and last update their kept history holds."""
    backends = request.app[BACKENDS]
    reply = await backends.stacks.ListDeletedStacks(
        stacks_pb2.ListDeletedStacksRequest(organization=request.match_info["orgName"]),
        **call_options(request),
    )
    states: dict[str, updates_pb2.StackState] = {}
    if reply.stacks:
        found = await backends.updates.GetStackStates(
            updates_pb2.GetStackStatesRequest(stack_ids=[stack.id for stack in reply.stacks]),
            **call_options(request),
        )
        states = {state.stack_id: state for state in found.states}
    deleted = []
    for stack in reply.stacks:
        updates = await backends.updates.ListUpdates(
            updates_pb2.ListUpdatesRequest(stack_id=stack.id, page_size=1, page=1),
            **call_options(request),
        )
        state = states.get(stack.id, updates_pb2.StackState())
        deleted.append(
            {
                "id": stack.id,
                "programId": stack.id,
                "projectName": stack.ref.project,
                "stackName": stack.ref.stack,
                "version": state.version,
                "deletedAt": stack.deleted_at,
                "deletedBy": stack.deleted_by,
                "lastUpdate": _last_update_json(updates),
            }
        )
    return json_response({"deletedStacks": deleted})


async def restore_deleted_stack(request: web.Request) -> web.Response:
    """`POST /api/orgs/{orgName}/restore-stack/{programID}`: the stack comes back with its
    history, under `stackName` (its old name when empty); 409 when a live stack has it."""
    body = await read_optional_json_object(request)
    await request.app[BACKENDS].stacks.RestoreStack(
        stacks_pb2.RestoreStackRequest(
            organization=request.match_info["orgName"],
            stack_id=request.match_info["programID"],
            stack_name=optional_string(body, "stackName"),
        ),
        **call_options(request),
    )
    return no_content()
