"""Pure rules of OIDC issuers and token exchange: what a registration, a policy and an
exchange request must hold, how a policy's claim rules match, and how long a token lives."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from services.common import limits
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated
from services.identity.domain import TokenKind, TokenScope

GRANT_TYPE_TOKEN_EXCHANGE = limits.TOKEN_EXCHANGE_GRANT_TYPE
SUBJECT_TOKEN_TYPE_ID_TOKEN, SUBJECT_TOKEN_TYPE_JWT = limits.SUBJECT_TOKEN_TYPES
AUDIENCE_PREFIX = limits.TOKEN_EXCHANGE_AUDIENCE_PREFIX
ACCESS_TOKEN_TYPE_PREFIX = "urn:pulumi:token-type:access_token:"
# What the exchange answers in `token_type`: the CLI sends it back as `token <value>`.
ISSUED_TOKEN_TYPE = "token"

MAX_ISSUER_NAME_LENGTH = limits.MAX_ISSUER_NAME_LENGTH
MAX_URL_LENGTH = 1024
MAX_POLICY_RULES = limits.MAX_POLICY_RULES
MAX_RULES_PER_POLICY = limits.MAX_RULES_PER_POLICY
MAX_RULE_VALUE_LENGTH = limits.MAX_RULE_VALUE_LENGTH
MAX_JWKS_BYTES = 64 * 1024
MAX_SUBJECT_TOKEN_BYTES = 16 * 1024
# A CI token lives minutes; one that claims to live longer than a day is refused.
MAX_SUBJECT_TOKEN_LIFETIME_SECONDS = 24 * 60 * 60
# Signatures the exchange accepts: never `none`, never a shared-secret (HS*) algorithm.
ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_THUMBPRINT = re.compile(limits.CERTIFICATE_THUMBPRINT)
_CLAIM_NAME = re.compile(f"^{limits.CLAIM_NAME}$")


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class IssuerRegistration:
    """What an organization admin registers."""

    name: str
    url: str
    thumbprints: tuple[str, ...] = ()
    max_expiration: int = 0
    jwks: str = ""


@dataclass(frozen=True)
class IssuerChange:
    """An update: None leaves a field as it is."""

    name: str | None = None
    thumbprints: tuple[str, ...] | None = None
    max_expiration: int | None = None
    jwks: str | None = None


@dataclass(frozen=True)
class Issuer:
    id: str
    organization: str
    name: str
    url: str
    issuer: str
    thumbprints: tuple[str, ...]
    jwks: str
    max_expiration: int
    created_at: datetime
    modified_at: datetime
    last_used_at: datetime | None
    policy_id: str


@dataclass(frozen=True)
class PolicyRule:
    """One definition of an issuer's authorization policy."""

    decision: Decision
    token_kind: TokenKind
    team_name: str = ""
    user_login: str = ""
    role_id: str = ""
    authorized_permissions: tuple[str, ...] = ()
    # claim name -> expected value(s); `*` in a value matches any run of characters.
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    runner_id: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.authorized_permissions


@dataclass(frozen=True)
class AuthPolicy:
    id: str
    issuer_id: str
    version: int
    created_at: datetime
    modified_at: datetime
    rules: tuple[PolicyRule, ...]


@dataclass(frozen=True)
class ExchangeRequest:
    """A token exchange as the client sent it (RFC 8693 members)."""

    grant_type: str
    subject_token: str
    subject_token_type: str
    audience: str
    requested_token_type: str
    scope: str
    expiration: int


@dataclass(frozen=True)
class Exchange:
    """A checked exchange request: for which organization, which kind of token, for whom."""

    organization: str
    kind: TokenKind
    team: str
    user_login: str
    expiration: int

    def scope(self) -> TokenScope:
        return TokenScope(
            self.kind, user_login=self.user_login, organization=self.organization, team=self.team
        )

    @property
    def scope_text(self) -> str:
        if self.kind is TokenKind.TEAM:
            return f"team:{self.team}"
        if self.kind is TokenKind.PERSONAL:
            return f"user:{self.user_login}"
        return ""


