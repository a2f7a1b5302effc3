"""Webhooks through the official Python SDK (`pulumi-cloud-sdk`): its models must parse.

The SDK is blocking (urllib) and the gateway shares the test's event loop, so every call
runs in a thread.
"""

from __future__ import annotations

import pytest

try:
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.models import Webhook, WebhookDelivery, WebhookResponse
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.cli import create_stack
from tests.gateway.conftest import Cairn
from tests.gateway.receiver import receiver
from tests.gateway.sdk import sdk, sdk_client

SECRET = "sdk-hook-secret-51c2"


def webhook(url: str, name: str, *, active: bool = True, **extra: object) -> Webhook:
    return Webhook(
        organization_name="admin",
        display_name=f"hook {name}",
        payload_url=url,
        active=active,
        name=name,
        **extra,
    )


async def test_organization_webhooks_through_the_sdk(cairn: Cairn) -> None:
    api = OrganizationsApi(sdk_client(cairn))
    async with receiver() as sink:
        created = await sdk(
            api.create_organization_webhook,
            "admin",
            webhook(sink.url, "ci", secret=SECRET, format="slack", filters=["update_failed"]),
        )
        assert isinstance(created, WebhookResponse)
        assert created.name == "ci" and created.has_secret is True
        assert created.secret is None and created.secret_ciphertext == ""
        assert created.format == "slack" and created.filters == ["update_failed"]

        listed = await sdk(api.list_organization_webhooks, "admin")
        assert [hook.name for hook in listed] == ["ci"]
        fetched = await sdk(api.get_organization_webhook, "admin", "ci")
        assert fetched == created

        changed = await sdk(
            api.update_organization_webhook, "admin", "ci", webhook(sink.url, "ci", active=False)
        )
        assert changed.active is False and changed.has_secret is True

        ping = await sdk(api.ping_organization_webhook, "admin", "ci")
        assert isinstance(ping, WebhookDelivery)
        assert ping.kind == "ping" and ping.response_code == 200
        deliveries = await sdk(api.get_organization_webhook_deliveries, "admin", "ci")
        assert [d.id for d in deliveries] == [ping.id]
        again = await sdk(api.redeliver_organization_webhook_event, "admin", "ci", ping.id)
        assert again.payload == ping.payload and again.id != ping.id
        await sink.wait_for(2)

        await sdk(api.delete_organization_webhook, "admin", "ci")
        assert await sdk(api.list_organization_webhooks, "admin") == []


async def test_stack_webhooks_through_the_sdk(cairn: Cairn) -> None:
    await create_stack(cairn)
    api = StacksApi(sdk_client(cairn))
    where = ("admin", "web", "dev")
    async with receiver() as sink:
        body = webhook(sink.url, "deploys", project_name="web", stack_name="dev")
        created = await sdk(api.create_stack_webhook, *where, body)
        assert isinstance(created, WebhookResponse)
        assert (created.project_name, created.stack_name) == ("web", "dev")
        assert created.has_secret is False and created.format == "raw"

        assert [h.name for h in await sdk(api.list_stack_webhooks, *where)] == ["deploys"]
        assert await sdk(api.get_stack_webhook, *where, "deploys") == created
        changed = await sdk(
            api.update_stack_webhook,
            *where,
            "deploys",
            webhook(sink.url, "deploys", format="ms_teams", groups=["stacks"]),
        )
        assert changed.format == "ms_teams" and changed.groups == ["stacks"]

        ping = await sdk(api.ping_stack_webhook, *where, "deploys")
        assert ping.response_code == 200 and ping.kind == "ping"
        deliveries = await sdk(api.get_stack_webhook_deliveries, *where, "deploys")
        assert [d.id for d in deliveries] == [ping.id]
        again = await sdk(api.redeliver_stack_webhook_event, *where, "deploys", ping.id)
        assert again.response_code == 200
        await sink.wait_for(2)

        await sdk(api.delete_stack_webhook, *where, "deploys")
        assert await sdk(api.list_stack_webhooks, *where) == []
