"""Use cases of the identity service: authentication, authorization, organizations, members,
invitations, teams, stack grants and access tokens. The rules are in domain.py; this module
runs them against what the store finds."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.common.auth import hash_token, new_token
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, Unauthenticated
from services.common.logging import get_logger
from services.common.masking import mask_credentials
from services.identity.domain import (
    ADMIN_TOKEN_NAME,
    ALREADY_BOOTSTRAPPED,
    BOOTSTRAP_TOKEN_NAME,
    DEFAULT_ADMIN_LOGIN,
    LOGIN_METHODS,
    MAX_DESCRIPTION_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    UNAUTHORIZED,
    AccessToken,
    Authorization,
    Bootstrap,
    BootstrapStatus,
    Invite,
    InviteLink,
    IssuedToken,
    Joined,
    Member,
    Membership,
    MemberStackPermissions,
    NewToken,
    NewUser,
    Organization,
    OrganizationAutocreate,
    OrganizationDetails,
    Principal,
    ProfileChange,
    Role,
    StackGrants,
    StackPermission,
    StackRef,
    Team,
    TeamChange,
    TeamStackGrant,
    TokenScope,
    User,
    UserPage,
    UserQuery,
    UserStackGrant,
    check_admins_remain,
    check_invite,
    check_invite_link,
    check_invite_listing,
    check_invite_targets,
    check_login_free,
    check_manages_access,
    check_organization_name_free,
    check_site_admins_remain,
    check_token_on_enable,
    effective_stack_permission,
    is_stack_owner,
    is_stack_readable,
    may_create_organization,
    member_stack_permissions,
    organization_not_found,
    require_minimum_stack_permission,
    require_role,
    require_site_admin,
    require_stack_id,
    require_stack_permission,
    role_in,
    validate_email,
    validate_link_secret,
    validate_name,
    validate_new_user,
    validate_profile,
    validate_registration,
    validate_text,
    validate_user_query,
    with_membership,
)
from services.identity.store import IdentityStore
from services.identity.team_store import TeamStore
from services.identity.tokens import check_new_token, expiry_from_unix, token_use
from services.identity.user_store import UserStore

log = get_logger("cairn.identity")

StackGrantList = tuple[list[TeamStackGrant], list[UserStackGrant]]

# The names of the first tokens of a user a site admin creates and of a person who joins.
FIRST_TOKEN_NAME = "first"
JOINED_TOKEN_NAME = "invitation"
ENABLED_TOKEN_NAME = "re-enabled"
DEFAULT_INVITE_TTL = timedelta(hours=72)
_SECRET_DRAWS = 8


def new_link_secret() -> tuple[str, str]:
    """An invitation link's secret (shown once) and the SHA-256 kept of it.

    Drawn again (at most a few times) until it holds both letter cases, the shape the logs'
    credential mask recognises, so that a stray copy in any log line is masked."""
    secret = secrets.token_urlsafe(32)
    for _ in range(_SECRET_DRAWS):
        if mask_credentials(secret) != secret:
            break
        secret = secrets.token_urlsafe(32)
    return secret, hash_token(secret)


def _check_login(login: str, is_an_organization: bool) -> None:
    check_login_free(login, is_an_organization=is_an_organization)


class IdentityService:
    """Every identity use case; one method per RPC, protobuf-free."""

    def __init__(
        self,
        store: IdentityStore,
        teams: TeamStore,
        clock: Clock,
        autocreate: OrganizationAutocreate = OrganizationAutocreate.OWN,
        *,
        users: UserStore,
        invite_ttl: timedelta = DEFAULT_INVITE_TTL,
    ) -> None:
        self._store = store
        self._teams = teams
        self._clock = clock
        self._autocreate = autocreate
        self._users = users
        self._invite_ttl = invite_ttl

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    # --- authentication and authorization ---------------------------------------------

    async def authenticate(self, token: str, *, manages_access: bool = False) -> Principal:
        """The principal behind an access token; Unauthenticated for a missing or dead one."""
        if not token:
            raise Unauthenticated(UNAUTHORIZED)
        principal = await self._store.authenticate(hash_token(token), judge=token_use)
        if principal is None:
            raise Unauthenticated(UNAUTHORIZED)
        check_manages_access(principal.token_info, manages_access)
        return principal

    async def check_organization_role(
        self, token_id: str, organization: str, minimum: Role
    ) -> Role:
        """The role the access token with this id holds in an organization, refused as
        `authorize` refuses it (no organization is created)."""
        principal = (
            await self._store.principal_by_token_id(token_id, judge=token_use) if token_id else None
        )
        if principal is None:
            raise Unauthenticated(UNAUTHORIZED)
        return require_role(organization, role_in(principal, organization), minimum)

    async def authorize(
        self,
        principal: Principal,
        token: str,
        organization: str,
        minimum: Role,
        *,
        create_if_missing: bool,
        manages_access: bool,
    ) -> Authorization:
        """The caller's role in an organization against what the route needs; creating a
        missing organization where the autocreate policy lets the caller."""
        authorization = await self._authorize(
            principal, token, organization, minimum, create_if_missing=create_if_missing
        )
        check_manages_access(authorization.principal.token_info, manages_access)
        return authorization

    async def authorize_stack(
        self,
        principal: Principal,
        organization: str,
        stack: StackRef,
        minimum: StackPermission,
        *,
        manages_access: bool,
    ) -> Authorization:
        """The caller's permission on one stack, against what the route needs."""
        require_minimum_stack_permission(minimum)
        role = role_in(principal, organization)
        if role is None:
            raise organization_not_found(organization)
        grants = await self._stack_grants(principal, organization, [stack])
        permission = effective_stack_permission(principal.token_info, role, grants[stack.stack_id])
        require_stack_permission(organization, role, permission, minimum)
        check_manages_access(principal.token_info, manages_access)
        return Authorization(principal, role, stack_permission=permission)

    async def filter_readable_stacks(
        self, token: str, stacks: list[tuple[str, StackRef]]
    ) -> list[str]:
        """The ids of the stacks, given as (organization, stack), the caller may read."""
        principal = await self.authenticate(token)
        by_organization: dict[str, list[StackRef]] = {}
        for organization, stack in stacks:
            by_organization.setdefault(organization, []).append(stack)
        readable: set[tuple[str, str]] = set()
        for organization, refs in by_organization.items():
            role = role_in(principal, organization)
            if role is None:
                continue
            grants = await self._stack_grants(principal, organization, refs)
            readable.update(
                (organization, stack_id)
                for stack_id, found in grants.items()
                if is_stack_readable(principal.token_info, role, found)
            )
        return [
            stack.stack_id
            for organization, stack in stacks
            if (organization, stack.stack_id) in readable
        ]

    async def _stack_grants(
        self, principal: Principal, organization: str, stacks: list[StackRef]
    ) -> dict[str, StackGrants]:
        grants = await self._teams.stack_grants_in(
            principal, organization, [stack.stack_id for stack in stacks]
        )
        return {
            stack.stack_id: replace(
                grants[stack.stack_id],
                is_owner=is_stack_owner(stack.owner_login, principal.user.login),
            )
            for stack in stacks
        }

    async def _authorize(
        self,
        principal: Principal,
        token: str,
        organization: str,
        minimum: Role,
        *,
        create_if_missing: bool,
    ) -> Authorization:
        role = role_in(principal, organization)
        if role is None and create_if_missing:
            validate_name("organization name", organization)
        # A caller who may not create it gets the 404 an existing organization answers.
        if (
            role is None
            and create_if_missing
            and may_create_organization(self._autocreate, principal, organization)
        ):
            if await self._store.create_organization_if_missing(organization, principal.user.id):
                log.info("organization_created", organization=organization)
                joined = with_membership(principal, organization, Role.ADMIN)
                return Authorization(joined, Role.ADMIN, is_organization_created=True)
            # It exists now: created before, or by a concurrent caller that may be this user.
            principal = await self.authenticate(token)
            role = role_in(principal, organization)
        return Authorization(principal, require_role(organization, role, minimum))

    # --- bootstrap, users and organizations -------------------------------------------

    async def bootstrap_status(self) -> BootstrapStatus:
        return BootstrapStatus(
            is_bootstrap_needed=not await self._store.has_users(),
            login_methods=LOGIN_METHODS,
            has_organization=await self._store.has_organizations(),
        )

    async def bootstrap_first_admin(self, admin: NewUser, organization: str) -> Bootstrap:
        """Create the first admin (a site admin), their organization and a one-time token;
        only while there are no users."""
        admin = validate_new_user(
            replace(admin, login=admin.login or DEFAULT_ADMIN_LOGIN, is_site_admin=True)
        )
        organization = validate_name("organization name", organization or admin.login)
        token = new_token()
        created = await self._store.bootstrap(
            admin, organization, BOOTSTRAP_TOKEN_NAME, hash_token(token)
        )
        if created is None:
            raise FailedPrecondition(ALREADY_BOOTSTRAPPED)
        user, org = created
        log.info("first_admin_created", login=user.login, organization=org.name)
        return Bootstrap(user=user, organization=org, token=token)

    async def seed_admin_token(self, admin_token: str) -> None:
        """On an empty database, create the first admin with the configured access token."""
        if not admin_token:
            return
        token_hash = hash_token(admin_token)
        admin = NewUser(login=DEFAULT_ADMIN_LOGIN, is_site_admin=True)
        created = await self._store.bootstrap(
            admin, DEFAULT_ADMIN_LOGIN, ADMIN_TOKEN_NAME, token_hash
        )
        if created is None:
            # Users exist: a restart, another replica won the race, or bootstrap came first.
            if not await self._store.has_token_hash(token_hash):
                log.warning(
                    "admin_token_ignored",
                    reason="users already exist and no access token matches CAIRN_ADMIN_TOKEN",
                )
            return
        log.info("first_admin_created", login=DEFAULT_ADMIN_LOGIN, organization=DEFAULT_ADMIN_LOGIN)

    async def create_user(self, new: NewUser, *, with_personal_organization: bool) -> User:
        """A new user, and optionally an organization named after them with them as admin."""
        return await self._store.create_user(
            validate_new_user(new),
            with_personal_organization=with_personal_organization,
        )

    async def create_organization(self, name: str, admin_login: str) -> Organization:
        name = validate_name("organization name", name)
        check_organization_name_free(name, admin_login, is_a_login=await self._store.has_user(name))
        return await self._store.create_organization(name, admin_login)

    async def get_organization(self, organization: str) -> OrganizationDetails:
        return await self._store.get_organization(organization)

    async def update_organization(
        self, organization: str, default_stack_permission: StackPermission | None
    ) -> OrganizationDetails:
        return await self._store.update_organization(organization, default_stack_permission)

    # --- members ----------------------------------------------------------------------

    async def set_membership(self, organization: str, login: str, role: Role) -> Membership:
        """Add a user to an organization or change their role there (keeping an admin)."""
        return await self._store.set_membership(
            organization, login, role, keep_admin=check_admins_remain
        )

    async def list_members(self, organization: str) -> list[Member]:
        return await self._store.list_members(organization)

    async def add_member(self, organization: str, login: str, role: Role) -> Member:
        return await self._store.add_member(organization, login, role)

    async def update_member(self, organization: str, login: str, role: Role) -> Member:
        """Change a member's role; the last admin cannot be demoted."""
        return await self._store.update_member(
            organization, login, role, keep_admin=check_admins_remain
        )

    async def remove_member(self, organization: str, login: str) -> None:
        """Remove a member with their team places and grants; never the last admin."""
        await self._store.remove_member(organization, login, keep_admin=check_admins_remain)

    # --- invitations ------------------------------------------------------------------

    async def create_invites(
        self, organization: str, targets: list[tuple[str, Role]], invited_by: str
    ) -> list[Invite]:
        """Invite registered users (by login or email) and email addresses without an
        account (by a one-time link, shown in the answer only); all of them or none."""
        check_invite_targets(targets)
        for recipient, _ in targets:
            if "@" in recipient:
                validate_email(recipient)
        invites = await self._store.create_invites(
            organization,
            targets,
            invited_by,
            admit=check_invite,
            new_link=new_link_secret,
            link_expires_at=self._now() + self._invite_ttl,
        )
        for invite in invites:
            log.info("invite_created", organization=organization, invite_id=invite.id)
        return invites

    async def list_invites(self, *, organization: str, login: str) -> list[Invite]:
        check_invite_listing(organization=organization, login=login)
        return await self._store.list_invites(organization=organization, login=login)

    async def accept_invite(self, organization: str, invite_id: str, login: str) -> Membership:
        membership = await self._store.accept_invite(organization, invite_id, login)
        log.info("invite_accepted", organization=membership.organization, login=login)
        return membership

    async def cancel_invite(self, organization: str, invite_id: str) -> None:
        await self._store.cancel_invite(organization, invite_id)

    async def invite_link(self, secret: str) -> InviteLink:
        """What a still-good invitation link offers; NotFound or FailedPrecondition else."""
        secret = validate_link_secret(secret)
        return await self._users.invite_link(hash_token(secret), judge=check_invite_link)

    async def redeem_invite_link(self, secret: str, login: str, name: str) -> Joined:
        """The invited person becomes a user and a member, with a first access token."""
        secret = validate_link_secret(secret)
        link = await self._users.invite_link(hash_token(secret), judge=check_invite_link)
        new = validate_registration(NewUser(login=login, name=name, email=link.email))
        token = new_token()
        user, membership, token_id = await self._users.redeem_invite_link(
            hash_token(secret),
            new,
            (JOINED_TOKEN_NAME, hash_token(token)),
            judge=check_invite_link,
            check_login=_check_login,
        )
        log.info("invite_link_redeemed", organization=membership.organization, login=user.login)
        return Joined(user=user, membership=membership, token=IssuedToken(id=token_id, token=token))

    # --- site administration of users and own profiles --------------------------------

    async def _require_site_admin(self, caller_login: str) -> User:
        found = await self._users.find_user(caller_login) if caller_login else None
        return require_site_admin(found)

    async def register_user(
        self, caller_login: str, new: NewUser, *, issue_token: bool
    ) -> tuple[User, IssuedToken | None]:
        """A site admin creates a user, and optionally their first token (shown once)."""
        await self._require_site_admin(caller_login)
        new = validate_registration(replace(new, is_site_admin=False))
        token = new_token() if issue_token else ""
        user, token_id = await self._users.register_user(
            new,
            token=(FIRST_TOKEN_NAME, hash_token(token)) if issue_token else None,
            check_login=_check_login,
        )
        log.info("user_created", login=user.login, by=caller_login)
        return user, IssuedToken(id=token_id, token=token) if issue_token else None

    async def list_users(self, caller_login: str, query: UserQuery) -> UserPage:
        await self._require_site_admin(caller_login)
        return await self._users.list_users(validate_user_query(query))

    async def get_user(self, caller_login: str, login: str) -> User:
        await self._require_site_admin(caller_login)
        return await self._users.get_user(login)

    async def set_user_disabled(
        self, caller_login: str, login: str, *, is_disabled: bool, issue_token: bool = False
    ) -> tuple[User, IssuedToken | None]:
        """Disable a user (every token of theirs stops at once) or enable them again,
        optionally with a new token (shown once)."""
        await self._require_site_admin(caller_login)
        check_token_on_enable(is_disabled=is_disabled, issue_token=issue_token)
        token = new_token() if issue_token else ""
        user, token_id = await self._users.set_user_disabled(
            login,
            is_disabled=is_disabled,
            keep_site_admin=check_site_admins_remain,
            token=(ENABLED_TOKEN_NAME, hash_token(token)) if issue_token else None,
        )
        log.info("user_disabled" if is_disabled else "user_enabled", login=login, by=caller_login)
        return user, IssuedToken(id=token_id, token=token) if issue_token else None

    async def update_profile(self, caller_login: str, change: ProfileChange) -> User:
        """The caller's own name, email and avatar URL."""
        if not caller_login:
            raise Unauthenticated(UNAUTHORIZED)
        return await self._users.update_profile(caller_login, validate_profile(change))

    # --- teams ------------------------------------------------------------------------

    async def create_team(
        self,
        organization: str,
        name: str,
        display_name: str,
        description: str,
        creator_login: str,
    ) -> Team:
        """A new team; its creator (when a member of the organization) joins as team admin."""
        name = validate_name("team name", name)
        display_name = validate_text("display name", display_name, MAX_DISPLAY_NAME_LENGTH)
        description = validate_text("description", description, MAX_DESCRIPTION_LENGTH)
        return await self._teams.create_team(
            organization, name, display_name or name, description, creator_login
        )

    async def list_teams(self, organization: str) -> list[Team]:
        return await self._teams.list_teams(organization)

    async def get_team(self, organization: str, name: str) -> Team:
        return await self._teams.get_team(organization, name)

    async def update_team(self, organization: str, name: str, change: TeamChange) -> Team:
        """Apply one team change; any refusal leaves the team as it was."""
        return await self._teams.update_team(organization, name, change)

    async def delete_team(self, organization: str, name: str) -> None:
        await self._teams.delete_team(organization, name)

    async def list_member_teams(self, organization: str, login: str) -> list[Team]:
        return await self._teams.list_member_teams(organization, login)

    # --- stack grants -----------------------------------------------------------------

    async def set_team_stack_permission(
        self, organization: str, team: str, stack_id: str, permission: StackPermission
    ) -> StackGrantList:
        """Grant a team a permission on a stack (NONE takes it away); the stack's grants."""
        require_stack_id(stack_id)
        await self._teams.set_team_stack_permission(organization, team, stack_id, permission)
        return await self._teams.list_stack_grants(organization, stack_id, "")

    async def set_user_stack_permission(
        self, organization: str, login: str, stack_id: str, permission: StackPermission
    ) -> StackGrantList:
        """Grant a member a permission on a stack (NONE takes it away); the stack's grants."""
        require_stack_id(stack_id)
        await self._teams.set_user_stack_permission(organization, login, stack_id, permission)
        return await self._teams.list_stack_grants(organization, stack_id, "")

    async def list_stack_grants(
        self, organization: str, stack_id: str, viewer_login: str
    ) -> StackGrantList:
        require_stack_id(stack_id)
        return await self._teams.list_stack_grants(organization, stack_id, viewer_login)

    async def member_stack_permissions(
        self, organization: str, login: str, stack: StackRef
    ) -> MemberStackPermissions:
        """Why a member holds the permission they hold on one stack."""
        require_stack_id(stack.stack_id)
        found = await self._teams.member_stack_grants(organization, login, stack.stack_id)
        return member_stack_permissions(found, is_owner=is_stack_owner(stack.owner_login, login))

    async def purge_stack_grants(self, stack_id: str) -> None:
        require_stack_id(stack_id)
        await self._teams.purge_stack_grants(stack_id)

    # --- access tokens ----------------------------------------------------------------

    async def create_access_token(
        self,
        scope: TokenScope,
        *,
        name: str,
        description: str,
        created_by: str,
        expires_at_unix: int,
        is_admin: bool,
    ) -> IssuedToken:
        """A new token in its scope; the value is returned once and only its hash kept."""
        check_new_token(scope, name, is_admin=is_admin)
        expires_at = expiry_from_unix(expires_at_unix, self._now())
        token = new_token()
        token_id = await self._store.issue_token(
            NewToken(
                scope=scope,
                name=name,
                description=description,
                token_hash=hash_token(token),
                created_by=created_by,
                expires_at=expires_at,
                is_admin=is_admin,
            )
        )
        log.info("access_token_created", kind=scope.kind.value, token_id=token_id)
        return IssuedToken(id=token_id, token=token)

    async def list_access_tokens(
        self, scope: TokenScope, *, include_revoked: bool
    ) -> list[AccessToken]:
        return await self._store.list_tokens(scope, include_revoked=include_revoked)

    async def revoke_access_token(self, scope: TokenScope, token_id: str) -> AccessToken:
        revoked = await self._store.revoke_token(scope, token_id)
        log.info("access_token_revoked", token_id=token_id)
        return revoked

    async def rotate_access_token(self, scope: TokenScope, token_id: str) -> IssuedToken:
        token = new_token()
        await self._store.rotate_token(scope, token_id, hash_token(token))
        log.info("access_token_rotated", token_id=token_id)
        return IssuedToken(id=token_id, token=token)
