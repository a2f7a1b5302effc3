"""Brute force: past the failed-authentication limit an address gets 429 with Retry-After,
without the identity service being asked; valid callers are never slowed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway import auth_failures
from gateway.auth_failures import AuthFailures, counted_as
from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

LIMIT = 20  # the default "20/minute"
ATTACKER = "203.0.113.7"


@pytest.fixture
async def proxied_cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """Behind a reverse proxy on 127.0.0.1, which names clients in X-Forwarded-For."""
    behind = settings.model_copy(update={"trusted_proxies": "127.0.0.1/32, ::1"})
    async for running in running_cairn(behind, aiohttp_client):
        yield running


async def get_user(cairn: Cairn, token: str, client: str | None = None) -> tuple[int, str, str]:
    headers = {"X-Forwarded-For": f"198.51.100.1, {client}"} if client else {}
    response = await cairn.call("GET", "/api/user", token=token, headers=headers)
    body = await response.json()
    if response.status >= 400:
        assert body["code"] == response.status
    return response.status, response.headers.get("Retry-After", ""), body.get("message", "")


async def test_400_wrong_tokens_in_a_row_meet_429(proxied_cairn: Cairn) -> None:
    cairn = proxied_cairn
    answers = [await get_user(cairn, f"pul-wrong-{n}", ATTACKER) for n in range(400)]

    assert [status for status, _, _ in answers[:LIMIT]] == [401] * LIMIT
    assert {status for status, _, _ in answers[LIMIT:]} == {429}
    for _, retry_after, message in answers[LIMIT:]:
        assert 1 <= int(retry_after) <= 60
        assert message.startswith("Too Many Requests")
    assert all(retry_after == "" for _, retry_after, _ in answers[:LIMIT])
    # The identity service is not asked: even the right token is refused from there now.
    assert (await get_user(cairn, ADMIN_TOKEN, ATTACKER))[0] == 429
    # Every other route that takes a credential is closed to that address too.
    response = await cairn.call(
        "POST", "/api/agents/register", token="pul-pool", headers={"X-Forwarded-For": ATTACKER}
    )
    assert response.status == 429 and response.headers["Retry-After"]
    # Public routes stay open to it.
    response = await cairn.call("GET", "/api/capabilities", headers={"X-Forwarded-For": ATTACKER})
    assert response.status == 200

    # Other addresses are not affected.
    assert (await get_user(cairn, ADMIN_TOKEN, "203.0.113.8"))[0] == 200
    assert (await get_user(cairn, "pul-wrong", "203.0.113.9"))[0] == 401


async def test_valid_callers_are_never_slowed(proxied_cairn: Cairn) -> None:
    cairn = proxied_cairn
    for _ in range(3 * LIMIT):
        assert (await get_user(cairn, ADMIN_TOKEN, ATTACKER))[0] == 200
    # Successes do not count: the address still has its whole allowance of failures.
    statuses = [(await get_user(cairn, "pul-wrong", ATTACKER))[0] for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


async def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(cairn: Cairn) -> None:
    statuses = [(await get_user(cairn, "pul-wrong", f"203.0.113.{n}"))[0] for n in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


async def test_every_kind_of_failed_authentication_counts(cairn: Cairn) -> None:
    """Missing, malformed and unknown credentials, on every kind of credentialed route."""
    failures = [
        ("GET", "/api/user", None),
        ("GET", "/api/user", "pul-unknown"),
        ("POST", "/api/orgs/admin/tokens", "pul-unknown"),
        ("POST", "/api/agents/register", "pul-unknown-pool"),
        ("GET", "/api/stacks/admin/web/dev", "pul-unknown"),
    ]
    statuses = [
        (await cairn.call(method, path, token=token, body={})).status
        for n in range(LIMIT)
        for method, path, token in [failures[n % len(failures)]]
    ]
    assert statuses == [401] * LIMIT
    assert (await cairn.call("GET", "/api/user")).status == 429


async def test_the_limit_and_window_are_settings(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    tight = settings.model_copy(update={"auth_failure_limit": "3 per 1 hour"})
    async for cairn in running_cairn(tight, aiohttp_client):
        statuses = [(await get_user(cairn, "pul-wrong"))[0] for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        response = await cairn.call("GET", "/api/user")
        assert 3000 < int(response.headers["Retry-After"]) <= 3600


def test_a_malformed_limit_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(auth_failure_limit="twenty a minute")
    with pytest.raises(ValueError):
        Settings(trusted_proxies="not-an-address")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 10.0.0.2", "10.0.0.2"),
        ("127.0.0.1", "203.0.113.7, 127.0.0.5", "203.0.113.7"),
        ("127.0.0.1", "junk, 127.0.0.5", "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),
    ],
)
def test_the_client_address_behind_trusted_proxies(peer: str, forwarded: str, client: str) -> None:
    request = make_mocked_request("GET", "/", headers={"X-Forwarded-For": forwarded})
    failures = AuthFailures("20/minute", "127.0.0.0/8")
    assert failures.client_address(request.clone(remote=peer)) == client


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("", ""),
    ],
)
def test_an_ipv6_host_counts_as_its_whole_64(address: str, key: str) -> None:
    assert counted_as(address) == key


async def test_one_ipv6_64_shares_one_allowance() -> None:
    failures = AuthFailures("2/minute")
    await failures.record("2001:db8::1")
    await failures.record("2001:db8::2")
    assert await failures.retry_after("2001:db8::3") is not None
    assert await failures.retry_after("2001:db8:0:1::3") is None


async def test_a_limit_ends_with_its_window_and_never_touches_other_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = AuthFailures("2/second")
    await failures.record("192.0.2.1")
    assert await failures.retry_after("192.0.2.1") is None  # one failure: under the limit
    await failures.record("192.0.2.1")
    assert await failures.retry_after("192.0.2.1") is not None
    assert await failures.retry_after("192.0.2.2") is None
    await asyncio.sleep(1.2)  # both failures have left the one-second window
    assert await failures.retry_after("192.0.2.1") is None
    # Past the sweep size the addresses whose failures left the window are forgotten, and
    # one still inside it is still limited.
    monkeypatch.setattr(auth_failures, "RECENT_FAILURES_SWEEP_AT", 3)
    for host in range(3, 6):
        await failures.record(f"192.0.2.{host}")
    await failures.record("192.0.2.5")
    assert await failures.retry_after("192.0.2.5") is not None
    assert await failures.retry_after("192.0.2.3") is None
