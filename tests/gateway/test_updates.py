"""The CLI's update lifecycle end to end through the gateway, in every persistence mode."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from tests.gateway.cli import (
    SECRET_SIG,
    Run,
    begin,
    create_stack,
    deployment,
    resource,
    stack_path,
    stack_resource,
    summary,
    text_of,
)
from tests.gateway.conftest import Cairn

S = stack_path()
SECRETS = {
    "type": "service",
    "state": {"url": "http://127.0.0.1", "owner": "admin", "project": "web", "stack": "dev"},
}
CUTOFF = 32768


async def export(cairn: Cairn, suffix: str = "") -> dict[str, Any]:
    value: dict[str, Any] = await cairn.json("GET", f"{S}/export{suffix}")
    return value


async def preview_pass(cairn: Cairn) -> None:
    """Every `pulumi up` starts with a dry run of kind update: nothing may change."""
    run = await begin(cairn, S, dry_run=True)
    await run.send_events([{"preludeEvent": {"config": {}}}, summary({"create": 3}, preview=True)])
    refused = await run.call(
        "PATCH", "/checkpoint", {"version": 3, "deployment": deployment([], SECRETS)}
    )
    assert refused.status == 403
    await run.complete()


async def up_full(cairn: Cairn, names: list[str]) -> list[dict[str, Any]]:
    """A real pass in full-checkpoint mode: a write per step begin and end, then outputs."""
    run = await begin(cairn, S, message="first")
    run.resources.append(stack_resource("web", "dev", {}))
    await run.full_checkpoint(SECRETS)
    for name in names:
        await run.full_checkpoint(SECRETS)
        run.resources.append(resource("web", "dev", name))
        await run.full_checkpoint(SECRETS)
    run.resources[0] = stack_resource("web", "dev", {"names": names})
    await run.full_checkpoint(SECRETS)
    await run.send_events([summary({"create": len(names) + 1})])
    await run.complete()
    return run.resources


async def test_up_in_full_checkpoint_mode(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await preview_pass(cairn)
    stack = await cairn.json("GET", S)
    assert stack["version"] == 0 and stack["activeUpdate"] == ""
    assert (await cairn.json("GET", f"{S}/updates"))["updates"] == []
    assert (await export(cairn))["deployment"]["manifest"]["time"] == "0001-01-01T00:00:00Z"

    resources = await up_full(cairn, ["a", "b", "c"])

    exported = await export(cairn)
    assert exported == {"version": 3, "deployment": deployment(resources, SECRETS)}
    assert await export(cairn, "/1") == exported
    stack = await cairn.json("GET", S)
    assert stack["version"] == 1 and stack["activeUpdate"] == ""
    history = await cairn.json("GET", f"{S}/updates?pageSize=10&page=1")
    (entry,) = history["updates"]
    assert entry["kind"] == "update" and entry["result"] == "succeeded"
    assert entry["version"] == 1 and entry["message"] == "first"
    assert entry["resourceChanges"] == {"create": 4}
    assert entry["resourceCount"] == 4
    assert entry["info"]["version"] == 1 and entry["updateID"]
    latest = await cairn.json("GET", f"{S}/updates/latest")
    assert latest["info"]["result"] == "succeeded" and latest["version"] == 1
    missing = await cairn.call("GET", f"{S}/export/2")
    assert missing.status == 404
    listed = await cairn.json("GET", "/api/user/stacks")
    assert listed["stacks"][0]["resourceCount"] == 4
    assert listed["stacks"][0]["lastUpdate"] > 0


async def test_up_in_verbatim_and_delta_mode(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    assert not run.journal
    big = {"blob": "x" * 40_000, "emoji": "é☃"}
    run.resources.append(stack_resource("web", "dev", big))
    await run.save(SECRETS, cutoff=CUTOFF)
    for number in range(12):
        await run.save(SECRETS, cutoff=CUTOFF)
        run.resources.append(resource("web", "dev", f"pet{number}"))
        await run.save(SECRETS, cutoff=CUTOFF)

    # A delta whose hash does not match is a 4xx and changes nothing; the verbatim retry
    # with the same sequence number is accepted.
    run.resources.append(resource("web", "dev", "late"))
    new_text = text_of(run.resources, SECRETS)
    bad = await run.delta(new_text, run.sequence + 1, checkpoint_hash="0" * 64)
    assert bad.status == 400
    assert (await bad.json())["code"] == 400
    during = await cairn.call("GET", f"{S}/export")
    assert await during.read() == run.text
    retry = await run.verbatim(new_text, run.sequence + 1)
    assert retry.status == 204
    run.sequence += 1
    run.text = new_text
    # A repeated delta (response lost) is accepted without being applied twice.
    run.resources.append(resource("web", "dev", "last"))
    final = text_of(run.resources, SECRETS)
    first = await run.delta(final, run.sequence + 1)
    assert first.status == 204
    again = await run.delta(final, run.sequence + 1)
    assert again.status == 204
    run.sequence += 1
    run.text = final
    stale = await run.delta(final, run.sequence - 3)
    assert stale.status == 409

    await run.complete()
    exported = await cairn.call("GET", f"{S}/export")
    assert await exported.read() == final, "verbatim text is stored and exported byte for byte"
    assert (await cairn.json("GET", S))["version"] == 1


def journal_up(names: list[str], base_count: int = 0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [
        {
            "version": 1,
            "kind": 6,
            "sequenceID": 1,
            "operationID": 0,
            "removeOld": None,
            "removeNew": None,
            "secretsProvider": SECRETS,
        }
    ]
    sequence = 2
    states = [stack_resource("web", "dev", {}), *(resource("web", "dev", n) for n in names)]
    for operation, state in enumerate(states, start=1):
        entries.append(
            {
                "version": 1,
                "kind": 0,
                "sequenceID": sequence,
                "operationID": operation,
                "removeOld": None,
                "removeNew": None,
                "operation": {"resource": state, "type": "creating"},
            }
        )
        entries.append(
            {
                "version": 1,
                "kind": 1,
                "sequenceID": sequence + 1,
                "operationID": operation,
                "removeOld": None,
                "removeNew": None,
                "state": state,
            }
        )
        sequence += 2
    return entries


async def test_up_in_journal_mode_with_shuffled_and_repeated_batches(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S, journal=True)
    assert run.journal
    entries = journal_up(["a", "b", "c", "d"])
    # The server must not rely on order within or across batches, and retries repeat.
    await run.journal_entries(list(reversed(entries[:5])))
    await run.journal_entries(entries[3:])
    await run.journal_entries(entries[3:7])
    during = await export(cairn)
    assert [r["urn"].rsplit("::", 1)[1] for r in during["deployment"]["resources"]] == [
        "web-dev",
        "a",
        "b",
        "c",
        "d",
    ]
    await run.complete()
    exported = await export(cairn)
    assert exported["deployment"]["secrets_providers"] == SECRETS
    assert [r["urn"].rsplit("::", 1)[1] for r in exported["deployment"]["resources"]] == [
        "web-dev",
        "a",
        "b",
        "c",
        "d",
    ]
    assert "pending_operations" not in exported["deployment"]
    assert (await cairn.json("GET", S))["version"] == 1


async def test_failed_journal_update_keeps_what_it_created(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S, journal=True)
    entries = journal_up(["a", "b"])
    await run.journal_entries(entries[:-1])  # b's step never finished
    await run.complete("failed")
    exported = await export(cairn)
    names = [r["urn"].rsplit("::", 1)[1] for r in exported["deployment"]["resources"]]
    assert names == ["web-dev", "a"]
    (pending,) = exported["deployment"]["pending_operations"]
    assert pending["type"] == "creating"
    history = await cairn.json("GET", f"{S}/updates")
    assert history["updates"][0]["result"] == "failed"


async def test_refresh_destroy_history_and_stack_rm(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await up_full(cairn, ["a"])
    refresh = await begin(cairn, S, "refresh")
    await refresh.send_events([summary({"same": 2})])
    await refresh.complete()
    refused = await cairn.call("DELETE", f"{S}?force=false")
    assert refused.status == 400
    assert (await refused.json())["message"] == "Bad Request: Stack still contains resources."

    destroy = await begin(cairn, S, "destroy")
    destroy.resources = []
    await destroy.full_checkpoint(SECRETS)
    await destroy.send_events([summary({"delete": 2})])
    await destroy.complete()
    assert "resources" not in (await export(cairn))["deployment"]

    history = await cairn.json("GET", f"{S}/updates?pageSize=2&page=1")
    assert [(u["kind"], u["version"]) for u in history["updates"]] == [
        ("destroy", 3),
        ("refresh", 2),
    ]
    assert history["total"] == 3
    second = await cairn.json("GET", f"{S}/updates?pageSize=2&page=2")
    assert [u["version"] for u in second["updates"]] == [1]
    assert len((await export(cairn, "/1"))["deployment"]["resources"]) == 2

    await cairn.json("DELETE", f"{S}?force=false", status=204)
    assert (await cairn.call("GET", S)).status == 404
    # A stack of the same name starts from nothing: no history or versions survive.
    await create_stack(cairn)
    assert (await cairn.json("GET", S))["version"] == 0
    assert (await cairn.json("GET", f"{S}/updates"))["updates"] == []
    assert (await cairn.call("GET", f"{S}/export/1")).status == 404


async def test_stack_rm_force_removes_a_stack_with_resources(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await up_full(cairn, ["a"])
    await cairn.json("DELETE", f"{S}?force=true", status=204)
    assert (await cairn.call("GET", S)).status == 404


async def test_cancel_frees_the_stack_and_refuses_the_old_token(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    run.resources.append(stack_resource("web", "dev", {}))
    await run.full_checkpoint(SECRETS)
    stack = await cairn.json("GET", S)
    assert stack["activeUpdate"] == run.update_id
    assert stack["currentOperation"]["kind"] == "update"

    other = await cairn.call("POST", f"{S}/update", body={"options": {}})
    other_id = (await other.json())["updateID"]
    conflict = await cairn.call("POST", f"{S}/update/{other_id}", body={})
    assert conflict.status == 409
    assert (await conflict.json())["message"] == (
        "Conflict: Another update is currently in progress."
    )
    refused = await cairn.call("DELETE", f"{S}?force=true")
    assert refused.status == 409

    await cairn.json("POST", f"{S}/update/{stack['activeUpdate']}/cancel", status=204)
    late = await run.call(
        "PATCH", "/checkpoint", {"version": 3, "deployment": deployment([], SECRETS)}
    )
    assert late.status == 409
    assert (await late.json())["message"] == "Conflict: The Update has been cancelled"
    again = await cairn.call("POST", f"{S}/update/{run.update_id}/cancel")
    assert again.status == 409
    assert (await export(cairn))["deployment"]["resources"][0]["type"] == "pulumi:pulumi:Stack"
    assert (await cairn.json("GET", S))["activeUpdate"] == ""
    # The stack is free again.
    started = await cairn.json("POST", f"{S}/update/{other_id}", body={})
    assert started["version"] == 2


async def test_update_token_rules(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    missing = await cairn.call(
        "POST", f"{S}/update/{run.update_id}/complete", body={"status": "succeeded"}
    )
    assert missing.status == 401
    wrong = Run(cairn, S, run.update_id, "not-the-token", 1, False)
    assert (await wrong.call("POST", "/complete", {"status": "succeeded"})).status == 401
    bad_status = await run.call("POST", "/complete", {"status": "maybe"})
    assert bad_status.status == 400
    short = await run.call("POST", "/renew_lease", {"token": "", "duration": 301})
    assert short.status == 400
    renewed = await run.call("POST", "/renew_lease", {"token": "", "duration": 300})
    assert (await renewed.json())["token"] == run.token

    await run.complete()
    await run.complete()  # a retried complete is fine
    assert (await run.call("POST", "/complete", {"status": "failed"})).status == 409
    late = await run.call("POST", "/events/batch", {"events": []})
    assert late.status == 409
    assert (await late.json())["message"] == "Conflict: The Update has already completed"
    # Every per-update path also answers under its kind's own prefix.
    status = await cairn.json("GET", f"{S}/preview/{run.update_id}")
    assert status["status"] == "succeeded"


async def test_malformed_writes_are_4xx_and_lose_nothing(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    await run.save(SECRETS, cutoff=CUTOFF)
    before = run.text
    for suffix, body in [
        ("/checkpointdelta", {"checkpointHash": "ab", "sequenceNumber": 2}),
        (
            "/checkpointdelta",
            {"checkpointHash": "a" * 64, "sequenceNumber": 2, "deploymentDelta": [{"Span": {}}]},
        ),
        ("/checkpointverbatim", {"sequenceNumber": 2, "untypedDeployment": [1]}),
        ("/checkpointverbatim", {"sequenceNumber": 2, "untypedDeployment": {"version": 9}}),
        ("/checkpoint", {"version": 3, "deployment": {"resources": [{"urn": 1}]}}),
        ("/checkpoint", {"isInvalid": True}),
        ("/journalentries", {"entries": [{"kind": 1}]}),
    ]:
        response = await run.call("PATCH", suffix, body)
        payload = await response.json()
        assert 400 <= response.status < 500, (suffix, body, payload)
        assert payload["code"] == response.status
    garbage = await run.call("PATCH", "/checkpoint", raw=b"{not json")
    assert garbage.status == 400
    assert await (await cairn.call("GET", f"{S}/export")).read() == before


async def test_export_import_round_trip_with_secrets(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    sealed = await cairn.json(
        "POST", f"{S}/encrypt", body={"plaintext": base64.b64encode(b'"hunter2"').decode()}
    )
    secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": sealed["ciphertext"]}
    resources = [stack_resource("web", "dev", {"password": secret}), resource("web", "dev", "a")]
    untyped = {"version": 3, "deployment": deployment(resources, SECRETS)}
    reply = await cairn.json("POST", f"{S}/import", body=untyped, gzipped=True)
    status = await cairn.json("GET", f"{S}/update/{reply['updateId']}")
    assert status["status"] == "succeeded" and "continuationToken" not in status
    exported = await export(cairn)
    assert exported == untyped
    ciphertext = exported["deployment"]["resources"][0]["outputs"]["password"]["ciphertext"]
    opened = await cairn.json("POST", f"{S}/batch-decrypt", body={"ciphertexts": [ciphertext]})
    assert base64.b64decode(opened["plaintexts"][ciphertext]) == b'"hunter2"'
    history = await cairn.json("GET", f"{S}/updates")
    assert [(u["kind"], u["version"]) for u in history["updates"]] == [("import", 1)]

    for bad in [
        {"version": 7, "deployment": {"manifest": {}}},
        {"version": 3},
        {"version": 3, "deployment": {"resources": "no"}},
        {
            "version": 3,
            "deployment": deployment(
                [],
                {"type": "service", "state": {**SECRETS["state"], "stack": "prod"}},  # type: ignore[dict-item]
            ),
        },
    ]:
        response = await cairn.call("POST", f"{S}/import", body=bad)
        assert response.status == 400, await response.text()
    assert (await cairn.json("GET", S))["version"] == 1
    assert await export(cairn) == untyped


async def test_import_is_refused_during_an_update(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await begin(cairn, S)
    untyped = {"version": 3, "deployment": deployment([], SECRETS)}
    response = await cairn.call("POST", f"{S}/import", body=untyped)
    assert response.status == 409
    # The running update is the first reason given, whatever else is wrong with the body.
    foreign = {
        "version": 3,
        "deployment": deployment(
            [],
            {"type": "service", "state": {**SECRETS["state"], "stack": "prod"}},  # type: ignore[dict-item]
        ),
    }
    response = await cairn.call("POST", f"{S}/import", body=foreign)
    assert response.status == 409, await response.text()


async def test_many_simultaneous_starts_one_wins(update_cairn: Cairn) -> None:
    any_cairn = update_cairn
    await create_stack(any_cairn)
    ids = []
    for _ in range(12):
        created = await any_cairn.json("POST", f"{S}/update", body={"options": {}})
        ids.append(created["updateID"])
    responses = await asyncio.gather(
        *(any_cairn.call("POST", f"{S}/update/{update_id}", body={}) for update_id in ids)
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] + [409] * 11
    assert (await any_cairn.json("GET", S))["version"] == 1


async def test_engine_events_are_returned_in_order(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    await run.send_events(
        [{"stdoutEvent": {"message": f"line {n}", "color": "raw"}} for n in range(7)]
    )
    await run.send_events([summary({"create": 1})])
    page = await cairn.json("GET", f"{S}/update/{run.update_id}/events?pageSize=5")
    assert [e["sequence"] for e in page["events"]] == [0, 1, 2, 3, 4]
    # `type` names the payload member, as the SDK's EngineEvent requires.
    assert {e["type"] for e in page["events"]} == {"stdoutEvent"}
    assert page["events"][0]["stdoutEvent"] == {"message": "line 0", "color": "raw"}
    assert page["continuationToken"] == "5"
    await run.complete()
    rest = await cairn.json(
        "GET", f"{S}/update/{run.update_id}/events?continuationToken={page['continuationToken']}"
    )
    assert [e["sequence"] for e in rest["events"]] == [5, 6, 7]
    assert rest["continuationToken"] == ""
    assert rest["events"][-1]["summaryEvent"]["resourceChanges"] == {"create": 1}
    assert rest["events"][-1]["type"] == "summaryEvent"


async def test_engine_event_uploads_answer_200_as_documented(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    batch = await run.call(
        "POST",
        "/events/batch",
        {"events": [{"sequence": 0, "timestamp": 1, "stdoutEvent": {"message": "hi"}}]},
    )
    single = await run.call(
        "POST", "/events", {"sequence": 5, "timestamp": 1, "stdoutEvent": {"message": "x"}}
    )
    assert (batch.status, await batch.read()) == (200, b"")
    assert (single.status, await single.read()) == (200, b"")


async def test_engine_events_filter_by_type_and_urn(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S)
    bucket = "urn:pulumi:dev::web::aws:s3/bucket:Bucket::assets"
    other = "urn:pulumi:dev::web::aws:s3/bucket:Bucket::logs"
    events: list[dict[str, Any]] = [{"stdoutEvent": {"message": bucket, "color": "raw"}}]
    for urn in (bucket, other):
        step = {"op": "create", "urn": urn, "type": "aws:s3/bucket:Bucket", "provider": ""}
        events.append({"resourcePreEvent": {"metadata": step}})
        events.append({"resOutputsEvent": {"metadata": step}})
    events.append({"diagnosticEvent": {"urn": bucket, "message": "slow", "severity": "info"}})
    await run.send_events(events)
    await run.send_events([summary({"create": 2})])
    await run.complete()
    base = f"{S}/update/{run.update_id}/events"

    def kinds(page: dict[str, Any]) -> list[str]:
        return [event["type"] for event in page["events"]]

    by_type = await cairn.json("GET", f"{base}?type=resourcePreEvent&type=summary")
    assert kinds(by_type) == ["resourcePreEvent", "resourcePreEvent", "summaryEvent"]
    assert by_type["continuationToken"] == ""
    comma = await cairn.json("GET", f"{base}?type=resourcePreEvent,resOutputsEvent")
    assert kinds(comma) == ["resourcePreEvent", "resOutputsEvent"] * 2
    # The stdout line quotes the URN but is not about the resource.
    by_urn = await cairn.json("GET", f"{base}?urn={quote(bucket)}")
    assert kinds(by_urn) == ["resourcePreEvent", "resOutputsEvent", "diagnosticEvent"]
    both = await cairn.json("GET", f"{base}?urn={quote(other)}&type=resOutputsEvent")
    assert [e["resOutputsEvent"]["metadata"]["urn"] for e in both["events"]] == [other]
    # Paging through a filtered read never skips or repeats an event.
    first = await cairn.json("GET", f"{base}?urn={quote(bucket)}&pageSize=2")
    assert kinds(first) == ["resourcePreEvent", "resOutputsEvent"]
    rest = await cairn.json(
        "GET", f"{base}?urn={quote(bucket)}&continuationToken={first['continuationToken']}"
    )
    assert kinds(rest) == ["diagnosticEvent"] and rest["continuationToken"] == ""
    assert kinds(await cairn.json("GET", f"{base}?include_non_activated=true")) == kinds(
        await cairn.json("GET", base)
    )
    for bad in ("type=res-pre", "include_non_activated=maybe", f"type={'x' * 80}"):
        response = await cairn.call("GET", f"{base}?{bad}")
        assert response.status == 400, bad
        assert (await response.json())["code"] == 400


async def test_unknown_update_and_foreign_stack_are_404(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await create_stack(cairn, stack="prod")
    run = await begin(cairn, S)
    other = stack_path(stack="prod")
    assert (await cairn.call("GET", f"{other}/update/{run.update_id}")).status == 404
    assert (await cairn.call("POST", f"{other}/update/{run.update_id}/cancel")).status == 404
    assert (await cairn.call("GET", f"{S}/update/nope")).status == 404
    assert (await cairn.call("GET", f"{other}/updates/latest")).status == 404
    body = orjson.loads(await (await cairn.call("GET", f"{S}/updates/9")).read())
    assert body["code"] == 404


async def test_stack_init_with_an_initial_state_stores_it(update_cairn: Cairn) -> None:
    cairn = update_cairn
    passphrase = {"type": "passphrase", "state": {"salt": "v1:abc"}}
    state = {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-11-22T10:00:00Z", "magic": "", "version": "v3.259.0"},
            "secrets_providers": passphrase,
        },
    }
    created = await cairn.json(
        "POST", "/api/stacks/admin/web", body={"stackName": "dev", "state": state}
    )
    assert created["version"] == 1
    assert (await export(cairn))["deployment"]["secrets_providers"] == passphrase

    refused = await cairn.call(
        "POST", "/api/stacks/admin/web", body={"stackName": "bad", "state": {"version": 9}}
    )
    assert refused.status == 400
    assert (await cairn.call("GET", stack_path(stack="bad"))).status == 404


async def test_rename_is_recorded_and_secrets_follow_the_stack(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    await up_full(cairn, ["a"])
    renamed = await cairn.json("POST", f"{S}/rename", body={"newName": "prod", "newProject": "web"})
    prod = stack_path(stack="prod")
    history = await cairn.json("GET", f"{prod}/updates")
    assert [(u["kind"], u["version"]) for u in history["updates"]] == [
        ("rename", 2),
        ("update", 1),
    ]
    # Seed 000 and the SDK read the rename's history entry from the answer.
    assert renamed == {"updateId": history["updates"][0]["updateID"]}
    exported = await cairn.json("GET", f"{prod}/export")
    assert exported["deployment"]["secrets_providers"]["state"]["stack"] == "prod"
    assert len(exported["deployment"]["resources"]) == 2

    run = await begin(cairn, prod)
    busy = await cairn.call("POST", f"{prod}/rename", body={"newName": "dev", "newProject": "web"})
    assert busy.status == 409
    await run.complete()


async def test_cancelled_journal_update_is_rebuilt(update_cairn: Cairn) -> None:
    cairn = update_cairn
    await create_stack(cairn)
    run = await begin(cairn, S, journal=True)
    await run.journal_entries(journal_up(["a", "b"]))
    await cairn.json("POST", f"{S}/update/{run.update_id}/cancel", status=204)
    exported = await export(cairn)
    names = [r["urn"].rsplit("::", 1)[1] for r in exported["deployment"]["resources"]]
    assert names == ["web-dev", "a", "b"]
    refused = await run.call("PATCH", "/journalentries", {"entries": []})
    assert refused.status == 409
    history = await cairn.json("GET", f"{S}/updates")
    assert history["updates"][0]["result"] == "failed"
    status = await cairn.json("GET", f"{S}/update/{run.update_id}")
    assert status["status"] == "cancelled"


async def test_a_deeply_nested_checkpoint_is_refused_cleanly(cairn: Cairn) -> None:
    await create_stack(cairn)
    run = await begin(cairn, S)
    nested = b"[" * 1010 + b"]" * 1010
    raw = b'{"version":3,"untypedDeployment":{"deployment":' + nested + b'},"sequenceNumber":1}'
    response = await run.call("PATCH", "/checkpointverbatim", raw=raw)
    assert 400 <= response.status < 500, await response.text()
    assert (await response.json())["code"] == response.status


class _Counter:
    """Counts calls of a module function while still calling it; with a `marker`, only calls
    whose first argument holds it (a checkpoint body, not a call's signed metadata)."""

    def __init__(self, function: Any, marker: bytes = b"") -> None:
        self.function = function
        self.marker = marker
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argument = args[0] if args else b""
        text = argument if isinstance(argument, bytes) else str(argument).encode()
        if not self.marker or self.marker in text:
            self.calls += 1
        return self.function(*args, **kwargs)


async def test_checkpoint_writes_are_decoded_and_checked_once(
    cairn: Cairn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decode once: each checkpoint body is parsed in one pass by the updates service (the
    gateway forwards its bytes), and a delta's hash form is checked once, its digest once."""
    from services.common import rawjson
    from services.updates import bodies, delta

    await create_stack(cairn)
    run = await begin(cairn, S)
    run.resources.append(stack_resource("web", "dev", {}))
    for index in range(40):
        run.resources.append(resource("web", "dev", f"pet{index}"))
    await run.save(SECRETS, cutoff=CUTOFF)
    run.resources.append(resource("web", "dev", "last"))
    new_text = text_of(run.resources, SECRETS)

    counters = {
        "decode": _Counter(rawjson.decode_members),
        "hash": _Counter(bodies.checked_hash),
        "edits": _Counter(delta.parse_edits),
    }
    monkeypatch.setattr(bodies, "decode_members", counters["decode"])
    monkeypatch.setattr(bodies, "checked_hash", counters["hash"])
    monkeypatch.setattr(bodies, "parse_edits", counters["edits"])
    applied = _Counter(delta.WorkingText.apply)
    monkeypatch.setattr(delta.WorkingText, "apply", lambda self, *a: applied(self, *a))
    others = {
        "orjson.loads": _Counter(orjson.loads, marker=b"urn:pulumi:"),
        "rawjson.raw_members": _Counter(rawjson.raw_members),
        "delta._load": _Counter(delta._load),
    }
    monkeypatch.setattr(orjson, "loads", others["orjson.loads"])
    monkeypatch.setattr(rawjson, "raw_members", others["rawjson.raw_members"])
    monkeypatch.setattr(delta, "_load", others["delta._load"])

    response = await run.delta(new_text, run.sequence + 1)
    assert response.status == 204, await response.text()
    assert {name: counter.calls for name, counter in counters.items()} == {
        "decode": 1,
        "hash": 1,
        "edits": 1,
    }
    assert applied.calls == 1
    assert {name: counter.calls for name, counter in others.items()} == {
        "orjson.loads": 0,
        "rawjson.raw_members": 0,
        "delta._load": 0,
    }

    response = await run.verbatim(new_text, run.sequence + 2)
    assert response.status == 204, await response.text()
    response = await run.call(
        "PATCH",
        "/checkpoint",
        {"isInvalid": False, "version": 3, "deployment": deployment(run.resources, SECRETS)},
    )
    assert response.status == 204, await response.text()
    assert counters["decode"].calls == 3
    assert {name: counter.calls for name, counter in others.items()} == {
        "orjson.loads": 0,
        "rawjson.raw_members": 0,
        "delta._load": 0,
    }
