"""`GET /api/user/stacks` lists exactly the stacks the caller could open one by one."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from protos.cairn.v1 import identity_pb2
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, VIEWER, Cairn

ORG = "admin"
STACKS = ("alpha", "beta", "gamma", "delta", "epsilon")


async def listed(cairn: Cairn, token: str, *, page_size: int = 2) -> list[str]:
    """Every page of the caller's listing, as `org/project/stack`, following continuations."""
    names: list[str] = []
    continuation = ""
    for _ in range(50):
        path = f"/api/user/stacks?maxResults={page_size}"
        if continuation:
            path += f"&continuationToken={continuation}"
        page: dict[str, Any] = await cairn.json("GET", path, token=token)
        names += [f"{s['orgName']}/{s['projectName']}/{s['stackName']}" for s in page["stacks"]]
        continuation = page.get("continuationToken") or ""
        if not continuation:
            return names
    raise AssertionError("the listing never ended")


async def openable(cairn: Cairn, token: str, candidates: list[str]) -> list[str]:
    names = []
    for name in candidates:
        response = await cairn.call("GET", f"/api/stacks/{name}", token=token)
        await response.read()
        assert response.status in (200, 403, 404), name
        if response.status == 200:
            names.append(name)
    return names


async def callers(cairn: Cairn) -> dict[str, str]:
    """Tokens of every kind in organization admin, where members hold nothing by default.

    The team `web` holds write on alpha and read on beta; mo holds an explicit grant on
    gamma and created delta; tess is in the team.
    """
    for stack in STACKS[:3] + STACKS[4:]:
        await cairn.json("POST", f"/api/stacks/{ORG}/web", body={"stackName": stack})
    await cairn.json("PATCH", f"/api/orgs/{ORG}", body={"setDefaultStackPermission": 0})
    tokens = {
        "admin": ADMIN_TOKEN,
        "viewer": await cairn.new_user("vera", org_role=(ORG, VIEWER)),
        "member": await cairn.new_user("mo", org_role=(ORG, MEMBER)),
        "team_member": await cairn.new_user("tess", org_role=(ORG, MEMBER)),
        "outsider": await cairn.new_user("otto"),
    }
    # mo creates delta, and so holds the creator permission on it.
    await cairn.json(
        "POST", f"/api/stacks/{ORG}/web", token=tokens["member"], body={"stackName": "delta"}
    )
    await cairn.json(
        "PATCH", f"/api/stacks/{ORG}/web/gamma/collaborators/mo", 204, body={"permission": 101}
    )
    await cairn.json("POST", f"/api/orgs/{ORG}/teams/pulumi", body={"name": "web"})
    for stack, permission in (("alpha", 102), ("beta", 101)):
        await cairn.json(
            "PATCH",
            f"/api/console/stacks/{ORG}/web/{stack}/teams/web",
            204,
            body={"permissions": permission},
        )
    await cairn.json(
        "PATCH",
        f"/api/orgs/{ORG}/teams/web",
        200,
        body={"memberAction": "add", "member": "tess"},
    )
    team = await cairn.json("POST", f"/api/orgs/{ORG}/teams/web/tokens", body={"name": "ci"})
    org = await cairn.json("POST", f"/api/orgs/{ORG}/tokens", body={"name": "ci"})
    tokens["team_token"] = team["tokenValue"]
    tokens["org_token"] = org["tokenValue"]
    return tokens


EXPECTED = {
    "admin": set(STACKS),
    "viewer": set(STACKS),
    "member": {"gamma", "delta"},
    "team_member": {"alpha", "beta"},
    "team_token": {"alpha", "beta"},
    "org_token": set(STACKS),
    "outsider": set(),
}


@pytest.mark.parametrize("page_size", [1, 0])
async def test_every_caller_lists_what_they_could_open(any_cairn: Cairn, page_size: int) -> None:
    cairn = any_cairn
    tokens = await callers(cairn)
    everything = sorted(f"{ORG}/web/{stack}" for stack in STACKS)
    assert sorted(await listed(cairn, ADMIN_TOKEN)) == everything

    for kind, token in tokens.items():
        shown = await listed(cairn, token, page_size=page_size)
        assert len(shown) == len(set(shown)), kind
        assert sorted(shown) == await openable(cairn, token, everything), kind
        assert {name.rsplit("/", 1)[1] for name in shown} == EXPECTED[kind], kind


async def test_a_revoked_grant_leaves_the_listing(cairn: Cairn) -> None:
    tokens = await callers(cairn)
    await cairn.json(
        "PATCH",
        f"/api/console/stacks/{ORG}/web/beta/teams/web",
        204,
        body={"permissions": 0},
    )
    shown = await listed(cairn, tokens["team_token"], page_size=0)
    assert shown == [f"{ORG}/web/alpha"]
    assert await openable(cairn, tokens["team_token"], [f"{ORG}/web/beta"]) == []


async def test_filters_apply_before_paging(cairn: Cairn) -> None:
    """The organization filter and the permission filter together: nothing else leaks."""
    tokens = await callers(cairn)
    page = await cairn.json(
        "GET", f"/api/user/stacks?organization={ORG}", token=tokens["team_token"]
    )
    assert sorted(s["stackName"] for s in page["stacks"]) == ["alpha", "beta"]
    assert "continuationToken" not in page


async def test_the_identity_service_filters_in_order_and_only_in_the_callers_organizations(
    cairn: Cairn,
) -> None:
    tokens = await callers(cairn)
    listed_by_admin = await cairn.json("GET", "/api/user/stacks")
    ids = {s["stackName"]: s["id"] for s in listed_by_admin["stacks"]}
    candidates = [
        identity_pb2.StackCandidate(stack_id=ids[name], organization=ORG, owner_login="")
        for name in ("epsilon", "beta", "gamma", "alpha")
    ]
    # A stack named under an organization the token is not in is never readable.
    candidates.append(
        identity_pb2.StackCandidate(stack_id=ids["alpha"], organization="otto", owner_login="")
    )

    reply = await cairn.identity.FilterReadableStacks(
        identity_pb2.FilterReadableStacksRequest(token=tokens["team_token"], stacks=candidates)
    )
    assert list(reply.stack_ids) == [ids["beta"], ids["alpha"]]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cairn.identity.FilterReadableStacks(
            identity_pb2.FilterReadableStacksRequest(token="pul-nope", stacks=candidates)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
