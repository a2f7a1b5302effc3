"""Validating OIDC tokens: an issuer's discovery document and key set fetched over HTTP(S)
(bounded in time and size, kept for a while, fetched again at once for a key id not yet
seen, so rotated keys work) or a key set given at registration; then the signature (allowed
algorithms only, never `none`), `iss`, `aud` and the token's times.

One module for the token exchange and the console's single sign-on alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.common.clock import Clock
from services.common.errors import Unauthenticated, Unavailable
from services.common.logging import get_logger
from services.identity.oidc.domain import (
    ALLOWED_ALGORITHMS,
    check_audience,
    check_times,
    is_loopback,
)

log = get_logger("cairn.oidc")

DISCOVERY_PATH = "/.well-known/openid-configuration"
FORCED_REFRESH_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class FetchLimits:
    timeout_seconds: float = 5.0
    max_bytes: int = 256 * 1024
    cache_seconds: float = 300.0
    allow_http_loopback: bool = False


class DocumentFetcher:
    """GETs a JSON document from an issuer: https only (http on loopback when allowed), no
    redirects, within the time and size limits."""

    def __init__(self, limits: FetchLimits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._ssl = ssl_context

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return
        if (
            parts.scheme == "http"
            and self._limits.allow_http_loopback
            and is_loopback(parts.hostname or "")
        ):
            return
        raise Unauthenticated(f"Unauthorized: the issuer's document URL {url[:200]} is not https")

    async def get_json(self, url: str) -> dict[str, Any]:
        self.check_url(url)
        timeout = aiohttp.ClientTimeout(total=self._limits.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(
                    url,
                    allow_redirects=False,
                    headers={"Accept": "application/json"},
                    ssl=self._ssl if self._ssl is not None else True,
                ) as response,
            ):
                if response.status != 200:
                    raise Unavailable(
                        f"Service Unavailable: the issuer answered {response.status} for "
                        f"{url[:200]}"
                    )
                body = await _read_bounded(response, self._limits.max_bytes)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("oidc_fetch_failed", url=url[:200], error=type(error).__name__)
            raise Unavailable(
                f"Service Unavailable: could not fetch {url[:200]} from the issuer"
            ) from None
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Unavailable(f"Service Unavailable: {url[:200]} is not JSON") from None
        if not isinstance(value, dict):
            raise Unavailable(f"Service Unavailable: {url[:200]} is not a JSON object")
        return value

    async def post_form(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        """POST a form (a token endpoint's), answered with a JSON object; the provider's
        refusal is a 401 naming its OAuth error code, never echoing what was sent."""
        self.check_url(url)
        timeout = aiohttp.ClientTimeout(total=self._limits.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    url,
                    data=form,
                    allow_redirects=False,
                    headers={"Accept": "application/json"},
                    ssl=self._ssl if self._ssl is not None else True,
                ) as response,
            ):
                body = await _read_bounded(response, self._limits.max_bytes)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("oidc_fetch_failed", url=url[:200], error=type(error).__name__)
            raise Unavailable("Service Unavailable: could not reach the provider") from None
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        if status != 200 or not isinstance(value, dict):
            code = value.get("error") if isinstance(value, dict) else None
            shown = code if isinstance(code, str) and code.isidentifier() else str(status)
            raise Unauthenticated(f"Unauthorized: the provider refused the sign-in ({shown})")
        return value


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise Unavailable("Service Unavailable: the issuer's document is too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise Unavailable("Service Unavailable: the issuer's document is too large")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Discovery:
    issuer: str
    jwks_uri: str
    authorization_endpoint: str = ""
    token_endpoint: str = ""


@dataclass
class _Cached:
    discovery: Discovery
    keys: KeySet
    fetched_at: float
    refreshed_at: float = float("-inf")


class IssuerKeys:
    """Discovery documents and key sets of issuers, kept `cache_seconds`; a key id not in
    the kept set fetches the set once more (a rotation) before the token is refused."""

    def __init__(self, fetcher: DocumentFetcher, clock: Clock, limits: FetchLimits) -> None:
        self._fetcher = fetcher
        self._clock = clock
        self._limits = limits
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def discovery(self, issuer_url: str) -> Discovery:
        return (await self._entry(issuer_url, refresh=False)).discovery

    async def key_set(self, issuer_url: str, *, refresh: bool = False) -> KeySet:
        return (await self._entry(issuer_url, refresh=refresh)).keys

    async def _entry(self, issuer_url: str, *, refresh: bool) -> _Cached:
        lock = self._locks.setdefault(issuer_url, asyncio.Lock())
        async with lock:
            cached = self._cache.get(issuer_url)
            now = self._clock.now()
            if (
                cached is not None
                and not refresh
                and now - cached.fetched_at < self._limits.cache_seconds
            ):
                return cached
            if (
                cached is not None
                and refresh
                and now - cached.refreshed_at < FORCED_REFRESH_INTERVAL_SECONDS
            ):
                # Refetched for an unknown key moments ago: tokens naming keys nobody
                # publishes must not make a fetch each.
                return cached
            entry = await self._fetch(issuer_url, now)
            if refresh:
                entry.refreshed_at = now
            self._cache[issuer_url] = entry
            return entry

    async def _fetch(self, issuer_url: str, now: float) -> _Cached:
        document = await self._fetcher.get_json(issuer_url.rstrip("/") + DISCOVERY_PATH)
        issuer = document.get("issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise Unavailable(
                "Service Unavailable: the issuer's discovery document lacks issuer or jwks_uri"
            )
        discovery = Discovery(
            issuer=issuer,
            jwks_uri=jwks_uri,
            authorization_endpoint=_text(document.get("authorization_endpoint")),
            token_endpoint=_text(document.get("token_endpoint")),
        )
        keys = parse_key_set(await self._fetcher.get_json(jwks_uri))
        return _Cached(discovery, keys, now)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_key_set(document: dict[str, Any] | str) -> KeySet:
    """A JWK Set's public keys (unknown key types are skipped, as RFC 7517 says)."""
    if isinstance(document, str):
        document = orjson.loads(document)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise Unavailable("Service Unavailable: the issuer's key set has no 'keys' list")
    usable = [
        key
        for key in keys
        if isinstance(key, dict) and key.get("kty") in ("RSA", "EC", "OKP") and "d" not in key
    ]
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError):
        raise Unavailable("Service Unavailable: the issuer's key set is malformed") from None


