"""Webhook deliveries never connect to a denied address (literal, resolved, or IPv4-mapped),
never follow a redirect, and keep only a bounded excerpt of the receiver's answer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.config import Settings
from services.stacks.hooks.delivery import (
    DENIED_EXCERPT,
    AddressDenied,
    DeliveryPolicy,
    GuardedResolver,
    Sender,
    is_denied,
    parse_networks,
)
from services.stacks.hooks.domain import MAX_RESPONSE_EXCERPT, Delivery, HookRecord

DEFAULT_DENIED = parse_networks(Settings(_env_file=None).webhook_denied())  # type: ignore[call-arg]
ALLOW_PRIVATE = Settings(_env_file=None, webhook_allow_private=True)  # type: ignore[call-arg]


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses."""

    def __init__(self, *addresses: str) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


def hook(url: str) -> HookRecord:
    return HookRecord(
        id="h1",
        organization="acme",
        stack_id="",
        name="h",
        display_name="h",
        payload_url=url,
        active=True,
        format="raw",
        filters=(),
        groups=(),
        secret_ciphertext=None,
    )


def test_the_default_denies_metadata_loopback_and_private_addresses() -> None:
    denied = (
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "::",
        "::ffff:169.254.169.254",
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.20.0.5",
        "192.168.1.10",
        "fd12::1",
        "::ffff:10.0.0.1",
    )
    for address in denied:
        assert is_denied(address, DEFAULT_DENIED), address
    for address in ("93.184.216.34", "2606:4700::1", "example.com"):
        assert not is_denied(address, DEFAULT_DENIED), address
    # On-premises receivers: private and loopback allowed, metadata still not.
    allowed = parse_networks(ALLOW_PRIVATE.webhook_denied())
    assert not is_denied("10.1.2.3", allowed) and not is_denied("127.0.0.1", allowed)
    assert is_denied("169.254.169.254", allowed)


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    mixed = GuardedResolver(DEFAULT_DENIED, FixedResolver("169.254.169.254", "93.184.216.34"))
    assert [r["host"] for r in await mixed.resolve("hooks.example")] == ["93.184.216.34"]
    only_denied = GuardedResolver(DEFAULT_DENIED, FixedResolver("169.254.169.254"))
    with pytest.raises(AddressDenied):
        await only_denied.resolve("metadata.example")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/hook")

    async def verbose(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"x" * (MAX_RESPONSE_EXCERPT * 64))

    app = web.Application()
    app.router.add_post("/hook", take)
    app.router.add_post("/moved", moved)
    app.router.add_post("/verbose", verbose)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def deliver(url: str, denied: str = "169.254.0.0/16") -> Delivery:
    recorded: list[Delivery] = []

    async def record(delivery: Delivery) -> bool:
        recorded.append(delivery)
        return True

    async def no_secret(_hook: HookRecord) -> bytes | None:
        return None

    policy = DeliveryPolicy(
        timeout_seconds=5, attempts=1, backoff_seconds=0, denied_networks=parse_networks(denied)
    )
    sender = Sender(policy, no_secret, record)
    try:
        return await sender.attempt(hook(url), "ping", "ping", b"{}")
    finally:
        await sender.close()


async def test_a_denied_address_is_never_contacted(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    allowed = await deliver(url, "169.254.0.0/16")
    assert allowed.response_code == 204 and len(received) == 1

    # A literal address and a name resolving to one: refused before any connection.
    for target in (url, url.replace("127.0.0.1", "localhost")):
        refused = await deliver(target, "127.0.0.0/8,::1/128")
        assert refused.response_code == 0
        assert refused.response_body == DENIED_EXCERPT
    assert len(received) == 1


async def test_a_redirect_is_recorded_never_followed(receiver: tuple[str, list[bytes]]) -> None:
    url, received = receiver
    moved = await deliver(url.replace("/hook", "/moved"))
    assert moved.response_code == 302 and not moved.is_success
    assert received == []  # the redirect's target was never asked


async def test_only_a_bounded_excerpt_of_the_answer_is_kept(
    receiver: tuple[str, list[bytes]],
) -> None:
    url, _ = receiver
    answered = await deliver(url.replace("/hook", "/verbose"))
    assert answered.response_code == 200
    assert answered.response_body == "x" * MAX_RESPONSE_EXCERPT
