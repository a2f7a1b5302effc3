"""Console pages through the real gateway: sign-in, permissions, escaping, CSRF, live progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from gateway.console.render import CONTENT_SECURITY_POLICY
from gateway.console.session import CSRF_COOKIE, SESSION_COOKIE
from tests.console.conftest import ADMIN_TOKEN, Browser, csrf_of
from tests.console.data import (
    BUCKET_URN,
    DIAGNOSTIC,
    EVIL,
    EVIL_URN,
    PASSWORD,
    PET_URN,
    PROVIDER_URN,
    create_stack,
    failed_update,
    set_tags,
    succeeded_update,
)
from tests.gateway.cli import begin
from tests.gateway.conftest import ADMIN, MEMBER, VIEWER, Cairn

OpenBrowser = Callable[[], Browser]
STACK = "/orgs/admin/web/dev"


async def test_pages_need_a_session(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn)
    browser = open_browser()
    for path in ("/", "/orgs/admin", STACK, f"{STACK}/updates/1", "/copilot"):
        page = await browser.get(path)
        assert page.status == 303, path
        assert page.location == f"/signin?next={quote(path, safe='')}", path
    # A forged or damaged cookie counts as none, and is dropped.
    browser.session.cookie_jar.update_cookies(
        {SESSION_COOKIE: "bm90IGEgc2Vzc2lvbg"}, response_url=browser.base
    )
    page = await browser.get("/orgs/admin")
    assert page.status == 303
    assert browser.cookie(SESSION_COOKIE) in (None, "")


async def test_sign_in_keeps_the_token_out_of_the_page(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    signed = await browser.sign_in(next_path="/orgs/admin")
    assert signed.location == "/orgs/admin"
    cookie = signed.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    value = browser.cookie(SESSION_COOKIE)
    assert value and ADMIN_TOKEN not in value
    home = await browser.get("/")
    assert home.status == 200
    assert 'href="/orgs/admin"' in home.text
    assert ADMIN_TOKEN not in home.text
    assert home.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert home.headers["X-Frame-Options"] == "DENY"


async def test_a_wrong_token_is_refused(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    form = await browser.get("/signin")
    page = await browser.post(
        "/signin", {"token": "pul-wrong", "next": "/", "csrf_token": csrf_of(form.text)}
    )
    assert page.status == 401
    assert "not valid" in page.text
    assert browser.cookie(SESSION_COOKIE) is None


async def test_sign_in_never_redirects_to_another_site(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test"):
        browser = open_browser()
        signed = await browser.sign_in(next_path=target)
        assert signed.location == "/", target


async def test_forms_without_a_valid_csrf_token_are_refused(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    browser = open_browser()
    form = await browser.get("/signin")
    token = csrf_of(form.text)
    missing = await browser.post("/signin", {"token": ADMIN_TOKEN, "next": "/"})
    assert missing.status == 403
    forged = await browser.post("/signin", {"token": ADMIN_TOKEN, "csrf_token": "0" * 64})
    assert forged.status == 403
    cross_site = await browser.post(
        "/signin", {"token": ADMIN_TOKEN, "csrf_token": token}, Origin="https://evil.test"
    )
    assert cross_site.status == 403
    assert browser.cookie(SESSION_COOKIE) is None

    # Another browser's token is no good either: it is bound to that browser's nonce.
    other = open_browser()
    stolen = await other.post("/signin", {"token": ADMIN_TOKEN, "csrf_token": token})
    assert stolen.status == 403

    await browser.sign_in()
    home = await browser.get("/")
    refused = await browser.post("/signout", {"csrf_token": token})
    assert refused.status == 403
    assert (await browser.get("/")).status == 200
    signed_out = await browser.post("/signout", {"csrf_token": csrf_of(home.text)})
    assert signed_out.status == 303 and signed_out.location == "/signin"
    assert (await browser.get("/")).status == 303
    # The copilot's form is protected the same way.
    await browser.sign_in()
    chat = await browser.post("/copilot", {"query": "hello", "org": "admin"})
    assert chat.status == 403


async def test_signing_in_draws_a_fresh_csrf_nonce(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    form = await browser.get("/signin")
    assert browser.cookie(CSRF_COOKIE)
    await browser.sign_in()
    home = await browser.get("/")
    assert csrf_of(home.text) != csrf_of(form.text)


async def test_outsiders_get_404_and_viewers_can_read(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    path = await create_stack(cairn)
    await succeeded_update(cairn, path)
    outsider = open_browser()
    await outsider.sign_in(await cairn.new_user("mallory"))
    for page_path in (
        "/orgs/admin",
        STACK,
        f"{STACK}/updates",
        f"{STACK}/updates/1",
        f"{STACK}/updates/1/live",
        f"{STACK}/resource?urn={quote(PET_URN)}",
        "/orgs/admin/agent-pools",
        "/orgs/admin/web/nope",
    ):
        page = await outsider.get(page_path)
        assert page.status == 404, page_path
        assert "pet-id" not in page.text
    # The REST API answers the same.
    mallory = await cairn.new_user("mallory2")
    assert (await cairn.call("GET", "/api/stacks/admin/web/dev", token=mallory)).status == 404

    viewer = open_browser()
    await viewer.sign_in(await cairn.new_user("vera", org_role=("admin", VIEWER)))
    for page_path in ("/orgs/admin", STACK, f"{STACK}/updates", f"{STACK}/updates/1"):
        page = await viewer.get(page_path)
        assert page.status == 200, page_path
    # Agent pools need an admin, in the API and on the page.
    pools = await viewer.get("/orgs/admin/agent-pools")
    assert pools.status == 403
    assert "Forbidden" in pools.text
    member = open_browser()
    await member.sign_in(await cairn.new_user("mo", org_role=("admin", MEMBER)))
    assert (await member.get("/orgs/admin/agent-pools")).status == 403
    admin = open_browser()
    await admin.sign_in(await cairn.new_user("ada", org_role=("admin", ADMIN)))
    assert (await admin.get("/orgs/admin/agent-pools")).status == 200


async def test_user_controlled_text_is_escaped(cairn: Cairn, open_browser: OpenBrowser) -> None:
    path = await create_stack(cairn)
    run = await begin(cairn, path, message=EVIL)
    run.resources = []
    await run.send_events(
        [{"diagnosticEvent": {"message": EVIL, "severity": "warning", "color": "raw"}}]
    )
    await run.complete("failed")
    await succeeded_update(cairn, path, message=EVIL)
    await set_tags(cairn, path, owner=EVIL)
    browser = open_browser()
    await browser.sign_in()
    pages = [
        await browser.get("/orgs/admin"),
        await browser.get(STACK),
        await browser.get(f"{STACK}/updates"),
        await browser.get(f"{STACK}/updates/1"),
        await browser.get(f"{STACK}/updates/2"),
        await browser.get(f"{STACK}/resource?urn={quote(EVIL_URN)}"),
        await browser.get(f"/nowhere/{quote(EVIL)}"),
    ]
    for page in pages:
        assert "<script>alert" not in page.text, page.text
        assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[0].text  # the tag value
    assert "pet&lt;img src=x onerror=alert(1)&gt;" in pages[1].text  # the resource's name
    assert pages[5].status == 200 and pages[6].status == 404


async def test_stack_page_masks_secrets_and_groups_resources(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    path = await create_stack(cairn)
    await succeeded_update(cairn, path)
    await set_tags(cairn, path, team="blue")
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(STACK)
    assert page.status == 200
    assert PASSWORD not in page.text
    assert "[secret]" in page.text and "http://example.test" in page.text
    assert "random:index/randomPet:RandomPet" in page.text
    assert "pulumi:providers:random" in page.text
    assert "team" in page.text and "blue" in page.text
    searched = await browser.get(f"{STACK}?q=provider")
    assert "default_4_16_0" in searched.text and "pet-id" not in searched.text
    nothing = await browser.get(f"{STACK}?q=zebra")
    assert "No resource matches" in nothing.text

    detail = await browser.get(f"{STACK}/resource?urn={quote(PET_URN)}")
    assert detail.status == 200
    assert PASSWORD not in detail.text and "[secret]" in detail.text
    assert "default_4_16_0" in detail.text  # its provider
    assert "web-dev" in detail.text  # its parent, the stack
    assert "pet&lt;img" in detail.text  # depended on by the hostile-named resource
    missing = await browser.get(f"{STACK}/resource?urn={quote(PROVIDER_URN + 'x')}")
    assert missing.status == 404


async def test_stack_list_filters_and_shows_the_last_update(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    dev = await create_stack(cairn, env="dev")
    await create_stack(cairn, "web", "prod", env="prod")
    await create_stack(cairn, "api", "dev")
    await succeeded_update(cairn, dev)
    await failed_update(cairn, dev)
    browser = open_browser()
    await browser.sign_in()
    listing = await browser.get("/orgs/admin")
    assert listing.status == 200
    for name in ("web/dev", "web/prod", "api/dev"):
        assert name in listing.text
    assert "result-failed" in listing.text
    assert (await browser.get("/orgs/admin?project=api")).text.count("stack-link") == 1
    tagged = await browser.get("/orgs/admin?tag=env%3Dprod")
    assert "web/prod" in tagged.text and "web/dev" not in tagged.text
    named = await browser.get("/orgs/admin?name=prod")
    assert "web/prod" in named.text and "api/dev" not in named.text
    none = await browser.get("/orgs/admin?name=zebra")
    assert "No stack matches" in none.text


async def test_failed_update_shows_its_diagnostic(cairn: Cairn, open_browser: OpenBrowser) -> None:
    path = await create_stack(cairn)
    await succeeded_update(cairn, path)
    await failed_update(cairn, path)
    browser = open_browser()
    await browser.sign_in()
    history = await browser.get(f"{STACK}/updates")
    assert 'href="/orgs/admin/web/dev/updates/2"' in history.text
    page = await browser.get(f"{STACK}/updates/2")
    assert page.status == 200
    assert 'id="diagnostics"' in page.text
    assert DIAGNOSTIC in page.text
    assert "entry sev-error diagnostic" in page.text
    assert "result-failed" in page.text
    assert quote(BUCKET_URN, safe="") in page.text  # the failing resource, linked
    assert "data-live-url" not in page.text
    ok = await browser.get(f"{STACK}/updates/1")
    assert 'id="diagnostics"' not in ok.text and "result-succeeded" in ok.text
    assert "op-create" in ok.text
    assert (await browser.get(f"{STACK}/updates/9")).status == 404


async def test_live_progress_streams_until_the_update_ends(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    path = await create_stack(cairn)
    run = await begin(cairn, path)
    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(f"{STACK}/updates/1")
    assert "data-live-url" in page.text and "result-in-progress" in page.text
    await run.send_events([{"stdoutEvent": {"message": "first line", "color": "raw"}}])
    url = browser.base.join(URL(f"{STACK}/updates/1/live?after=0"))
    seen: list[tuple[str, dict[str, object]]] = []
    async with browser.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        async for raw in stream.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                seen.append((name, orjson.loads(line[len("data: ") :])))
                if name == "entry" and len([n for n, _ in seen if n == "entry"]) == 1:
                    await run.send_events(
                        [{"diagnosticEvent": {"message": "careful", "severity": "warning"}}]
                    )
                    await asyncio.sleep(0.2)
                    await run.complete()
                if name == "end":
                    break
    entries = [data for name, data in seen if name == "entry"]
    assert [e["text"] for e in entries] == ["first line", "careful"]
    assert entries[1]["severity"] == "warning"
    assert seen[-1][0] == "end" and seen[-1][1]["result"] == "succeeded"


async def test_copilot_answers_about_an_update(cairn: Cairn, open_browser: OpenBrowser) -> None:
    path = await create_stack(cairn)
    await failed_update(cairn, path)
    browser = open_browser()
    await browser.sign_in()
    panel = await browser.get("/copilot?org=admin&project=web&stack=dev&version=1")
    assert panel.status == 200 and "update #1" in panel.text
    answer = await browser.post(
        "/copilot",
        {
            "csrf_token": csrf_of(panel.text),
            "org": "admin",
            "project": "web",
            "stack": "dev",
            "version": "1",
            "query": "What went wrong?",
            "conversation_id": "",
        },
    )
    assert answer.status == 200, answer.text
    assert "What went wrong?" in answer.text
    assert "logs" in answer.text  # the failing bucket's name
    assert 'name="conversation_id" value=""' not in answer.text


async def test_static_files_and_unknown_pages(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    css = await browser.get("/static/console.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "@media" in css.text
    script = await browser.get("/static/console.js")
    assert script.status == 200 and "EventSource" in script.text
    assert (await browser.get("/static/../app.py")).status == 404
    missing = await browser.get("/no/such/page")
    assert missing.status == 404 and missing.headers["Content-Type"].startswith("text/html")
    # The REST API keeps its JSON errors.
    api = await cairn.call("GET", "/api/no/such/route")
    assert api.status == 404
    assert orjson.loads(await api.read())["code"] == 404


async def test_agent_pools_show_their_agents(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    await browser.sign_in()
    empty = await browser.get("/orgs/admin/agent-pools")
    assert empty.status == 200 and "has no agent pools" in empty.text
    pool = await cairn.json(
        "POST", "/api/orgs/admin/agent-pools", body={"name": f"runners{EVIL}", "description": ""}
    )
    waiting = await browser.get("/orgs/admin/agent-pools")
    assert "No agent has registered" in waiting.text
    await cairn.json(
        "POST",
        "/api/agents/register",
        token=pool["tokenValue"],
        body={"version": "1.2.3", "platform": "linux", "hostname": "build-07", "pid": 4242},
    )
    page = await browser.get("/orgs/admin/agent-pools")
    assert "build-07" in page.text and "4242" in page.text and "1.2.3" in page.text
    assert "status-online" in page.text
    assert "<script>alert" not in page.text and "runners&lt;script&gt;" in page.text
