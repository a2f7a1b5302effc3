"""The only code issuing SQL for users, organizations, memberships, invitations and access
tokens; returns frozen records, never rows, and raises only for storage facts. Rules that must
hold inside a transaction (the last admin, who may be invited, whether a token still
authenticates) come in as pure functions from the domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock, aware
from services.common.db import Sessions
from services.common.errors import AlreadyExists, FailedPrecondition
from services.identity.domain import (
    AccessToken,
    Invite,
    InviteCandidate,
    Member,
    Membership,
    NewLink,
    NewToken,
    NewUser,
    Organization,
    OrganizationDetails,
    Principal,
    Role,
    StackPermission,
    TokenKind,
    TokenScope,
    User,
    already_a_member,
    invite_not_found,
    organization_not_found,
    shown,
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
    UserRow,
    UserStackGrantRow,
)
from services.identity.rows import (
    access_token_record,
    admin_count,
    any_user,
    find_organization_id,
    find_user_id,
    flush_or,
    insert_organization,
    invite_record,
    live_token,
    lock_organization,
    new_id,
    new_token_row,
    new_user_row,
    not_a_member,
    optional_aware,
    organization_details,
    organization_exists,
    organization_record,
    organization_row,
    recipient_row,
    scope_owner,
    token_principal,
    user_exists,
    user_record,
    user_row_by_login,
)
from services.identity.tokens import TokenState, TokenUse

# Concurrent upserts of one membership: the loser of the insert race retries as an update.
_UPSERT_ATTEMPTS = 3

# Refuses a role change (new role None: a removal) given the current role and admin count.
AdminRule = Callable[[Role, Role | None, int], None]


class IdentityStore:
    """Users, organizations, memberships and tokens; one session and transaction per call."""

    def __init__(self, sessions: Sessions, clock: Clock, reads: Sessions | None = None) -> None:
        self._sessions = sessions
        # Read-only transactions (on SQLite they neither take nor wait for the write lock).
        self._reads = reads or sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def has_users(self) -> bool:
        async with self._sessions.begin() as session:
            return await any_user(session)

    async def bootstrap(
        self, admin: NewUser, organization: str, token_name: str, token_hash: str
    ) -> tuple[User, Organization] | None:
        """Create the first admin, their organization and a token; None when users exist.

        The singleton bootstrap row decides races: of concurrent callers (API requests or
        replicas seeding the admin token) exactly one inserts it, the rest get None.
        """
        now = self._now()
        try:
            async with self._sessions.begin() as session:
                if await any_user(session):
                    return None
                session.add(BootstrapRow(id=1, created_at=now))
                await session.flush()
                user = new_user_row(admin, now)
                session.add(user)
                await session.flush()
                org = await insert_organization(session, organization, user.id, now)
                session.add(new_token_row(user.id, token_name, token_hash, now, None))
        except IntegrityError:
            return None
        return user_record(user), organization_record(org)

    async def authenticate(
        self, token_hash: str, *, judge: Callable[[TokenState, datetime], TokenUse]
    ) -> Principal | None:
        """The principal behind a token hash, when `judge` accepts the token now; None for
        unknown tokens, refused ones and tokens whose owner is gone."""
        now = self._now()
        # A read; only a use worth recording (rarely: see `judge`) writes, in its own
        # transaction, so checking a token never waits for the write lock.
        async with self._reads.begin() as session:
            token = await session.scalar(
                select(AccessTokenRow).where(AccessTokenRow.token_hash == token_hash)
            )
            if token is None:
                return None
            state = TokenState(
                revoked_at=optional_aware(token.revoked_at),
                expires_at=optional_aware(token.expires_at),
                last_used_at=optional_aware(token.last_used_at),
            )
            use = judge(state, now)
            if use is TokenUse.REFUSED:
                return None
            principal = await token_principal(session, token)
            token_id = token.id
        if use is TokenUse.RECORDED:
            async with self._sessions.begin() as session:
                await session.execute(
                    update(AccessTokenRow)
                    .where(AccessTokenRow.id == token_id)
                    .values(last_used_at=now)
                )
        return principal

    async def principal_by_token_id(
        self, token_id: str, *, judge: Callable[[TokenState, datetime], TokenUse]
    ) -> Principal | None:
        """The principal behind a token, by its id, when `judge` accepts the token now; None
        otherwise. The use is not recorded: the token's value was checked in this request."""
        now = self._now()
        async with self._reads.begin() as session:
            token = await session.get(AccessTokenRow, token_id)
            if token is None:
                return None
            state = TokenState(
                revoked_at=optional_aware(token.revoked_at),
                expires_at=optional_aware(token.expires_at),
                last_used_at=optional_aware(token.last_used_at),
            )
            if judge(state, now) is TokenUse.REFUSED:
                return None
            return await token_principal(session, token)

    async def has_user(self, login: str) -> bool:
        async with self._sessions.begin() as session:
            return await find_user_id(session, login) is not None

    async def has_organizations(self) -> bool:
        async with self._sessions.begin() as session:
            return await session.scalar(select(OrganizationRow.id).limit(1)) is not None

    async def create_organization_if_missing(self, name: str, admin_id: str) -> bool:
        """Create an organization with one admin; False when it already exists or a
        concurrent caller created it first."""
        now = self._now()
        try:
            async with self._sessions.begin() as session:
                if await find_organization_id(session, name) is not None:
                    return False
                await insert_organization(session, name, admin_id, now)
        except (IntegrityError, AlreadyExists):
            return False
        return True

    async def create_user(self, new: NewUser, *, with_personal_organization: bool) -> User:
        """A new user, and optionally an organization named after them with them as admin."""
        now = self._now()
        async with self._sessions.begin() as session:
            if await find_user_id(session, new.login) is not None:
                raise user_exists(new.login)
            if (
                with_personal_organization
                and await find_organization_id(session, new.login) is not None
            ):
                raise organization_exists(new.login)
            row = new_user_row(new, now)
            session.add(row)
            await flush_or(session, user_exists(new.login))
            if with_personal_organization:
                await insert_organization(session, new.login, row.id, now)
        return user_record(row)

    async def create_organization(self, name: str, admin_login: str) -> Organization:
        now = self._now()
        async with self._sessions.begin() as session:
            admin_id = await find_user_id(session, admin_login)
            if admin_id is None:
                raise user_not_found(admin_login)
            if await find_organization_id(session, name) is not None:
                raise organization_exists(name)
            row = await insert_organization(session, name, admin_id, now)
        return organization_record(row)

    async def set_membership(
        self, organization: str, login: str, role: Role, *, keep_admin: AdminRule
    ) -> Membership:
        """Add a user to an organization or change their role there, under `keep_admin`."""
        now = self._now()
        for attempt in range(_UPSERT_ATTEMPTS):
            try:
                async with self._sessions.begin() as session:
                    org_id = await find_organization_id(session, organization)
                    if org_id is None:
                        raise organization_not_found(organization)
                    user_id = await find_user_id(session, login)
                    if user_id is None:
                        raise user_not_found(login)
                    await lock_organization(session, org_id)
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
                        keep_admin(
                            Role.from_label(row.role), role, await admin_count(session, org_id)
                        )
                        row.role = role.label
                break
            except IntegrityError:
                if attempt + 1 == _UPSERT_ATTEMPTS:
                    raise
        return Membership(organization=organization, user_login=login, role=role)

    async def list_members(self, organization: str) -> list[Member]:
        """Members of an organization by login, with their roles and teams; NotFound for no
        such org."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
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
                    user=user_record(user),
                    role=Role.from_label(membership.role),
                    joined_at=aware(membership.created_at or org.created_at),
                    teams=tuple(teams.get(user.id, ())),
                )
                for user, membership in rows
            ]

    # --- organizations and members ------------------------------------------------------

    async def get_organization(self, organization: str) -> OrganizationDetails:
        async with self._sessions.begin() as session:
            return await organization_details(
                session, await organization_row(session, organization)
            )

    async def update_organization(
        self, organization: str, default_stack_permission: StackPermission | None
    ) -> OrganizationDetails:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            if default_stack_permission is not None:
                org.default_stack_permission = int(default_stack_permission)
            await session.flush()
            return await organization_details(session, org)

    async def add_member(self, organization: str, login: str, role: Role) -> Member:
        """Add a registered user; 409 when they already belong to the organization."""
        now = self._now()
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user = await user_row_by_login(session, login)
            if await session.get(MembershipRow, (org.id, user.id)) is not None:
                raise already_a_member(login, organization)
            session.add(
                MembershipRow(
                    organization_id=org.id, user_id=user.id, role=role.label, created_at=now
                )
            )
            await flush_or(session, AlreadyExists(f"Conflict: '{shown(login)}' was just added"))
            # A standing invitation is fulfilled by being added.
            await session.execute(
                delete(InviteRow).where(
                    InviteRow.organization_id == org.id, InviteRow.user_id == user.id
                )
            )
        return Member(user=user_record(user), role=role, joined_at=now)

    async def update_member(
        self, organization: str, login: str, role: Role, *, keep_admin: AdminRule
    ) -> Member:
        """Change a member's role under `keep_admin`, checked while the organization is
        locked so that concurrent demotions cannot both pass."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user = await user_row_by_login(session, login)
            await lock_organization(session, org.id)
            row = await session.get(MembershipRow, (org.id, user.id))
            if row is None:
                raise not_a_member(login, organization)
            keep_admin(Role.from_label(row.role), role, await admin_count(session, org.id))
            row.role = role.label
            return Member(
                user=user_record(user), role=role, joined_at=aware(row.created_at or org.created_at)
            )

    async def remove_member(self, organization: str, login: str, *, keep_admin: AdminRule) -> None:
        """Remove a member with their team places and grants, under `keep_admin`."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user = await user_row_by_login(session, login)
            await lock_organization(session, org.id)
            row = await session.get(MembershipRow, (org.id, user.id))
            if row is None:
                raise not_a_member(login, organization)
            keep_admin(Role.from_label(row.role), None, await admin_count(session, org.id))
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
        self,
        organization: str,
        targets: list[tuple[str, Role]],
        invited_by: str,
        *,
        admit: Callable[[InviteCandidate], None],
        new_link: Callable[[], tuple[str, str]],
        link_expires_at: datetime,
    ) -> list[Invite]:
        """Invite registered users (by login or email), each as `admit` allows, and email
        addresses without an account by a link (`new_link` draws its secret and hash); all
        of them or none."""
        now = self._now()
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            invites: list[Invite] = []
            seen: set[str] = set()
            for recipient, role in targets:
                user = await recipient_row(session, recipient)
                if user is None:
                    link = NewLink(recipient, role, invited_by, link_expires_at)
                    invites.append(
                        await self._invite_email(session, org, link, seen, admit, new_link)
                    )
                    continue
                membership = await session.get(MembershipRow, (org.id, user.id))
                pending = await session.scalar(
                    select(InviteRow.id).where(
                        InviteRow.organization_id == org.id, InviteRow.user_id == user.id
                    )
                )
                admit(
                    InviteCandidate(
                        recipient=recipient,
                        login=user.login,
                        organization=organization,
                        is_repeated=user.id in seen,
                        is_member=membership is not None,
                        has_pending_invite=pending is not None,
                        is_disabled=user.disabled_at is not None,
                    )
                )
                seen.add(user.id)
                row = InviteRow(
                    id=new_id(),
                    organization_id=org.id,
                    user_id=user.id,
                    role=role.label,
                    invited_by=invited_by,
                    created_at=now,
                )
                session.add(row)
                invites.append(invite_record(row, org.name, user))
            return invites

    async def _invite_email(
        self,
        session: AsyncSession,
        org: OrganizationRow,
        link: NewLink,
        seen: set[str],
        admit: Callable[[InviteCandidate], None],
        new_link: Callable[[], tuple[str, str]],
    ) -> Invite:
        now = self._now()
        address = link.email.lower()
        # An expired, unused link no longer stands in the way of a new one.
        await session.execute(
            delete(InviteRow).where(
                InviteRow.organization_id == org.id,
                func.lower(InviteRow.email) == address,
                InviteRow.used_at.is_(None),
                InviteRow.expires_at <= now,
            )
        )
        pending = await session.scalar(
            select(InviteRow.id).where(
                InviteRow.organization_id == org.id,
                func.lower(InviteRow.email) == address,
                InviteRow.used_at.is_(None),
            )
        )
        admit(
            InviteCandidate(
                recipient=link.email,
                login="",
                organization=org.name,
                is_repeated=f"@{address}" in seen,
                is_member=False,
                has_pending_invite=pending is not None,
            )
        )
        seen.add(f"@{address}")
        secret, secret_hash = new_link()
        row = InviteRow(
            id=new_id(),
            organization_id=org.id,
            user_id=None,
            role=link.role.label,
            invited_by=link.invited_by,
            created_at=now,
            email=link.email,
            secret_hash=secret_hash,
            expires_at=link.expires_at,
            used_at=None,
        )
        session.add(row)
        return invite_record(row, org.name, None, link_secret=secret)

    async def list_invites(self, *, organization: str = "", login: str = "") -> list[Invite]:
        """Pending invitations of an organization (links not used yet, expired ones too), or
        addressed to one registered user."""
        async with self._sessions.begin() as session:
            query = (
                select(InviteRow, OrganizationRow.name, UserRow)
                .join(OrganizationRow, OrganizationRow.id == InviteRow.organization_id)
                .outerjoin(UserRow, UserRow.id == InviteRow.user_id)
                .where(InviteRow.used_at.is_(None))
                .order_by(InviteRow.created_at, UserRow.login, InviteRow.email)
            )
            if organization:
                org = await organization_row(session, organization)
                query = query.where(InviteRow.organization_id == org.id)
            else:
                user = await user_row_by_login(session, login)
                query = query.where(InviteRow.user_id == user.id)
            rows = await session.execute(query)
            return [invite_record(row, org_name, user) for row, org_name, user in rows]

    async def accept_invite(self, organization: str, invite_id: str, login: str) -> Membership:
        """The invitee joins with the invited role; anyone else gets NotFound."""
        now = self._now()
        async with self._sessions.begin() as session:
            user = await user_row_by_login(session, login)
            row = await session.get(InviteRow, invite_id)
            org = None if row is None else await session.get(OrganizationRow, row.organization_id)
            # One answer whether or not the organization exists: invitations are no oracle.
            if row is None or org is None or org.name != organization or row.user_id != user.id:
                raise invite_not_found(invite_id)
            if user.disabled_at is not None:
                raise FailedPrecondition(f"Conflict: user '{shown(login)}' is disabled")
            role = Role.from_label(row.role)
            await session.delete(row)
            if await session.get(MembershipRow, (org.id, user.id)) is None:
                session.add(
                    MembershipRow(
                        organization_id=org.id, user_id=user.id, role=role.label, created_at=now
                    )
                )
                await flush_or(session, AlreadyExists("Conflict: the invitation was just used"))
        return Membership(organization=org.name, user_login=user.login, role=role)

    async def cancel_invite(self, organization: str, invite_id: str) -> None:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            result = await session.execute(
                delete(InviteRow).where(
                    InviteRow.id == invite_id,
                    InviteRow.organization_id == org.id,
                    InviteRow.used_at.is_(None),
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise invite_not_found(invite_id)

    # --- access tokens ----------------------------------------------------------------

    async def issue_token(self, new: NewToken) -> str:
        """Store a new token's hash in its scope; returns the token id. A disabled user gets no
        new personal token, however asked for (REST, single sign-on, token exchange)."""
        now = self._now()
        async with self._sessions.begin() as session:
            owner = await scope_owner(session, new.scope)
            if new.scope.kind is TokenKind.PERSONAL:
                user = await user_row_by_login(session, new.scope.user_login)
                if user.disabled_at is not None:
                    raise FailedPrecondition(
                        f"Conflict: user '{shown(user.login)}' is disabled; "
                        "a site admin can enable them"
                    )
            row = AccessTokenRow(
                id=new_id(),
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
            owner = await scope_owner(session, scope)
            query = (
                select(AccessTokenRow)
                .where(*owner.conditions())
                .order_by(AccessTokenRow.created_at, AccessTokenRow.id)
            )
            if not include_revoked:
                query = query.where(AccessTokenRow.revoked_at.is_(None))
            rows = await session.scalars(query)
            return [access_token_record(row) for row in rows.all()]

    async def revoke_token(self, scope: TokenScope, token_id: str) -> AccessToken:
        """Mark a live token of the scope revoked (kept as history); NotFound otherwise."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await live_token(session, scope, token_id)
            row.revoked_at = now
            return access_token_record(row)

    async def rotate_token(self, scope: TokenScope, token_id: str, token_hash: str) -> None:
        """Replace a live token's secret; the old secret stops working at once."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await live_token(session, scope, token_id)
            row.token_hash = token_hash
            row.rotated_at = now

    async def create_access_token(
        self, login: str, name: str, token_hash: str, *, expires_at: datetime | None = None
    ) -> str:
        """Store a token's hash for a user; returns the token id."""
        now = self._now()
        async with self._sessions.begin() as session:
            user_id = await find_user_id(session, login)
            if user_id is None:
                raise user_not_found(login)
            row = new_token_row(user_id, name, token_hash, now, expires_at)
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
