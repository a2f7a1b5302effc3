"""/openapi.json: built from the route table, a schema for every route, valid OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_instance
from openapi_spec_validator import validate

from gateway.openapi import build_document, cached_document, expand, operations
from gateway.routes import ROUTES, Access, Route
from gateway.schemas import load_schemas
from tests.gateway.conftest import MEMBER, Cairn

METHODS = {"get", "put", "post", "delete", "patch", "head"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert method in METHODS
            yield path, method, operation


def test_every_route_has_request_and_response_schemas() -> None:
    """A new route fails here until its operation id has an entry in gateway/schemas."""
    schemas = load_schemas().operations
    missing = sorted(op.operation_id for op in operations(ROUTES) if op.operation_id not in schemas)
    assert not missing, f"add schemas for {missing} (gateway/schemas)"
    for operation in operations(ROUTES):
        schema = schemas[operation.operation_id]
        assert schema.responses, operation.operation_id
        if operation.route.method in ("GET", "HEAD", "DELETE"):
            assert schema.request is None, operation.operation_id


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_appears_once_per_concrete_path(document: dict[str, Any]) -> None:
    listed = [
        (path, method.upper(), op["operationId"]) for path, method, op in _operations(document)
    ]
    expected = [(op.path, op.route.method, op.operation_id) for op in operations(ROUTES)]
    assert sorted(listed) == sorted(expected)
    assert len({operation_id for _, _, operation_id in listed}) == len(listed)
    assert len(listed) > len(ROUTES)  # the update kinds are spelled out
    for path, _, _ in listed:
        assert ":" not in path and "|" not in path, path


def test_update_kinds_become_documented_paths(document: dict[str, Any]) -> None:
    stack = "/api/stacks/{orgName}/{projectName}/{stackName}"
    paths = document["paths"]
    for kind in ("update", "preview", "refresh", "destroy"):
        assert paths[f"{stack}/{kind}"]["post"]["operationId"] == f"create_update_for_{kind}"
        events = paths[f"{stack}/{kind}/{{updateID}}/events"]
        assert events["get"]["operationId"] == f"get_engine_events_{kind}"
        assert events["post"]["operationId"] == f"record_engine_event_{kind}"
    version = paths[f"{stack}/updates/{{version}}"]["get"]["parameters"]
    # Versions start at 1; anything else in that segment is a 400 (seed 000), not a 404.
    assert {"name": "version", "in": "path", "required": True} | {
        "schema": {"type": "integer", "minimum": 1}
    } in version


def test_path_parameters_match_the_path(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), f"{method} {path}"


def test_security_follows_the_access_rule(document: dict[str, Any]) -> None:
    expected: dict[Access, list[dict[str, list[str]]]] = {
        Access.PUBLIC: [],
        Access.USER: [{"accessToken": []}],
        Access.ORG: [{"accessToken": []}],
        Access.STACK: [{"accessToken": []}],
        Access.UPDATE: [{"updateToken": []}],
        Access.AGENT: [{"agentToken": []}],
        Access.SITE_ADMIN: [{"accessToken": []}],
    }
    by_id = {op["operationId"]: op for _, _, op in _operations(document)}
    for operation in operations(ROUTES):
        listed = by_id[operation.operation_id]
        assert listed["security"] == expected[operation.route.access], operation.operation_id
        statuses = set(listed["responses"])
        if operation.route.access is not Access.PUBLIC:
            assert "401" in statuses
        if operation.path.startswith("/api/"):
            assert "415" in statuses
        if "requestBody" in listed:
            assert {"400", "413"} <= statuses
    schemes = document["components"]["securitySchemes"]
    assert {scheme["name"] for scheme in schemes.values()} == {"Authorization"}


def test_errors_answer_pulumis_error_body(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
    for path, method, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path}"


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def references(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "$ref" and isinstance(inner, str):
                    yield inner
                else:
                    yield from references(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from references(inner)

    found = set(references(document))
    assert found
    prefix = "#/components/schemas/"
    assert all(ref.startswith(prefix) for ref in found)
    assert {ref[len(prefix) :] for ref in found} <= set(document["components"]["schemas"])


async def _no_operation(request: web.Request) -> web.Response:
    return web.Response()


async def _per_kind(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_schema_or_naming_fails_the_build() -> None:
    unknown = Route("GET", "/api/unknown", _no_operation, Access.PUBLIC)
    with pytest.raises(KeyError, match="_no_operation"):
        build_document([*ROUTES, unknown])
    unnamed = Route("GET", "/api/{kind:a|b}", _per_kind, Access.PUBLIC)
    with pytest.raises(ValueError, match="_per_kind"):
        list(expand(unnamed))
    with pytest.raises(ValueError, match=r"routed twice|used twice"):
        build_document([*ROUTES, ROUTES[0]])


async def test_the_gateway_serves_the_document_publicly_and_builds_it_once(cairn: Cairn) -> None:
    first = await cairn.call("GET", "/openapi.json", token=None, headers={"Accept": "*/*"})
    assert first.status == 200
    assert first.content_type == "application/json"
    body = await first.read()
    assert orjson.loads(body) == orjson.loads(orjson.dumps(build_document()))
    second = await cairn.call("GET", "/openapi.json", token=None)
    assert await second.read() == body
    # Where `pulumi cloud api` fetches it.
    spec = await cairn.call("GET", "/api/openapi/pulumi-spec.json", token=None)
    assert spec.status == 200 and spec.content_type == "application/json"
    assert await spec.read() == body
    document = cached_document()
    assert document() is document()


def _conforms(
    document: dict[str, Any], path: str, method: str, status: int, media: str, body: Any
) -> None:
    """The answer is documented for the operation, in that media type and shape."""
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} is not documented"
    content = responses[str(status)].get("content")
    if content is None:
        assert not body, f"{method} {path}: a body where none is documented"
        return
    assert media in content, f"{method} {path}: {media} is not documented"
    # The document's components resolve against the schema's root.
    schema = {**content[media]["schema"], "components": document["components"]}
    validate_instance(body, schema, cls=OAS31Validator)


async def test_extension_routes_answer_what_the_document_says(
    cairn: Cairn, document: dict[str, Any]
) -> None:
    """The hand-written schemas describe the handlers' real answers, not guesses."""

    async def check(
        method: str,
        path: str,
        template: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await cairn.call(method, path, body=body, headers=headers)
        raw = await response.read()
        assert response.status == status, raw
        payload: Any = (
            orjson.loads(raw) if response.content_type == "application/json" else raw.decode()
        )
        _conforms(document, template, method.lower(), status, response.content_type, payload)
        return payload

    created = await check("POST", "/api/orgs", "/api/orgs", 201, body={"name": "acme"})
    assert (created["githubLogin"], created["role"], created["memberCount"]) == ("acme", "admin", 1)
    mine = await check("GET", "/api/user/organizations", "/api/user/organizations", 200)
    assert ("acme", "admin") in [(o["githubLogin"], o["roleId"]) for o in mine["organizations"]]

    personal = await cairn.json("POST", "/api/user/tokens", body={"description": "laptop"})
    rotated = await check(
        "POST",
        f"/api/user/tokens/{personal['id']}/rotate",
        "/api/user/tokens/{tokenId}/rotate",
        200,
    )
    assert rotated["id"] == personal["id"] and rotated["tokenValue"] != personal["tokenValue"]
    org_token = await cairn.json("POST", "/api/orgs/acme/tokens", body={"name": "ci"})
    await check(
        "POST",
        f"/api/orgs/acme/tokens/{org_token['id']}/rotate",
        "/api/orgs/{orgName}/tokens/{tokenId}/rotate",
        200,
    )
    await cairn.json("POST", "/api/orgs/acme/teams/pulumi", body={"name": "ops"})
    team_token = await cairn.json("POST", "/api/orgs/acme/teams/ops/tokens", body={"name": "d"})
    await check(
        "POST",
        f"/api/orgs/acme/teams/ops/tokens/{team_token['id']}/rotate",
        "/api/orgs/{orgName}/teams/{teamName}/tokens/{tokenId}/rotate",
        200,
    )

    await cairn.new_user("erin", org_role=("acme", MEMBER))
    await cairn.json("POST", "/api/stacks/acme/web", body={"stackName": "dev"})
    await check(
        "PATCH",
        "/api/stacks/acme/web/dev/collaborators/erin",
        "/api/stacks/{orgName}/{projectName}/{stackName}/collaborators/{userName}",
        204,
        body={"permission": 102},
    )

    for url, template in (
        ("/api/admin/auditlogs/export", "/api/admin/auditlogs/export"),
        ("/api/orgs/acme/auditlogs/export", "/api/orgs/{orgName}/auditlogs/export"),
    ):
        csv_text = await check("GET", url, template, 200, headers={"Accept": "text/csv"})
        assert csv_text.startswith("time,timestamp,event")
        events = await check("GET", f"{url}?format=json", template, 200)
        assert "token.rotate" in [e["event"] for e in events["auditLogEvents"]]
        await check("GET", url, template, 200, headers={"Accept": "text/plain"})


NAME_SAMPLES = [
    "a",
    "A-1_b.c",
    "_x",
    "-x",
    ".x",
    ".",
    "..",
    "x" * 100,
    "x" * 101,
    "a b",
    "é",
    "a/b",
    "a:b",
    "",
]


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("sample", NAME_SAMPLES)
def test_path_names_are_documented_as_the_services_check_them(sample: str) -> None:
    """A name the document allows is one the services accept, and the other way round."""
    from jsonschema import Draft202012Validator

    from gateway.openapi import PATH_VARIABLES
    from services.identity.domain import validate_name as identity_name
    from services.stacks.domain import validate_name as stack_name
    from services.stacks.hooks.domain import validate_name as hook_name

    def documented(variable: str) -> bool:
        return bool(Draft202012Validator(PATH_VARIABLES[variable]).is_valid(sample))

    assert documented("orgName") == _accepts(lambda v: identity_name("org", v), sample)
    assert documented("teamName") == _accepts(lambda v: identity_name("team", v), sample)
    assert documented("stackName") == _accepts(lambda v: stack_name("stack", v), sample)
    assert documented("projectName") == documented("stackName")
    assert documented("hookName") == _accepts(hook_name, sample)


def test_the_document_is_also_served_where_the_pulumi_cli_fetches_it(
    document: dict[str, Any],
) -> None:
    """`pulumi cloud api` reads the document from `/api/openapi/pulumi-spec.json`."""
    item = document["paths"]["/api/openapi/pulumi-spec.json"]["get"]
    assert item["security"] == []
