"""The only code issuing SQL for site administration of users (create, list, disable), a
user's own profile, and invitation links; returns frozen records, never rows, and raises only
for storage facts. Rules that must hold inside a transaction (the last site admin, whether a
link is still good) come in as pure functions from the domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from services.common.clock import Clock, aware
from services.common.db import Sessions
from services.common.errors import AlreadyExists, NotFound
from services.identity.domain import (
    INVITE_LINK_NOT_FOUND,
    InviteLink,
    LinkState,
    Membership,
    NewUser,
    ProfileChange,
    Role,
    User,
    UserPage,
    UserQuery,
    UserState,
)
from services.identity.models import (
    AccessTokenRow,
    InviteRow,
    MembershipRow,
    OrganizationRow,
    UserRow,
)
from services.identity.rows import (
    find_organization_id,
    find_user_id,
    flush_or,
    new_token_row,
    new_user_row,
    user_exists,
    user_record,
    user_row_by_login,
)

# Checks a user about to be disabled against the number of enabled site admins.
SiteAdminRule = Callable[[User, int], None]
LinkRule = Callable[[LinkState | None, datetime], LinkState]


class UserStore:
    """Users as site admins manage them, and invitation links; one transaction per call."""

    def __init__(self, sessions: Sessions, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def find_user(self, login: str) -> User | None:
        async with self._sessions.begin() as session:
            row = await session.scalar(select(UserRow).where(UserRow.login == login))
            return None if row is None else user_record(row)

    async def register_user(
        self,
        new: NewUser,
        *,
        token: tuple[str, str] | None,
        check_login: Callable[[str, bool], None],
    ) -> tuple[User, str]:
        """A new user and, when `token` names one (name, hash), their first access token;
        returns the user and the token's id ('' without one)."""
        now = self._now()
        async with self._sessions.begin() as session:
            if await find_user_id(session, new.login) is not None:
                raise user_exists(new.login)
            check_login(new.login, await find_organization_id(session, new.login) is not None)
            row = new_user_row(new, now)
            session.add(row)
            await flush_or(session, user_exists(new.login))
            token_id = ""
            if token is not None:
                token_row = new_token_row(row.id, token[0], token[1], now, None)
                session.add(token_row)
                token_id = token_row.id
            return user_record(row), token_id

    async def list_users(self, query: UserQuery) -> UserPage:
        """One page of users by login, after `query.after_login`."""
        async with self._sessions.begin() as session:
            statement = select(UserRow).order_by(UserRow.login).limit(query.page_size + 1)
            if query.text:
                text = query.text.lower()
                statement = statement.where(
                    func.lower(UserRow.login).contains(text, autoescape=True)
                    | func.lower(UserRow.email).contains(text, autoescape=True)
                )
            if query.state is UserState.ENABLED:
                statement = statement.where(UserRow.disabled_at.is_(None))
            elif query.state is UserState.DISABLED:
                statement = statement.where(UserRow.disabled_at.is_not(None))
            if query.after_login:
                statement = statement.where(UserRow.login > query.after_login)
            rows = (await session.scalars(statement)).all()
            page = [user_record(row) for row in rows[: query.page_size]]
            more = len(rows) > query.page_size
            return UserPage(users=tuple(page), next_after=page[-1].login if more else "")

    async def get_user(self, login: str) -> User:
        async with self._sessions.begin() as session:
            return user_record(await user_row_by_login(session, login))

    async def set_user_disabled(
        self,
        login: str,
        *,
        is_disabled: bool,
        keep_site_admin: SiteAdminRule,
        token: tuple[str, str] | None = None,
    ) -> tuple[User, str]:
        """Disable a user (revoking every live personal token of theirs at once) or enable
        them again (no token comes back; `token`, a (name, hash), issues a new one);
        `keep_site_admin` is checked under a lock. Returns the user and the new token's id."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await user_row_by_login(session, login)
            if not is_disabled:
                row.disabled_at = None
                token_id = ""
                if token is not None:
                    token_row = new_token_row(row.id, token[0], token[1], now, None)
                    session.add(token_row)
                    token_id = token_row.id
                return user_record(row), token_id
            if row.disabled_at is not None:
                return user_record(row), ""
            # Serialise concurrent disables, so two site admins cannot disable each other.
            await session.execute(
                update(UserRow)
                .where(UserRow.is_site_admin.is_(True))
                .values(is_site_admin=UserRow.is_site_admin)
            )
            enabled_admins = await session.scalar(
                select(func.count())
                .select_from(UserRow)
                .where(UserRow.is_site_admin.is_(True), UserRow.disabled_at.is_(None))
            )
            keep_site_admin(user_record(row), int(enabled_admins or 0))
            row.disabled_at = now
            await session.execute(
                update(AccessTokenRow)
                .where(AccessTokenRow.user_id == row.id, AccessTokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return user_record(row), ""

    async def update_profile(self, login: str, change: ProfileChange) -> User:
        async with self._sessions.begin() as session:
            row = await user_row_by_login(session, login)
            if change.name is not None:
                row.name = change.name
            if change.email is not None:
                row.email = change.email
            if change.avatar_url is not None:
                row.avatar_url = change.avatar_url
            return user_record(row)

    async def invite_link(self, secret_hash: str, *, judge: LinkRule) -> InviteLink:
        """What the link with this hash offers, when `judge` finds it still good."""
        now = self._now()
        async with self._sessions.begin() as session:
            found = await session.execute(
                select(InviteRow, OrganizationRow.name)
                .join(OrganizationRow, OrganizationRow.id == InviteRow.organization_id)
                .where(InviteRow.secret_hash == secret_hash)
            )
            first = found.first()
            row, organization = (None, "") if first is None else first
            state = _link_state(row)
            judge(state, now)
            assert row is not None and state is not None
            return InviteLink(
                organization=organization,
                role=Role.from_label(row.role),
                email=row.email or "",
                invited_by=row.invited_by,
                expires_at=state.expires_at,
            )

    async def redeem_invite_link(
        self,
        secret_hash: str,
        new: NewUser,
        token: tuple[str, str],
        *,
        judge: LinkRule,
        check_login: Callable[[str, bool], None],
    ) -> tuple[User, Membership, str]:
        """Create the invited person's user, membership and first token, and mark the link
        used, in one transaction: a refusal (bad link, login taken) writes nothing."""
        now = self._now()
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(InviteRow).where(InviteRow.secret_hash == secret_hash).with_for_update()
            )
            judge(_link_state(row), now)
            assert row is not None
            org = await session.get(OrganizationRow, row.organization_id)
            if org is None:
                raise NotFound(INVITE_LINK_NOT_FOUND)
            if await find_user_id(session, new.login) is not None:
                raise user_exists(new.login)
            check_login(new.login, await find_organization_id(session, new.login) is not None)
            # Only one use wins, even when two arrive at once.
            used = await session.execute(
                update(InviteRow)
                .where(InviteRow.id == row.id, InviteRow.used_at.is_(None))
                .values(used_at=now)
            )
            if not used.rowcount:  # type: ignore[attr-defined]
                raise AlreadyExists("Conflict: this invitation link has already been used")
            user = new_user_row(new, now)
            session.add(user)
            await flush_or(session, user_exists(new.login))
            role = Role.from_label(row.role)
            session.add(
                MembershipRow(
                    organization_id=org.id, user_id=user.id, role=role.label, created_at=now
                )
            )
            token_row = new_token_row(user.id, token[0], token[1], now, None)
            session.add(token_row)
            await session.flush()
            membership = Membership(organization=org.name, user_login=user.login, role=role)
            return user_record(user), membership, token_row.id


def _link_state(row: InviteRow | None) -> LinkState | None:
    if row is None or row.expires_at is None:
        return None
    return LinkState(
        expires_at=aware(row.expires_at),
        used_at=None if row.used_at is None else aware(row.used_at),
    )
