"""The only code issuing SQL for the identity tables; returns frozen records, never rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.clock import Clock
from services.common.errors import AlreadyExists, FailedPrecondition, Unauthenticated
from services.identity.domain import (
    ALREADY_BOOTSTRAPPED,
    UNAUTHORIZED,
    Membership,
    NewUser,
    Organization,
    Principal,
    Role,
    TokenInfo,
    User,
    is_last_use_stale,
    is_token_usable,
    make_principal,
    organization_not_found,
    shown,
    user_not_found,
)
from services.identity.models import (
    AccessTokenRow,
    BootstrapRow,
    MembershipRow,
    OrganizationRow,
    UserRow,
)

# Concurrent upserts of one membership: the loser of the insert race retries as an update.
_UPSERT_ATTEMPTS = 3


def user_exists(login: str) -> AlreadyExists:
    return AlreadyExists(f"Conflict: user '{shown(login)}' already exists")


def organization_exists(name: str) -> AlreadyExists:
    return AlreadyExists(f"Conflict: organization '{shown(name)}' already exists")


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
            found = (
                await session.execute(
                    select(AccessTokenRow, UserRow)
                    .join(UserRow, UserRow.id == AccessTokenRow.user_id)
                    .where(AccessTokenRow.token_hash == token_hash)
                )
            ).one_or_none()
            if found is None:
                raise Unauthenticated(UNAUTHORIZED)
            token, user_row = found
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
            user = _user(user_row)
            memberships = await _memberships(session, user)
        return make_principal(user, memberships, TokenInfo(name=token.name, id=token.id))

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
        for attempt in range(_UPSERT_ATTEMPTS):
            try:
                async with self._sessions.begin() as session:
                    org_id = await _organization_id(session, organization)
                    if org_id is None:
                        raise organization_not_found(organization)
                    user_id = await _user_id(session, login)
                    if user_id is None:
                        raise user_not_found(login)
                    row = await session.get(MembershipRow, (org_id, user_id))
                    if row is None:
                        session.add(
                            MembershipRow(organization_id=org_id, user_id=user_id, role=role.label)
                        )
                    else:
                        row.role = role.label
                break
            except IntegrityError:
                if attempt + 1 == _UPSERT_ATTEMPTS:
                    raise
        return Membership(organization=organization, user_login=login, role=role)

    async def list_members(self, organization: str) -> list[tuple[User, Role]]:
        """Members of an organization by login, with their roles; NotFound for no such org."""
        async with self._sessions.begin() as session:
            org_id = await _organization_id(session, organization)
            if org_id is None:
                raise organization_not_found(organization)
            rows = await session.execute(
                select(UserRow, MembershipRow.role)
                .join(MembershipRow, MembershipRow.user_id == UserRow.id)
                .where(MembershipRow.organization_id == org_id)
                .order_by(UserRow.login)
            )
            return [(_user(user), Role.from_label(role)) for user, role in rows]

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
    row = OrganizationRow(id=_new_id(), name=name, created_at=now)
    session.add(row)
    await _flush_or(session, organization_exists(name))
    session.add(MembershipRow(organization_id=row.id, user_id=admin_id, role=Role.ADMIN.label))
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
