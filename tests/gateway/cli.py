"""What the Pulumi CLI sends during an update (protocol doc §2.4–2.11, §4, §7), for tests.

`Program` builds resource states; `Run` drives one update through the gateway in one of the
three persistence modes and keeps the deployment the CLI would hold in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientResponse

from tests.gateway.conftest import ADMIN_TOKEN, CLI_HEADERS, Cairn

SECRET_SIG = "4dabf18193072939515e22adb298388d"


def stack_path(org: str = "admin", project: str = "web", stack: str = "dev") -> str:
    return f"/api/stacks/{org}/{project}/{stack}"


def stack_urn(project: str, stack: str) -> str:
    return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"


def resource(project: str, stack: str, name: str, **extra: Any) -> dict[str, Any]:
    """A custom resource under the stack, the way the engine writes one."""
    state: dict[str, Any] = {
        "urn": f"urn:pulumi:{stack}::{project}::random:index/randomPet:RandomPet::{name}",
        "custom": True,
        "id": f"{name}-id",
        "type": "random:index/randomPet:RandomPet",
        "inputs": {"length": 2},
        "outputs": {"id": f"{name}-id", "length": 2},
        "parent": stack_urn(project, stack),
    }
    state.update(extra)
    return state


def stack_resource(project: str, stack: str, outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "urn": stack_urn(project, stack),
        "custom": False,
        "type": "pulumi:pulumi:Stack",
        "outputs": outputs,
    }


def deployment(resources: list[dict[str, Any]], secrets: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "manifest": {"time": "2026-11-22T10:00:00Z", "magic": "m", "version": "v3.259.0"},
        "secrets_providers": secrets,
        "metadata": {},
    }
    if resources:
        body["resources"] = resources
    return body


def text_of(resources: list[dict[str, Any]], secrets: dict[str, Any]) -> bytes:
    """The compact layout the CLI renders for verbatim and delta uploads (§4.3)."""
    return orjson.dumps({"version": 3, "deployment": deployment(resources, secrets)})


def single_edit(old: bytes, new: bytes) -> list[dict[str, Any]]:
    """The CLI's delta format: one edit replacing the differing middle of the old text."""
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    # Offsets are bytes; keep the cut on character boundaries like the CLI's spans.
    while 0 < start < len(new) and (new[start] & 0xC0) == 0x80:
        start -= 1
    while end_new < len(new) and (new[end_new] & 0xC0) == 0x80:
        end_new += 1
        end_old += 1
    span = {
        "uri": "",
        "start": {"line": 1, "column": 0, "offset": start},
        "end": {"line": 1, "column": 0, "offset": end_old},
    }
    return [{"Span": span, "NewText": new[start:end_new].decode()}]


