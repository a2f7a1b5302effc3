"""Use cases of OIDC token exchange: the issuer registry, the issuers' authorization
policies, and the exchange of a CI's signed JWT for a short-lived Cairn access token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError

from services.common.auth import hash_token, new_token
from services.common.clock import Clock
from services.common.errors import NotFound, PermissionDenied, Unauthenticated
from services.common.logging import get_logger
from services.identity.audit.domain import MICROS_PER_SECOND, ActorKind, AuditEntry
from services.identity.audit.service import AuditLog
from services.identity.domain import NewToken, TokenKind
from services.identity.oidc.domain import (
    ACCESS_TOKEN_TYPE_PREFIX,
    ISSUED_TOKEN_TYPE,
    AuthPolicy,
    Exchange,
    ExchangeRequest,
    Issuer,
    IssuerChange,
    IssuerRegistration,
    PolicyRule,
    check_exchange,
    decide,
    subject_of,
    token_lifetime,
    validate_change,
    validate_policy,
    validate_registration,
)
from services.identity.oidc.store import OidcStore
from services.identity.oidc.validation import Expected, TokenValidator, certificate_thumbprints
from services.identity.store import IdentityStore
from services.identity.team_store import TeamStore

log = get_logger("cairn.oidc")

EXCHANGE_EVENT = "oidc.exchange"
EXCHANGE_DISPLAY_NAME = "OIDC Token Exchanged"


@dataclass(frozen=True)
class ExchangeSettings:
    max_ttl_seconds: int = 2 * 60 * 60
    skew_seconds: int = 60
    allow_http_loopback: bool = False
    fetch_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class IssuedExchange:
    token: str
    kind: TokenKind
    expires_in: int
    scope: str


@dataclass(frozen=True)
class CallSource:
    """Where an exchange came from, for the audit log."""

    source_ip: str = ""
    user_agent: str = ""
    request_id: str = ""


class OidcExchange:
    """Issuer registry, policies and exchange; one method per RPC, protobuf-free."""

    def __init__(
        self,
        store: OidcStore,
        identity: IdentityStore,
        teams: TeamStore,
        audit: AuditLog,
        validator: TokenValidator,
        clock: Clock,
        settings: ExchangeSettings,
    ) -> None:
        self._store = store
        self._identity = identity
        self._teams = teams
        self._audit = audit
        self._validator = validator
        self._clock = clock
        self._settings = settings

    # --- the issuer registry --------------------------------------------------------------

    async def register_issuer(self, organization: str, registration: IssuerRegistration) -> Issuer:
        """Trust an issuer: its `iss` comes from its discovery document, or for a registration
        that brings its own key set, from the URL as given."""
        registration = validate_registration(
            registration, allow_http_loopback=self._settings.allow_http_loopback
        )
        issuer = registration.url
        if not registration.jwks:
            issuer = await self._validator.issuer_of(registration.url)
        issued = await self._store.register(organization, registration, issuer)
        log.info("oidc_issuer_registered", organization=organization, issuer_id=issued.id)
        return issued

    async def list_issuers(self, organization: str) -> list[Issuer]:
        return await self._store.list(organization)

    async def get_issuer(self, organization: str, issuer_id: str) -> Issuer:
        return await self._store.get(organization, issuer_id)

    async def update_issuer(
        self, organization: str, issuer_id: str, change: IssuerChange
    ) -> Issuer:
        return await self._store.update(organization, issuer_id, validate_change(change))

    async def delete_issuer(self, organization: str, issuer_id: str) -> None:
        await self._store.delete(organization, issuer_id)
        log.info("oidc_issuer_deleted", organization=organization, issuer_id=issuer_id)

    async def regenerate_thumbprints(self, organization: str, issuer_id: str) -> Issuer:
        issuer = await self._store.get(organization, issuer_id)
        thumbprints = await certificate_thumbprints(
            issuer.url, self._settings.fetch_timeout_seconds
        )
        return await self._store.set_thumbprints(organization, issuer_id, thumbprints)

    # --- authorization policies -----------------------------------------------------------

    async def get_policy(self, organization: str, issuer_id: str) -> AuthPolicy:
        return await self._store.policy_of_issuer(organization, issuer_id)

    async def update_policy(
        self, organization: str, policy_id: str, rules: tuple[PolicyRule, ...]
    ) -> AuthPolicy:
        return await self._store.update_policy(organization, policy_id, validate_policy(rules))

    # --- the exchange ---------------------------------------------------------------------

    async def exchange(self, request: ExchangeRequest, source: CallSource) -> IssuedExchange:
        """A Cairn access token for a CI token the organization's policy allows."""
        exchange = check_exchange(request)
        audience = request.audience
        issuer = await self._registered_issuer(exchange.organization, request.subject_token)
        claims = await self._validator.validate(
            request.subject_token,
            issuer.url,
            Expected(issuer.issuer, audience, self._settings.skew_seconds),
            jwks=issuer.jwks,
        )
        policy = await self._store.policy_of_issuer(exchange.organization, issuer.id)
        rule = decide(policy.rules, exchange, claims)
        await self._check_target(exchange)
        lifetime = token_lifetime(
            exchange.expiration, issuer.max_expiration, self._settings.max_ttl_seconds
        )
        now = datetime.fromtimestamp(self._clock.now(), tz=UTC)
        subject = subject_of(claims)
        token = new_token()
        token_id = await self._identity.issue_token(
            NewToken(
                scope=exchange.scope(),
                name=f"oidc:{issuer.name}"[:255],
                description=f"Exchanged for an OIDC token of {issuer.issuer}, subject {subject}"[
                    :1024
                ],
                token_hash=hash_token(token),
                created_by=f"oidc:{issuer.name}"[:100],
                expires_at=now + timedelta(seconds=lifetime),
                is_admin=rule.is_admin and exchange.kind is TokenKind.ORGANIZATION,
            )
        )
        await self._store.mark_used(issuer.id)
        await self._record(exchange, issuer, subject, token_id, source)
        log.info(
            "oidc_exchanged",
            organization=exchange.organization,
            issuer_id=issuer.id,
            kind=exchange.kind.value,
            token_id=token_id,
        )
        return IssuedExchange(token, exchange.kind, lifetime, exchange.scope_text)

    async def _registered_issuer(self, organization: str, token: str) -> Issuer:
        issuer = unverified_issuer(token)
        found = await self._store.find_by_issuer(organization, issuer)
        if found is None:
            raise Unauthenticated(
                f"Unauthorized: the token's issuer {issuer[:200]} is not registered for "
                f"organization {organization}; an organization admin registers it under "
                "/api/orgs/{org}/oidc/issuers"
            )
        return found

    async def _check_target(self, exchange: Exchange) -> None:
        """The team or user a token would act as still exists in the organization."""
        if exchange.kind is TokenKind.TEAM:
            try:
                await self._teams.get_team(exchange.organization, exchange.team)
            except NotFound:
                raise PermissionDenied(
                    f"Forbidden: team '{exchange.team}' does not exist in {exchange.organization}"
                ) from None
        elif exchange.kind is TokenKind.PERSONAL:
            members = await self._identity.list_members(exchange.organization)
            if not any(m.user.login == exchange.user_login for m in members):
                raise PermissionDenied(
                    f"Forbidden: user '{exchange.user_login}' is not a member of "
                    f"{exchange.organization}"
                )

    async def _record(
        self,
        exchange: Exchange,
        issuer: Issuer,
        subject: str,
        token_id: str,
        source: CallSource,
    ) -> None:
        """The audit entry names the issuer and the token's subject, never the token."""
        kind = exchange.kind.value + (f" ({exchange.scope_text})" if exchange.scope_text else "")
        acting_as = exchange.user_login or exchange.team or exchange.organization
        entry = AuditEntry(
            time_micros=int(self._clock.now() * MICROS_PER_SECOND),
            organization=exchange.organization,
            event=EXCHANGE_EVENT,
            target=f"oidc/issuers/{issuer.id}",
            description=(
                f"{EXCHANGE_DISPLAY_NAME}: issuer {issuer.name} ({issuer.issuer}), "
                f"subject {subject}, {kind} token"
            ),
            actor_kind=ActorKind.USER,
            actor_login=acting_as,
            actor_name=subject or acting_as,
            token_id=token_id,
            token_name=f"oidc:{issuer.name}",
            source_ip=source.source_ip,
            user_agent=source.user_agent,
            status=200,
            method="POST",
            path="/api/oauth/token",
            request_id=source.request_id,
            is_org_admin_required=False,
            is_auth_failure=False,
        )
        await self._audit.record([entry])


def unverified_issuer(token: str) -> str:
    """The `iss` a token claims, read only to find the registration whose keys verify it."""
    try:
        payload: Any = orjson.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError, UnicodeError, orjson.JSONDecodeError):
        raise Unauthenticated("Unauthorized: the token is not a signed JWT") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str) or not issuer:
        raise Unauthenticated("Unauthorized: the token names no issuer (iss)")
    return issuer


def issued_token_type(kind: TokenKind) -> str:
    return ACCESS_TOKEN_TYPE_PREFIX + kind.value


__all__ = ["ISSUED_TOKEN_TYPE", "CallSource", "ExchangeSettings", "OidcExchange"]
