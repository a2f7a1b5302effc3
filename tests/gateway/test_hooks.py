"""Webhooks end to end: the REST routes, who may use them, delivery to real receivers (signed,
filtered, formatted, retried, recorded) and the events of stacks and updates."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from gateway.audit import AUDIT_RECORDER
from protos.cairn.v1 import identity_pb2
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_engine
from tests.gateway.cli import begin, create_stack, resource, stack_path, summary
from tests.gateway.conftest import ADMIN, MEMBER, AiohttpClient, Cairn, running_cairn
from tests.gateway.receiver import Receiver, receiver
from tests.gateway.test_agent_pools import claim, create_pool, finish, register

ORG_HOOKS = "/api/orgs/admin/hooks"
S = stack_path()
STACK_HOOKS = f"{S}/hooks"
SECRET = "hook-secret-3f9a1c0b7e"


@pytest.fixture
async def cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The system with quick webhook retries."""
    quick = settings.model_copy(
        update={"webhook_backoff_seconds": 0.05, "webhook_timeout_seconds": 2.0}
    )
    async for running in running_cairn(quick, aiohttp_client):
        yield running


@pytest.fixture
async def sink() -> AsyncIterator[Receiver]:
    async with receiver() as found:
        yield found


def hook_body(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "organizationName": "admin",
        "displayName": "CI notifications",
        "payloadUrl": url,
        "active": True,
        **extra,
    }


async def recorded(cairn: Cairn, hook: str, count: int, token: str | None = None) -> Any:
    """A hook's delivery log once it holds `count` attempts (each is recorded just after its
    receiver answered, so a receiver may have seen the request a moment earlier)."""
    options: dict[str, Any] = {} if token is None else {"token": token}
    for _ in range(200):
        found = await cairn.json("GET", f"{hook}/deliveries", **options)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{hook}: {len(found)} deliveries recorded, not {count}")


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does (README): HMAC-SHA256 of the body, compared in constant time."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


async def test_crud_of_organization_hooks(cairn: Cairn, sink: Receiver) -> None:
    created = await cairn.json(
        "POST",
        ORG_HOOKS,
        body=hook_body(sink.url, name="ci", secret=SECRET, filters=["update_succeeded"]),
    )
    assert created == {
        "organizationName": "admin",
        "name": "ci",
        "displayName": "CI notifications",
        "payloadUrl": sink.url,
        "active": True,
        "format": "raw",
        "filters": ["update_succeeded"],
        "groups": [],
        "hasSecret": True,
        "secretCiphertext": "",
    }
    assert await cairn.json("GET", ORG_HOOKS) == [created]
    assert await cairn.json("GET", f"{ORG_HOOKS}/ci") == created
    # A generated name when none is given.
    other = await cairn.json("POST", ORG_HOOKS, body=hook_body(sink.url, format="slack"))
    assert len(other["name"]) == 8 and other["hasSecret"] is False

    # An update keeps the secret when none is sent, clears it with "".
    changed = await cairn.json(
        "PATCH", f"{ORG_HOOKS}/ci", body=hook_body(sink.url, displayName="Renamed")
    )
    assert changed["displayName"] == "Renamed" and changed["hasSecret"] is True
    cleared = await cairn.json("PATCH", f"{ORG_HOOKS}/ci", body=hook_body(sink.url, secret=""))
    assert cleared["hasSecret"] is False and cleared["filters"] == []

    await cairn.json("DELETE", f"{ORG_HOOKS}/ci", status=204)
    await cairn.json("GET", f"{ORG_HOOKS}/ci", status=404)
    assert [hook["name"] for hook in await cairn.json("GET", ORG_HOOKS)] == [other["name"]]


