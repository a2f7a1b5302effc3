"""Done when: the first admin bootstraps the instance, invites two people by email into two
organizations, they join through their links, and each creates a stack in their own
organization with their own token and is refused in the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from services.common.config import Settings
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn


@pytest.fixture
async def fresh(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """A system with no user at all (no admin token)."""
    async for running in running_cairn(settings, aiohttp_client, with_admin=False):
        yield running


async def test_two_people_join_two_organizations(fresh: Cairn) -> None:
    cairn = fresh
    created = await cairn.json(
        "POST",
        "/api/admin/bootstrap",
        201,
        token=None,
        body={"login": "root", "organization": "acme"},
    )
    admin = created["token"]
    status = await cairn.json("GET", "/api/admin/bootstrap", token=None)
    assert any("/api/orgs/{orgName}/invites/batch" in step for step in status["nextSteps"])
    assert any("/api/admin/users" in step for step in status["nextSteps"])
    await cairn.json("POST", "/api/orgs", 201, token=admin, body={"name": "globex"})

    tokens: dict[str, str] = {}
    for person, org in (("alice", "acme"), ("bob", "globex")):
        reply = await cairn.json(
            "POST",
            f"/api/orgs/{org}/invites/batch",
            token=admin,
            body={"invites": [{"email": f"{person}@example.com", "role": "member"}]},
        )
        link = reply["sentInvites"][0]["acceptInviteUrl"]
        code = parse_qs(urlsplit(link).query)["code"][0]
        joined = await cairn.json(
            "POST",
            "/api/invites/accept",
            201,
            token=None,
            body={"code": code, "login": person, "name": person.title()},
        )
        assert joined["organization"]["githubLogin"] == org
        tokens[person] = joined["token"]["tokenValue"]

    for person, own, other in (("alice", "acme", "globex"), ("bob", "globex", "acme")):
        token = tokens[person]
        me = await cairn.json("GET", "/api/user", token=token)
        assert [o["githubLogin"] for o in me["organizations"]] == [own]
        await cairn.json(
            "POST", f"/api/stacks/{own}/app", token=token, body={"stackName": f"{person}-dev"}
        )
        stack = await cairn.json("GET", f"/api/stacks/{own}/app/{person}-dev", token=token)
        assert stack["orgName"] == own
        refused = await cairn.call(
            "POST", f"/api/stacks/{other}/app", token=token, body={"stackName": "intruder"}
        )
        await refused.read()
        assert refused.status == 404
        looked = await cairn.call("GET", f"/api/stacks/{other}/app/intruder", token=token)
        await looked.read()
        assert looked.status == 404
    members = await cairn.json("GET", "/api/orgs/acme/members", token=admin)
    assert sorted(m["user"]["githubLogin"] for m in members["members"]) == ["alice", "root"]
