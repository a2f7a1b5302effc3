"""A local OpenID Connect issuer for tests, on a loopback port chosen by the system.

It serves a discovery document, a JWK set (RSA and EC keys, rotated on demand), an
authorization endpoint and a token endpoint good enough for the authorization-code flow
with PKCE, and signs ID tokens and CI tokens shaped like GitHub Actions' (sub, repository,
ref, aud, iss, exp, nbf, iat).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

Key = RSAKey | ECKey
# A token's default lifetime, as GitHub Actions gives its OIDC tokens (minutes).
CI_TOKEN_SECONDS = 300


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class OidcIssuer:
    """The issuer's state; `start()` serves it, `stop()` ends it."""

    clock: Callable[[], float] = time.time
    client_id: str = "cairn-console"
    client_secret: str = "console-secret-for-tests"
    keys: dict[str, tuple[Key, str]] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    # Claims the next sign-in at the authorization endpoint gets (the user "logs in").
    next_user: dict[str, Any] = field(default_factory=dict)
    jwks_fetches: int = 0
    discovery_fetches: int = 0
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self.add_key("RSA")
        self.add_key("EC")

    # --- keys ---------------------------------------------------------------------------

    def add_key(self, kind: str = "RSA") -> str:
        """A new signing key, published; returns its key id."""
        kid = f"{kind.lower()}-{secrets.token_hex(4)}"
        key: Key
        if kind == "RSA":
            key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"}, private=True)
            alg = "RS256"
        else:
            key = ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"}, private=True)
            alg = "ES256"
        self.keys[kid] = (key, alg)
        self.published.append(kid)
        return kid

    def rotate(self, kind: str = "RSA") -> str:
        """Publish a new key and withdraw every older one; returns the new key id."""
        kid = self.add_key(kind)
        self.published = [kid]
        return kid

    def kid_of(self, kind: str) -> str:
        """The newest published key id of a kind (RSA or EC)."""
        return next(k for k in reversed(self.published) if k.startswith(kind.lower()))

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**self.keys[kid][0].as_dict(private=False), "alg": self.keys[kid][1]}
                for kid in self.published
            ]
        }

    # --- tokens -------------------------------------------------------------------------

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str = "",
        header: dict[str, Any] | None = None,
    ) -> str:
        """A JWT of `claims` signed by key `kid` (default the newest RSA key)."""
        kid = kid or self.kid_of("RSA")
        key, alg = self.keys[kid]
        return jwt.encode({"alg": alg, "kid": kid, "typ": "JWT", **(header or {})}, claims, key)

    def ci_claims(self, audience: str, **overrides: Any) -> dict[str, Any]:
        """Claims shaped like a GitHub Actions OIDC token's."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": audience,
            "sub": "repo:acme/infra:ref:refs/heads/main",
            "repository": "acme/infra",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "workflow": "deploy",
            "event_name": "push",
            "jti": secrets.token_hex(8),
            "iat": now,
            "nbf": now,
            "exp": now + CI_TOKEN_SECONDS,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def ci_token(self, audience: str, *, kid: str = "", **overrides: Any) -> str:
        return self.sign(self.ci_claims(audience, **overrides), kid=kid)

    def id_token(self, audience: str, nonce: str, claims: dict[str, Any]) -> str:
        now = int(self.clock())
        body = {"iss": self.url, "aud": audience, "iat": now, "exp": now + 600, "nonce": nonce}
        body.update(claims)
        return self.sign(body)

    # --- serving ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        return app

    async def start(self) -> OidcIssuer:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_fetches += 1
        return web.json_response(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "repository", "ref"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(self.jwks())

    async def _authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("response_type") != "code" or query.get("client_id") != self.client_id:
            return web.json_response({"error": "invalid_request"}, status=400)
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self._grants[code] = _Grant(
            client_id=query["client_id"],
            redirect_uri=query.get("redirect_uri", ""),
            code_challenge=query["code_challenge"],
            nonce=query.get("nonce", ""),
            claims=dict(self.next_user),
        )
        target = query.get("redirect_uri", "")
        params = {"code": code, "state": query.get("state", "")}
        raise web.HTTPFound(f"{target}?{urlencode(params)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client_secret = _client_credentials(request, form)
        if client_id != self.client_id or client_secret != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._grants.pop(str(form.get("code", "")), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if grant.redirect_uri != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        if pkce_challenge(str(form.get("code_verifier", ""))) != grant.code_challenge:
            return web.json_response({"error": "invalid_grant"}, status=400)
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 600,
                "id_token": self.id_token(client_id, grant.nonce, grant.claims),
            }
        )


def _client_credentials(request: web.Request, form: Any) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        decoded = base64.b64decode(header[6:]).decode()
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
