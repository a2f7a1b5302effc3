"""The audit log end to end: what the gateway records, and the routes that read it."""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from gateway.audit import AUDIT_RECORDER, AuditRecorder
from gateway.audit_events import (
    EVENT_TYPES,
    FALLBACK_EVENT,
    MUTATING_METHODS,
    NOT_AUDITED,
    AuditEventType,
)
from gateway.audit_policy import AUDIT_POLICY
from gateway.routes import ROUTES
from protos.cairn.v1 import audit_pb2, audit_pb2_grpc, identity_pb2
from services.common.db import create_engine
from tests.conftest import signed_channel
from tests.gateway.cli import begin, create_stack, stack_path, stack_resource
from tests.gateway.conftest import ADMIN, ADMIN_TOKEN, MEMBER, VIEWER, Cairn

S = stack_path()
AUDIT = "/api/orgs/admin/auditlogs"
SECRETS = {
    "type": "service",
    "state": {"url": "http://127.0.0.1", "owner": "admin", "project": "web", "stack": "dev"},
}
MICROS = 1_000_000
HOT_SUFFIXES = (
    "/checkpoint",
    "/checkpointverbatim",
    "/checkpointdelta",
    "/journalentries",
    "/events",
    "/events/batch",
    "/log",
    "/renew_lease",
    "/heartbeat",
)


async def entries(cairn: Cairn, org: str = "admin", **query: Any) -> list[dict[str, Any]]:
    """Every entry of an organization, newest first, as its admin reads them."""
    params = urlencode({"pageSize": 1000, **query})
    reply = await cairn.json("GET", f"/api/orgs/{org}/auditlogs?{params}")
    assert "continuationToken" not in reply
    found: list[dict[str, Any]] = reply["auditLogEvents"]
    return found


async def site_entries(cairn: Cairn) -> list[dict[str, Any]]:
    """Every site-level entry (under no organization), newest first, as a site admin reads them."""
    reply = await cairn.json("GET", "/api/admin/auditlogs/export?format=json&siteLevel=true")
    found: list[dict[str, Any]] = reply["auditLogEvents"]
    return found


async def token_id(cairn: Cairn, token: str) -> str:
    principal = await cairn.identity.Authenticate(identity_pb2.AuthenticateRequest(token=token))
    assert principal.token_info.token_id
    value: str = principal.token_info.token_id
    return value


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def only(found: list[dict[str, Any]], event: str, **match: Any) -> dict[str, Any]:
    hits = [e for e in found if e["event"] == event and all(e[k] == v for k, v in match.items())]
    assert len(hits) == 1, (event, match, [(e["event"], e["target"], e["status"]) for e in found])
    return hits[0]


@pytest.fixture
async def audit_stub(cairn: Cairn) -> AsyncIterator[audit_pb2_grpc.AuditServiceAsyncStub]:
    channel = signed_channel(cairn.system.settings, cairn.system.settings.identity_address)
    try:
        yield audit_pb2_grpc.AuditServiceStub(channel)
    finally:
        await channel.close(None)


