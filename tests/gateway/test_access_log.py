"""The gateway writes a line per request only when `CAIRN_ACCESS_LOG` asks for one."""

from __future__ import annotations

import logging

import pytest

from gateway.app import create_app
from services.common.config import SERVICE_NAMES, Settings
from tests.gateway.conftest import AiohttpClient, GatewayTestServer


@pytest.mark.parametrize(("choice", "is_logged"), [("off", False), ("requests", True)])
async def test_access_log_only_when_configured(
    settings: Settings,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    choice: str,
    is_logged: bool,
) -> None:
    # No service needs to answer for an unknown route.
    unused = {f"{name}_address": "127.0.0.1:9" for name in SERVICE_NAMES}
    configured = settings.model_copy(update={"access_log": choice, **unused})
    client = await aiohttp_client(GatewayTestServer(create_app(configured)))
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        response = await client.get("/api/no/such/route", headers={"Accept": "*/*"})
        assert response.status == 404
        await response.read()
    lines = [record for record in caplog.records if record.name == "aiohttp.access"]
    assert bool(lines) is is_logged
