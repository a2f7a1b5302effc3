"""Row lookups and row -> record mappings shared by the identity stores; SQL only, and the
errors they raise are storage facts (not found, already exists)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.common.clock import aware
from services.common.errors import AlreadyExists, NotFound
from services.identity.domain import (
    DEFAULT_STACK_PERMISSION,
    AccessToken,
    Invite,
    MemberAction,
    Membership,
    NewUser,
    Organization,
    OrganizationDetails,
    Principal,
    Role,
    StackGrant,
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
    make_principal,
    organization_not_found,
    shown,
    team_not_found,
    token_not_found,
    user_not_found,
)
from services.identity.models import (
    AccessTokenRow,
    InviteRow,
    MembershipRow,
    OrganizationRow,
    TeamMemberRow,
    TeamRow,
    TeamStackGrantRow,
    UserRow,
    UserStackGrantRow,
)
from services.identity.tokens import machine_principal


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


def new_id() -> str:
    return uuid.uuid4().hex


def optional_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware(moment)


def user_record(row: UserRow) -> User:
    return User(
        id=row.id,
        login=row.login,
        name=row.name,
        email=row.email,
        is_site_admin=row.is_site_admin,
        created_at=aware(row.created_at),
        avatar_url=row.avatar_url or "",
        disabled_at=optional_aware(row.disabled_at),
    )


def organization_record(row: OrganizationRow) -> Organization:
    return Organization(id=row.id, name=row.name, created_at=aware(row.created_at))


async def any_user(session: AsyncSession) -> bool:
    return await session.scalar(select(UserRow.id).limit(1)) is not None


async def find_user_id(session: AsyncSession, login: str) -> str | None:
    return await session.scalar(select(UserRow.id).where(UserRow.login == login))


async def find_organization_id(session: AsyncSession, name: str) -> str | None:
    return await session.scalar(select(OrganizationRow.id).where(OrganizationRow.name == name))


async def memberships_of(session: AsyncSession, user: User) -> list[Membership]:
    rows = await session.execute(
        select(OrganizationRow.name, MembershipRow.role)
        .join(OrganizationRow, OrganizationRow.id == MembershipRow.organization_id)
        .where(MembershipRow.user_id == user.id)
    )
    return [
        Membership(organization=name, user_login=user.login, role=Role.from_label(role))
        for name, role in rows
    ]


async def flush_or(session: AsyncSession, error: AlreadyExists) -> None:
    """Flush pending inserts; a unique-constraint violation (a lost race) becomes `error`."""
    try:
        await session.flush()
    except IntegrityError:
        raise error from None


async def insert_organization(
    session: AsyncSession, name: str, admin_id: str, now: datetime
) -> OrganizationRow:
    row = OrganizationRow(
        id=new_id(),
        name=name,
        created_at=now,
        default_stack_permission=int(DEFAULT_STACK_PERMISSION),
    )
    session.add(row)
    await flush_or(session, organization_exists(name))
    session.add(
        MembershipRow(
            organization_id=row.id, user_id=admin_id, role=Role.ADMIN.label, created_at=now
        )
    )
    await session.flush()
    return row


def new_user_row(new: NewUser, now: datetime) -> UserRow:
    return UserRow(
        id=new_id(),
        login=new.login,
        name=new.name,
        email=new.email,
        is_site_admin=new.is_site_admin,
        created_at=now,
        avatar_url=new.avatar_url,
        disabled_at=None,
    )


def new_token_row(
    user_id: str, name: str, token_hash: str, now: datetime, expires_at: datetime | None
) -> AccessTokenRow:
    return AccessTokenRow(
        id=new_id(),
        user_id=user_id,
        name=name,
        token_hash=token_hash,
        created_at=now,
        last_used_at=None,
        expires_at=expires_at,
        revoked_at=None,
    )


async def token_principal(session: AsyncSession, token: AccessTokenRow) -> Principal | None:
    """Who a usable token acts as: its user, or its organization or team; None when that
    owner is gone."""
    kind = TokenKind(token.kind)
    if kind is TokenKind.PERSONAL:
        user_row = await session.get(UserRow, token.user_id)
        # A disabled user's tokens are revoked too; this holds even if one was missed.
        if user_row is None or user_row.disabled_at is not None:
            return None
        user = user_record(user_row)
        info = TokenInfo(name=token.name, id=token.id)
        return make_principal(user, await memberships_of(session, user), info)
    org = await session.get(OrganizationRow, token.organization_id)
    if org is None:
        return None
    team_name = ""
    if kind is TokenKind.TEAM:
        team = await session.get(TeamRow, token.team_id)
        if team is None:
            return None
        team_name = team.name
    info = TokenInfo(
        name=token.name,
        organization=org.name,
        team=team_name,
        id=token.id,
        kind=kind,
        is_admin=token.is_admin,
    )
    return machine_principal(info, organization_record(org), team_name)


async def organization_row(session: AsyncSession, name: str) -> OrganizationRow:
    row = await session.scalar(select(OrganizationRow).where(OrganizationRow.name == name))
    if row is None:
        raise organization_not_found(name)
    return row


async def user_row_by_login(session: AsyncSession, login: str) -> UserRow:
    row = await session.scalar(select(UserRow).where(UserRow.login == login))
    if row is None:
        raise user_not_found(login)
    return row


async def recipient_row(session: AsyncSession, recipient: str) -> UserRow | None:
    """The registered user an invitation names, by login or else by email; None for an
    email address no account has (it gets an invitation link)."""
    row = await session.scalar(select(UserRow).where(UserRow.login == recipient))
    if row is None and "@" in recipient:
        found = (
            await session.scalars(select(UserRow).where(UserRow.email == recipient).limit(2))
        ).all()
        row = found[0] if len(found) == 1 else None
        if not found:
            return None
    if row is None:
        raise NotFound(
            f"Not Found: no registered user '{shown(recipient)}' (invite by login or email)"
        )
    return row


async def lock_organization(session: AsyncSession, org_id: str) -> None:
    """Serialise role changes in one organization, so two demotions cannot both pass the
    last-admin check (a row lock on PostgreSQL, the write lock on SQLite)."""
    await session.execute(
        update(OrganizationRow)
        .where(OrganizationRow.id == org_id)
        .values(name=OrganizationRow.name)
    )


async def admin_count(session: AsyncSession, org_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(MembershipRow)
        .where(MembershipRow.organization_id == org_id, MembershipRow.role == Role.ADMIN.label)
    )
    return int(count or 0)


async def organization_details(session: AsyncSession, org: OrganizationRow) -> OrganizationDetails:
    members = await session.scalar(
        select(func.count())
        .select_from(MembershipRow)
        .where(MembershipRow.organization_id == org.id)
    )
    return OrganizationDetails(
        organization=organization_record(org),
        default_stack_permission=StackPermission(org.default_stack_permission),
        member_count=int(members or 0),
    )


def invite_record(
    row: InviteRow, organization: str, user: UserRow | None, link_secret: str = ""
) -> Invite:
    return Invite(
        id=row.id,
        organization=organization,
        user=None if user is None else user_record(user),
        role=Role.from_label(row.role),
        invited_by=row.invited_by,
        created_at=aware(row.created_at),
        email=row.email or "",
        expires_at=optional_aware(row.expires_at),
        link_secret=link_secret,
    )


async def find_team_row(session: AsyncSession, org_id: str, name: str) -> TeamRow | None:
    return await session.scalar(
        select(TeamRow).where(TeamRow.organization_id == org_id, TeamRow.name == name)
    )


async def team_row(session: AsyncSession, org_id: str, name: str) -> TeamRow:
    row = await find_team_row(session, org_id, name)
    if row is None:
        raise team_not_found(name)
    return row


async def team_record(session: AsyncSession, row: TeamRow, organization: str) -> Team:
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
        created_at=aware(row.created_at),
        members=tuple(
            TeamMember(user=user_record(user), role=TeamRole(role)) for user, role in members
        ),
        stacks=tuple(
            StackGrant(stack_id=stack_id, permission=StackPermission(permission))
            for stack_id, permission in grants
        ),
    )


async def change_team_member(
    session: AsyncSession, org_id: str, organization: str, team: TeamRow, change: TeamChange
) -> None:
    user = await user_row_by_login(session, change.member_login)
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


async def set_team_grant(session: AsyncSession, team_id: str, grant: StackGrant) -> None:
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


async def stack_team_grants(
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
            team=await team_record(session, team, org.name),
            permission=StackPermission(permission),
            is_member=team.id in member_of,
        )
        for team, permission in rows
    ]


async def explicit_grant(session: AsyncSession, stack_id: str, user_id: str) -> StackPermission:
    value = await session.scalar(
        select(UserStackGrantRow.permission).where(
            UserStackGrantRow.stack_id == stack_id, UserStackGrantRow.user_id == user_id
        )
    )
    return StackPermission.NONE if value is None else StackPermission(value)


@dataclass(frozen=True)
class ScopeOwner:
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


async def scope_owner(session: AsyncSession, scope: TokenScope) -> ScopeOwner:
    if scope.kind is TokenKind.PERSONAL:
        return ScopeOwner(
            scope.kind, user_id=(await user_row_by_login(session, scope.user_login)).id
        )
    org = await organization_row(session, scope.organization)
    if scope.kind is TokenKind.ORGANIZATION:
        return ScopeOwner(scope.kind, organization_id=org.id)
    team = await team_row(session, org.id, scope.team)
    return ScopeOwner(scope.kind, organization_id=org.id, team_id=team.id)


async def live_token(session: AsyncSession, scope: TokenScope, token_id: str) -> AccessTokenRow:
    owner = await scope_owner(session, scope)
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


def access_token_record(row: AccessTokenRow) -> AccessToken:
    return AccessToken(
        id=row.id,
        kind=TokenKind(row.kind),
        name=row.name,
        description=row.description,
        created_at=aware(row.created_at),
        created_by=row.created_by,
        last_used_at=optional_aware(row.last_used_at),
        expires_at=optional_aware(row.expires_at),
        revoked_at=optional_aware(row.revoked_at),
        rotated_at=optional_aware(row.rotated_at),
        is_admin=row.is_admin,
    )
