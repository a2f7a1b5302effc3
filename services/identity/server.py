"""gRPC edge of the identity service: protobuf in, one use case of service.py, protobuf out;
and `start`, which wires the identity process (identity, audit log, console sessions, OIDC)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from protos.cairn.v1 import (
    audit_pb2_grpc,
    common_pb2,
    console_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    oidc_pb2_grpc,
)
from services.common.auth import caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, serve_service
from services.identity.audit.server import AUDIT_SERVICE_NAME, audit_service
from services.identity.domain import (
    MAX_DESCRIPTION_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_TOKEN_NAME_LENGTH,
    AccessToken,
    Invite,
    Member,
    MemberAction,
    Membership,
    NewUser,
    Organization,
    OrganizationAutocreate,
    OrganizationDetails,
    Principal,
    ProfileChange,
    Role,
    StackGrant,
    StackPermission,
    StackRef,
    Team,
    TeamChange,
    TeamRole,
    TeamStackGrant,
    TokenKind,
    TokenScope,
    User,
    UserQuery,
    UserStackGrant,
    UserState,
    check_member_action,
    validate_default_permission,
    validate_grant,
    validate_grant_or_none,
    validate_text,
)
from services.identity.models import Base
from services.identity.oidc.server import OIDC_SERVICE_NAME, oidc_service
from services.identity.service import IdentityService
from services.identity.sessions.server import SESSION_SERVICE_NAME, console_session_service
from services.identity.store import IdentityStore
from services.identity.team_store import TeamStore
from services.identity.user_store import UserStore

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]

_ROLE_BY_ENUM: dict[common_pb2.Role.ValueType, Role] = {
    common_pb2.ROLE_VIEWER: Role.VIEWER,
    common_pb2.ROLE_MEMBER: Role.MEMBER,
    common_pb2.ROLE_ADMIN: Role.ADMIN,
}
_ENUM_BY_ROLE = {role: value for value, role in _ROLE_BY_ENUM.items()}

_KIND_BY_ENUM: dict[identity_pb2.TokenKind.ValueType, TokenKind] = {
    identity_pb2.TOKEN_KIND_PERSONAL: TokenKind.PERSONAL,
    identity_pb2.TOKEN_KIND_ORGANIZATION: TokenKind.ORGANIZATION,
    identity_pb2.TOKEN_KIND_TEAM: TokenKind.TEAM,
}
_ENUM_BY_KIND = {kind: value for value, kind in _KIND_BY_ENUM.items()}

_MEMBER_ACTIONS: dict[identity_pb2.MemberAction.ValueType, MemberAction] = {
    identity_pb2.MEMBER_ACTION_ADD: MemberAction.ADD,
    identity_pb2.MEMBER_ACTION_REMOVE: MemberAction.REMOVE,
    identity_pb2.MEMBER_ACTION_PROMOTE: MemberAction.PROMOTE,
    identity_pb2.MEMBER_ACTION_DEMOTE: MemberAction.DEMOTE,
}
_ENUM_BY_TEAM_ROLE = {
    TeamRole.MEMBER: identity_pb2.TEAM_ROLE_MEMBER,
    TeamRole.ADMIN: identity_pb2.TEAM_ROLE_ADMIN,
}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, identity: IdentityService) -> None:
        self._identity = identity

    async def Authenticate(
        self, request: identity_pb2.AuthenticateRequest, context: Context
    ) -> identity_pb2.Principal:
        principal = await self._identity.authenticate(
            request.token, manages_access=request.manages_access
        )
        return _principal(principal)

    async def Authorize(
        self, request: identity_pb2.AuthorizeRequest, context: Context
    ) -> identity_pb2.AuthorizeResponse:
        principal = await self._identity.authenticate(request.token)
        if request.stack_id:
            authorization = await self._identity.authorize_stack(
                principal,
                request.organization,
                StackRef(request.stack_id, request.stack_owner_login),
                _stack_permission(request.minimum_stack_permission),
                manages_access=request.manages_access,
            )
        else:
            authorization = await self._identity.authorize(
                principal,
                request.token,
                request.organization,
                _role(request.minimum_role),
                create_if_missing=request.create_organization_if_missing,
                manages_access=request.manages_access,
            )
        return identity_pb2.AuthorizeResponse(
            principal=_principal(authorization.principal),
            role=_ENUM_BY_ROLE[authorization.role],
            organization_created=authorization.is_organization_created,
            stack_permission=_permission_enum(authorization.stack_permission),
        )

    async def GetBootstrapStatus(
        self, request: identity_pb2.GetBootstrapStatusRequest, context: Context
    ) -> identity_pb2.GetBootstrapStatusResponse:
        status = await self._identity.bootstrap_status()
        return identity_pb2.GetBootstrapStatusResponse(
            is_bootstrap_needed=status.is_bootstrap_needed,
            login_methods=status.login_methods,
            has_organization=status.has_organization,
        )

    async def BootstrapFirstAdmin(
        self, request: identity_pb2.BootstrapFirstAdminRequest, context: Context
    ) -> identity_pb2.BootstrapFirstAdminResponse:
        created = await self._identity.bootstrap_first_admin(
            NewUser(login=request.login, name=request.name, email=request.email),
            request.organization,
        )
        return identity_pb2.BootstrapFirstAdminResponse(
            user=_user(created.user),
            organization=_organization(created.organization),
            token=created.token,
        )

    async def CreateUser(
        self, request: identity_pb2.CreateUserRequest, context: Context
    ) -> identity_pb2.User:
        user = await self._identity.create_user(
            NewUser(login=request.login, name=request.name, email=request.email),
            with_personal_organization=request.create_personal_organization,
        )
        return _user(user)

    async def CreateOrganization(
        self, request: identity_pb2.CreateOrganizationRequest, context: Context
    ) -> identity_pb2.Organization:
        org = await self._identity.create_organization(request.name, request.admin_login)
        return _organization(org)

    async def SetMembership(
        self, request: identity_pb2.SetMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        membership = await self._identity.set_membership(
            request.organization, request.user_login, _role(request.role)
        )
        return _membership(membership)

    async def ListMembers(
        self, request: identity_pb2.ListMembersRequest, context: Context
    ) -> identity_pb2.ListMembersResponse:
        members = await self._identity.list_members(request.organization)
        return identity_pb2.ListMembersResponse(members=[_member(m) for m in members])

    async def CheckOrganizationRole(
        self, request: identity_pb2.CheckOrganizationRoleRequest, context: Context
    ) -> identity_pb2.CheckOrganizationRoleResponse:
        role = await self._identity.check_organization_role(
            request.token_id, request.organization, _role(request.minimum_role)
        )
        return identity_pb2.CheckOrganizationRoleResponse(role=_ENUM_BY_ROLE[role])

    async def GetOrganization(
        self, request: identity_pb2.GetOrganizationRequest, context: Context
    ) -> identity_pb2.OrganizationDetails:
        return _details(await self._identity.get_organization(request.organization))

    async def UpdateOrganization(
        self, request: identity_pb2.UpdateOrganizationRequest, context: Context
    ) -> identity_pb2.OrganizationDetails:
        default = (
            validate_default_permission(request.default_stack_permission)
            if request.HasField("default_stack_permission")
            else None
        )
        details = await self._identity.update_organization(request.organization, default)
        return _details(details)

    async def AddMember(
        self, request: identity_pb2.MemberRequest, context: Context
    ) -> identity_pb2.Member:
        member = await self._identity.add_member(
            request.organization, request.user_login, _role(request.role)
        )
        return _member(member)

    async def UpdateMember(
        self, request: identity_pb2.MemberRequest, context: Context
    ) -> identity_pb2.Member:
        member = await self._identity.update_member(
            request.organization, request.user_login, _role(request.role)
        )
        return _member(member)

    async def RemoveMember(
        self, request: identity_pb2.RemoveMemberRequest, context: Context
    ) -> identity_pb2.RemoveMemberResponse:
        await self._identity.remove_member(request.organization, request.user_login)
        return identity_pb2.RemoveMemberResponse()

    async def CreateInvites(
        self, request: identity_pb2.CreateInvitesRequest, context: Context
    ) -> identity_pb2.CreateInvitesResponse:
        targets = [(target.recipient, _role(target.role)) for target in request.targets]
        invites = await self._identity.create_invites(
            request.organization, targets, request.invited_by
        )
        return identity_pb2.CreateInvitesResponse(invites=[_invite(i) for i in invites])

    async def ListInvites(
        self, request: identity_pb2.ListInvitesRequest, context: Context
    ) -> identity_pb2.ListInvitesResponse:
        invites = await self._identity.list_invites(
            organization=request.organization, login=request.user_login
        )
        return identity_pb2.ListInvitesResponse(invites=[_invite(i) for i in invites])

    async def AcceptInvite(
        self, request: identity_pb2.AcceptInviteRequest, context: Context
    ) -> identity_pb2.Membership:
        membership = await self._identity.accept_invite(
            request.organization, request.invite_id, request.user_login
        )
        return _membership(membership)

    async def CancelInvite(
        self, request: identity_pb2.CancelInviteRequest, context: Context
    ) -> identity_pb2.CancelInviteResponse:
        await self._identity.cancel_invite(request.organization, request.invite_id)
        return identity_pb2.CancelInviteResponse()

    async def CreateTeam(
        self, request: identity_pb2.CreateTeamRequest, context: Context
    ) -> identity_pb2.Team:
        team = await self._identity.create_team(
            request.organization,
            request.name,
            request.display_name,
            request.description,
            request.creator_login,
        )
        return _team(team)

    async def ListTeams(
        self, request: identity_pb2.ListTeamsRequest, context: Context
    ) -> identity_pb2.ListTeamsResponse:
        teams = await self._identity.list_teams(request.organization)
        return identity_pb2.ListTeamsResponse(teams=[_team(t) for t in teams])

    async def GetTeam(
        self, request: identity_pb2.GetTeamRequest, context: Context
    ) -> identity_pb2.Team:
        return _team(await self._identity.get_team(request.organization, request.name))

    async def UpdateTeam(
        self, request: identity_pb2.UpdateTeamRequest, context: Context
    ) -> identity_pb2.Team:
        change = _team_change(request)
        return _team(await self._identity.update_team(request.organization, request.name, change))

    async def DeleteTeam(
        self, request: identity_pb2.DeleteTeamRequest, context: Context
    ) -> identity_pb2.DeleteTeamResponse:
        await self._identity.delete_team(request.organization, request.name)
        return identity_pb2.DeleteTeamResponse()

    async def ListMemberTeams(
        self, request: identity_pb2.ListMemberTeamsRequest, context: Context
    ) -> identity_pb2.ListTeamsResponse:
        teams = await self._identity.list_member_teams(request.organization, request.user_login)
        return identity_pb2.ListTeamsResponse(teams=[_team(t) for t in teams])

    async def SetTeamStackPermission(
        self, request: identity_pb2.SetTeamStackPermissionRequest, context: Context
    ) -> identity_pb2.StackGrantsResponse:
        grants = await self._identity.set_team_stack_permission(
            request.organization,
            request.team,
            request.stack_id,
            validate_grant_or_none(request.permission),
        )
        return _grants(grants)

    async def SetUserStackPermission(
        self, request: identity_pb2.SetUserStackPermissionRequest, context: Context
    ) -> identity_pb2.StackGrantsResponse:
        grants = await self._identity.set_user_stack_permission(
            request.organization,
            request.user_login,
            request.stack_id,
            validate_grant_or_none(request.permission),
        )
        return _grants(grants)

    async def ListStackGrants(
        self, request: identity_pb2.ListStackGrantsRequest, context: Context
    ) -> identity_pb2.StackGrantsResponse:
        grants = await self._identity.list_stack_grants(
            request.organization, request.stack_id, request.viewer_login
        )
        return _grants(grants)

    async def GetMemberStackPermissions(
        self, request: identity_pb2.GetMemberStackPermissionsRequest, context: Context
    ) -> identity_pb2.MemberStackPermissions:
        found = await self._identity.member_stack_permissions(
            request.organization,
            request.user_login,
            StackRef(request.stack_id, request.stack_owner_login),
        )
        return identity_pb2.MemberStackPermissions(
            user=_user(found.user),
            role=_ENUM_BY_ROLE[found.role],
            organization_default=_permission_enum(found.organization_default),
            teams=[_team_grant(t) for t in found.teams],
            explicit_permission=_permission_enum(found.explicit),
            effective_permission=_permission_enum(found.effective),
        )

    async def PurgeStackGrants(
        self, request: identity_pb2.PurgeStackGrantsRequest, context: Context
    ) -> identity_pb2.PurgeStackGrantsResponse:
        await self._identity.purge_stack_grants(request.stack_id)
        return identity_pb2.PurgeStackGrantsResponse()

    async def FilterReadableStacks(
        self, request: identity_pb2.FilterReadableStacksRequest, context: Context
    ) -> identity_pb2.FilterReadableStacksResponse:
        stack_ids = await self._identity.filter_readable_stacks(
            request.token,
            [
                (stack.organization, StackRef(stack.stack_id, stack.owner_login))
                for stack in request.stacks
            ],
        )
        return identity_pb2.FilterReadableStacksResponse(stack_ids=stack_ids)

    async def CreateAccessToken(
        self, request: identity_pb2.CreateAccessTokenRequest, context: Context
    ) -> identity_pb2.CreateAccessTokenResponse:
        name = validate_text("token name", request.name, MAX_TOKEN_NAME_LENGTH)
        description = validate_text("description", request.description, MAX_DESCRIPTION_LENGTH)
        issued = await self._identity.create_access_token(
            _scope(request.scope, default_login=request.user_login),
            name=name,
            description=description,
            created_by=request.user_login,
            expires_at_unix=request.expires_at,
            is_admin=request.admin,
        )
        return identity_pb2.CreateAccessTokenResponse(token_id=issued.id, token=issued.token)

    async def ListAccessTokens(
        self, request: identity_pb2.ListAccessTokensRequest, context: Context
    ) -> identity_pb2.ListAccessTokensResponse:
        tokens = await self._identity.list_access_tokens(
            _scope(request.scope), include_revoked=request.include_revoked
        )
        return identity_pb2.ListAccessTokensResponse(tokens=[_access_token(t) for t in tokens])

    async def RevokeAccessToken(
        self, request: identity_pb2.TokenRequest, context: Context
    ) -> identity_pb2.AccessToken:
        revoked = await self._identity.revoke_access_token(_scope(request.scope), request.token_id)
        return _access_token(revoked)

    async def RotateAccessToken(
        self, request: identity_pb2.TokenRequest, context: Context
    ) -> identity_pb2.CreateAccessTokenResponse:
        issued = await self._identity.rotate_access_token(_scope(request.scope), request.token_id)
        return identity_pb2.CreateAccessTokenResponse(token_id=issued.id, token=issued.token)

    async def RegisterUser(
        self, request: identity_pb2.RegisterUserRequest, context: Context
    ) -> identity_pb2.RegisterUserResponse:
        user, token = await self._identity.register_user(
            caller_from_context(context).login,
            NewUser(
                login=request.login,
                name=request.name,
                email=request.email,
                avatar_url=request.avatar_url,
            ),
            issue_token=request.issue_token,
        )
        return identity_pb2.RegisterUserResponse(
            user=_user(user),
            token=token.token if token else "",
            token_id=token.id if token else "",
        )

    async def ListUsers(
        self, request: identity_pb2.ListUsersRequest, context: Context
    ) -> identity_pb2.ListUsersResponse:
        page = await self._identity.list_users(
            caller_from_context(context).login,
            UserQuery(
                text=request.query,
                state=_USER_STATES.get(request.state, UserState.ANY),
                page_size=request.page_size or _DEFAULT_USER_PAGE,
                after_login=request.continuation_token,
            ),
        )
        return identity_pb2.ListUsersResponse(
            users=[_user(u) for u in page.users], continuation_token=page.next_after
        )

    async def GetUser(
        self, request: identity_pb2.GetUserRequest, context: Context
    ) -> identity_pb2.User:
        return _user(
            await self._identity.get_user(caller_from_context(context).login, request.login)
        )

    async def SetUserDisabled(
        self, request: identity_pb2.SetUserDisabledRequest, context: Context
    ) -> identity_pb2.SetUserDisabledResponse:
        user, token = await self._identity.set_user_disabled(
            caller_from_context(context).login,
            request.login,
            is_disabled=request.disabled,
            issue_token=request.issue_token,
        )
        return identity_pb2.SetUserDisabledResponse(
            user=_user(user),
            token=token.token if token else "",
            token_id=token.id if token else "",
        )

    async def UpdateProfile(
        self, request: identity_pb2.UpdateProfileRequest, context: Context
    ) -> identity_pb2.User:
        change = ProfileChange(
            name=request.name if request.HasField("name") else None,
            email=request.email if request.HasField("email") else None,
            avatar_url=request.avatar_url if request.HasField("avatar_url") else None,
        )
        return _user(
            await self._identity.update_profile(caller_from_context(context).login, change)
        )

    async def GetInviteLink(
        self, request: identity_pb2.GetInviteLinkRequest, context: Context
    ) -> identity_pb2.InviteLink:
        link = await self._identity.invite_link(request.secret)
        return identity_pb2.InviteLink(
            organization=link.organization,
            role=_ENUM_BY_ROLE[link.role],
            email=link.email,
            invited_by=link.invited_by,
            expires_at=_timestamp(link.expires_at),
        )

    async def RedeemInviteLink(
        self, request: identity_pb2.RedeemInviteLinkRequest, context: Context
    ) -> identity_pb2.RedeemInviteLinkResponse:
        joined = await self._identity.redeem_invite_link(
            request.secret, request.login, request.name
        )
        return identity_pb2.RedeemInviteLinkResponse(
            user=_user(joined.user),
            membership=_membership(joined.membership),
            token=joined.token.token,
            token_id=joined.token.id,
        )


_USER_STATES = {
    identity_pb2.USER_STATE_ENABLED: UserState.ENABLED,
    identity_pb2.USER_STATE_DISABLED: UserState.DISABLED,
}
_DEFAULT_USER_PAGE = 100


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Migrate the tables, seed the admin token when configured, and serve IdentityService."""
    database = await open_database(settings, "identity", MIGRATIONS, Base.metadata)
    clock = clock or SystemClock()
    identity = IdentityService(
        IdentityStore(database.sessions, clock, database.reads),
        TeamStore(database.sessions, clock, database.reads),
        clock,
        OrganizationAutocreate(settings.allow_organization_autocreate),
        users=UserStore(database.sessions, clock),
        invite_ttl=timedelta(hours=settings.invite_ttl_hours),
    )
    try:
        if settings.admin_token is not None:
            await identity.seed_admin_token(settings.admin_token.get_secret_value())
    except BaseException:
        await database.engine.dispose()
        raise
    servicer = IdentityServicer(identity)
    audit, pruner = audit_service(database.sessions, clock, settings.audit_retention_days)
    console_sessions = console_session_service(database.sessions, clock)
    oidc = oidc_service(database.sessions, clock, settings)

    def register(server: grpc.aio.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server)
        console_pb2_grpc.add_ConsoleSessionServiceServicer_to_server(console_sessions, server)
        oidc_pb2_grpc.add_OidcServiceServicer_to_server(oidc, server)

    pruner.start()
    return await serve_service(
        name="identity",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME, AUDIT_SERVICE_NAME, SESSION_SERVICE_NAME, OIDC_SERVICE_NAME],
        # Closers run last to first: the pruner stops before the database goes.
        closers=[database.engine.dispose, pruner.stop],
        dependencies=[database_dependency(database.engine)],
    )


