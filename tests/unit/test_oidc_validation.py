"""OIDC token validation against the local test issuer, and the pure exchange rules."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from services.common.clock import ManualClock
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from services.identity.domain import TokenKind
from services.identity.oidc.domain import (
    Decision,
    Exchange,
    ExchangeRequest,
    PolicyRule,
    check_exchange,
    decide,
    parse_claim_rules,
    token_lifetime,
    validate_issuer_url,
    value_matches,
)
from services.identity.oidc.validation import (
    Expected,
    FetchLimits,
    TokenValidator,
    validator_from_limits,
)
from tests.oidc_issuer import OidcIssuer

AUDIENCE = "urn:pulumi:org:acme"
LIMITS = FetchLimits(timeout_seconds=5.0, max_bytes=64 * 1024, allow_http_loopback=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def issuer(clock: ManualClock) -> AsyncIterator[OidcIssuer]:
    running = await OidcIssuer(clock=clock.now).start()
    try:
        yield running
    finally:
        await running.stop()


def _validator(clock: ManualClock, limits: FetchLimits = LIMITS) -> TokenValidator:
    return validator_from_limits(limits, clock)


def _expected(issuer: OidcIssuer) -> Expected:
    return Expected(issuer=issuer.url, audience=AUDIENCE, skew_seconds=60)


async def test_rsa_and_ec_tokens_validate_and_keys_are_kept(
    issuer: OidcIssuer, clock: ManualClock
) -> None:
    validator = _validator(clock)
    for kind in ("RSA", "EC"):
        token = issuer.ci_token(AUDIENCE, kid=issuer.kid_of(kind))
        claims = await validator.validate(token, issuer.url, _expected(issuer))
        assert claims["repository"] == "acme/infra"
    assert issuer.jwks_fetches == 1
    assert issuer.discovery_fetches == 1


async def test_rotated_keys_are_fetched_once_for_an_unknown_kid(
    issuer: OidcIssuer, clock: ManualClock
) -> None:
    validator = _validator(clock)
    await validator.validate(issuer.ci_token(AUDIENCE), issuer.url, _expected(issuer))
    new_kid = issuer.rotate("EC")
    claims = await validator.validate(
        issuer.ci_token(AUDIENCE, kid=new_kid), issuer.url, _expected(issuer)
    )
    assert claims["sub"].startswith("repo:acme/infra")
    assert issuer.jwks_fetches == 2
    # A key nobody publishes: refused, and no more fetches for a while.
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": "stranger"}, issuer.ci_claims(AUDIENCE), stranger)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="key the issuer does not publish"):
            await validator.validate(forged, issuer.url, _expected(issuer))
    assert issuer.jwks_fetches == 2


async def test_cache_expires_after_its_ttl(issuer: OidcIssuer, clock: ManualClock) -> None:
    validator = _validator(clock, FetchLimits(cache_seconds=60, allow_http_loopback=True))
    await validator.validate(issuer.ci_token(AUDIENCE), issuer.url, _expected(issuer))
    clock.advance(61)
    await validator.validate(issuer.ci_token(AUDIENCE), issuer.url, _expected(issuer))
    assert issuer.jwks_fetches == 2


async def test_registration_key_set_needs_no_fetch(issuer: OidcIssuer, clock: ManualClock) -> None:
    validator = _validator(clock)
    jwks = orjson.dumps(issuer.jwks()).decode()
    claims = await validator.validate(
        issuer.ci_token(AUDIENCE), "https://unreachable.invalid", _expected(issuer), jwks=jwks
    )
    assert claims["ref"] == "refs/heads/main"
    assert issuer.jwks_fetches == 0


@pytest.mark.parametrize(
    ("overrides", "advance", "message"),
    [
        ({"aud": "urn:pulumi:org:other"}, 0, "audience"),
        ({}, 400, "expired"),
        ({"nbf": 1_700_000_000 + 600}, 0, "not valid yet"),
        ({"iss": "https://elsewhere.example"}, 0, "issuer"),
        ({"exp": None}, 0, "no expiry"),
    ],
)
async def test_claims_are_checked(
    issuer: OidcIssuer,
    clock: ManualClock,
    overrides: dict[str, Any],
    advance: int,
    message: str,
) -> None:
    validator = _validator(clock)
    token = issuer.ci_token(AUDIENCE, **overrides)
    clock.advance(advance)
    with pytest.raises(Unauthenticated, match=message):
        await validator.validate(token, issuer.url, _expected(issuer))


async def test_small_skew_is_allowed(issuer: OidcIssuer, clock: ManualClock) -> None:
    token = issuer.ci_token(AUDIENCE, nbf=int(clock.now()) + 30)
    await _validator(clock).validate(token, issuer.url, _expected(issuer))


async def test_bad_signatures_and_algorithms_are_refused(
    issuer: OidcIssuer, clock: ManualClock
) -> None:
    validator = _validator(clock)
    token = issuer.ci_token(AUDIENCE)
    head, _, signature = token.split(".")
    tampered_claims = {**issuer.ci_claims(AUDIENCE), "repository": "evil/repo"}
    tampered = ".".join(
        [
            head,
            base64.urlsafe_b64encode(orjson.dumps(tampered_claims)).rstrip(b"=").decode(),
            signature,
        ]
    )
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        await validator.validate(tampered, issuer.url, _expected(issuer))

    def encoded(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    unsigned = f"{encoded({'alg': 'none', 'typ': 'JWT'})}.{encoded(issuer.ci_claims(AUDIENCE))}."
    with pytest.raises(Unauthenticated, match=r"algorithm \(none\) is not allowed"):
        await validator.validate(unsigned, issuer.url, _expected(issuer))
    secret = OctKey.import_key(b"0123456789abcdef0123456789abcdef")
    hmac = jwt.encode({"alg": "HS256"}, issuer.ci_claims(AUDIENCE), secret)
    with pytest.raises(Unauthenticated, match=r"algorithm \(HS256\) is not allowed"):
        await validator.validate(hmac, issuer.url, _expected(issuer))
    with pytest.raises(Unauthenticated, match="not a signed JWT"):
        await validator.validate("not-a-jwt", issuer.url, _expected(issuer))


async def test_fetches_are_bounded_and_https_only(issuer: OidcIssuer, clock: ManualClock) -> None:
    tiny = _validator(clock, FetchLimits(max_bytes=64, allow_http_loopback=True))
    with pytest.raises(Unavailable, match="too large"):
        await tiny.validate(issuer.ci_token(AUDIENCE), issuer.url, _expected(issuer))
    strict = _validator(clock, FetchLimits())
    with pytest.raises(Unauthenticated, match="not https"):
        await strict.validate(issuer.ci_token(AUDIENCE), issuer.url, _expected(issuer))


def test_issuer_urls() -> None:
    assert validate_issuer_url("https://token.example/", allow_http_loopback=False) == (
        "https://token.example"
    )
    with pytest.raises(InvalidArgument):
        validate_issuer_url("http://127.0.0.1:9", allow_http_loopback=False)
    with pytest.raises(InvalidArgument):
        validate_issuer_url("http://example.com", allow_http_loopback=True)
    assert validate_issuer_url("http://127.0.0.1:9", allow_http_loopback=True)


def test_wildcards_match_like_pulumi_cloud() -> None:
    assert value_matches("repo:acme/*:ref:refs/heads/main", "repo:acme/infra:ref:refs/heads/main")
    assert not value_matches("repo:acme/infra", "repo:acme/infra2")
    assert value_matches("*", "anything")
    assert not value_matches("a.c", "abc")


def _exchange(kind: TokenKind = TokenKind.TEAM, team: str = "ops") -> Exchange:
    return Exchange("acme", kind, team, "", 0)


def test_policy_decisions() -> None:
    allow = PolicyRule(
        Decision.ALLOW,
        TokenKind.TEAM,
        team_name="ops",
        rules=parse_claim_rules('{"sub": "repo:acme/*", "ref": ["refs/heads/main"]}'),
    )
    deny = PolicyRule(
        Decision.DENY,
        TokenKind.TEAM,
        team_name="ops",
        rules=parse_claim_rules('{"repository": "acme/secret"}'),
    )
    claims = {"sub": "repo:acme/infra", "ref": "refs/heads/main", "repository": "acme/infra"}
    assert decide((allow, deny), _exchange(), claims) is allow
    with pytest.raises(PermissionDenied, match="denies"):
        decide((allow, deny), _exchange(), {**claims, "repository": "acme/secret"})
    with pytest.raises(PermissionDenied, match="no policy"):
        decide((allow,), _exchange(), {**claims, "ref": "refs/heads/dev"})
    with pytest.raises(PermissionDenied, match="no policy"):
        decide((allow,), _exchange(team="other"), claims)


def test_exchange_requests_and_lifetimes() -> None:
    request = ExchangeRequest(
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token="x.y.z",
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        audience=AUDIENCE,
        requested_token_type="urn:pulumi:token-type:access_token:team",
        scope="team:ops",
        expiration=0,
    )
    assert check_exchange(request) == Exchange("acme", TokenKind.TEAM, "ops", "", 0)
    with pytest.raises(InvalidArgument, match="scope team:"):
        check_exchange(ExchangeRequest(**{**request.__dict__, "scope": ""}))
    with pytest.raises(InvalidArgument, match="audience"):
        check_exchange(ExchangeRequest(**{**request.__dict__, "audience": "acme"}))
    assert token_lifetime(0, 0, 7200) == 7200
    assert token_lifetime(600, 0, 7200) == 600
    assert token_lifetime(99999, 0, 7200) == 7200
    assert token_lifetime(0, 900, 7200) == 900
