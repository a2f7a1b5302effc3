"""Sending one payload to one hook over HTTP: signed, bounded in time, every attempt kept."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.logging import get_logger
from services.stacks.hooks.domain import MAX_RESPONSE_EXCERPT, Delivery, HookRecord

log = get_logger("cairn.hooks")

KIND_HEADER = "Pulumi-Webhook-Kind"
ID_HEADER = "Pulumi-Webhook-ID"
SIGNATURE_HEADER = "Pulumi-Webhook-Signature"
USER_AGENT = "Cairn-Webhooks/1"
MAX_HEADER_VALUE = 512
DENIED_EXCERPT = "delivery refused: the payload URL's address is in CAIRN_WEBHOOK_DENIED_NETWORKS"


def header_block(headers: Mapping[str, str]) -> str:
    """Headers as Pulumi's delivery log shows them (`Name: value` lines, each ended by CRLF),
    bounded in count and size."""
    kept = list(headers.items())[:50]
    return "".join(f"{name}: {value[:MAX_HEADER_VALUE]}\r\n" for name, value in kept)


def signature(secret: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of the exact body bytes under the hook's secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks from a comma-separated setting (validated where settings are read)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def is_denied(address: str, denied: Sequence[Network]) -> bool:
    """Whether an IP address lies in one of the denied networks (IPv4-mapped IPv6 too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in denied)


class AddressDenied(OSError):
    """A payload URL's host is, or resolves only to, denied addresses."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver keeping only allowed addresses: a connection goes to an address
    checked here, so a name that later resolves elsewhere cannot slip past the check."""

    def __init__(self, denied: Sequence[Network], inner: AbstractResolver | None = None) -> None:
        self._denied = tuple(denied)
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [entry for entry in found if not is_denied(entry["host"], self._denied)]
        if not allowed:
            raise AddressDenied(f"{host} resolves only to addresses webhooks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float
    attempts: int
    backoff_seconds: float
    # CAIRN_WEBHOOK_DENIED_NETWORKS: addresses no delivery connects to.
    denied_networks: tuple[Network, ...] = field(default=())


# The hook's secret in clear, or None when it has none; asked for on every attempt.
SecretOf = Callable[[HookRecord], Awaitable[bytes | None]]
Record = Callable[[Delivery], Awaitable[bool]]


class Sender:
    """POSTs payloads with one shared HTTP session, created on first use."""

    def __init__(
        self,
        policy: DeliveryPolicy,
        secret_of: SecretOf,
        record: Record,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._policy = policy
        self._secret_of = secret_of
        self._record = record
        self._sleep = sleep
        self._jitter = jitter
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout_seconds),
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(self._policy.denied_networks)
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def attempt(self, hook: HookRecord, kind: str, event: str, body: bytes) -> Delivery:
        """One POST, recorded whatever its outcome (status 0 when no answer came)."""
        delivery_id = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", KIND_HEADER: kind, ID_HEADER: delivery_id}
        sent = dict(headers)
        secret = await self._secret_of(hook)
        if secret:
            sent[SIGNATURE_HEADER] = signature(secret, body)
        started = time.time()
        began = time.perf_counter()
        status, response_headers, excerpt = 0, "", ""
        try:
            # A literal address never reaches the resolver: checked here.
            host = urlsplit(hook.payload_url).hostname or ""
            if is_denied(host, self._policy.denied_networks):
                raise AddressDenied(f"{host} is an address webhooks may not reach")
            async with self._http().post(
                hook.payload_url, data=body, headers=sent, allow_redirects=False
            ) as response:
                status = response.status
                response_headers = header_block(response.headers)
                raw = await response.content.read(MAX_RESPONSE_EXCERPT)
                excerpt = raw.decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            if isinstance(error, AddressDenied) or isinstance(
                getattr(error, "os_error", None), AddressDenied
            ):
                excerpt = DENIED_EXCERPT
            else:
                excerpt = f"delivery failed: {type(error).__name__}"
        delivery = Delivery(
            id=delivery_id,
            hook_id=hook.id,
            kind=kind,
            event=event,
            payload=body.decode(),
            timestamp=int(started * 1000),
            duration_ms=int((time.perf_counter() - began) * 1000),
            request_url=hook.payload_url,
            # Never the signature: it is derived from the secret.
            request_headers=header_block(headers),
            response_code=status,
            response_headers=response_headers,
            response_body=excerpt,
        )
        await self._record(delivery)
        log.info(
            "webhook_delivery",
            hook_id=hook.id,
            delivery_id=delivery_id,
            kind=kind,
            status=status,
            duration_ms=delivery.duration_ms,
        )
        return delivery

    async def deliver(self, hook: HookRecord, kind: str, event: str, body: bytes) -> Delivery:
        """Attempts until one is answered 2xx, at most `attempts`, the delay doubling each
        time with jitter over its upper half (receivers that failed together are not all
        retried at the same instant)."""
        delay = self._policy.backoff_seconds
        delivery = await self.attempt(hook, kind, event, body)
        for _ in range(self._policy.attempts - 1):
            if delivery.is_success:
                break
            await self._sleep(delay / 2 + self._jitter() * delay / 2)
            delay *= 2
            delivery = await self.attempt(hook, kind, event, body)
        return delivery