def _role(value: common_pb2.Role.ValueType) -> Role:
    role = _ROLE_BY_ENUM.get(value)
    if role is None:
        raise InvalidArgument("Bad Request: a role (viewer, member or admin) is required")
    return role


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _optional_timestamp(moment: datetime | None) -> int:
    return 0 if moment is None else _timestamp(moment)


def _stack_permission(value: int) -> StackPermission:
    try:
        return StackPermission(value)
    except ValueError:
        raise InvalidArgument(f"Bad Request: invalid stack permission {value}") from None


def _permission_enum(permission: StackPermission) -> identity_pb2.StackPermission.ValueType:
    return identity_pb2.StackPermission.ValueType(int(permission))


def _scope(message: identity_pb2.TokenScope, default_login: str = "") -> TokenScope:
    """A token scope; unset means the personal tokens of `default_login`."""
    kind = _KIND_BY_ENUM.get(message.kind, TokenKind.PERSONAL)
    if kind is TokenKind.PERSONAL:
        login = message.user_login or default_login
        if not login:
            raise InvalidArgument("Bad Request: personal tokens need a user")
        return TokenScope(kind, user_login=login)
    if not message.organization or (kind is TokenKind.TEAM and not message.team):
        raise InvalidArgument("Bad Request: organization and team tokens need their owner")
    return TokenScope(kind, organization=message.organization, team=message.team)


