"""Nobody writes into an organization's audit log without being verified for it.

Calls without a token, with a token that does not authenticate, or to a path no route serves
are recorded once at site level (no organization), within a per-address limit; the rest are
counted and dropped. Site admins, and only they, can read the site-level entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from gateway.audit import AUDIT_RECORDER
from gateway.audit_policy import AUDIT_REFUSAL_LIMITER, RefusalLimiter
from protos.cairn.v1 import audit_pb2, audit_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.metrics import METRICS
from tests.conftest import signed_channel
from tests.gateway.conftest import ADMIN, AiohttpClient, Cairn, running_cairn

PER_ADDRESS = 5


@pytest.fixture
async def cairn(any_settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    settings = any_settings.model_copy(
        update={"audit_site_refusals_per_address_per_minute": PER_ADDRESS}
    )
    async for running in running_cairn(settings, aiohttp_client):
        yield running


@pytest.fixture
async def audit(cairn: Cairn) -> AsyncIterator[audit_pb2_grpc.AuditServiceAsyncStub]:
    channel = signed_channel(cairn.system.settings, cairn.system.settings.identity_address)
    try:
        yield audit_pb2_grpc.AuditServiceStub(channel)
    finally:
        await channel.close(None)


async def _entries(
    cairn: Cairn, audit: audit_pb2_grpc.AuditServiceAsyncStub, **where: Any
) -> list[audit_pb2.AuditEvent]:
    """Every stored entry matching the filter, after what the gateway queued is written."""
    assert await cairn.client.app[AUDIT_RECORDER].flush(5)
    reply = await audit.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(filter=audit_pb2.AuditFilter(**where), page_size=1000)
    )
    return list(reply.events)


def _dropped(cairn: Cairn) -> float:
    """The process-wide count of dropped site-level refusals (shared by every test app)."""
    registry = cairn.client.app[METRICS].registry
    return registry.get_sample_value("cairn_audit_refusals_dropped_total") or 0.0


async def test_unauthenticated_calls_are_recorded_once_at_site_level_only(
    cairn: Cairn, audit: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    probes = [
        # No token, a token that does not authenticate, an update token on a user's route,
        # and a path no route serves: each names an organization it has nothing to do with.
        ("POST", "/api/stacks/anyorg/p/s/decrypt", None, {}, 401),
        ("POST", "/api/stacks/admin/p/s/encrypt", None, {"Authorization": "token nope"}, 401),
        ("DELETE", "/api/orgs/admin/teams/t", None, {"Authorization": "update-token x"}, 401),
        ("PUT", "/api/orgs/anyorg/nothing-here", None, {}, 404),
    ]
    for method, path, token, headers, status in probes:
        response = await cairn.call(method, path, token=token, headers=headers, body={})
        assert response.status == status, (path, await response.text())
        assert (await response.json())["code"] == status

    for org in ("anyorg", "admin"):
        assert await _entries(cairn, audit, organization=org) == []
    site = await _entries(cairn, audit, is_site_level=True)
    assert [(e.method, e.path, e.status) for e in reversed(site)] == [
        (method, path, status) for method, path, _, _, status in probes
    ]
    for entry in site:
        assert entry.organization == ""
        assert entry.actor_kind == audit_pb2.AUDIT_ACTOR_KIND_ANONYMOUS
        assert entry.actor_login == "" and entry.token_id == ""
        assert entry.source_ip == "127.0.0.1"
    assert [e.is_auth_failure for e in reversed(site)] == [True, True, True, False]


async def test_site_level_refusals_beyond_the_limit_are_counted_and_dropped(
    cairn: Cairn, audit: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    dropped_before = _dropped(cairn)
    for _ in range(3 * PER_ADDRESS):
        response = await cairn.call("POST", "/api/stacks/anyorg/p/s/decrypt", token=None, body={})
        assert response.status == 401
    assert await _entries(cairn, audit, organization="anyorg") == []
    assert len(await _entries(cairn, audit, is_site_level=True)) == PER_ADDRESS
    assert cairn.client.app[AUDIT_REFUSAL_LIMITER].dropped == 2 * PER_ADDRESS
    assert _dropped(cairn) - dropped_before == 2 * PER_ADDRESS
    # Verified callers are never limited: an admin's calls are all recorded in the org's log.
    for _ in range(2 * PER_ADDRESS):
        assert (await cairn.call("POST", "/api/stacks/admin/p/s/decrypt", body={})).status == 404
    assert len(await _entries(cairn, audit, organization="admin")) == 2 * PER_ADDRESS


async def test_refusals_on_routes_naming_no_organization_are_limited_too(
    cairn: Cairn, audit: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    """An agent pool's token is verified, but agent routes name no organization."""
    pool = await cairn.json("POST", "/api/orgs/admin/agent-pools", body={"name": "runners"})
    token = pool["tokenValue"]
    registered = await cairn.json(
        "POST", "/api/agents/register", token=token, body={"hostname": "runner", "pid": 1}
    )
    finish = f"/api/agents/{registered['agentID']}/deployments/no-such-deployment/finish"
    for _ in range(2 * PER_ADDRESS):
        response = await cairn.call("POST", finish, token=token, body={"status": "succeeded"})
        assert response.status == 404, await response.text()
    site = await _entries(cairn, audit, is_site_level=True, event="deployment.finish")
    assert [(e.actor_kind, e.status) for e in site] == PER_ADDRESS * [
        (audit_pb2.AUDIT_ACTOR_KIND_AGENT_POOL, 404)
    ]
    assert cairn.client.app[AUDIT_REFUSAL_LIMITER].dropped == PER_ADDRESS


