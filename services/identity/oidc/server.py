"""gRPC edge of OIDC issuers, policies and token exchange (hosted by the identity process)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from protos.cairn.v1 import oidc_pb2, oidc_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Sessions
from services.identity.audit.service import AuditLog
from services.identity.audit.store import AuditStore
from services.identity.oidc.domain import (
    ISSUED_TOKEN_TYPE,
    AuthPolicy,
    ExchangeRequest,
    Issuer,
    IssuerChange,
    IssuerRegistration,
    PolicyRule,
    claim_rules_json,
    parse_claim_rules,
    parse_decision,
    parse_token_kind,
)
from services.identity.oidc.service import (
    CallSource,
    ExchangeSettings,
    OidcExchange,
    issued_token_type,
)
from services.identity.oidc.signin import ConsoleSignIn, SignInSettings, parse_group_mapping
from services.identity.oidc.store import OidcStore
from services.identity.oidc.validation import (
    DocumentFetcher,
    FetchLimits,
    IssuerKeys,
    TokenValidator,
)
from services.identity.store import IdentityStore
from services.identity.team_store import TeamStore

OIDC_SERVICE_NAME = oidc_pb2.DESCRIPTOR.services_by_name["OidcService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class OidcServicer(oidc_pb2_grpc.OidcServiceServicer):
    def __init__(self, oidc: OidcExchange, sign_in: ConsoleSignIn) -> None:
        self._oidc = oidc
        self._sign_in = sign_in

    async def GetSignInOptions(
        self, request: oidc_pb2.GetSignInOptionsRequest, context: Context
    ) -> oidc_pb2.SignInOptions:
        endpoint = await self._sign_in.authorization_endpoint()
        settings = self._sign_in.settings
        return oidc_pb2.SignInOptions(
            display_name=settings.name,
            authorization_endpoint=endpoint,
            client_id=settings.client_id,
        )

    async def CompleteSignIn(
        self, request: oidc_pb2.CompleteSignInRequest, context: Context
    ) -> oidc_pb2.CompleteSignInResponse:
        signed_in = await self._sign_in.complete(
            request.code, request.code_verifier, request.redirect_uri, request.nonce
        )
        return oidc_pb2.CompleteSignInResponse(
            login=signed_in.login,
            token=signed_in.token,
            expires_at=signed_in.expires_at,
            is_new_user=signed_in.is_new_user,
        )

    async def RegisterOidcIssuer(
        self, request: oidc_pb2.RegisterOidcIssuerRequest, context: Context
    ) -> oidc_pb2.OidcIssuer:
        issuer = await self._oidc.register_issuer(
            request.organization,
            IssuerRegistration(
                name=request.name,
                url=request.url,
                thumbprints=tuple(request.thumbprints),
                max_expiration=request.max_expiration,
                jwks=request.jwks,
            ),
        )
        return _issuer(issuer)

    async def ListOidcIssuers(
        self, request: oidc_pb2.ListOidcIssuersRequest, context: Context
    ) -> oidc_pb2.ListOidcIssuersResponse:
        issuers = await self._oidc.list_issuers(request.organization)
        return oidc_pb2.ListOidcIssuersResponse(issuers=[_issuer(i) for i in issuers])

    async def GetOidcIssuer(
        self, request: oidc_pb2.OidcIssuerRequest, context: Context
    ) -> oidc_pb2.OidcIssuer:
        return _issuer(await self._oidc.get_issuer(request.organization, request.issuer_id))

    async def UpdateOidcIssuer(
        self, request: oidc_pb2.UpdateOidcIssuerRequest, context: Context
    ) -> oidc_pb2.OidcIssuer:
        change = IssuerChange(
            name=request.name if request.HasField("name") else None,
            thumbprints=tuple(request.thumbprints) if request.has_thumbprints else None,
            max_expiration=(request.max_expiration if request.HasField("max_expiration") else None),
            jwks=request.jwks if request.HasField("jwks") else None,
        )
        issuer = await self._oidc.update_issuer(request.organization, request.issuer_id, change)
        return _issuer(issuer)

    async def DeleteOidcIssuer(
        self, request: oidc_pb2.OidcIssuerRequest, context: Context
    ) -> oidc_pb2.DeleteOidcIssuerResponse:
        await self._oidc.delete_issuer(request.organization, request.issuer_id)
        return oidc_pb2.DeleteOidcIssuerResponse()

    async def RegenerateThumbprints(
        self, request: oidc_pb2.OidcIssuerRequest, context: Context
    ) -> oidc_pb2.OidcIssuer:
        issuer = await self._oidc.regenerate_thumbprints(request.organization, request.issuer_id)
        return _issuer(issuer)

    async def GetAuthPolicy(
        self, request: oidc_pb2.OidcIssuerRequest, context: Context
    ) -> oidc_pb2.AuthPolicy:
        return _policy(await self._oidc.get_policy(request.organization, request.issuer_id))

    async def UpdateAuthPolicy(
        self, request: oidc_pb2.UpdateAuthPolicyRequest, context: Context
    ) -> oidc_pb2.AuthPolicy:
        rules = tuple(_rule(definition) for definition in request.policies)
        policy = await self._oidc.update_policy(request.organization, request.policy_id, rules)
        return _policy(policy)

    async def ExchangeToken(
        self, request: oidc_pb2.ExchangeTokenRequest, context: Context
    ) -> oidc_pb2.ExchangeTokenResponse:
        issued = await self._oidc.exchange(
            ExchangeRequest(
                grant_type=request.grant_type,
                subject_token=request.subject_token,
                subject_token_type=request.subject_token_type,
                audience=request.audience,
                requested_token_type=request.requested_token_type,
                scope=request.scope,
                expiration=request.expiration,
            ),
            CallSource(
                source_ip=request.source_ip,
                user_agent=request.user_agent,
                request_id=request.request_id,
            ),
        )
        return oidc_pb2.ExchangeTokenResponse(
            access_token=issued.token,
            issued_token_type=issued_token_type(issued.kind),
            token_type=ISSUED_TOKEN_TYPE,
            expires_in=issued.expires_in,
            scope=issued.scope,
        )


def _timestamp(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp())


def _issuer(issuer: Issuer) -> oidc_pb2.OidcIssuer:
    return oidc_pb2.OidcIssuer(
        id=issuer.id,
        organization=issuer.organization,
        name=issuer.name,
        url=issuer.url,
        issuer=issuer.issuer,
        thumbprints=list(issuer.thumbprints),
        jwks=issuer.jwks,
        max_expiration=issuer.max_expiration,
        created=_timestamp(issuer.created_at),
        modified=_timestamp(issuer.modified_at),
        last_used=_timestamp(issuer.last_used_at),
        policy_id=issuer.policy_id,
    )


def _rule(definition: oidc_pb2.AuthPolicyDefinition) -> PolicyRule:
    return PolicyRule(
        decision=parse_decision(definition.decision),
        token_kind=parse_token_kind(definition.token_type),
        team_name=definition.team_name,
        user_login=definition.user_login,
        role_id=definition.role_id,
        authorized_permissions=tuple(definition.authorized_permissions),
        rules=parse_claim_rules(definition.rules),
        runner_id=definition.runner_id,
    )


def _policy(policy: AuthPolicy) -> oidc_pb2.AuthPolicy:
    return oidc_pb2.AuthPolicy(
        id=policy.id,
        issuer_id=policy.issuer_id,
        version=policy.version,
        created=_timestamp(policy.created_at),
        modified=_timestamp(policy.modified_at),
        policies=[
            oidc_pb2.AuthPolicyDefinition(
                decision=rule.decision.value,
                token_type=rule.token_kind.value,
                team_name=rule.team_name,
                user_login=rule.user_login,
                role_id=rule.role_id,
                authorized_permissions=list(rule.authorized_permissions),
                rules=claim_rules_json(rule.rules),
                runner_id=rule.runner_id,
            )
            for rule in policy.rules
        ],
    )


def oidc_service(sessions: Sessions, clock: Clock, settings: Settings) -> OidcServicer:
    limits = FetchLimits(
        timeout_seconds=settings.oidc_fetch_timeout_seconds,
        max_bytes=settings.oidc_max_document_bytes,
        cache_seconds=settings.oidc_jwks_cache_seconds,
        allow_http_loopback=settings.oidc_allow_http_loopback_issuers,
    )
    store = OidcStore(sessions, clock)
    identity = IdentityStore(sessions, clock)
    teams = TeamStore(sessions, clock)
    fetcher = DocumentFetcher(limits)
    validator = TokenValidator(IssuerKeys(fetcher, clock, limits), clock)
    exchange = OidcExchange(
        store,
        identity,
        teams,
        AuditLog(AuditStore(sessions), clock),
        validator,
        clock,
        ExchangeSettings(
            max_ttl_seconds=settings.oidc_token_max_ttl_seconds,
            skew_seconds=settings.oidc_clock_skew_seconds,
            allow_http_loopback=settings.oidc_allow_http_loopback_issuers,
            fetch_timeout_seconds=settings.oidc_fetch_timeout_seconds,
        ),
    )
    secret = settings.oidc_client_secret
    sign_in = ConsoleSignIn(
        SignInSettings(
            issuer=settings.oidc_issuer.rstrip("/"),
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret is not None else "",
            display_name=settings.oidc_display_name,
            allowed_domains=tuple(
                d.strip().lower() for d in settings.oidc_allowed_domains.split(",") if d.strip()
            ),
            groups_claim=settings.oidc_groups_claim,
            group_grants=parse_group_mapping(settings.oidc_group_mapping),
            skew_seconds=settings.oidc_clock_skew_seconds,
        ),
        store,
        identity,
        teams,
        validator,
        fetcher,
        clock,
    )
    return OidcServicer(exchange, sign_in)
