"""Pure rules of access tokens: when one expires, whether it still authenticates and records
its use, what a new one must name, and who a machine token acts as."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import InvalidArgument
from services.identity.domain import (
    Membership,
    Organization,
    Principal,
    TokenInfo,
    TokenKind,
    TokenScope,
    User,
    make_principal,
    token_role,
)

# Recording every use would turn each authenticated request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenState:
    """What decides whether a stored token still authenticates."""

    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenUse(enum.Enum):
    """What one authentication does with a stored token."""

    REFUSED = "refused"
    ACCEPTED = "accepted"
    # Accepted, and its last use is old enough to record this one.
    RECORDED = "recorded"


# 9999-12-31T23:59:59Z: no later moment is a date the databases can hold.
LATEST_EXPIRY_SECONDS = 253_402_300_799


def expiry_from_unix(seconds: int, now: datetime) -> datetime | None:
    """A token expiry from unix seconds (0: never); past or beyond year 9999 is refused."""
    if seconds == 0:
        return None
    if not 0 < seconds <= LATEST_EXPIRY_SECONDS:
        raise InvalidArgument(
            "Bad Request: 'expires' must be unix seconds in the future, or 0 for never"
        )
    expires_at = datetime.fromtimestamp(seconds, tz=UTC)
    if expires_at <= now:
        raise InvalidArgument("Bad Request: 'expires' must be in the future (unix seconds)")
    return expires_at


def is_token_usable(
    *, now: datetime, revoked_at: datetime | None, expires_at: datetime | None
) -> bool:
    return revoked_at is None and (expires_at is None or now < expires_at)


def is_last_use_stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether an authentication should record itself on the token."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


def token_use(state: TokenState, now: datetime) -> TokenUse:
    """Whether a stored token authenticates now, and whether to record this use."""
    if not is_token_usable(now=now, revoked_at=state.revoked_at, expires_at=state.expires_at):
        return TokenUse.REFUSED
    if is_last_use_stale(state.last_used_at, now):
        return TokenUse.RECORDED
    return TokenUse.ACCEPTED


def check_new_token(scope: TokenScope, name: str, *, is_admin: bool) -> None:
    """Machine tokens are named; only organization tokens can be admin tokens."""
    if scope.kind is not TokenKind.PERSONAL and not name:
        raise InvalidArgument("Bad Request: 'name' is required for organization and team tokens")
    if is_admin and scope.kind is not TokenKind.ORGANIZATION:
        raise InvalidArgument("Bad Request: only organization tokens can be admin tokens")


def machine_principal(token: TokenInfo, organization: Organization, team: str) -> Principal:
    """Who an organization or team token acts as: shown as that organization or team, as
    Pulumi does, with the role its kind grants."""
    login = team or organization.name
    actor = User(
        id="",
        login=login,
        name=login,
        email="",
        is_site_admin=False,
        created_at=organization.created_at,
    )
    membership = Membership(
        organization=organization.name, user_login=login, role=token_role(token)
    )
    return make_principal(actor, [membership], token)
