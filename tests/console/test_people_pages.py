"""The console's people pages: organization admins invite (by login or email, each new link
shown once) and cancel; site admins create, disable and enable users; a person without an
account joins through the link's page, gets their first token once, and is signed in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html import unescape
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pydantic import SecretStr

from cairn.cli import start_services
from gateway.app import create_app
from protos.cairn.v1 import identity_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.conftest import signed_channel
from tests.console.conftest import Browser, csrf_of
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, AiohttpClient, Cairn, GatewayTestServer

OpenBrowser = Callable[[], Browser]
PEOPLE = "/orgs/admin/people"
_LINK = re.compile(r'<code class="invite-link">([^<]+)</code>')
_TOKEN = re.compile(r'<code class="new-token">([^<]+)</code>')


async def invite_by_console(browser: Browser, recipient: str, role: str = "member") -> str:
    """Invite through the people page; returns the page after the invitation."""
    page = await browser.get(PEOPLE)
    assert page.status == 200, page.text
    sent = await browser.post(
        f"{PEOPLE}/invite",
        {"recipient": recipient, "role": role, "csrf_token": csrf_of(page.text)},
    )
    assert sent.status == 200, sent.text
    return sent.text


def link_of(html: str) -> str:
    (link,) = _LINK.findall(html)
    return unescape(link)


def join_path(link: str) -> str:
    url = urlsplit(link)
    return f"{url.path}?{url.query}"


async def join(browser: Browser, link: str, login: str, name: str = "") -> tuple[int, str]:
    form = await browser.get(join_path(link))
    assert form.status == 200, form.text
    code = parse_qs(urlsplit(link).query)["code"][0]
    joined = await browser.post(
        "/join", {"code": code, "login": login, "name": name, "csrf_token": csrf_of(form.text)}
    )
    return joined.status, joined.text


async def test_an_admin_invites_by_email_and_the_person_joins(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    admin = open_browser()
    await admin.sign_in()
    html = await invite_by_console(admin, "mia@example.com", "admin")
    link = link_of(html)
    assert "mia@example.com" in html
    # Shown once: the page afterwards lists the invitation, not its link.
    later = await admin.get(PEOPLE)
    assert "mia@example.com" in later.text and link not in unescape(later.text)
    assert "invite-link" not in later.text

    guest = open_browser()
    form = await guest.get(join_path(link))
    assert form.status == 200
    assert "Join admin" in form.text and "<strong>admin</strong>" in form.text
    # A login someone has keeps the form, with the reason; nothing is created.
    status, text = await join(guest, link, "admin")
    assert status == 409 and 'class="problem"' in text
    status, text = await join(guest, link, "mia", "Mia M")
    assert status == 201, text
    (token,) = _TOKEN.findall(text)
    assert "pulumi login http" in text
    me = await cairn.json("GET", "/api/user", token=unescape(token))
    assert me["githubLogin"] == "mia" and me["organizations"][0]["roleId"] == "admin"
    # Signed in with it: the organization's page opens.
    assert (await guest.get("/orgs/admin")).status == 200
    # The link is used up.
    again = await open_browser().get(join_path(link))
    assert again.status == 409 and "already been used" in again.text


async def test_wrong_and_cancelled_links_get_a_clear_page(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    admin = open_browser()
    await admin.sign_in()
    guest = open_browser()
    for path in ("/join", "/join?code=nope", "/join?code=" + "A" * 43):
        page = await guest.get(path)
        assert page.status == 404, path
        assert "not valid" in page.text
    link = link_of(await invite_by_console(admin, "ned@example.com"))
    people = await admin.get(PEOPLE)
    invite_id = re.findall(r'name="invite" value="([0-9a-f]+)"', people.text)[0]
    cancelled = await admin.post(
        f"{PEOPLE}/cancel", {"invite": invite_id, "csrf_token": csrf_of(people.text)}
    )
    assert cancelled.status == 303 and cancelled.location == PEOPLE
    assert "ned@example.com" not in (await admin.get(PEOPLE)).text
    page = await guest.get(join_path(link))
    assert page.status == 404
    # Posting the form of a cancelled link creates nothing either.
    form = await guest.get("/signin")
    code = parse_qs(urlsplit(link).query)["code"][0]
    posted = await guest.post(
        "/join", {"code": code, "login": "ned", "csrf_token": csrf_of(form.text)}
    )
    assert posted.status == 404
    assert (await cairn.call("GET", "/api/admin/users/ned")).status == 404
    # Without the form's CSRF token nothing happens.
    assert (await guest.post("/join", {"code": code, "login": "ned"})).status == 403


async def test_invites_by_login_and_bad_input_on_the_people_page(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    await cairn.new_user("olga")
    admin = open_browser()
    await admin.sign_in()
    html = await invite_by_console(admin, "olga")
    assert "Invited olga" in html and "invite-link" not in html
    page = await admin.get(PEOPLE)
    refused = await admin.post(
        f"{PEOPLE}/invite",
        {"recipient": "olga", "role": "member", "csrf_token": csrf_of(page.text)},
    )
    assert refused.status == 409 and "pending invitation" in refused.text
    bad = await admin.post(
        f"{PEOPLE}/invite", {"recipient": "x", "role": "owner", "csrf_token": csrf_of(page.text)}
    )
    assert bad.status == 400
    assert (await admin.post(f"{PEOPLE}/invite", {"recipient": "a@b.io"})).status == 403
    # A member is no admin: the page is refused.
    member = open_browser()
    await member.sign_in(await cairn.new_user("pat", org_role=("admin", MEMBER)))
    assert (await member.get(PEOPLE)).status == 403
    assert (await member.get("/users")).status == 403


async def test_site_admins_manage_users_and_disabling_ends_sessions(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    admin = open_browser()
    await admin.sign_in()
    page = await admin.get("/users")
    assert page.status == 200 and "admin" in page.text
    created = await admin.post(
        "/users",
        {
            "login": "quinn",
            "name": "Quinn Q",
            "email": "quinn@example.com",
            "issue_token": "on",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert created.status == 200, created.text
    (token,) = _TOKEN.findall(created.text)
    token = unescape(token)
    assert token not in (await admin.get("/users")).text
    dup = await admin.post(
        "/users", {"login": "quinn", "email": "q@example.com", "csrf_token": csrf_of(page.text)}
    )
    assert dup.status == 409
    # Quinn signs in, then is disabled: the very next page ends the session.
    quinn = open_browser()
    await quinn.sign_in(token)
    assert (await quinn.get("/")).status == 200
    disabled = await admin.post("/users/quinn/disable", {"csrf_token": csrf_of(page.text)})
    assert disabled.status == 303
    after = await quinn.get("/")
    assert after.status == 303 and after.location.startswith("/signin")
    assert (await cairn.call("GET", "/api/user", token=token)).status == 401
    listed = await admin.get("/users?state=disabled")
    assert "quinn" in listed.text
    # The last enabled site admin stays.
    last = await admin.post("/users/admin/disable", {"csrf_token": csrf_of(page.text)})
    assert last.status == 409
    enabled = await admin.post("/users/quinn/enable", {"csrf_token": csrf_of(page.text)})
    assert enabled.status == 303
    assert (await cairn.call("GET", "/api/user", token=token)).status == 401
    fresh = await admin.post("/users/quinn/token", {"csrf_token": csrf_of(page.text)})
    assert fresh.status == 200
    (new_token,) = _TOKEN.findall(fresh.text)
    assert (await cairn.call("GET", "/api/user", token=unescape(new_token))).status == 200
    entries = await cairn.json("GET", "/api/admin/auditlogs/export?format=json")
    names = {e["event"] for e in entries["auditLogEvents"]}
    assert {"user.create", "user.disable", "user.enable"} <= names


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Cairn, ManualClock, Browser]]:
    clock = ManualClock()
    settings = settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    system = await start_services(settings, clock=clock)
    channel = signed_channel(system.settings, system.settings.identity_address)
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        client = await aiohttp_client(GatewayTestServer(create_app(system.settings)))
        cairn = Cairn(client, system, identity_pb2_grpc.IdentityServiceStub(channel))
        yield cairn, clock, Browser(session, client.make_url("/"))
    finally:
        await session.close()
        await channel.close(None)
        await system.stop(grace=0)


async def test_an_expired_link_gets_a_clear_page(
    clocked: tuple[Cairn, ManualClock, Browser],
) -> None:
    cairn, clock, browser = clocked
    reply = await cairn.json(
        "POST", "/api/orgs/admin/invites/batch", body={"invites": [{"email": "rae@example.com"}]}
    )
    link = reply["sentInvites"][0]["acceptInviteUrl"]
    assert (await browser.get(join_path(link))).status == 200
    clock.advance(72 * 3600 + 1)
    page = await browser.get(join_path(link))
    assert page.status == 409 and "expired" in page.text
    assert (await cairn.call("GET", "/api/admin/users/rae")).status == 404
