"""Creating a stack creates no organization but the caller's own (CAIRN_ALLOW_ORGANIZATION_
AUTOCREATE=own, the default); `any` allows every unused name, `none` none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pydantic
import pytest

from protos.cairn.v1 import identity_pb2
from services.common.config import Settings
from services.identity.domain import (
    Membership,
    OrganizationAutocreate,
    Principal,
    Role,
    TokenInfo,
    TokenKind,
    User,
    make_principal,
    may_create_organization,
)
from tests.conftest import make_settings
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn

ANY, OWN, NONE = OrganizationAutocreate.ANY, OrganizationAutocreate.OWN, OrganizationAutocreate.NONE


async def fresh_user(cairn: Cairn, login: str) -> str:
    """A user who belongs to no organization yet (no personal organization made for them)."""
    await cairn.identity.CreateUser(identity_pb2.CreateUserRequest(login=login))
    reply = await cairn.identity.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login=login, name="laptop")
    )
    token: str = reply.token
    return token


async def organizations(cairn: Cairn, token: str) -> list[str]:
    user = await cairn.json("GET", "/api/user", token=token)
    return sorted(o["githubLogin"] for o in user["organizations"])


async def test_pulumi_stack_init_works_for_a_new_user_in_their_own_organization(
    cairn: Cairn,
) -> None:
    """The CLI's sequence: default organization, user, stack lookup, create, list."""
    fay = await fresh_user(cairn, "fay")
    await cairn.json("GET", "/api/capabilities", token=fay)
    default = await cairn.json("GET", "/api/user/organizations/default", token=fay)
    # No organization yet: the CLI falls back to the user's login.
    assert default == {"GitHubLogin": "", "Messages": []}
    await cairn.json("GET", "/api/user", token=fay)
    await cairn.json("GET", "/api/stacks/fay/web/dev", 404, token=fay)
    absent = await cairn.call("HEAD", "/api/stacks/fay/web", token=fay)
    assert absent.status == 404

    created = await cairn.json("POST", "/api/stacks/fay/web", token=fay, body={"stackName": "dev"})

    assert (created["orgName"], created["stackName"]) == ("fay", "dev")
    assert await organizations(cairn, fay) == ["fay"]
    default = await cairn.json("GET", "/api/user/organizations/default", token=fay)
    assert default["GitHubLogin"] == "fay"
    listing = await cairn.json("GET", "/api/user/stacks", token=fay)
    assert [s["stackName"] for s in listing["stacks"]] == ["dev"]
    members = await cairn.json("GET", "/api/orgs/fay/members", token=fay)
    assert [(m["user"]["githubLogin"], m["role"]) for m in members["members"]] == [("fay", "admin")]


async def test_nobody_claims_another_name_by_creating_a_stack(cairn: Cairn) -> None:
    fay = await fresh_user(cairn, "fay")
    await fresh_user(cairn, "gil")

    unused = await cairn.json(
        "POST", "/api/stacks/unclaimed/web", 404, token=fay, body={"stackName": "dev"}
    )
    # Another user's own organization, not made yet, is not fay's to take either.
    theirs = await cairn.json(
        "POST", "/api/stacks/gil/web", 404, token=fay, body={"stackName": "dev"}
    )
    existing = await cairn.json(
        "POST", "/api/stacks/admin/web", 404, token=fay, body={"stackName": "dev"}
    )

    assert unused == {"code": 404, "message": "Not Found: organization 'unclaimed' not found"}
    assert theirs["message"] == "Not Found: organization 'gil' not found"
    assert existing["message"] == "Not Found: organization 'admin' not found"
    assert await organizations(cairn, fay) == []
    # Nor by creating the organization outright: a login's organization is its user's.
    taken = await cairn.json("POST", "/api/orgs", 409, token=fay, body={"name": "gil"})
    assert taken["message"] == (
        "Conflict: 'gil' is kept for the organization of the user of that login"
    )
    await cairn.json("POST", "/api/orgs", 409, body={"name": "fay"})
    # The names are still free: their owners (or an explicit create) get them.
    await cairn.json("POST", "/api/orgs", 201, body={"name": "unclaimed"})
    gil = (
        await cairn.identity.CreateAccessToken(
            identity_pb2.CreateAccessTokenRequest(user_login="gil", name="t")
        )
    ).token
    await cairn.json("POST", "/api/stacks/gil/web", token=gil, body={"stackName": "dev"})
    assert await organizations(cairn, gil) == ["gil"]
    await cairn.json("POST", "/api/orgs", 201, token=fay, body={"name": "fay"})
    assert await organizations(cairn, fay) == ["fay"]


