"""Console single sign-on with OpenID Connect: the identity process redeems the browser's
authorization code at the provider's token endpoint (with the PKCE verifier), validates the
ID token with the same module as token exchange, provisions the user on first sign-in, maps
the groups claim to organization roles and teams, and issues the session's access token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from services.common.auth import hash_token, new_token
from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.common.logging import get_logger
from services.identity.domain import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    MemberAction,
    NewToken,
    NewUser,
    Role,
    TeamChange,
    TokenKind,
    TokenScope,
    check_admins_remain,
)
from services.identity.oidc.store import OidcStore
from services.identity.oidc.validation import DocumentFetcher, Expected, TokenValidator
from services.identity.store import IdentityStore
from services.identity.team_store import TeamStore

log = get_logger("cairn.oidc")

SIGN_IN_TOKEN_NAME = "console sign-in (OIDC)"
# As long as a console session (gateway/console/session.py SESSION_SECONDS).
SIGN_IN_TOKEN_SECONDS = 12 * 60 * 60
MAX_LOGIN_ATTEMPTS = 50
_NOT_LOGIN = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class GroupGrant:
    """What membership of one group of the provider gives in Cairn."""

    organization: str
    role: Role
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignInSettings:
    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    display_name: str = ""
    allowed_domains: tuple[str, ...] = ()
    groups_claim: str = "groups"
    group_grants: tuple[tuple[str, tuple[GroupGrant, ...]], ...] = ()
    skew_seconds: int = 60

    @property
    def is_enabled(self) -> bool:
        return bool(self.issuer and self.client_id)

    @property
    def name(self) -> str:
        return self.display_name or urlsplit(self.issuer).hostname or "single sign-on"


def parse_group_mapping(text: str) -> tuple[tuple[str, tuple[GroupGrant, ...]], ...]:
    """`{"group": {"organization": "acme", "role": "admin", "teams": ["ops"]}, ...}`; a group
    may also map to a list of such objects."""
    if not text.strip():
        return ()
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("the OIDC group mapping must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("the OIDC group mapping must be a JSON object")
    mapping: list[tuple[str, tuple[GroupGrant, ...]]] = []
    for group, grants in value.items():
        entries = grants if isinstance(grants, list) else [grants]
        parsed = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("organization"), str):
                raise ValueError(f"group '{group}' must map to an organization")
            teams = entry.get("teams", [])
            if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
                raise ValueError(f"group '{group}': teams must be a list of names")
            parsed.append(
                GroupGrant(
                    organization=entry["organization"],
                    role=Role.from_label(str(entry.get("role", "member"))),
                    teams=tuple(teams),
                )
            )
        mapping.append((group, tuple(parsed)))
    return tuple(mapping)


@dataclass(frozen=True)
class SignedIn:
    login: str
    token: str
    expires_at: int
    is_new_user: bool


def email_domain(claims: dict[str, Any]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return ""
    return email.rsplit("@", 1)[1].lower()


def check_domain(claims: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """With allowed domains set, only verified emails of those domains sign in."""
    if not allowed:
        return
    domain = email_domain(claims)
    if claims.get("email_verified") is False or domain not in allowed:
        raise PermissionDenied(
            "Forbidden: your email address is not in a domain allowed to sign in here"
        )


def login_candidates(claims: dict[str, Any]) -> list[str]:
    """Logins to try for a new user: from preferred_username, else the email's local part,
    cleaned to Cairn's login alphabet, then numbered until one is free."""
    sources = [claims.get("preferred_username"), claims.get("email"), claims.get("sub")]
    base = ""
    for source in sources:
        if isinstance(source, str) and source:
            local = source.split("@", 1)[0]
            base = _NOT_LOGIN.sub("-", local).strip("-._")[: MAX_NAME_LENGTH - 4]
            if base and NAME_PATTERN.fullmatch(base):
                break
            base = ""
    base = base or "user"
    return [base] + [f"{base}-{n}" for n in range(2, MAX_LOGIN_ATTEMPTS + 1)]