# --- registrations ----------------------------------------------------------------------


def validate_issuer_url(url: str, *, allow_http_loopback: bool) -> str:
    """An issuer is an https URL (http only on loopback, when the setting allows it)."""
    url = url.strip().rstrip("/")
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidArgument("Bad Request: 'url' must be the issuer's https URL")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and allow_http_loopback and is_loopback(parts.hostname or ""):
        return url
    raise InvalidArgument(
        "Bad Request: 'url' must be an https URL (for example https://token.actions."
        "githubusercontent.com)"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_issuer_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_ISSUER_NAME_LENGTH:
        raise InvalidArgument(
            f"Bad Request: 'name' is required, at most {MAX_ISSUER_NAME_LENGTH} characters"
        )
    return name


def validate_thumbprints(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not _THUMBPRINT.fullmatch(value):
            raise InvalidArgument(
                "Bad Request: each thumbprint is a SHA-1 fingerprint, 40 hexadecimal digits"
            )
    return tuple(value.lower() for value in values)


def validate_max_expiration(seconds: int) -> int:
    if seconds < 0:
        raise InvalidArgument("Bad Request: 'maxExpiration' is seconds, 0 or more")
    return seconds


def validate_jwks(text: str) -> str:
    """A registration's own key set: a JWK Set JSON object with public keys only."""
    if not text:
        return ""
    if len(text) > MAX_JWKS_BYTES:
        raise InvalidArgument("Bad Request: 'jwks' is too large (64 KiB at most)")
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidArgument("Bad Request: 'jwks' must be a JWK Set (JSON)") from None
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidArgument("Bad Request: 'jwks' must be a JWK Set with a 'keys' list")
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise InvalidArgument("Bad Request: every key of 'jwks' needs a 'kty'")
        if "d" in key:
            raise InvalidArgument("Bad Request: 'jwks' must hold public keys only")
    return text


def validate_registration(
    registration: IssuerRegistration, *, allow_http_loopback: bool
) -> IssuerRegistration:
    return IssuerRegistration(
        name=validate_issuer_name(registration.name),
        url=validate_issuer_url(registration.url, allow_http_loopback=allow_http_loopback),
        thumbprints=validate_thumbprints(registration.thumbprints),
        max_expiration=validate_max_expiration(registration.max_expiration),
        jwks=validate_jwks(registration.jwks),
    )


def validate_change(change: IssuerChange) -> IssuerChange:
    return IssuerChange(
        name=None if change.name is None else validate_issuer_name(change.name),
        thumbprints=(
            None if change.thumbprints is None else validate_thumbprints(change.thumbprints)
        ),
        max_expiration=(
            None
            if change.max_expiration is None
            else validate_max_expiration(change.max_expiration)
        ),
        jwks=None if change.jwks is None else validate_jwks(change.jwks),
    )


# --- policies ---------------------------------------------------------------------------


def parse_token_kind(value: str) -> TokenKind:
    try:
        return TokenKind(value)
    except ValueError:
        raise InvalidArgument(
            f"Bad Request: tokenType '{value}' is not one of organization, team, personal"
        ) from None


def parse_decision(value: str) -> Decision:
    try:
        return Decision(value)
    except ValueError:
        raise InvalidArgument(f"Bad Request: decision '{value}' is not allow or deny") from None


def parse_claim_rules(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A policy's `rules` object: claim name -> a string, or a list of strings (any)."""
    try:
        value: Any = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise InvalidArgument("Bad Request: 'rules' must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidArgument("Bad Request: 'rules' must be an object of claim -> value")
    if len(value) > MAX_RULES_PER_POLICY:
        raise InvalidArgument(f"Bad Request: at most {MAX_RULES_PER_POLICY} rules per policy")
    rules: list[tuple[str, tuple[str, ...]]] = []
    for claim, expected in sorted(value.items()):
        if not _CLAIM_NAME.match(claim):
            raise InvalidArgument(f"Bad Request: '{claim[:100]}' is not a claim name")
        values = expected if isinstance(expected, list) else [expected]
        if not values or not all(
            isinstance(item, str) and 0 < len(item) <= MAX_RULE_VALUE_LENGTH for item in values
        ):
            raise InvalidArgument(
                f"Bad Request: rule '{claim}' must be a non-empty string or list of strings"
            )
        rules.append((claim, tuple(values)))
    return tuple(rules)


def claim_rules_json(rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    return orjson.dumps(
        {claim: values[0] if len(values) == 1 else list(values) for claim, values in rules}
    ).decode()


def validate_policy_rule(rule: PolicyRule) -> PolicyRule:
    """What each kind of token needs named: a team, a user, or neither."""
    if rule.token_kind is TokenKind.TEAM and not rule.team_name:
        raise InvalidArgument("Bad Request: a team policy names its 'teamName'")
    if rule.token_kind is TokenKind.PERSONAL and not rule.user_login:
        raise InvalidArgument("Bad Request: a personal policy names its 'userLogin'")
    if rule.decision is Decision.ALLOW and not rule.rules:
        raise InvalidArgument(
            "Bad Request: an allow policy needs at least one claim rule (for example 'sub')"
        )
    return rule


def validate_policy(rules: tuple[PolicyRule, ...]) -> tuple[PolicyRule, ...]:
    if len(rules) > MAX_POLICY_RULES:
        raise InvalidArgument(f"Bad Request: at most {MAX_POLICY_RULES} policies per issuer")
    return tuple(validate_policy_rule(rule) for rule in rules)


def value_matches(pattern: str, value: str) -> bool:
    """Exact match, or `*` matching any run of characters (Pulumi's wildcard rules)."""
    if "*" not in pattern:
        return pattern == value
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def claim_matches(expected: tuple[str, ...], claim: Any) -> bool:
    """A claim matches when any expected value matches it (any element, for a list claim)."""
    if isinstance(claim, list):
        candidates = [str(item) for item in claim if isinstance(item, str | int | bool)]
    elif isinstance(claim, str | int | bool):
        candidates = [str(claim).lower() if isinstance(claim, bool) else str(claim)]
    else:
        return False
    return any(value_matches(p, c) for p in expected for c in candidates)


def rule_matches(rule: PolicyRule, claims: dict[str, Any]) -> bool:
    return all(claim_matches(expected, claims.get(name)) for name, expected in rule.rules)


def applies_to(rule: PolicyRule, exchange: Exchange) -> bool:
    if rule.token_kind is not exchange.kind:
        return False
    if exchange.kind is TokenKind.TEAM:
        return rule.team_name == exchange.team
    if exchange.kind is TokenKind.PERSONAL:
        return rule.user_login == exchange.user_login
    return True


def decide(rules: tuple[PolicyRule, ...], exchange: Exchange, claims: dict[str, Any]) -> PolicyRule:
    """The allow rule that grants the exchange; a matching deny rule wins over any allow."""
    matching = [r for r in rules if applies_to(r, exchange) and rule_matches(r, claims)]
    if any(r.decision is Decision.DENY for r in matching):
        raise PermissionDenied(
            "Forbidden: the issuer's authorization policy denies this token's claims"
        )
    for rule in matching:
        if rule.decision is Decision.ALLOW:
            return rule
    wanted = f"{exchange.kind.value} token" + (
        f" ({exchange.scope_text})" if exchange.scope_text else ""
    )
    raise PermissionDenied(
        f"Forbidden: no policy of the issuer allows a {wanted} for this token's claims; "
        "an organization admin can add one (PATCH /api/orgs/{org}/auth/policies/{policyId})"
    )


# --- exchange ---------------------------------------------------------------------------


def check_exchange(request: ExchangeRequest) -> Exchange:
    """The RFC 8693 members Cairn needs, checked before any key is fetched."""
    if request.grant_type != GRANT_TYPE_TOKEN_EXCHANGE:
        raise InvalidArgument(f"invalid_request: grant_type must be {GRANT_TYPE_TOKEN_EXCHANGE}")
    if request.subject_token_type not in (SUBJECT_TOKEN_TYPE_ID_TOKEN, SUBJECT_TOKEN_TYPE_JWT):
        raise InvalidArgument(
            f"invalid_request: subject_token_type must be {SUBJECT_TOKEN_TYPE_ID_TOKEN}"
        )
    if not request.subject_token:
        raise InvalidArgument("invalid_request: subject_token (the CI's OIDC token) is required")
    if len(request.subject_token) > MAX_SUBJECT_TOKEN_BYTES:
        raise InvalidArgument("invalid_request: subject_token is too large")
    if (
        not request.audience.startswith(AUDIENCE_PREFIX)
        or not request.audience[len(AUDIENCE_PREFIX) :]
    ):
        raise InvalidArgument(f"invalid_request: audience must be {AUDIENCE_PREFIX}<organization>")
    organization = request.audience[len(AUDIENCE_PREFIX) :]
    kind_text = request.requested_token_type.removeprefix(ACCESS_TOKEN_TYPE_PREFIX)
    if not request.requested_token_type.startswith(ACCESS_TOKEN_TYPE_PREFIX) or kind_text not in {
        k.value for k in TokenKind
    }:
        raise InvalidArgument(
            "invalid_request: requested_token_type must be "
            f"{ACCESS_TOKEN_TYPE_PREFIX}organization, team or personal"
        )
    kind = TokenKind(kind_text)
    if request.expiration < 0:
        raise InvalidArgument("invalid_request: expiration is seconds, 0 or more")
    team, user_login = _scope_names(request.scope.strip(), kind)
    return Exchange(organization, kind, team, user_login, request.expiration)


def _scope_names(scope: str, kind: TokenKind) -> tuple[str, str]:
    if kind is TokenKind.TEAM:
        if not scope.startswith("team:") or not scope[5:]:
            raise InvalidArgument("invalid_request: a team token needs scope team:<team name>")
        return scope[5:], ""
    if kind is TokenKind.PERSONAL:
        if not scope.startswith("user:") or not scope[5:]:
            raise InvalidArgument("invalid_request: a personal token needs scope user:<login>")
        return "", scope[5:]
    if scope and scope != "admin":
        raise InvalidArgument("invalid_request: an organization token takes no team or user scope")
    return "", ""


def check_audience(claims: dict[str, Any], audience: str) -> None:
    """The token must have been minted for this organization's exchange."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise Unauthenticated(
            f"Unauthorized: the token's audience (aud) is not {audience}; mint the CI token "
            "with that audience"
        )


def check_times(claims: dict[str, Any], now: int, skew: int) -> None:
    """exp is required and in the future, nbf and iat not in the future (with skew)."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("Unauthorized: the token has no expiry (exp)")
    if exp + skew <= now:
        raise Unauthenticated("Unauthorized: the token has expired; mint a fresh one")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf - skew > now:
        raise Unauthenticated("Unauthorized: the token is not valid yet (nbf); check clocks")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and not isinstance(iat, bool):
        if iat - skew > now:
            raise Unauthenticated("Unauthorized: the token was issued in the future (iat)")
        if exp - iat > MAX_SUBJECT_TOKEN_LIFETIME_SECONDS:
            raise Unauthenticated("Unauthorized: the token lives too long (over a day)")


def token_lifetime(requested: int, issuer_max: int, server_max: int) -> int:
    """Seconds the issued token lives: as asked (default the cap), never past either cap."""
    cap = min(issuer_max, server_max) if issuer_max > 0 else server_max
    return cap if requested <= 0 else min(requested, cap)


def subject_of(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else ""
