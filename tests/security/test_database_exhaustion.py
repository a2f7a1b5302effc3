"""A database out of connections answers 503 JSON with a retry hint, never 500: PostgreSQL's
"too many connections" (asyncpg's TooManyConnectionsError, which SQLAlchemy wraps in a bare
DBAPIError) and an exhausted pool alike; pool sizes come from the settings."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from protos.cairn.v1 import identity_pb2, identity_pb2_grpc
from services.common.db import DATABASE_BUSY, create_engine_for, unavailable_error
from tests.conftest import _admin_connection, make_settings, signed_channel
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

PATHS = ("/api/user", "/api/user/stacks", "/api/orgs/admin/members")


async def _assert_all_unavailable(cairn: Cairn) -> None:
    for path in PATHS:
        response = await cairn.call("GET", path)
        body = await response.json()
        assert response.status == 503, (path, body)
        assert body == {"code": 503, "message": body["message"]}
        assert body["message"].startswith("Service Unavailable: ")
        assert int(response.headers["Retry-After"]) > 0
    created = await cairn.call("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    assert created.status == 503, await created.text()


@pytest.fixture
async def limited_role(postgres_url: str) -> AsyncIterator[tuple[str, str, Any]]:
    """The per-test database owned by a fresh non-superuser role (superusers ignore
    connection limits); yields the role's URL, its name and an admin connection."""
    admin: Any = await _admin_connection()
    role = f"cairn_limited_{uuid.uuid4().hex[:10]}"
    database = make_url(postgres_url).database
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'ALTER DATABASE "{database}" OWNER TO "{role}"')
    try:
        yield make_url(postgres_url).set(username=role).render_as_string(False), role, admin
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def _end_connections(admin: Any, role: str) -> None:
    """Terminate the role's backends and wait (bounded) until PostgreSQL has let them go."""
    deadline = time.monotonic() + 10.0
    while True:
        remaining = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role
        )
        if remaining == 0:
            return
        assert time.monotonic() < deadline, f"{remaining} connections of {role} remain"
        await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
        await asyncio.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.empty_database  # the limited role owns the database and creates its tables
async def test_too_many_connections_answers_503_not_500(
    limited_role: tuple[str, str, Any], data_dir: Path, aiohttp_client: AiohttpClient
) -> None:
    url, role, admin = limited_role
    settings = make_settings(
        data_dir, url, database_pool_size=1, database_max_overflow=1, database_timeout_seconds=5.0
    )
    async for cairn in running_cairn(settings, aiohttp_client):
        assert (await cairn.call("GET", "/api/user")).status == 200
        # The role may hold no connection at all (as when others took every one there is);
        # the services' pooled connections end, so every service has to reconnect and is
        # told "too many connections for role".
        await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
        await _end_connections(admin, role)
        await _assert_all_unavailable(cairn)
        # The service itself says why, over gRPC too.
        channel = signed_channel(cairn.system.settings, cairn.system.settings.identity_address)
        try:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Authenticate(identity_pb2.AuthenticateRequest(token=ADMIN_TOKEN))
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == DATABASE_BUSY
        finally:
            await channel.close(None)
        await admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
        # Capacity back: the same calls succeed again.
        assert (await cairn.call("GET", "/api/user")).status == 200


async def test_an_exhausted_pool_answers_503_not_500(
    data_dir: Path, aiohttp_client: AiohttpClient
) -> None:
    database = data_dir / "cairn.db"
    settings = make_settings(
        data_dir,
        f"sqlite+aiosqlite:///{database}",
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout_seconds=0.3,
        database_timeout_seconds=3.0,
    )
    async for cairn in running_cairn(settings, aiohttp_client):
        assert (await cairn.call("GET", "/api/user")).status == 200
        # Another process holds SQLite's write lock: the first call (a write of identity's)
        # waits for it holding the service's only connection, so the calls after it find the
        # pool empty, reads too (which by themselves never wait for the write lock).
        blocker = sqlite3.connect(database, isolation_level=None, timeout=5)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            # A read does not wait for the write lock.
            assert (await cairn.call("GET", "/api/user")).status == 200
            first = asyncio.create_task(
                cairn.call("POST", "/api/user/tokens", body={"description": "blocked"})
            )
            await asyncio.sleep(0.2)
            later = await cairn.call("GET", "/api/user")
            assert later.status == 503, await later.text()
            assert (await later.json())["message"].startswith("Service Unavailable: ")
            assert (await first).status == 503
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await cairn.call("GET", "/api/user")).status == 200


def test_pool_sizes_come_from_the_settings(data_dir: Path) -> None:
    settings = make_settings(
        data_dir,
        f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}",
        database_pool_size=3,
        database_max_overflow=4,
        database_pool_timeout_seconds=1.5,
    )
    engine = create_engine_for(settings)
    pool: Any = engine.sync_engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 4, 1.5)


def test_connection_capacity_errors_are_unavailable_and_others_are_not() -> None:
    class FakeAsyncpgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("boom")
            self.sqlstate = sqlstate

    def wrapped(sqlstate: str) -> sa_exc.DBAPIError:
        return sa_exc.DBAPIError("connect", None, FakeAsyncpgError(sqlstate))

    for busy in ("53300", "53400", "53200"):
        found = unavailable_error(wrapped(busy))
        assert found is not None and found.message == DATABASE_BUSY
    for down in ("57P03", "57P01", "08006"):
        assert unavailable_error(wrapped(down)) is not None
    for other in ("23505", "42P01", "40001"):
        assert unavailable_error(wrapped(other)) is None
    assert unavailable_error(ValueError("x")) is None
