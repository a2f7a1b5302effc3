"""Console single sign-on end to end against the local OIDC issuer: the authorization-code
flow with PKCE, first sign-in provisioning, group mapping, and the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from protos.cairn.v1 import common_pb2, identity_pb2
from services.common.config import Settings
from tests.console.conftest import Browser
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn
from tests.oidc_issuer import OidcIssuer

OpenBrowser = Callable[[], Browser]
MAPPING = {"platform": {"organization": "admin", "role": "admin", "teams": ["ops"]}}


@pytest.fixture
async def issuer() -> AsyncIterator[OidcIssuer]:
    running = await OidcIssuer().start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def cairn(
    settings: Settings, aiohttp_client: AiohttpClient, issuer: OidcIssuer
) -> AsyncIterator[Cairn]:
    """The system with the console's single sign-on pointed at the test issuer."""
    configured = settings.model_copy(
        update={
            "oidc_allow_http_loopback_issuers": True,
            "oidc_issuer": issuer.url,
            "oidc_client_id": issuer.client_id,
            "oidc_client_secret": SecretStr(issuer.client_secret),
            "oidc_display_name": "Test IdP",
            "oidc_allowed_domains": "example.com",
            "oidc_group_mapping": orjson.dumps(MAPPING).decode(),
        }
    )
    async for running in running_cairn(configured, aiohttp_client):
        yield running


def _user(sub: str, login: str, email: str, groups: list[str] | None = None) -> dict[str, object]:
    return {
        "sub": sub,
        "preferred_username": login,
        "email": email,
        "email_verified": True,
        "name": login.title(),
        "groups": groups or [],
    }


async def _provider(browser: Browser, issuer: OidcIssuer, next_path: str = "/") -> str:
    """Start at the console, let the provider sign the user in; the callback path to open."""
    started = await browser.get(f"/signin/oidc?next={next_path}")
    assert started.status == 302, started.text
    assert started.location.startswith(f"{issuer.url}/authorize?")
    query = parse_qs(urlsplit(started.location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    async with (
        aiohttp.ClientSession() as provider,
        provider.get(started.location, allow_redirects=False) as answer,
    ):
        assert answer.status == 302
        back = urlsplit(answer.headers["Location"])
    assert back.path == "/signin/oidc/callback"
    return f"{back.path}?{back.query}"


async def test_first_sign_in_provisions_and_maps_groups(
    cairn: Cairn, issuer: OidcIssuer, open_browser: OpenBrowser
) -> None:
    await cairn.json(
        "POST",
        "/api/orgs/admin/teams/pulumi",
        body={"name": "ops", "displayName": "Ops"},
    )
    await cairn.new_user("ana")  # the login the provider suggests is taken
    browser = open_browser()
    form = await browser.get("/signin")
    assert form.status == 200 and "Sign in with Test IdP" in form.text
    assert 'name="token"' in form.text  # token sign-in stays

    issuer.next_user = _user("idp-ana-1", "ana", "ana@example.com", ["platform"])
    callback = await _provider(browser, issuer, "/orgs/admin")
    signed = await browser.get(callback)
    assert signed.status == 303 and signed.location == "/orgs/admin", signed.text
    page = await browser.get("/orgs/admin")
    assert page.status == 200 and "ana-2" in page.text

    members = await cairn.identity.ListMembers(
        identity_pb2.ListMembersRequest(organization="admin")
    )
    roles = {m.user.login: m.role for m in members.members}
    assert roles["ana-2"] == common_pb2.ROLE_ADMIN
    team = await cairn.json("GET", "/api/orgs/admin/teams/ops")
    assert "ana-2" in [m["githubLogin"] for m in team["members"]]

    # The same subject signs in as the same user again.
    again = open_browser()
    issuer.next_user = _user("idp-ana-1", "renamed", "ana@example.com", ["platform"])
    signed = await again.get(await _provider(again, issuer))
    assert signed.status == 303
    page = await again.get("/")
    assert page.status == 200 and "ana-2" in page.text


async def test_disallowed_domains_and_state_mismatches_are_refused(
    cairn: Cairn, issuer: OidcIssuer, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    issuer.next_user = _user("idp-eve", "eve", "eve@elsewhere.org")
    refused = await browser.get(await _provider(browser, issuer))
    assert refused.status == 403 and "not in a domain allowed" in refused.text
    assert browser.cookie("cairn_session") is None

    issuer.next_user = _user("idp-bob", "bob", "bob@example.com")
    callback = await _provider(browser, issuer)
    tampered = callback.replace("state=", "state=x")
    mismatch = await browser.get(tampered)
    assert mismatch.status == 400 and "state does not match" in mismatch.text
    assert browser.cookie("cairn_session") is None
    # Without the flow cookie (another browser), the callback is refused too.
    other = open_browser()
    assert (await other.get(callback)).status == 400


async def test_a_disabled_user_cannot_sign_in(
    cairn: Cairn, issuer: OidcIssuer, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    issuer.next_user = _user("idp-dan", "dan", "dan@example.com")
    assert (await browser.get(await _provider(browser, issuer))).status == 303
    await cairn.json("POST", "/api/admin/users/dan/disable", 200)

    later = open_browser()
    issuer.next_user = _user("idp-dan", "dan", "dan@example.com")
    refused = await later.get(await _provider(later, issuer))
    assert refused.status == 409 and "disabled" in refused.text
    assert later.cookie("cairn_session") is None
