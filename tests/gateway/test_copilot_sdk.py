"""Copilot through the official Python SDK (`pulumi-cloud-sdk`): its models must parse.

The SDK blocks (urllib) and the gateway shares the test's event loop, so calls run in a
thread.
"""

from __future__ import annotations

import asyncio

import pytest

try:
    from pulumi_cloud_sdk.api_client import ApiClient
    from pulumi_cloud_sdk.apis.ai_api_ import AIApi
    from pulumi_cloud_sdk.configuration import Configuration
    from pulumi_cloud_sdk.models import (
        CopilotClientState,
        CopilotCloudContext,
        CopilotRequest,
        CopilotState,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.conftest import ADMIN_TOKEN, Cairn


async def test_the_official_sdk_can_start_a_conversation(any_cairn: Cairn) -> None:
    configuration = Configuration()
    configuration.host = str(any_cairn.client.make_url("")).rstrip("/")
    configuration.access_token = ADMIN_TOKEN
    api = AIApi(ApiClient(configuration))
    request = CopilotRequest(
        state=CopilotState(client=CopilotClientState(cloud_context=CopilotCloudContext("admin"))),
        query="Write code to create an S3 bucket in Go",
    )
    reply = await asyncio.to_thread(api.copilot_skill, request)
    assert [m.kind for m in reply.messages] == ["response", "response", "program"]
    assert reply.messages[-1].content["language"] == "go"