async def test_bad_input_is_refused_without_a_write(cairn: Cairn, sink: Receiver) -> None:
    await cairn.json("POST", ORG_HOOKS, body=hook_body(sink.url, name="ci"))
    for body in (
        hook_body("ftp://127.0.0.1/x"),
        hook_body("file:///etc/passwd"),
        hook_body("not a url"),
        hook_body(sink.url, format="email"),
        hook_body(sink.url, filters=["update_exploded"]),
        hook_body(sink.url, groups=["everything"]),
        hook_body(sink.url, displayName=""),
        hook_body(sink.url, name="bad name!"),
        hook_body(sink.url, organizationName="someone-else"),
        hook_body(sink.url, active="yes"),
        hook_body(sink.url, filters="update_failed"),
    ):
        response = await cairn.call("POST", ORG_HOOKS, body=body)
        assert response.status == 400, (body, await response.text())
        assert set(await response.json()) == {"code", "message"}
    await cairn.json("POST", ORG_HOOKS, status=409, body=hook_body(sink.url, name="ci"))
    response = await cairn.call("PATCH", f"{ORG_HOOKS}/ci", body=hook_body("gopher://x"))
    assert response.status == 400
    assert [h["payloadUrl"] for h in await cairn.json("GET", ORG_HOOKS)] == [sink.url]
    await cairn.json("PATCH", f"{ORG_HOOKS}/missing", status=404, body=hook_body(sink.url))
    await cairn.json("DELETE", f"{ORG_HOOKS}/missing", status=404)
    await cairn.json("POST", f"{ORG_HOOKS}/missing/ping", status=404)
    await cairn.json("POST", f"{ORG_HOOKS}/ci/deliveries/nope/redeliver", status=404)
    await cairn.json("GET", f"{S}/hooks", status=404)  # no such stack


async def test_organization_admins_and_stack_admins_only(cairn: Cairn, sink: Receiver) -> None:
    await create_stack(cairn)
    member = await cairn.new_user("mia", org_role=("admin", MEMBER))
    second_admin = await cairn.new_user("ada", org_role=("admin", ADMIN))
    for method, path in (
        ("GET", ORG_HOOKS),
        ("POST", ORG_HOOKS),
        ("GET", STACK_HOOKS),
        ("POST", STACK_HOOKS),
    ):
        body = hook_body(sink.url) if method == "POST" else None
        response = await cairn.call(method, path, token=member, body=body)
        assert response.status == 403, (method, path, response.status)
    await cairn.json("POST", ORG_HOOKS, token=second_admin, body=hook_body(sink.url, name="a"))
    await cairn.json("POST", STACK_HOOKS, token=second_admin, body=hook_body(sink.url, name="b"))
    assert await cairn.json("GET", ORG_HOOKS, token=member, status=403)

    # A member who is admin of the stack (an explicit grant) manages its hooks, and only its.
    await cairn.json("PATCH", f"{S}/collaborators/mia", status=204, body={"permission": 103})
    made = await cairn.json("POST", STACK_HOOKS, token=member, body=hook_body(sink.url, name="c"))
    assert made["name"] == "c"
    listed = await cairn.json("GET", STACK_HOOKS, token=member)
    assert [hook["name"] for hook in listed] == ["b", "c"]
    ping = await cairn.json("POST", f"{STACK_HOOKS}/c/ping", token=member)
    assert ping["responseCode"] == 200
    await cairn.json("DELETE", f"{STACK_HOOKS}/b", token=member, status=204)
    await cairn.json("GET", ORG_HOOKS, token=member, status=403)
    await cairn.json("DELETE", f"{ORG_HOOKS}/a", token=member, status=403)
    # A writer is not enough.
    await cairn.json("PATCH", f"{S}/collaborators/mia", status=204, body={"permission": 102})
    await cairn.json("GET", STACK_HOOKS, token=member, status=403)


