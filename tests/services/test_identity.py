"""The identity service over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from protos.cairn.v1 import common_pb2, identity_pb2, identity_pb2_grpc
from services.common.auth import hash_token
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_engine, create_migration_engine, session_factory
from services.common.migrations import version_table
from services.common.service import RunningService
from services.identity import server as identity_server
from services.identity.audit.models import AuditEventRow
from services.identity.models import (
    AccessTokenRow,
    Base,
    BootstrapRow,
    MembershipRow,
    OrganizationRow,
    UserRow,
)
from services.identity.store import IdentityStore
from tests.conftest import signed_channel

VIEWER = common_pb2.ROLE_VIEWER
MEMBER = common_pb2.ROLE_MEMBER
ADMIN = common_pb2.ROLE_ADMIN
UNAUTHORIZED = "Unauthorized: No credentials provided or are invalid."
ALREADY_BOOTSTRAPPED = "Conflict: the first admin has already been created."
ADMIN_TOKEN = "pul-seeded-admin-token-0123456789abcdef01"
HEX_ID = re.compile(r"[0-9a-f]{32}")
TABLES = (UserRow, OrganizationRow, MembershipRow, AccessTokenRow, BootstrapRow)


@dataclass
class Harness:
    stub: identity_pb2_grpc.IdentityServiceAsyncStub
    settings: Settings
    clock: ManualClock
    engine: AsyncEngine
    # A second store on the same database, for what no RPC offers yet (revocation, expiry).
    store: IdentityStore


@asynccontextmanager
async def serving(
    settings: Settings, clock: ManualClock | None = None
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceAsyncStub]:
    service = await identity_server.start(settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(settings, f"127.0.0.1:{service.port}")
    try:
        yield identity_pb2_grpc.IdentityServiceStub(channel)
    finally:
        await channel.close(None)
        await service.stop(0)


@pytest.fixture
def autocreate() -> str:
    """CAIRN_ALLOW_ORGANIZATION_AUTOCREATE; a test parametrizes `autocreate` for another."""
    return "own"


@pytest.fixture
async def harness(any_settings: Settings, autocreate: str) -> AsyncIterator[Harness]:
    clock = ManualClock()
    any_settings = any_settings.model_copy(update={"allow_organization_autocreate": autocreate})
    async with serving(any_settings, clock) as stub:
        engine = create_engine(any_settings.resolved_database_url())
        try:
            store = IdentityStore(session_factory(engine), clock)
            yield Harness(stub, any_settings, clock, engine, store)
        finally:
            await engine.dispose()


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def count(engine: AsyncEngine, model: type[Base]) -> int:
    async with engine.connect() as connection:
        found = await connection.scalar(select(func.count()).select_from(model.__table__))
    return int(found or 0)


async def counts(engine: AsyncEngine) -> dict[str, int]:
    return {model.__tablename__: await count(engine, model) for model in TABLES}


async def new_user(
    h: Harness,
    login: str,
    *,
    personal: bool = False,
    roles: dict[str, common_pb2.Role.ValueType] | None = None,
) -> str:
    """A user, maybe with a personal organization and roles elsewhere; returns a token."""
    await h.stub.CreateUser(
        identity_pb2.CreateUserRequest(login=login, create_personal_organization=personal)
    )
    for organization, role in (roles or {}).items():
        await h.stub.SetMembership(
            identity_pb2.SetMembershipRequest(
                organization=organization, user_login=login, role=role
            )
        )
    reply = await h.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login=login, name="tests")
    )
    token: str = reply.token
    return token


async def authenticate(h: Harness, token: str) -> identity_pb2.Principal:
    return await h.stub.Authenticate(identity_pb2.AuthenticateRequest(token=token))


def authorize(
    h: Harness,
    token: str,
    organization: str,
    minimum_role: common_pb2.Role.ValueType,
    *,
    create: bool = False,
) -> Awaitable[identity_pb2.AuthorizeResponse]:
    return h.stub.Authorize(
        identity_pb2.AuthorizeRequest(
            token=token,
            organization=organization,
            minimum_role=minimum_role,
            create_organization_if_missing=create,
        )
    )


def memberships(principal: identity_pb2.Principal) -> list[tuple[str, int, str]]:
    return [(m.organization, m.role, m.user_login) for m in principal.memberships]


def outcomes(results: list[Any]) -> list[Any]:
    """Successful replies stay as they are; RPC errors become their status codes."""
    return [r.code() if isinstance(r, grpc.aio.AioRpcError) else r for r in results]


# Bootstrap


async def test_bootstrap_creates_the_first_admin_once(harness: Harness) -> None:
    status = await harness.stub.GetBootstrapStatus(identity_pb2.GetBootstrapStatusRequest())
    assert status.is_bootstrap_needed
    assert list(status.login_methods) == ["token"]

    reply = await harness.stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest())

    assert (reply.user.login, reply.user.is_site_admin) == ("admin", True)
    assert HEX_ID.fullmatch(reply.user.id)
    assert reply.user.created_at == int(harness.clock.now())
    assert reply.organization.name == "admin"
    assert reply.token.startswith("pul-")
    principal = await authenticate(harness, reply.token)
    assert (principal.user_id, principal.login, principal.is_site_admin) == (
        reply.user.id,
        "admin",
        True,
    )
    assert memberships(principal) == [("admin", ADMIN, "admin")]
    assert principal.token_info.name == "bootstrap"
    assert principal.default_organization == "admin"
    status = await harness.stub.GetBootstrapStatus(identity_pb2.GetBootstrapStatusRequest())
    assert not status.is_bootstrap_needed

    again = await rpc_error(
        harness.stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest(login="other"))
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert again.details() == ALREADY_BOOTSTRAPPED
    assert await counts(harness.engine) == {
        "identity_users": 1,
        "identity_organizations": 1,
        "identity_memberships": 1,
        "identity_access_tokens": 1,
        "identity_bootstrap": 1,
    }


async def test_bootstrap_takes_login_organization_name_and_email(harness: Harness) -> None:
    reply = await harness.stub.BootstrapFirstAdmin(
        identity_pb2.BootstrapFirstAdminRequest(
            login="root", name="Root User", email="root@example.com"
        )
    )
    assert (reply.user.login, reply.user.name, reply.user.email) == (
        "root",
        "Root User",
        "root@example.com",
    )
    # The organization defaults to the login.
    assert reply.organization.name == "root"
    principal = await authenticate(harness, reply.token)
    assert (principal.name, principal.email) == ("Root User", "root@example.com")


async def test_bootstrap_into_a_named_organization(harness: Harness) -> None:
    reply = await harness.stub.BootstrapFirstAdmin(
        identity_pb2.BootstrapFirstAdminRequest(login="root", organization="ops")
    )
    principal = await authenticate(harness, reply.token)
    assert memberships(principal) == [("ops", ADMIN, "root")]
    assert principal.default_organization == "ops"


async def test_concurrent_bootstraps_have_exactly_one_winner(harness: Harness) -> None:
    calls = [
        harness.stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest(login=f"admin{i}"))
        for i in range(6)
    ]
    results = outcomes(await asyncio.gather(*calls, return_exceptions=True))

    winners = [r for r in results if isinstance(r, identity_pb2.BootstrapFirstAdminResponse)]
    assert len(winners) == 1
    assert [r for r in results if r is not winners[0]] == [grpc.StatusCode.FAILED_PRECONDITION] * 5
    principal = await authenticate(harness, winners[0].token)
    assert principal.login == winners[0].user.login
    assert await count(harness.engine, UserRow) == 1
    assert await count(harness.engine, AccessTokenRow) == 1


async def test_bootstrap_is_refused_once_any_user_exists(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))

    error = await rpc_error(
        harness.stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest())
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == ALREADY_BOOTSTRAPPED
    assert await counts(harness.engine) == {
        "identity_users": 1,
        "identity_organizations": 0,
        "identity_memberships": 0,
        "identity_access_tokens": 0,
        "identity_bootstrap": 0,
    }


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"login": "x y"}, "Bad Request: invalid user login 'x y'"),
        ({"login": "-admin"}, "Bad Request: invalid user login '-admin'"),
        ({"organization": "a/b"}, "Bad Request: invalid organization name 'a/b'"),
        ({"name": "n" * 256}, "Bad Request: name is longer than 255 characters"),
    ],
)
async def test_bootstrap_rejects_bad_input_and_writes_nothing(
    harness: Harness, request_fields: dict[str, str], message: str
) -> None:
    error = await rpc_error(
        harness.stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest(**request_fields))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(message)
    assert set((await counts(harness.engine)).values()) == {0}
    status = await harness.stub.GetBootstrapStatus(identity_pb2.GetBootstrapStatusRequest())
    assert status.is_bootstrap_needed


# Admin-token seeding


async def test_admin_token_seeds_the_first_admin(any_settings: Settings) -> None:
    settings = any_settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    async with serving(settings) as stub:
        principal = await stub.Authenticate(identity_pb2.AuthenticateRequest(token=ADMIN_TOKEN))
        assert (principal.login, principal.is_site_admin) == ("admin", True)
        assert principal.token_info.name == "admin-token"
        assert [(m.organization, m.role) for m in principal.memberships] == [("admin", ADMIN)]
        status = await stub.GetBootstrapStatus(identity_pb2.GetBootstrapStatusRequest())
        assert not status.is_bootstrap_needed
        error = await rpc_error(
            stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest(login="late"))
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    # A restart with the same token changes nothing and warns about nothing.
    with capture_logs() as logs:
        async with serving(settings) as stub:
            again = await stub.Authenticate(identity_pb2.AuthenticateRequest(token=ADMIN_TOKEN))
            assert again.user_id == principal.user_id
    assert [line for line in logs if line["log_level"] == "warning"] == []

    engine = create_engine(settings.resolved_database_url())
    try:
        assert await count(engine, UserRow) == 1
        async with engine.connect() as connection:
            stored = (await connection.execute(select(AccessTokenRow.token_hash))).scalars().all()
        assert stored == [hash_token(ADMIN_TOKEN)]
    finally:
        await engine.dispose()


async def test_admin_token_is_ignored_once_users_exist(any_settings: Settings) -> None:
    async with serving(any_settings) as stub:
        await stub.BootstrapFirstAdmin(identity_pb2.BootstrapFirstAdminRequest(login="root"))

    settings = any_settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    with capture_logs() as logs:
        async with serving(settings) as stub:
            error = await rpc_error(
                stub.Authenticate(identity_pb2.AuthenticateRequest(token=ADMIN_TOKEN))
            )
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    warnings = [line for line in logs if line["log_level"] == "warning"]
    assert [line["event"] for line in warnings] == ["admin_token_ignored"]
    assert ADMIN_TOKEN not in repr(logs)
    engine = create_engine(settings.resolved_database_url())
    try:
        assert await count(engine, UserRow) == 1
        assert await count(engine, AccessTokenRow) == 1
    finally:
        await engine.dispose()


async def test_replicas_starting_together_seed_one_admin(any_settings: Settings) -> None:
    # Migrate first: replicas race here on seeding, not on creating a fresh SQLite file.
    async with serving(any_settings):
        pass
    settings = any_settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    with capture_logs() as logs:
        started = await asyncio.gather(
            *(identity_server.start(settings, host="127.0.0.1", port=0) for _ in range(3)),
            return_exceptions=True,
        )
    try:
        assert [type(s).__name__ for s in started] == ["RunningService"] * 3
        assert [line for line in logs if line["log_level"] == "warning"] == []
        assert [line["event"] for line in logs].count("first_admin_created") == 1
        engine = create_engine(settings.resolved_database_url())
        try:
            assert await count(engine, UserRow) == 1
            assert await count(engine, AccessTokenRow) == 1
        finally:
            await engine.dispose()
    finally:
        for service in started:
            if isinstance(service, RunningService):
                await service.stop(0)


# Authentication


async def test_authenticate_returns_the_principal(harness: Harness) -> None:
    await harness.stub.CreateUser(
        identity_pb2.CreateUserRequest(
            login="alice",
            name="Alice Liddell",
            email="alice@example.com",
            create_personal_organization=True,
        )
    )
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    created = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login="alice", name="laptop")
    )

    principal = await authenticate(harness, created.token)

    assert principal.login == "alice"
    assert HEX_ID.fullmatch(principal.user_id)
    assert (principal.name, principal.email, principal.is_site_admin) == (
        "Alice Liddell",
        "alice@example.com",
        False,
    )
    assert memberships(principal) == [("acme", ADMIN, "alice"), ("alice", ADMIN, "alice")]
    assert (
        principal.token_info.name,
        principal.token_info.organization,
        principal.token_info.team,
    ) == ("laptop", "", "")
    assert principal.default_organization == "alice"


@pytest.mark.parametrize("token", ["", "pul-unknown", "x" * 5000])
async def test_authenticate_rejects_missing_and_unknown_tokens(
    harness: Harness, token: str
) -> None:
    await new_user(harness, "alice")

    error = await rpc_error(authenticate(harness, token))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == UNAUTHORIZED


async def test_a_revoked_token_stops_working(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    first = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login="alice", name="one")
    )
    second = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login="alice", name="two")
    )
    assert (await authenticate(harness, first.token)).login == "alice"

    assert await harness.store.revoke_access_token(first.token_id)
    assert not await harness.store.revoke_access_token(first.token_id)

    error = await rpc_error(authenticate(harness, first.token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == UNAUTHORIZED
    denied = await rpc_error(authorize(harness, first.token, "alice", VIEWER))
    assert denied.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await authenticate(harness, second.token)).token_info.name == "two"


async def test_an_expired_token_stops_working(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    now = datetime.fromtimestamp(harness.clock.now(), tz=UTC)
    token = "pul-expiring-token"
    await harness.store.create_access_token(
        "alice", "short", hash_token(token), expires_at=now + timedelta(hours=1)
    )
    assert (await authenticate(harness, token)).token_info.name == "short"

    harness.clock.advance(3600)

    error = await rpc_error(authenticate(harness, token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == UNAUTHORIZED


async def _last_used_at(engine: AsyncEngine, token_id: str) -> datetime | None:
    async with engine.connect() as connection:
        moment = await connection.scalar(
            select(AccessTokenRow.last_used_at).where(AccessTokenRow.id == token_id)
        )
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_last_use_is_recorded_at_most_once_a_minute(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    created = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login="alice", name="ci")
    )
    assert await _last_used_at(harness.engine, created.token_id) is None
    start = datetime.fromtimestamp(harness.clock.now(), tz=UTC)

    await authenticate(harness, created.token)
    assert await _last_used_at(harness.engine, created.token_id) == start

    harness.clock.advance(59)
    await authenticate(harness, created.token)
    assert await _last_used_at(harness.engine, created.token_id) == start

    harness.clock.advance(1)
    await authenticate(harness, created.token)
    assert await _last_used_at(harness.engine, created.token_id) == start + timedelta(seconds=60)


async def test_default_organization(harness: Harness) -> None:
    for name in ("zeta", "beta", "aaa"):
        await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login=f"owner-{name}"))
        await harness.stub.CreateOrganization(
            identity_pb2.CreateOrganizationRequest(name=name, admin_login=f"owner-{name}")
        )
    personal = await new_user(harness, "erin", personal=True, roles={"aaa": VIEWER})
    others = await new_user(harness, "frank", roles={"zeta": ADMIN, "beta": VIEWER})
    loner = await new_user(harness, "gina")

    assert (await authenticate(harness, personal)).default_organization == "erin"
    principal = await authenticate(harness, others)
    assert principal.default_organization == "beta"
    assert memberships(principal) == [("beta", VIEWER, "frank"), ("zeta", ADMIN, "frank")]
    assert (await authenticate(harness, loner)).default_organization == ""


# Authorization


@pytest.fixture
async def acme(harness: Harness) -> dict[str, str]:
    """Organization acme: alice admin, bob member, carol viewer; mallory is an outsider."""
    alice = await new_user(harness, "alice", personal=True)
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    return {
        "alice": alice,
        "bob": await new_user(harness, "bob", roles={"acme": MEMBER}),
        "carol": await new_user(harness, "carol", roles={"acme": VIEWER}),
        "mallory": await new_user(harness, "mallory", personal=True),
    }


@pytest.mark.parametrize(
    ("login", "minimum", "granted"),
    [
        ("alice", ADMIN, ADMIN),
        ("alice", VIEWER, ADMIN),
        ("bob", MEMBER, MEMBER),
        ("bob", VIEWER, MEMBER),
        ("carol", VIEWER, VIEWER),
    ],
)
async def test_members_with_enough_role_are_authorized(
    harness: Harness,
    acme: dict[str, str],
    login: str,
    minimum: common_pb2.Role.ValueType,
    granted: common_pb2.Role.ValueType,
) -> None:
    reply = await authorize(harness, acme[login], "acme", minimum)

    assert reply.role == granted
    assert not reply.organization_created
    assert reply.principal.login == login
    assert ("acme", granted, login) in memberships(reply.principal)


@pytest.mark.parametrize(
    ("login", "minimum", "label"),
    [("bob", ADMIN, "admin"), ("carol", MEMBER, "member"), ("carol", ADMIN, "admin")],
)
async def test_members_with_a_lower_role_are_forbidden(
    harness: Harness,
    acme: dict[str, str],
    login: str,
    minimum: common_pb2.Role.ValueType,
    label: str,
) -> None:
    error = await rpc_error(authorize(harness, acme[login], "acme", minimum, create=True))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"Forbidden: this requires the {label} role in organization 'acme'"


async def test_outsiders_cannot_tell_whether_an_organization_exists(
    harness: Harness, acme: dict[str, str]
) -> None:
    before = await counts(harness.engine)

    existing = await rpc_error(authorize(harness, acme["mallory"], "acme", VIEWER))
    missing = await rpc_error(authorize(harness, acme["mallory"], "nowhere", VIEWER))
    # Asking to create an organization someone else owns changes nothing.
    taken = await rpc_error(authorize(harness, acme["mallory"], "acme", VIEWER, create=True))

    assert existing.code() == missing.code() == taken.code() == grpc.StatusCode.NOT_FOUND
    assert existing.details() == taken.details() == "Not Found: organization 'acme' not found"
    assert missing.details() == "Not Found: organization 'nowhere' not found"
    assert await counts(harness.engine) == before


@pytest.mark.parametrize("autocreate", ["any"])
async def test_a_missing_organization_is_created_for_the_caller(
    harness: Harness, acme: dict[str, str]
) -> None:
    reply = await authorize(harness, acme["mallory"], "newco", MEMBER, create=True)

    assert reply.role == ADMIN
    assert reply.organization_created
    assert memberships(reply.principal) == [
        ("mallory", ADMIN, "mallory"),
        ("newco", ADMIN, "mallory"),
    ]
    assert reply.principal.default_organization == "mallory"
    again = await authorize(harness, acme["mallory"], "newco", ADMIN, create=True)
    assert (again.role, again.organization_created) == (ADMIN, False)
    principal = await authenticate(harness, acme["mallory"])
    assert ("newco", ADMIN, "mallory") in memberships(principal)
    outsider = await rpc_error(authorize(harness, acme["bob"], "newco", VIEWER, create=True))
    assert outsider.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("autocreate", ["any"])
async def test_concurrent_creates_of_one_organization_have_one_owner(
    harness: Harness, acme: dict[str, str]
) -> None:
    callers = ["alice", "bob", "carol", "mallory"]
    results = await asyncio.gather(
        *(authorize(harness, acme[login], "race", MEMBER, create=True) for login in callers),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, identity_pb2.AuthorizeResponse)]
    assert len(winners) == 1
    assert (winners[0].role, winners[0].organization_created) == (ADMIN, True)
    assert [r for r in outcomes(results) if r is not winners[0]] == [grpc.StatusCode.NOT_FOUND] * 3
    async with harness.engine.connect() as connection:
        members = await connection.scalar(
            select(func.count())
            .select_from(MembershipRow)
            .join(OrganizationRow, OrganizationRow.id == MembershipRow.organization_id)
            .where(OrganizationRow.name == "race")
        )
    assert members == 1


@pytest.mark.parametrize("autocreate", ["any"])
async def test_concurrent_creates_by_one_caller_all_succeed(
    harness: Harness, acme: dict[str, str]
) -> None:
    results = await asyncio.gather(
        *(authorize(harness, acme["bob"], "solo", ADMIN, create=True) for _ in range(4))
    )

    assert sorted(r.organization_created for r in results) == [False, False, False, True]
    assert {r.role for r in results} == {ADMIN}


async def test_authorize_rejects_bad_arguments(harness: Harness, acme: dict[str, str]) -> None:
    before = await counts(harness.engine)

    unspecified = await rpc_error(
        authorize(harness, acme["alice"], "acme", common_pb2.ROLE_UNSPECIFIED)
    )
    bad_name = await rpc_error(authorize(harness, acme["alice"], "bad name", VIEWER, create=True))
    no_token = await rpc_error(authorize(harness, "", "acme", VIEWER))
    bad_token = await rpc_error(authorize(harness, "pul-nope", "acme", VIEWER, create=True))

    assert unspecified.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad_name.details() or "").startswith(
        "Bad Request: invalid organization name 'bad name': use letters, digits, '-', '_' or '.'"
    )
    assert no_token.code() == bad_token.code() == grpc.StatusCode.UNAUTHENTICATED
    assert no_token.details() == bad_token.details() == UNAUTHORIZED
    assert await counts(harness.engine) == before


@pytest.mark.parametrize("organization", ["acme", "nowhere", "bad name"])
async def test_organization_role_by_token_id_answers_as_authorize_does(
    harness: Harness, acme: dict[str, str], organization: str
) -> None:
    for login, token in acme.items():
        principal = await harness.stub.Authenticate(identity_pb2.AuthenticateRequest(token=token))
        check = harness.stub.CheckOrganizationRole(
            identity_pb2.CheckOrganizationRoleRequest(
                token_id=principal.token_info.token_id,
                organization=organization,
                minimum_role=ADMIN,
            )
        )
        try:
            expected = await authorize(harness, token, organization, ADMIN)
        except grpc.aio.AioRpcError as refused:
            error = await rpc_error(check)
            assert (error.code(), error.details()) == (refused.code(), refused.details()), login
        else:
            assert (await check).role == expected.role, login
    unknown = await rpc_error(
        harness.stub.CheckOrganizationRole(
            identity_pb2.CheckOrganizationRoleRequest(
                token_id="nope", organization="acme", minimum_role=ADMIN
            )
        )
    )
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED


# Administration


async def test_create_user_with_a_personal_organization(harness: Harness) -> None:
    user = await harness.stub.CreateUser(
        identity_pb2.CreateUserRequest(
            login="alice", name="Alice", email="a@example.com", create_personal_organization=True
        )
    )

    assert HEX_ID.fullmatch(user.id)
    assert (user.login, user.name, user.email, user.is_site_admin) == (
        "alice",
        "Alice",
        "a@example.com",
        False,
    )
    assert user.created_at == int(harness.clock.now())
    token = (
        await harness.stub.CreateAccessToken(
            identity_pb2.CreateAccessTokenRequest(user_login="alice", name="t")
        )
    ).token
    assert memberships(await authenticate(harness, token)) == [("alice", ADMIN, "alice")]


async def test_duplicates_are_conflicts_and_write_nothing(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    before = await counts(harness.engine)

    user = await rpc_error(harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice")))
    org = await rpc_error(
        harness.stub.CreateOrganization(
            identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
        )
    )
    personal = await rpc_error(
        harness.stub.CreateUser(
            identity_pb2.CreateUserRequest(login="acme", create_personal_organization=True)
        )
    )

    assert user.code() == org.code() == personal.code() == grpc.StatusCode.ALREADY_EXISTS
    assert user.details() == "Conflict: user 'alice' already exists"
    assert org.details() == personal.details() == "Conflict: organization 'acme' already exists"
    assert await counts(harness.engine) == before


async def test_concurrent_creates_of_one_user_have_one_winner(harness: Harness) -> None:
    results = outcomes(
        await asyncio.gather(
            *(
                harness.stub.CreateUser(
                    identity_pb2.CreateUserRequest(login="dup", create_personal_organization=True)
                )
                for _ in range(5)
            ),
            return_exceptions=True,
        )
    )

    assert len([r for r in results if isinstance(r, identity_pb2.User)]) == 1
    assert [r for r in results if not isinstance(r, identity_pb2.User)] == [
        grpc.StatusCode.ALREADY_EXISTS
    ] * 4
    assert await count(harness.engine, UserRow) == 1
    assert await count(harness.engine, OrganizationRow) == 1


async def test_create_organization_needs_a_known_admin(harness: Harness) -> None:
    error = await rpc_error(
        harness.stub.CreateOrganization(
            identity_pb2.CreateOrganizationRequest(name="acme", admin_login="ghost")
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Not Found: user 'ghost' not found"
    assert await count(harness.engine, OrganizationRow) == 0


@pytest.mark.parametrize(
    "name", ["", "x y", "-lead", ".hidden", "a/b", "é", "n" * 101, "trailing\n"]
)
async def test_bad_names_are_invalid_arguments(harness: Harness, name: str) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    before = await counts(harness.engine)

    user = await rpc_error(harness.stub.CreateUser(identity_pb2.CreateUserRequest(login=name)))
    org = await rpc_error(
        harness.stub.CreateOrganization(
            identity_pb2.CreateOrganizationRequest(name=name, admin_login="alice")
        )
    )

    assert user.code() == org.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (user.details() or "").startswith("Bad Request: invalid user login '")
    assert (org.details() or "").startswith("Bad Request: invalid organization name '")
    assert await counts(harness.engine) == before


async def test_longest_names_are_accepted(harness: Harness) -> None:
    name = "a" + "b_.-" * 24 + "xyz"
    assert len(name) == 100

    user = await harness.stub.CreateUser(
        identity_pb2.CreateUserRequest(login=name, create_personal_organization=True)
    )

    assert user.login == name


async def test_set_membership_upserts_the_role(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    token = await new_user(harness, "bob")

    added = await harness.stub.SetMembership(
        identity_pb2.SetMembershipRequest(organization="acme", user_login="bob", role=VIEWER)
    )
    assert (added.organization, added.user_login, added.role) == ("acme", "bob", VIEWER)
    changed = await harness.stub.SetMembership(
        identity_pb2.SetMembershipRequest(organization="acme", user_login="bob", role=ADMIN)
    )
    assert changed.role == ADMIN

    assert memberships(await authenticate(harness, token)) == [("acme", ADMIN, "bob")]
    assert await count(harness.engine, MembershipRow) == 2


async def test_list_members_names_every_member_and_role(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    await new_user(harness, "bob")
    await harness.stub.SetMembership(
        identity_pb2.SetMembershipRequest(organization="acme", user_login="bob", role=VIEWER)
    )
    reply = await harness.stub.ListMembers(identity_pb2.ListMembersRequest(organization="acme"))
    assert [(m.user.login, m.role) for m in reply.members] == [("alice", ADMIN), ("bob", VIEWER)]
    missing = await rpc_error(
        harness.stub.ListMembers(identity_pb2.ListMembersRequest(organization="nowhere"))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_set_membership_rejects_unknown_names_and_roles(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    before = await counts(harness.engine)

    def set_membership(
        org: str, login: str, role: common_pb2.Role.ValueType
    ) -> Awaitable[identity_pb2.Membership]:
        return harness.stub.SetMembership(
            identity_pb2.SetMembershipRequest(organization=org, user_login=login, role=role)
        )

    no_org = await rpc_error(set_membership("nowhere", "alice", MEMBER))
    no_user = await rpc_error(set_membership("acme", "ghost", MEMBER))
    no_role = await rpc_error(set_membership("acme", "alice", common_pb2.ROLE_UNSPECIFIED))

    assert (no_org.code(), no_org.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Not Found: organization 'nowhere' not found",
    )
    assert (no_user.code(), no_user.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Not Found: user 'ghost' not found",
    )
    assert no_role.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await counts(harness.engine) == before


async def test_access_tokens_are_stored_hashed(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))

    created = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login="alice", name="laptop")
    )

    assert created.token.startswith("pul-")
    assert HEX_ID.fullmatch(created.token_id)
    async with harness.engine.connect() as connection:
        rows = (await connection.execute(select(AccessTokenRow.__table__))).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hash_token(created.token)
    assert all(created.token not in str(value) for value in rows[0])


async def test_create_access_token_for_an_unknown_user(harness: Harness) -> None:
    error = await rpc_error(
        harness.stub.CreateAccessToken(
            identity_pb2.CreateAccessTokenRequest(user_login="ghost", name="t")
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Not Found: user 'ghost' not found"
    assert await count(harness.engine, AccessTokenRow) == 0


# Schema


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"version_table": version_table("identity"), "compare_type": True},
    )
    return list(compare_metadata(context, Base.metadata))


def _downgrade_to_base(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(identity_server.MIGRATIONS))
    script = ScriptDirectory.from_config(config)

    def downgrade(revision: object, _context: object) -> object:
        return script._downgrade_revs("base", revision)  # type: ignore[arg-type]

    with EnvironmentContext(config, script, fn=downgrade) as env:
        env.configure(connection=connection, version_table=version_table("identity"))
        env.run_migrations()


@pytest.mark.empty_database
async def test_migrated_schema_matches_the_models(harness: Harness) -> None:
    engine = create_migration_engine(harness.settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
            version = await connection.scalar(
                text(f"SELECT version_num FROM {version_table('identity')}")
            )
            assert version == "identity_0006_oidc_issuers"

        # A second replica on a migrated database migrates nothing and starts.
        second = await identity_server.start(harness.settings, host="127.0.0.1", port=0)
        await second.stop(0)

        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to_base)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not {model.__tablename__ for model in (*TABLES, AuditEventRow)} & tables
    finally:
        await engine.dispose()


async def test_concurrent_demotions_leave_one_admin(harness: Harness) -> None:
    """Two admins demoting each other at once: the organization still keeps an admin."""
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    await new_user(harness, "bob", roles={"acme": ADMIN})

    def demote(login: str) -> Awaitable[identity_pb2.Member]:
        return harness.stub.UpdateMember(
            identity_pb2.MemberRequest(organization="acme", user_login=login, role=MEMBER)
        )

    results = await asyncio.gather(demote("alice"), demote("bob"), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], grpc.aio.AioRpcError)
    assert failures[0].code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED)
    members = await harness.stub.ListMembers(identity_pb2.ListMembersRequest(organization="acme"))
    assert sorted(m.role for m in members.members) == [MEMBER, ADMIN]


async def test_stack_grants_decide_a_team_tokens_permission(harness: Harness) -> None:
    await harness.stub.CreateUser(identity_pb2.CreateUserRequest(login="alice"))
    await harness.stub.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="alice")
    )
    await harness.stub.CreateTeam(identity_pb2.CreateTeamRequest(organization="acme", name="ops"))
    await harness.stub.SetTeamStackPermission(
        identity_pb2.SetTeamStackPermissionRequest(
            organization="acme",
            team="ops",
            stack_id="stack-1",
            permission=identity_pb2.STACK_PERMISSION_WRITE,
        )
    )
    created = await harness.stub.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(
            user_login="alice",
            name="ci",
            scope=identity_pb2.TokenScope(
                kind=identity_pb2.TOKEN_KIND_TEAM, organization="acme", team="ops"
            ),
        )
    )

    def authorize(stack_id: str, minimum: identity_pb2.StackPermission.ValueType) -> Any:
        return harness.stub.Authorize(
            identity_pb2.AuthorizeRequest(
                token=created.token,
                organization="acme",
                stack_id=stack_id,
                minimum_stack_permission=minimum,
            )
        )

    granted = await authorize("stack-1", identity_pb2.STACK_PERMISSION_WRITE)
    assert granted.stack_permission == identity_pb2.STACK_PERMISSION_WRITE
    assert granted.principal.token_info.token_id == created.token_id
    assert granted.principal.token_info.kind == identity_pb2.TOKEN_KIND_TEAM
    refused = await rpc_error(authorize("stack-2", identity_pb2.STACK_PERMISSION_READ))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED

    await harness.stub.PurgeStackGrants(identity_pb2.PurgeStackGrantsRequest(stack_id="stack-1"))
    purged = await rpc_error(authorize("stack-1", identity_pb2.STACK_PERMISSION_READ))
    assert purged.code() == grpc.StatusCode.PERMISSION_DENIED
