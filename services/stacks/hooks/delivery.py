"""Sending one payload to one hook over HTTP: signed, bounded in time, every attempt kept."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import orjson

from services.common.logging import get_logger
from services.stacks.hooks.domain import MAX_RESPONSE_EXCERPT, Delivery, HookRecord

log = get_logger("cairn.hooks")

KIND_HEADER = "Pulumi-Webhook-Kind"
ID_HEADER = "Pulumi-Webhook-ID"
SIGNATURE_HEADER = "Pulumi-Webhook-Signature"
USER_AGENT = "Cairn-Webhooks/1"
MAX_HEADER_VALUE = 512


def _headers_json(headers: Mapping[str, str]) -> str:
    """A receiver's answer headers as a JSON object, bounded in count and size."""
    kept = {str(name): value[:MAX_HEADER_VALUE] for name, value in list(headers.items())[:50]}
    return orjson.dumps(kept).decode()


def signature(secret: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of the exact body bytes under the hook's secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float
    attempts: int
    backoff_seconds: float


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
    ) -> None:
        self._policy = policy
        self._secret_of = secret_of
        self._record = record
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout_seconds),
                headers={"User-Agent": USER_AGENT},
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
        status, response_headers, excerpt = 0, "{}", ""
        try:
            async with self._http().post(
                hook.payload_url, data=body, headers=sent, allow_redirects=False
            ) as response:
                status = response.status
                response_headers = _headers_json(response.headers)
                raw = await response.content.read(MAX_RESPONSE_EXCERPT)
                excerpt = raw.decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
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
            request_headers=orjson.dumps(headers).decode(),
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
        """Attempts until one is answered 2xx, at most `attempts`, doubling the delay."""
        delay = self._policy.backoff_seconds
        delivery = await self.attempt(hook, kind, event, body)
        for _ in range(self._policy.attempts - 1):
            if delivery.is_success:
                break
            await self._sleep(delay)
            delay *= 2
            delivery = await self.attempt(hook, kind, event, body)
        return delivery
