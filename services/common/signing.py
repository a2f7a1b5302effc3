"""Signing the caller of every call a Cairn process makes to a Cairn service.

The scheme (checked by `services/common/verification.py`): the principal is the JSON object
`{"v": 1, "m": <full method>, "exp": <unix seconds>, "uid", "login", "tid"}` (empty members
left out), sent base64url-encoded as `x-cairn-principal`, with `x-cairn-signature` the hex
HMAC-SHA256 of `cairn-call-v1\\n` + that base64url text under the internal key
(`CAIRN_INTERNAL_KEY`, or `internal.key` in the data dir). A signature covers one method and
lives `SIGNATURE_TTL_SECONDS`, so a captured one can be neither pointed at another method nor
kept for later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import orjson

from services.common.auth import (
    CALLER_KEYS,
    PRINCIPAL_KEY,
    SIGNATURE_KEY,
    Caller,
    caller_from_metadata,
)
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.keyfile import load_or_create_key, parse_key

SIGNATURE_CONTEXT = b"cairn-call-v1\n"
SIGNATURE_TTL_SECONDS = 60
INTERNAL_KEY_FILE = "internal.key"


def load_internal_key(settings: Settings) -> bytes:
    """`CAIRN_INTERNAL_KEY`, else the key kept in the data dir (generated on first use)."""
    if settings.internal_key is not None:
        return parse_key(settings.internal_key.get_secret_value(), source="CAIRN_INTERNAL_KEY")
    return load_or_create_key(settings.data_dir / INTERNAL_KEY_FILE)


def signature(key: bytes, encoded_principal: str) -> str:
    """The HMAC both sides compute over an encoded principal."""
    return hmac.new(key, SIGNATURE_CONTEXT + encoded_principal.encode(), hashlib.sha256).hexdigest()


def encode_principal(caller: Caller, method: str, expires_at: int) -> str:
    fields: dict[str, Any] = {"v": 1, "m": method, "exp": expires_at}
    for name, value in (("uid", caller.user_id), ("login", caller.login), ("tid", caller.token_id)):
        if value:
            fields[name] = value
    return base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode("ascii")


class CallSigner:
    """Turns the caller a process names in outgoing metadata into a signed principal."""

    def __init__(self, key: bytes, clock: Clock | None = None) -> None:
        self._key = key
        self._clock = clock or SystemClock()

    def sign(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> list[tuple[str, str | bytes]]:
        """The metadata to send: the caller's keys replaced by the signed principal."""
        pairs = list(metadata or ())
        caller = caller_from_metadata(pairs)
        expires_at = int(self._clock.now()) + SIGNATURE_TTL_SECONDS
        encoded = encode_principal(caller, method, expires_at)
        kept = [
            (key, value)
            for key, value in pairs
            if key not in CALLER_KEYS and key not in (PRINCIPAL_KEY, SIGNATURE_KEY)
        ]
        return [*kept, (PRINCIPAL_KEY, encoded), (SIGNATURE_KEY, signature(self._key, encoded))]


class SigningInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Signs every unary call of a channel (all of Cairn's calls between processes are)."""

    def __init__(self, signer: CallSigner) -> None:
        self._signer = signer

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        details = grpc.aio.ClientCallDetails(
            method,
            client_call_details.timeout,
            self._signer.sign(name, client_call_details.metadata),  # type: ignore[arg-type]
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)