async def test_ping_is_signed_and_recorded_and_the_secret_stays_hidden(
    cairn: Cairn, sink: Receiver
) -> None:
    with capture_logs() as logs:
        await cairn.json("POST", ORG_HOOKS, body=hook_body(sink.url, name="ci", secret=SECRET))
        delivery = await cairn.json("POST", f"{ORG_HOOKS}/ci/ping")
    (request,) = await sink.wait_for(1)
    assert request.headers["Pulumi-Webhook-Kind"] == "ping"
    assert request.headers["Pulumi-Webhook-ID"] == delivery["id"]
    assert verify(SECRET, request.body, request.headers["Pulumi-Webhook-Signature"])
    assert not verify("wrong", request.body, request.headers["Pulumi-Webhook-Signature"])
    assert orjson.loads(request.body)["message"]
    assert delivery["kind"] == "ping" and delivery["responseCode"] == 200
    assert delivery["payload"] == request.body.decode()
    assert delivery["responseBody"] == "answered 200"
    assert "Pulumi-Webhook-Signature" not in delivery["requestHeaders"]
    assert f"Pulumi-Webhook-ID: {delivery['id']}\r\n" in delivery["requestHeaders"]
    assert "Pulumi-Webhook-Kind: ping\r\n" in delivery["requestHeaders"]
    assert "Content-Type: text/plain" in delivery["responseHeaders"]
    # Unix seconds, as Pulumi's CLI reads it; the ping's payload carries its time too.
    assert abs(delivery["timestamp"] - time.time()) < 60
    assert abs(orjson.loads(request.body)["timestamp"] - time.time()) < 60
    assert await cairn.json("GET", f"{ORG_HOOKS}/ci/deliveries") == [delivery]

    # Nowhere: not in answers, logs, the audit log, nor in clear in the database.
    await cairn.client.app[AUDIT_RECORDER].flush(5)
    engine = create_engine(cairn.system.settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            audit = (await connection.execute(text("SELECT * FROM identity_audit_events"))).all()
            stored = (await connection.execute(text("SELECT secret FROM stacks_hooks"))).all()
    finally:
        await engine.dispose()
    assert any("webhook.create" in str(row) for row in audit)
    haystacks = [str(audit), str(logs), str(await cairn.json("GET", ORG_HOOKS))]
    for haystack in haystacks:
        assert SECRET not in haystack
    (ciphertext,) = stored[0]
    assert ciphertext and SECRET.encode() not in bytes(ciphertext)


async def test_a_failing_receiver_is_retried_and_redelivery_works(
    cairn: Cairn, sink: Receiver
) -> None:
    await create_stack(cairn)
    await cairn.json("POST", STACK_HOOKS, body=hook_body(sink.url, name="ci"))
    sink.statuses = [500, 503]
    run = await begin(cairn, S)
    # started: 500, 503, then 200.
    received = await sink.wait_for(3)
    assert {r.headers["Pulumi-Webhook-Kind"] for r in received} == {"stack_update"}
    assert len({r.body for r in received}) == 1
    deliveries = await recorded(cairn, f"{STACK_HOOKS}/ci", 3)
    assert sorted(d["responseCode"] for d in deliveries) == [200, 500, 503]
    assert len({d["id"] for d in deliveries}) == 3
    failed = next(d for d in deliveries if d["responseCode"] == 500)
    again = await cairn.json("POST", f"{STACK_HOOKS}/ci/deliveries/{failed['id']}/redeliver")
    assert again["responseCode"] == 200 and again["payload"] == failed["payload"]
    assert again["id"] != failed["id"]
    await sink.wait_for(4)
    assert sink.received[3].body == sink.received[0].body
    await run.complete()


async def test_an_update_reaches_organization_and_stack_hooks(cairn: Cairn) -> None:
    await create_stack(cairn)
    async with receiver() as org_sink, receiver() as stack_sink, receiver() as filtered:
        await cairn.json("POST", ORG_HOOKS, body=hook_body(org_sink.url, secret=SECRET))
        await cairn.json(
            "POST", STACK_HOOKS, body=hook_body(stack_sink.url, projectName="web", stackName="dev")
        )
        await cairn.json(
            "POST", STACK_HOOKS, body=hook_body(filtered.url, filters=["update_failed"])
        )
        # As `pulumi up` does it: create and start, checkpoints, engine events with the
        # summary, a lease renewal, complete.
        run = await begin(cairn, S)
        run.resources.append(resource("web", "dev", "bucket"))
        await run.full_checkpoint({})
        await run.send_events([summary({"create": 2})])
        await run.ok("POST", "/renew_lease", {"duration": 300})
        await run.complete()
        for sink in (org_sink, stack_sink):
            started, ended = await sink.wait_for(2)
            assert sink.kinds() == ["stack_update", "stack_update"]
            by_result = {
                orjson.loads(r.body)["result"]: orjson.loads(r.body) for r in (started, ended)
            }
            assert set(by_result) == {"started", "succeeded"}
            done = by_result["succeeded"]
            assert done["projectName"] == "web" and done["stackName"] == "dev"
            assert done["organization"]["githubLogin"] == "admin"
            assert done["kind"] == "update" and done["version"] == run.version
            assert done["resourceChanges"] == {"create": 2}
            assert done["updateUrl"].endswith(f"/admin/web/dev/updates/{run.version}")
            assert done["user"]["githubLogin"] == "admin"
            assert done["updateId"] == run.update_id
            assert isinstance(done["durationSeconds"], int) and done["durationSeconds"] >= 0
            begun = by_result["started"]
            assert (begun["kind"], begun["version"]) == ("update", run.version)
            assert begun["updateId"] == run.update_id and begun["resourceChanges"] == {}
            # Each delivery has its own id, the one its recorded attempt carries.
            assert started.headers["Pulumi-Webhook-ID"] != ended.headers["Pulumi-Webhook-ID"]
        signed = org_sink.received[0]
        assert verify(SECRET, signed.body, signed.headers["Pulumi-Webhook-Signature"])
        assert "Pulumi-Webhook-Signature" not in stack_sink.received[0].headers

        # A failed update reaches the filtered hook, and only that event.
        failing = await begin(cairn, S)
        await failing.complete("failed")
        (only,) = await filtered.wait_for(1)
        assert orjson.loads(only.body)["result"] == "failed"
        await org_sink.wait_for(4)


async def test_stack_events_and_formats(cairn: Cairn) -> None:
    async with receiver() as slack, receiver() as teams, receiver() as raw:
        await cairn.json("POST", ORG_HOOKS, body=hook_body(slack.url, format="slack"))
        await cairn.json("POST", ORG_HOOKS, body=hook_body(teams.url, format="ms_teams"))
        await cairn.json(
            "POST", ORG_HOOKS, body=hook_body(raw.url, filters=["stack_created", "stack_deleted"])
        )
        await create_stack(cairn)
        # A change that rolls back (the name is taken) writes no event.
        await cairn.json("POST", "/api/stacks/admin/web", status=409, body={"stackName": "dev"})
        await cairn.json("POST", f"{S}/rename", body={"newName": "prod"})
        await cairn.json("DELETE", stack_path(stack="prod"), status=204)
        created, deleted = await raw.wait_for(2)
        assert raw.kinds() == ["stack", "stack"]
        actions = sorted(orjson.loads(r.body)["action"] for r in (created, deleted))
        assert actions == ["created", "deleted"]

        messages = [orjson.loads(r.body) for r in await slack.wait_for(3)]
        assert {m["text"] for m in messages} == {
            "Stack admin/web/dev created",
            "Stack admin/web/prod renamed",
            "Stack admin/web/prod deleted",
        }
        for message in messages:
            assert message["blocks"][0]["type"] == "section"
            assert message["blocks"][0]["text"]["type"] == "mrkdwn"
        cards = [orjson.loads(r.body) for r in await teams.wait_for(3)]
        for card in cards:
            assert card["@type"] == "MessageCard"
            assert card["@context"] == "https://schema.org/extensions"
            assert card["title"] == card["summary"]
            assert card["sections"][0]["facts"][0] == {"name": "By", "value": "admin"}
        await asyncio.sleep(0.3)
        assert len(raw.received) == 2 and len(slack.received) == 3


async def test_updates_never_wait_for_hooks(cairn: Cairn, sink: Receiver) -> None:
    """A hanging receiver and an unreachable one: the update runs and ends regardless."""
    await create_stack(cairn)
    await cairn.json("POST", STACK_HOOKS, body=hook_body(sink.url))
    await cairn.json("POST", STACK_HOOKS, body=hook_body("http://127.0.0.1:9/nothing-listens"))
    sink.hold = asyncio.Event()
    run = await begin(cairn, S)
    await sink.wait_for(1)  # the started event is being delivered, and hangs
    await run.complete()
    status = await cairn.json("GET", f"{S}/update/{run.update_id}")
    assert status["status"] == "succeeded"
    sink.hold.set()
    await sink.wait_for(2)


def results(sink: Receiver) -> list[str]:
    return [orjson.loads(r.body)["result"] for r in sink.received]


async def test_notification_switches_decide_update_outcomes(cairn: Cairn) -> None:
    """Once set, a stack's switches decide whether its update successes and failures reach
    its hooks and its organization's; starts are not switched."""
    await create_stack(cairn)
    async with receiver() as org_sink, receiver() as stack_sink:
        await cairn.json("POST", ORG_HOOKS, body=hook_body(org_sink.url))
        await cairn.json("POST", STACK_HOOKS, body=hook_body(stack_sink.url))
        await cairn.json(
            "PATCH",
            f"{S}/notifications/settings",
            body={"notifyUpdateFailure": True, "notifyUpdateSuccess": False},
        )
        succeeding = await begin(cairn, S)
        await succeeding.complete()
        failing = await begin(cairn, S)
        await failing.complete("failed")
        for sink in (org_sink, stack_sink):
            await sink.wait_for(3)
        # Give a wrongly sent success time to arrive.
        await asyncio.sleep(0.5)
        for sink in (org_sink, stack_sink):
            assert sorted(results(sink)) == ["failed", "started", "started"]

        await cairn.json(
            "PATCH",
            f"{S}/notifications/settings",
            body={"notifyUpdateFailure": False, "notifyUpdateSuccess": True},
        )
        again = await begin(cairn, S)
        await again.complete()
        for sink in (org_sink, stack_sink):
            await sink.wait_for(5)
            assert sorted(results(sink)[3:]) == ["started", "succeeded"]


async def test_renamed_and_transferred_stacks_keep_their_hooks(cairn: Cairn) -> None:
    await create_stack(cairn)
    await cairn.identity.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="admin")
    )
    async with receiver() as stack_sink, receiver() as old_org:
        hook = await cairn.json("POST", STACK_HOOKS, body=hook_body(stack_sink.url, name="ci"))
        await cairn.json("POST", ORG_HOOKS, body=hook_body(old_org.url, filters=["update_started"]))
        await cairn.json("POST", f"{S}/rename", body={"newName": "prod"})
        await cairn.json(
            "POST", f"{stack_path(stack='prod')}/transfer", body={"toOrg": "acme"}, status=204
        )
        moved = stack_path(org="acme", stack="prod")
        listed = await cairn.json("GET", f"{moved}/hooks")
        assert [h["name"] for h in listed] == ["ci"]
        assert listed[0]["payloadUrl"] == hook["payloadUrl"]
        await cairn.json("GET", f"{S}/hooks", status=404)

        run = await begin(cairn, moved)
        await run.complete()
        received = await stack_sink.wait_for(4)
        bodies = [orjson.loads(r.body) for r in received]
        actions = [body.get("action") for body in bodies if "action" in body]
        assert actions == ["renamed", "transferred"]
        transferred = bodies[actions.index("transferred")]
        assert transferred["organization"]["githubLogin"] == "acme"
        assert transferred["stackName"] == "prod"
        updates = [body for body in bodies if "result" in body]
        assert {body["result"] for body in updates} == {"started", "succeeded"}
        assert all("/acme/web/prod/updates/" in body["updateUrl"] for body in updates)
        # The old organization's hooks no longer hear of the stack.
        await asyncio.sleep(0.3)
        assert old_org.received == []