async def test_every_kind_of_mutating_call_is_recorded(any_cairn: Cairn) -> None:
    cairn = any_cairn
    before = int(time.time())
    admin_token_id = await token_id(cairn, ADMIN_TOKEN)
    await create_stack(cairn)
    await cairn.json("PATCH", f"{S}/tags", 204, body={"owner": "ops"})
    sealed = await cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64(b"v")})
    await cairn.json("POST", f"{S}/decrypt", body={"ciphertext": sealed["ciphertext"]})
    await cairn.json("POST", f"{S}/batch-encrypt", body={"plaintexts": [b64(b"w")]})
    await cairn.json("POST", f"{S}/batch-decrypt", body={"ciphertexts": [sealed["ciphertext"]]})
    await cairn.json("POST", f"{S}/decrypt/log-decryption", 204, body={"commandName": "x"})
    await cairn.json("POST", f"{S}/decrypt/log-batch-decryption", 204, body={})

    run = await begin(cairn, S)
    run.resources.append(stack_resource("web", "dev", {}))
    await run.full_checkpoint(SECRETS)
    await run.full_checkpoint(SECRETS)
    await run.ok("POST", "/renew_lease", {"duration": 60})
    await run.send_events([{"preludeEvent": {"config": {}}}])
    await run.ok("POST", "/log", {"kind": "info", "text": "hello"})
    await run.complete()
    cancelled = await begin(cairn, S)
    await cairn.json("POST", f"{S}/update/{cancelled.update_id}/cancel", 204)
    exported = await cairn.json("GET", f"{S}/export")
    imported = await cairn.json("POST", f"{S}/import", body=exported)

    pool = await cairn.json(
        "POST", "/api/orgs/admin/agent-pools", body={"name": "runners", "description": "d"}
    )
    pools = f"/api/orgs/admin/agent-pools/{pool['id']}"
    await cairn.json("PATCH", pools, body={"name": "builders"})
    settings = f"{S}/deployments/settings"
    await cairn.json("POST", settings, body={"tag": "v1"})
    await cairn.json("PUT", settings, body={"tag": "v2"})
    await cairn.json("DELETE", settings)
    await cairn.json("DELETE", pools, 204)

    # Refusals, each recorded with its status and, where known, who tried.
    mia = await cairn.new_user("mia", org_role=("admin", MEMBER))
    olga = await cairn.new_user("olga")
    assert (await cairn.call("DELETE", S, token=mia)).status == 403
    assert (await cairn.call("POST", f"{S}/decrypt", token=olga, body={})).status == 404
    assert (
        await cairn.call("POST", "/api/stacks/admin/web", body={"stackName": "!"})
    ).status == 400
    assert (await cairn.call("POST", f"{S}/encrypt", token=None, body={})).status == 401

    await cairn.json("POST", f"{S}/rename", 200, body={"newName": "prod"})
    await cairn.json("DELETE", f"{stack_path(stack='prod')}?force=true", 204)
    after = int(time.time()) + 1

    found = await entries(cairn)
    for entry in found:
        assert before <= entry["timestamp"] <= after
        assert entry["organization"] == "admin"
        assert entry["sourceIP"] == "127.0.0.1"
        assert entry["userAgent"].startswith("Python")
        assert not entry["path"].endswith(HOT_SUFFIXES), entry["path"]
        if entry["actorKind"] == "user" and entry["user"]["githubLogin"] == "admin":
            assert entry["tokenID"] == admin_token_id
            assert entry["tokenName"] == "admin-token"
    by_admin = {"actorKind": "user", "tokenID": admin_token_id}
    only(found, "stack.create", target="admin/web/dev", status=200, **by_admin)
    only(found, "stack.tags.update", target="admin/web/dev", status=204, **by_admin)
    encrypted = [e for e in found if e["event"] == "secret.encrypt" and e["status"] == 200]
    assert [e["path"] for e in encrypted] == [f"{S}/batch-encrypt", f"{S}/encrypt"]
    only(found, "secret.decrypt", path=f"{S}/decrypt", status=200, **by_admin)
    only(found, "secret.decrypt", path=f"{S}/batch-decrypt", status=200, **by_admin)
    logged = [e for e in found if e["event"] == "secret.decrypt.logged"]
    assert [e["status"] for e in logged] == [204, 204]
    run_target = f"admin/web/dev/updates/{run.update_id}"
    creates = [e for e in found if e["event"] == "update.create"]
    assert [(e["target"], e["status"], e["tokenID"]) for e in creates] == 2 * [
        ("admin/web/dev", 200, admin_token_id)
    ]
    only(found, "update.start", target=run_target, status=200, **by_admin)
    completed = only(found, "update.complete", target=run_target, status=204)
    assert completed["actorKind"] == "update token" and completed["actorName"] == "update token"
    assert "tokenID" not in completed and completed["user"]["githubLogin"] == ""
    only(
        found,
        "update.cancel",
        target=f"admin/web/dev/updates/{cancelled.update_id}",
        status=204,
        **by_admin,
    )
    only(found, "stack.import", target="admin/web/dev", status=200, **by_admin)
    assert imported["updateId"]
    pool_target = f"agent-pools/{pool['id']}"
    created = only(found, "agent_pool.create", target="", status=200, reqOrgAdmin=True)
    assert created["description"] == "Agent Pool Created (name runners)"
    only(found, "agent_pool.update", target=pool_target, status=200, reqOrgAdmin=True)
    only(found, "agent_pool.delete", target=pool_target, status=204, reqOrgAdmin=True)
    updated = [e for e in found if e["event"] == "deployment_settings.update"]
    assert [e["method"] for e in updated] == ["PUT", "POST"]
    only(found, "deployment_settings.delete", target="admin/web/dev", status=200)

    refused = only(found, "stack.delete", status=403)
    assert refused["user"]["githubLogin"] == "mia"
    assert refused["tokenID"] == await token_id(cairn, mia) and refused["reqOrgAdmin"]
    outsider = only(found, "secret.decrypt", status=404)
    assert outsider["user"]["githubLogin"] == "olga"
    assert outsider["tokenID"] == await token_id(cairn, olga)
    only(found, "stack.create", status=400, **by_admin)
    # Nobody was verified for the call without a token: recorded at site level, not here.
    assert not [e for e in found if e["status"] == 401]
    anonymous = only(await site_entries(cairn), "secret.encrypt", status=401)
    assert anonymous["actorKind"] == "anonymous" and anonymous["authFailure"]
    assert anonymous["user"]["githubLogin"] == "" and "tokenID" not in anonymous
    assert anonymous["organization"] == "" and anonymous["path"] == f"{S}/encrypt"
    renamed = only(found, "stack.rename", target="admin/web/dev", status=200)
    assert renamed["description"] == "Stack Renamed: admin/web/dev (newName prod)"
    only(found, "stack.delete", target="admin/web/prod", status=204, **by_admin)
    # Newest first, and the ids say so too.
    ids = [int(e["id"]) for e in found]
    assert ids == sorted(ids, reverse=True)
    assert found[0]["event"] == "stack.delete"


