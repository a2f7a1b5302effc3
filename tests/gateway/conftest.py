"""The whole system over real HTTP: every service on a loopback port, the real gateway app."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from cairn.cli import System, start_services
from gateway.app import create_app
from gateway.serving import GatewayRunner
from protos.cairn.v1 import common_pb2, identity_pb2, identity_pb2_grpc
from services.common.clock import Clock
from services.common.config import Settings
from tests.conftest import REDIS_URL, make_settings, redis_available, signed_channel

if TYPE_CHECKING:
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub

ADMIN_TOKEN = "pul-admin-token-for-tests-0123456789abcdef"
CLI_HEADERS = {"Accept": "application/vnd.pulumi+9", "Content-Type": "application/json"}

AiohttpClient = Callable[
    [web.Application | TestServer], Awaitable[TestClient[web.Request, web.Application]]
]


class GatewayTestServer(TestServer):
    """A test server on 127.0.0.1 running the app the way `cairn up` does."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, host="127.0.0.1")

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return GatewayRunner(self.app, **kwargs)


@dataclass
class Cairn:
    """A running system and an HTTP client speaking to its gateway the way the CLI does."""

    client: TestClient[web.Request, web.Application]
    system: System
    identity: IdentityServiceAsyncStub

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = ADMIN_TOKEN,
        body: Any = None,
        raw: bytes | None = None,
        gzipped: bool = False,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        all_headers = dict(CLI_HEADERS)
        if token is not None:
            all_headers["Authorization"] = f"token {token}"
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if gzipped and data is not None:
            data = gzip.compress(data)
            all_headers["Content-Encoding"] = "gzip"
        all_headers.update(headers or {})
        return await self.client.request(method, path, data=data, headers=all_headers)

    async def json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        text = await response.text()
        assert response.status == status, f"{method} {path}: {response.status} {text}"
        return orjson.loads(text) if text else None

    async def new_user(
        self, login: str, *, org_role: tuple[str, common_pb2.Role.ValueType] | None = None
    ) -> str:
        """A user with a personal organization (and maybe a role in another); returns a token."""
        await self.identity.CreateUser(
            identity_pb2.CreateUserRequest(login=login, create_personal_organization=True)
        )
        if org_role is not None:
            org, role = org_role
            await self.identity.SetMembership(
                identity_pb2.SetMembershipRequest(organization=org, user_login=login, role=role)
            )
        reply = await self.identity.CreateAccessToken(
            identity_pb2.CreateAccessTokenRequest(user_login=login, name="tests")
        )
        token: str = reply.token
        return token


VIEWER = common_pb2.ROLE_VIEWER
MEMBER = common_pb2.ROLE_MEMBER
ADMIN = common_pb2.ROLE_ADMIN


async def running_cairn(
    settings: Settings,
    aiohttp_client: AiohttpClient,
    *,
    clock: Clock | None = None,
    with_admin: bool = True,
) -> AsyncIterator[Cairn]:
    """The whole system in this process (with `clock` when given) behind a test client; the
    first admin holds ADMIN_TOKEN unless `with_admin` is False (no user at all)."""
    if with_admin:
        settings = settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    system = await start_services(settings, clock=clock)
    channel = signed_channel(system.settings, system.settings.identity_address)
    try:
        client = await aiohttp_client(GatewayTestServer(create_app(system.settings)))
        yield Cairn(client, system, identity_pb2_grpc.IdentityServiceStub(channel))
    finally:
        await channel.close(None)
        await system.stop(grace=0)


@pytest.fixture
async def cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The system on SQLite."""
    async for running in running_cairn(settings, aiohttp_client):
        yield running


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def update_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """SQLite with the embedded lock, and PostgreSQL with Redis locks when both answer."""
    if request.param == "sqlite":
        return settings
    if not redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    url: str = request.getfixturevalue("postgres_url")
    return make_settings(settings.data_dir, url, redis_url=REDIS_URL)


@pytest.fixture
async def update_cairn(
    update_settings: Settings, aiohttp_client: AiohttpClient
) -> AsyncIterator[Cairn]:
    """The system in both of its storage and lock configurations."""
    async for running in running_cairn(update_settings, aiohttp_client):
        yield running


@pytest.fixture
async def any_cairn(any_settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The system on SQLite and, when reachable, PostgreSQL."""
    async for running in running_cairn(any_settings, aiohttp_client):
        yield running
