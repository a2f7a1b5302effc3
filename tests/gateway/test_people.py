"""People join: site admins manage users, users edit their profile, and invitation links
bring people without an account into an organization (REST; the console's pages are in
tests/console/test_people_pages.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from gateway.audit import AUDIT_RECORDER
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

USERS = "/api/admin/users"
ACCEPT = "/api/invites/accept"


async def status(cairn: Cairn, method: str, path: str, token: str | None, body: Any = None) -> int:
    response = await cairn.call(method, path, token=token, body=body)
    await response.read()
    return response.status


async def create_user(cairn: Cairn, login: str, *, issue_token: bool = True) -> str:
    """A user created by the site admin; returns their first token ('' without one)."""
    reply = await cairn.json(
        "POST",
        USERS,
        201,
        body={"login": login, "email": f"{login}@example.com", "issueToken": issue_token},
    )
    assert reply["user"]["githubLogin"] == login
    return str(reply["token"]["tokenValue"]) if issue_token else ""


async def invite_email(cairn: Cairn, org: str, email: str, role: str = "member") -> str:
    """Invite an address without an account; returns the code of its link."""
    reply = await cairn.json(
        "POST", f"/api/orgs/{org}/invites/batch", body={"invites": [{"email": email, "role": role}]}
    )
    (sent,) = reply["sentInvites"]
    url = urlsplit(sent["acceptInviteUrl"])
    assert url.path == "/join"
    code: str = parse_qs(url.query)["code"][0]
    return code


async def user_count(cairn: Cairn) -> int:
    reply = await cairn.json("GET", f"{USERS}?pageSize=500")
    return len(reply["users"])


async def test_site_admins_create_list_get_disable_and_enable_users(cairn: Cairn) -> None:
    created = await cairn.json(
        "POST",
        USERS,
        201,
        body={
            "login": "ada",
            "name": "Ada L",
            "email": "ada@example.com",
            "avatarUrl": "https://img.example.com/ada.png",
        },
    )
    assert "token" not in created
    assert created["user"] | {"id": "", "created": 0} == {
        "id": "",
        "githubLogin": "ada",
        "name": "Ada L",
        "email": "ada@example.com",
        "avatarUrl": "https://img.example.com/ada.png",
        "siteAdmin": False,
        "created": 0,
        "disabled": False,
        "disabledAt": 0,
    }
    bob = await create_user(cairn, "bob")
    me = await cairn.json("GET", "/api/user", token=bob)
    assert me["githubLogin"] == "bob" and me["organizations"] == []

    listed = await cairn.json("GET", USERS)
    assert [u["githubLogin"] for u in listed["users"]] == ["ada", "admin", "bob"]
    by_email = await cairn.json("GET", f"{USERS}?query=ADA@EXAMPLE")
    assert [u["githubLogin"] for u in by_email["users"]] == ["ada"]
    first = await cairn.json("GET", f"{USERS}?pageSize=2")
    assert [u["githubLogin"] for u in first["users"]] == ["ada", "admin"]
    rest = await cairn.json("GET", f"{USERS}?pageSize=2&continuationToken=admin")
    assert [u["githubLogin"] for u in rest["users"]] == ["bob"]
    assert "continuationToken" not in rest and first["continuationToken"] == "admin"
    assert (await cairn.json("GET", f"{USERS}/ada"))["email"] == "ada@example.com"

    disabled = await cairn.json("POST", f"{USERS}/bob/disable")
    assert disabled["disabled"] and disabled["disabledAt"] > 0
    assert await status(cairn, "GET", "/api/user", bob) == 401
    only_disabled = await cairn.json("GET", f"{USERS}?state=disabled")
    assert [u["githubLogin"] for u in only_disabled["users"]] == ["bob"]
    enabled = await cairn.json("POST", f"{USERS}/bob/enable")
    assert not enabled["disabled"]
    # Re-enabling brings no revoked token back; a new one may be issued, shown once.
    assert await status(cairn, "GET", "/api/user", bob) == 401
    reissued = await cairn.json("POST", f"{USERS}/bob/enable", body={"issueToken": True})
    assert await status(cairn, "GET", "/api/user", reissued["token"]["tokenValue"]) == 200
    assert await status(cairn, "GET", "/api/user", bob) == 401
    only_enabled = await cairn.json("GET", f"{USERS}?state=enabled")
    assert [u["githubLogin"] for u in only_enabled["users"]] == ["ada", "admin", "bob"]


async def test_user_routes_refuse_bad_input_and_other_callers(cairn: Cairn) -> None:
    bob = await create_user(cairn, "bob")
    before = await user_count(cairn)
    bad_bodies: list[Any] = [
        {"login": "bad login", "email": "x@example.com"},
        {"login": "ok", "email": "not-an-email"},
        {"login": "ok", "email": "x@example.com", "avatarUrl": "javascript:alert(1)"},
        {"login": "ok", "email": "x@example.com", "avatarUrl": "ftp://example.com/a.png"},
        {"login": "ok", "email": "x@example.com", "name": "n" * 300},
        {"login": "ok"},
        {"email": "x@example.com"},
        {"login": "ok", "email": "x@example.com", "surprise": 1},
        {"login": 7, "email": "x@example.com"},
        {"login": "ok", "email": "x@example.com", "issueToken": "yes"},
        [],
    ]
    for body in bad_bodies:
        assert await status(cairn, "POST", USERS, ADMIN_TOKEN, body) == 400, body
    assert (
        await status(cairn, "POST", USERS, ADMIN_TOKEN, {"login": "bob", "email": "b@e.io"}) == 409
    )
    # An organization's name is not a login anyone may take.
    assert (
        await status(cairn, "POST", USERS, ADMIN_TOKEN, {"login": "admin", "email": "a@e.io"})
        == 409
    )
    assert await user_count(cairn) == before
    for query in ("state=gone", "pageSize=0", "pageSize=501", "pageSize=x"):
        assert await status(cairn, "GET", f"{USERS}?{query}", ADMIN_TOKEN) == 400, query
    assert await status(cairn, "GET", f"{USERS}/nobody", ADMIN_TOKEN) == 404
    enable = f"{USERS}/bob/enable"
    assert await status(cairn, "POST", enable, ADMIN_TOKEN, {"issueToken": "yes"}) == 400
    assert await status(cairn, "POST", enable, ADMIN_TOKEN, {"other": True}) == 400
    assert await status(cairn, "POST", f"{USERS}/nobody/disable", ADMIN_TOKEN) == 404
    # Not a site admin: 403; no token: 401.
    for method, path, body in (
        ("POST", USERS, {"login": "eve", "email": "eve@example.com"}),
        ("GET", USERS, None),
        ("GET", f"{USERS}/bob", None),
        ("POST", f"{USERS}/admin/disable", None),
        ("POST", f"{USERS}/bob/enable", None),
        ("POST", f"{USERS}/bob/enable", {"issueToken": True}),
    ):
        assert await status(cairn, method, path, bob, body) == 403, path
        assert await status(cairn, method, path, None, body) == 401, path
        assert await status(cairn, method, path, "pul-" + "0" * 40, body) == 401, path
    assert await user_count(cairn) == before


async def test_the_last_enabled_site_admin_cannot_be_disabled(cairn: Cairn) -> None:
    assert await status(cairn, "POST", f"{USERS}/admin/disable", ADMIN_TOKEN) == 409
    assert await status(cairn, "GET", "/api/user", ADMIN_TOKEN) == 200


async def test_disabling_kills_console_sessions_and_invitations(cairn: Cairn) -> None:
    bob = await create_user(cairn, "bob")
    await cairn.json("POST", "/api/orgs/admin/invites/batch", body={"invites": [{"email": "bob"}]})
    (invite,) = (await cairn.json("GET", "/api/user/pending-invites", token=bob))["invites"]
    await cairn.json("POST", f"{USERS}/bob/disable")
    # A disabled user cannot be invited either.
    body = {"invites": [{"email": "bob@example.com"}]}
    assert await status(cairn, "POST", "/api/orgs/admin/invites/batch", ADMIN_TOKEN, body) == 409
    await cairn.json("POST", f"{USERS}/bob/enable")
    path = f"/api/orgs/admin/invites/{invite['id']}"
    # The old token stays dead, so the invitation cannot be accepted with it.
    assert await status(cairn, "PATCH", path, bob) == 401


async def test_own_profile_is_edited_and_validated(cairn: Cairn) -> None:
    bob = await create_user(cairn, "bob")
    me = await cairn.json(
        "PATCH",
        "/api/user",
        token=bob,
        body={"name": "Bob B", "email": "bob@new.example", "avatarUrl": "http://a.example/b"},
    )
    assert (me["name"], me["email"], me["avatarUrl"]) == (
        "Bob B",
        "bob@new.example",
        "http://a.example/b",
    )
    me = await cairn.json("PATCH", "/api/user", token=bob, body={"name": "Bobby"})
    assert (me["name"], me["email"]) == ("Bobby", "bob@new.example")
    for body in (
        {"email": "nope"},
        {"avatarUrl": "data:text/html,x"},
        {"name": "x" * 256},
        {"email": "a@b.c", "login": "other"},
        {"name": 3},
    ):
        assert await status(cairn, "PATCH", "/api/user", bob, body) == 400, body
    assert (await cairn.json("GET", "/api/user", token=bob))["name"] == "Bobby"
    assert await status(cairn, "PATCH", "/api/user", None, {"name": "x"}) == 401
    entries = await cairn.json("GET", "/api/admin/auditlogs/export?format=json")
    assert any(e["event"] == "user.profile.update" for e in entries["auditLogEvents"])


async def test_an_invitation_link_onboards_a_new_person(cairn: Cairn) -> None:
    code = await invite_email(cairn, "admin", "carol@example.com", "admin")
    pending = (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"]
    assert [(i["email"], i["roleId"], i["status"]) for i in pending] == [
        ("carol@example.com", "admin", "pending")
    ]
    assert code not in str(pending)
    body = {"code": code, "login": "carol", "name": "Carol C"}
    joined = await cairn.json("POST", ACCEPT, 201, token=None, body=body)
    assert joined["user"]["githubLogin"] == "carol"
    assert joined["user"]["email"] == "carol@example.com"
    assert joined["organization"]["githubLogin"] == "admin"
    assert joined["loginCommand"].startswith("pulumi login http")
    token = joined["token"]["tokenValue"]
    me = await cairn.json("GET", "/api/user", token=token)
    assert [(o["githubLogin"], o["roleId"]) for o in me["organizations"]] == [("admin", "admin")]
    assert (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"] == []
    # Used once: the second use is refused and creates nothing.
    again = {"code": code, "login": "carol2"}
    assert await status(cairn, "POST", ACCEPT, None, again) == 409
    assert await status(cairn, "GET", f"{USERS}/carol2", ADMIN_TOKEN) == 404


async def test_bad_links_create_nothing(cairn: Cairn) -> None:
    await create_user(cairn, "taken", issue_token=False)
    code = await invite_email(cairn, "admin", "dan@example.com")
    before = await user_count(cairn)
    for body in (
        {"code": "x" * 43, "login": "dan"},
        {"code": "short", "login": "dan"},
        {"code": code, "login": "taken"},
        {"code": code, "login": "admin"},
        {"code": code, "login": "bad login"},
        {"code": code},
        {"login": "dan"},
        {"code": code, "login": "dan", "role": "admin"},
    ):
        assert await status(cairn, "POST", ACCEPT, None, body) in (400, 404, 409), body
    assert await status(cairn, "POST", ACCEPT, None, {"code": "x" * 43, "login": "d"}) == 404
    assert await status(cairn, "POST", ACCEPT, None, {"code": code, "login": "taken"}) == 409
    assert await user_count(cairn) == before
    # Still good after those refusals; cancelled, it is a wrong link.
    (invite,) = (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"]
    await cairn.json("DELETE", f"/api/orgs/admin/invites/{invite['id']}", 200)
    assert await status(cairn, "POST", ACCEPT, None, {"code": code, "login": "dan"}) == 404
    assert await user_count(cairn) == before
    # Inviting one address twice while the first link stands is a conflict.
    await invite_email(cairn, "admin", "erin@example.com")
    body2 = {"invites": [{"email": "ERIN@example.com"}]}
    assert await status(cairn, "POST", "/api/orgs/admin/invites/batch", ADMIN_TOKEN, body2) == 409
    # So is naming one address twice in a batch (nothing is sent).
    twice = {
        "invites": [{"email": "gus@example.com"}, {"email": "gus@example.com", "role": "admin"}]
    }
    assert await status(cairn, "POST", "/api/orgs/admin/invites/batch", ADMIN_TOKEN, twice) == 409
    for bad in ({"invites": [{"email": "no@pe"}]}, {"invites": [{"email": "a b@example.com"}]}):
        assert await status(cairn, "POST", "/api/orgs/admin/invites/batch", ADMIN_TOKEN, bad) in (
            400,
            404,
        )


@pytest.fixture
async def clocked(
    settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[Cairn, ManualClock]]:
    """The system on SQLite with a clock the test moves."""
    clock = ManualClock()
    short_links = settings.model_copy(update={"invite_ttl_hours": 2})
    async for running in running_cairn(short_links, aiohttp_client, clock=clock):
        yield running, clock


async def test_an_expired_link_is_refused_and_can_be_sent_again(
    clocked: tuple[Cairn, ManualClock],
) -> None:
    cairn, clock = clocked
    code = await invite_email(cairn, "admin", "fay@example.com")
    clock.advance(2 * 3600 + 1)
    (invite,) = (await cairn.json("GET", "/api/orgs/admin/invites"))["invites"]
    assert invite["status"] == "expired"
    response = await cairn.call("POST", ACCEPT, token=None, body={"code": code, "login": "fay"})
    assert response.status == 409 and "expired" in (await response.json())["message"]
    assert await status(cairn, "GET", f"{USERS}/fay", ADMIN_TOKEN) == 404
    # An expired link does not stand in the way of a new invitation.
    fresh = await invite_email(cairn, "admin", "fay@example.com")
    assert fresh != code
    await cairn.json("POST", ACCEPT, 201, token=None, body={"code": fresh, "login": "fay"})


async def test_no_link_or_token_in_logs_or_audit_records(
    cairn: Cairn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as captured:
        code = await invite_email(cairn, "admin", "gil@example.com")
        await status(cairn, "POST", ACCEPT, None, {"code": code + "x", "login": "gil"})
        joined = await cairn.json(
            "POST", ACCEPT, 201, token=None, body={"code": code, "login": "gil"}
        )
        await status(cairn, "POST", ACCEPT, None, {"code": code, "login": "gil2"})
        first = await create_user(cairn, "hal")
        await cairn.json("POST", f"{USERS}/hal/disable")
        page = await cairn.client.get(f"/join?code={code}")
        await page.read()
    secrets = [code, joined["token"]["tokenValue"], first]
    logged = repr(captured) + caplog.text + repr([r.__dict__ for r in caplog.records])
    await cairn.client.app[AUDIT_RECORDER].flush(5)
    engine = create_async_engine(cairn.system.settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM identity_audit_events"))).all()
            invites = (await connection.execute(text("SELECT * FROM identity_invites"))).all()
    finally:
        await engine.dispose()
    audited = repr(rows)
    assert "invite.link.accept" in audited and "user.create" in audited
    assert "user.disable" in audited
    for secret in secrets:
        assert secret not in logged
        assert secret not in audited
        assert secret not in repr(invites)