async def test_no_secret_material_is_ever_recorded(cairn: Cairn) -> None:
    plaintext = b"correct-horse-battery-staple-71"
    await create_stack(cairn)
    sealed = await cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64(plaintext)})
    ciphertext = sealed["ciphertext"]
    opened = await cairn.json("POST", f"{S}/decrypt", body={"ciphertext": ciphertext})
    assert base64.b64decode(opened["plaintext"]) == plaintext
    batch = await cairn.json("POST", f"{S}/batch-decrypt", body={"ciphertexts": [ciphertext]})
    assert base64.b64decode(batch["plaintexts"][ciphertext]) == plaintext
    await cairn.json("POST", f"{S}/decrypt/log-decryption", 204, body={"secretName": "db"})
    # A token created for a new admin, then used, and an agent pool's token.
    user_token = await cairn.new_user("tina", org_role=("admin", ADMIN))
    await cairn.json("POST", f"{S}/encrypt", token=user_token, body={"plaintext": b64(plaintext)})
    pool = await cairn.json("POST", "/api/orgs/admin/agent-pools", body={"name": "p"})
    await cairn.json("POST", "/api/agents/register", token=pool["tokenValue"], body={})
    run = await begin(cairn, S)
    await run.complete()

    secrets = [
        plaintext.decode(),
        b64(plaintext),
        ciphertext,
        ADMIN_TOKEN,
        user_token,
        pool["tokenValue"],
        run.token,
    ]
    stored = await _every_stored_value(cairn)
    assert len(stored) >= 9
    csv_text = await (await cairn.call("GET", f"{AUDIT}/export?format=csv")).text()
    json_text = await (await cairn.call("GET", f"{AUDIT}/export?format=json")).text()
    operator = await (await cairn.call("GET", "/api/admin/auditlogs/export?format=json")).text()
    assert "secret.decrypt" in csv_text and "secret.decrypt" in json_text
    assert "agent.register" in operator  # outside any organization: the operator sees it
    for haystack in ["\n".join(stored), csv_text, json_text, operator]:
        for secret in secrets:
            assert secret not in haystack


async def _every_stored_value(cairn: Cairn) -> list[str]:
    await cairn.client.app[AUDIT_RECORDER].flush(5)
    engine = create_engine(cairn.system.settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT * FROM identity_audit_events"))).all()
    finally:
        await engine.dispose()
    return [" ".join(str(value) for value in row) for row in rows]


async def test_paging_with_continuation_tokens(cairn: Cairn) -> None:
    await create_stack(cairn)
    for _ in range(24):
        await cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64(b"x")})
    pages: list[list[dict[str, Any]]] = []
    token = ""
    for _ in range(10):
        query = {"pageSize": 10, **({"continuationToken": token} if token else {})}
        reply = await cairn.json("GET", f"{AUDIT}?{urlencode(query)}")
        pages.append(reply["auditLogEvents"])
        token = reply.get("continuationToken", "")
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    ids = [int(e["id"]) for p in pages for e in p]
    assert ids == sorted(set(ids), reverse=True)
    assert pages[-1][-1]["event"] == "stack.create"
    bad = await cairn.call("GET", f"{AUDIT}?continuationToken=abc")
    assert bad.status == 400 and (await bad.json())["code"] == 400
    # The default page is 100 entries.
    for _ in range(80):
        await cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64(b"x")})
    first = await cairn.json("GET", AUDIT)
    assert len(first["auditLogEvents"]) == 100 and first["continuationToken"]


