"""Update tokens bind to their update and to the stack path it was created under.

A lease token of bob's update, sent under alice's path (or under another stack, project or
update id of bob's own), is refused with the JSON error body, and nothing is written
anywhere: no checkpoint, journal entry, event, log line, renewal or completion on either
side, and no audit entry in any organization's log (only one site-level entry per call).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from protos.cairn.v1 import common_pb2, updates_pb2, updates_pb2_grpc
from services.common.config import Settings
from tests.conftest import signed_channel
from tests.gateway.cli import (
    SECRET_SIG,
    Run,
    begin,
    deployment,
    resource,
    stack_path,
    stack_resource,
    text_of,
)
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

SECRETS = {"type": "passphrase", "state": {"salt": f"v1:{SECRET_SIG}"}}
ALICE = stack_path("admin", "web", "dev")
BOB = stack_path("bob", "web", "dev")
BOB_OTHER_STACK = stack_path("bob", "web", "staging")
BOB_OTHER_PROJECT = stack_path("bob", "api", "dev")


@pytest.fixture
async def cairn(any_settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The system, with room for every refusal of these tests at site level."""
    settings = any_settings.model_copy(
        update={"audit_site_refusals_per_address_per_minute": 10_000}
    )
    async for running in running_cairn(settings, aiohttp_client):
        yield running


def _journal_entry(sequence: int) -> dict[str, Any]:
    state = resource("web", "dev", f"forged-{sequence}")
    return {
        "version": 1,
        "kind": 1,
        "sequenceID": sequence,
        "operationID": sequence,
        "removeOld": None,
        "removeNew": None,
        "state": state,
    }


def _forged_text() -> bytes:
    return text_of([stack_resource("web", "dev", {}), resource("web", "dev", "forged")], SECRETS)


# Every update-token route with a body it would accept from the update's own client.
UPDATE_TOKEN_CALLS: tuple[tuple[str, str, dict[str, Any] | bytes], ...] = (
    ("POST", "/renew_lease", {"duration": 300}),
    (
        "PATCH",
        "/checkpoint",
        {
            "isInvalid": False,
            "version": 3,
            "deployment": deployment([resource("web", "dev", "forged")], SECRETS),
        },
    ),
    (
        "PATCH",
        "/checkpointverbatim",
        b'{"version":3,"untypedDeployment":' + _forged_text() + b',"sequenceNumber":99}',
    ),
    (
        "PATCH",
        "/checkpointdelta",
        {
            "version": 3,
            "checkpointHash": "0" * 64,
            "sequenceNumber": 100,
            "deploymentDelta": [
                {
                    "Span": {
                        "uri": "",
                        "start": {"line": 1, "column": 0, "offset": 0},
                        "end": {"line": 1, "column": 0, "offset": 0},
                    },
                    "NewText": " ",
                }
            ],
        },
    ),
    ("PATCH", "/journalentries", {"entries": [_journal_entry(900), _journal_entry(901)]}),
    (
        "POST",
        "/events/batch",
        {
            "events": [
                {"sequence": 900, "timestamp": 1, "stdoutEvent": {"message": "forged"}},
            ]
        },
    ),
    ("POST", "/events", {"sequence": 901, "timestamp": 1, "stdoutEvent": {"message": "x"}}),
    ("POST", "/log", {"kind": "stdout", "fields": {"text": "forged"}}),
    ("POST", "/complete", {"status": "succeeded"}),
)


async def _call(run: Run, method: str, suffix: str, body: dict[str, Any] | bytes) -> Any:
    if isinstance(body, bytes):
        return await run.call(method, suffix, raw=body)
    return await run.call(method, suffix, body)


async def _stack_view(cairn: Cairn, path: str, token: str) -> dict[str, Any]:
    """Everything a stack shows that a stray write could change."""
    exported = await cairn.json("GET", f"{path}/export", token=token)
    # A journal is replayed on every export, stamped with the time of the export.
    exported["deployment"]["manifest"].pop("time")
    return {
        "stack": await cairn.json("GET", path, token=token),
        "export": exported,
        "history": await cairn.json("GET", f"{path}/updates", token=token),
    }


async def _update_view(cairn: Cairn, path: str, update_id: str, token: str) -> dict[str, Any]:
    """A running update's status lines and engine events."""
    return {
        "status": await cairn.json("GET", f"{path}/update/{update_id}", token=token),
        "events": await cairn.json("GET", f"{path}/update/{update_id}/events", token=token),
    }


