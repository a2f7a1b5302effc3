"""Frozen records the identity service passes between its layers, and its pure rules."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.common import limits
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

NAME_PATTERN = re.compile(limits.IDENTITY_NAME)
EMAIL_PATTERN = re.compile(limits.EMAIL)
URL_PATTERN = re.compile(limits.HTTP_URL)
# secrets.token_urlsafe(32): 43 base64url characters.
LINK_SECRET_PATTERN = re.compile(limits.LINK_SECRET)
MAX_URL_LENGTH = limits.MAX_URL_LENGTH
MAX_USER_PAGE_SIZE = limits.MAX_USER_PAGE_SIZE
MAX_NAME_LENGTH = limits.MAX_IDENTITY_NAME_LENGTH
MAX_DISPLAY_NAME_LENGTH = limits.MAX_DISPLAY_NAME_LENGTH
MAX_EMAIL_LENGTH = limits.MAX_EMAIL_LENGTH
MAX_TOKEN_NAME_LENGTH = limits.MAX_TOKEN_NAME_LENGTH
MAX_DESCRIPTION_LENGTH = limits.MAX_DESCRIPTION_LENGTH
# Echoed names are cut short so a hostile request cannot inflate error bodies.
_SHOWN_LENGTH = 100

DEFAULT_ADMIN_LOGIN = "admin"
BOOTSTRAP_TOKEN_NAME = "bootstrap"
ADMIN_TOKEN_NAME = "admin-token"
LOGIN_METHODS: tuple[str, ...] = ("token",)

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


class StackPermission(enum.IntEnum):
    """Pulumi's stack permission levels (the REST wire values); higher grants more."""

    NONE = 0
    READ = 101
    WRITE = 102
    ADMIN = 103
    # Pulumi's `Creator`: what the stack's creator holds, everything admin grants. Cairn
    # derives it from stack ownership; granted to a team or user (seed 000 allows it), it
    # gives what admin gives.
    CREATOR = 104

    @property
    def label(self) -> str:
        return self.name.lower()


GRANTABLE_STACK_PERMISSIONS = frozenset(
    {StackPermission.READ, StackPermission.WRITE, StackPermission.ADMIN, StackPermission.CREATOR}
)
# What members hold on every stack of a new organization: the rights members had before
# per-stack permissions existed.
DEFAULT_STACK_PERMISSION = StackPermission.WRITE


class TokenKind(enum.Enum):
    """Whose access token: a user's, an organization's or a team's."""

    PERSONAL = "personal"
    ORGANIZATION = "organization"
    TEAM = "team"


class OrganizationAutocreate(enum.Enum):
    """Which missing organizations creating a stack may create (`CAIRN_ALLOW_...`)."""

    ANY = "any"
    OWN = "own"
    NONE = "none"


class TeamRole(enum.Enum):
    MEMBER = "member"
    ADMIN = "admin"


