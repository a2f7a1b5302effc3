"""The audit log through the official Python SDK (`pulumi-cloud-sdk`): its models must parse.

The SDK is blocking (urllib) and the gateway shares the test's event loop, so every call
runs in a thread.
"""

from __future__ import annotations

import base64
import csv
import io
import time
import urllib.error
from typing import TypeVar

import orjson
import pytest

try:
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.models import (
        AuditLogEvent,
        AuditLogEventTypeCatalogEntry,
        ListAuditLogEventTypesResponse,
        ResponseAuditLogs,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from protos.cairn.v1 import identity_pb2
from tests.gateway.cli import create_stack, stack_path
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, Cairn
from tests.gateway.sdk import sdk, sdk_client

T = TypeVar("T")
S = stack_path()


def organizations(cairn: Cairn, token: str = ADMIN_TOKEN) -> OrganizationsApi:
    return OrganizationsApi(sdk_client(cairn, token))


async def test_audit_logs_through_the_sdk(cairn: Cairn) -> None:
    api = organizations(cairn)
    before = int(time.time())
    await create_stack(cairn)
    plaintext = base64.b64encode(b"x").decode()
    for _ in range(3):
        await cairn.json("POST", f"{S}/encrypt", body={"plaintext": plaintext})
    principal = await cairn.identity.Authenticate(
        identity_pb2.AuthenticateRequest(token=ADMIN_TOKEN)
    )

    page = await sdk(api.list_audit_log_events_handler_v1, "admin", start_time=before + 3600)
    assert isinstance(page, ResponseAuditLogs)
    assert page.continuation_token is None
    events = page.audit_log_events
    assert [e.event for e in events] == ["secret.encrypt"] * 3 + ["stack.create"]
    first = events[-1]
    assert isinstance(first, AuditLogEvent)
    assert first.user.github_login == "admin"
    assert first.token_id == principal.token_info.token_id
    assert first.token_name == "admin-token"
    assert first.source_ip == "127.0.0.1"
    assert before <= first.timestamp <= int(time.time())
    assert first.description == "Stack Created: admin/web/dev"

    filtered = await sdk(
        api.list_audit_log_events_handler_v1,
        "admin",
        start_time=before + 3600,
        event_filter="stack.create",
        user_filter="admin",
    )
    assert [e.event for e in filtered.audit_log_events] == ["stack.create"]

    types = await sdk(api.list_audit_log_event_types, "admin")
    assert isinstance(types, ListAuditLogEventTypesResponse)
    assert all(isinstance(t, AuditLogEventTypeCatalogEntry) for t in types.event_types)
    assert "secret.decrypt" in {t.event for t in types.event_types}

    # The export call accepts text/plain only; it gets the CSV as text.
    exported = await sdk(api.export_audit_log_events_handler_v1, "admin", format="csv")
    assert isinstance(exported, str)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["event"] for r in rows] == ["secret.encrypt"] * 3 + ["stack.create"]
    as_json = await sdk(api.export_audit_log_events_handler_v1, "admin", format="json")
    assert len(orjson.loads(as_json)["auditLogEvents"]) == 4

    member = await cairn.new_user("mo", org_role=("admin", MEMBER))
    with pytest.raises(urllib.error.HTTPError) as refused:
        await sdk(organizations(cairn, member).list_audit_log_events_handler_v1, "admin")
    assert refused.value.code == 403
