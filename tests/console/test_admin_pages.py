"""The organization admins' console: the audit log page, its export, and members & teams."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape

import orjson

from tests.console.conftest import Browser
from tests.console.data import EVIL, create_stack
from tests.gateway.conftest import ADMIN, MEMBER, VIEWER, Cairn

OpenBrowser = Callable[[], Browser]
AUDIT = "/orgs/admin/audit"
_TARGET = re.compile(r'<td data-label="Target">([^<]*)</td>')
_OLDER = re.compile(r'<a class="older" href="([^"]+)"')
MAX_PAGES = 20
CREATED = ["admin/api/dev", "admin/web/prod", "admin/web/dev"]


def targets(html: str) -> list[str]:
    """The targets of the entries a page shows, top to bottom."""
    return [unescape(found) for found in _TARGET.findall(html)]


def day(offset: int = 0) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


async def stack_by(cairn: Cairn, token: str, project: str, stack: str) -> None:
    await cairn.json(
        "POST",
        f"/api/stacks/admin/{project}",
        token=token,
        body={"stackName": stack, "tags": {"pulumi:project": project}},
    )


async def test_audit_page_lists_filters_and_pages(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn, "web", "dev")
    await create_stack(cairn, "web", "prod")
    ada = await cairn.new_user("ada", org_role=("admin", ADMIN))
    await stack_by(cairn, ada, "api", "dev")
    await stack_by(cairn, ada, "api", "prod")
    # An outsider's attempt is recorded as a refusal.
    mallory = await cairn.new_user("mallory")
    refused = await cairn.call(
        "POST", "/api/stacks/admin/web", token=mallory, body={"stackName": "sneaky"}
    )
    assert refused.status == 404

    browser = open_browser()
    await browser.sign_in()
    page = await browser.get(AUDIT)
    assert page.status == 200, page.text
    created = [t for t in targets(page.text) if t.startswith("admin/")]
    # Newest first.
    assert created[:5] == [
        "admin/web/sneaky",
        "admin/api/prod",
        "admin/api/dev",
        "admin/web/prod",
        "admin/web/dev",
    ], created
    assert page.text.count('data-event="stack.create"') == 5
    assert '<tr class="refused" data-event="stack.create"' in page.text
    assert ">404</span>" in page.text and "mallory" in page.text
    assert "token tests" in page.text  # ada's token, by name
    assert 'href="/orgs/admin/audit.csv"' in page.text

    # Filters: user, event type, time range; the form keeps what was chosen.
    by_ada = await browser.get(f"{AUDIT}?user=ada")
    assert targets(by_ada.text) == ["admin/api/prod", "admin/api/dev"]
    assert 'name="user" value="ada"' in by_ada.text
    assert 'href="/orgs/admin/audit.csv?user=ada"' in by_ada.text
    stacks_only = await browser.get(f"{AUDIT}?event=stack.create&user=admin")
    assert targets(stacks_only.text) == ["admin/web/prod", "admin/web/dev"]
    assert '<option value="stack.create" selected>' in stacks_only.text
    today = await browser.get(f"{AUDIT}?from={day()}&to={day()}&user=ada")
    assert len(targets(today.text)) == 2
    for window in (f"from={day(1)}", f"to={day(-1)}", f"from={day(-3)}&to={day(-2)}"):
        empty = await browser.get(f"{AUDIT}?{window}")
        assert empty.status == 200 and targets(empty.text) == [], window
        assert "No entry matches" in empty.text
    # The range may come in either order.
    swapped = await browser.get(f"{AUDIT}?from={day(1)}&to={day(-1)}&user=ada")
    assert len(targets(swapped.text)) == 2
    for bad in ("from=yesterday", "to=2024-13-01", "event=no.such.event", "size=0", "size=x"):
        refused_page = await browser.get(f"{AUDIT}?{bad}")
        assert refused_page.status == 400, bad
        assert "Bad Request" in refused_page.text

    # Paging with the continuation token: every entry once, in the same order.
    everything = targets(page.text)
    seen: list[str] = []
    path: str | None = f"{AUDIT}?size=2"
    pages = 0
    while path is not None and pages < MAX_PAGES:
        one = await browser.get(path)
        assert one.status == 200, one.text
        shown = targets(one.text)
        assert 1 <= len(shown) <= 2
        seen.extend(shown)
        pages += 1
        older = _OLDER.search(one.text)
        path = unescape(older.group(1)) if older else None
        if path is not None:
            assert "size=2" in path and "after=" in path
            assert "« Newest" in one.text or pages == 1
    assert path is None
    assert seen == everything
    assert pages == -(-len(everything) // 2)
    # Filters carry over to the next page.
    first = await browser.get(f"{AUDIT}?size=1&user=ada")
    older = _OLDER.search(first.text)
    assert older and "user=ada" in unescape(older.group(1))
    second = await browser.get(unescape(older.group(1)))
    assert targets(second.text) == ["admin/api/dev"]
    assert _OLDER.search(second.text) is None


async def test_audit_page_is_for_admins_only(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn)
    outsider = open_browser()
    await outsider.sign_in(await cairn.new_user("mallory"))
    for path in (AUDIT, f"{AUDIT}.csv", f"{AUDIT}.json"):
        page = await outsider.get(path)
        assert page.status == 404, path
        assert "admin/web/dev" not in page.text
    for login, role in (("mo", MEMBER), ("vera", VIEWER)):
        member = open_browser()
        await member.sign_in(await cairn.new_user(login, org_role=("admin", role)))
        for path in (AUDIT, f"{AUDIT}.csv"):
            page = await member.get(path)
            assert page.status == 403, (login, path)
            assert "Forbidden" in page.text and "admin/web/dev" not in page.text
        # Neither the organization page nor the list of organizations links to it.
        for path in ("/orgs/admin", "/"):
            listing = await member.get(path)
            assert listing.status == 200
            assert 'href="/orgs/admin/audit"' not in listing.text, (login, path)
            assert "Members &amp; teams" not in listing.text
    admin = open_browser()
    await admin.sign_in(await cairn.new_user("ada", org_role=("admin", ADMIN)))
    for path in ("/orgs/admin", "/"):
        assert 'href="/orgs/admin/audit"' in (await admin.get(path)).text, path
    assert (await admin.get(AUDIT)).status == 200
    # Without a session: sign in first.
    anonymous = open_browser()
    page = await anonymous.get(f"{AUDIT}.csv")
    assert page.status == 303 and page.location.startswith("/signin?next=")


async def test_audit_entries_and_teams_are_escaped(cairn: Cairn, open_browser: OpenBrowser) -> None:
    created = await cairn.call(
        "POST",
        "/api/stacks/admin/web",
        body={"stackName": "dev"},
        headers={"User-Agent": EVIL},
    )
    assert created.status == 200
    await cairn.json(
        "POST",
        "/api/orgs/admin/teams/pulumi",
        body={"name": "ops", "displayName": f"Ops {EVIL}", "description": EVIL},
    )
    await cairn.json(
        "PATCH",
        "/api/orgs/admin/teams/ops",
        status=200,
        body={"addStackPermission": {"projectName": "web", "stackName": "dev", "permission": 102}},
    )
    browser = open_browser()
    await browser.sign_in()
    audit = await browser.get(AUDIT)
    organization = await browser.get("/orgs/admin")
    for page in (audit, organization):
        assert page.status == 200
        assert "<script>alert" not in page.text, page.text
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert escaped in audit.text  # the user agent
    assert f"Ops {escaped}" in organization.text and f'<br><span class="muted">{escaped}' in (
        organization.text
    )
    # Members with their roles and teams; teams with their stack grants.
    assert 'id="people"' in organization.text
    people = organization.text.split('id="people"', 1)[1]
    assert re.search(r'data-label="Member">admin.*?data-label="Role">admin', people, re.S)
    assert 'data-label="Teams">ops</td>' in people
    assert '<span class="tag-name">web/dev</span><span class="tag-value">write</span>' in people


async def test_audit_export_works_with_the_session(cairn: Cairn, open_browser: OpenBrowser) -> None:
    await create_stack(cairn, "web", "dev")
    await create_stack(cairn, "web", "prod")
    # A value a spreadsheet would run as a formula is defused.
    await cairn.call(
        "POST",
        "/api/stacks/admin/api",
        body={"stackName": "dev"},
        headers={"User-Agent": "=HYPERLINK(1)"},
    )
    browser = open_browser()
    await browser.sign_in()
    exported = await browser.get(f"{AUDIT}.csv")
    assert exported.status == 200, exported.text
    assert exported.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    created = [row for row in rows if row["event"] == "stack.create"]
    assert [row["target"] for row in created] == CREATED
    assert {row["userName"] for row in created} == {"admin"}
    assert created[0]["userAgent"] == "'=HYPERLINK(1)"
    assert all(row["status"] == "200" for row in created)

    # The page's filters apply; JSON too.
    filtered = await browser.get(f"{AUDIT}.json?event=stack.create&from={day()}&to={day()}")
    assert filtered.status == 200
    assert filtered.headers["Content-Type"].startswith("application/json")
    events = orjson.loads(filtered.text)["auditLogEvents"]
    assert [e["target"] for e in events] == CREATED
    past = await browser.get(f"{AUDIT}.csv?to={day(-1)}")
    assert list(csv.DictReader(io.StringIO(past.text))) == []
    # Wider than one export may cover: the service's refusal, as a page.
    wide = await browser.get(f"{AUDIT}.csv?from=2000-01-01&to={day()}")
    assert wide.status == 400 and "at most" in wide.text
    assert (await browser.get(f"{AUDIT}.xml")).status == 404