class MemberAction(enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    PROMOTE = "promote"
    DEMOTE = "demote"


@dataclass(frozen=True)
class NewUser:
    login: str
    name: str = ""
    email: str = ""
    is_site_admin: bool = False
    avatar_url: str = ""


@dataclass(frozen=True)
class User:
    id: str
    login: str
    name: str
    email: str
    is_site_admin: bool
    created_at: datetime
    avatar_url: str = ""
    disabled_at: datetime | None = None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class UserState(enum.Enum):
    """Which users a listing shows."""

    ANY = "any"
    ENABLED = "enabled"
    DISABLED = "disabled"


@dataclass(frozen=True)
class UserQuery:
    """One page of the user listing: a login or email substring, a state, and where the
    previous page ended (the last login it showed)."""

    text: str = ""
    state: UserState = UserState.ANY
    page_size: int = 100
    after_login: str = ""


@dataclass(frozen=True)
class UserPage:
    users: tuple[User, ...]
    # The login to continue after; empty on the last page.
    next_after: str


@dataclass(frozen=True)
class ProfileChange:
    """The members of a profile a caller changes; None leaves one as it is."""

    name: str | None = None
    email: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class OrganizationDetails:
    organization: Organization
    default_stack_permission: StackPermission
    member_count: int


@dataclass(frozen=True)
class Membership:
    organization: str
    user_login: str
    role: Role


@dataclass(frozen=True)
class Member:
    user: User
    role: Role
    joined_at: datetime
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenInfo:
    """What the CLI shows about the token in use, and what kind of token it is."""

    name: str
    organization: str = ""
    team: str = ""
    id: str = ""
    kind: TokenKind = TokenKind.PERSONAL
    # Organization tokens only: they act as an organization admin on stacks.
    is_admin: bool = False


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
    stack_permission: StackPermission = StackPermission.NONE


@dataclass(frozen=True)
class StackGrants:
    """What decides one caller's permission on one stack, besides their role."""

    organization_default: StackPermission
    # The caller's teams' grants on the stack (for a team token: that team's only).
    team_permissions: tuple[StackPermission, ...] = ()
    explicit: StackPermission = StackPermission.NONE
    is_owner: bool = False


@dataclass(frozen=True)
class TokenScope:
    kind: TokenKind
    user_login: str = ""
    organization: str = ""
    team: str = ""


@dataclass(frozen=True)
class NewToken:
    scope: TokenScope
    name: str
    description: str
    token_hash: str
    created_by: str
    expires_at: datetime | None = None
    is_admin: bool = False


@dataclass(frozen=True)
class AccessToken:
    """A token as lists show it: never its value."""

    id: str
    kind: TokenKind
    name: str
    description: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    is_admin: bool


@dataclass(frozen=True)
class Invite:
    """An invitation of a registered user (`user`), or of an email address without an
    account (`email`, `expires_at`; `link_secret` only right after it is created)."""

    id: str
    organization: str
    user: User | None
    role: Role
    invited_by: str
    created_at: datetime
    email: str = ""
    expires_at: datetime | None = None
    link_secret: str = ""


@dataclass(frozen=True)
class NewLink:
    """An invitation of an email address without an account, before its secret is drawn."""

    email: str
    role: Role
    invited_by: str
    expires_at: datetime


@dataclass(frozen=True)
class InviteLink:
    """What an invitation link offers, as its page shows it."""

    organization: str
    role: Role
    email: str
    invited_by: str
    expires_at: datetime


@dataclass(frozen=True)
class LinkState:
    """An invitation link as the store finds it, before it is used."""

    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class Joined:
    """A person who joined through an invitation link, with their first token (shown once)."""

    user: User
    membership: Membership
    token: IssuedToken


@dataclass(frozen=True)
class TeamMember:
    user: User
    role: TeamRole


@dataclass(frozen=True)
class StackGrant:
    stack_id: str
    permission: StackPermission


@dataclass(frozen=True)
class Team:
    id: str
    organization: str
    name: str
    display_name: str
    description: str
    created_at: datetime
    members: tuple[TeamMember, ...] = ()
    stacks: tuple[StackGrant, ...] = ()


@dataclass(frozen=True)
class TeamChange:
    """One `PATCH` of a team: any of these, applied together."""

    display_name: str | None = None
    description: str | None = None
    member_action: MemberAction | None = None
    member_login: str = ""
    set_stack: StackGrant | None = None
    remove_stack_id: str = ""


@dataclass(frozen=True)
class TeamStackGrant:
    team: Team
    permission: StackPermission
    is_member: bool


@dataclass(frozen=True)
class UserStackGrant:
    user: User
    permission: StackPermission


@dataclass(frozen=True)
class MemberStackPermissions:
    user: User
    role: Role
    organization_default: StackPermission
    teams: tuple[TeamStackGrant, ...]
    explicit: StackPermission
    effective: StackPermission


@dataclass(frozen=True)
class MemberStackGrants:
    """What the store finds about one member and one stack; the rules make it permissions."""

    user: User
    role: Role
    organization_default: StackPermission
    # The grants of the teams the member belongs to.
    teams: tuple[TeamStackGrant, ...]
    explicit: StackPermission


@dataclass(frozen=True)
class StackRef:
    """A stack as authorization sees it: its stable id and who created it."""

    stack_id: str
    owner_login: str = ""


@dataclass(frozen=True)
class BootstrapStatus:
    is_bootstrap_needed: bool
    login_methods: tuple[str, ...]
    has_organization: bool


@dataclass(frozen=True)
class InviteCandidate:
    """One invitation target as the store finds it, before it is invited; `login` is empty
    for an email address without an account."""

    recipient: str
    login: str
    organization: str
    is_repeated: bool
    is_member: bool
    has_pending_invite: bool
    is_disabled: bool = False


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


def validate_email(value: str) -> str:
    """An email address: one '@' between a local part and a dotted domain, no spaces."""
    validate_text("email", value, MAX_EMAIL_LENGTH)
    if EMAIL_PATTERN.fullmatch(value) is None:
        raise InvalidArgument(f"Bad Request: invalid email '{shown(value)}'")
    return value


def validate_avatar_url(value: str) -> str:
    """An avatar URL: http or https with a host, at most MAX_URL_LENGTH characters."""
    validate_text("avatarUrl", value, MAX_URL_LENGTH)
    if value and URL_PATTERN.fullmatch(value) is None:
        raise InvalidArgument("Bad Request: avatarUrl must be an http or https URL")
    return value


def validate_registration(user: NewUser) -> NewUser:
    """A user a site admin creates or an invitation link brings: a login, a valid email
    (required) and an optional avatar URL."""
    validate_new_user(user)
    validate_email(user.email)
    validate_avatar_url(user.avatar_url)
    return user


def validate_profile(change: ProfileChange) -> ProfileChange:
    if change.name is not None:
        validate_text("name", change.name, MAX_DISPLAY_NAME_LENGTH)
    if change.email is not None:
        validate_email(change.email)
    if change.avatar_url is not None:
        validate_avatar_url(change.avatar_url)
    return change


def validate_user_query(query: UserQuery) -> UserQuery:
    if not 1 <= query.page_size <= MAX_USER_PAGE_SIZE:
        raise InvalidArgument(f"Bad Request: pageSize must be 1 to {MAX_USER_PAGE_SIZE}")
    validate_text("query", query.text, MAX_EMAIL_LENGTH)
    return query


def require_site_admin(caller: User | None) -> User:
    """Site administration is for enabled site admins."""
    if caller is None or not caller.is_site_admin or caller.is_disabled:
        raise PermissionDenied("Forbidden: site administration is for site admins")
    return caller


LAST_SITE_ADMIN = "Conflict: the last enabled site admin cannot be disabled"


def check_site_admins_remain(user: User, enabled_site_admins: int) -> None:
    """Refuse disabling the instance's last enabled site admin."""
    if user.is_site_admin and not user.is_disabled and enabled_site_admins <= 1:
        raise FailedPrecondition(LAST_SITE_ADMIN)


def check_token_on_enable(*, is_disabled: bool, issue_token: bool) -> None:
    """A new token comes only with enabling: a disabled user's tokens are all revoked."""
    if is_disabled and issue_token:
        raise InvalidArgument("Bad Request: a token is issued only when enabling a user")


def check_login_free(login: str, *, is_an_organization: bool) -> None:
    """A new person's login is not an existing organization's name, which would be theirs."""
    if is_an_organization:
        raise AlreadyExists(
            f"Conflict: '{shown(login)}' is the name of an organization; choose another login"
        )


INVITE_LINK_NOT_FOUND = "Not Found: this invitation link is not valid (wrong, or cancelled)"
INVITE_LINK_USED = "Conflict: this invitation link has already been used"
INVITE_LINK_EXPIRED = "Conflict: this invitation link has expired; ask for a new invitation"


def check_invite_link(state: LinkState | None, now: datetime) -> LinkState:
    """A link is good once, until it expires; unknown and cancelled links are not found."""
    if state is None:
        raise NotFound(INVITE_LINK_NOT_FOUND)
    if state.used_at is not None:
        raise FailedPrecondition(INVITE_LINK_USED)
    if state.expires_at <= now:
        raise FailedPrecondition(INVITE_LINK_EXPIRED)
    return state


def validate_link_secret(secret: str) -> str:
    """The shape of a link's secret; anything else is a wrong link (never echoed)."""
    if LINK_SECRET_PATTERN.fullmatch(secret) is None:
        raise NotFound(INVITE_LINK_NOT_FOUND)
    return secret


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


def may_create_organization(
    policy: OrganizationAutocreate, principal: Principal, organization: str
) -> bool:
    """Whether creating a stack may create this (missing) organization for the caller.

    Only people create organizations, never organization or team tokens. By default only
    the caller's own organization, named after their login: where `pulumi stack init` puts
    a new user's first stack (`GET /api/user/organizations/default` names no organization
    yet, so the CLI falls back to the login). Nobody claims a name that someone else, or
    another user's own organization, should have.
    """
    if principal.token_info.kind is not TokenKind.PERSONAL:
        return False
    if policy is OrganizationAutocreate.ANY:
        return True
    return policy is OrganizationAutocreate.OWN and organization == principal.user.login


def check_organization_name_free(name: str, admin_login: str, *, is_a_login: bool) -> None:
    """An organization named after a user is that user's own: nobody else creates it."""
    if is_a_login and name != admin_login:
        raise AlreadyExists(
            f"Conflict: '{shown(name)}' is kept for the organization of the user of that login"
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


def team_not_found(team: str) -> NotFound:
    return NotFound(f"Not Found: team '{shown(team)}' not found")


def token_not_found(token_id: str) -> NotFound:
    return NotFound(f"Not Found: access token '{shown(token_id)}' not found")


def invite_not_found(invite_id: str) -> NotFound:
    return NotFound(f"Not Found: invitation '{shown(invite_id)}' not found")


LAST_ADMIN = (
    "Conflict: an organization must keep at least one admin; make another member admin first"
)


def check_admins_remain(current_role: Role, new_role: Role | None, admin_count: int) -> None:
    """Refuse demoting or removing (new_role None) the organization's last admin."""
    if current_role is Role.ADMIN and new_role is not Role.ADMIN and admin_count <= 1:
        raise FailedPrecondition(LAST_ADMIN)


def validate_grant(permission: int) -> StackPermission:
    """A permission a team or user may be granted on a stack (read, write, admin, creator)."""
    try:
        value = StackPermission(permission)
    except ValueError:
        value = None
    if value not in GRANTABLE_STACK_PERMISSIONS:
        raise InvalidArgument(
            f"Bad Request: invalid stack permission {permission}: use 101 (read), "
            "102 (write), 103 (admin) or 104 (creator)"
        )
    assert value is not None
    return value


def check_member_action(action: MemberAction | None, member_login: str) -> None:
    """A team change that adds, removes, promotes or demotes names whom."""
    if action is not None and not member_login:
        raise InvalidArgument("Bad Request: 'member' is required with 'memberAction'")


def validate_grant_or_none(permission: int) -> StackPermission:
    """A stack grant to set, or none to remove it."""
    if permission == StackPermission.NONE:
        return StackPermission.NONE
    return validate_grant(permission)


def validate_default_permission(permission: int) -> StackPermission:
    """The organization's default stack permission for members: none, read, write or admin."""
    if permission == StackPermission.CREATOR:
        raise InvalidArgument(
            "Bad Request: the default stack permission is 0 (none), 101 (read), 102 (write) "
            "or 103 (admin): 104 belongs to a stack's creator"
        )
    return validate_grant_or_none(permission)


# --- Authorisation: the one place that decides who may do what ------------------------------
#
# Organization routes need a minimum role; stack routes need a minimum stack permission.
#
# - Personal tokens act as their user: the organization role, plus, on stacks,
#   max(role baseline, the caller's teams' grants, the explicit user grant, owner -> creator).
#   The baseline is admin for admins, the organization default for members and read for
#   viewers; viewers are capped at read whatever they are granted.
# - Organization tokens act as the organization: role member (admin when created with
#   `admin`), write on every stack (admin when `admin`).
# - Team tokens act with the team's grants only: role viewer in the team's organization
#   (organization reads), and on stacks exactly the team's grants.
# - Organization and team tokens never manage access: members, invitations, teams, grants,
#   the organization's settings and tokens need a personal token (403).
# - Outside the organization a caller learns nothing: 404, as for a missing organization.

MACHINE_TOKENS_CANNOT_MANAGE = (
    "Forbidden: organization and team tokens cannot manage members, teams, permissions, "
    "invitations or tokens; use a personal access token"
)


def token_role(token: TokenInfo) -> Role:
    """The organization role an organization or team token acts with, in its organization."""
    if token.kind is TokenKind.ORGANIZATION:
        return Role.ADMIN if token.is_admin else Role.MEMBER
    return Role.VIEWER


def check_manages_access(token: TokenInfo, manages_access: bool) -> None:
    if manages_access and token.kind is not TokenKind.PERSONAL:
        raise PermissionDenied(MACHINE_TOKENS_CANNOT_MANAGE)


def effective_stack_permission(
    token: TokenInfo, role: Role | None, grants: StackGrants
) -> StackPermission:
    """The caller's permission on one stack (see the rules above)."""
    if role is None:
        return StackPermission.NONE
    if token.kind is TokenKind.TEAM:
        return max(grants.team_permissions, default=StackPermission.NONE)
    if token.kind is TokenKind.ORGANIZATION:
        return StackPermission.ADMIN if token.is_admin else StackPermission.WRITE
    baseline = {
        Role.ADMIN: StackPermission.ADMIN,
        Role.MEMBER: grants.organization_default,
        Role.VIEWER: StackPermission.READ,
    }[role]
    owner = StackPermission.CREATOR if grants.is_owner else StackPermission.NONE
    best = max(baseline, grants.explicit, owner, *grants.team_permissions)
    if role is Role.VIEWER:
        return min(best, StackPermission.READ)
    return best


def is_stack_readable(token: TokenInfo, role: Role | None, grants: StackGrants) -> bool:
    """Whether the caller may read the stack: what a stack listing may show them."""
    return effective_stack_permission(token, role, grants) >= StackPermission.READ


def require_stack_permission(
    organization: str,
    role: Role | None,
    permission: StackPermission,
    minimum: StackPermission,
) -> StackPermission:
    """The granted permission, or the error for a caller who lacks `minimum` on the stack."""
    if role is None:
        raise organization_not_found(organization)
    if permission < minimum:
        raise PermissionDenied(
            f"Forbidden: this requires the {minimum.label} permission on the stack"
        )
    return permission


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


def is_stack_owner(owner_login: str, login: str) -> bool:
    """Whether `login` created the stack (an unknown owner is nobody)."""
    return bool(owner_login) and owner_login == login


def member_stack_permissions(found: MemberStackGrants, *, is_owner: bool) -> MemberStackPermissions:
    """A member's permission on one stack, with what it comes from."""
    effective = effective_stack_permission(
        TokenInfo(name=""),
        found.role,
        StackGrants(
            organization_default=found.organization_default,
            team_permissions=tuple(t.permission for t in found.teams),
            explicit=found.explicit,
            is_owner=is_owner,
        ),
    )
    return MemberStackPermissions(
        user=found.user,
        role=found.role,
        organization_default=found.organization_default,
        teams=found.teams,
        explicit=found.explicit,
        effective=effective,
    )


def require_stack_id(stack_id: str) -> str:
    if not stack_id:
        raise InvalidArgument("Bad Request: a stack id is required")
    return stack_id


def require_minimum_stack_permission(minimum: StackPermission) -> StackPermission:
    """A stack route names the permission it needs; none is a caller's mistake."""
    if minimum is StackPermission.NONE:
        raise InvalidArgument("Bad Request: a minimum stack permission is required")
    return minimum


def check_invite_targets(targets: Sequence[object]) -> None:
    if not targets:
        raise InvalidArgument("Bad Request: name at least one user to invite")


def check_invite_listing(*, organization: str, login: str) -> None:
    """Invitations are listed for an organization or for a user, exactly one of them."""
    if bool(organization) == bool(login):
        raise InvalidArgument("Bad Request: name either an organization or a user")


def check_invite(candidate: InviteCandidate) -> None:
    """Invite each user once, never a member, never twice while an invitation is pending,
    never a disabled user."""
    # A second invitation in one batch conflicts with the first, as a pending one does.
    if candidate.is_repeated:
        raise AlreadyExists(f"Conflict: '{shown(candidate.recipient)}' is invited more than once")
    if candidate.is_member:
        raise already_a_member(candidate.login, candidate.organization)
    if candidate.is_disabled:
        raise FailedPrecondition(f"Conflict: user '{shown(candidate.login)}' is disabled")
    if candidate.has_pending_invite:
        who = (
            f"user '{shown(candidate.login)}'"
            if candidate.login
            else f"'{shown(candidate.recipient)}'"
        )
        raise AlreadyExists(f"Conflict: {who} already has a pending invitation")


def already_a_member(login: str, organization: str) -> AlreadyExists:
    return AlreadyExists(
        f"Conflict: user '{shown(login)}' is already a member of organization "
        f"'{shown(organization)}'"
    )
