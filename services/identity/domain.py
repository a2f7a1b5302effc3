"""Frozen records the identity service passes between its layers, and its pure rules."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.errors import InvalidArgument, NotFound, PermissionDenied

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_NAME_LENGTH = 100
MAX_DISPLAY_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 320
MAX_TOKEN_NAME_LENGTH = 255
# Echoed names are cut short so a hostile request cannot inflate error bodies.
_SHOWN_LENGTH = 100

DEFAULT_ADMIN_LOGIN = "admin"
BOOTSTRAP_TOKEN_NAME = "bootstrap"
ADMIN_TOKEN_NAME = "admin-token"
LOGIN_METHODS: tuple[str, ...] = ("token",)

# Recording every use would turn each authenticated request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

UNAUTHORIZED = "Unauthorized: No credentials provided or are invalid."
ALREADY_BOOTSTRAPPED = "Conflict: the first admin has already been created."


class Role(enum.IntEnum):
    """Organization roles; a higher value grants everything a lower one does."""

    VIEWER = 1
    MEMBER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The stored and displayed form: 'viewer', 'member' or 'admin'."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Role:
        return cls[label.upper()]


@dataclass(frozen=True)
class NewUser:
    login: str
    name: str = ""
    email: str = ""
    is_site_admin: bool = False


@dataclass(frozen=True)
class User:
    id: str
    login: str
    name: str
    email: str
    is_site_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Membership:
    organization: str
    user_login: str
    role: Role


@dataclass(frozen=True)
class TokenInfo:
    """What the CLI shows about the token in use; team and organization tokens come later."""

    name: str
    organization: str = ""
    team: str = ""
    # The token's id, so audit entries can name the token used (never its value).
    id: str = ""


@dataclass(frozen=True)
class Principal:
    """The user behind an access token, with every membership they hold."""

    user: User
    memberships: tuple[Membership, ...]
    token_info: TokenInfo
    default_organization: str


@dataclass(frozen=True)
class Authorization:
    principal: Principal
    role: Role
    is_organization_created: bool = False


@dataclass(frozen=True)
class Bootstrap:
    """The first admin, their organization and the one-time token."""

    user: User
    organization: Organization
    token: str


@dataclass(frozen=True)
class IssuedToken:
    """A new access token; `token` is shown once and only its hash is stored."""

    id: str
    token: str


def shown(value: str) -> str:
    """A caller-supplied value as it may appear in a public message."""
    if len(value) <= _SHOWN_LENGTH:
        return value
    return value[:_SHOWN_LENGTH] + "…"


def validate_name(kind: str, name: str) -> str:
    """Logins and organization names; `kind` names the field in the error message."""
    if NAME_PATTERN.fullmatch(name) is None:
        raise InvalidArgument(
            f"Bad Request: invalid {kind} '{shown(name)}': use letters, digits, '-', '_' "
            f"or '.', start with a letter or digit, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def validate_text(kind: str, value: str, max_length: int) -> str:
    """Free text (display names, emails, token names): bounded and storable everywhere."""
    if len(value) > max_length:
        raise InvalidArgument(f"Bad Request: {kind} is longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidArgument(f"Bad Request: {kind} contains a NUL character")
    return value


def validate_new_user(user: NewUser) -> NewUser:
    validate_name("user login", user.login)
    validate_text("name", user.name, MAX_DISPLAY_NAME_LENGTH)
    validate_text("email", user.email, MAX_EMAIL_LENGTH)
    return user


def user_not_found(login: str) -> NotFound:
    return NotFound(f"Not Found: user '{shown(login)}' not found")


def organization_not_found(organization: str) -> NotFound:
    # Also what outsiders get for organizations that exist, so they learn nothing.
    return NotFound(f"Not Found: organization '{shown(organization)}' not found")


def default_organization(login: str, organizations: Iterable[str]) -> str:
    """The personal organization when the user belongs to it, else the first by name."""
    names = sorted(organizations)
    if login in names:
        return login
    return names[0] if names else ""


def make_principal(
    user: User, memberships: Iterable[Membership], token_info: TokenInfo
) -> Principal:
    ordered = tuple(sorted(memberships, key=lambda m: m.organization))
    return Principal(
        user=user,
        memberships=ordered,
        token_info=token_info,
        default_organization=default_organization(user.login, (m.organization for m in ordered)),
    )


def with_membership(principal: Principal, organization: str, role: Role) -> Principal:
    """The principal after joining (or changing role in) one organization."""
    others = [m for m in principal.memberships if m.organization != organization]
    joined = Membership(organization=organization, user_login=principal.user.login, role=role)
    return make_principal(principal.user, [*others, joined], principal.token_info)


def role_in(principal: Principal, organization: str) -> Role | None:
    """The caller's role in an organization, or None when they are not a member."""
    for membership in principal.memberships:
        if membership.organization == organization:
            return membership.role
    return None


def require_role(organization: str, role: Role | None, minimum: Role) -> Role:
    """The granted role, or the error for a caller who lacks `minimum`."""
    if role is None:
        raise organization_not_found(organization)
    if role < minimum:
        raise PermissionDenied(
            f"Forbidden: this requires the {minimum.label} role in organization "
            f"'{shown(organization)}'"
        )
    return role


def is_token_usable(
    *, now: datetime, revoked_at: datetime | None, expires_at: datetime | None
) -> bool:
    return revoked_at is None and (expires_at is None or now < expires_at)


def is_last_use_stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether an authentication should record itself on the token."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION
