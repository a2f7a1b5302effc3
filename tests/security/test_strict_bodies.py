"""Management bodies are strict: a member the operation does not name is a 400 naming it,
and nothing changes; bodies the Pulumi CLI sends stay open, and SDK calls keep working."""

from __future__ import annotations

import inspect
import re
from typing import Any

import orjson
import pytest

from gateway.openapi import build_document
from gateway.routes import ROUTES, ROUTES_BY_OPERATION, Access, request_schema
from gateway.schemas import closed_schema, load_schemas, unknown_member
from tests.gateway.conftest import ADMIN_TOKEN, Cairn

STACK = "/api/stacks/admin/web/dev"
TEAM = "/api/orgs/admin/teams/ops"
GRANT = {"projectName": "web", "stackName": "dev", "permission": 103}
STRICT = sorted(route.operation_id for route in ROUTES if route.is_body_strict)
# Each strict route, on objects the `seeded` fixture makes.
PATHS = {
    "create_organization": ("POST", "/api/orgs"),
    "create_personal_token": ("POST", "/api/user/tokens"),
    "update_organization_settings": ("PATCH", "/api/orgs/admin"),
    "add_organization_member": ("POST", "/api/orgs/admin/members/dana"),
    "update_organization_member": ("PATCH", "/api/orgs/admin/members/dana"),
    "batch_create_org_invite_email": ("POST", "/api/orgs/admin/invites/batch"),
    "create_pulumi_team": ("POST", "/api/orgs/admin/teams/pulumi"),
    "update_team": ("PATCH", TEAM),
    "create_org_token": ("POST", "/api/orgs/admin/tokens"),
    "create_team_token": ("POST", f"{TEAM}/tokens"),
    "update_stack_collaborator": ("PATCH", f"{STACK}/collaborators/dana"),
    "update_team_stack_permissions": ("PATCH", "/api/console/stacks/admin/web/dev/teams/ops"),
    "create_org_agent_pool": ("POST", "/api/orgs/admin/agent-pools"),
    "patch_org_agent_pool": ("PATCH", "/api/orgs/admin/agent-pools/some-pool"),
    "create_user": ("POST", "/api/admin/users"),
    "update_current_user": ("PATCH", "/api/user"),
    "accept_invite_link": ("POST", "/api/invites/accept"),
    "enable_user": ("POST", "/api/admin/users/dana/enable"),
    "create_scheduled_deployment": ("POST", f"{STACK}/deployments/schedules"),
    "update_scheduled_deployment": ("POST", f"{STACK}/deployments/schedules/some-schedule"),
    "create_scheduled_drift_deployment": ("POST", f"{STACK}/deployments/drift/schedules"),
    "update_scheduled_drift_deployment": (
        "POST",
        f"{STACK}/deployments/drift/schedules/some-schedule",
    ),
    "create_scheduled_ttl_deployment": ("POST", f"{STACK}/deployments/ttl/schedules"),
    "update_scheduled_ttl_deployment": ("POST", f"{STACK}/deployments/ttl/schedules/some-schedule"),
    "set_organization_state_retention": ("PUT", "/api/orgs/admin/state-retention"),
    "set_stack_state_retention": ("PUT", f"{STACK}/state-retention"),
}


async def seeded(cairn: Cairn) -> None:
    """A stack admin/web/dev, a team `ops` holding admin on it, and a user dana."""
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    await cairn.new_user("dana")
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "ops"})
    await cairn.json("PATCH", TEAM, 200, body={"addStackPermission": GRANT})


async def team(cairn: Cairn) -> Any:
    return await cairn.json("GET", TEAM)


async def test_a_typo_removes_no_grant(cairn: Cairn) -> None:
    """`{"addPermission": 103}` used to read as an empty change that dropped the grant."""
    await seeded(cairn)
    before = await team(cairn)
    assert before["stacks"] == [GRANT]

    error = await cairn.json("PATCH", TEAM, 400, body={"addPermission": 103})

    assert error == {
        "code": 400,
        "message": "Bad Request: unknown member 'addPermission' in the request body",
    }
    assert await team(cairn) == before