async def test_deployments_send_queued_started_and_finished_events(cairn: Cairn) -> None:
    await create_stack(cairn)
    async with receiver() as sink:
        await cairn.json("POST", ORG_HOOKS, body=hook_body(sink.url, groups=["deployments"]))
        _, pool_token = await create_pool(cairn, "builders")
        agent_id = await register(cairn, pool_token)
        queued = await cairn.json(
            "POST", f"{S}/deployments", body={"operation": "update", "inheritSettings": True}
        )
        job = await claim(cairn, pool_token, agent_id)
        assert job is not None
        await finish(cairn, pool_token, agent_id, queued["id"], "failed")
        received = await sink.wait_for(3)
        assert set(sink.kinds()) == {"deployment"}
        bodies = [orjson.loads(r.body) for r in received]
        assert sorted(body["status"] for body in bodies) == ["failed", "queued", "started"]
        for body in bodies:
            assert body["deploymentId"] == queued["id"]
            assert body["operation"] == "update"
            assert (body["projectName"], body["stackName"]) == ("web", "dev")
            assert body["deploymentUrl"].endswith(f"/admin/web/dev/deployments/{body['version']}")


async def test_an_organization_admin_sees_every_event_arrive_as_documented(cairn: Cairn) -> None:
    """The issue's end state: an organization admin points a hook at a Slack-compatible
    endpoint and one at a signed raw receiver, runs updates, and every event arrives as the
    README documents it; a failed delivery is retried and every attempt is visible."""
    await create_stack(cairn)
    ada = await cairn.new_user("ada", org_role=("admin", ADMIN))
    async with receiver() as chat, receiver() as raw:
        chat.statuses = [500]
        await cairn.json(
            "POST", ORG_HOOKS, token=ada, body=hook_body(chat.url, name="chat", format="slack")
        )
        await cairn.json(
            "POST", ORG_HOOKS, token=ada, body=hook_body(raw.url, name="raw", secret=SECRET)
        )
        succeeding = await begin(cairn, S)
        await succeeding.send_events([summary({"create": 1})])
        await succeeding.complete()
        failing = await begin(cairn, S)
        await failing.complete("failed")
        previewing = await begin(cairn, S, "preview", dry_run=True)
        await previewing.send_events([summary({"create": 1}, preview=True)])
        await previewing.complete()

        received = await raw.wait_for(6)
        for request in received:
            assert verify(SECRET, request.body, request.headers["Pulumi-Webhook-Signature"])
        bodies = [orjson.loads(r.body) for r in received]
        outcomes = sorted(
            (request.headers["Pulumi-Webhook-Kind"], body["kind"], body["result"])
            for body, request in zip(bodies, received, strict=True)
        )
        # A preview's kind is the operation it previews, as in Pulumi's stack_preview payload.
        assert outcomes == [
            ("stack_preview", "update", "started"),
            ("stack_preview", "update", "succeeded"),
            ("stack_update", "update", "failed"),
            ("stack_update", "update", "started"),
            ("stack_update", "update", "started"),
            ("stack_update", "update", "succeeded"),
        ]
        for body in bodies:
            assert set(body) >= {
                "user",
                "organization",
                "projectName",
                "stackName",
                "kind",
                "result",
                "resourceChanges",
                "version",
                "durationSeconds",
                "updateUrl",
            }

        # Seven requests: the first event's 500, its retry, and the five others.
        messages = [orjson.loads(r.body) for r in await chat.wait_for(7)]
        assert "Pulumi-Webhook-Signature" not in chat.received[0].headers
        # The first request was answered 500; its event came again.
        assert [r.body for r in chat.received].count(chat.received[0].body) == 2
        assert {m["text"] for m in messages} == {
            "Update started on admin/web/dev",
            "Update succeeded on admin/web/dev",
            "Update failed on admin/web/dev",
            "Preview started on admin/web/dev",
            "Preview succeeded on admin/web/dev",
        }
        attempts = await recorded(cairn, f"{ORG_HOOKS}/chat", 7, token=ada)
        assert len(attempts) == 7
        assert sorted(a["responseCode"] for a in attempts) == [200] * 6 + [500]
        failed = next(a for a in attempts if a["responseCode"] == 500)
        assert sum(a["payload"] == failed["payload"] for a in attempts) == 2
        assert failed["responseBody"] == "answered 500" and failed["duration"] >= 0


