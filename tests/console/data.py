"""Stacks and updates for console tests, made through the REST API the way the CLI makes them."""

from __future__ import annotations

from typing import Any

from tests.gateway.cli import Run, begin, stack_path, stack_urn
from tests.gateway.conftest import Cairn

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRETS = {"type": "service", "state": {}}
EVIL = '<script>alert("x")</script>'
EVIL_NAME = "pet<img src=x onerror=alert(1)>"
DIAGNOSTIC = "creating bucket: AccessDenied: the role may not create buckets"
PASSWORD = "hunter2-plaintext"
PROVIDER_URN = "urn:pulumi:dev::web::pulumi:providers:random::default_4_16_0"
PET_URN = "urn:pulumi:dev::web::random:index/randomPet:RandomPet::pet"
EVIL_URN = f"urn:pulumi:dev::web::random:index/randomPet:RandomPet::{EVIL_NAME}"
BUCKET_URN = "urn:pulumi:dev::web::aws:s3/bucket:Bucket::logs"


def secret(plaintext: str) -> dict[str, Any]:
    return {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": f'"{plaintext}"'}


def resources(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    root = stack_urn("web", "dev")
    return [
        {"urn": root, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": outputs},
        {
            "urn": PROVIDER_URN,
            "custom": True,
            "id": "provider-id",
            "type": "pulumi:providers:random",
            "inputs": {"version": "4.16.0"},
            "outputs": {"version": "4.16.0"},
        },
        {
            "urn": PET_URN,
            "custom": True,
            "id": "pet-id",
            "type": "random:index/randomPet:RandomPet",
            "inputs": {"length": 2, "password": secret(PASSWORD)},
            "outputs": {"id": "pet-id", "length": 2, "password": secret(PASSWORD)},
            "parent": root,
            "provider": f"{PROVIDER_URN}::provider-id",
        },
        {
            "urn": EVIL_URN,
            "custom": True,
            "id": "evil-id",
            "type": "random:index/randomPet:RandomPet",
            "inputs": {"prefix": EVIL},
            "outputs": {"prefix": EVIL},
            "parent": root,
            "dependencies": [PET_URN],
        },
    ]


async def create_stack(cairn: Cairn, project: str = "web", stack: str = "dev", **tags: str) -> str:
    await cairn.json(
        "POST",
        f"/api/stacks/admin/{project}",
        body={"stackName": stack, "tags": {"pulumi:project": project, **tags}},
    )
    return stack_path("admin", project, stack)


async def set_tags(cairn: Cairn, path: str, **tags: str) -> None:
    """Replace a stack's tags (an update's start sets the CLI's own)."""
    await cairn.json("PATCH", f"{path}/tags", status=204, body=tags)


def step(op: str, urn: str, kind: str = "resourcePreEvent") -> dict[str, Any]:
    return {kind: {"metadata": {"op": op, "urn": urn, "type": urn.split("::")[2]}}}


async def succeeded_update(cairn: Cairn, path: str, message: str = "first") -> Run:
    """Version 1: the stack with a provider, a pet holding a secret and a hostile name."""
    run = await begin(cairn, path, message=message)
    run.resources = resources({"url": "http://example.test", "token": secret(PASSWORD)})
    await run.full_checkpoint(SECRETS)
    await run.send_events(
        [
            {"preludeEvent": {"config": {}}},
            step("create", PET_URN),
            step("create", PET_URN, "resOutputsEvent"),
            step("create", EVIL_URN),
            {"stdoutEvent": {"message": f"<{{%fg 2%}}>{EVIL}<{{%reset%}}>\n", "color": "raw"}},
            {
                "summaryEvent": {
                    "maybeCorrupt": False,
                    "durationSeconds": 2,
                    "resourceChanges": {"create": 4},
                    "PolicyPacks": {},
                }
            },
        ]
    )
    await run.complete()
    return run


async def failed_update(cairn: Cairn, path: str) -> Run:
    """Version 2: creating a bucket fails with a diagnostic."""
    run = await begin(cairn, path, message="add a bucket")
    run.resources = resources({"url": "http://example.test"})
    await run.full_checkpoint(SECRETS)
    await run.send_events(
        [
            {"preludeEvent": {"config": {}}},
            step("create", BUCKET_URN),
            {
                "diagnosticEvent": {
                    "urn": BUCKET_URN,
                    "prefix": "error: ",
                    "message": DIAGNOSTIC + "\n",
                    "color": "raw",
                    "severity": "error",
                }
            },
            step("create", BUCKET_URN, "resOpFailedEvent"),
            {
                "summaryEvent": {
                    "maybeCorrupt": False,
                    "durationSeconds": 1,
                    "resourceChanges": {"create": 1},
                    "PolicyPacks": {},
                }
            },
        ]
    )
    await run.complete("failed")
    return run
