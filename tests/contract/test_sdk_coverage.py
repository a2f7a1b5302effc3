"""Every official SDK method that lands on one of our routes is driven by an SDK test.

The SDK's `*Api` classes are generated code: each method sets `resource_path = '...'` and
calls `call_api(resource_path, '<METHOD>', ...)`. Both are read from the source and mapped
onto the route table the way the router would dispatch the request: same HTTP method, our
literal segments equal to the SDK's, an SDK path parameter taking the place of any of our
path variables, and an SDK literal taking the place of one of our variables only where the
variable's pattern accepts it (`{updateKind:update|preview|...}` takes `preview`,
`{version:\\d+}` does not take `latest`). Every mapped method must be called in one of the
SDK-driven test files (tests/gateway/*sdk*.py), which assert the answers parse.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.routes import ROUTES, Route

try:
    import pulumi_cloud_sdk.apis as sdk_apis
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

SDK_TESTS = sorted((Path(__file__).parents[1] / "gateway").glob("*sdk*.py"))

# SDK methods whose path has the shape of one of our routes but which are another API; each
# must still map (so a stale entry fails) and is not expected in the SDK tests.
UNRELATED: dict[str, str] = {
    "claim": "Pulumi's AI agents claim tasks at /api/agents/{orgName}/claim; ours is the "
    "deployment agent's claim, authenticated by a pool token",
}

_RESOURCE_PATH = re.compile(r"resource_path = '([^']+)'")
_HTTP_METHOD = re.compile(r"call_api(?:_with_headers)?\(resource_path, '([A-Z]+)'")
_VARIABLE = re.compile(r"\{(\w+)(?::([^{}]+))?\}")
_SDK_PARAMETER = r"\{\w+\}"


@dataclass(frozen=True, order=True)
class SdkMethod:
    api: str
    name: str
    method: str
    path: str


def sdk_methods() -> list[SdkMethod]:
    """Every public method of the SDK's `*Api` classes with its HTTP method and path."""
    found = []
    for api_name, api in inspect.getmembers(sdk_apis, inspect.isclass):
        if not api_name.endswith("Api"):
            continue
        for name, function in inspect.getmembers(api, inspect.isfunction):
            if name.startswith("_"):
                continue
            source = inspect.getsource(function)
            path, method = _RESOURCE_PATH.search(source), _HTTP_METHOD.search(source)
            assert path and method, f"{api_name}.{name}: no resource path or HTTP method"
            found.append(SdkMethod(api_name, name, method.group(1), path.group(1)))
    return sorted(found)


def route_pattern(path: str) -> re.Pattern[str]:
    """A regex over SDK path templates matching those our route path would serve."""
    parts = []
    position = 0
    for match in _VARIABLE.finditer(path):
        parts.append(re.escape(path[position : match.start()]))
        position = match.end()
        pattern = match.group(2)
        if pattern is None or pattern == ".+":
            parts.append(_SDK_PARAMETER)
        else:
            parts.append(f"(?:{_SDK_PARAMETER}|{pattern})")
    parts.append(re.escape(path[position:]))
    return re.compile("".join(parts))


def route_of(sdk: SdkMethod, routes: Iterable[Route] = ROUTES) -> Route | None:
    """The first route (router order) serving the SDK method's requests, if any."""
    for route in routes:
        if route.method == sdk.method and route_pattern(route.path).fullmatch(sdk.path):
            return route
    return None


def mapped(methods: Iterable[SdkMethod]) -> dict[SdkMethod, Route]:
    return {sdk: route for sdk in methods if (route := route_of(sdk)) is not None}


def unexercised(names: Iterable[str], sources: Iterable[str]) -> list[str]:
    """The names never used as `.name(`, `.name)` or `.name,` (passed to a thread) in sources."""
    text = "\n".join(sources)
    return sorted(name for name in names if not re.search(rf"\.{re.escape(name)}\b\s*[(),]", text))