def _team_change(request: identity_pb2.UpdateTeamRequest) -> TeamChange:
    action = _MEMBER_ACTIONS.get(request.member_action)
    check_member_action(action, request.member_login)
    return TeamChange(
        display_name=(
            validate_text("display name", request.display_name, MAX_DISPLAY_NAME_LENGTH)
            if request.HasField("display_name")
            else None
        ),
        description=(
            validate_text("description", request.description, MAX_DESCRIPTION_LENGTH)
            if request.HasField("description")
            else None
        ),
        member_action=action,
        member_login=request.member_login,
        set_stack=(
            StackGrant(
                stack_id=request.set_stack.stack_id,
                permission=validate_grant(request.set_stack.permission),
            )
            if request.HasField("set_stack")
            else None
        ),
        remove_stack_id=request.remove_stack_id,
    )


def _grants(
    grants: tuple[list[TeamStackGrant], list[UserStackGrant]],
) -> identity_pb2.StackGrantsResponse:
    teams, users = grants
    return identity_pb2.StackGrantsResponse(
        teams=[_team_grant(t) for t in teams], users=[_user_grant(u) for u in users]
    )


def _details(details: OrganizationDetails) -> identity_pb2.OrganizationDetails:
    return identity_pb2.OrganizationDetails(
        organization=_organization(details.organization),
        default_stack_permission=_permission_enum(details.default_stack_permission),
        member_count=details.member_count,
    )