async def test_refresh_destroy_and_cancelled_updates_have_their_events(cairn: Cairn) -> None:
    await create_stack(cairn)
    async with receiver() as sink:
        await cairn.json("POST", STACK_HOOKS, body=hook_body(sink.url))
        refresh = await begin(cairn, S, "refresh")
        await refresh.complete()
        cancelled = await begin(cairn, S)
        await cairn.json("POST", f"{S}/update/{cancelled.update_id}/cancel", status=204)
        destroy = await begin(cairn, S, "destroy")
        await destroy.complete("failed")
        received = await sink.wait_for(6)
        events = sorted(
            (orjson.loads(r.body)["kind"], orjson.loads(r.body)["result"]) for r in received
        )
        assert events == [
            ("destroy", "failed"),
            ("destroy", "started"),
            ("refresh", "started"),
            ("refresh", "succeeded"),
            ("update", "cancelled"),
            ("update", "started"),
        ]
        assert set(sink.kinds()) == {"stack_update"}
        by_id = {orjson.loads(r.body)["updateId"] for r in received}
        assert by_id == {refresh.update_id, cancelled.update_id, destroy.update_id}


async def test_a_deleted_stack_keeps_its_hooks_until_it_is_purged(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    """A deletion goes to the organization's hooks only; the stack's own come back with a
    restore and go for good with the purge."""
    clock = ManualClock()
    windowed = settings.model_copy(
        update={
            "webhook_backoff_seconds": 0.05,
            "deleted_stack_retention_days": 2,
            "deleted_stack_sweep_seconds": 0.05,
        }
    )
    async for cairn in running_cairn(windowed, aiohttp_client, clock=clock):
        await create_stack(cairn)
        stack_id = (await cairn.json("GET", S))["id"]
        async with receiver() as org_sink, receiver() as stack_sink:
            await cairn.json(
                "POST", ORG_HOOKS, body=hook_body(org_sink.url, filters=["stack_deleted"])
            )
            await cairn.json("POST", STACK_HOOKS, body=hook_body(stack_sink.url, name="ci"))
            await cairn.json("DELETE", S, status=204)
            (deleted,) = await org_sink.wait_for(1)
            assert orjson.loads(deleted.body)["action"] == "deleted"

            await cairn.json(
                "POST", f"/api/orgs/admin/restore-stack/{stack_id}", body={}, status=204
            )
            assert [hook["name"] for hook in await cairn.json("GET", STACK_HOOKS)] == ["ci"]
            run = await begin(cairn, S)
            await run.complete()
            await stack_sink.wait_for(3)  # restored (as created), started, succeeded
            bodies = [orjson.loads(r.body) for r in stack_sink.received]
            assert [body.get("action") for body in bodies if "action" in body] == ["created"]
            assert sorted(body["result"] for body in bodies if "result" in body) == [
                "started",
                "succeeded",
            ]

            await cairn.json("DELETE", S, status=204)
            clock.advance(2 * 86_400 + 60)
            engine = create_engine(cairn.system.settings.resolved_database_url())
            try:
                for _ in range(100):
                    async with engine.connect() as connection:
                        left = (
                            await connection.execute(
                                text("SELECT id FROM stacks_hooks WHERE stack_id = :id"),
                                {"id": stack_id},
                            )
                        ).all()
                    if not left:
                        break
                    await asyncio.sleep(0.05)
                assert left == []
                async with engine.connect() as connection:
                    kept = (await connection.execute(text("SELECT name FROM stacks_hooks"))).all()
                assert len(kept) == 1  # the organization's hook
            finally:
                await engine.dispose()


async def test_deliveries_to_metadata_and_link_local_addresses_are_refused(
    cairn: Cairn,
) -> None:
    """Through the routes, with the running settings: link-local (cloud metadata) addresses
    are refused even where private ones are allowed; the attempt is recorded with status 0."""
    urls = (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://0.0.0.0:8080/hook",
        "http://[::ffff:169.254.169.254]/hook",
    )
    for index, url in enumerate(urls):
        name = f"refused-{index}"
        await cairn.json("POST", ORG_HOOKS, body=hook_body(url, name=name))
        refused = await cairn.json("POST", f"{ORG_HOOKS}/{name}/ping")
        assert refused["responseCode"] == 0, url
        assert "CAIRN_WEBHOOK_DENIED_NETWORKS" in refused["responseBody"]
        assert refused["duration"] < 1000
