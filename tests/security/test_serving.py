"""`cairn up` and `cairn serve gateway` serve the gateway with the same edge as the tests:
aiohttp's own errors in JSON, and gzip bodies left to the bounded inflater."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from pydantic import SecretStr

from cairn.cli import free_ports, serve, up
from services.common.config import SERVICE_NAMES, Settings
from tests.gateway.conftest import ADMIN_TOKEN
from tests.security.raw_http import bomb_request, parse_response, request_bytes

START_TIMEOUT_SECONDS = 60.0


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await asyncio.wait_for(reader.read(), START_TIMEOUT_SECONDS)
    finally:
        writer.close()


async def _until_listening(port: int, server: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert not server.done(), server
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on {port}")


def _serving(way: str, settings: Settings) -> Coroutine[Any, Any, None]:
    if way == "up":
        return up(settings)
    # The gateway alone: no service needs to answer for what is checked here.
    unused = {f"{name}_address": "127.0.0.1:9" for name in SERVICE_NAMES}
    return serve("gateway", settings.model_copy(update=unused))


@pytest.mark.parametrize("way", ["up", "serve gateway"])
async def test_every_way_of_serving_has_the_same_edge(settings: Settings, way: str) -> None:
    (port,) = free_ports(1)
    configured = settings.model_copy(update={"port": port, "admin_token": SecretStr(ADMIN_TOKEN)})
    server = asyncio.create_task(_serving(way, configured))
    try:
        await _until_listening(port, server)
        answer = parse_response(await _exchange(port, b"GARBAGE /\r\n\r\n"))
        assert (answer.status, answer.headers["content-type"]) == (400, "application/json")
        assert answer.json()["code"] == 400

        started = time.process_time()
        raw = bomb_request("POST", "/api/no/such/route", is_authenticated=False)
        answer = parse_response(await _exchange(port, raw))
        assert answer.status == 404 and answer.json()["code"] == 404
        assert time.process_time() - started < 1.0

        if way == "up":
            headers = {"Accept": "*/*", "Authorization": f"token {ADMIN_TOKEN}"}
            raw = request_bytes("GET", "/api/user", headers)
            answer = parse_response(await _exchange(port, raw))
            assert answer.status == 200 and answer.json()["githubLogin"] == "admin"
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
