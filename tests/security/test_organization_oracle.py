"""Outsiders cannot tell an organization that exists from one that does not: invitation
routes, and every other route naming an organization, answer them the same."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.routes import ROUTES, Access, Route
from tests.gateway.conftest import ADMIN_TOKEN, Cairn

EXISTING, MISSING = "admin", "nowhere"
_VARIABLE = re.compile(r"\{(\w+)(?::[^{}]+)?\}")
VALUES = {
    "projectName": "web",
    "stackName": "dev",
    "version": "1",
    "updateKind": "update",
    "urn": "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev",
}


def concrete(route: Route, org: str) -> str:
    """The route's path for one organization, with the test stack's names."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return org if name == "orgName" else VALUES.get(name, "x")

    return _VARIABLE.sub(value, route.path)


ORG_ROUTES = [
    route
    for route in ROUTES
    if "{orgName}" in route.path and route.access not in (Access.UPDATE, Access.AGENT)
]


async def answer(cairn: Cairn, method: str, path: str, token: str, body: Any) -> tuple[int, Any]:
    response = await cairn.call(method, path, token=token, body=body)
    text = await response.text()
    return response.status, text.replace(MISSING, EXISTING)


async def setting(cairn: Cairn) -> tuple[str, str, str]:
    """A stack admin/web/dev, an invitation of dana to admin (its id), an outsider's token
    and dana's."""
    await cairn.json("POST", f"/api/stacks/{EXISTING}/web", body={"stackName": "dev"})
    dana = await cairn.new_user("dana")
    sent = await cairn.json(
        "POST",
        f"/api/orgs/{EXISTING}/invites/batch",
        body={"invites": [{"email": "dana", "role": "member"}]},
    )
    invite_id: str = sent["sentInvites"][0]["id"]
    return invite_id, await cairn.new_user("otto"), dana


async def test_invitation_routes_answer_outsiders_alike(cairn: Cairn) -> None:
    invite_id, otto, _ = await setting(cairn)
    batch = {"invites": [{"email": "otto", "role": "member"}]}
    calls: list[tuple[str, str, Any]] = [
        ("POST", "/api/orgs/{org}/invites/batch", batch),
        ("GET", "/api/orgs/{org}/invites", None),
        ("PATCH", "/api/orgs/{org}/invites/" + invite_id, None),
        ("PATCH", "/api/orgs/{org}/invites/not-an-invite", None),
        ("DELETE", "/api/orgs/{org}/invites/" + invite_id, None),
    ]
    for method, path, body in calls:
        existing = await answer(cairn, method, path.format(org=EXISTING), otto, body)
        missing = await answer(cairn, method, path.format(org=MISSING), otto, body)
        assert existing == missing, (method, path)
        assert existing[0] == 404, (method, path, existing)
    # Accepting someone else's invitation names only the invitation, never the organization.
    status, text = await answer(
        cairn, "PATCH", f"/api/orgs/{MISSING}/invites/{invite_id}", otto, None
    )
    assert (status, EXISTING in text) == (404, False)
    assert (await cairn.json("GET", "/api/user/pending-invites", token=otto))["invites"] == []
    # Nothing changed: dana's invitation is still there and otto joined nothing.
    pending = await cairn.json("GET", f"/api/orgs/{EXISTING}/invites")
    assert [i["id"] for i in pending["invites"]] == [invite_id]
    user = await cairn.json("GET", "/api/user", token=otto)
    assert [o["githubLogin"] for o in user["organizations"]] == ["otto"]


async def test_the_invitee_still_accepts(cairn: Cairn) -> None:
    invite_id, _, dana = await setting(cairn)
    # Under another organization's path, even dana's own invitation is not found.
    for org in ("dana", MISSING):
        await cairn.json("PATCH", f"/api/orgs/{org}/invites/{invite_id}", 404, token=dana)
    await cairn.json("PATCH", f"/api/orgs/{EXISTING}/invites/{invite_id}", 200, token=dana)
    user = await cairn.json("GET", "/api/user", token=dana)
    assert sorted(o["githubLogin"] for o in user["organizations"]) == ["admin", "dana"]


async def test_no_route_tells_outsiders_whether_an_organization_exists(cairn: Cairn) -> None:
    _, otto, _ = await setting(cairn)
    different: dict[str, tuple[Any, Any]] = {}
    for route in ORG_ROUTES:
        body: Any = None if route.method in ("GET", "HEAD", "DELETE") else {}
        if route.operation_id == "create_stack":
            body = {"stackName": "dev"}
        existing = await answer(cairn, route.method, concrete(route, EXISTING), otto, body)
        missing = await answer(cairn, route.method, concrete(route, MISSING), otto, body)
        if existing != missing or existing[0] != 404:
            different[route.operation_id] = (existing, missing)

    assert len(ORG_ROUTES) > 50
    assert different == {}
    # And no organization was created on the way.
    created = await cairn.call("POST", "/api/orgs", token=ADMIN_TOKEN, body={"name": MISSING})
    assert created.status == 201


async def test_organizations_named_in_bodies_answer_outsiders_alike(cairn: Cairn) -> None:
    """A stack transfer's destination and the copilot's organization context."""
    _, otto, _ = await setting(cairn)
    await cairn.json("POST", "/api/stacks/otto/web", token=otto, body={"stackName": "dev"})
    for method, path, body in (
        ("POST", "/api/stacks/otto/web/dev/transfer", {"toOrg": "{org}"}),
        (
            "POST",
            "/api/ai/chat/preview",
            {"query": "which stacks?", "state": {"client": {"cloudContext": {"orgId": "{org}"}}}},
        ),
    ):
        text = orjson.dumps(body).decode()
        existing = await answer(
            cairn, method, path, otto, orjson.loads(text.replace("{org}", EXISTING))
        )
        missing = await answer(
            cairn, method, path, otto, orjson.loads(text.replace("{org}", MISSING))
        )
        assert existing == missing, path
        assert existing[0] == 404, (path, existing)
    assert (await cairn.json("GET", "/api/stacks/otto/web/dev", token=otto))["orgName"] == "otto"
