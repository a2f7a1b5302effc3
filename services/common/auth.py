"""Access-token format and hashing, and the caller identity carried in gRPC metadata.

A process of Cairn states whom a call is made for with `Caller.metadata()`; the signing
channel interceptor (`services/common/signing.py`) turns that into a signed principal and a
service believes it only once `services/common/verification.py` has checked the signature.
Servicers read the verified caller with `caller_from_context`, never the raw metadata.
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

TOKEN_PREFIX = "pul-"
USER_ID_KEY = "x-cairn-user-id"
USER_LOGIN_KEY = "x-cairn-user-login"
TOKEN_ID_KEY = "x-cairn-token-id"
REQUEST_ID_KEY = "x-request-id"
# The signed principal and its signature (Cairn's own processes).
PRINCIPAL_KEY = "x-cairn-principal"
SIGNATURE_KEY = "x-cairn-signature"
# An access token (a team's own tools): `token <value>` or `bearer <value>`.
AUTHORIZATION_KEY = "authorization"
CALLER_KEYS = frozenset({USER_ID_KEY, USER_LOGIN_KEY, TOKEN_ID_KEY})


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    """A fresh high-entropy token (160 bits), shown to its owner once."""
    return prefix + secrets.token_hex(20)


def hash_token(token: str) -> str:
    """Tokens are random, so one SHA-256 is enough and lookups stay O(1)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who a request is made for: a user (by id and login), or Cairn itself when empty."""

    user_id: str = ""
    login: str = ""
    request_id: str = ""
    # The access token the user called with (its id, never its value), when known.
    token_id: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata asking a Cairn channel to call for this caller (it signs them)."""
        pairs = [
            (USER_ID_KEY, self.user_id),
            (USER_LOGIN_KEY, self.login),
            (TOKEN_ID_KEY, self.token_id),
            (REQUEST_ID_KEY, self.request_id),
        ]
        return tuple((k, v) for k, v in pairs if v)


def metadata_values(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Text metadata as a dict (binary values and repeated keys beyond the first ignored)."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str) and key not in values:
            values[key] = value
    return values


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """The caller a process asked for in outgoing metadata (before signing)."""
    values = metadata_values(metadata)
    return Caller(
        user_id=values.get(USER_ID_KEY, ""),
        login=values.get(USER_LOGIN_KEY, ""),
        request_id=values.get(REQUEST_ID_KEY, ""),
        token_id=values.get(TOKEN_ID_KEY, ""),
    )


# Set by the server interceptor once a call's credential is verified, for the call's task.
VERIFIED_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("cairn_verified_caller")


def caller_from_context(context: grpc.aio.ServicerContext[object, object]) -> Caller:
    """The verified caller of the RPC being served (empty outside an authenticated call)."""
    return VERIFIED_CALLER.get(Caller())