async def test_a_bad_name_is_still_a_400(cairn: Cairn) -> None:
    fay = await fresh_user(cairn, "fay")
    error = await cairn.json(
        "POST", "/api/stacks/-bad/web", 400, token=fay, body={"stackName": "dev"}
    )
    assert "invalid organization name" in error["message"]


async def test_organization_and_team_tokens_create_no_organization(cairn: Cairn) -> None:
    """They act as their organization or team, whose name is no login of theirs."""
    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "ghost"})
    team = await cairn.json("POST", "/api/orgs/admin/teams/ghost/tokens", body={"name": "ci"})
    org = await cairn.json("POST", "/api/orgs/admin/tokens", body={"name": "ci", "admin": True})
    for token, name in ((team["tokenValue"], "ghost"), (org["tokenValue"], "admin")):
        user = await cairn.json("GET", "/api/user", token=token)
        assert user["githubLogin"] == name
        await cairn.json("POST", "/api/stacks/ghost/web", 404, token=token, body={"stackName": "d"})
    await cairn.json("POST", "/api/orgs", 201, body={"name": "ghost"})


@pytest.fixture
async def permissive(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    update = {"allow_organization_autocreate": "any"}
    async for running in running_cairn(settings.model_copy(update=update), aiohttp_client):
        yield running


@pytest.fixture
async def closed(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    update = {"allow_organization_autocreate": "none"}
    async for running in running_cairn(settings.model_copy(update=update), aiohttp_client):
        yield running


async def test_any_lets_every_user_create_unused_names(permissive: Cairn) -> None:
    fay = await fresh_user(permissive, "fay")
    await permissive.json("POST", "/api/stacks/studio/web", token=fay, body={"stackName": "dev"})
    await permissive.json("POST", "/api/stacks/fay/web", token=fay, body={"stackName": "dev"})
    assert await organizations(permissive, fay) == ["fay", "studio"]
    # Taken names stay taken.
    await permissive.json("POST", "/api/stacks/admin/web", 404, token=fay, body={"stackName": "x"})


async def test_none_creates_no_organization_at_all(closed: Cairn) -> None:
    fay = await fresh_user(closed, "fay")
    await closed.json("POST", "/api/stacks/fay/web", 404, token=fay, body={"stackName": "dev"})
    assert await organizations(closed, fay) == []
    # Existing organizations work as always.
    await closed.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})


def test_the_setting_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    assert settings.allow_organization_autocreate == "own"
    monkeypatch.setenv("CAIRN_ALLOW_ORGANIZATION_AUTOCREATE", "any")
    assert make_settings(settings.data_dir, "sqlite://").allow_organization_autocreate == "any"
    monkeypatch.setenv("CAIRN_ALLOW_ORGANIZATION_AUTOCREATE", "everyone")
    with pytest.raises(pydantic.ValidationError):
        make_settings(settings.data_dir, "sqlite://")


def _principal(login: str, kind: TokenKind) -> Principal:
    """A site admin's principal: being one allows no more."""
    user = User(
        id="u1",
        login=login,
        name=login,
        email="",
        is_site_admin=True,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    organization = "" if kind is TokenKind.PERSONAL else "acme"
    info = TokenInfo(name="t", organization=organization, kind=kind)
    return make_principal(user, [Membership("acme", login, Role.ADMIN)], info)


@pytest.mark.parametrize(
    ("policy", "kind", "organization", "allowed"),
    [
        (OWN, TokenKind.PERSONAL, "fay", True),
        (OWN, TokenKind.PERSONAL, "other", False),
        (ANY, TokenKind.PERSONAL, "other", True),
        (NONE, TokenKind.PERSONAL, "fay", False),
        (ANY, TokenKind.ORGANIZATION, "other", False),
        (ANY, TokenKind.TEAM, "fay", False),
        (OWN, TokenKind.TEAM, "fay", False),
    ],
)
def test_the_rule(
    policy: OrganizationAutocreate, kind: TokenKind, organization: str, allowed: bool
) -> None:
    principal = _principal("fay", kind)
    assert may_create_organization(policy, principal, organization) is allowed
