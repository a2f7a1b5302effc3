"""Webhook pages through the real gateway: an organization's and a stack's hooks with their
deliveries, sending a ping to a real receiver, escaping, the secret never shown, CSRF, and
who may see and ping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from gateway.console.hooks import numbered
from protos.cairn.v1 import hooks_pb2
from tests.console.conftest import Browser, csrf_of
from tests.console.data import EVIL, create_stack
from tests.gateway.conftest import MEMBER, VIEWER, Cairn
from tests.gateway.receiver import Receiver, receiver

OpenBrowser = Callable[[], Browser]
STACK = "/orgs/admin/web/dev"
ORG_HOOKS_API = "/api/orgs/admin/hooks"
STACK_HOOKS_API = "/api/stacks/admin/web/dev/hooks"
SECRET = "hook-secret-c0ffee-77"


@pytest.fixture
async def sink() -> AsyncIterator[Receiver]:
    async with receiver() as found:
        yield found


async def make_hooks(cairn: Cairn, url: str) -> None:
    """A stack, then an organization hook (escaping, secret, filters) and a stack hook."""
    await create_stack(cairn)
    await cairn.json(
        "POST",
        ORG_HOOKS_API,
        body={
            "organizationName": "admin",
            "name": "ci",
            "displayName": EVIL,
            "payloadUrl": url,
            "secret": SECRET,
            "filters": ["update_failed", "stack_deleted"],
        },
    )
    await cairn.json(
        "POST",
        STACK_HOOKS_API,
        body={
            "organizationName": "admin",
            "projectName": "web",
            "stackName": "dev",
            "name": "chat",
            "displayName": "Chat room",
            "payloadUrl": url,
            "format": "slack",
            "active": False,
        },
    )


async def test_pages_list_hooks_and_a_ping_records_a_delivery(
    cairn: Cairn, open_browser: OpenBrowser, sink: Receiver
) -> None:
    await make_hooks(cairn, sink.url)
    browser = open_browser()
    await browser.sign_in()

    org = await browser.get("/orgs/admin")
    assert 'href="/orgs/admin/hooks"' in org.text
    stack = await browser.get(STACK)
    assert f'href="{STACK}/hooks"' in stack.text

    page = await browser.get("/orgs/admin/hooks")
    assert page.status == 200, page.text
    assert EVIL not in page.text and "&lt;script&gt;" in page.text
    assert SECRET not in page.text and "set (signs each delivery)" in page.text
    assert sink.url in page.text and "update_failed, stack_deleted" in page.text
    assert ">raw<" in page.text and "No deliveries yet." in page.text
    assert 'action="/orgs/admin/hooks/ci/ping"' in page.text

    # Without the form's token nothing is sent.
    refused = await browser.post("/orgs/admin/hooks/ci/ping", {})
    assert refused.status == 403
    assert sink.received == []

    pinged = await browser.post("/orgs/admin/hooks/ci/ping", {"csrf_token": csrf_of(page.text)})
    assert pinged.status == 303, pinged.text
    assert pinged.location.startswith("/orgs/admin/hooks?pinged=")
    assert sink.kinds() == ["ping"]
    deliveries = await cairn.json("GET", f"{ORG_HOOKS_API}/ci/deliveries")
    assert len(deliveries) == 1 and deliveries[0]["responseCode"] == 200
    delivery_id = deliveries[0]["id"]
    assert pinged.location.endswith(f"?pinged={delivery_id}#delivery-{delivery_id}")

    shown = await browser.get(pinged.location)
    assert shown.status == 200
    assert 'id="ping-result"' in shown.text and "answered 200" in shown.text
    assert f'id="delivery-{delivery_id}"' in shown.text
    row = shown.text.split(f'id="delivery-{delivery_id}"', 1)[1].split("</tr>", 1)[0]
    assert ">ping<" in row and ">200<" in row and " ms<" in row and ">1<" in row
    assert EVIL not in shown.text and SECRET not in shown.text
    audit = await cairn.json("GET", "/api/orgs/admin/auditlogs")
    assert any(e["event"] == "webhook.ping" for e in audit["auditLogEvents"])

    # The stack's page: its own hook only, and a receiver that fails is shown as such.
    stack_page = await browser.get(f"{STACK}/hooks")
    assert stack_page.status == 200, stack_page.text
    assert "Chat room" in stack_page.text and ">slack<" in stack_page.text
    assert "inactive" in stack_page.text and "&lt;script&gt;" not in stack_page.text
    sink.statuses.append(500)
    stack_pinged = await browser.post(
        f"{STACK}/hooks/chat/ping", {"csrf_token": csrf_of(stack_page.text)}
    )
    assert stack_pinged.status == 303, stack_pinged.text
    assert stack_pinged.location.startswith(f"{STACK}/hooks?pinged=")
    assert sink.kinds() == ["ping", "ping"]
    shown = await browser.get(stack_pinged.location)
    assert "answered 500" in shown.text and ">500<" in shown.text

    missing = await browser.post("/orgs/admin/hooks/nope/ping", {"csrf_token": csrf_of(shown.text)})
    assert missing.status == 404


async def test_who_may_see_and_ping_hooks(
    cairn: Cairn, open_browser: OpenBrowser, sink: Receiver
) -> None:
    await make_hooks(cairn, sink.url)

    # An organization member is no org admin, and no admin of the stack either.
    member = open_browser()
    await member.sign_in(await cairn.new_user("mia", org_role=("admin", MEMBER)))
    token = csrf_of((await member.get("/orgs/admin")).text)
    for page_path in ("/orgs/admin/hooks", f"{STACK}/hooks"):
        assert (await member.get(page_path)).status == 403, page_path
    for ping_path in ("/orgs/admin/hooks/ci/ping", f"{STACK}/hooks/chat/ping"):
        assert (await member.post(ping_path, {"csrf_token": token})).status == 403, ping_path

    viewer = open_browser()
    await viewer.sign_in(await cairn.new_user("vera", org_role=("admin", VIEWER)))
    assert (await viewer.get("/orgs/admin/hooks")).status == 403
    assert (await viewer.get(f"{STACK}/hooks")).status == 403

    outsider = open_browser()
    await outsider.sign_in(await cairn.new_user("mallory"))
    for page_path in ("/orgs/admin/hooks", f"{STACK}/hooks"):
        assert (await outsider.get(page_path)).status == 404, page_path
    assert sink.received == []

    # Signed out: the sign-in page, never the hooks.
    anonymous = open_browser()
    page = await anonymous.get("/orgs/admin/hooks")
    assert page.status == 303 and page.location == "/signin?next=%2Forgs%2Fadmin%2Fhooks"


def _delivery(delivery_id: str, kind: str, payload: str) -> hooks_pb2.HookDelivery:
    return hooks_pb2.HookDelivery(id=delivery_id, kind=kind, payload=payload)


def test_attempts_are_counted_per_event_oldest_first() -> None:
    # Newest first, as the service lists them.
    listed = [
        _delivery("e", "stack_update", '{"v":1}'),
        _delivery("d", "ping", "{}"),
        _delivery("c", "stack_update", '{"v":2}'),
        _delivery("b", "stack_update", '{"v":1}'),
        _delivery("a", "ping", "{}"),
    ]
    assert [(a.delivery.id, a.number) for a in numbered(listed)] == [
        ("e", 2),
        ("d", 1),
        ("c", 1),
        ("b", 1),
        ("a", 1),
    ]
