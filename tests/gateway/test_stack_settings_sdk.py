"""Stack settings, rename and transfer through the official Python SDK (`pulumi-cloud-sdk`).

The SDK refuses any answer missing a required field, so every call succeeding proves the
gateway's shapes; the values are checked as well. Calls run in a thread because the SDK
blocks and the gateway shares the test's event loop.
"""

from __future__ import annotations

import urllib.error
from typing import TypeVar

import pytest
import yaml

try:
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.models import (
        AppStackRenameRequest,
        GetStarterWorkflowRequest,
        TransferStackRequest,
        UpdateStackNotificationSettingsRequest,
        UserInfo,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from protos.cairn.v1 import identity_pb2
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, Cairn
from tests.gateway.sdk import SdkCaller

T = TypeVar("T")


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        self.stacks = StacksApi(self.client)


async def test_stack_settings_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    sdk = Sdk(cairn)
    api = sdk.stacks
    await cairn.identity.CreateUser(identity_pb2.CreateUserRequest(login="bob", name="Bob B"))
    await cairn.identity.SetMembership(
        identity_pb2.SetMembershipRequest(organization="admin", user_login="bob", role=MEMBER)
    )
    created = await cairn.json(
        "POST",
        "/api/stacks/admin/web",
        body={"stackName": "dev", "tags": {"pulumi:runtime": "python"}},
    )

    metadata = await sdk(api.get_stack_metadata, "admin", "web", "dev")
    assert (metadata.id, metadata.org_name, metadata.project_name, metadata.stack_name) == (
        created["id"],
        "admin",
        "web",
        "dev",
    )
    assert metadata.owned_by.github_login == "admin"
    assert not metadata.notification_settings.notify_update_failure

    updated = await sdk(
        api.update_stack_notification_settings,
        "admin",
        "web",
        "dev",
        UpdateStackNotificationSettingsRequest(
            notify_update_failure=True, notify_update_success=True
        ),
    )
    assert updated.id == created["id"]
    assert updated.notification_settings.notify_update_failure
    assert updated.notification_settings.notify_update_success

    previous = await sdk(
        api.reassign_stack_ownership,
        "admin",
        "web",
        "dev",
        UserInfo(name="Bob B", github_login="bob", avatar_url=""),
    )
    assert (previous.github_login, previous.name) == ("admin", "admin")
    owner = (await sdk(api.get_stack_metadata, "admin", "web", "dev")).owned_by
    assert (owner.github_login, owner.name, owner.avatar_url) == ("bob", "Bob B", "")

    await sdk(api.upsert_stacks_annotations, "admin", "web", "dev", "custom", {"tier": "gold"})
    await sdk(
        api.upsert_stacks_annotations,
        "admin",
        "web",
        "dev",
        "custom",
        {"tier": "silver"},
        source="sdk",
        version=1,
    )
    annotation = await sdk(api.get_stacks_annotation, "admin", "web", "dev", "custom")
    assert annotation["content"] == {"tier": "silver"}
    assert (annotation["version"], annotation["source"]) == (2, "sdk")
    first = await sdk(api.get_stacks_annotation, "admin", "web", "dev", "custom", version=1)
    assert first["content"] == {"tier": "gold"}
    with pytest.raises(urllib.error.HTTPError) as stale:
        await sdk(
            api.upsert_stacks_annotations, "admin", "web", "dev", "custom", {"x": 1}, version=1
        )
    assert stale.value.code == 409

    workflow = await sdk(
        api.get_stack_starter_workflow,
        "admin",
        "web",
        "dev",
        GetStarterWorkflowRequest(
            ci_system="github", working_directory="infra", enable_path_filters=False
        ),
    )
    steps = yaml.safe_load(workflow.content)["jobs"]["update"]["steps"]
    assert {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}} in steps

    renamed = await sdk(
        api.rename_stack,
        "admin",
        "web",
        "dev",
        AppStackRenameRequest(new_name="prod", new_project="web"),
    )
    history = await cairn.json("GET", "/api/stacks/admin/web/prod/updates")
    assert renamed.update_id and renamed.update_id == history["updates"][0]["updateID"]

    await cairn.identity.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name="acme", admin_login="admin")
    )
    await sdk(api.transfer_stack, "admin", "web", "prod", TransferStackRequest(to_org="acme"))
    moved = await sdk(api.get_stack_metadata, "acme", "web", "prod")
    assert (moved.id, moved.org_name) == (created["id"], "acme")
    # Bob does not belong to acme, so the caller who moved the stack owns it now.
    assert moved.owned_by.github_login == "admin"
    assert moved.notification_settings.notify_update_success