def _member(member: Member) -> identity_pb2.Member:
    return identity_pb2.Member(
        user=_user(member.user),
        role=_ENUM_BY_ROLE[member.role],
        joined_at=_timestamp(member.joined_at),
        teams=member.teams,
    )


def _invite(invite: Invite) -> identity_pb2.Invite:
    return identity_pb2.Invite(
        id=invite.id,
        organization=invite.organization,
        user=None if invite.user is None else _user(invite.user),
        role=_ENUM_BY_ROLE[invite.role],
        invited_by=invite.invited_by,
        created_at=_timestamp(invite.created_at),
        email=invite.email,
        expires_at=_optional_timestamp(invite.expires_at),
        link_secret=invite.link_secret,
    )


def _team(team: Team) -> identity_pb2.Team:
    return identity_pb2.Team(
        id=team.id,
        organization=team.organization,
        name=team.name,
        display_name=team.display_name,
        description=team.description,
        created_at=_timestamp(team.created_at),
        members=[
            identity_pb2.TeamMember(user=_user(m.user), role=_ENUM_BY_TEAM_ROLE[m.role])
            for m in team.members
        ],
        stacks=[
            identity_pb2.StackGrant(stack_id=g.stack_id, permission=_permission_enum(g.permission))
            for g in team.stacks
        ],
    )


