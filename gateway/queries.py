"""Query parameters checked against the documented schema of their operation, in one place.

Every parameter `/openapi.json` documents for a route is checked when present: a value that is
not of its type, outside its enum or bounds, or not matching its pattern is a 400 naming the
parameter, before the handler runs. Handlers still parse the values they use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import ApiError
from gateway.openapi import operations
from gateway.route import Route
from gateway.schemas import Schema, SchemaSet, load_schemas

_REF = "#/components/schemas/"
_SHOWN = 40
_BOOLEANS = frozenset({"true", "false", "1", "0"})


@dataclass(frozen=True)
class QueryRule:
    name: str
    schema: Schema


def _resolve(schema: Schema, components: Mapping[str, Schema]) -> Schema:
    seen = 0
    while "$ref" in schema and seen < 8:
        schema = components[schema["$ref"].removeprefix(_REF)]
        seen += 1
    return schema


def query_rules(routes: Iterable[Route], schemas: SchemaSet) -> dict[str, tuple[QueryRule, ...]]:
    """Per route (by its operation id), the documented query parameters with resolved
    schemas; a route documented once per path value takes its first operation's."""
    rules: dict[str, tuple[QueryRule, ...]] = {}
    for operation in operations(routes):
        if operation.route.operation_id in rules:
            continue
        schema = schemas.operations.get(operation.operation_id)
        if schema is None:
            continue
        rules[operation.route.operation_id] = tuple(
            QueryRule(query.name, _resolved_tree(query.schema, schemas.components))
            for query in schema.query
        )
    return rules


def _resolved_tree(schema: Schema, components: Mapping[str, Schema]) -> Schema:
    resolved = dict(_resolve(schema, components))
    if isinstance(resolved.get("items"), dict):
        resolved["items"] = _resolve(resolved["items"], components)
    return resolved


def check_query(request: web.Request, rules: tuple[QueryRule, ...]) -> None:
    """400 for the first documented query parameter whose value breaks its schema."""
    for rule in rules:
        values = request.query.getall(rule.name, [])
        if not values:
            continue
        schema = rule.schema
        if schema.get("type") == "array":
            item = schema.get("items", {})
            for value in values:
                for part in value.split(","):
                    if part.strip():
                        _check(rule.name, part.strip(), item)
            continue
        for value in values:
            if value != "":
                _check(rule.name, value, schema)


def _check(name: str, value: str, schema: Schema) -> None:
    problem = _problem(value, schema)
    if problem is not None:
        shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
        raise ApiError(400, f"Bad Request: invalid query parameter '{name}' ({shown!r}): {problem}")


def _problem(value: str, schema: Schema) -> str | None:
    kind = schema.get("type")
    parsed: Any = value
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,19}", value):
            return "expected an integer"
        parsed = int(value)
        if "minimum" in schema and parsed < schema["minimum"]:
            return f"expected at least {schema['minimum']}"
        if "maximum" in schema and parsed > schema["maximum"]:
            return f"expected at most {schema['maximum']}"
    elif kind == "boolean":
        if value.lower() not in _BOOLEANS:
            return "expected true or false"
        return None
    elif kind == "string":
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"longer than {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return "not in the expected form"
    enum = schema.get("enum")
    if enum is not None and parsed not in enum:
        return "expected one of " + ", ".join(str(option) for option in enum)
    return None


@functools.cache
def documented_query_rules() -> Mapping[str, tuple[QueryRule, ...]]:
    """The route table's rules, built on first use (the catalogue is large) and kept."""
    from gateway.routes import ROUTES

    return query_rules(ROUTES, load_schemas())


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the query of a matched route against its documentation before the handler."""
    name = request.match_info.route.name
    if name and request.query:
        check_query(request, documented_query_rules().get(name, ()))
    return await handler(request)
