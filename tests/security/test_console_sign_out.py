"""Console sign-out ends the session on the server: a copy of the cookie taken before signing
out is refused afterwards, by this gateway and by any other replica (they share nothing but
the identity service)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.console.session import SESSION_COOKIE, Sessions
from protos.cairn.v1 import console_pb2, console_pb2_grpc
from tests.conftest import signed_channel
from tests.console.conftest import Browser, csrf_of
from tests.gateway.conftest import AiohttpClient, Cairn

Client = TestClient[web.Request, web.Application]
SESSION_KEY = "a-console-session-key-shared-by-every-gateway-replica"


@pytest.fixture
async def replicas(cairn: Cairn, aiohttp_client: AiohttpClient) -> AsyncIterator[list[Client]]:
    """Two more gateways on the same services, sealing cookies with one shared key."""
    settings = cairn.system.settings.model_copy(
        update={"console_session_key": SecretStr(SESSION_KEY)}
    )
    yield [await aiohttp_client(create_app(settings)) for _ in range(2)]


def _browser(client: Client) -> Browser:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    return Browser(session, client.make_url("/"))


async def _page_with(client: Client, cookie: str, path: str = "/") -> int:
    """Open a page presenting exactly this session cookie (as a thief with a copy would)."""
    async with (
        aiohttp.ClientSession() as thief,
        thief.get(
            client.make_url(path),
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            allow_redirects=False,
        ) as response,
    ):
        return response.status


async def test_a_cookie_copied_before_sign_out_is_refused_on_every_replica(
    replicas: list[Client],
) -> None:
    first, second = replicas
    browser = _browser(first)
    try:
        await browser.sign_in()
        cookie = browser.cookie(SESSION_COOKIE)
        assert cookie
        # The same cookie works on both replicas (shared sealing key) before sign-out.
        assert await _page_with(first, cookie) == 200
        assert await _page_with(second, cookie) == 200
        assert await _page_with(second, cookie, "/orgs/admin") == 200

        home = await browser.get("/")
        signed_out = await browser.post("/signout", {"csrf_token": csrf_of(home.text)})
        assert signed_out.status == 303 and signed_out.location == "/signin"
        assert browser.cookie(SESSION_COOKIE) is None

        # The old cookie, replayed anywhere, is now only a way to the sign-in page.
        for replica in (first, second):
            for path in ("/", "/orgs/admin", "/copilot"):
                assert await _page_with(replica, cookie, path) == 303
        async with (
            aiohttp.ClientSession() as thief,
            thief.get(
                second.make_url("/"),
                headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
                allow_redirects=False,
            ) as response,
        ):
            assert response.headers["Location"].startswith("/signin")
            # The refused cookie is dropped.
            assert response.cookies[SESSION_COOKIE].value == ""

        # Signing in again makes a new, working session.
        await browser.sign_in()
        fresh = browser.cookie(SESSION_COOKIE)
        assert fresh and fresh != cookie
        assert await _page_with(second, fresh) == 200
    finally:
        await browser.session.close()


async def test_sign_out_on_one_browser_leaves_other_sessions_alone(
    replicas: list[Client],
) -> None:
    first, _ = replicas
    one, other = _browser(first), _browser(first)
    try:
        await one.sign_in()
        await other.sign_in()
        home = await one.get("/")
        await one.post("/signout", {"csrf_token": csrf_of(home.text)})
        assert (await one.get("/")).status == 303
        assert (await other.get("/")).status == 200
    finally:
        await one.session.close()
        await other.session.close()


async def test_cookies_without_a_session_id_are_refused() -> None:
    sessions = Sessions(SESSION_KEY.encode())
    started = sessions.start("pul-token")
    assert sessions.open(sessions.seal(started)) == started
    # What a cookie sealed before sessions had ids looks like: it cannot be signed out.
    legacy = orjson.dumps({"t": "pul-token", "c": started.csrf_nonce, "e": started.expires_at})
    nonce = b"\x00" * 12
    sealed = nonce + sessions._cipher.encrypt(nonce, legacy, SESSION_COOKIE.encode())
    assert sessions.open(base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()) is None


async def test_the_revocation_service_checks_its_input(cairn: Cairn) -> None:
    channel = signed_channel(cairn.system.settings, cairn.system.settings.identity_address)
    stub = console_pb2_grpc.ConsoleSessionServiceStub(channel)
    try:
        session_id = "A" * 43
        check = console_pb2.CheckSessionRequest(session_id=session_id)
        assert not (await stub.CheckSession(check)).is_revoked
        # Already expired: nothing to remember.
        await stub.RevokeSession(
            console_pb2.RevokeSessionRequest(session_id=session_id, expires_at=1000)
        )
        assert not (await stub.CheckSession(check)).is_revoked
        expires_at = int(time.time()) + 3600
        for _ in range(2):  # idempotent
            await stub.RevokeSession(
                console_pb2.RevokeSessionRequest(session_id=session_id, expires_at=expires_at)
            )
        assert (await stub.CheckSession(check)).is_revoked
        far = 2**40
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RevokeSession(
                console_pb2.RevokeSessionRequest(session_id=session_id, expires_at=far)
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for bad in ("", "short", "x" * 65, "A" * 42 + "/"):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.CheckSession(console_pb2.CheckSessionRequest(session_id=bad))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await channel.close(None)