async def _org_entries(cairn: Cairn, org: str, token: str) -> list[dict[str, Any]]:
    reply = await cairn.json("GET", f"/api/orgs/{org}/auditlogs?pageSize=1000", token=token)
    found: list[dict[str, Any]] = reply["auditLogEvents"]
    return found


async def _site_entries(cairn: Cairn) -> list[dict[str, Any]]:
    reply = await cairn.json("GET", "/api/admin/auditlogs/export?format=json&siteLevel=true")
    found: list[dict[str, Any]] = reply["auditLogEvents"]
    return found


async def _create_stack(cairn: Cairn, path: str, token: str) -> None:
    org_project, _, name = path.rpartition("/")
    await cairn.json("POST", org_project, token=token, body={"stackName": name})


async def test_a_lease_token_is_refused_under_any_other_path_and_writes_nothing(
    cairn: Cairn,
) -> None:
    bob = await cairn.new_user("bob")
    await _create_stack(cairn, ALICE, ADMIN_TOKEN)
    for path in (BOB, BOB_OTHER_STACK, BOB_OTHER_PROJECT):
        await _create_stack(cairn, path, bob)

    # Alice's stack has a stored version and an update running now (her own lease).
    finished = await begin(cairn, ALICE)
    finished.resources = [stack_resource("web", "dev", {}), resource("web", "dev", "pet")]
    await finished.save(SECRETS, cutoff=1 << 20)
    await finished.complete()
    alices = await begin(cairn, ALICE, journal=True)
    await alices.send_events([{"stdoutEvent": {"message": "alice's own"}}])
    # Bob's update, in journal mode so that every kind of write would fit it.
    bobs = await begin(cairn, BOB, token=bob, journal=True)
    await bobs.journal_entries([_journal_entry(1)])
    await bobs.send_events([{"stdoutEvent": {"message": "bob's own"}}])

    async def views() -> dict[str, Any]:
        return {
            "alice": await _stack_view(cairn, ALICE, ADMIN_TOKEN),
            "alice_update": await _update_view(cairn, ALICE, alices.update_id, ADMIN_TOKEN),
            "bob": await _stack_view(cairn, BOB, bob),
            "bob_update": await _update_view(cairn, BOB, bobs.update_id, bob),
            "bob_other_stack": await _stack_view(cairn, BOB_OTHER_STACK, bob),
            "bob_other_project": await _stack_view(cairn, BOB_OTHER_PROJECT, bob),
        }

    before = await views()
    alice_log = await _org_entries(cairn, "admin", ADMIN_TOKEN)
    bob_log = await _org_entries(cairn, "bob", bob)
    site_before = len(await _site_entries(cairn))

    # (what the path names, path, update id, expected status): always bob's lease token.
    cases = [
        ("another organization", ALICE, bobs.update_id, 404),
        ("another stack", BOB_OTHER_STACK, bobs.update_id, 404),
        ("another project", BOB_OTHER_PROJECT, bobs.update_id, 404),
        ("another update of the path's stack", ALICE, alices.update_id, 401),
        ("an update of another stack", BOB, alices.update_id, 404),
        ("an unknown update", BOB, uuid.uuid4().hex, 404),
    ]
    refused = 0
    for what, path, update_id, status in cases:
        forged = dataclasses.replace(bobs, path=path, update_id=update_id)
        for method, suffix, body in UPDATE_TOKEN_CALLS:
            response = await _call(forged, method, suffix, body)
            assert response.status == status, (what, suffix, await response.text())
            assert response.content_type == "application/json"
            error = await response.json()
            assert error["code"] == status and error["message"], (what, suffix, error)
            refused += 1

    assert await views() == before
    # Nothing in either organization's log; each refusal once at site level, as nobody's.
    assert await _org_entries(cairn, "admin", ADMIN_TOKEN) == alice_log
    assert await _org_entries(cairn, "bob", bob) == bob_log
    newest = await _site_entries(cairn)
    site = newest[: len(newest) - site_before]
    assert len(site) == refused
    assert {entry["organization"] for entry in site} == {""}
    assert {entry["status"] for entry in site} == {401, 404}
    completes = [entry for entry in site if entry["event"] == "update.complete"]
    assert len(completes) == len(cases)
    assert all(entry["actorKind"] in ("update token", "anonymous") for entry in completes)

    # Both real updates carry on, each with its own token under its own path.
    await bobs.ok("POST", "/renew_lease", {"duration": 60})
    await bobs.journal_entries([_journal_entry(2)])
    await bobs.complete()
    assert (await cairn.json("GET", BOB, token=bob))["version"] == 1
    await alices.complete()
    assert (await cairn.json("GET", ALICE))["version"] == 2
    # Bob's completion is attributed to his organization, once verified; none to alice's.
    completed = [
        e for e in await _org_entries(cairn, "bob", bob) if e["event"] == "update.complete"
    ]
    assert [(e["status"], e["actorKind"]) for e in completed] == [(204, "update token")]
    assert [
        e["target"]
        for e in await _org_entries(cairn, "admin", ADMIN_TOKEN)
        if e["event"] == "update.complete"
    ] == [
        f"admin/web/dev/updates/{alices.update_id}",
        f"admin/web/dev/updates/{finished.update_id}",
    ]