async def test_time_range_user_and_event_filters(
    cairn: Cairn, audit_stub: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    base = 1_750_000_000

    def at(offset: int, login: str = "alice", name: str = "stack.create") -> audit_pb2.AuditEvent:
        return audit_pb2.AuditEvent(
            time_micros=(base + offset) * MICROS,
            organization="admin",
            event=name,
            actor_kind=audit_pb2.AUDIT_ACTOR_KIND_USER,
            actor_login=login,
            status=200,
        )

    await audit_stub.RecordAuditEvents(
        audit_pb2.RecordAuditEventsRequest(
            events=[at(-100), at(0, "bob"), at(100, name="secret.decrypt"), at(200)]
        )
    )

    async def offsets(**query: Any) -> list[int]:
        return [e["timestamp"] - base for e in await entries(cairn, **query)]

    # startTime alone: entries at or before it (V1); both: the range, either order.
    assert await offsets(startTime=base) == [0, -100]
    assert await offsets(endTime=base + 100) == [100, 0, -100]
    assert await offsets(startTime=base, endTime=base + 100) == [100, 0]
    assert await offsets(startTime=base + 100, endTime=base) == [100, 0]
    assert await offsets(startTime=base + 300, userFilter="bob") == [0]
    assert await offsets(startTime=base + 300, eventFilter="secret.decrypt") == [100]
    for bad in ("startTime=soon", "endTime=-5", "eventFilter=no.such.event", "format=csv"):
        response = await cairn.call("GET", f"{AUDIT}?{bad}")
        assert response.status == 400, bad


async def test_exports_parse_as_csv_and_json_within_a_window(
    cairn: Cairn, audit_stub: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    now = int(time.time())
    await audit_stub.RecordAuditEvents(
        audit_pb2.RecordAuditEventsRequest(
            events=[
                audit_pb2.AuditEvent(
                    time_micros=(now - days * 86_400) * MICROS,
                    organization=org,
                    event="stack.create",
                    target=f"{org}/web/{days}",
                    description='Stack Created: with "quotes", commas',
                    actor_kind=audit_pb2.AUDIT_ACTOR_KIND_USER,
                    actor_login="alice",
                    user_agent="=HYPERLINK(evil)",
                    status=200,
                )
                for org, days in [("admin", 1), ("admin", 45), ("other", 2)]
            ]
        )
    )
    response = await cairn.call("GET", f"{AUDIT}/export?format=csv")
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [r["target"] for r in rows] == ["admin/web/1"]  # the default window: 30 days
    assert rows[0]["description"] == 'Stack Created: with "quotes", commas'
    assert rows[0]["userAgent"] == "'=HYPERLINK(evil)"
    assert rows[0]["timestamp"] == str(now - 86_400) and rows[0]["time"].endswith("Z")

    window = urlencode({"startTime": now, "endTime": now - 60 * 86_400, "format": "json"})
    response = await cairn.call("GET", f"{AUDIT}/export?{window}")
    assert response.content_type == "application/json"
    events = orjson.loads(await response.read())["auditLogEvents"]
    assert [e["target"] for e in events] == ["admin/web/1", "admin/web/45"]
    too_wide = urlencode({"startTime": now, "endTime": now - 100 * 86_400})
    assert (await cairn.call("GET", f"{AUDIT}/export?{too_wide}")).status == 400
    assert (await cairn.call("GET", f"{AUDIT}/export?format=xml")).status == 400

    # The operator's export spans organizations; only site admins may use it.
    operator = await cairn.call("GET", "/api/admin/auditlogs/export?format=json")
    targets = [e["target"] for e in orjson.loads(await operator.read())["auditLogEvents"]]
    assert targets == ["admin/web/1", "other/web/2"]
    org_admin = await cairn.new_user("oscar", org_role=("admin", ADMIN))
    refused = await cairn.call("GET", "/api/admin/auditlogs/export", token=org_admin)
    assert refused.status == 403
    # A client that accepts only text (the SDK's export call) gets text/plain.
    plain = await cairn.call("GET", f"{AUDIT}/export", headers={"Accept": "text/plain"})
    assert plain.status == 200 and plain.content_type == "text/plain"
    csv_only = await cairn.call("GET", f"{AUDIT}/export", headers={"Accept": "text/csv"})
    assert csv_only.status == 200 and csv_only.content_type == "text/csv"
    assert (await cairn.call("GET", AUDIT, headers={"Accept": "text/plain"})).status == 415


async def test_only_organization_admins_read_the_log(cairn: Cairn) -> None:
    viewer = await cairn.new_user("vera", org_role=("admin", VIEWER))
    member = await cairn.new_user("max", org_role=("admin", MEMBER))
    admin = await cairn.new_user("ada", org_role=("admin", ADMIN))
    outsider = await cairn.new_user("otto")
    for path in (AUDIT, f"{AUDIT}/export", f"{AUDIT}/event-types"):
        assert (await cairn.call("GET", path, token=viewer)).status == 403
        assert (await cairn.call("GET", path, token=member)).status == 403
        assert (await cairn.call("GET", path, token=outsider)).status == 404
        assert (await cairn.call("GET", path, token=None)).status == 401
        assert (await cairn.call("GET", path, token=admin)).status == 200
    # Each user reads their own organization's log.
    assert (await cairn.call("GET", "/api/orgs/otto/auditlogs", token=outsider)).status == 200


async def test_entries_cannot_be_changed_or_deleted(cairn: Cairn) -> None:
    await create_stack(cairn)
    before = await entries(cairn)
    for route in ROUTES:
        if "auditlogs" in route.path:
            assert route.method == "GET", route.operation_id
    attempts = [
        (method, path)
        for method in sorted(MUTATING_METHODS)
        for path in (AUDIT, f"{AUDIT}/export", f"{AUDIT}/event-types", f"{AUDIT}/1")
    ]
    for method, path in attempts:
        response = await cairn.call(method, path, body={"event": "forged"})
        assert response.status in (404, 405), (method, path, response.status)
    after = await entries(cairn)
    assert after[len(after) - len(before) :] == before
    # The attempts themselves are on record.
    tried = [e for e in after if e["event"] == "api.call"]
    assert len(tried) == len(attempts)
    assert {e["status"] for e in tried} <= {404, 405}


async def test_event_types_come_from_one_table(cairn: Cairn) -> None:
    reply = await cairn.json("GET", f"{AUDIT}/event-types")
    names = [e["event"] for e in reply["eventTypes"]]
    assert len(names) == len(set(names))
    for name in ("stack.create", "update.start", "secret.decrypt", "agent_pool.create"):
        assert name in names
    pool = next(e for e in reply["eventTypes"] if e["event"] == "agent_pool.delete")
    assert pool["requiresOrgAdmin"] and pool["displayName"] == "Agent Pool Deleted"
    # Every mutating route names its event in the table or is deliberately not recorded.
    for route in ROUTES:
        if route.method in MUTATING_METHODS and route.path.startswith("/api/"):
            assert isinstance(route.audit, AuditEventType) or route.audit is NOT_AUDITED, (
                route.operation_id
            )
    recorded = {route.audit.name for route in ROUTES if isinstance(route.audit, AuditEventType)}
    assert set(names) == {kind.name for kind in EVENT_TYPES if kind.name in recorded} | {
        FALLBACK_EVENT.name
    }
    assert cairn.client.app[AUDIT_POLICY].names() == set(names)


async def test_a_failure_to_record_never_fails_the_call(
    cairn: Cairn, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_stack(cairn)

    def broken(_event: audit_pb2.AuditEvent) -> None:
        raise RuntimeError("audit store on fire")

    monkeypatch.setattr(cairn.client.app[AUDIT_RECORDER], "submit", broken)
    with capture_logs() as logs:
        sealed = await cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64(b"x")})
    assert sealed["ciphertext"]
    assert any(line["event"] == "audit_entry_failed" for line in logs)


class FailingStub:
    def __init__(self) -> None:
        self.calls = 0

    async def RecordAuditEvents(self, *_args: Any, **_kwargs: Any) -> None:
        self.calls += 1
        raise ConnectionError("identity is away")


async def test_the_recorder_retries_then_logs_and_drops() -> None:
    recorder = AuditRecorder(capacity=2, attempts=3, retry_seconds=0.001)
    stub = FailingStub()
    with capture_logs() as logs:
        recorder.start(stub, timeout=1)  # type: ignore[arg-type]
        for name in ("a", "b", "c", "d"):
            recorder.submit(audit_pb2.AuditEvent(event=name))
        assert await recorder.flush(5)
        await recorder.close(5)
    failed = [line for line in logs if line["event"] == "audit_record_failed"]
    assert failed and sum(line["events"] for line in failed) + recorder.dropped == 4
    assert stub.calls == 3 * len(failed)
    assert recorder.dropped >= 1
    assert any(line["event"] == "audit_event_dropped" for line in logs)
