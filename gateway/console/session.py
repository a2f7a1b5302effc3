"""Console sessions: the access token sealed (AES-GCM) into an HttpOnly, SameSite=Strict cookie.

The browser never sees the token: the cookie holds ciphertext only, and pages never render
it. The sealing key comes from CAIRN_CONSOLE_SESSION_KEY (the same on every gateway replica,
so any replica opens any cookie, and sessions survive restarts), else from CAIRN_MASTER_KEY
when this process has it (`cairn up`); otherwise each gateway process draws its own, and a
restart signs everyone out. Every request still authenticates the token with
the identity service, so a revoked token ends its sessions at once.

Signing out ends the session for good, not just in that browser: the cookie carries a random
session id, which sign-out records with the identity service (`ConsoleSessionService`, in the
identity database that every gateway replica reaches), and every page that needs a session
asks whether its id was signed out. A copy of the cookie taken before sign-out is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.common.config import Settings

SESSION_COOKIE = "cairn_session"
# Before sign-in, the nonce the sign-in form's CSRF token is bound to.
CSRF_COOKIE = "cairn_csrf"
SESSION_SECONDS = 12 * 60 * 60
_NONCE_BYTES = 12
_KEY_CONTEXT = b"cairn console session keys v1"
_CSRF_NONCE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_nonce() -> str:
    """A fresh CSRF nonce: 32 random bytes, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def is_nonce(value: str) -> bool:
    return bool(_CSRF_NONCE.match(value))


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its access token, its CSRF nonce, when it ends (Unix s), and the
    random id signing out revokes it by."""

    token: str
    csrf_nonce: str
    expires_at: int
    session_id: str


class Sessions:
    """Seals sessions into cookie values, opens them, and makes and checks CSRF tokens."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_KEY_CONTEXT).derive(
            secret
        )
        self._cipher = AESGCM(keys[:32])
        self._csrf_key = keys[32:]
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Sessions:
        for configured in (settings.console_session_key, settings.master_key):
            value = configured.get_secret_value() if configured is not None else ""
            if value:
                return cls(value.encode())
        return cls(os.urandom(32))

    def start(self, token: str) -> Session:
        return Session(
            token=token,
            csrf_nonce=new_nonce(),
            expires_at=int(self._clock()) + SESSION_SECONDS,
            session_id=new_nonce(),
        )

    def seal(self, session: Session) -> str:
        plain = orjson.dumps(
            {
                "t": session.token,
                "c": session.csrf_nonce,
                "e": session.expires_at,
                "s": session.session_id,
            }
        )
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._cipher.encrypt(nonce, plain, SESSION_COOKIE.encode())
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, value: str) -> Session | None:
        """The session in a cookie value; None when forged, damaged or expired."""
        try:
            sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(sealed) <= _NONCE_BYTES:
            return None
        try:
            plain = self._cipher.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], SESSION_COOKIE.encode()
            )
            fields = orjson.loads(plain)
            session = Session(
                token=str(fields["t"]),
                csrf_nonce=str(fields["c"]),
                expires_at=int(fields["e"]),
                session_id=str(fields["s"]),
            )
        except (InvalidTag, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        # Cookies sealed before sessions had ids cannot be signed out: refuse them too.
        if session.expires_at <= self._clock() or not session.token or not session.session_id:
            return None
        return session

    def csrf_token(self, nonce: str) -> str:
        """The form token bound to a nonce; without the key nobody can make one."""
        return hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()

    def is_csrf_token(self, nonce: str, supplied: str) -> bool:
        return bool(nonce) and hmac.compare_digest(self.csrf_token(nonce), supplied)


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=request.secure, httponly=True, samesite="Strict")
