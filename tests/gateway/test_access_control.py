"""Who may do what, through the gateway: the permission table, tokens, teams, invitations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from protos.cairn.v1 import identity_pb2
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.gateway.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    MEMBER,
    VIEWER,
    AiohttpClient,
    Cairn,
    running_cairn,
)

S = "/api/stacks/{org}/web/{stack}"
OWN, OTHER = "admin", "globex"

# Route classes: one representative route each, by organization.
ROUTE_CLASSES: dict[str, tuple[str, str, Any]] = {
    "org_read": ("GET", "/api/orgs/{org}/members", None),
    "stack_read": ("GET", S.format(org="{org}", stack="dev"), None),
    "stack_write": ("PATCH", S.format(org="{org}", stack="dev") + "/tags", {"owner": "ops"}),
    "stack_create": ("POST", "/api/stacks/{org}/web", {"stackName": "fresh"}),
    "stack_delete": ("DELETE", S.format(org="{org}", stack="doomed"), None),
    "manage_members": ("POST", "/api/orgs/{org}/members/newbie", {"role": "member"}),
    "org_admin": ("GET", "/api/orgs/{org}/agent-pools", None),
}
# Expected status in the caller's own organization; in another one every class is 404.
# The team token's team holds write on web/dev and nothing on web/doomed.
EXPECTED: dict[str, dict[str, int]] = {
    "admin": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 204,
        "stack_create": 200,
        "stack_delete": 204,
        "manage_members": 200,
        "org_admin": 200,
    },
    "member": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 204,
        "stack_create": 200,
        "stack_delete": 403,
        "manage_members": 403,
        "org_admin": 403,
    },
    "viewer": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 403,
        "stack_create": 403,
        "stack_delete": 403,
        "manage_members": 403,
        "org_admin": 403,
    },
    "team_token": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 204,
        "stack_create": 403,
        "stack_delete": 403,
        "manage_members": 403,
        "org_admin": 403,
    },
    "org_token": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 204,
        "stack_create": 200,
        "stack_delete": 403,
        "manage_members": 403,
        "org_admin": 403,
    },
    "org_admin_token": {
        "org_read": 200,
        "stack_read": 200,
        "stack_write": 204,
        "stack_create": 200,
        "stack_delete": 204,
        "manage_members": 403,
        "org_admin": 200,
    },
}


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Cairn, ManualClock]]:
    """The system on SQLite with a clock the test moves."""
    clock = ManualClock()
    async for running in running_cairn(settings, aiohttp_client, clock=clock):
        yield running, clock


async def status(cairn: Cairn, method: str, path: str, token: str, body: Any = None) -> int:
    response = await cairn.call(method, path, token=token, body=body)
    await response.read()
    return response.status


async def make_team(cairn: Cairn, org: str, team: str, *, write_on: list[str]) -> None:
    await cairn.json("POST", f"/api/orgs/{org}/teams/pulumi", body={"name": team})
    for stack in write_on:
        await cairn.json(
            "PATCH",
            f"/api/console/stacks/{org}/web/{stack}/teams/{team}",
            204,
            body={"permissions": 102},
        )


async def caller_token(cairn: Cairn, kind: str) -> str:
    """A token of the given kind in organization OWN."""
    if kind in ("admin", "member", "viewer"):
        role = {"admin": ADMIN, "member": MEMBER, "viewer": VIEWER}[kind]
        return await cairn.new_user(f"{kind}-user", org_role=(OWN, role))
    if kind == "team_token":
        await make_team(cairn, OWN, "web", write_on=["dev"])
        created = await cairn.json("POST", f"/api/orgs/{OWN}/teams/web/tokens", body={"name": "ci"})
    else:
        created = await cairn.json(
            "POST",
            f"/api/orgs/{OWN}/tokens",
            body={"name": "ci", "admin": kind == "org_admin_token"},
        )
    token: str = created["tokenValue"]
    return token


@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_permission_table(cairn: Cairn, kind: str) -> None:
    """Role (or token kind) x route class x own/other organization, through the gateway."""
    gus = await cairn.new_user("gus")
    await cairn.identity.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name=OTHER, admin_login="gus")
    )
    await cairn.new_user("newbie")
    for org, token in ((OWN, ADMIN_TOKEN), (OTHER, gus)):
        for stack in ("dev", "doomed"):
            await cairn.json(
                "POST", f"/api/stacks/{org}/web", token=token, body={"stackName": stack}
            )
    token = await caller_token(cairn, kind)

    seen: dict[tuple[str, str], int] = {}
    expected: dict[tuple[str, str], int] = {}
    for org in (OWN, OTHER):
        for name, (method, path, body) in ROUTE_CLASSES.items():
            seen[org, name] = await status(cairn, method, path.format(org=org), token, body)
            expected[org, name] = EXPECTED[kind][name] if org == OWN else 404
    assert seen == expected


async def test_outsiders_learn_nothing_about_stacks(cairn: Cairn) -> None:
    outsider = await cairn.new_user("otto")
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    present = await cairn.call("GET", "/api/stacks/admin/web/dev", token=outsider)
    absent = await cairn.call("GET", "/api/stacks/admin/web/nothing", token=outsider)
    assert present.status == absent.status == 404
    assert await present.json() == await absent.json()


async def test_a_team_token_is_limited_to_its_team_and_dies_when_revoked(any_cairn: Cairn) -> None:
    cairn = any_cairn
    """The whole story: invited, accepted, given a team with write on some stacks only, a
    token limited to that, and no access the moment it is revoked."""
    for stack in ("a", "b"):
        await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": stack})
    sam = await cairn.new_user("sam")
    # Members see no stack unless a team or a grant gives it to them.
    await cairn.json("PATCH", "/api/orgs/admin", body={"setDefaultStackPermission": 0})

    sent = await cairn.json(
        "POST",
        "/api/orgs/admin/invites/batch",
        body={"invites": [{"email": "sam", "role": "member"}]},
    )
    invite_id = sent["sentInvites"][0]["id"]
    assert await status(cairn, "GET", "/api/stacks/admin/web/a", sam) == 404
    pending = await cairn.json("GET", "/api/user/pending-invites", token=sam)
    assert [(i["id"], i["role"]) for i in pending["invites"]] == [(invite_id, "member")]
    await cairn.json("PATCH", f"/api/orgs/admin/invites/{invite_id}", 200, token=sam)
    assert (await cairn.json("GET", "/api/user/pending-invites", token=sam))["invites"] == []
    assert await status(cairn, "GET", "/api/stacks/admin/web/a", sam) == 403

    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "deployers"})
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/deployers",
        200,
        body={
            "memberAction": "add",
            "member": "sam",
            "addStackPermission": {"projectName": "web", "stackName": "a", "permission": 102},
        },
    )
    team = await cairn.json("GET", "/api/orgs/admin/teams/deployers")
    assert [m["githubLogin"] for m in team["members"]] == ["admin", "sam"]
    assert team["stacks"] == [{"projectName": "web", "stackName": "a", "permission": 102}]

    # Sam's own token: write on a through the team, nothing on b.
    assert await status(cairn, "PATCH", "/api/stacks/admin/web/a/tags", sam, {"k": "v"}) == 204
    assert await status(cairn, "PATCH", "/api/stacks/admin/web/b/tags", sam, {"k": "v"}) == 403

    created = await cairn.json(
        "POST", "/api/orgs/admin/teams/deployers/tokens", body={"name": "pipeline"}
    )
    ci = created["tokenValue"]
    assert await status(cairn, "PATCH", "/api/stacks/admin/web/a/tags", ci, {"k": "w"}) == 204
    assert await status(cairn, "PATCH", "/api/stacks/admin/web/b/tags", ci, {"k": "w"}) == 403
    assert await status(cairn, "GET", "/api/stacks/admin/web/b", ci) == 403
    assert await status(cairn, "DELETE", "/api/stacks/admin/web/a", ci) == 403
    # A team token manages nothing, not even its own team.
    assert await status(cairn, "GET", "/api/orgs/admin/teams/deployers/tokens", ci) == 403

    await cairn.json("DELETE", f"/api/orgs/admin/teams/deployers/tokens/{created['id']}", 200)
    assert await status(cairn, "GET", "/api/stacks/admin/web/a", ci) == 401
    listed = await cairn.json("GET", "/api/orgs/admin/teams/deployers/tokens?filter=all")
    assert [(t["id"], t["revoked"] > 0) for t in listed["tokens"]] == [(created["id"], True)]


async def test_token_lifecycle_with_an_injected_clock(clocked: tuple[Cairn, ManualClock]) -> None:
    cairn, clock = clocked
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    now = int(clock.now())

    created = await cairn.json(
        "POST", "/api/user/tokens", body={"description": "laptop", "expires": now + 3600}
    )
    first, token_id = created["tokenValue"], created["id"]
    assert first.startswith("pul-")
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", first) == 200
    listed = await cairn.call("GET", "/api/user/tokens")
    text = await listed.text()
    assert first not in text
    mine = next(t for t in orjson.loads(text)["tokens"] if t["id"] == token_id)
    assert (mine["description"], mine["expires"], mine["type"]) == (
        "laptop",
        now + 3600,
        "personal",
    )
    assert mine["lastUsed"] == now and mine["created"].endswith("Z")

    rotated = await cairn.json("POST", f"/api/user/tokens/{token_id}/rotate")
    second = rotated["tokenValue"]
    assert rotated["id"] == token_id and second != first
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", first) == 401
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", second) == 200

    clock.advance(3600)
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", second) == 401

    revocable = await cairn.json("POST", "/api/user/tokens", body={"description": "ci"})
    assert await status(cairn, "GET", "/api/user", revocable["tokenValue"]) == 200
    await cairn.json("DELETE", f"/api/user/tokens/{revocable['id']}", 200)
    assert await status(cairn, "GET", "/api/user", revocable["tokenValue"]) == 401
    await cairn.json("DELETE", f"/api/user/tokens/{revocable['id']}", 404)
    await cairn.json("POST", f"/api/user/tokens/{revocable['id']}/rotate", 404)
    active = await cairn.json("GET", "/api/user/tokens")
    assert revocable["id"] not in [t["id"] for t in active["tokens"]]
    revoked = await cairn.json("GET", "/api/user/tokens?filter=revoked")
    assert [t["id"] for t in revoked["tokens"]] == [revocable["id"]]

    # An expiry in the past is refused and creates nothing.
    before = await cairn.json("GET", "/api/user/tokens?filter=all")
    await cairn.json("POST", "/api/user/tokens", 400, body={"expires": now - 1})
    # So is one past the year 9999, which no date can hold.
    for expires in (253_402_300_800, 2**62):
        for path in ("/api/user/tokens", "/api/orgs/admin/tokens"):
            await cairn.json("POST", path, 400, body={"name": "far", "expires": expires})
    assert await cairn.json("GET", "/api/user/tokens?filter=all") == before
    assert (await cairn.json("GET", "/api/orgs/admin/tokens?filter=all"))["tokens"] == []

    # Organization tokens: same lifecycle, acting as the organization.
    org_token = await cairn.json("POST", "/api/orgs/admin/tokens", body={"name": "deploy"})
    value = org_token["tokenValue"]
    user = await cairn.json("GET", "/api/user", token=value)
    assert user["githubLogin"] == "admin"
    assert user["tokenInfo"] == {"name": "deploy", "organization": "admin", "team": ""}
    assert await status(cairn, "PATCH", "/api/stacks/admin/web/dev/tags", value, {"a": "b"}) == 204
    again = await cairn.json("POST", f"/api/orgs/admin/tokens/{org_token['id']}/rotate")
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", value) == 401
    await cairn.json("DELETE", f"/api/orgs/admin/tokens/{org_token['id']}", 200)
    assert await status(cairn, "GET", "/api/stacks/admin/web/dev", again["tokenValue"]) == 401
    # A personal token id is not an organization token.
    await cairn.json("DELETE", f"/api/orgs/admin/tokens/{token_id}", 404)


async def test_an_organization_keeps_its_last_admin(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await cairn.new_user("bea")
    await cairn.json("PATCH", "/api/orgs/admin/members/admin", 409, body={"role": "member"})
    await cairn.json("DELETE", "/api/orgs/admin/members/admin", 409)
    await cairn.json("POST", "/api/orgs/admin/members/bea", body={"role": "admin"})
    await cairn.json("PATCH", "/api/orgs/admin/members/admin", 200, body={"role": "viewer"})
    members = await cairn.json("GET", "/api/orgs/admin/members")
    roles = {m["user"]["githubLogin"]: (m["role"], m["fgaRole"]["id"]) for m in members["members"]}
    assert roles == {"admin": ("member", "viewer"), "bea": ("admin", "admin")}
    bea_only = await cairn.call("DELETE", "/api/orgs/admin/members/bea")
    assert bea_only.status == 403  # the caller is a viewer now


async def test_creating_an_organization_makes_the_creator_its_admin(cairn: Cairn) -> None:
    cleo = await cairn.new_user("cleo")
    created = await cairn.json("POST", "/api/orgs", 201, token=cleo, body={"name": "studio"})
    assert (created["githubLogin"], created["role"]) == ("studio", "admin")
    mine = await cairn.json("GET", "/api/user/organizations", token=cleo)
    assert [(o["githubLogin"], o["role"]) for o in mine["organizations"]] == [
        ("cleo", "admin"),
        ("studio", "admin"),
    ]
    await cairn.json("POST", "/api/orgs", 409, token=cleo, body={"name": "studio"})
    await cairn.json("POST", "/api/orgs", 400, token=cleo, body={"name": "no spaces"})


async def test_bad_input_is_refused_and_changes_nothing(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await cairn.new_user("dan")
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    members = await cairn.json("GET", "/api/orgs/admin/members")

    await cairn.json("POST", "/api/orgs/admin/members/ghost", 404, body={"role": "member"})
    await cairn.json("POST", "/api/orgs/admin/members/dan", 400, body={"role": "owner"})
    await cairn.json("PATCH", "/api/orgs/admin/members/dan", 404, body={"role": "member"})
    await cairn.json(
        "POST",
        "/api/orgs/admin/invites/batch",
        404,
        # An unknown login (an unknown email address would get an invitation link).
        body={"invites": [{"email": "dan"}, {"email": "ghost"}]},
    )
    await cairn.json("POST", "/api/orgs/admin/invites/batch", 400, body={"invites": []})
    assert await cairn.json("GET", "/api/orgs/admin/members") == members
    assert (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"] == []

    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "ops"})
    teams = await cairn.json("GET", "/api/orgs/admin/teams")
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", 409, body={"name": "ops"})
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", 400, body={"name": "bad name"})
    await cairn.json(
        "PATCH", "/api/console/stacks/admin/web/dev/teams/ops", 400, body={"permissions": 105}
    )
    await cairn.json(
        "PATCH", "/api/console/stacks/admin/web/dev/teams/nope", 404, body={"permissions": 101}
    )
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/ops",
        404,
        body={"memberAction": "add", "member": "dan"},  # dan is not in the organization
    )
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/ops",
        404,
        body={
            "newDescription": "changed",
            "addStackPermission": {"projectName": "web", "stackName": "nope", "permission": 101},
        },
    )
    assert await cairn.json("GET", "/api/orgs/admin/teams") == teams
    await cairn.json("PATCH", "/api/orgs/admin", 400, body={"setDefaultStackPermission": 104})
    await cairn.json("PATCH", "/api/orgs/admin", 400, body={"setNeoEnabled": True})
    assert (await cairn.json("GET", "/api/orgs/admin"))["defaultStackPermission"] == 102
    await cairn.json("POST", "/api/orgs/admin/tokens", 400, body={"description": "no name"})
    await cairn.json("POST", "/api/user/tokens", 400, body={"expires": "tomorrow"})
    assert (await cairn.json("GET", "/api/orgs/admin/tokens"))["tokens"] == []


async def test_stack_grants_are_listed_and_kept_while_the_stack_can_be_restored(
    any_cairn: Cairn,
) -> None:
    cairn = any_cairn
    eve = await cairn.new_user("eve", org_role=("admin", MEMBER))
    stack = await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    await make_team(cairn, "admin", "ops", write_on=["dev"])
    await cairn.json(
        "PATCH", "/api/stacks/admin/web/dev/collaborators/eve", 204, body={"permission": 103}
    )
    teams = await cairn.json("GET", "/api/stacks/admin/web/dev/teams", token=eve)
    assert teams["projectName"] == "web"
    assert [(t["name"], t["permission"], t["isMember"]) for t in teams["teams"]] == [
        ("ops", 102, False)
    ]
    users = await cairn.json("GET", "/api/stacks/admin/web/dev/collaborators", token=eve)
    assert [(u["user"]["githubLogin"], u["permission"]) for u in users["users"]] == [("eve", 103)]
    why = await cairn.json("GET", "/api/console/orgs/admin/members/eve/stacks/web/dev")
    assert (why["organizationRole"], why["organizationDefault"]) == ("member", 102)
    assert (why["explicitPermission"], why["teamPermissions"]) == (103, [])

    # The explicit admin grant lets the member delete the stack; its grants stay with the
    # tombstone (a restore brings them back) until the purge after the restore window.
    await cairn.json("DELETE", "/api/stacks/admin/web/dev/collaborators/eve", 204)
    await cairn.json("DELETE", "/api/stacks/admin/web/dev/collaborators/eve", 404)
    assert await status(cairn, "DELETE", "/api/stacks/admin/web/dev", eve) == 403
    await cairn.json(
        "PATCH", "/api/stacks/admin/web/dev/collaborators/eve", 204, body={"permission": 103}
    )
    assert await status(cairn, "DELETE", "/api/stacks/admin/web/dev", eve) == 204
    left = await cairn.identity.ListStackGrants(
        identity_pb2.ListStackGrantsRequest(organization="admin", stack_id=stack["id"])
    )
    assert (len(left.teams), len(left.users)) == (1, 1)


async def test_a_team_granted_creator_permission_acts_as_admin(any_cairn: Cairn) -> None:
    """Seed 000 lists 104 among the permissions a team may hold on a stack."""
    cairn = any_cairn
    fay = await cairn.new_user("fay", org_role=("admin", MEMBER))
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "owners"})
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/owners",
        200,
        body={"memberAction": "add", "member": "fay"},
    )
    assert await status(cairn, "DELETE", "/api/stacks/admin/web/dev", fay) == 403
    await cairn.json(
        "PATCH", "/api/console/stacks/admin/web/dev/teams/owners", 204, body={"permissions": 104}
    )
    teams = await cairn.json("GET", "/api/stacks/admin/web/dev/teams", token=fay)
    assert [(t["name"], t["permission"], t["isMember"]) for t in teams["teams"]] == [
        ("owners", 104, True)
    ]
    assert await status(cairn, "DELETE", "/api/stacks/admin/web/dev", fay) == 204
