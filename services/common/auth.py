"""Access-token format and hashing, and the caller identity carried in gRPC metadata."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

TOKEN_PREFIX = "pul-"
USER_ID_KEY = "x-cairn-user-id"
USER_LOGIN_KEY = "x-cairn-user-login"
REQUEST_ID_KEY = "x-request-id"


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    """A fresh high-entropy token (160 bits), shown to its owner once."""
    return prefix + secrets.token_hex(20)


def hash_token(token: str) -> str:
    """Tokens are random, so one SHA-256 is enough and lookups stay O(1)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who a request is made for, as the gateway established it."""

    user_id: str = ""
    login: str = ""
    request_id: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying this caller to a service."""
        pairs = [(USER_ID_KEY, self.user_id), (USER_LOGIN_KEY, self.login)]
        if self.request_id:
            pairs.append((REQUEST_ID_KEY, self.request_id))
        return tuple((k, v) for k, v in pairs if v)


def caller_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller:
    """Read the caller back on the service side; absent keys stay empty."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            values[key] = value
    return Caller(
        user_id=values.get(USER_ID_KEY, ""),
        login=values.get(USER_LOGIN_KEY, ""),
        request_id=values.get(REQUEST_ID_KEY, ""),
    )


def caller_from_context(context: grpc.aio.ServicerContext[object, object]) -> Caller:
    return caller_from_metadata(context.invocation_metadata())  # type: ignore[arg-type]
