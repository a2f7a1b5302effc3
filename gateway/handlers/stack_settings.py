"""Stack settings routes of seed 000: metadata, notification settings, ownership, transfer,
annotations and the starter workflow."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, call_options, public_url, stack_ref
from gateway.convert import (
    int_query,
    json_response,
    no_content,
    optional_bool,
    optional_string,
    read_body,
    read_json_object,
    required_bool,
    required_string,
)
from gateway.errors import ApiError, bad_request
from protos.cairn.v1 import identity_pb2, stacks_pb2
from services.common import limits

# Annotation versions are stored as 32-bit integers.
MAX_ANNOTATION_VERSION = limits.MAX_ANNOTATION_VERSION


async def _members(request: web.Request, organization: str) -> dict[str, identity_pb2.User]:
    reply = await request.app[BACKENDS].identity.ListMembers(
        identity_pb2.ListMembersRequest(organization=organization), **call_options(request)
    )
    return {member.user.login: member.user for member in reply.members}


def user_info(login: str, users: dict[str, identity_pb2.User]) -> dict[str, Any]:
    """Pulumi's `UserInfo`; e-mail addresses stay out, as on Pulumi's non-admin routes."""
    user = users.get(login)
    name = user.name if user is not None and user.name else login
    return {"name": name, "githubLogin": login, "avatarUrl": ""}


async def _user_infos(
    request: web.Request, organization: str, logins: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Display details of some users, from the organization's member list (login if gone)."""
    users = await _members(request, organization)
    return {login: user_info(login, users) for login in logins}


async def _metadata_json(request: web.Request, stack: stacks_pb2.Stack) -> dict[str, Any]:
    """`StackMetadata`: the SDK requires `id` besides the seed's fields."""
    owners = await _user_infos(request, stack.ref.organization, [stack.owner_login])
    return {
        "id": stack.id,
        "orgName": stack.ref.organization,
        "projectName": stack.ref.project,
        "stackName": stack.ref.stack,
        "ownedBy": owners[stack.owner_login],
        "notificationSettings": {
            "notifyUpdateFailure": stack.notifications.notify_update_failure,
            "notifyUpdateSuccess": stack.notifications.notify_update_success,
        },
    }


async def get_stack_metadata(request: web.Request) -> web.Response:
    """`GET S/metadata`."""
    return json_response(await _metadata_json(request, request[STACK]))


async def update_stack_notification_settings(request: web.Request) -> web.Response:
    """`PATCH S/notifications/settings`: both switches are required; answers the metadata."""
    body = await read_json_object(request)
    settings = stacks_pb2.NotificationSettings(
        notify_update_failure=required_bool(body, "notifyUpdateFailure"),
        notify_update_success=required_bool(body, "notifyUpdateSuccess"),
    )
    stack = await request.app[BACKENDS].stacks.UpdateNotificationSettings(
        stacks_pb2.UpdateNotificationSettingsRequest(ref=stack_ref(request), settings=settings),
        **call_options(request),
    )
    return json_response(await _metadata_json(request, stack))


async def reassign_stack_ownership(request: web.Request) -> web.Response:
    """`POST S/ownership`: the body is the new owner's `UserInfo`; answers the previous one."""
    body = await read_json_object(request)
    new_owner = required_string(body, "githubLogin")
    reply = await request.app[BACKENDS].stacks.ReassignStackOwner(
        stacks_pb2.ReassignStackOwnerRequest(ref=stack_ref(request), new_owner_login=new_owner),
        **call_options(request),
    )
    previous = reply.previous_owner_login
    owners = await _user_infos(request, reply.stack.ref.organization, [previous])
    return json_response(owners[previous])


def _same_as_path(body: dict[str, Any], field: str, path_value: str) -> None:
    """The body may repeat the stack's names; another stack than the path's is refused."""
    value = optional_string(body, field)
    if value and value != path_value:
        raise bad_request(f"'{field}' must name the stack in the path ('{path_value}')")


async def transfer_stack(request: web.Request) -> web.Response:
    """`POST S/transfer`: the caller must administer the destination organization too."""
    body = await read_json_object(request)
    destination = required_string(body, "toOrg")
    info = request.match_info
    _same_as_path(body, "fromOrg", info["orgName"])
    _same_as_path(body, "projectName", info["projectName"])
    _same_as_path(body, "stackName", info["stackName"])
    # The stacks service refuses a caller who does not administer the destination.
    await request.app[BACKENDS].stacks.TransferStack(
        stacks_pb2.TransferStackRequest(
            ref=stack_ref(request), destination_organization=destination
        ),
        **call_options(request),
    )
    return no_content()


def _version_query(request: web.Request) -> int | None:
    if request.query.get("version", "") == "":
        return None
    value = int_query(request, "version", 0)
    if not 0 <= value <= MAX_ANNOTATION_VERSION:
        raise ApiError(
            400, "Bad Request: invalid query parameter 'version': expected a positive integer"
        )
    return value


def _annotation_json(annotation: stacks_pb2.Annotation) -> bytes:
    """The stored JSON under `content`, embedded exactly as the client sent it."""
    return orjson.dumps(
        {
            "kind": annotation.kind,
            "source": annotation.source,
            "version": annotation.version,
            "modifiedBy": annotation.modified_by,
            "modified": annotation.modified_at,
            "content": orjson.Fragment(annotation.content),
        }
    )


async def get_stacks_annotation(request: web.Request) -> web.Response:
    """`GET S/annotations/{kind}`: the newest version, optionally by source and version."""
    reply = await request.app[BACKENDS].stacks.GetAnnotation(
        stacks_pb2.GetAnnotationRequest(
            ref=stack_ref(request),
            kind=request.match_info["kind"],
            source=request.query.get("source", ""),
            version=_version_query(request) or 0,
        ),
        **call_options(request),
    )
    return web.Response(body=_annotation_json(reply), content_type="application/json")


async def upsert_stacks_annotations(request: web.Request) -> web.Response:
    """`PATCH S/annotations/{kind}`: any JSON value; `version` is the one last read (409 if
    the annotation has moved on since)."""
    content = await read_body(request)
    expected = _version_query(request)
    await request.app[BACKENDS].stacks.UpsertAnnotation(
        stacks_pb2.UpsertAnnotationRequest(
            ref=stack_ref(request),
            kind=request.match_info["kind"],
            source=request.query.get("source", ""),
            content=content,
            expected_version=expected,
        ),
        **call_options(request),
    )
    return no_content()


async def get_stack_starter_workflow(request: web.Request) -> web.Response:
    """`POST S/workflow`: a pipeline file logging in to this backend."""
    body = await read_json_object(request)
    reply = await request.app[BACKENDS].stacks.GetStarterWorkflow(
        stacks_pb2.GetStarterWorkflowRequest(
            ref=stack_ref(request),
            ci_system=optional_string(body, "ciSystem"),
            working_directory=optional_string(body, "workingDirectory"),
            enable_path_filters=optional_bool(body, "enablePathFilters"),
            backend_url=public_url(request),
        ),
        **call_options(request),
    )
    return json_response({"content": reply.content})