def groups_of(claims: dict[str, Any], claim: str) -> set[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


class ConsoleSignIn:
    """One sign-in: code for ID token, ID token for a user, user for a session token."""

    def __init__(
        self,
        settings: SignInSettings,
        store: OidcStore,
        identity: IdentityStore,
        teams: TeamStore,
        validator: TokenValidator,
        fetcher: DocumentFetcher,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._identity = identity
        self._teams = teams
        self._validator = validator
        self._fetcher = fetcher
        self._clock = clock

    @property
    def settings(self) -> SignInSettings:
        return self._settings

    async def authorization_endpoint(self) -> str:
        self._require_enabled()
        return (await self._validator.discovery(self._settings.issuer)).authorization_endpoint

    def _require_enabled(self) -> None:
        if not self._settings.is_enabled:
            raise FailedPrecondition(
                "Conflict: single sign-on is not configured (CAIRN_OIDC_ISSUER, "
                "CAIRN_OIDC_CLIENT_ID)"
            )

    async def complete(
        self, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> SignedIn:
        self._require_enabled()
        if not code or not code_verifier or not nonce:
            raise InvalidArgument("Bad Request: the sign-in response lacks its code")
        settings = self._settings
        discovery = await self._validator.discovery(settings.issuer)
        answer = await self._fetcher.post_form(
            discovery.token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            },
        )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthenticated("Unauthorized: the provider did not answer with an ID token")
        claims = await self._validator.validate(
            id_token,
            settings.issuer,
            Expected(discovery.issuer, settings.client_id, settings.skew_seconds),
        )
        if claims.get("nonce") != nonce:
            raise Unauthenticated("Unauthorized: the ID token is not for this sign-in (nonce)")
        check_domain(claims, settings.allowed_domains)
        login, is_new = await self._user_for(discovery.issuer, claims)
        await self._apply_groups(login, claims)
        now = datetime.fromtimestamp(self._clock.now(), tz=UTC)
        expires_at = now + timedelta(seconds=SIGN_IN_TOKEN_SECONDS)
        token = new_token()
        await self._identity.issue_token(
            NewToken(
                scope=TokenScope(TokenKind.PERSONAL, user_login=login),
                name=SIGN_IN_TOKEN_NAME,
                description=f"Signed in with {settings.name}",
                token_hash=hash_token(token),
                created_by=login,
                expires_at=expires_at,
            )
        )
        log.info("oidc_signed_in", user=login, is_new_user=is_new)
        return SignedIn(login, token, int(expires_at.timestamp()), is_new)

    async def _user_for(self, issuer: str, claims: dict[str, Any]) -> tuple[str, bool]:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("Unauthorized: the ID token names no subject")
        linked = await self._store.linked_login(issuer, subject)
        if linked is not None:
            return linked, False
        name = claims.get("name") if isinstance(claims.get("name"), str) else ""
        email = claims.get("email") if isinstance(claims.get("email"), str) else ""
        for login in login_candidates(claims):
            if await self._identity.has_user(login):
                continue
            await self._identity.create_user(
                NewUser(login=login, name=str(name)[:255], email=str(email)[:320]),
                with_personal_organization=False,
            )
            await self._store.link(issuer, subject, login)
            return login, True
        raise FailedPrecondition("Conflict: no free login for this user; ask an administrator")

    async def _apply_groups(self, login: str, claims: dict[str, Any]) -> None:
        groups = groups_of(claims, self._settings.groups_claim)
        for group, grants in self._settings.group_grants:
            if group not in groups:
                continue
            for grant in grants:
                try:
                    await self._identity.set_membership(
                        grant.organization, login, grant.role, keep_admin=check_admins_remain
                    )
                    for team in grant.teams:
                        await self._teams.update_team(
                            grant.organization,
                            team,
                            TeamChange(member_action=MemberAction.ADD, member_login=login),
                        )
                except (NotFound, FailedPrecondition) as error:
                    # A mapping naming a missing organization or team must not block sign-in.
                    log.warning("oidc_group_mapping_skipped", group=group, error=str(error))
