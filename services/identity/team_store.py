"""The only code issuing SQL for teams and stack grants; returns frozen records, never rows,
and raises only for storage facts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select

from services.common.clock import Clock
from services.common.db import Sessions
from services.common.errors import NotFound
from services.identity.domain import (
    MemberStackGrants,
    Principal,
    Role,
    StackGrant,
    StackGrants,
    StackPermission,
    Team,
    TeamChange,
    TeamRole,
    TeamStackGrant,
    TokenKind,
    UserStackGrant,
    shown,
)
from services.identity.models import (
    AccessTokenRow,
    MembershipRow,
    TeamMemberRow,
    TeamRow,
    TeamStackGrantRow,
    UserRow,
    UserStackGrantRow,
)
from services.identity.rows import (
    change_team_member,
    explicit_grant,
    find_team_row,
    find_user_id,
    flush_or,
    new_id,
    not_a_member,
    organization_row,
    set_team_grant,
    stack_team_grants,
    team_exists,
    team_record,
    team_row,
    user_record,
    user_row_by_login,
)


class TeamStore:
    """Teams and stack grants; one session and transaction per call."""

    def __init__(self, sessions: Sessions, clock: Clock, reads: Sessions | None = None) -> None:
        self._sessions = sessions
        self._clock = clock
        # Reads that never take SQLite's write lock (the writes' sessions when not given).
        self._reads = reads or sessions

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def stack_grants_in(
        self, principal: Principal, organization: str, stack_ids: Sequence[str]
    ) -> dict[str, StackGrants]:
        """The grants that decide the caller's permission on stacks of one organization (not
        yet who owns them). A read: checking a permission never waits for the write lock."""
        async with self._reads.begin() as session:
            org = await organization_row(session, organization)
            token = principal.token_info
            teams: dict[str, list[StackPermission]] = {}
            if stack_ids and token.kind in (TokenKind.TEAM, TokenKind.PERSONAL):
                # The grants of the token's team, or of every team of the organization the
                # user is a member of, in one statement.
                query = (
                    select(TeamStackGrantRow.stack_id, TeamStackGrantRow.permission)
                    .join(TeamRow, TeamRow.id == TeamStackGrantRow.team_id)
                    .where(
                        TeamRow.organization_id == org.id,
                        TeamStackGrantRow.stack_id.in_(stack_ids),
                    )
                )
                if token.kind is TokenKind.TEAM:
                    query = query.where(TeamRow.name == token.team)
                else:
                    query = query.join(
                        TeamMemberRow, TeamMemberRow.team_id == TeamStackGrantRow.team_id
                    ).where(TeamMemberRow.user_id == principal.user.id)
                for stack_id, permission in await session.execute(query):
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
                )
                for stack_id in stack_ids
            }

    # --- teams ------------------------------------------------------------------------

    async def create_team(
        self,
        organization: str,
        name: str,
        display_name: str,
        description: str,
        creator_login: str,
    ) -> Team:
        """A new team; its creator, when a member of the organization, joins as team admin
        (team members are organization members)."""
        now = self._now()
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            if await find_team_row(session, org.id, name) is not None:
                raise team_exists(name)
            row = TeamRow(
                id=new_id(),
                organization_id=org.id,
                name=name,
                display_name=display_name,
                description=description,
                created_at=now,
            )
            session.add(row)
            await flush_or(session, team_exists(name))
            creator = await find_user_id(session, creator_login) if creator_login else None
            is_member = (
                creator is not None
                and await session.get(MembershipRow, (org.id, creator)) is not None
            )
            if creator is not None and is_member:
                session.add(
                    TeamMemberRow(team_id=row.id, user_id=creator, role=TeamRole.ADMIN.value)
                )
                await session.flush()
            return await team_record(session, row, org.name)

    async def list_teams(self, organization: str) -> list[Team]:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            rows = await session.scalars(
                select(TeamRow).where(TeamRow.organization_id == org.id).order_by(TeamRow.name)
            )
            return [await team_record(session, row, org.name) for row in rows.all()]

    async def get_team(self, organization: str, name: str) -> Team:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            return await team_record(session, await team_row(session, org.id, name), org.name)

    async def update_team(self, organization: str, name: str, change: TeamChange) -> Team:
        """Apply one team change; any refusal leaves the team as it was."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            row = await team_row(session, org.id, name)
            if change.display_name is not None:
                row.display_name = change.display_name
            if change.description is not None:
                row.description = change.description
            if change.member_action is not None:
                await change_team_member(session, org.id, organization, row, change)
            if change.set_stack is not None:
                await set_team_grant(session, row.id, change.set_stack)
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
            return await team_record(session, row, org.name)

    async def delete_team(self, organization: str, name: str) -> None:
        """Delete a team with its members, grants and tokens."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            row = await team_row(session, org.id, name)
            # Explicit deletes: SQLite only cascades with foreign keys on, which tests may vary.
            await session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == row.id))
            await session.execute(
                delete(TeamStackGrantRow).where(TeamStackGrantRow.team_id == row.id)
            )
            await session.execute(delete(AccessTokenRow).where(AccessTokenRow.team_id == row.id))
            await session.delete(row)

    async def list_member_teams(self, organization: str, login: str) -> list[Team]:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user = await user_row_by_login(session, login)
            rows = await session.scalars(
                select(TeamRow)
                .join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
                .where(TeamRow.organization_id == org.id, TeamMemberRow.user_id == user.id)
                .order_by(TeamRow.name)
            )
            return [await team_record(session, row, org.name) for row in rows.all()]

    # --- stack grants -----------------------------------------------------------------

    async def set_team_stack_permission(
        self, organization: str, team: str, stack_id: str, permission: StackPermission
    ) -> None:
        """Grant a team a permission on a stack; NONE takes it away."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            row = await team_row(session, org.id, team)
            await set_team_grant(session, row.id, StackGrant(stack_id, permission))

    async def set_user_stack_permission(
        self, organization: str, login: str, stack_id: str, permission: StackPermission
    ) -> None:
        """Grant a member a permission on a stack; NONE takes it away (NotFound if none)."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user = await user_row_by_login(session, login)
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
            org = await organization_row(session, organization)
            viewer = await find_user_id(session, viewer_login) if viewer_login else None
            teams = await stack_team_grants(session, org, stack_id, viewer)
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
                UserStackGrant(user=user_record(user), permission=StackPermission(permission))
                for user, permission in rows
            ]
            return teams, users

    async def member_stack_grants(
        self, organization: str, login: str, stack_id: str
    ) -> MemberStackGrants:
        """What decides a member's permission on one stack."""
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            user_row = await user_row_by_login(session, login)
            membership = await session.get(MembershipRow, (org.id, user_row.id))
            if membership is None:
                raise not_a_member(login, organization)
            teams = [
                grant
                for grant in await stack_team_grants(session, org, stack_id, user_row.id)
                if grant.is_member
            ]
            return MemberStackGrants(
                user=user_record(user_row),
                role=Role.from_label(membership.role),
                organization_default=StackPermission(org.default_stack_permission),
                teams=tuple(teams),
                explicit=await explicit_grant(session, stack_id, user_row.id),
            )

    async def purge_stack_grants(self, stack_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(TeamStackGrantRow).where(TeamStackGrantRow.stack_id == stack_id)
            )
            await session.execute(
                delete(UserStackGrantRow).where(UserStackGrantRow.stack_id == stack_id)
            )
