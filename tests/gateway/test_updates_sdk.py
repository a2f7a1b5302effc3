"""The update protocol of every kind, stack history and export/import through the official
Python SDK (`pulumi-cloud-sdk`).

The SDK refuses answers missing a required field or carrying an unknown enum value, so each
call returning proves the shape; the values are checked as well. Lease calls go through a
client whose Authorization header is the update's lease token. The SDK blocks (urllib), so
every call runs in a thread.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

try:
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
    from pulumi_cloud_sdk.models import (
        AppAppendUpdateLogEntryRequest,
        AppCompleteUpdateRequest,
        AppEngineEvent,
        AppEngineEventBatch,
        AppImportStackRequest,
        AppJournalEntries,
        AppJournalEntry,
        AppJournalEntryKind,
        AppOperationResult,
        AppPatchUpdateCheckpointDeltaRequest,
        AppPatchUpdateCheckpointRequest,
        AppPatchUpdateVerbatimCheckpointRequest,
        AppRenewUpdateLeaseRequest,
        AppSecretsProvidersV1,
        AppStartUpdateRequest,
        AppStdoutEngineEvent,
        AppSummaryEvent,
        AppUpdateMetadata,
        AppUpdateOptions,
        AppUpdateProgramRequest,
        AppUpdateStatus,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.cli import create_stack, deployment, resource, single_edit, stack_resource
from tests.gateway.conftest import ADMIN_TOKEN, Cairn
from tests.gateway.sdk import sdk, sdk_client

ORG, PROJECT, STACK = "admin", "web", "dev"
HERE = (ORG, PROJECT, STACK)
SECRETS = {"type": "passphrase", "state": {"salt": "v1:abc"}}
T = TypeVar("T")
Call = Callable[..., Any]


@dataclass(frozen=True)
class KindCalls:
    """One update kind's SDK methods, unbound: the first argument picks the client."""

    create: Call
    start: Call
    status: Call
    events: Call
    renew: Call
    record_event: Call
    record_batch: Call
    log: Call
    journal: Call
    complete: Call
    cancel: Call
    # Previews write no state: the SDK has no checkpoint methods for them.
    checkpoint: Call | None = None
    verbatim: Call | None = None
    delta: Call | None = None


KINDS: dict[str, KindCalls] = {
    "update": KindCalls(
        create=StacksApi.create_update_for_update,
        start=StacksApi.start_update_for_update,
        status=StacksApi.get_update_status_for_update,
        events=StacksApi.get_engine_events_update,
        renew=StacksApi.renew_update_lease_update,
        record_event=StacksApi.record_engine_event_update,
        record_batch=StacksApi.record_engine_event_batch_update,
        log=StacksApi.append_update_log_entry_update,
        journal=StacksApi.create_journal_entries_update,
        complete=StacksApi.complete_update_update,
        cancel=StacksApi.cancel_update_update,
        checkpoint=StacksApi.patch_update_checkpoint_update,
        verbatim=StacksApi.patch_update_verbatim_checkpoint_update,
        delta=StacksApi.patch_update_checkpoint_delta_update,
    ),
    "preview": KindCalls(
        create=StacksApi.create_update_for_preview,
        start=StacksApi.start_update_for_preview,
        status=StacksApi.get_update_status_for_preview,
        events=StacksApi.get_engine_events_preview,
        renew=StacksApi.renew_update_lease_preview,
        record_event=StacksApi.record_engine_event_preview,
        record_batch=StacksApi.record_engine_event_batch_preview,
        log=StacksApi.append_update_log_entry_preview,
        journal=StacksApi.create_journal_entries_preview,
        complete=StacksApi.complete_update_preview,
        cancel=StacksApi.cancel_update_preview,
    ),
    "refresh": KindCalls(
        create=StacksApi.create_update_for_refresh,
        start=StacksApi.start_update_for_refresh,
        status=StacksApi.get_update_status_for_refresh,
        events=StacksApi.get_engine_events_refresh,
        renew=StacksApi.renew_update_lease_refresh,
        record_event=StacksApi.record_engine_event_refresh,
        record_batch=StacksApi.record_engine_event_batch_refresh,
        log=StacksApi.append_update_log_entry_refresh,
        journal=StacksApi.create_journal_entries_refresh,
        complete=StacksApi.complete_update_refresh,
        cancel=StacksApi.cancel_update_refresh,
        checkpoint=StacksApi.patch_update_checkpoint_refresh,
        verbatim=StacksApi.patch_update_verbatim_checkpoint_refresh,
        delta=StacksApi.patch_update_checkpoint_delta_refresh,
    ),
    "destroy": KindCalls(
        create=StacksApi.create_update_for_destroy,
        start=StacksApi.start_update_for_destroy,
        status=StacksApi.get_update_status_for_destroy,
        events=StacksApi.get_engine_events_destroy,
        renew=StacksApi.renew_update_lease_destroy,
        record_event=StacksApi.record_engine_event_destroy,
        record_batch=StacksApi.record_engine_event_batch_destroy,
        log=StacksApi.append_update_log_entry_destroy,
        journal=StacksApi.create_journal_entries_destroy,
        complete=StacksApi.complete_update_destroy,
        cancel=StacksApi.cancel_update_destroy,
        checkpoint=StacksApi.patch_update_checkpoint_destroy,
        verbatim=StacksApi.patch_update_verbatim_checkpoint_destroy,
        delta=StacksApi.patch_update_checkpoint_delta_destroy,
    ),
}


