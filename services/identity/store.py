"""The only code issuing SQL for the identity tables; returns frozen records, never rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from services.common.clock import Clock
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from services.identity.domain import (
    ALREADY_BOOTSTRAPPED,
    DEFAULT_STACK_PERMISSION,
    UNAUTHORIZED,
    AccessToken,
    Invite,
    Member,
    MemberAction,
    Membership,
    MemberStackPermissions,
    NewToken,
    NewUser,
    Organization,
    OrganizationDetails,
    Principal,
    Role,
    StackGrant,
    StackGrants,
    StackPermission,
    Team,
    TeamChange,
    TeamMember,
    TeamRole,
    TeamStackGrant,
    TokenInfo,
    TokenKind,
    TokenScope,
    User,
    UserStackGrant,
    check_admins_remain,
    effective_stack_permission,
    invite_not_found,
    is_last_use_stale,
    is_token_usable,
    make_principal,
    organization_not_found,
    shown,
    team_not_found,
    token_not_found,
    token_role,
    user_not_found,
)
from services.identity.models import (
    AccessTokenRow,
    BootstrapRow,
    InviteRow,
    MembershipRow,
    OrganizationRow,
    TeamMemberRow,
    TeamRow,
    TeamStackGrantRow,
    UserRow,
    UserStackGrantRow,
)

# Concurrent upserts of one membership: the loser of the insert race retries as an update.
_UPSERT_ATTEMPTS = 3


def user_exists(login: str) -> AlreadyExists:
    return AlreadyExists(f"Conflict: user '{shown(login)}' already exists")


def organization_exists(name: str) -> AlreadyExists:
    return AlreadyExists(f"Conflict: organization '{shown(name)}' already exists")


def team_exists(name: str) -> AlreadyExists:
    return AlreadyExists(f"Conflict: team '{shown(name)}' already exists")


def not_a_member(login: str, organization: str) -> NotFound:
    return NotFound(
        f"Not Found: user '{shown(login)}' is not a member of organization '{shown(organization)}'"
    )


def _new_id() -> str:
    return uuid.uuid4().hex


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; everything is stored in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _optional_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        login=row.login,
        name=row.name,
        email=row.email,
        is_site_admin=row.is_site_admin,
        created_at=_aware(row.created_at),
    )


def _organization(row: OrganizationRow) -> Organization:
    return Organization(id=row.id, name=row.name, created_at=_aware(row.created_at))


class IdentityStore:
    """Users, organizations, memberships and tokens; one session and transaction per call."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def has_users(self) -> bool:
        async with self._sessions.begin() as session:
            return await _any_user(session)

    async def bootstrap(
        self, admin: NewUser, organization: str, token_name: str, token_hash: str
    ) -> tuple[User, Organization]:
        """Create the first admin, their organization and a token; only on an empty user table.

        The singleton bootstrap row decides races: of concurrent callers (API requests or
        replicas seeding the admin token) exactly one inserts it, the rest get
        FailedPrecondition.
        """
        now = self._now()
        try:
            async with self._sessions.begin() as session:
                if await _any_user(session):
                    raise FailedPrecondition(ALREADY_BOOTSTRAPPED)
                session.add(BootstrapRow(id=1, created_at=now))
                await session.flush()
                user = _user_row(admin, now)
                session.add(user)
                await session.flush()
                org = await _insert_organization(session, organization, user.id, now)
                session.add(_token_row(user.id, token_name, token_hash, now, None))
        except IntegrityError:
            raise FailedPrecondition(ALREADY_BOOTSTRAPPED) from None
        return _user(user), _organization(org)

    async def authenticate(self, token_hash: str) -> Principal:
        """The principal behind a token hash; Unauthenticated for unknown or dead tokens."""
        now = self._now()
        async with self._sessions.begin() as session:
            token = await session.scalar(
                select(AccessTokenRow).where(AccessTokenRow.token_hash == token_hash)
            )
            if token is None:
                raise Unauthenticated(UNAUTHORIZED)
            if not is_token_usable(
                now=now,
                revoked_at=_optional_aware(token.revoked_at),
                expires_at=_optional_aware(token.expires_at),
            ):
                raise Unauthenticated(UNAUTHORIZED)
            if is_last_use_stale(_optional_aware(token.last_used_at), now):
                await session.execute(
                    update(AccessTokenRow)
                    .where(AccessTokenRow.id == token.id)
                    .values(last_used_at=now)
                )
            return await _token_principal(session, token)

    async def token_principal(self, token_id: str) -> Principal:
        """The principal behind a usable token, by its id; Unauthenticated otherwise."""
        now = self._now()
        async with self._sessions.begin() as session:
            token = await session.get(AccessTokenRow, token_id) if token_id else None
            if token is None or not is_token_usable(
                now=now,
                revoked_at=_optional_aware(token.revoked_at),
                expires_at=_optional_aware(token.expires_at),
            ):
                raise Unauthenticated(UNAUTHORIZED)
            return await _token_principal(session, token)

    async def has_user(self, login: str) -> bool:
        async with self._sessions.begin() as session:
            return await _user_id(session, login) is not None

    async def has_organizations(self) -> bool:
        async with self._sessions.begin() as session:
            return await session.scalar(select(OrganizationRow.id).limit(1)) is not None

    async def stack_grants(
        self, principal: Principal, organization: str, stack_id: str, owner_login: str
    ) -> StackGrants:
        """What decides the caller's permission on one stack of an organization."""
        grants = await self.stack_grants_in(principal, organization, [(stack_id, owner_login)])
        return grants[stack_id]

    async def stack_grants_in(
        self, principal: Principal, organization: str, stacks: Sequence[tuple[str, str]]
    ) -> dict[str, StackGrants]:
        """`stack_grants` for many stacks of one organization, as (stack id, owner login)."""
        stack_ids = [stack_id for stack_id, _ in stacks]
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            token = principal.token_info
            team_ids: list[str] = []
            if token.kind is TokenKind.TEAM:
                team_id = await session.scalar(
                    select(TeamRow.id).where(
                        TeamRow.organization_id == org.id, TeamRow.name == token.team
                    )
                )
                team_ids = [] if team_id is None else [team_id]
            elif token.kind is TokenKind.PERSONAL:
                team_ids = await _user_team_ids(session, org.id, principal)
            teams: dict[str, list[StackPermission]] = {}
            if team_ids and stack_ids:
                rows = await session.execute(
                    select(TeamStackGrantRow.stack_id, TeamStackGrantRow.permission).where(
                        TeamStackGrantRow.stack_id.in_(stack_ids),
                        TeamStackGrantRow.team_id.in_(team_ids),
                    )
                )
                for stack_id, permission in rows:
                    teams.setdefault(stack_id, []).append(StackPermission(permission))
            explicit: dict[str, StackPermission] = {}
            if token.kind is TokenKind.PERSONAL and stack_ids:
                rows = await session.execute(
                    select(UserStackGrantRow.stack_id, UserStackGrantRow.permission).where(
                        UserStackGrantRow.stack_id.in_(stack_ids),
                        UserStackGrantRow.user_id == principal.user.id,
                    )
                )
                explicit = {stack_id: StackPermission(value) for stack_id, value in rows}
            default = StackPermission(org.default_stack_permission)
            return {
                stack_id: StackGrants(
                    organization_default=default,
                    team_permissions=tuple(teams.get(stack_id, ())),
                    explicit=explicit.get(stack_id, StackPermission.NONE),
                    is_owner=bool(owner_login) and owner_login == principal.user.login,
                )
                for stack_id, owner_login in stacks
            }

    async def create_organization_if_missing(self, name: str, admin_id: str) -> bool:
        """Create an organization with one admin; False when it already exists or a
        concurrent caller created it first."""
        now = self._now()
        try:
            async with self._sessions.begin() as session:
                if await _organization_id(session, name) is not None:
                    return False
                await _insert_organization(session, name, admin_id, now)
        except (IntegrityError, AlreadyExists):
            return False
        return True

    async def create_user(self, new: NewUser, *, with_personal_organization: bool) -> User:
        """A new user, and optionally an organization named after them with them as admin."""
        now = self._now()
        async with self._sessions.begin() as session:
            if await _user_id(session, new.login) is not None:
                raise user_exists(new.login)
            if (
                with_personal_organization
                and await _organization_id(session, new.login) is not None
            ):
                raise organization_exists(new.login)
            row = _user_row(new, now)
            session.add(row)
            await _flush_or(session, user_exists(new.login))
            if with_personal_organization:
                await _insert_organization(session, new.login, row.id, now)
        return _user(row)

    async def create_organization(self, name: str, admin_login: str) -> Organization:
        now = self._now()
        async with self._sessions.begin() as session:
            admin_id = await _user_id(session, admin_login)
            if admin_id is None:
                raise user_not_found(admin_login)
            if await _organization_id(session, name) is not None:
                raise organization_exists(name)
            row = await _insert_organization(session, name, admin_id, now)
        return _organization(row)

    async def set_membership(self, organization: str, login: str, role: Role) -> Membership:
        """Add a user to an organization or change their role there."""
        now = self._now()
        for attempt in range(_UPSERT_ATTEMPTS):
            try:
                async with self._sessions.begin() as session:
                    org_id = await _organization_id(session, organization)
                    if org_id is None:
                        raise organization_not_found(organization)
                    user_id = await _user_id(session, login)
                    if user_id is None:
                        raise user_not_found(login)
                    await _lock_organization(session, org_id)
                    row = await session.get(MembershipRow, (org_id, user_id))
                    if row is None:
                        session.add(
                            MembershipRow(
                                organization_id=org_id,
                                user_id=user_id,
                                role=role.label,
                                created_at=now,
                            )
                        )
                    else:
                        await _change_role(session, row, role)
                break
            except IntegrityError:
                if attempt + 1 == _UPSERT_ATTEMPTS:
                    raise
        return Membership(organization=organization, user_login=login, role=role)

    async def list_members(self, organization: str) -> list[Member]:
        """Members of an organization by login, with their roles and teams; NotFound for no
        such org."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            rows = await session.execute(
                select(UserRow, MembershipRow)
                .join(MembershipRow, MembershipRow.user_id == UserRow.id)
                .where(MembershipRow.organization_id == org.id)
                .order_by(UserRow.login)
            )
            team_rows = await session.execute(
                select(TeamMemberRow.user_id, TeamRow.name)
                .join(TeamRow, TeamRow.id == TeamMemberRow.team_id)
                .where(TeamRow.organization_id == org.id)
                .order_by(TeamRow.name)
            )
            teams: dict[str, list[str]] = {}
            for user_id, team in team_rows:
                teams.setdefault(user_id, []).append(team)
            return [
                Member(
                    user=_user(user),
                    role=Role.from_label(membership.role),
                    joined_at=_aware(membership.created_at or org.created_at),
                    teams=tuple(teams.get(user.id, ())),
                )
                for user, membership in rows
            ]

    # --- organizations and members ------------------------------------------------------

    async def get_organization(self, organization: str) -> OrganizationDetails:
        async with self._sessions.begin() as session:
            return await _details(session, await _organization_row(session, organization))

    async def update_organization(
        self, organization: str, default_stack_permission: StackPermission | None
    ) -> OrganizationDetails:
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            if default_stack_permission is not None:
                org.default_stack_permission = int(default_stack_permission)
            await session.flush()
            return await _details(session, org)

    async def add_member(self, organization: str, login: str, role: Role) -> Member:
        """Add a registered user; 409 when they already belong to the organization."""
        now = self._now()
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user = await _user_row_by_login(session, login)
            if await session.get(MembershipRow, (org.id, user.id)) is not None:
                raise AlreadyExists(
                    f"Conflict: user '{shown(login)}' is already a member of organization "
                    f"'{shown(organization)}'"
                )
            session.add(
                MembershipRow(
                    organization_id=org.id, user_id=user.id, role=role.label, created_at=now
                )
            )
            await _flush_or(session, AlreadyExists(f"Conflict: '{shown(login)}' was just added"))
            # A standing invitation is fulfilled by being added.
            await session.execute(
                delete(InviteRow).where(
                    InviteRow.organization_id == org.id, InviteRow.user_id == user.id
                )
            )
        return Member(user=_user(user), role=role, joined_at=now)

    async def update_member(self, organization: str, login: str, role: Role) -> Member:
        """Change a member's role; the last admin cannot be demoted (409)."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user = await _user_row_by_login(session, login)
            await _lock_organization(session, org.id)
            row = await session.get(MembershipRow, (org.id, user.id))
            if row is None:
                raise not_a_member(login, organization)
            await _change_role(session, row, role)
            return Member(
                user=_user(user), role=role, joined_at=_aware(row.created_at or org.created_at)
            )

    async def remove_member(self, organization: str, login: str) -> None:
        """Remove a member with their team places and grants; never the last admin (409)."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user = await _user_row_by_login(session, login)
            await _lock_organization(session, org.id)
            row = await session.get(MembershipRow, (org.id, user.id))
            if row is None:
                raise not_a_member(login, organization)
            check_admins_remain(
                Role.from_label(row.role), None, await _admin_count(session, org.id)
            )
            await session.delete(row)
            team_ids = select(TeamRow.id).where(TeamRow.organization_id == org.id)
            await session.execute(
                delete(TeamMemberRow).where(
                    TeamMemberRow.user_id == user.id, TeamMemberRow.team_id.in_(team_ids)
                )
            )
            await session.execute(
                delete(UserStackGrantRow).where(
                    UserStackGrantRow.user_id == user.id,
                    UserStackGrantRow.organization_id == org.id,
                )
            )

    # --- invitations ------------------------------------------------------------------

    async def create_invites(
        self, organization: str, targets: list[tuple[str, Role]], invited_by: str
    ) -> list[Invite]:
        """Invite registered users (by login or email); all of them or none."""
        now = self._now()
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            invites: list[Invite] = []
            seen: set[str] = set()
            for recipient, role in targets:
                user = await _recipient(session, recipient)
                if user.id in seen:
                    raise InvalidArgument(
                        f"Bad Request: '{shown(recipient)}' is invited more than once"
                    )
                seen.add(user.id)
                if await session.get(MembershipRow, (org.id, user.id)) is not None:
                    raise AlreadyExists(
                        f"Conflict: user '{shown(user.login)}' is already a member of "
                        f"organization '{shown(organization)}'"
                    )
                pending = await session.scalar(
                    select(InviteRow.id).where(
                        InviteRow.organization_id == org.id, InviteRow.user_id == user.id
                    )
                )
                if pending is not None:
                    raise AlreadyExists(
                        f"Conflict: user '{shown(user.login)}' already has a pending invitation"
                    )
                row = InviteRow(
                    id=_new_id(),
                    organization_id=org.id,
                    user_id=user.id,
                    role=role.label,
                    invited_by=invited_by,
                    created_at=now,
                )
                session.add(row)
                invites.append(_invite(row, org.name, user))
            return invites

    async def list_invites(self, *, organization: str = "", login: str = "") -> list[Invite]:
        """Pending invitations of an organization, or addressed to one user."""
        async with self._sessions.begin() as session:
            query = (
                select(InviteRow, OrganizationRow.name, UserRow)
                .join(OrganizationRow, OrganizationRow.id == InviteRow.organization_id)
                .join(UserRow, UserRow.id == InviteRow.user_id)
                .order_by(InviteRow.created_at, UserRow.login)
            )
            if organization:
                org = await _organization_row(session, organization)
                query = query.where(InviteRow.organization_id == org.id)
            else:
                user = await _user_row_by_login(session, login)
                query = query.where(InviteRow.user_id == user.id)
            rows = await session.execute(query)
            return [_invite(row, org_name, user) for row, org_name, user in rows]

    async def accept_invite(self, organization: str, invite_id: str, login: str) -> Membership:
        """The invitee joins with the invited role; anyone else gets NotFound."""
        now = self._now()
        async with self._sessions.begin() as session:
            user = await _user_row_by_login(session, login)
            row = await session.get(InviteRow, invite_id)
            org = None if row is None else await session.get(OrganizationRow, row.organization_id)
            # One answer whether or not the organization exists: invitations are no oracle.
            if row is None or org is None or org.name != organization or row.user_id != user.id:
                raise invite_not_found(invite_id)
            role = Role.from_label(row.role)
            await session.delete(row)
            if await session.get(MembershipRow, (org.id, user.id)) is None:
                session.add(
                    MembershipRow(
                        organization_id=org.id, user_id=user.id, role=role.label, created_at=now
                    )
                )
                await _flush_or(session, AlreadyExists("Conflict: the invitation was just used"))
        return Membership(organization=org.name, user_login=user.login, role=role)

    async def cancel_invite(self, organization: str, invite_id: str) -> None:
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            result = await session.execute(
                delete(InviteRow).where(
                    InviteRow.id == invite_id, InviteRow.organization_id == org.id
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise invite_not_found(invite_id)

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
        now = self._now()
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            if await _team_row(session, org.id, name) is not None:
                raise team_exists(name)
            row = TeamRow(
                id=_new_id(),
                organization_id=org.id,
                name=name,
                display_name=display_name or name,
                description=description,
                created_at=now,
            )
            session.add(row)
            await _flush_or(session, team_exists(name))
            creator = await _user_id(session, creator_login) if creator_login else None
            is_member = (
                creator is not None
                and await session.get(MembershipRow, (org.id, creator)) is not None
            )
            if creator is not None and is_member:
                session.add(
                    TeamMemberRow(team_id=row.id, user_id=creator, role=TeamRole.ADMIN.value)
                )
                await session.flush()
            return await _team(session, row, org.name)

    async def list_teams(self, organization: str) -> list[Team]:
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            rows = await session.scalars(
                select(TeamRow).where(TeamRow.organization_id == org.id).order_by(TeamRow.name)
            )
            return [await _team(session, row, org.name) for row in rows.all()]

    async def get_team(self, organization: str, name: str) -> Team:
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            return await _team(session, await _existing_team(session, org.id, name), org.name)

    async def update_team(self, organization: str, name: str, change: TeamChange) -> Team:
        """Apply one team change; any refusal leaves the team as it was."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            row = await _existing_team(session, org.id, name)
            if change.display_name is not None:
                row.display_name = change.display_name
            if change.description is not None:
                row.description = change.description
            if change.member_action is not None:
                await _change_team_member(session, org.id, organization, row, change)
            if change.set_stack is not None:
                await _set_team_grant(session, row.id, change.set_stack)
            if change.remove_stack_id:
                removed = await session.execute(
                    delete(TeamStackGrantRow).where(
                        TeamStackGrantRow.team_id == row.id,
                        TeamStackGrantRow.stack_id == change.remove_stack_id,
                    )
                )
                if not removed.rowcount:  # type: ignore[attr-defined]
                    raise NotFound(
                        f"Not Found: team '{shown(name)}' has no permission on that stack"
                    )
            await session.flush()
            return await _team(session, row, org.name)

    async def delete_team(self, organization: str, name: str) -> None:
        """Delete a team with its members, grants and tokens."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            row = await _existing_team(session, org.id, name)
            # Explicit deletes: SQLite only cascades with foreign keys on, which tests may vary.
            await session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == row.id))
            await session.execute(
                delete(TeamStackGrantRow).where(TeamStackGrantRow.team_id == row.id)
            )
            await session.execute(delete(AccessTokenRow).where(AccessTokenRow.team_id == row.id))
            await session.delete(row)

    async def list_member_teams(self, organization: str, login: str) -> list[Team]:
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user = await _user_row_by_login(session, login)
            rows = await session.scalars(
                select(TeamRow)
                .join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
                .where(TeamRow.organization_id == org.id, TeamMemberRow.user_id == user.id)
                .order_by(TeamRow.name)
            )
            return [await _team(session, row, org.name) for row in rows.all()]

    # --- stack grants -----------------------------------------------------------------

    async def set_team_stack_permission(
        self, organization: str, team: str, stack_id: str, permission: StackPermission
    ) -> None:
        """Grant a team a permission on a stack; NONE takes it away."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            row = await _existing_team(session, org.id, team)
            await _set_team_grant(session, row.id, StackGrant(stack_id, permission))

    async def set_user_stack_permission(
        self, organization: str, login: str, stack_id: str, permission: StackPermission
    ) -> None:
        """Grant a member a permission on a stack; NONE takes it away (NotFound if none)."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user = await _user_row_by_login(session, login)
            if await session.get(MembershipRow, (org.id, user.id)) is None:
                raise not_a_member(login, organization)
            row = await session.get(UserStackGrantRow, (stack_id, user.id))
            if permission is StackPermission.NONE:
                if row is None:
                    raise NotFound(
                        f"Not Found: user '{shown(login)}' has no permission on that stack"
                    )
                await session.delete(row)
            elif row is None:
                session.add(
                    UserStackGrantRow(
                        stack_id=stack_id,
                        user_id=user.id,
                        organization_id=org.id,
                        permission=int(permission),
                    )
                )
            else:
                row.permission = int(permission)

    async def list_stack_grants(
        self, organization: str, stack_id: str, viewer_login: str
    ) -> tuple[list[TeamStackGrant], list[UserStackGrant]]:
        """The teams and users holding a grant on one stack."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            viewer = await _user_id(session, viewer_login) if viewer_login else None
            teams = await _stack_team_grants(session, org, stack_id, viewer)
            rows = await session.execute(
                select(UserRow, UserStackGrantRow.permission)
                .join(UserStackGrantRow, UserStackGrantRow.user_id == UserRow.id)
                .where(
                    UserStackGrantRow.stack_id == stack_id,
                    UserStackGrantRow.organization_id == org.id,
                )
                .order_by(UserRow.login)
            )
            users = [
                UserStackGrant(user=_user(user), permission=StackPermission(permission))
                for user, permission in rows
            ]
            return teams, users

    async def member_stack_permissions(
        self, organization: str, login: str, stack_id: str, owner_login: str
    ) -> MemberStackPermissions:
        """Why a member holds the permission they hold on one stack."""
        async with self._sessions.begin() as session:
            org = await _organization_row(session, organization)
            user_row = await _user_row_by_login(session, login)
            membership = await session.get(MembershipRow, (org.id, user_row.id))
            if membership is None:
                raise not_a_member(login, organization)
            role = Role.from_label(membership.role)
            teams = [
                grant
                for grant in await _stack_team_grants(session, org, stack_id, user_row.id)
                if grant.is_member
            ]
            explicit = await _explicit_grant(session, stack_id, user_row.id)
            default = StackPermission(org.default_stack_permission)
            effective = effective_stack_permission(
                TokenInfo(name=""),
                role,
                StackGrants(
                    organization_default=default,
                    team_permissions=tuple(t.permission for t in teams),
                    explicit=explicit,
                    is_owner=bool(owner_login) and owner_login == login,
                ),
            )
            return MemberStackPermissions(
                user=_user(user_row),
                role=role,
                organization_default=default,
                teams=tuple(teams),
                explicit=explicit,
                effective=effective,
            )

    async def purge_stack_grants(self, stack_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(TeamStackGrantRow).where(TeamStackGrantRow.stack_id == stack_id)
            )
            await session.execute(
                delete(UserStackGrantRow).where(UserStackGrantRow.stack_id == stack_id)
            )

    # --- access tokens ----------------------------------------------------------------

    async def issue_token(self, new: NewToken) -> str:
        """Store a new token's hash in its scope; returns the token id."""
        now = self._now()
        async with self._sessions.begin() as session:
            owner = await _scope_owner(session, new.scope)
            row = AccessTokenRow(
                id=_new_id(),
                user_id=owner.user_id,
                kind=new.scope.kind.value,
                organization_id=owner.organization_id,
                team_id=owner.team_id,
                name=new.name,
                description=new.description,
                created_by=new.created_by,
                is_admin=new.is_admin,
                token_hash=new.token_hash,
                created_at=now,
                last_used_at=None,
                expires_at=new.expires_at,
                revoked_at=None,
                rotated_at=None,
            )
            session.add(row)
        return row.id

    async def list_tokens(self, scope: TokenScope, *, include_revoked: bool) -> list[AccessToken]:
        async with self._sessions.begin() as session:
            owner = await _scope_owner(session, scope)
            query = (
                select(AccessTokenRow)
                .where(*owner.conditions())
                .order_by(AccessTokenRow.created_at, AccessTokenRow.id)
            )
            if not include_revoked:
                query = query.where(AccessTokenRow.revoked_at.is_(None))
            rows = await session.scalars(query)
            return [_access_token(row) for row in rows.all()]

    async def revoke_token(self, scope: TokenScope, token_id: str) -> AccessToken:
        """Mark a live token of the scope revoked (kept as history); NotFound otherwise."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await _live_token(session, scope, token_id)
            row.revoked_at = now
            return _access_token(row)

    async def rotate_token(self, scope: TokenScope, token_id: str, token_hash: str) -> None:
        """Replace a live token's secret; the old secret stops working at once."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await _live_token(session, scope, token_id)
            row.token_hash = token_hash
            row.rotated_at = now

    async def create_access_token(
        self, login: str, name: str, token_hash: str, *, expires_at: datetime | None = None
    ) -> str:
        """Store a token's hash for a user; returns the token id."""
        now = self._now()
        async with self._sessions.begin() as session:
            user_id = await _user_id(session, login)
            if user_id is None:
                raise user_not_found(login)
            row = _token_row(user_id, name, token_hash, now, expires_at)
            session.add(row)
        return row.id

    async def revoke_access_token(self, token_id: str) -> bool:
        """Mark a token revoked; False when there is no such live token."""
        now = self._now()
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(AccessTokenRow)
                .where(AccessTokenRow.id == token_id, AccessTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def has_token_hash(self, token_hash: str) -> bool:
        async with self._sessions.begin() as session:
            found = await session.scalar(
                select(AccessTokenRow.id).where(AccessTokenRow.token_hash == token_hash)
            )
            return found is not None


async def _any_user(session: AsyncSession) -> bool:
    return await session.scalar(select(UserRow.id).limit(1)) is not None


async def _user_id(session: AsyncSession, login: str) -> str | None:
    return await session.scalar(select(UserRow.id).where(UserRow.login == login))


async def _organization_id(session: AsyncSession, name: str) -> str | None:
    return await session.scalar(select(OrganizationRow.id).where(OrganizationRow.name == name))


async def _memberships(session: AsyncSession, user: User) -> list[Membership]:
    rows = await session.execute(
        select(OrganizationRow.name, MembershipRow.role)
        .join(OrganizationRow, OrganizationRow.id == MembershipRow.organization_id)
        .where(MembershipRow.user_id == user.id)
    )
    return [
        Membership(organization=name, user_login=user.login, role=Role.from_label(role))
        for name, role in rows
    ]


async def _flush_or(session: AsyncSession, error: AlreadyExists) -> None:
    """Flush pending inserts; a unique-constraint violation (a lost race) becomes `error`."""
    try:
        await session.flush()
    except IntegrityError:
        raise error from None


async def _insert_organization(
    session: AsyncSession, name: str, admin_id: str, now: datetime
) -> OrganizationRow:
    row = OrganizationRow(
        id=_new_id(),
        name=name,
        created_at=now,
        default_stack_permission=int(DEFAULT_STACK_PERMISSION),
    )
    session.add(row)
    await _flush_or(session, organization_exists(name))
    session.add(
        MembershipRow(
            organization_id=row.id, user_id=admin_id, role=Role.ADMIN.label, created_at=now
        )
    )
    await session.flush()
    return row


def _user_row(new: NewUser, now: datetime) -> UserRow:
    return UserRow(
        id=_new_id(),
        login=new.login,
        name=new.name,
        email=new.email,
        is_site_admin=new.is_site_admin,
        created_at=now,
    )


def _token_row(
    user_id: str, name: str, token_hash: str, now: datetime, expires_at: datetime | None
) -> AccessTokenRow:
    return AccessTokenRow(
        id=_new_id(),
        user_id=user_id,
        name=name,
        token_hash=token_hash,
        created_at=now,
        last_used_at=None,
        expires_at=expires_at,
        revoked_at=None,
    )


async def _token_principal(session: AsyncSession, token: AccessTokenRow) -> Principal:
    """Who a usable token acts as: its user, or its organization or team."""
    kind = TokenKind(token.kind)
    if kind is TokenKind.PERSONAL:
        user_row = await session.get(UserRow, token.user_id)
        if user_row is None:
            raise Unauthenticated(UNAUTHORIZED)
        user = _user(user_row)
        info = TokenInfo(name=token.name, id=token.id)
        return make_principal(user, await _memberships(session, user), info)
    org = await session.get(OrganizationRow, token.organization_id)
    if org is None:
        raise Unauthenticated(UNAUTHORIZED)
    team_name = ""
    if kind is TokenKind.TEAM:
        team = await session.get(TeamRow, token.team_id)
        if team is None:
            raise Unauthenticated(UNAUTHORIZED)
        team_name = team.name
    info = TokenInfo(
        name=token.name,
        organization=org.name,
        team=team_name,
        id=token.id,
        kind=kind,
        is_admin=token.is_admin,
    )
    # Machine tokens are shown as the organization or team they act for, as Pulumi does.
    login = team_name or org.name
    actor = User(
        id="",
        login=login,
        name=login,
        email="",
        is_site_admin=False,
        created_at=_aware(org.created_at),
    )
    membership = Membership(organization=org.name, user_login=login, role=token_role(info))
    return make_principal(actor, [membership], info)


async def _organization_row(session: AsyncSession, name: str) -> OrganizationRow:
    row = await session.scalar(select(OrganizationRow).where(OrganizationRow.name == name))
    if row is None:
        raise organization_not_found(name)
    return row


async def _user_row_by_login(session: AsyncSession, login: str) -> UserRow:
    row = await session.scalar(select(UserRow).where(UserRow.login == login))
    if row is None:
        raise user_not_found(login)
    return row


async def _recipient(session: AsyncSession, recipient: str) -> UserRow:
    """The registered user an invitation names, by login or else by email."""
    row = await session.scalar(select(UserRow).where(UserRow.login == recipient))
    if row is None and "@" in recipient:
        found = (
            await session.scalars(select(UserRow).where(UserRow.email == recipient).limit(2))
        ).all()
        row = found[0] if len(found) == 1 else None
    if row is None:
        raise NotFound(
            f"Not Found: no registered user '{shown(recipient)}' (invite by login or email)"
        )
    return row


async def _lock_organization(session: AsyncSession, org_id: str) -> None:
    """Serialise role changes in one organization, so two demotions cannot both pass the
    last-admin check (a row lock on PostgreSQL, the write lock on SQLite)."""
    await session.execute(
        update(OrganizationRow)
        .where(OrganizationRow.id == org_id)
        .values(name=OrganizationRow.name)
    )


async def _admin_count(session: AsyncSession, org_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(MembershipRow)
        .where(MembershipRow.organization_id == org_id, MembershipRow.role == Role.ADMIN.label)
    )
    return int(count or 0)


async def _change_role(session: AsyncSession, row: MembershipRow, role: Role) -> None:
    check_admins_remain(
        Role.from_label(row.role), role, await _admin_count(session, row.organization_id)
    )
    row.role = role.label


async def _details(session: AsyncSession, org: OrganizationRow) -> OrganizationDetails:
    members = await session.scalar(
        select(func.count())
        .select_from(MembershipRow)
        .where(MembershipRow.organization_id == org.id)
    )
    return OrganizationDetails(
        organization=_organization(org),
        default_stack_permission=StackPermission(org.default_stack_permission),
        member_count=int(members or 0),
    )


def _invite(row: InviteRow, organization: str, user: UserRow) -> Invite:
    return Invite(
        id=row.id,
        organization=organization,
        user=_user(user),
        role=Role.from_label(row.role),
        invited_by=row.invited_by,
        created_at=_aware(row.created_at),
    )


async def _team_row(session: AsyncSession, org_id: str, name: str) -> TeamRow | None:
    return await session.scalar(
        select(TeamRow).where(TeamRow.organization_id == org_id, TeamRow.name == name)
    )


async def _existing_team(session: AsyncSession, org_id: str, name: str) -> TeamRow:
    row = await _team_row(session, org_id, name)
    if row is None:
        raise team_not_found(name)
    return row


async def _team(session: AsyncSession, row: TeamRow, organization: str) -> Team:
    members = await session.execute(
        select(UserRow, TeamMemberRow.role)
        .join(TeamMemberRow, TeamMemberRow.user_id == UserRow.id)
        .where(TeamMemberRow.team_id == row.id)
        .order_by(UserRow.login)
    )
    grants = await session.execute(
        select(TeamStackGrantRow.stack_id, TeamStackGrantRow.permission)
        .where(TeamStackGrantRow.team_id == row.id)
        .order_by(TeamStackGrantRow.stack_id)
    )
    return Team(
        id=row.id,
        organization=organization,
        name=row.name,
        display_name=row.display_name,
        description=row.description,
        created_at=_aware(row.created_at),
        members=tuple(TeamMember(user=_user(user), role=TeamRole(role)) for user, role in members),
        stacks=tuple(
            StackGrant(stack_id=stack_id, permission=StackPermission(permission))
            for stack_id, permission in grants
        ),
    )


async def _change_team_member(
    session: AsyncSession, org_id: str, organization: str, team: TeamRow, change: TeamChange
) -> None:
    user = await _user_row_by_login(session, change.member_login)
    row = await session.get(TeamMemberRow, (team.id, user.id))
    if change.member_action is MemberAction.ADD:
        if await session.get(MembershipRow, (org_id, user.id)) is None:
            raise not_a_member(change.member_login, organization)
        if row is None:
            session.add(TeamMemberRow(team_id=team.id, user_id=user.id, role="member"))
        return
    if row is None:
        raise NotFound(
            f"Not Found: user '{shown(change.member_login)}' is not in team '{shown(team.name)}'"
        )
    if change.member_action is MemberAction.REMOVE:
        await session.delete(row)
    elif change.member_action is MemberAction.PROMOTE:
        row.role = TeamRole.ADMIN.value
    else:
        row.role = TeamRole.MEMBER.value


async def _set_team_grant(session: AsyncSession, team_id: str, grant: StackGrant) -> None:
    row = await session.get(TeamStackGrantRow, (team_id, grant.stack_id))
    if grant.permission is StackPermission.NONE:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(
            TeamStackGrantRow(
                team_id=team_id, stack_id=grant.stack_id, permission=int(grant.permission)
            )
        )
    else:
        row.permission = int(grant.permission)


async def _stack_team_grants(
    session: AsyncSession, org: OrganizationRow, stack_id: str, member_id: str | None
) -> list[TeamStackGrant]:
    rows = (
        await session.execute(
            select(TeamRow, TeamStackGrantRow.permission)
            .join(TeamStackGrantRow, TeamStackGrantRow.team_id == TeamRow.id)
            .where(TeamRow.organization_id == org.id, TeamStackGrantRow.stack_id == stack_id)
            .order_by(TeamRow.name)
        )
    ).all()
    member_of: set[str] = set()
    if member_id is not None:
        member_of = set(
            (
                await session.scalars(
                    select(TeamMemberRow.team_id).where(TeamMemberRow.user_id == member_id)
                )
            ).all()
        )
    return [
        TeamStackGrant(
            team=await _team(session, team, org.name),
            permission=StackPermission(permission),
            is_member=team.id in member_of,
        )
        for team, permission in rows
    ]


async def _user_team_ids(session: AsyncSession, org_id: str, principal: Principal) -> list[str]:
    rows = await session.scalars(
        select(TeamMemberRow.team_id)
        .join(TeamRow, TeamRow.id == TeamMemberRow.team_id)
        .where(TeamRow.organization_id == org_id, TeamMemberRow.user_id == principal.user.id)
    )
    return list(rows.all())


async def _explicit_grant(session: AsyncSession, stack_id: str, user_id: str) -> StackPermission:
    value = await session.scalar(
        select(UserStackGrantRow.permission).where(
            UserStackGrantRow.stack_id == stack_id, UserStackGrantRow.user_id == user_id
        )
    )
    return StackPermission.NONE if value is None else StackPermission(value)


@dataclass(frozen=True)
class _ScopeOwner:
    kind: TokenKind
    user_id: str | None = None
    organization_id: str | None = None
    team_id: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        if self.kind is TokenKind.PERSONAL:
            owner = AccessTokenRow.user_id == self.user_id
        elif self.kind is TokenKind.ORGANIZATION:
            owner = AccessTokenRow.organization_id == self.organization_id
        else:
            owner = AccessTokenRow.team_id == self.team_id
        return [owner, AccessTokenRow.kind == self.kind.value]


async def _scope_owner(session: AsyncSession, scope: TokenScope) -> _ScopeOwner:
    if scope.kind is TokenKind.PERSONAL:
        return _ScopeOwner(
            scope.kind, user_id=(await _user_row_by_login(session, scope.user_login)).id
        )
    org = await _organization_row(session, scope.organization)
    if scope.kind is TokenKind.ORGANIZATION:
        return _ScopeOwner(scope.kind, organization_id=org.id)
    team = await _existing_team(session, org.id, scope.team)
    return _ScopeOwner(scope.kind, organization_id=org.id, team_id=team.id)


async def _live_token(session: AsyncSession, scope: TokenScope, token_id: str) -> AccessTokenRow:
    owner = await _scope_owner(session, scope)
    row = await session.scalar(
        select(AccessTokenRow).where(
            AccessTokenRow.id == token_id,
            AccessTokenRow.revoked_at.is_(None),
            *owner.conditions(),
        )
    )
    if row is None:
        raise token_not_found(token_id)
    return row


def _access_token(row: AccessTokenRow) -> AccessToken:
    return AccessToken(
        id=row.id,
        kind=TokenKind(row.kind),
        name=row.name,
        description=row.description,
        created_at=_aware(row.created_at),
        created_by=row.created_by,
        last_used_at=_optional_aware(row.last_used_at),
        expires_at=_optional_aware(row.expires_at),
        revoked_at=_optional_aware(row.revoked_at),
        rotated_at=_optional_aware(row.rotated_at),
        is_admin=row.is_admin,
    )
