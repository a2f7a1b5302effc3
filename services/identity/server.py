"""gRPC edge of the identity service: protobuf in, store calls and domain rules, protobuf out."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from pydantic import SecretStr

from protos.cairn.v1 import audit_pb2_grpc, common_pb2, identity_pb2, identity_pb2_grpc
from services.common.auth import hash_token, new_token
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from services.common.logging import get_logger
from services.common.service import RunningService, open_database, serve_service
from services.identity.audit_server import AUDIT_SERVICE_NAME, audit_service
from services.identity.domain import (
    ADMIN_TOKEN_NAME,
    BOOTSTRAP_TOKEN_NAME,
    DEFAULT_ADMIN_LOGIN,
    LOGIN_METHODS,
    MAX_TOKEN_NAME_LENGTH,
    UNAUTHORIZED,
    Authorization,
    Membership,
    NewUser,
    Organization,
    Principal,
    Role,
    User,
    require_role,
    role_in,
    validate_name,
    validate_new_user,
    validate_text,
    with_membership,
)
from services.identity.models import Base
from services.identity.store import IdentityStore

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]

log = get_logger("cairn.identity")

_ROLE_BY_ENUM: dict[common_pb2.Role.ValueType, Role] = {
    common_pb2.ROLE_VIEWER: Role.VIEWER,
    common_pb2.ROLE_MEMBER: Role.MEMBER,
    common_pb2.ROLE_ADMIN: Role.ADMIN,
}
_ENUM_BY_ROLE = {role: value for value, role in _ROLE_BY_ENUM.items()}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, store: IdentityStore) -> None:
        self._store = store

    async def Authenticate(
        self, request: identity_pb2.AuthenticateRequest, context: Context
    ) -> identity_pb2.Principal:
        return _principal(await self._authenticate(request.token))

    async def Authorize(
        self, request: identity_pb2.AuthorizeRequest, context: Context
    ) -> identity_pb2.AuthorizeResponse:
        principal = await self._authenticate(request.token)
        minimum = _role(request.minimum_role)
        authorization = await self._authorize(
            principal,
            request.token,
            request.organization,
            minimum,
            create_if_missing=request.create_organization_if_missing,
        )
        return identity_pb2.AuthorizeResponse(
            principal=_principal(authorization.principal),
            role=_ENUM_BY_ROLE[authorization.role],
            organization_created=authorization.is_organization_created,
        )

    async def GetBootstrapStatus(
        self, request: identity_pb2.GetBootstrapStatusRequest, context: Context
    ) -> identity_pb2.GetBootstrapStatusResponse:
        return identity_pb2.GetBootstrapStatusResponse(
            is_bootstrap_needed=not await self._store.has_users(),
            login_methods=LOGIN_METHODS,
        )

    async def BootstrapFirstAdmin(
        self, request: identity_pb2.BootstrapFirstAdminRequest, context: Context
    ) -> identity_pb2.BootstrapFirstAdminResponse:
        admin = validate_new_user(
            NewUser(
                login=request.login or DEFAULT_ADMIN_LOGIN,
                name=request.name,
                email=request.email,
                is_site_admin=True,
            )
        )
        organization = validate_name("organization name", request.organization or admin.login)
        token = new_token()
        user, org = await self._store.bootstrap(
            admin, organization, BOOTSTRAP_TOKEN_NAME, hash_token(token)
        )
        log.info("first_admin_created", login=user.login, organization=org.name)
        return identity_pb2.BootstrapFirstAdminResponse(
            user=_user(user), organization=_organization(org), token=token
        )

    async def CreateUser(
        self, request: identity_pb2.CreateUserRequest, context: Context
    ) -> identity_pb2.User:
        new = validate_new_user(
            NewUser(login=request.login, name=request.name, email=request.email)
        )
        user = await self._store.create_user(
            new, with_personal_organization=request.create_personal_organization
        )
        return _user(user)

    async def CreateOrganization(
        self, request: identity_pb2.CreateOrganizationRequest, context: Context
    ) -> identity_pb2.Organization:
        name = validate_name("organization name", request.name)
        return _organization(await self._store.create_organization(name, request.admin_login))

    async def SetMembership(
        self, request: identity_pb2.SetMembershipRequest, context: Context
    ) -> identity_pb2.Membership:
        role = _role(request.role)
        membership = await self._store.set_membership(
            request.organization, request.user_login, role
        )
        return _membership(membership)

    async def ListMembers(
        self, request: identity_pb2.ListMembersRequest, context: Context
    ) -> identity_pb2.ListMembersResponse:
        members = await self._store.list_members(request.organization)
        return identity_pb2.ListMembersResponse(
            members=[
                identity_pb2.Member(user=_user(user), role=_ENUM_BY_ROLE[role])
                for user, role in members
            ]
        )

    async def CreateAccessToken(
        self, request: identity_pb2.CreateAccessTokenRequest, context: Context
    ) -> identity_pb2.CreateAccessTokenResponse:
        name = validate_text("token name", request.name, MAX_TOKEN_NAME_LENGTH)
        token = new_token()
        token_id = await self._store.create_access_token(
            request.user_login, name, hash_token(token)
        )
        return identity_pb2.CreateAccessTokenResponse(token_id=token_id, token=token)

    async def _authenticate(self, token: str) -> Principal:
        if not token:
            raise Unauthenticated(UNAUTHORIZED)
        return await self._store.authenticate(hash_token(token))

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
            if await self._store.create_organization_if_missing(organization, principal.user.id):
                log.info("organization_created", organization=organization)
                joined = with_membership(principal, organization, Role.ADMIN)
                return Authorization(joined, Role.ADMIN, is_organization_created=True)
            # It exists now: created before, or by a concurrent caller that may be this user.
            principal = await self._authenticate(token)
            role = role_in(principal, organization)
        return Authorization(principal, require_role(organization, role, minimum))


async def seed_admin_token(store: IdentityStore, admin_token: SecretStr | None) -> None:
    """On an empty database, create the first admin with the configured access token."""
    if admin_token is None or not admin_token.get_secret_value():
        return
    token_hash = hash_token(admin_token.get_secret_value())
    admin = NewUser(login=DEFAULT_ADMIN_LOGIN, is_site_admin=True)
    try:
        await store.bootstrap(admin, DEFAULT_ADMIN_LOGIN, ADMIN_TOKEN_NAME, token_hash)
    except FailedPrecondition:
        # Users exist: a restart, another replica won the race, or bootstrap came first.
        if not await store.has_token_hash(token_hash):
            log.warning(
                "admin_token_ignored",
                reason="users already exist and no access token matches CAIRN_ADMIN_TOKEN",
            )
        return
    log.info("first_admin_created", login=DEFAULT_ADMIN_LOGIN, organization=DEFAULT_ADMIN_LOGIN)


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Migrate the tables, seed the admin token when configured, and serve IdentityService."""
    database = await open_database(settings, "identity", MIGRATIONS, Base.metadata)
    store = IdentityStore(database.sessions, clock or SystemClock())
    try:
        await seed_admin_token(store, settings.admin_token)
    except BaseException:
        await database.engine.dispose()
        raise
    servicer = IdentityServicer(store)
    audit, pruner = audit_service(
        database.sessions, clock or SystemClock(), settings.audit_retention_days
    )

    def register(server: grpc.aio.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server)

    pruner.start()
    return await serve_service(
        name="identity",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME, AUDIT_SERVICE_NAME],
        # Closers run last to first: the pruner stops before the database goes.
        closers=[database.engine.dispose, pruner.stop],
    )


def _role(value: common_pb2.Role.ValueType) -> Role:
    role = _ROLE_BY_ENUM.get(value)
    if role is None:
        raise InvalidArgument("Bad Request: a role (viewer, member or admin) is required")
    return role


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _user(user: User) -> identity_pb2.User:
    return identity_pb2.User(
        id=user.id,
        login=user.login,
        name=user.name,
        email=user.email,
        is_site_admin=user.is_site_admin,
        created_at=_timestamp(user.created_at),
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
        is_site_admin=user.is_site_admin,
        memberships=[_membership(m) for m in principal.memberships],
        token_info=identity_pb2.TokenInfo(
            name=principal.token_info.name,
            organization=principal.token_info.organization,
            team=principal.token_info.team,
            token_id=principal.token_info.id,
        ),
        default_organization=principal.default_organization,
    )