@pytest.fixture(scope="module")
def methods() -> list[SdkMethod]:
    return sdk_methods()


def _method(methods: list[SdkMethod], name: str) -> SdkMethod:
    return next(m for m in methods if m.name == name)


def test_the_sdk_methods_are_read_from_the_generated_code(methods: list[SdkMethod]) -> None:
    assert len(methods) > 300
    assert len({(m.api, m.name) for m in methods}) == len(methods)
    assert _method(methods, "get_stack") == SdkMethod(
        "StacksApi", "get_stack", "GET", "/api/stacks/{orgName}/{projectName}/{stackName}"
    )
    assert _method(methods, "project_exists").method == "HEAD"
    assert {m.method for m in methods} <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


def test_sdk_paths_map_as_the_router_dispatches(methods: list[SdkMethod]) -> None:
    def operation(name: str) -> str | None:
        route = route_of(_method(methods, name))
        return None if route is None else route.operation_id

    assert operation("get_stack") == "get_stack"
    # Update kinds are literals in the SDK; each one our kind pattern accepts maps.
    assert operation("create_update_for_preview") == "create_update"
    assert operation("patch_update_checkpoint_delta_refresh") == "patch_update_checkpoint_delta"
    # `{version:\d+}` takes the SDK's `{version}` but not the literal `latest`.
    assert operation("get_stack_update") == "get_stack_update"
    assert operation("get_latest_stack_update") == "get_latest_stack_update"
    # A literal where we have a plain variable is another endpoint, not a deployment id.
    assert operation("get_deployment_version") is None
    # Literal segments served by their own routes win over `{deploymentId}`.
    assert operation("list_scheduled_deployment") == "list_scheduled_deployment"
    assert operation("stack_deployments_metadata") == "stack_deployments_metadata"
    # The URN variable takes the SDK's `{urn}`.
    assert operation("get_stack_resource") == "get_stack_resource"
    assert operation("get_organization_member_teams") == "get_organization_member_teams"
    # Same path, other method: not ours.
    other = SdkMethod("X", "x", "PUT", "/api/stacks/{orgName}/{projectName}/{stackName}")
    assert route_of(other) is None
    kind = SdkMethod("X", "y", "POST", "/api/stacks/{o}/{p}/{s}/import-kind")
    assert route_of(kind) is None


def test_every_sdk_method_mapping_onto_a_route_is_exercised(methods: list[SdkMethod]) -> None:
    routes = mapped(methods)
    print(f"{len(routes)} of {len(methods)} SDK methods map onto the route table:")
    for sdk, route in sorted(routes.items()):
        print(f"  {sdk.api}.{sdk.name}: {sdk.method} {sdk.path} -> {route.operation_id}")
    assert len(routes) > 100
    assert SDK_TESTS, "no SDK-driven test files"
    expected = [sdk.name for sdk in routes if sdk.name not in UNRELATED]
    missing = unexercised(expected, (path.read_text() for path in SDK_TESTS))
    assert not missing, (
        f"SDK methods served by our routes but called by no test in tests/gateway/*sdk*.py: "
        f"{missing}"
    )


def test_unrelated_sdk_methods_still_map_onto_a_route(methods: list[SdkMethod]) -> None:
    routes = mapped(methods)
    stale = sorted(name for name in UNRELATED if name not in {sdk.name for sdk in routes})
    assert not stale, f"no longer map onto a route; remove from UNRELATED: {stale}"


def test_an_sdk_method_no_test_calls_is_named() -> None:
    sources = ["await sdk(api.get_stack, *here)", "api.get_stack_updates(org, p, s)"]
    assert unexercised(["get_stack", "get_stack_updates", "get_stack_tags"], sources) == [
        "get_stack_tags"
    ]
    assert unexercised(["get_stack"], ["api.get_stack_updates(org)"]) == ["get_stack"]