def _team_grant(grant: TeamStackGrant) -> identity_pb2.TeamStackGrant:
    return identity_pb2.TeamStackGrant(
        team=_team(grant.team),
        permission=_permission_enum(grant.permission),
        is_member=grant.is_member,
    )


def _user_grant(grant: UserStackGrant) -> identity_pb2.UserStackGrant:
    return identity_pb2.UserStackGrant(
        user=_user(grant.user), permission=_permission_enum(grant.permission)
    )


def _access_token(token: AccessToken) -> identity_pb2.AccessToken:
    return identity_pb2.AccessToken(
        id=token.id,
        name=token.name,
        description=token.description,
        created_at=_timestamp(token.created_at),
        last_used_at=_optional_timestamp(token.last_used_at),
        expires_at=_optional_timestamp(token.expires_at),
        revoked_at=_optional_timestamp(token.revoked_at),
        rotated_at=_optional_timestamp(token.rotated_at),
        admin=token.is_admin,
        created_by=token.created_by,
        kind=_ENUM_BY_KIND[token.kind],
    )


def _user(user: User) -> identity_pb2.User:
    return identity_pb2.User(
        id=user.id,
        login=user.login,
        name=user.name,
        email=user.email,
        is_site_admin=user.is_site_admin,
        created_at=_timestamp(user.created_at),
        avatar_url=user.avatar_url,
        disabled_at=_optional_timestamp(user.disabled_at),
    )


def _organization(org: Organization) -> identity_pb2.Organization:
    return identity_pb2.Organization(
        id=org.id, name=org.name, created_at=_timestamp(org.created_at)
    )


def _membership(membership: Membership) -> identity_pb2.Membership:
    return identity_pb2.Membership(
        organization=membership.organization,
        role=_ENUM_BY_ROLE[membership.role],
        user_login=membership.user_login,
    )


def _principal(principal: Principal) -> identity_pb2.Principal:
    user = principal.user
    return identity_pb2.Principal(
        user_id=user.id,
        login=user.login,
        name=user.name,
        email=user.email,
        avatar_url=user.avatar_url,
        is_site_admin=user.is_site_admin,
        memberships=[_membership(m) for m in principal.memberships],
        token_info=identity_pb2.TokenInfo(
            name=principal.token_info.name,
            organization=principal.token_info.organization,
            team=principal.token_info.team,
            token_id=principal.token_info.id,
            kind=_ENUM_BY_KIND[principal.token_info.kind],
        ),
        default_organization=principal.default_organization,
    )
