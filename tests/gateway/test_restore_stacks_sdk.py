"""Deleted stacks come back with their history through the official SDK's restore-stack
routes while inside their window, and are purged for good after it."""

from __future__ import annotations

import asyncio
import urllib.error
from collections.abc import AsyncIterator

import grpc
import pytest

try:
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.models import (
        AppCreateStackRequest,
        AppDecryptValueRequest,
        AppEncryptValueRequest,
        RestoreDeletedStackRequest,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from protos.cairn.v1 import secrets_pb2, secrets_pb2_grpc, updates_pb2, updates_pb2_grpc
from services.common.clock import ManualClock
from services.common.config import Settings
from tests.conftest import signed_channel
from tests.gateway.cli import begin, create_stack, resource, summary
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn
from tests.gateway.sdk import SdkCaller

ORG, PROJECT = "admin", "web"
DAY = 86400.0


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn) -> None:
        super().__init__(cairn)
        self.orgs = OrganizationsApi(self.client)
        self.stacks = StacksApi(self.client)

    async def status(self, method: object, *args: object) -> int:
        with pytest.raises(urllib.error.HTTPError) as refused:
            await self(method, *args)  # type: ignore[arg-type]
        return refused.value.code


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def cairn(
    any_settings: Settings, aiohttp_client: AiohttpClient, clock: ManualClock
) -> AsyncIterator[Cairn]:
    settings = any_settings.model_copy(
        update={"deleted_stack_retention_days": 2, "deleted_stack_sweep_seconds": 0.05}
    )
    async for running in running_cairn(settings, aiohttp_client, clock=clock):
        yield running


async def _update(cairn: Cairn, stack: str, names: list[str]) -> None:
    run = await begin(cairn, f"/api/stacks/{ORG}/{PROJECT}/{stack}")
    run.resources = [resource(PROJECT, stack, name) for name in names]
    await run.full_checkpoint({})
    await run.send_events([summary({"create": len(names)})])
    await run.complete()


async def test_a_deleted_stack_is_restored_with_its_history_and_key(
    cairn: Cairn, clock: ManualClock
) -> None:
    sdk = Sdk(cairn)
    await create_stack(cairn, PROJECT, "dev")
    await _update(cairn, "dev", ["a"])
    await _update(cairn, "dev", ["a", "b"])
    here = (ORG, PROJECT, "dev")
    sealed = await sdk(sdk.stacks.encrypt_value, *here, AppEncryptValueRequest(plaintext=b"pw"))
    stack_id = (await cairn.json("GET", f"/api/stacks/{ORG}/{PROJECT}/dev"))["id"]

    assert (await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks == []
    await sdk(sdk.stacks.delete_stack, *here, force=True)
    assert await sdk.status(sdk.stacks.get_stack, *here) == 404

    listed = (await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks
    assert [(s.id, s.program_id, s.project_name, s.stack_name) for s in listed] == [
        (stack_id, stack_id, PROJECT, "dev")
    ]
    assert listed[0].version == 2
    assert listed[0].deleted_at == int(clock.now())
    assert listed[0].last_update.result.value == "succeeded"
    assert listed[0].last_update.resource_count == 2

    # A live stack took the name meanwhile: restoring under it is refused, nothing changes.
    await sdk(sdk.orgs.create_stack, ORG, PROJECT, AppCreateStackRequest(stack_name="dev"))
    request = RestoreDeletedStackRequest(stack_name="dev")
    assert await sdk.status(sdk.orgs.restore_deleted_stack, ORG, stack_id, request) == 409
    assert len((await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks) == 1
    unknown = RestoreDeletedStackRequest(stack_name="x")
    assert await sdk.status(sdk.orgs.restore_deleted_stack, ORG, "0" * 32, unknown) == 404

    clock.advance(DAY)
    restored_as = RestoreDeletedStackRequest(stack_name="dev-again")
    await sdk(sdk.orgs.restore_deleted_stack, ORG, stack_id, restored_as)
    again = (ORG, PROJECT, "dev-again")
    stack = await sdk(sdk.stacks.get_stack, *again)
    assert (stack.id, stack.version) == (stack_id, 2)
    history = await cairn.json("GET", f"/api/stacks/{ORG}/{PROJECT}/dev-again/updates")
    assert [entry["version"] for entry in history["updates"]] == [2, 1]
    exported = await cairn.json("GET", f"/api/stacks/{ORG}/{PROJECT}/dev-again/export")
    assert len(exported["deployment"]["resources"]) == 2
    opened = await sdk(
        sdk.stacks.decrypt_value, *again, AppDecryptValueRequest(ciphertext=sealed.ciphertext)
    )
    assert opened.plaintext == b"pw"
    assert (await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks == []
    audit = await cairn.json("GET", f"/api/orgs/{ORG}/auditlogs?eventFilter=stack.restore")
    # The refused attempts are recorded too; the restore names the stack's new name.
    assert len(audit["auditLogEvents"]) == 3
    assert any("dev-again" in str(event) for event in audit["auditLogEvents"])


async def test_a_deleted_stack_is_purged_for_good_after_its_window(
    cairn: Cairn, clock: ManualClock
) -> None:
    sdk = Sdk(cairn)
    await create_stack(cairn, PROJECT, "gone")
    await _update(cairn, "gone", ["a"])
    here = (ORG, PROJECT, "gone")
    sealed = await sdk(sdk.stacks.encrypt_value, *here, AppEncryptValueRequest(plaintext=b"pw"))
    stack_id = (await cairn.json("GET", f"/api/stacks/{ORG}/{PROJECT}/gone"))["id"]
    await sdk(sdk.stacks.delete_stack, *here, force=True)

    settings = cairn.system.settings
    updates_channel = signed_channel(settings, settings.updates_address)
    secrets_channel = signed_channel(settings, settings.secrets_address)
    updates = updates_pb2_grpc.UpdatesServiceStub(updates_channel)
    keys = secrets_pb2_grpc.SecretsServiceStub(secrets_channel)
    listing = updates_pb2.ListUpdatesRequest(stack_id=stack_id, page_size=10, page=1)
    try:
        # Inside the window the sweep keeps everything.
        clock.advance(2 * DAY - 60)
        await asyncio.sleep(0.3)
        assert len((await updates.ListUpdates(listing)).updates) == 1
        kept = secrets_pb2.DecryptRequest(stack_id=stack_id, ciphertext=sealed.ciphertext)
        assert (await keys.Decrypt(kept)).plaintext == b"pw"
        assert len((await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks) == 1

        clock.advance(120)
        # Out of its window, the stack is no longer offered, even before the sweep runs.
        assert (await sdk(sdk.orgs.list_deleted_stacks, ORG)).deleted_stacks == []
        request = RestoreDeletedStackRequest(stack_name="gone")
        assert await sdk.status(sdk.orgs.restore_deleted_stack, ORG, stack_id, request) == 404
        for _ in range(100):
            if not (await updates.ListUpdates(listing)).updates:
                break
            await asyncio.sleep(0.05)
        assert (await updates.ListUpdates(listing)).updates == []
        # The data key went too (a later step of the same purge): nothing sealed for the
        # stack can be opened any more.
        for _ in range(100):
            try:
                await keys.Decrypt(kept)
            except grpc.aio.AioRpcError:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(grpc.aio.AioRpcError):
            await keys.Decrypt(kept)
    finally:
        await updates_channel.close(None)
        await secrets_channel.close(None)
