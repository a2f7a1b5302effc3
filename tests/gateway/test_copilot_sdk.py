"""Copilot through the official Python SDK (`pulumi-cloud-sdk`): its models must parse.

The SDK blocks (urllib) and the gateway shares the test's event loop, so calls run in a
thread.
"""

from __future__ import annotations

import pytest

try:
    from pulumi_cloud_sdk.apis.ai_api_ import AIApi
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

from tests.gateway.conftest import Cairn
from tests.gateway.sdk import sdk, sdk_client


async def test_the_official_sdk_can_start_a_conversation(any_cairn: Cairn) -> None:
    api = AIApi(sdk_client(any_cairn))
    request = CopilotRequest(
        state=CopilotState(client=CopilotClientState(cloud_context=CopilotCloudContext("admin"))),
        query="Write code to create an S3 bucket in Go",
    )
    reply = await sdk(api.copilot_skill, request)
    assert [m.kind for m in reply.messages] == ["response", "response", "program"]
    assert reply.messages[-1].content["language"] == "go"