def stacks_api(cairn: Cairn, *, token: str = ADMIN_TOKEN, lease: str = "") -> StacksApi:
    """The SDK's StacksApi with an access token, or with an update's lease token."""
    return StacksApi(sdk_client(cairn, token, lease=lease))


async def refused(method: Call, *args: Any) -> int:
    with pytest.raises(urllib.error.HTTPError) as error:
        await sdk(method, *args)
    return error.value.code


def program(kind: str) -> AppUpdateProgramRequest:
    return AppUpdateProgramRequest(
        name=PROJECT,
        runtime="nodejs",
        main="",
        description="",
        options=AppUpdateOptions(
            local_policy_pack_paths=[],
            color="raw",
            dry_run=kind == "preview",
            parallel=16,
            show_config=False,
            show_replacement_steps=False,
            show_names=False,
            summary=False,
            debug=False,
        ),
        config={},
        metadata=AppUpdateMetadata(message=f"{kind} via sdk", environment={"exec.kind": "sdk"}),
    )


def untyped(names: list[str]) -> dict[str, Any]:
    resources = [stack_resource(PROJECT, STACK, {}), *(resource(PROJECT, STACK, n) for n in names)]
    return {"version": 3, "deployment": deployment(resources, SECRETS)}


def sdk_text(value: Any) -> bytes:
    """The bytes the SDK writes for a JSON member (json.dumps with its default spacing)."""
    return json.dumps(value).encode()


async def write_state(calls: KindCalls, lease: StacksApi, update_id: str) -> None:
    """A full checkpoint, a verbatim one and a delta on top: pets a, b, c in the end."""
    assert calls.checkpoint and calls.verbatim and calls.delta
    full = untyped(["a"])
    await sdk(
        calls.checkpoint,
        lease,
        *HERE,
        update_id,
        AppPatchUpdateCheckpointRequest(is_invalid=False, version=3, deployment=full["deployment"]),
    )
    verbatim = untyped(["a", "b"])
    await sdk(
        calls.verbatim,
        lease,
        *HERE,
        update_id,
        AppPatchUpdateVerbatimCheckpointRequest(
            version=3, untyped_deployment=verbatim, sequence_number=1
        ),
    )
    old, new = sdk_text(verbatim), sdk_text(untyped(["a", "b", "c"]))
    await sdk(
        calls.delta,
        lease,
        *HERE,
        update_id,
        AppPatchUpdateCheckpointDeltaRequest(
            version=3,
            checkpoint_hash=hashlib.sha256(new).hexdigest(),
            sequence_number=2,
            deployment_delta=single_edit(old, new),
        ),
    )


async def run_kind(cairn: Cairn, kind: str, calls: KindCalls, version: int) -> None:
    """One update of `kind` from creation to completion, every lease call through the SDK."""
    api = stacks_api(cairn)
    is_preview = kind == "preview"
    created = await sdk(calls.create, api, *HERE, program(kind))
    update_id = created.update_id
    started = await sdk(
        calls.start,
        api,
        *HERE,
        update_id,
        AppStartUpdateRequest(tags={"pulumi:project": PROJECT}, journal_version=1),
    )
    assert started.token and started.version == version
    # Previews write no state, so they never journal.
    assert (started.journal_version or 0) == (0 if is_preview else 1)
    lease = stacks_api(cairn, lease=started.token)
    renewed = await sdk(
        calls.renew,
        lease,
        *HERE,
        update_id,
        AppRenewUpdateLeaseRequest(token=started.token, duration=120),
    )
    assert renewed.token == started.token and renewed.token_expiration >= time.time() + 100

    now = int(time.time())
    hello = AppStdoutEngineEvent(message=f"hello {kind}\n", color="raw")
    await sdk(
        calls.record_event,
        lease,
        *HERE,
        update_id,
        AppEngineEvent(sequence=0, timestamp=now, stdout_event=hello),
    )
    summary = AppSummaryEvent(
        maybe_corrupt=False,
        duration_seconds=1,
        resource_changes={"same": 1},
        policy_packs={},
        is_preview=is_preview,
        result=AppOperationResult.Succeeded,
    )
    await sdk(
        calls.record_batch,
        lease,
        *HERE,
        update_id,
        AppEngineEventBatch(
            events=[AppEngineEvent(sequence=1, timestamp=now, summary_event=summary)]
        ),
    )
    await sdk(
        calls.log,
        lease,
        *HERE,
        update_id,
        AppAppendUpdateLogEntryRequest(kind="stdout", fields={"text": f"log {kind}\n"}),
    )
    # The SDK insists on integer removeOld/removeNew (the CLI sends null); a secrets-manager
    # entry ignores both.
    secrets_entry = AppJournalEntry(
        version=1,
        kind=AppJournalEntryKind.SecretsManager,
        sequence_id=1,
        operation_id=0,
        remove_old=0,
        remove_new=0,
        secrets_provider=AppSecretsProvidersV1(type="passphrase", state=SECRETS["state"]),
    )
    entries = AppJournalEntries(entries=[secrets_entry])
    if is_preview:
        assert await refused(calls.journal, lease, *HERE, update_id, entries) == 403
    else:
        await sdk(calls.journal, lease, *HERE, update_id, entries)
        await write_state(calls, lease, update_id)
    await sdk(
        calls.complete,
        lease,
        *HERE,
        update_id,
        AppCompleteUpdateRequest(status=AppUpdateStatus.Succeeded),
    )

    status = await sdk(calls.status, api, *HERE, update_id)
    assert status.status is AppUpdateStatus.Succeeded
    assert [e.fields for e in status.events] == [{"text": f"log {kind}\n"}]
    events = await sdk(calls.events, api, *HERE, update_id)
    assert [e.stdout_event.message for e in events.events if e.stdout_event] == [f"hello {kind}\n"]
    (summarised,) = [e.summary_event for e in events.events if e.summary_event]
    assert summarised.resource_changes == {"same": 1}
    assert summarised.is_preview is is_preview