async def test_a_finished_update_stays_bound_to_its_path(cairn: Cairn) -> None:
    """A retried `complete` is accepted only under the path the update ran under."""
    bob = await cairn.new_user("bob")
    await _create_stack(cairn, ALICE, ADMIN_TOKEN)
    await _create_stack(cairn, BOB, bob)
    bobs = await begin(cairn, BOB, token=bob)
    await bobs.complete()
    before = await _stack_view(cairn, ALICE, ADMIN_TOKEN)
    forged = dataclasses.replace(bobs, path=ALICE)
    response = await forged.call("POST", "/complete", {"status": "succeeded"})
    assert response.status == 404
    assert await response.json() == {"code": 404, "message": "Not Found: Update"}
    assert await _stack_view(cairn, ALICE, ADMIN_TOKEN) == before
    # The same retry under bob's own path is the idempotent success the CLI relies on.
    await bobs.complete()


async def test_cancel_names_the_update_of_the_paths_stack_only(cairn: Cairn) -> None:
    """`cancel` takes an access token: the update must belong to the stack the path names."""
    bob = await cairn.new_user("bob")
    await _create_stack(cairn, ALICE, ADMIN_TOKEN)
    await _create_stack(cairn, BOB, bob)
    alices = await begin(cairn, ALICE)
    bobs = await begin(cairn, BOB, token=bob)
    # Bob's own stack in the path, alice's update id: not found, alice's update runs on.
    response = await cairn.call("POST", f"{BOB}/update/{alices.update_id}/cancel", token=bob)
    assert response.status == 404 and (await response.json())["code"] == 404
    response = await cairn.call("POST", f"{ALICE}/update/{bobs.update_id}/cancel", token=bob)
    assert response.status == 404
    status = await cairn.json("GET", f"{ALICE}/update/{alices.update_id}")
    assert status["status"] == "running"
    await alices.complete()
    await bobs.complete()


async def test_the_updates_service_itself_checks_the_path(cairn: Cairn) -> None:
    """Internal callers get the same answer as the REST edge: the check is in the service."""
    await _create_stack(cairn, ALICE, ADMIN_TOKEN)
    run = await begin(cairn, ALICE)
    channel = signed_channel(cairn.system.settings, cairn.system.settings.updates_address)
    try:
        stub = updates_pb2_grpc.UpdatesServiceStub(channel)

        def lease(org: str, project: str, stack: str) -> updates_pb2.LeaseRef:
            return updates_pb2.LeaseRef(
                update_id=run.update_id,
                token=run.token,
                stack=common_pb2.StackRef(organization=org, project=project, stack=stack),
            )

        for wrong in (
            lease("bob", "web", "dev"),
            lease("admin", "api", "dev"),
            lease("admin", "web", "prod"),
            lease("", "", ""),
            updates_pb2.LeaseRef(update_id=run.update_id, token=run.token),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AppendLogEntry(
                    updates_pb2.AppendLogEntryRequest(lease=wrong, kind="stdout", fields=b"{}")
                )
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CompleteUpdate(
                    updates_pb2.CompleteUpdateRequest(lease=wrong, status="succeeded")
                )
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        await stub.AppendLogEntry(
            updates_pb2.AppendLogEntryRequest(
                lease=lease("admin", "web", "dev"), kind="stdout", fields=b"{}"
            )
        )
    finally:
        await channel.close(None)
    status = await cairn.json("GET", f"{ALICE}/update/{run.update_id}")
    assert status["status"] == "running" and len(status["events"]) == 1
    await run.complete()
