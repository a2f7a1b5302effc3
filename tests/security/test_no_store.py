"""Every answer carrying a token or a secret value says `Cache-Control: no-store`."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from cairn.cli import start_services
from gateway.app import create_app
from gateway.routes import ROUTES
from services.common.config import Settings
from tests.gateway.cli import create_stack, stack_path
from tests.gateway.conftest import (
    ADMIN_TOKEN,
    CLI_HEADERS,
    AiohttpClient,
    Cairn,
    GatewayTestServer,
)
from tests.gateway.test_agent_pools import deploy, register

S = stack_path()
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


async def secret_answer(response: ClientResponse, status: int = 200) -> Any:
    """The JSON of an answer that must not be stored."""
    text = await response.text()
    assert response.status == status, text
    assert response.headers["Cache-Control"] == "no-store", response.url
    return orjson.loads(text) if text else None


async def test_token_creation_and_rotation(cairn: Cairn) -> None:
    personal = await secret_answer(
        await cairn.call("POST", "/api/user/tokens", body={"description": "laptop"})
    )
    assert personal["tokenValue"]
    rotated = await secret_answer(
        await cairn.call("POST", f"/api/user/tokens/{personal['id']}/rotate")
    )
    assert rotated["tokenValue"] != personal["tokenValue"]

    org = await secret_answer(
        await cairn.call("POST", "/api/orgs/admin/tokens", body={"name": "ci"})
    )
    assert org["tokenValue"]
    await secret_answer(await cairn.call("POST", f"/api/orgs/admin/tokens/{org['id']}/rotate"))

    await cairn.json("POST", "/api/orgs/admin/teams/pulumi", body={"name": "ops"})
    team = await secret_answer(
        await cairn.call("POST", "/api/orgs/admin/teams/ops/tokens", body={"name": "deploy"})
    )
    assert team["tokenValue"]
    await secret_answer(
        await cairn.call("POST", f"/api/orgs/admin/teams/ops/tokens/{team['id']}/rotate")
    )

    # Answers without a secret may be cached as usual.
    listing = await cairn.call("GET", "/api/user/tokens")
    assert listing.status == 200 and "Cache-Control" not in listing.headers


async def test_agent_pools_and_claimed_jobs(cairn: Cairn) -> None:
    response = await cairn.call("POST", "/api/orgs/admin/agent-pools", body={"name": "runners"})
    pool = await secret_answer(response)
    assert pool["tokenValue"]
    pool_token = pool["tokenValue"]

    await create_stack(cairn)
    await cairn.json(
        "POST",
        f"{S}/deployments/settings",
        body={"agentPoolID": pool["id"]},
    )
    await deploy(cairn)
    agent_id = await register(cairn, pool_token)
    job = await secret_answer(
        await cairn.call("POST", f"/api/agents/{agent_id}/claim", token=pool_token)
    )
    assert job["environment"]["PULUMI_ACCESS_TOKEN"]


async def test_update_lease_tokens(cairn: Cairn) -> None:
    await create_stack(cairn)
    created = await cairn.json(
        "POST",
        f"{S}/update",
        body={"name": "web", "runtime": "nodejs", "options": {}, "config": {}, "metadata": {}},
    )
    path = f"{S}/update/{created['updateID']}"
    started = await secret_answer(await cairn.call("POST", path, body={"tags": {}}))
    assert started["token"]
    renewed = await cairn.client.post(
        f"{path}/renew_lease",
        data=orjson.dumps({"token": started["token"], "duration": 60}),
        headers={**CLI_HEADERS, "Authorization": f"update-token {started['token']}"},
    )
    assert (await secret_answer(renewed))["token"]


async def test_decrypted_secrets(cairn: Cairn) -> None:
    await create_stack(cairn)
    plaintext = base64.b64encode(b"s3cr3t").decode()
    sealed = await cairn.json("POST", f"{S}/encrypt", body={"plaintext": plaintext})
    opened = await secret_answer(
        await cairn.call("POST", f"{S}/decrypt", body={"ciphertext": sealed["ciphertext"]})
    )
    assert opened["plaintext"] == plaintext
    batch = await secret_answer(
        await cairn.call("POST", f"{S}/batch-decrypt", body={"ciphertexts": [sealed["ciphertext"]]})
    )
    assert list(batch["plaintexts"].values()) == [plaintext]


async def test_first_admin_bootstrap(settings: Settings, aiohttp_client: AiohttpClient) -> None:
    system = await start_services(settings)
    try:
        client = await aiohttp_client(GatewayTestServer(create_app(system.settings)))
        for path in ("/api/admin/bootstrap", "/api/admin/bootstrap/first-admin"):
            response = await client.post(
                path,
                data=orjson.dumps({"login": "root", "organization": "acme"}),
                headers=CLI_HEADERS,
            )
            if path.endswith("bootstrap"):
                assert (await secret_answer(response, 201))["token"]
            else:  # already done; the refusal is still not stored
                await secret_answer(response, 409)
    finally:
        await system.stop(grace=0)


async def sign_in(client: TestClient[Any, Any], token: str) -> ClientResponse:
    form = await client.get("/signin")
    found = CSRF.search(await form.text())
    assert found
    return await client.post(
        "/signin",
        data={"token": token, "next": "/", "csrf_token": found.group(1)},
        allow_redirects=False,
    )


async def test_console_sign_in(cairn: Cairn) -> None:
    refused = await sign_in(cairn.client, "pul-wrong")
    assert refused.status == 401 and refused.headers["Cache-Control"] == "no-store"
    signed = await sign_in(cairn.client, ADMIN_TOKEN)
    assert signed.status == 303, await signed.text()
    assert signed.headers["Cache-Control"] == "no-store"
    assert "cairn_session" in signed.cookies or signed.headers.getall("Set-Cookie")


def test_the_route_table_marks_every_answer_with_a_token() -> None:
    marked = {route.operation_id for route in ROUTES if route.shows_secret}
    assert marked == {
        "bootstrap_first_admin",
        "bootstrap_first_admin_alias",
        "create_personal_token",
        "rotate_personal_token",
        "create_org_token",
        "rotate_org_token",
        "create_team_token",
        "rotate_team_token",
        "create_org_agent_pool",
        "claim_deployment",
        "start_update",
        "renew_update_lease",
        "decrypt_value",
        "batch_decrypt_value",
        "token",
        # A new user's, a re-enabled user's or a new member's token; an invitation link.
        "create_user",
        "enable_user",
        "accept_invite_link",
        "batch_create_org_invite_email",
    }
