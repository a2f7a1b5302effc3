"""/openapi.json: built from the route table, a schema for every route, valid OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from gateway.openapi import build_document, cached_document, expand, operations
from gateway.routes import ROUTES, Access, Route
from gateway.schemas import load_schemas
from tests.gateway.conftest import Cairn

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
    assert {"name": "version", "in": "path", "required": True} | {
        "schema": {"type": "integer", "minimum": 0}
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
    document = cached_document()
    assert document() is document()
