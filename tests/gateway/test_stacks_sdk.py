"""Stacks, their tags and their secrets through the official Python SDK (`pulumi-cloud-sdk`).

The SDK refuses answers missing a required field or carrying an unknown enum value, so each
call returning proves the shape; the values are checked as well. The SDK blocks (urllib),
so every call runs in a thread.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

try:
    from pulumi_cloud_sdk.apis.miscellaneous_api_ import MiscellaneousApi
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.apis.users_api_ import UsersApi
    from pulumi_cloud_sdk.models import (
        AppBatchDecryptRequest,
        AppBatchEncryptRequest,
        AppCreateStackRequest,
        AppDecryptValueRequest,
        AppEncryptValueRequest,
        AppLog3rdPartyDecryptionEvent,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.conftest import ADMIN_TOKEN, Cairn
from tests.gateway.sdk import SdkCaller

ORG, PROJECT = "admin", "web"
T = TypeVar("T")


class Sdk(SdkCaller):
    """The SDK's stack, organization, user and miscellaneous APIs on the test server."""

    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        client = self.client
        self.stacks = StacksApi(client)
        self.orgs = OrganizationsApi(client)
        self.users = UsersApi(client)
        self.misc = MiscellaneousApi(client)

    async def status(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """The HTTP status of a call the server refuses."""
        with pytest.raises(urllib.error.HTTPError) as refused:
            await self(method, *args, **kwargs)
        return refused.value.code


async def test_stacks_and_tags_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    sdk = Sdk(cairn)
    capabilities = await sdk(sdk.misc.capabilities)
    assert {c.capability.value for c in capabilities.capabilities} >= {
        "batch-encrypt",
        "delta-checkpoint-uploads-v2",
    }
    # The OpenAPI document, where the SDK (and `pulumi cloud api`) fetch it.
    specification = await sdk(sdk.misc.fetch_rest_specification)
    assert specification["openapi"].startswith("3.1")
    assert "/api/stacks/{orgName}/{projectName}" in specification["paths"]

    assert await sdk.status(sdk.orgs.project_exists, ORG, PROJECT) == 404
    created = await sdk(
        sdk.orgs.create_stack,
        ORG,
        PROJECT,
        AppCreateStackRequest(stack_name="dev", tags={"team": "blue"}),
    )
    assert not created.messages
    await sdk(sdk.orgs.create_stack, ORG, PROJECT, AppCreateStackRequest(stack_name="prod"))
    assert (
        await sdk.status(
            sdk.orgs.create_stack, ORG, PROJECT, AppCreateStackRequest(stack_name="dev")
        )
        == 409
    )
    await sdk(sdk.orgs.project_exists, ORG, PROJECT)

    stack = await sdk(sdk.stacks.get_stack, ORG, PROJECT, "dev")
    assert (stack.org_name, stack.project_name, stack.stack_name) == (ORG, PROJECT, "dev")
    assert stack.id and stack.version == 0 and stack.tags["team"] == "blue"
    await sdk(sdk.stacks.update_stack_tags, ORG, PROJECT, "dev", {"team": "red", "tier": "1"})
    retagged = await sdk(sdk.stacks.get_stack, ORG, PROJECT, "dev")
    assert (retagged.tags["team"], retagged.tags["tier"]) == ("red", "1")

    listed = await sdk(sdk.users.list_user_stacks, organization=ORG, project=PROJECT)
    assert sorted(s.stack_name for s in listed.stacks) == ["dev", "prod"]
    assert {s.id for s in listed.stacks if s.stack_name == "dev"} == {stack.id}
    tagged = await sdk(sdk.users.list_user_stacks, tag_name="tier", tag_value="1")
    assert [s.stack_name for s in tagged.stacks] == ["dev"]

    await sdk(sdk.stacks.delete_stack, ORG, PROJECT, "prod")
    assert await sdk.status(sdk.stacks.get_stack, ORG, PROJECT, "prod") == 404
    remaining = await sdk(sdk.users.list_user_stacks, organization=ORG)
    assert [s.stack_name for s in remaining.stacks] == ["dev"]


async def test_secrets_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    sdk = Sdk(cairn)
    api = sdk.stacks
    here = (ORG, PROJECT, "dev")
    await sdk(sdk.orgs.create_stack, ORG, PROJECT, AppCreateStackRequest(stack_name="dev"))

    encrypted = await sdk(api.encrypt_value, *here, AppEncryptValueRequest(plaintext=b"hunter2"))
    assert isinstance(encrypted.ciphertext, bytes) and b"hunter2" not in encrypted.ciphertext
    decrypted = await sdk(
        api.decrypt_value, *here, AppDecryptValueRequest(ciphertext=encrypted.ciphertext)
    )
    assert decrypted.plaintext == b"hunter2"

    batch = await sdk(
        api.batch_encrypt_value, *here, AppBatchEncryptRequest(plaintexts=[b"one", b"two"])
    )
    assert len(batch.ciphertexts) == 2 and batch.ciphertexts[0] != batch.ciphertexts[1]
    plain = await sdk(
        api.batch_decrypt_value, *here, AppBatchDecryptRequest(ciphertexts=batch.ciphertexts)
    )
    assert sorted(plain.plaintexts.values()) == [b"one", b"two"]

    event = AppLog3rdPartyDecryptionEvent(secret_name="db", command_name="pulumi config")
    await sdk(api.log_only_decrypt_value, *here, event)
    await sdk(api.log_only_batch_decrypt_value, *here, event)
    logged = await cairn.json("GET", f"/api/orgs/{ORG}/auditlogs?eventFilter=secret.decrypt.logged")
    assert len(logged["auditLogEvents"]) == 2
