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
from collections.abc import Callable, Iterable, Sequence
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
from services.common.channel_wrapper import DelegatingChannel
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.keyfile import load_or_create_key, parse_key

SIGNATURE_CONTEXT = b"cairn-call-v1\n"
SIGNATURE_TTL_SECONDS = 60
# A signed principal is sent again for the same method and caller while at least this much of
# its life is left: signing once per call costs a JSON encoding and an HMAC on every hop.
SIGNATURE_REUSE_MARGIN_SECONDS = SIGNATURE_TTL_SECONDS // 2
# Distinct (method, caller) pairs kept; past it the cache starts again empty.
SIGNATURE_CACHE_ENTRIES = 4096
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
        # (method, user id, login, token id) -> (expires at, encoded principal, signature)
        self._signed: dict[tuple[str, str, str, str], tuple[int, str, str]] = {}

    def sign(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> list[tuple[str, str | bytes]]:
        """The metadata to send: the caller's keys replaced by the signed principal."""
        pairs = list(metadata or ())
        encoded, signed = self._principal(method, caller_from_metadata(pairs))
        kept = [
            (key, value)
            for key, value in pairs
            if key not in CALLER_KEYS and key not in (PRINCIPAL_KEY, SIGNATURE_KEY)
        ]
        return [*kept, (PRINCIPAL_KEY, encoded), (SIGNATURE_KEY, signed)]

    def _principal(self, method: str, caller: Caller) -> tuple[str, str]:
        """The encoded principal and its signature, reused while enough of its life is left
        (the request id is not part of the principal)."""
        key = (method, caller.user_id, caller.login, caller.token_id)
        now = self._clock.now()
        cached = self._signed.get(key)
        if cached is not None and cached[0] - now >= SIGNATURE_REUSE_MARGIN_SECONDS:
            return cached[1], cached[2]
        expires_at = int(now) + SIGNATURE_TTL_SECONDS
        encoded = encode_principal(caller, method, expires_at)
        signed = signature(self._key, encoded)
        if len(self._signed) >= SIGNATURE_CACHE_ENTRIES:
            self._signed.clear()
        self._signed[key] = (expires_at, encoded, signed)
        return encoded, signed


class _SigningUnaryUnary(grpc.aio.UnaryUnaryMultiCallable[Any, Any]):
    """One unary method of a signing channel: signs the caller, then calls as usual."""

    def __init__(
        self,
        inner: grpc.aio.UnaryUnaryMultiCallable[Any, Any],
        method: str,
        signer: CallSigner,
    ) -> None:
        self._inner = inner
        self._method = method
        self._signer = signer

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: grpc.aio.Metadata | Sequence[tuple[str, str | bytes]] | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.aio.UnaryUnaryCall[Any, Any]:
        return self._inner(
            request,
            timeout=timeout,
            metadata=self._signer.sign(self._method, metadata),
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )


class SigningChannel(DelegatingChannel):
    """A channel whose unary calls carry the signed principal (all of Cairn's calls between
    processes are unary).

    Signing happens when the call is made rather than in a client interceptor: grpc.aio runs
    the interceptors of every call in a task of its own beside the call's, which cost more
    than the signature on the update path.
    """

    def __init__(self, channel: grpc.aio.Channel, signer: CallSigner) -> None:
        super().__init__(channel)
        self._signer = signer

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        name = method.decode() if isinstance(method, bytes) else str(method)
        inner = self._inner.unary_unary(  # type: ignore[call-arg]
            method,
            request_serializer,
            response_deserializer,
            _registered_method,
        )
        return _SigningUnaryUnary(inner, name, self._signer)
