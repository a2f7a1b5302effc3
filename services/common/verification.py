"""Deciding who made a call a service receives; nothing is trusted for where it comes from.

Every method but the health check needs one of two credentials:
1. a principal signed with the internal key (Cairn's own processes; scheme in `signing.py`):
   valid only for the method it names and until it expires;
2. an access token as `authorization: token <value>` (or `bearer <value>`) metadata (a
   team's own tools): held to the method's REST twin (`call_access.py`, `token_callers.py`).
Metadata naming a user without a valid signature is ignored, never believed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from google.protobuf.message import Message

from services.common.auth import (
    AUTHORIZATION_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    SIGNATURE_KEY,
    Caller,
    metadata_values,
)
from services.common.call_access import (
    REFLECTION_ACCESS,
    TOKEN_ACCESS,
    UNAUTHENTICATED_PREFIXES,
    MethodAccess,
)
from services.common.clock import Clock, SystemClock
from services.common.errors import PermissionDenied, Unauthenticated, Unavailable
from services.common.signing import SIGNATURE_TTL_SECONDS, signature
from services.common.token_callers import TokenAuthorizer, TokenGrant

NO_CREDENTIAL = (
    "Unauthenticated: this call needs a credential; send an access token as "
    "`authorization: token <value>` metadata"
)
BAD_PRINCIPAL = "Unauthenticated: the call's signed principal is invalid or has expired"
BAD_AUTHORIZATION = "Unauthenticated: the authorization metadata must be `token <value>`"
# Allowance for clocks of replicas that disagree a little.
CLOCK_SKEW_SECONDS = 30
# Verified principals kept (callers reuse one for many calls, see signing.py); past it the
# cache starts again empty.
VERIFIED_CACHE_ENTRIES = 4096


def is_exempt(method: str) -> bool:
    """Methods anyone may call (health checks)."""
    return method.startswith(UNAUTHENTICATED_PREFIXES)


@dataclass(frozen=True)
class AuthenticatedCall:
    caller: Caller
    # Set for calls made with an access token: what identity granted.
    grant: TokenGrant | None = None
    access: MethodAccess | None = None


class CallAuthenticator:
    """Verifies signed principals with the internal key and resolves access tokens."""

    def __init__(
        self, key: bytes, tokens: TokenAuthorizer | None, clock: Clock | None = None
    ) -> None:
        self._key = key
        self._tokens = tokens
        self._clock = clock or SystemClock()
        # encoded principal -> (its signature, its decoded fields), for principals whose
        # signature checked: a repeat is compared to the known signature (in constant time)
        # instead of computing the HMAC and decoding again. Expiry and method are checked on
        # every call.
        self._verified: dict[str, tuple[str, dict[str, object]]] = {}

    @property
    def tokens(self) -> TokenAuthorizer | None:
        return self._tokens

    def verify_signed(self, method: str, values: dict[str, str]) -> Caller | None:
        """The signed caller, None when the call carries no signed principal at all."""
        encoded = values.get(PRINCIPAL_KEY)
        supplied = values.get(SIGNATURE_KEY)
        if encoded is None and supplied is None:
            return None
        if not encoded or not supplied:
            raise Unauthenticated(BAD_PRINCIPAL)
        fields = self._verified_fields(encoded, supplied)
        now = self._clock.now()
        expires_at = fields.get("exp")
        if (
            fields.get("v") != 1
            or fields.get("m") != method
            or not isinstance(expires_at, int)
            or expires_at < now
            or expires_at > now + SIGNATURE_TTL_SECONDS + CLOCK_SKEW_SECONDS
        ):
            raise Unauthenticated(BAD_PRINCIPAL)
        return Caller(
            user_id=_text(fields.get("uid")),
            login=_text(fields.get("login")),
            token_id=_text(fields.get("tid")),
            request_id=values.get(REQUEST_ID_KEY, ""),
        )

    def _verified_fields(self, encoded: str, supplied: str) -> dict[str, object]:
        known = self._verified.get(encoded)
        if known is not None:
            if not hmac.compare_digest(known[0], supplied):
                raise Unauthenticated(BAD_PRINCIPAL)
            return known[1]
        expected = signature(self._key, encoded)
        if not hmac.compare_digest(expected, supplied):
            raise Unauthenticated(BAD_PRINCIPAL)
        fields = _decode(encoded)
        if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
            self._verified.clear()
        self._verified[encoded] = (expected, fields)
        return fields

    async def authenticate(
        self,
        method: str,
        request: Message | None,
        metadata: Iterable[tuple[str, str | bytes]] | None,
    ) -> AuthenticatedCall:
        """Who makes this call; raises UNAUTHENTICATED or PERMISSION_DENIED otherwise.

        `request` is None for streaming methods (server reflection), which any valid
        access token may call.
        """
        values = metadata_values(metadata)
        signed = self.verify_signed(method, values)
        if signed is not None:
            return AuthenticatedCall(signed)
        token = _access_token(values.get(AUTHORIZATION_KEY))
        access = REFLECTION_ACCESS if request is None else TOKEN_ACCESS.get(method)
        if access is None:
            raise PermissionDenied(
                f"Forbidden: {method} is internal to Cairn; access tokens may call the methods "
                "the README lists for internal callers"
            )
        if self._tokens is None:
            raise Unavailable("Service Unavailable: access tokens cannot be checked here")
        grant = await self._tokens.authorize(token, access, request, values.get(REQUEST_ID_KEY, ""))
        return AuthenticatedCall(grant.caller, grant, access)


def _access_token(header: str | None) -> str:
    if header is None:
        raise Unauthenticated(NO_CREDENTIAL)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in ("token", "bearer") or not value or not value.isprintable():
        raise Unauthenticated(BAD_AUTHORIZATION)
    return value


def _decode(encoded: str) -> dict[str, object]:
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        fields = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise Unauthenticated(BAD_PRINCIPAL) from None
    if not isinstance(fields, dict):
        raise Unauthenticated(BAD_PRINCIPAL)
    return fields


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