async def test_every_update_kind_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create_stack(cairn, PROJECT, STACK)
    version = 0
    for kind, calls in KINDS.items():
        version += kind != "preview"
        await run_kind(cairn, kind, calls, max(version, 1))

    api = stacks_api(cairn)
    urns = [resource(PROJECT, STACK, n)["urn"] for n in ("a", "b", "c")]
    exported = await sdk(api.export_stack, *HERE)
    assert exported.version == 3
    assert [r["urn"] for r in exported.deployment["resources"]][1:] == urns

    # Each kind but the preview made a version; the history lists them newest first.
    history = await sdk(api.get_stack_updates, *HERE)
    assert [u["info"]["kind"] for u in history["updates"]] == ["destroy", "refresh", "update"]
    latest = await sdk(api.get_latest_stack_update, *HERE)
    assert (latest.version, latest.info.kind.value) == (3, "destroy")
    assert latest.info.message == "destroy via sdk"
    first = await sdk(api.get_stack_update, *HERE, 1)
    assert (first.version, first.info.kind.value, first.info.result.value) == (
        1,
        "update",
        "succeeded",
    )
    at_first = await sdk(api.export_stack_at_version, *HERE, 1)
    assert [r["urn"] for r in at_first.deployment["resources"]][1:] == urns

    # Import replaces the state with the given one as a new version.
    imported = await sdk(
        api.import_stack,
        *HERE,
        AppImportStackRequest(version=3, deployment=untyped(["z"])["deployment"]),
    )
    assert imported.update_id
    after = await sdk(api.export_stack, *HERE)
    assert [r["urn"] for r in after.deployment["resources"]][1:] == [
        resource(PROJECT, STACK, "z")["urn"]
    ]
    assert (await sdk(api.get_latest_stack_update, *HERE)).version == 4


async def test_updates_of_every_kind_are_cancelled_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create_stack(cairn, PROJECT, STACK)
    api = stacks_api(cairn)
    for kind, calls in KINDS.items():
        created = await sdk(calls.create, api, *HERE, program(kind))
        started = await sdk(calls.start, api, *HERE, created.update_id, AppStartUpdateRequest())
        await sdk(calls.cancel, api, *HERE, created.update_id)
        status = await sdk(calls.status, api, *HERE, created.update_id)
        assert status.status is AppUpdateStatus.Cancelled, kind
        lease = stacks_api(cairn, lease=started.token)
        done = AppCompleteUpdateRequest(status=AppUpdateStatus.Succeeded)
        assert await refused(calls.complete, lease, *HERE, created.update_id, done) == 409


async def test_history_config_a_client_sent_partially_reads_back_through_the_sdk(
    any_cairn: Cairn,
) -> None:
    """Config values missing `secret`/`object` (or `string`) are stored whole, so the SDK,
    which requires all three, parses the history."""
    from tests.gateway.cli import begin

    cairn = any_cairn
    await create_stack(cairn, PROJECT, STACK)
    partial = {
        "web:size": {"string": "3"},
        "web:password": {"secret": True, "string": "v1:abc"},
        "web:tags": {"object": True, "string": '["a"]'},
        "web:empty": {},
    }
    run = await begin(cairn, f"/api/stacks/{ORG}/{PROJECT}/{STACK}", config=partial)
    await run.complete()
    api = stacks_api(cairn)
    latest = await sdk(api.get_latest_stack_update, *HERE)
    config = {key: (v.string, v.secret, v.object) for key, v in latest.info.config.items()}
    assert config == {
        "web:size": ("3", False, False),
        "web:password": ("v1:abc", True, False),
        "web:tags": ('["a"]', False, True),
        "web:empty": ("", False, False),
    }
    history = await cairn.json("GET", f"/api/stacks/{ORG}/{PROJECT}/{STACK}/updates")
    assert history["updates"][0]["config"]["web:size"] == {
        "string": "3",
        "secret": False,
        "object": False,
    }