async def test_only_site_admins_read_site_level_entries(
    cairn: Cairn, audit: audit_pb2_grpc.AuditServiceAsyncStub
) -> None:
    assert (await cairn.call("POST", "/api/stacks/admin/p/s/decrypt", token=None)).status == 401
    assert (await cairn.call("POST", "/api/stacks/admin/p/s/decrypt", body={})).status == 404
    org_admin = await cairn.new_user("oscar", org_role=("admin", ADMIN))
    site_level = "/api/admin/auditlogs/export?format=json&siteLevel=true"
    assert (await cairn.call("GET", site_level, token=org_admin)).status == 403
    # The organization's own admins see nothing of it.
    reply = await cairn.json("GET", "/api/orgs/admin/auditlogs", token=org_admin)
    assert [e["status"] for e in reply["auditLogEvents"]] == [404]
    exported = (await cairn.json("GET", site_level))["auditLogEvents"]
    assert [(e["path"], e["organization"]) for e in exported] == [
        ("/api/stacks/admin/p/s/decrypt", "")
    ]
    # Without the flag the site admin's export holds them among every organization's.
    everything = await cairn.json("GET", "/api/admin/auditlogs/export?format=json")
    assert {e["organization"] for e in everything["auditLogEvents"]} == {"", "admin"}
    response = await cairn.call("GET", "/api/admin/auditlogs/export?siteLevel=yes")
    assert response.status == 400 and (await response.json())["code"] == 400
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _entries(cairn, audit, organization="admin", is_site_level=True)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_limiter_counts_per_address_and_in_all_per_window() -> None:
    clock = ManualClock()
    limiter = RefusalLimiter(per_address=2, total=3, clock=clock)
    assert [limiter.allow("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.2") is True
    # The total is reached: a third address is refused too, whatever its own count.
    assert limiter.allow("10.0.0.3") is False
    assert limiter.dropped == 2
    clock.advance(59.9)
    assert limiter.allow("10.0.0.3") is False
    with capture_logs() as logs:
        clock.advance(0.2)
        assert limiter.allow("10.0.0.1") is True
    assert [(line["event"], line["entries"]) for line in logs] == [("audit_refusals_dropped", 3)]
    assert limiter.dropped == 3
    # A clock that went back starts a new window as well, and nothing is left to report.
    clock.advance(-3600)
    with capture_logs() as logs:
        assert [limiter.allow("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert logs == []
    # A limit of 0 keeps no site-level refusal at all.
    closed = RefusalLimiter(per_address=0, total=10, clock=clock)
    assert closed.allow("10.0.0.1") is False and closed.dropped == 1
