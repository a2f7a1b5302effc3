"""The official SDK pointed at a test gateway, shared by the SDK-driven tests.

Importing this module needs `pulumi-cloud-sdk`; each test file checks for it first and skips
with a reason when it is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from pulumi_cloud_sdk.api_client import ApiClient
from pulumi_cloud_sdk.configuration import Configuration

from tests.gateway.conftest import ADMIN_TOKEN, Cairn

T = TypeVar("T")


def sdk_client(cairn: Cairn, token: str = ADMIN_TOKEN, *, lease: str = "") -> ApiClient:
    """An SDK client for the test gateway, with an access token or an update's lease token."""
    configuration = Configuration()
    configuration.host = str(cairn.client.make_url("")).rstrip("/")
    client = ApiClient(configuration)
    if lease:
        client.default_headers["Authorization"] = f"update-token {lease}"
    else:
        configuration.access_token = token
    return client


async def sdk(method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking SDK call off the event loop."""
    return await asyncio.to_thread(method, *args, **kwargs)


class SdkCaller:
    """Base of a test file's SDK facade: `await caller(api.method, ...)`."""

    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        self.client = sdk_client(cairn, token)

    async def __call__(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await sdk(method, *args, **kwargs)
