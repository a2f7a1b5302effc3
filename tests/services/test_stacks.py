"""The stacks service over real gRPC, on SQLite and PostgreSQL, with a fake secrets peer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from structlog.testing import capture_logs

from protos.cairn.v1 import (
    agent_pools_pb2,
    agent_pools_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
    updates_pb2,
    updates_pb2_grpc,
)
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_migration_engine
from services.common.migrations import version_table
from services.stacks import server as stacks_server
from services.stacks.models import Base
from tests.conftest import make_settings, signed_channel

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class FakeSecrets(secrets_pb2_grpc.SecretsServiceServicer):
    """Records which stack keys were deleted; can be told to fail."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.failure: grpc.StatusCode | None = None

    async def DeleteStackKey(
        self,
        request: secrets_pb2.DeleteStackKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> secrets_pb2.DeleteStackKeyResponse:
        if self.failure is not None:
            await context.abort(self.failure, "secrets are having a bad day")
        self.deleted.append(request.stack_id)
        return secrets_pb2.DeleteStackKeyResponse()


class FakeAgentPools(agent_pools_pb2_grpc.AgentPoolsServiceServicer):
    """Accepts purges."""

    async def PurgeStack(
        self,
        request: agent_pools_pb2.PurgeDeploymentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> agent_pools_pb2.PurgeDeploymentsResponse:
        return agent_pools_pb2.PurgeDeploymentsResponse()


class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    """Organization members by login, as the test sets them; records purged grants."""

    def __init__(self) -> None:
        self.members: dict[str, set[str]] = {}
        self.purged: list[str] = []
        # Access token ids that administer each organization.
        self.admin_tokens: dict[str, set[str]] = {}

    async def ListMembers(
        self,
        request: identity_pb2.ListMembersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.ListMembersResponse:
        logins = sorted(self.members.get(request.organization, set()))
        return identity_pb2.ListMembersResponse(
            members=[
                identity_pb2.Member(
                    user=identity_pb2.User(login=login), role=common_pb2.ROLE_MEMBER
                )
                for login in logins
            ]
        )

    async def CheckOrganizationRole(
        self,
        request: identity_pb2.CheckOrganizationRoleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.CheckOrganizationRoleResponse:
        if request.token_id not in self.admin_tokens.get(request.organization, set()):
            await context.abort(grpc.StatusCode.NOT_FOUND, "Not Found: no such organization")
        return identity_pb2.CheckOrganizationRoleResponse(role=common_pb2.ROLE_ADMIN)

    async def PurgeStackGrants(
        self,
        request: identity_pb2.PurgeStackGrantsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.PurgeStackGrantsResponse:
        self.purged.append(request.stack_id)
        return identity_pb2.PurgeStackGrantsResponse()


class FakeUpdates(updates_pb2_grpc.UpdatesServiceServicer):
    """Records purged stacks; can be told to refuse deletions with a status."""

    def __init__(self) -> None:
        self.purged: list[str] = []
        self.renamed: list[tuple[str, str, str]] = []
        self.moved: list[tuple[str, str]] = []
        self.refusal: tuple[grpc.StatusCode, str] | None = None
        # An update in progress refuses even forced deletions, and renames.
        self.refuse_forced = False
        self.imported: list[tuple[str, bytes]] = []
        self.import_refusal: tuple[grpc.StatusCode, str] | None = None
        self.started: list[tuple[str, str, int]] = []
        self.start_refusal: tuple[grpc.StatusCode, str] | None = None
        self.references: list[updates_pb2.StackReferenceRecord] = []

    async def ImportDeployment(
        self,
        request: updates_pb2.ImportDeploymentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.ImportDeploymentResponse:
        if self.import_refusal is not None:
            await context.abort(*self.import_refusal)
        self.imported.append((request.stack_id, request.untyped_deployment))
        return updates_pb2.ImportDeploymentResponse(update_id="import-1")

    async def StartUpdate(
        self,
        request: updates_pb2.StartUpdateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.StartUpdateResponse:
        if self.start_refusal is not None:
            await context.abort(*self.start_refusal)
        self.started.append((request.stack_id, request.update_id, request.journal_version))
        return updates_pb2.StartUpdateResponse(
            version=7, token="lease", token_expiration=99, journal_version=request.journal_version
        )

    async def ListReferencingStacks(
        self,
        request: updates_pb2.ListReferencingStacksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.ListStackReferencesResponse:
        names = set(request.names)
        return updates_pb2.ListStackReferencesResponse(
            references=[record for record in self.references if record.name in names]
        )

    async def CheckStackDeletion(
        self,
        request: updates_pb2.CheckStackDeletionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.CheckStackDeletionResponse:
        if self.refusal is not None and (self.refuse_forced or not request.force):
            await context.abort(*self.refusal)
        return updates_pb2.CheckStackDeletionResponse()

    async def RecordRename(
        self,
        request: updates_pb2.RecordRenameRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.RecordRenameResponse:
        self.renamed.append((request.stack_id, request.project, request.stack))
        self.moved.append((request.stack_id, request.organization))
        return updates_pb2.RecordRenameResponse(update_id=f"u{len(self.renamed)}")

    async def PurgeStack(
        self,
        request: updates_pb2.PurgeStackRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> updates_pb2.PurgeStackResponse:
        self.purged.append(request.stack_id)
        return updates_pb2.PurgeStackResponse()


@dataclass
class Harness:
    stub: stacks_pb2_grpc.StacksServiceAsyncStub
    secrets: FakeSecrets
    updates: FakeUpdates
    identity: FakeIdentity
    settings: Settings
    clock: ManualClock


@pytest.fixture
def fake_identity() -> FakeIdentity:
    return FakeIdentity()  # type: ignore[abstract]


@pytest.fixture
async def fake_peers(
    fake_identity: FakeIdentity,
) -> AsyncIterator[tuple[FakeSecrets, FakeUpdates, FakeIdentity, int]]:
    # The generated base classes answer UNIMPLEMENTED for every RPC the fakes leave out.
    fake = FakeSecrets()  # type: ignore[abstract]
    updates = FakeUpdates()  # type: ignore[abstract]
    server = grpc.aio.server()
    secrets_pb2_grpc.add_SecretsServiceServicer_to_server(fake, server)
    updates_pb2_grpc.add_UpdatesServiceServicer_to_server(updates, server)
    pools = FakeAgentPools()  # type: ignore[abstract]
    agent_pools_pb2_grpc.add_AgentPoolsServiceServicer_to_server(pools, server)
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(fake_identity, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, updates, fake_identity, port
    finally:
        await server.stop(0)


@pytest.fixture
async def harness(
    any_settings: Settings,
    fake_peers: tuple[FakeSecrets, FakeUpdates, FakeIdentity, int],
) -> AsyncIterator[Harness]:
    fake, updates, identity, peers_port = fake_peers
    settings = make_settings(
        any_settings.data_dir,
        any_settings.resolved_database_url(),
        secrets_address=f"127.0.0.1:{peers_port}",
        updates_address=f"127.0.0.1:{peers_port}",
        agent_pools_address=f"127.0.0.1:{peers_port}",
        identity_address=f"127.0.0.1:{peers_port}",
        grpc_timeout_seconds=5.0,
        # Deletions purge at once here; tests/gateway/test_restore_stacks_sdk.py has the window.
        deleted_stack_retention_days=0,
    )
    clock = ManualClock()
    service = await stacks_server.start(settings, host="127.0.0.1", port=0, clock=clock)
    channel = signed_channel(settings, f"127.0.0.1:{service.port}")
    try:
        yield Harness(
            stub=stacks_pb2_grpc.StacksServiceStub(channel),
            secrets=fake,
            updates=updates,
            identity=identity,
            settings=settings,
            clock=clock,
        )
    finally:
        await channel.close(None)
        await service.stop(0)


def ref(organization: str, project: str, stack: str) -> common_pb2.StackRef:
    return common_pb2.StackRef(organization=organization, project=project, stack=stack)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def create(
    h: Harness, organization: str, project: str, stack: str, **tags: str
) -> stacks_pb2.Stack:
    return await h.stub.CreateStack(
        stacks_pb2.CreateStackRequest(ref=ref(organization, project, stack), tags=tags)
    )


async def get(h: Harness, organization: str, project: str, stack: str) -> stacks_pb2.Stack:
    return await h.stub.GetStack(stacks_pb2.GetStackRequest(ref=ref(organization, project, stack)))


async def list_all(h: Harness, **fields: Any) -> tuple[list[str], int]:
    """Follow continuation tokens to the end: qualified names and the number of pages."""
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await h.stub.ListStacks(
            stacks_pb2.ListStacksRequest(continuation_token=token, **fields)
        )
        pages += 1
        names.extend(f"{s.ref.organization}/{s.ref.project}/{s.ref.stack}" for s in reply.stacks)
        if not reply.continuation_token:
            return names, pages
        assert URL_SAFE.fullmatch(reply.continuation_token)
        token = reply.continuation_token
        assert pages < 100


# -- create and get ------------------------------------------------------------------------


async def test_create_then_get_returns_the_stored_stack(harness: Harness) -> None:
    created = await create(harness, "acme", "web", "dev", **{"pulumi:project": "web", "a": ""})

    assert re.fullmatch(r"[0-9a-f]{32}", created.id)
    assert (created.ref.organization, created.ref.project, created.ref.stack) == (
        "acme",
        "web",
        "dev",
    )
    assert dict(created.tags) == {"pulumi:project": "web", "a": ""}
    assert not created.HasField("config")
    assert created.created_at == int(harness.clock.now())

    fetched = await get(harness, "acme", "web", "dev")
    assert fetched == created


async def test_config_is_present_only_when_given(harness: Harness) -> None:
    config = stacks_pb2.StackConfig(
        environment="web/dev", secrets_provider="service", encrypted_key="k", encryption_salt="s"
    )
    created = await harness.stub.CreateStack(
        stacks_pb2.CreateStackRequest(ref=ref("acme", "web", "esc"), config=config)
    )
    assert created.HasField("config")
    assert created.config == config
    fetched = await get(harness, "acme", "web", "esc")
    assert fetched.HasField("config")
    assert fetched.config == config


async def test_duplicate_create_conflicts_and_keeps_the_original(harness: Harness) -> None:
    original = await create(harness, "acme", "web", "dev", owner="alice")

    error = await rpc_error(create(harness, "acme", "web", "dev", owner="mallory"))

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "Conflict: stack 'acme/web/dev' already exists"
    assert await get(harness, "acme", "web", "dev") == original


async def test_concurrent_creates_of_one_name_yield_one_stack(harness: Harness) -> None:
    results = await asyncio.gather(
        *(create(harness, "acme", "web", "race") for _ in range(5)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, stacks_pb2.Stack)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [e.code() for e in errors] == [grpc.StatusCode.ALREADY_EXISTS] * 4
    assert (await get(harness, "acme", "web", "race")).id == created[0].id


@pytest.mark.parametrize(
    ("stack_ref", "message"),
    [
        (
            ("acme", "web", "a/b"),
            "Bad Request: invalid stack name 'a/b': names may only contain alphanumerics, "
            "hyphens, underscores, or periods",
        ),
        (("acme", "web", ".."), "Bad Request: invalid stack name '..': reserved name"),
        (("acme", "", "dev"), "Bad Request: invalid project name '': "),
        (("ac me", "web", "dev"), "Bad Request: invalid organization name 'ac me': "),
        (("acme", "web", "x" * 101), "Bad Request: invalid stack name 'xxx"),
    ],
)
async def test_create_rejects_bad_names(
    harness: Harness, stack_ref: tuple[str, str, str], message: str
) -> None:
    error = await rpc_error(create(harness, *stack_ref))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(message)
    visible = ["acme", "ac me"]
    assert (await list_all(harness, visible_organizations=visible))[0] == []


async def test_create_with_a_bad_tag_writes_nothing(harness: Harness) -> None:
    error = await rpc_error(create(harness, "acme", "web", "dev", **{"bad tag": "x"}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'bad tag'" in (error.details() or "")

    error = await rpc_error(create(harness, "acme", "web", "dev", long="v" * 257))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'long'" in (error.details() or "")

    missing = await rpc_error(get(harness, "acme", "web", "dev"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_get_missing_stack_is_not_found(harness: Harness) -> None:
    error = await rpc_error(get(harness, "acme", "web", "nope"))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Not Found: stack 'acme/web/nope' not found"


async def test_project_exists_while_a_stack_is_in_it(harness: Harness) -> None:
    async def exists(organization: str, project: str) -> bool:
        reply = await harness.stub.ProjectExists(
            stacks_pb2.ProjectExistsRequest(organization=organization, project=project)
        )
        return reply.exists

    assert not await exists("acme", "web")
    await create(harness, "acme", "web", "dev")
    assert await exists("acme", "web")
    assert not await exists("acme", "api")
    assert not await exists("other", "web")

    await harness.stub.DeleteStack(stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev")))
    assert not await exists("acme", "web")


# -- delete --------------------------------------------------------------------------------


async def test_delete_removes_the_stack_and_its_secrets_key(harness: Harness) -> None:
    doomed = await create(harness, "acme", "web", "dev", owner="alice")
    kept = await create(harness, "acme", "web", "prod")

    reply = await harness.stub.DeleteStack(
        stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev"), force=False)
    )

    assert reply.stack_id == doomed.id
    assert harness.secrets.deleted == [doomed.id]
    assert harness.updates.purged == [doomed.id]
    assert harness.identity.purged == [doomed.id]
    assert (await rpc_error(get(harness, "acme", "web", "dev"))).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    assert await get(harness, "acme", "web", "prod") == kept

    again = await rpc_error(
        harness.stub.DeleteStack(stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev")))
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND
    assert again.details() == "Not Found: stack 'acme/web/dev' not found"
    assert harness.secrets.deleted == [doomed.id]

    # The name is free again; the new stack has a new id and none of the old tags.
    reborn = await create(harness, "acme", "web", "dev")
    assert reborn.id != doomed.id
    assert dict(reborn.tags) == {}


async def test_delete_is_refused_when_the_updates_service_says_so(harness: Harness) -> None:
    created = await create(harness, "acme", "web", "dev")
    harness.updates.refusal = (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Bad Request: Stack still contains resources.",
    )
    refused = await rpc_error(
        harness.stub.DeleteStack(stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev")))
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "Bad Request: Stack still contains resources."
    assert await get(harness, "acme", "web", "dev") == created
    assert harness.updates.purged == [] and harness.secrets.deleted == []

    forced = await harness.stub.DeleteStack(
        stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev"), force=True)
    )
    assert forced.stack_id == created.id
    assert harness.updates.purged == [created.id]


async def test_delete_succeeds_when_the_secrets_service_fails(harness: Harness) -> None:
    created = await create(harness, "acme", "web", "dev")
    harness.secrets.failure = grpc.StatusCode.UNAVAILABLE

    with capture_logs() as logs:
        reply = await harness.stub.DeleteStack(
            stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev"))
        )

    assert reply.stack_id == created.id
    assert harness.secrets.deleted == []
    warnings = [line for line in logs if line["event"] == "stack_purge_failed"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert (warnings[0]["step"], warnings[0]["stack_id"]) == ("secrets", created.id)
    missing = await rpc_error(get(harness, "acme", "web", "dev"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    retry = await rpc_error(
        harness.stub.DeleteStack(stacks_pb2.DeleteStackRequest(ref=ref("acme", "web", "dev")))
    )
    assert retry.code() == grpc.StatusCode.NOT_FOUND


# -- list ----------------------------------------------------------------------------------


async def test_list_pages_in_bytewise_order_over_visible_organizations(harness: Harness) -> None:
    names = [
        ("acme", "web", "dev"),
        ("acme", "web", "B"),
        ("acme", "web", "a-b"),
        ("acme", "web", "a.b"),
        ("acme", "web", "a_b"),
        ("acme", "api", "prod"),
        ("beta", "web", "dev"),
        ("Zed", "web", "dev"),
        ("hidden", "web", "dev"),
    ]
    for organization, project, stack in names:
        await create(harness, organization, project, stack)
    visible = ["acme", "beta", "Zed"]
    expected = sorted(f"{o}/{p}/{s}" for o, p, s in names if o != "hidden")

    assert await list_all(harness, visible_organizations=visible) == (expected, 1)
    assert await list_all(harness, visible_organizations=visible, page_size=2) == (expected, 4)
    assert await list_all(harness, visible_organizations=visible, page_size=8) == (expected, 1)
    assert await list_all(harness, visible_organizations=visible, page_size=7) == (expected, 2)
    assert await list_all(harness, visible_organizations=[]) == ([], 1)


async def test_list_filters_compose_with_paging(harness: Harness) -> None:
    for index in range(7):
        env = "prod" if index % 2 else "dev"
        await create(harness, "acme", "web", f"s{index}", env=env)
        await create(harness, "acme", "api", f"s{index}", env=env)
        await create(harness, "beta", "web", f"s{index}", env=env)
    await create(harness, "acme", "web", "untagged")
    visible = ["acme", "beta"]

    by_project, pages = await list_all(
        harness, visible_organizations=visible, organization="acme", project="web", page_size=3
    )
    assert by_project == [f"acme/web/s{i}" for i in range(7)] + ["acme/web/untagged"]
    assert pages == 3

    tagged, pages = await list_all(
        harness, visible_organizations=visible, project="web", tag_name="env", page_size=2
    )
    assert tagged == [f"{o}/web/s{i}" for o in ("acme", "beta") for i in range(7)]
    assert pages == 7

    prod, pages = await list_all(
        harness,
        visible_organizations=visible,
        organization="acme",
        tag_name="env",
        tag_value="prod",
        page_size=2,
    )
    assert prod == [f"acme/{p}/s{i}" for p in ("api", "web") for i in (1, 3, 5)]
    assert pages == 3

    # Visibility wins over an explicit organization filter.
    assert await list_all(harness, visible_organizations=["beta"], organization="acme") == (
        [],
        1,
    )
    assert (await list_all(harness, visible_organizations=visible, tag_name="nope"))[0] == []
    empty_value, _ = await list_all(
        harness, visible_organizations=visible, tag_name="env", tag_value=""
    )
    assert empty_value == []


async def test_list_returns_full_stacks(harness: Harness) -> None:
    created = await create(harness, "acme", "web", "dev", owner="alice")

    reply = await harness.stub.ListStacks(
        stacks_pb2.ListStacksRequest(visible_organizations=["acme"])
    )

    assert list(reply.stacks) == [created]
    assert reply.continuation_token == ""


@pytest.mark.parametrize("page_size", [-1, 1001])
async def test_list_rejects_page_sizes_out_of_range(harness: Harness, page_size: int) -> None:
    error = await rpc_error(
        harness.stub.ListStacks(
            stacks_pb2.ListStacksRequest(visible_organizations=["acme"], page_size=page_size)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("token", ["not a token", "e30", "W10", "!!!", "a"])
async def test_list_rejects_malformed_tokens(harness: Harness, token: str) -> None:
    error = await rpc_error(
        harness.stub.ListStacks(
            stacks_pb2.ListStacksRequest(visible_organizations=["acme"], continuation_token=token)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Bad Request: invalid continuation token"


# -- rename --------------------------------------------------------------------------------


async def test_rename_keeps_id_tags_and_creation_time(harness: Harness) -> None:
    original = await create(harness, "acme", "web", "dev", owner="alice")
    harness.clock.advance(60)

    reply = await harness.stub.RenameStack(
        stacks_pb2.RenameStackRequest(
            ref=ref("acme", "web", "dev"), new_project="site", new_name=""
        )
    )
    renamed = reply.stack
    # The history entry the updates service recorded.
    assert reply.update_id == "u1"

    assert renamed.id == original.id
    assert (renamed.ref.organization, renamed.ref.project, renamed.ref.stack) == (
        "acme",
        "site",
        "dev",
    )
    assert dict(renamed.tags) == {"owner": "alice"}
    assert renamed.created_at == original.created_at
    assert await get(harness, "acme", "site", "dev") == renamed
    gone = await rpc_error(get(harness, "acme", "web", "dev"))
    assert gone.code() == grpc.StatusCode.NOT_FOUND

    again = (
        await harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(
                ref=ref("acme", "site", "dev"), new_project="site", new_name="staging"
            )
        )
    ).stack
    assert again.id == original.id
    assert again.ref.stack == "staging"
    # Each rename is recorded by the updates service under the new path.
    assert harness.updates.renamed == [
        (original.id, "site", "dev"),
        (original.id, "site", "staging"),
    ]


async def test_rename_is_refused_while_an_update_runs(harness: Harness) -> None:
    await create(harness, "acme", "web", "dev")
    harness.updates.refusal = (grpc.StatusCode.FAILED_PRECONDITION, "Conflict: busy")
    harness.updates.refuse_forced = True
    refused = await rpc_error(
        harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(ref=ref("acme", "web", "dev"), new_name="prod")
        )
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await get(harness, "acme", "web", "dev")
    assert harness.updates.renamed == []


@pytest.mark.parametrize(("new_project", "new_name"), [("", ""), ("web", "dev"), ("", "dev")])
async def test_rename_without_a_change_is_refused(
    harness: Harness, new_project: str, new_name: str
) -> None:
    original = await create(harness, "acme", "web", "dev")
    error = await rpc_error(
        harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(
                ref=ref("acme", "web", "dev"), new_project=new_project, new_name=new_name
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Bad Request: No rename to apply."
    assert await get(harness, "acme", "web", "dev") == original


async def test_rename_onto_an_existing_stack_conflicts_and_changes_nothing(
    harness: Harness,
) -> None:
    first = await create(harness, "acme", "web", "dev", who="first")
    second = await create(harness, "acme", "web", "prod", who="second")

    error = await rpc_error(
        harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(ref=ref("acme", "web", "dev"), new_name="prod")
        )
    )

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "Conflict: stack 'acme/web/prod' already exists"
    assert await get(harness, "acme", "web", "dev") == first
    assert await get(harness, "acme", "web", "prod") == second


async def test_concurrent_renames_onto_one_name_conflict_cleanly(harness: Harness) -> None:
    sources = [await create(harness, "acme", "web", f"s{i}") for i in range(4)]

    results = await asyncio.gather(
        *(
            harness.stub.RenameStack(
                stacks_pb2.RenameStackRequest(ref=source.ref, new_name="target")
            )
            for source in sources
        ),
        return_exceptions=True,
    )

    renamed = [r for r in results if isinstance(r, stacks_pb2.RenameStackResponse)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(renamed) == 1
    assert [e.code() for e in errors] == [grpc.StatusCode.ALREADY_EXISTS] * 3
    names, _ = await list_all(harness, visible_organizations=["acme"])
    assert len(names) == 4
    assert "acme/web/target" in names


async def test_rename_errors(harness: Harness) -> None:
    await create(harness, "acme", "web", "dev")

    missing = await rpc_error(
        harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(ref=ref("acme", "web", "nope"), new_name="other")
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details() == "Not Found: stack 'acme/web/nope' not found"

    invalid = await rpc_error(
        harness.stub.RenameStack(
            stacks_pb2.RenameStackRequest(ref=ref("acme", "web", "dev"), new_name="a/b")
        )
    )
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (invalid.details() or "").startswith("Bad Request: invalid stack name 'a/b'")
    assert (await get(harness, "acme", "web", "dev")).ref.stack == "dev"


# -- tags ----------------------------------------------------------------------------------


async def test_replace_tags_swaps_the_whole_set(harness: Harness) -> None:
    original = await create(harness, "acme", "web", "dev", a="1", b="2")

    replaced = await harness.stub.ReplaceStackTags(
        stacks_pb2.ReplaceStackTagsRequest(ref=ref("acme", "web", "dev"), tags={"b": "3", "c": ""})
    )

    assert replaced.id == original.id
    assert dict(replaced.tags) == {"b": "3", "c": ""}
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {"b": "3", "c": ""}

    cleared = await harness.stub.ReplaceStackTags(
        stacks_pb2.ReplaceStackTagsRequest(ref=ref("acme", "web", "dev"), tags={})
    )
    assert dict(cleared.tags) == {}
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {}


@pytest.mark.parametrize(
    ("tags", "named"),
    [
        ({"ok": "1", "bad/name": "x"}, "'bad/name'"),
        ({"ok": "1", "long": "v" * 257}, "'long'"),
        ({"t" * 41: "x"}, "'" + "t" * 41 + "'"),
        ({f"t{i}": "x" for i in range(101)}, "100 tags"),
    ],
)
async def test_replace_tags_refusal_keeps_the_old_tags(
    harness: Harness, tags: dict[str, str], named: str
) -> None:
    await create(harness, "acme", "web", "dev", a="1")

    error = await rpc_error(
        harness.stub.ReplaceStackTags(
            stacks_pb2.ReplaceStackTagsRequest(ref=ref("acme", "web", "dev"), tags=tags)
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (error.details() or "")
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {"a": "1"}


async def test_replace_tags_of_a_missing_stack_is_not_found(harness: Harness) -> None:
    error = await rpc_error(
        harness.stub.ReplaceStackTags(
            stacks_pb2.ReplaceStackTagsRequest(ref=ref("acme", "web", "nope"), tags={"a": "1"})
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_concurrent_tag_replacements_never_fail(harness: Harness) -> None:
    await create(harness, "acme", "web", "dev")
    tag_sets = [{"shared": str(i), f"own{i}": "x"} for i in range(5)]

    await asyncio.gather(
        *(
            harness.stub.ReplaceStackTags(
                stacks_pb2.ReplaceStackTagsRequest(ref=ref("acme", "web", "dev"), tags=tags)
            )
            for tags in tag_sets
        )
    )

    assert dict((await get(harness, "acme", "web", "dev")).tags) in tag_sets


# -- schema --------------------------------------------------------------------------------


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"version_table": version_table("stacks"), "compare_type": True},
    )
    return list(compare_metadata(context, Base.metadata))


def _downgrade_to_base(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(stacks_server.MIGRATIONS))
    script = ScriptDirectory.from_config(config)

    def downgrade(revision: object, _context: object) -> object:
        return script._downgrade_revs("base", revision)  # type: ignore[arg-type]

    with EnvironmentContext(config, script, fn=downgrade) as env:
        env.configure(connection=connection, version_table=version_table("stacks"))
        env.run_migrations()


@pytest.mark.empty_database
async def test_migrated_schema_matches_the_models(harness: Harness) -> None:
    url = harness.settings.resolved_database_url()
    engine = create_migration_engine(url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
            version = await connection.scalar(
                text(f"SELECT version_num FROM {version_table('stacks')}")
            )
            assert version == "stacks_0005"

        # Starting a second replica on a migrated database is a no-op migration.
        second = await stacks_server.start(harness.settings, host="127.0.0.1", port=0)
        await second.stop(0)

        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to_base)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not {"stacks_stacks", "stacks_stack_tags", "stacks_stack_annotations"} & tables
    finally:
        await engine.dispose()


# -- owner, transfer, annotations ----------------------------------------------------------


async def test_owner_is_the_creator_and_moves_only_to_members(harness: Harness) -> None:
    created = await harness.stub.CreateStack(
        stacks_pb2.CreateStackRequest(ref=ref("acme", "web", "dev")),
        metadata=(("x-cairn-user-login", "alice"),),
    )
    assert created.owner_login == "alice"
    harness.identity.members["acme"] = {"alice", "bob"}

    moved = await harness.stub.ReassignStackOwner(
        stacks_pb2.ReassignStackOwnerRequest(ref=created.ref, new_owner_login="bob")
    )
    assert (moved.previous_owner_login, moved.stack.owner_login) == ("alice", "bob")
    refused = await rpc_error(
        harness.stub.ReassignStackOwner(
            stacks_pb2.ReassignStackOwnerRequest(ref=created.ref, new_owner_login="carol")
        )
    )
    assert refused.code() == grpc.StatusCode.NOT_FOUND  # not a member: names nothing here
    assert (await get(harness, "acme", "web", "dev")).owner_login == "bob"


async def test_transfer_keeps_the_id_and_records_the_new_path(harness: Harness) -> None:
    created = await harness.stub.CreateStack(
        stacks_pb2.CreateStackRequest(ref=ref("acme", "web", "dev"), teams=["ops"]),
        metadata=(("x-cairn-user-login", "alice"),),
    )
    harness.identity.members["beta"] = {"alice"}

    moved = await harness.stub.TransferStack(
        stacks_pb2.TransferStackRequest(ref=created.ref, destination_organization="beta")
    )

    assert (moved.id, moved.ref.organization, moved.owner_login) == (created.id, "beta", "alice")
    assert harness.updates.moved == [(created.id, "beta")]
    assert await get(harness, "beta", "web", "dev") == moved
    # Back again, with a caller who now takes over from an owner not in the destination.
    back = await harness.stub.TransferStack(
        stacks_pb2.TransferStackRequest(ref=moved.ref, destination_organization="acme"),
        metadata=(("x-cairn-user-login", "zed"),),
    )
    assert (back.ref.organization, back.owner_login) == ("acme", "zed")


async def test_annotations_keep_their_latest_versions(harness: Harness) -> None:
    stack = await create(harness, "acme", "web", "dev")
    for number in range(1, 106):
        written = await harness.stub.UpsertAnnotation(
            stacks_pb2.UpsertAnnotationRequest(
                ref=stack.ref,
                kind="custom",
                content=str(number).encode(),
                expected_version=number - 1,
            )
        )
        assert written.version == number
    latest = await harness.stub.GetAnnotation(
        stacks_pb2.GetAnnotationRequest(ref=stack.ref, kind="custom")
    )
    assert (latest.version, latest.content) == (105, b"105")
    oldest = await harness.stub.GetAnnotation(
        stacks_pb2.GetAnnotationRequest(ref=stack.ref, kind="custom", version=6)
    )
    assert oldest.content == b"6"
    forgotten = await rpc_error(
        harness.stub.GetAnnotation(
            stacks_pb2.GetAnnotationRequest(ref=stack.ref, kind="custom", version=5)
        )
    )
    assert forgotten.code() == grpc.StatusCode.NOT_FOUND


# -- workflows the gateway used to run -------------------------------------------------------


async def test_create_with_an_initial_state_imports_it(harness: Harness) -> None:
    created = await harness.stub.CreateStack(
        stacks_pb2.CreateStackRequest(ref=ref("acme", "web", "dev"), initial_state=b'{"v": 3}')
    )
    assert harness.updates.imported == [(created.id, b'{"v": 3}')]


async def test_a_refused_initial_state_takes_the_new_stack_away(harness: Harness) -> None:
    harness.updates.import_refusal = (grpc.StatusCode.INVALID_ARGUMENT, "Bad Request: no")
    error = await rpc_error(
        harness.stub.CreateStack(
            stacks_pb2.CreateStackRequest(ref=ref("acme", "web", "dev"), initial_state=b"{}")
        )
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Bad Request: no")
    missing = await rpc_error(get(harness, "acme", "web", "dev"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert len(harness.updates.purged) == 1


async def test_transfer_for_a_token_needs_it_to_administer_the_destination(
    harness: Harness,
) -> None:
    created = await create(harness, "acme", "web", "dev")
    as_token = (("x-cairn-user-login", "alice"), ("x-cairn-token-id", "t1"))
    refused = await rpc_error(
        harness.stub.TransferStack(
            stacks_pb2.TransferStackRequest(ref=created.ref, destination_organization="beta"),
            metadata=as_token,
        )
    )
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert (await get(harness, "acme", "web", "dev")).id == created.id
    # The destination is checked before its name: an outsider learns nothing from it.
    bad_name = await rpc_error(
        harness.stub.TransferStack(
            stacks_pb2.TransferStackRequest(ref=created.ref, destination_organization="bad org"),
            metadata=as_token,
        )
    )
    assert bad_name.code() == grpc.StatusCode.NOT_FOUND

    harness.identity.admin_tokens["beta"] = {"t1"}
    moved = await harness.stub.TransferStack(
        stacks_pb2.TransferStackRequest(ref=created.ref, destination_organization="beta"),
        metadata=as_token,
    )
    assert (moved.id, moved.ref.organization) == (created.id, "beta")


async def test_start_retags_only_after_the_start_and_only_changed_tags(harness: Harness) -> None:
    stack = await create(harness, "acme", "web", "dev", keep="1")

    def start(**tags: str) -> Awaitable[stacks_pb2.StartStackUpdateResponse]:
        return harness.stub.StartStackUpdate(
            stacks_pb2.StartStackUpdateRequest(
                ref=stack.ref, update_id="u1", journal_version=1, tags=tags
            )
        )

    started = await start()
    assert (started.version, started.token, started.journal_version) == (7, "lease", 1)
    assert harness.updates.started == [(stack.id, "u1", 1)]
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {"keep": "1"}

    # Bad tags are refused before the update starts.
    bad = await rpc_error(start(**{"bad tag": "x"}))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(harness.updates.started) == 1

    # A refused start leaves the tags as they were.
    harness.updates.start_refusal = (grpc.StatusCode.FAILED_PRECONDITION, "Conflict: busy")
    refused = await rpc_error(start(new="2"))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {"keep": "1"}

    harness.updates.start_refusal = None
    await start(new="2")
    assert dict((await get(harness, "acme", "web", "dev")).tags) == {"new": "2"}


async def test_downstream_references_resolve_names_to_stacks_of_the_organization(
    harness: Harness,
) -> None:
    target = await create(harness, "acme", "net", "prod")
    app = await create(harness, "acme", "app", "prod")
    same_project = await create(harness, "acme", "net", "dev")
    elsewhere = await create(harness, "beta", "app", "prod")
    record = updates_pb2.StackReferenceRecord
    harness.updates.references = [
        record(stack_id=app.id, version=4, name="acme/net/prod"),
        # `prod` read by acme/app/prod means acme/app/prod itself, not the target.
        record(stack_id=app.id, version=4, name="prod"),
        record(stack_id=same_project.id, version=2, name="prod"),
        record(stack_id=elsewhere.id, version=9, name="acme/net/prod"),
        record(stack_id=target.id, version=1, name="prod"),
    ]
    reply = await harness.stub.ListDownstreamReferences(
        stacks_pb2.ListDownstreamReferencesRequest(ref=target.ref)
    )
    assert [(r.ref.project, r.ref.stack, r.version) for r in reply.references] == [
        ("app", "prod", 4),
        ("net", "dev", 2),
    ]
