"""Every documented method and path is routed, to the handler of its operation id.

`documented_routes.json` lists the REST catalogue's routes (method, path, operation id,
deprecation), written by scripts/gen_schemas.py. Each path is filled with sample values and
resolved by the gateway's own router; the route it reaches must carry the documented
operation id (per update kind, through the OpenAPI document's naming).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.openapi import PER_VALUE_OPERATIONS
from gateway.routes import ROUTES, ROUTES_BY_OPERATION, Route, add_routes
from gateway.schemas import load_schemas

DOCUMENTED = Path(__file__).with_name("documented_routes.json")

SAMPLES = {
    "orgName": "acme",
    "org": "acme",
    "projectName": "web",
    "project": "web",
    "stackName": "dev",
    "stack": "dev",
    "updateID": "5f1c0a5e-8d0b-4a53-9f43-3c1b2f0e7d11",
    "version": "3",
    "urn": "urn:pulumi:dev::web::random:index:RandomPet::pet",
    "kind": "environment",
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def documented() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(DOCUMENTED.read_text())
    return entries


def _concrete(path: str) -> str:
    return _PLACEHOLDER.sub(lambda m: SAMPLES.get(m.group(1), f"sample-{m.group(1)}"), path)


async def _routed_as(app: web.Application, method: str, path: str) -> str | None:
    """The documented operation id the router dispatches this request to, if any."""
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    if match.http_exception is not None:
        return None
    name = match.route.name
    assert name is not None
    template = PER_VALUE_OPERATIONS.get(name)
    return template.format(**match) if template else name


def _app(routes: tuple[Route, ...] = ROUTES) -> web.Application:
    app = web.Application()
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
    return app


async def _unrouted(app: web.Application) -> set[str]:
    return {
        entry["operation_id"]
        for entry in documented()
        if await _routed_as(app, entry["method"], _concrete(entry["path"])) != entry["operation_id"]
    }


def test_the_documented_catalogue_is_complete() -> None:
    entries = documented()
    assert len(entries) == 103
    assert len({e["operation_id"] for e in entries}) == 103
    assert len({(e["method"], e["path"]) for e in entries}) == 103


async def test_every_documented_route_is_routed_under_its_operation_id() -> None:
    app = web.Application()
    add_routes(app)
    unrouted = sorted(await _unrouted(app))
    assert not unrouted, f"documented but not routed (or routed under another name): {unrouted}"


async def test_a_missing_or_renamed_route_is_reported() -> None:
    without = tuple(r for r in ROUTES if r.operation_id != "list_stack_teams")
    assert await _unrouted(_app(without)) == {"list_stack_teams"}

    async def get_stack_teams(request: web.Request) -> web.Response:
        return web.Response()

    original = ROUTES_BY_OPERATION["list_stack_teams"]
    renamed = replace(original, handler=get_stack_teams)
    assert await _unrouted(_app((renamed, *without))) == {"list_stack_teams"}
    assert await _unrouted(_app()) == set()


def test_every_documented_operation_has_a_schema() -> None:
    operations = load_schemas().operations
    missing = sorted(e["operation_id"] for e in documented() if e["operation_id"] not in operations)
    assert not missing
    deprecated = {e["operation_id"] for e in documented() if e["deprecated"]}
    assert deprecated == {name for name in deprecated if operations[name].is_deprecated}


async def test_requests_resolve_to_documented_operation_ids() -> None:
    app = web.Application()
    add_routes(app)
    assert await _routed_as(app, "GET", "/api/stacks/a/b/c/updates/latest") == (
        "get_latest_stack_update"
    )
    assert await _routed_as(app, "GET", "/api/stacks/a/b/c/updates/7") == "get_stack_update"
    assert await _routed_as(app, "GET", "/api/stacks/a/b/c/updates/latest/timeline") == (
        "get_latest_update_timeline"
    )
    assert await _routed_as(app, "GET", "/api/stacks/a/b/c/export/2") == "export_stack_at_version"
    assert await _routed_as(app, "POST", "/api/stacks/a/b/c/preview") == "create_update_for_preview"
    assert await _routed_as(app, "PATCH", "/api/stacks/a/b/c/update/u/checkpoint") == (
        "patch_update_checkpoint_update"
    )
