"""The organization page's read-only OIDC issuer list, for organization admins only."""

from __future__ import annotations

from collections.abc import Callable

from tests.console.conftest import Browser
from tests.gateway.conftest import MEMBER, Cairn
from tests.oidc_issuer import OidcIssuer

OpenBrowser = Callable[[], Browser]


async def test_admins_see_the_issuer_registry(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get("/orgs/admin")
    assert page.status == 200 and "No OIDC issuers yet" in page.text

    # An issuer with its own key set: nothing is fetched, so an https URL needs no network.
    keys = OidcIssuer().jwks()
    await cairn.json(
        "POST",
        "/api/orgs/admin/oidc/issuers",
        body={"name": "github-actions", "url": "https://ci.example", "jwks": keys},
    )
    page = await browser.get("/orgs/admin")
    assert page.status == 200
    assert "github-actions" in page.text and "https://ci.example" in page.text
    assert "own key set" in page.text

    member = await cairn.new_user("mia", org_role=("admin", MEMBER))
    other = open_browser()
    await other.sign_in(member)
    page = await other.get("/orgs/admin")
    assert page.status == 200 and "OIDC issuers" not in page.text
