"""`/openapi.json`: an OpenAPI 3.1 document built from the route table and the schemas.

Every route becomes one operation named by its operation id. A path variable restricted to
a few literals (`{updateKind:update|preview|refresh|destroy}`) becomes one concrete path per
literal, as the REST documentation lists them, each under its own documented operation id
(PER_VALUE_OPERATIONS); a digits-only variable (`{version:\\d+}`) becomes an integer
parameter, as does a variable the handlers parse as an integer themselves (INTEGER_VARIABLES:
any segment reaches them, so `abc` is a 400, not a missing route).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import orjson

from gateway.route import Access, Route
from gateway.routes import ROUTES, request_schema
from gateway.schemas import OperationSchema, Schema, SchemaSet, constraints, load_schemas

OPENAPI_VERSION = "3.1.0"

# Route operation id -> the documented operation id of each concrete path; `{updateKind}`
# is replaced by the literal (the names are the official SDK's).
PER_VALUE_OPERATIONS: dict[str, str] = {
    "create_update": "create_update_for_{updateKind}",
    "start_update": "start_update_for_{updateKind}",
    "get_update_status": "get_update_status_for_{updateKind}",
    "cancel_update": "cancel_update_{updateKind}",
    "get_update_events": "get_engine_events_{updateKind}",
    "renew_update_lease": "renew_update_lease_{updateKind}",
    "patch_update_checkpoint": "patch_update_checkpoint_{updateKind}",
    "patch_update_checkpoint_verbatim": "patch_update_verbatim_checkpoint_{updateKind}",
    "patch_update_checkpoint_delta": "patch_update_checkpoint_delta_{updateKind}",
    "patch_update_journal_entries": "create_journal_entries_{updateKind}",
    "post_engine_event_batch": "record_engine_event_batch_{updateKind}",
    "post_engine_event": "record_engine_event_{updateKind}",
    "append_update_log_entry": "append_update_log_entry_{updateKind}",
    "complete_update": "complete_update_{updateKind}",
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "accessToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`token <access token>`",
    },
    "updateToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`update-token <lease token>`, as starting the update returned it",
    },
    "agentToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`token <agent pool token>`",
    },
}
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.USER: [{"accessToken": []}],
    Access.ORG: [{"accessToken": []}],
    Access.STACK: [{"accessToken": []}],
    Access.UPDATE: [{"updateToken": []}],
    Access.AGENT: [{"agentToken": []}],
    Access.SITE_ADMIN: [{"accessToken": []}],
}

_VARIABLE = re.compile(r"\{(\w+)(?::([^{}]+))?\}")
_LITERALS = re.compile(r"[\w.-]+(?:\|[\w.-]+)+")
# Path variables the handlers parse as integers (gateway.convert.path_version).
INTEGER_VARIABLES = frozenset({"version"})
# What the services accept in named path segments: organization names, logins and team names
# (identity), project and stack names (stacks, as the CLI restricts them), webhook names. A
# segment outside these is refused (400) or not found (404); inside, it is never a 400.
PATH_VARIABLES = constraints.PATH_VARIABLES


@dataclass(frozen=True)
class Operation:
    """One route at one concrete OpenAPI path."""

    route: Route
    operation_id: str
    path: str
    path_parameters: tuple[tuple[str, Schema], ...]


def expand(route: Route) -> Iterator[Operation]:
    """The concrete OpenAPI paths of a route and their operation ids."""
    variants: list[tuple[str, dict[str, str]]] = [("", {})]
    parameters: list[tuple[str, Schema]] = []
    position = 0
    for match in _VARIABLE.finditer(route.path):
        literal = route.path[position : match.start()]
        position = match.end()
        name, pattern = match.group(1), match.group(2)
        if pattern is not None and _LITERALS.fullmatch(pattern):
            variants = [
                (path + literal + value, {**values, name: value})
                for path, values in variants
                for value in pattern.split("|")
            ]
            continue
        variants = [(path + literal + "{" + name + "}", values) for path, values in variants]
        if pattern is None and name in INTEGER_VARIABLES:
            parameters.append((name, {"type": "integer", "minimum": 1}))
        elif pattern is None:
            parameters.append((name, dict(PATH_VARIABLES.get(name, {"type": "string"}))))
        elif pattern == r"\d+":
            parameters.append((name, {"type": "integer", "minimum": 0}))
        else:
            parameters.append((name, {"type": "string", "pattern": f"^(?:{pattern})$"}))
    tail = route.path[position:]
    for path, values in variants:
        operation_id = route.operation_id
        if values:
            template = PER_VALUE_OPERATIONS.get(route.operation_id)
            if template is None:
                raise ValueError(f"{route.operation_id}: no operation id per path value")
            operation_id = template.format(**values)
        yield Operation(route, operation_id, path + tail, tuple(parameters))


def operations(routes: Iterable[Route] = ROUTES) -> list[Operation]:
    return [operation for route in routes for operation in expand(route)]


def error_statuses(operation: Operation, schema: OperationSchema) -> set[int]:
    """The documented errors plus those the gateway itself answers for such a route."""
    route = operation.route
    statuses = set(schema.errors)
    if route.access is not Access.PUBLIC:
        # A bad credential; too many of them from one address.
        statuses |= {401, 429}
    if route.access in (Access.ORG, Access.STACK, Access.SITE_ADMIN) or route.manages_access:
        # Too low a role or permission; machine tokens managing access.
        statuses.add(403)
    if route.is_credential_exchange:
        # The presented credential refused (gateway/route.py `is_credential_exchange`).
        statuses |= {401, 403, 429}
    if route.access is Access.UPDATE:
        # A lease that is not this update's, a preview writing state, a finished update.
        statuses |= {403, 404, 409}
    if operation.path_parameters:
        statuses |= {400, 404}
    if schema.query:
        statuses.add(400)
    if schema.request is not None:
        statuses |= {400, 413}
    if route.path.startswith("/api/"):
        statuses.add(415)
    return statuses


def _content(schema: Schema, media_types: Iterable[str]) -> dict[str, Any]:
    return {media: {"schema": schema} for media in media_types}


def _operation_object(
    operation: Operation, schema: OperationSchema, schemas: SchemaSet
) -> dict[str, Any]:
    route = operation.route
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": value}
        for name, value in operation.path_parameters
    ]
    parameters += [
        {"name": query.name, "in": "query", "required": query.is_required, "schema": query.schema}
        for query in schema.query
    ]
    responses: dict[str, Any] = {}
    for status, body in sorted(schema.responses.items()):
        response: dict[str, Any] = {"description": "Success" if body is not None else "No content"}
        if body is not None:
            response["content"] = {
                media: {"schema": value} for media, value in schema.body_schemas(body).items()
            }
        responses[str(status)] = response
    error = {"$ref": "#/components/schemas/Error"}
    for status in sorted(error_statuses(operation, schema)):
        responses[str(status)] = {
            "description": "Pulumi's error body",
            "content": _content(error, ["application/json"]),
        }
    result: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": route.summary or schema.summary,
        "tags": [route.handler.__module__.rsplit(".", 1)[-1]],
        "security": _SECURITY[route.access],
        "parameters": parameters,
        "responses": responses,
    }
    if schema.request is not None:
        # Strict bodies: the schema the gateway checks, refusing members it does not name.
        body = request_schema(route, schemas) if route.is_body_strict else schema.request
        result["requestBody"] = {
            "required": schema.is_body_required,
            "content": _content(body or schema.request, ["application/json"]),
        }
    if schema.is_deprecated:
        result["deprecated"] = True
    return result


def build_document(routes: Iterable[Route] = ROUTES, schemas: SchemaSet | None = None) -> Schema:
    """The OpenAPI document; raises when a route has no schema entry or collides."""
    schemas = schemas or load_schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for operation in operations(routes):
        schema = schemas.operations.get(operation.operation_id)
        if schema is None:
            raise KeyError(f"no schema for operation {operation.operation_id}")
        if operation.operation_id in seen:
            raise ValueError(f"operation id {operation.operation_id} is used twice")
        seen.add(operation.operation_id)
        item = paths.setdefault(operation.path, {})
        method = operation.route.method.lower()
        if method in item:
            raise ValueError(f"{operation.route.method} {operation.path} is routed twice")
        item[method] = _operation_object(operation, schema, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Cairn",
            "version": metadata.version("cairn"),
            "description": "A self-hosted backend speaking the Pulumi Cloud REST API.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(schemas.components),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def cached_document(routes: Iterable[Route] = ROUTES) -> Callable[[], bytes]:
    """The serialised document, built on first use and kept."""
    built: list[bytes] = []

    def document() -> bytes:
        if not built:
            built.append(orjson.dumps(build_document(routes)))
        return built[0]

    return document