async def test_a_typo_in_a_nested_member_changes_nothing(cairn: Cairn) -> None:
    await seeded(cairn)
    before = await team(cairn)

    error = await cairn.json(
        "PATCH",
        TEAM,
        400,
        body={
            "newDisplayName": "Operations",
            "editStackPermission": {**GRANT, "permision": 101},
        },
    )

    assert "'editStackPermission.permision'" in error["message"]
    assert await team(cairn) == before
    invites = await cairn.json(
        "POST",
        "/api/orgs/admin/invites/batch",
        400,
        body={"invites": [{"email": "dana", "role": "member"}, {"email": "dana", "rol": "x"}]},
    )
    assert "'invites[1].rol'" in invites["message"]
    assert (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"] == []


async def test_a_member_action_that_is_not_a_name_is_a_400(cairn: Cairn) -> None:
    """`{"memberAction": {}}` was a 500."""
    await seeded(cairn)
    before = await team(cairn)

    actions: list[Any] = [{}, [], 3, "evict"]
    for action in actions:
        error = await cairn.json(
            "PATCH", TEAM, 400, body={"memberAction": action, "member": "dana"}
        )
        assert error["message"] == (
            'Bad Request: \'memberAction\' must be one of "add", "remove", "promote", "demote"'
        )

    assert await team(cairn) == before


@pytest.mark.parametrize("operation", STRICT)
async def test_every_strict_route_names_the_unknown_member(cairn: Cairn, operation: str) -> None:
    await seeded(cairn)
    method, path = PATHS[operation]

    response = await cairn.call(method, path, body={"zzUnknown": 1})

    assert response.status == 400, await response.text()
    body = await response.json()
    assert body == {
        "code": 400,
        "message": "Bad Request: unknown member 'zzUnknown' in the request body",
    }


async def test_the_check_follows_authentication(cairn: Cairn) -> None:
    """Without a token the body is never looked at: 401, not 400."""
    response = await cairn.call("PATCH", TEAM, token=None, body={"zzUnknown": 1})
    assert response.status == 401


def test_strict_routes_are_management_routes_the_cli_never_calls() -> None:
    assert set(PATHS) == set(STRICT)
    cli_bodies = {
        "create_stack",
        "update_stack_tags",
        "rename_stack",
        "import_stack",
        "encrypt_value",
        "decrypt_value",
        "batch_encrypt_value",
        "batch_decrypt_value",
        "patch_deployment_settings",
        "replace_deployment_settings",
        "create_api_deployment_handler_v2",
        "create_update",
        "start_update",
    }
    for route in ROUTES:
        if route.access in (Access.UPDATE, Access.AGENT) or route.operation_id in cli_bodies:
            assert not route.is_body_strict, route.operation_id


async def test_cli_bodies_keep_accepting_new_members(cairn: Cairn) -> None:
    created = await cairn.json(
        "POST", "/api/stacks/admin/web", body={"stackName": "dev", "fromTheFuture": True}
    )
    assert created["stackName"] == "dev"
    await cairn.json("PATCH", f"{STACK}/tags", 204, body={"owner": "ops"})


def _sample(type_name: str, models: Any, depth: int = 0) -> Any:
    """A value of an SDK type with every member the SDK can send set."""
    listed = re.fullmatch(r"list\[(.+)\]", type_name)
    if listed:
        return [_sample(listed.group(1), models, depth + 1)]
    mapped = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if mapped:
        return {"key": _sample(mapped.group(1), models, depth + 1)}
    model = getattr(models, type_name, None)
    if model is None or not hasattr(model, "__attribute_map__") or depth > 6:
        return None
    return {
        wire: _sample(model.__swagger_types__[attribute], models, depth + 1)
        for attribute, wire in model.__attribute_map__.items()
    }


def test_everything_the_sdk_sends_passes() -> None:
    """Each strict route's SDK request model, every member set, names no unknown member."""
    apis = pytest.importorskip("pulumi_cloud_sdk.apis")
    models = pytest.importorskip("pulumi_cloud_sdk.models")
    methods = {
        name: function
        for _, api in inspect.getmembers(apis, inspect.isclass)
        for name, function in inspect.getmembers(api, inspect.isfunction)
    }
    schemas = load_schemas()
    checked = []
    for operation in STRICT:
        method = methods.get(operation)
        if method is None:
            continue  # Cairn's own extension: no SDK method sends it
        parameter = inspect.signature(method).parameters["request"]
        body = _sample(str(parameter.annotation).strip("'"), models)
        assert isinstance(body, dict) and body, operation
        schema = request_schema(ROUTES_BY_OPERATION[operation], schemas)
        assert schema is not None
        assert unknown_member(body, schema) is None, operation
        checked.append(operation)
    assert len(checked) >= 10


def test_the_document_describes_the_check() -> None:
    document = build_document()
    team_patch = document["paths"]["/api/orgs/{orgName}/teams/{teamName}"]["patch"]
    schema = team_patch["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    grant = next(
        item
        for item in schema["properties"]["addStackPermission"]["anyOf"]
        if item.get("type") == "object"
    )
    assert grant["additionalProperties"] is False
    assert unknown_member({"addPermission": 103}, schema) == "addPermission"
    open_route = document["paths"]["/api/stacks/{orgName}/{projectName}"]["post"]
    body = open_route["requestBody"]["content"]["application/json"]["schema"]
    assert "additionalProperties" not in body


def test_closed_schemas_leave_free_form_and_recursive_members_open() -> None:
    components = {
        "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
    }
    schema = closed_schema(
        {
            "type": "object",
            "properties": {
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "blob": {"type": ["object", "null"]},
                "node": {"$ref": "#/components/schemas/Node"},
            },
        },
        components,
    )
    assert unknown_member({"tags": {"any": "thing"}, "blob": {"x": 1}}, schema) is None
    assert unknown_member({"node": {"next": {"anything": 1}}}, schema) is None
    assert unknown_member({"node": {"nxt": {}}}, schema) == "node.nxt"
    assert unknown_member([1, 2], schema) is None
    assert orjson.dumps(schema)  # plain JSON


async def test_long_member_names_are_cut_short(cairn: Cairn) -> None:
    name = "x" * 5000
    response = await cairn.call("PATCH", "/api/orgs/admin", body={name: 1})
    assert response.status == 400
    assert len((await response.json())["message"]) < 200


async def test_sdk_shaped_bodies_with_nulls_still_work(cairn: Cairn) -> None:
    """The SDK sends every member, unset ones as null."""
    await seeded(cairn)
    await cairn.json(
        "PATCH",
        TEAM,
        200,
        token=ADMIN_TOKEN,
        body={
            "newDisplayName": "Ops",
            "newDescription": None,
            "memberAction": None,
            "member": None,
            "addStackPermission": None,
            "editStackPermission": {**GRANT, "permission": 101, "permissionSetName": None},
            "removeStack": None,
            "addEnvironmentPermission": None,
            "editEnvironmentPermission": None,
            "removeEnvironment": None,
        },
    )
    assert (await team(cairn))["stacks"] == [{**GRANT, "permission": 101}]