@dataclass
class Run:
    """One update in flight, as the CLI drives it."""

    cairn: Cairn
    path: str
    update_id: str
    token: str
    version: int
    journal: bool
    resources: list[dict[str, Any]] = field(default_factory=list)
    sequence: int = 0
    text: bytes = b""
    events: int = 0

    async def call(
        self, method: str, suffix: str, body: Any = None, *, raw: bytes | None = None
    ) -> ClientResponse:
        headers = dict(CLI_HEADERS)
        headers["Authorization"] = f"update-token {self.token}"
        data = raw if raw is not None else orjson.dumps(body)
        headers["Content-Encoding"] = "gzip"
        return await self.cairn.client.request(
            method,
            f"{self.path}/update/{self.update_id}{suffix}",
            data=gzip.compress(data),
            headers=headers,
        )

    async def ok(self, method: str, suffix: str, body: Any = None, **kwargs: Any) -> None:
        response = await self.call(method, suffix, body, **kwargs)
        text = await response.text()
        assert response.status in (200, 204), f"{method} {suffix}: {response.status} {text}"

    async def full_checkpoint(self, secrets: dict[str, Any]) -> None:
        await self.ok(
            "PATCH",
            "/checkpoint",
            {"isInvalid": False, "version": 3, "deployment": deployment(self.resources, secrets)},
        )

    async def verbatim(self, text: bytes, sequence: int) -> ClientResponse:
        raw = (
            b'{"version":3,"untypedDeployment":'
            + text
            + b',"sequenceNumber":'
            + str(sequence).encode()
            + b"}"
        )
        return await self.call("PATCH", "/checkpointverbatim", raw=raw)

    async def delta(
        self, new_text: bytes, sequence: int, *, checkpoint_hash: str | None = None
    ) -> ClientResponse:
        """One edit replacing the differing middle of the previous text."""
        edit = single_edit(self.text, new_text)
        body = {
            "version": 3,
            "checkpointHash": checkpoint_hash or hashlib.sha256(new_text).hexdigest(),
            "sequenceNumber": sequence,
            "deploymentDelta": edit,
        }
        return await self.call("PATCH", "/checkpointdelta", body)

    async def save(self, secrets: dict[str, Any], *, cutoff: int) -> None:
        """Verbatim below the cutoff or for the first write, a delta otherwise (§4.3)."""
        new_text = text_of(self.resources, secrets)
        self.sequence += 1
        if not self.text or len(self.text) < cutoff or len(new_text) < cutoff:
            response = await self.verbatim(new_text, self.sequence)
        else:
            response = await self.delta(new_text, self.sequence)
            if response.status >= 400:
                response = await self.verbatim(new_text, self.sequence)
        assert response.status in (200, 204), await response.text()
        self.text = new_text

    async def journal_entries(self, entries: list[dict[str, Any]]) -> None:
        await self.ok("PATCH", "/journalentries", {"entries": entries})

    async def send_events(self, events: list[dict[str, Any]]) -> None:
        numbered = []
        for event in events:
            numbered.append({"sequence": self.events, "timestamp": 1_763_800_000, **event})
            self.events += 1
        batch = list(numbered)
        random.Random(7).shuffle(batch)
        await self.ok("POST", "/events/batch", {"events": batch})

    async def complete(self, status: str = "succeeded") -> None:
        await self.ok("POST", "/complete", {"status": status})


async def create_stack(cairn: Cairn, project: str = "web", stack: str = "dev") -> None:
    await cairn.json(
        "POST",
        f"/api/stacks/admin/{project}",
        body={"stackName": stack, "tags": {"pulumi:project": project}},
    )


async def begin(
    cairn: Cairn,
    path: str,
    kind: str = "update",
    *,
    dry_run: bool = False,
    journal: bool = False,
    message: str = "",
    config: dict[str, Any] | None = None,
    token: str = ADMIN_TOKEN,
    environment: dict[str, str] | None = None,
) -> Run:
    """Create and start an update (§3.4.1, §3.4.2)."""
    created = await cairn.json(
        "POST",
        f"{path}/{kind}",
        token=token,
        body={
            "name": "web",
            "runtime": "nodejs",
            "main": "",
            "description": "",
            "options": {"dryRun": dry_run, "parallel": 16, "color": "raw"},
            "config": config or {},
            "metadata": {
                "message": message,
                "environment": {
                    "exec.kind": "cli",
                    "pulumi.version": "v3.259.0",
                    **(environment or {}),
                },
            },
        },
    )
    update_id = created["updateID"]
    start_body: dict[str, Any] = {"tags": {"pulumi:project": "web", "pulumi:runtime": "nodejs"}}
    if journal:
        start_body["journalVersion"] = 1
    started = await cairn.json("POST", f"{path}/update/{update_id}", token=token, body=start_body)
    assert started["token"], "the CLI asserts a non-empty lease token for every update"
    return Run(
        cairn=cairn,
        path=path,
        update_id=update_id,
        token=started["token"],
        version=started["version"],
        journal=started.get("journalVersion") == 1,
    )


def summary(changes: dict[str, int], *, preview: bool = False) -> dict[str, Any]:
    return {
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 1,
            "resourceChanges": changes,
            "PolicyPacks": {},
            "isPreview": preview,
        }
    }