@dataclass(frozen=True)
class TokenHeader:
    alg: str
    kid: str


def token_header(token: str) -> TokenHeader:
    """The JWS header, read before any key is chosen; `none` and unlisted algorithms are
    refused here, before any key is fetched."""
    try:
        compact = jws.extract_compact(token.encode())
    except (JoseError, ValueError, UnicodeError):
        raise Unauthenticated("Unauthorized: the token is not a signed JWT") from None
    header = compact.protected
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise Unauthenticated(
            f"Unauthorized: the token's signing algorithm ({str(alg)[:20]}) is not allowed"
        )
    kid = header.get("kid")
    return TokenHeader(alg=alg, kid=kid if isinstance(kid, str) else "")


def _has_key(keys: KeySet, kid: str) -> bool:
    if not kid:
        return bool(keys.keys)
    return any(key.kid == kid for key in keys.keys)


def verify_signature(token: str, keys: KeySet) -> dict[str, Any]:
    """The claims of a token whose signature one of `keys` verifies."""
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGORITHMS))
    except (JoseError, ValueError, TypeError):
        raise Unauthenticated(
            "Unauthorized: the token's signature does not verify with the issuer's keys"
        ) from None
    claims: dict[str, Any] = dict(decoded.claims)
    return claims


@dataclass(frozen=True)
class Expected:
    """What a valid token carries: the issuer (`iss`) and the audience (`aud`)."""

    issuer: str
    audience: str
    skew_seconds: int = 60


class TokenValidator:
    """Checks a JWT against an issuer, fetched or given its keys."""

    def __init__(self, keys: IssuerKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def validate(
        self, token: str, issuer_url: str, expected: Expected, *, jwks: str = ""
    ) -> dict[str, Any]:
        """The claims of a valid token; Unauthenticated naming what is wrong otherwise."""
        header = token_header(token)
        if jwks:
            keys = parse_key_set(jwks)
        else:
            keys = await self._keys.key_set(issuer_url)
            if not _has_key(keys, header.kid):
                keys = await self._keys.key_set(issuer_url, refresh=True)
        if not _has_key(keys, header.kid):
            raise Unauthenticated(
                "Unauthorized: the token was signed by a key the issuer does not publish"
            )
        claims = verify_signature(token, keys)
        return check_claims(claims, expected, int(self._clock.now()))

    async def issuer_of(self, issuer_url: str) -> str:
        """The `iss` tokens of a reachable issuer carry (its discovery document's)."""
        return (await self._keys.discovery(issuer_url)).issuer

    async def discovery(self, issuer_url: str) -> Discovery:
        return await self._keys.discovery(issuer_url)


def check_claims(claims: dict[str, Any], expected: Expected, now: int) -> dict[str, Any]:
    if claims.get("iss") != expected.issuer:
        raise Unauthenticated("Unauthorized: the token's issuer (iss) is not the registered issuer")
    check_audience(claims, expected.audience)
    check_times(claims, now, expected.skew_seconds)
    return claims


async def certificate_thumbprints(url: str, timeout_seconds: float) -> tuple[str, ...]:
    """The SHA-1 fingerprint of the TLS certificate an https issuer presents (verified
    against the system's trust store); none for an http (loopback) issuer."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return ()
    context = ssl.create_default_context()
    try:
        async with asyncio.timeout(timeout_seconds):
            _, writer = await asyncio.open_connection(
                parts.hostname, parts.port or 443, ssl=context, server_hostname=parts.hostname
            )
    except (OSError, TimeoutError, ssl.SSLError):
        raise Unavailable(
            f"Service Unavailable: could not reach {parts.hostname[:200]} over TLS"
        ) from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
    if not der:
        return ()
    return (hashlib.sha1(der, usedforsecurity=False).hexdigest(),)


def validator_from_limits(
    limits: FetchLimits, clock: Clock, *, ssl_context: ssl.SSLContext | None = None
) -> TokenValidator:
    return TokenValidator(IssuerKeys(DocumentFetcher(limits, ssl_context), clock, limits), clock)
