"""Bootstrap of the first admin, health, capabilities and the request id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cairn.cli import System, start_services
from gateway.app import create_app
from services.common.config import Settings
from tests.gateway.conftest import CLI_HEADERS, AiohttpClient, Cairn


@pytest.fixture
async def fresh(
    any_settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], System]]:
    """A system started without CAIRN_ADMIN_TOKEN: nobody exists yet."""
    system = await start_services(any_settings)
    try:
        yield await aiohttp_client(create_app(system.settings)), system
    finally:
        await system.stop(grace=0)


async def test_bootstrap_creates_the_first_admin_once(
    fresh: tuple[TestClient[web.Request, web.Application], System],
) -> None:
    client, _ = fresh
    status = await client.get("/api/admin/bootstrap", headers=CLI_HEADERS)
    before = await status.json()
    assert before["bootstrapNeeded"] is True
    assert (before["bootstrapRequired"], before["firstAdminConfigured"]) == (True, False)
    assert before["organizationConfigured"] is False
    assert any("first-admin" in step for step in before["nextSteps"])
    created = await client.post(
        "/api/admin/bootstrap", json={"login": "alice", "organization": "acme"}, headers=CLI_HEADERS
    )
    assert created.status == 201, await created.text()
    body = await created.json()
    token = body["token"]
    assert token and body["user"]["githubLogin"] == "alice"
    user = await client.get("/api/user", headers={**CLI_HEADERS, "Authorization": f"token {token}"})
    assert (await user.json())["organizations"] == [
        {"githubLogin": "acme", "name": "acme", "avatarUrl": "", "role": "admin", "roleId": "admin"}
    ]
    again = await client.post("/api/admin/bootstrap", json={}, headers=CLI_HEADERS)
    assert again.status == 409
    assert (await again.json())["code"] == 409
    status = await client.get("/api/admin/bootstrap", headers=CLI_HEADERS)
    after = await status.json()
    assert after["bootstrapNeeded"] is False
    assert (after["bootstrapRequired"], after["firstAdminConfigured"]) == (False, True)
    assert after["organizationConfigured"] is True
    assert after["nextSteps"] and not any("first-admin" in step for step in after["nextSteps"])


async def test_concurrent_bootstraps_have_one_winner(
    fresh: tuple[TestClient[web.Request, web.Application], System],
) -> None:
    client, _ = fresh
    responses = await asyncio.gather(
        *(
            client.post("/api/admin/bootstrap", json={"login": f"u{i}"}, headers=CLI_HEADERS)
            for i in range(5)
        )
    )
    assert sorted(r.status for r in responses) == [201, 409, 409, 409, 409]


async def test_bootstrap_rejects_bad_input(
    fresh: tuple[TestClient[web.Request, web.Application], System],
) -> None:
    client, _ = fresh
    bad = await client.post("/api/admin/bootstrap", json={"login": "a b"}, headers=CLI_HEADERS)
    assert bad.status == 400
    wrong = await client.post("/api/admin/bootstrap", json={"login": 5}, headers=CLI_HEADERS)
    assert wrong.status == 400
    status = await client.get("/api/admin/bootstrap", headers=CLI_HEADERS)
    assert (await status.json())["bootstrapNeeded"] is True


async def test_healthz_reports_every_service(cairn: Cairn) -> None:
    healthy = await cairn.json("GET", "/healthz")
    assert healthy["status"] == "ok"
    assert set(healthy["services"]) == {
        "identity",
        "stacks",
        "secrets",
        "updates",
        "agent_pools",
        "copilot",
    }
    stopped = cairn.system.services.pop()
    await stopped.stop(grace=0)
    response = await cairn.call("GET", "/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["code"] == 503 and body["services"][stopped.name] == "unavailable"


async def test_request_id_is_echoed(cairn: Cairn) -> None:
    response = await cairn.call("GET", "/api/user", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.headers["X-Pulumi-Request-ID"] == "abc-123"
    generated = await cairn.call("GET", "/api/user", token=None)
    assert len(generated.headers["X-Request-ID"]) == 32


async def test_capabilities_are_only_what_works(cairn: Cairn) -> None:
    capabilities = await cairn.json("GET", "/api/capabilities", token=None)
    # Exact shapes: one malformed recognised entry makes the CLI drop them all (§3.1.3).
    assert capabilities == {
        "capabilities": [
            {"capability": "batch-encrypt"},
            {
                "capability": "delta-checkpoint-uploads-v2",
                "version": 2,
                "configuration": {"checkpointCutoffSizeBytes": 32768},
            },
            {
                "capability": "deployment-schema-version",
                "version": 1,
                "configuration": {"version": 4},
            },
        ]
    }
    version = await cairn.json("GET", "/api/cli/version", token=None)
    assert version["latestVersion"].count(".") == 2
