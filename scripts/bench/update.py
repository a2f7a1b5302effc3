"""One `pulumi up --skip-preview` in one of three shapes, verified at the end.

- `sequential`: journal mode as the CLI runs a chain of dependent resources: one step at a
  time, its begin entry and then its end entry each sent as its own `PATCH U/journalentries`
  and awaited before the next (a step's end is acknowledged only once its batch is stored);
- `journal`: journal mode with many steps in flight, entries sent in batches of up to 100;
- `delta`: verbatim+delta checkpoint mode, one write after every step begin and end.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from scripts.bench.client import CLI_VERSION, ORG, Api, BenchError, HttpError
from scripts.bench.events import EventUploader
from scripts.bench.resources import (
    ENGINE_PARALLELISM,
    Names,
    manifest,
    pet_state,
    provider_state,
    render,
    secrets_provider,
    stack_state,
)
from scripts.bench.snapshot import SnapshotText

JOURNAL_BATCH_SIZE: Final = 100  # PULUMI_JOURNALING_BATCH_SIZE

Mode = Literal["sequential", "journal", "delta"]
MODES: Final[tuple[Mode, ...]] = ("sequential", "journal", "delta")
JOURNAL_MODES: Final[tuple[Mode, ...]] = ("sequential", "journal")


@dataclass
class UpdateResult:
    mode: Mode
    resources: int
    total_s: float
    complete_s: float
    write_latencies_s: list[float]
    verbatim_writes: int = 0
    delta_writes: int = 0
    journal_entries: int = 0


def _journal_entries(
    names: Names, count: int, base_url: str, parallelism: int
) -> list[dict[str, Any]]:
    """The journal of an `up` creating the stack, the provider and `count` pets (§4.4).

    Steps are interleaved as the engine runs them: up to `parallelism` begins in flight, then
    their successes. Returns the entries in sequenceID order.
    """
    entries: list[dict[str, Any]] = []

    def add(kind: int, operation_id: int, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "version": 1,
            "kind": kind,
            "sequenceID": len(entries) + 1,
            "operationID": operation_id,
            "removeOld": None,
            "removeNew": None,
        }
        entry.update(extra)
        entries.append(entry)

    add(6, 0, secretsProvider=secrets_provider(base_url, names))
    stack = stack_state(names)
    add(0, 1, operation={"resource": stack, "type": "creating"})
    add(1, 1, state=stack)
    provider = provider_state(names)
    add(0, 2, operation={"resource": provider, "type": "creating"})
    add(1, 2, state=provider)
    for window in range(0, count, parallelism):
        members = range(window, min(window + parallelism, count))
        for n in members:
            begun = pet_state(names, n, finished=False)
            add(0, n + 3, operation={"resource": begun, "type": "creating"})
        for n in members:
            add(1, n + 3, state=pet_state(names, n))
    outputs = stack_state(names, {"petCount": count})
    entries.append(
        {
            "version": 1,
            "kind": 4,
            "sequenceID": len(entries) + 1,
            "operationID": 0,
            "removeOld": None,
            "removeNew": 1,
            "state": outputs,
        }
    )
    return entries


def _expected_resources(names: Names, count: int) -> list[dict[str, Any]]:
    return [
        stack_state(names, {"petCount": count}),
        provider_state(names),
        *(pet_state(names, n) for n in range(count)),
    ]


def _shuffled(batch: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """A little disorder, as parallel steps give (the CLI does not sort a batch)."""
    out = list(batch)
    for i in range(len(out) - 1):
        if rng.random() < 0.25:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _emit_entry_events(events: EventUploader, names: Names, entry: dict[str, Any]) -> None:
    if entry["kind"] == 0 and "operation" in entry:
        events.resource_event("resourcePreEvent", names, entry["operation"]["resource"])
    elif entry["kind"] == 1 and "state" in entry:
        events.resource_event("resOutputsEvent", names, entry["state"])


async def _journal_writes(
    api: Api,
    names: Names,
    update_path: str,
    lease: str,
    count: int,
    events: EventUploader,
    rng: random.Random,
    mode: Mode,
) -> tuple[list[float], int]:
    """Batches one at a time; returns the latency of each and the number of entries.

    `sequential`: one step in flight, every entry its own batch; `journal`: ENGINE_PARALLELISM
    steps in flight, batches of JOURNAL_BATCH_SIZE.
    """
    sequential = mode == "sequential"
    parallelism = 1 if sequential else ENGINE_PARALLELISM
    batch_size = 1 if sequential else JOURNAL_BATCH_SIZE
    entries = _journal_entries(names, count, api.base_url, parallelism)
    latencies: list[float] = []
    for first in range(0, len(entries), batch_size):
        batch = entries[first : first + batch_size]
        if not sequential:
            batch = _shuffled(batch, rng)
        body = orjson.dumps({"entries": batch})
        elapsed, _ = await api.call(
            "PATCH", f"{update_path}/journalentries", body=body, lease=lease, gzipped=True
        )
        latencies.append(elapsed)
        for entry in batch:
            _emit_entry_events(events, names, entry)
    return latencies, len(entries)


@dataclass
class CheckpointWriter:
    """Verbatim while a text is below the cutoff, else a delta; one write in flight (§4.3)."""

    api: Api
    update_path: str
    lease: str
    cutoff: int
    sequence: int = 1
    previous_size: int | None = None
    latencies: list[float] = field(default_factory=list)
    verbatims: int = 0
    deltas: int = 0
    fallbacks: int = 0

    async def write(self, snapshot: SnapshotText, edits: list[dict[str, Any]]) -> None:
        size = snapshot.size
        if self.previous_size is None or self.previous_size < self.cutoff or size < self.cutoff:
            await self._verbatim(snapshot)
        else:
            body = orjson.dumps(
                {
                    "version": 3,
                    "checkpointHash": snapshot.sha256(),
                    "sequenceNumber": self.sequence,
                    "deploymentDelta": edits,
                }
            )
            try:
                elapsed, _ = await self.api.call(
                    "PATCH",
                    f"{self.update_path}/checkpointdelta",
                    body=body,
                    lease=self.lease,
                    gzipped=True,
                )
                self.latencies.append(elapsed)
                self.deltas += 1
            except HttpError:
                # The CLI retries a failed delta at once as a verbatim with the same number.
                self.fallbacks += 1
                await self._verbatim(snapshot)
        self.sequence += 1
        self.previous_size = size

    async def _verbatim(self, snapshot: SnapshotText) -> None:
        # Concatenated, so the embedded text is byte for byte the text that was hashed.
        body = (
            b'{"version":3,"untypedDeployment":'
            + snapshot.text()
            + b',"sequenceNumber":'
            + str(self.sequence).encode()
            + b"}"
        )
        elapsed, _ = await self.api.call(
            "PATCH",
            f"{self.update_path}/checkpointverbatim",
            body=body,
            lease=self.lease,
            gzipped=True,
        )
        self.latencies.append(elapsed)
        self.verbatims += 1


async def _delta_writes(
    api: Api,
    names: Names,
    update_path: str,
    lease: str,
    count: int,
    events: EventUploader,
    cutoff: int,
) -> tuple[CheckpointWriter, SnapshotText]:
    snapshot = SnapshotText(
        orjson.dumps(manifest(update_path)), orjson.dumps(secrets_provider(api.base_url, names))
    )
    writer = CheckpointWriter(api, update_path, lease, cutoff)

    async def step(begun: dict[str, Any], state: dict[str, Any]) -> None:
        # Begin: a pending `creating` op, not transmitted (≤ 9 pending): the text is unchanged.
        events.resource_event("resourcePreEvent", names, begun)
        await writer.write(snapshot, [])
        # End: the resource is appended.
        events.resource_event("resOutputsEvent", names, state)
        await writer.write(snapshot, snapshot.append(render(state)))

    await step(stack_state(names), stack_state(names))
    await step(provider_state(names), provider_state(names))
    for n in range(count):
        await step(pet_state(names, n, finished=False), pet_state(names, n))
    # RegisterResourceOutputs on the stack: one more write.
    await writer.write(
        snapshot, snapshot.replace(0, render(stack_state(names, {"petCount": count})))
    )
    return writer, snapshot


async def run_update(
    api: Api, names: Names, count: int, mode: Mode, cutoff: int, rng: random.Random
) -> UpdateResult:
    """One `pulumi up --skip-preview --yes` creating `count` pets in a new stack."""
    await api.json("POST", f"/api/stacks/{ORG}/{names.project}", {"stackName": names.stack})
    started = time.perf_counter()
    await api.json("GET", names.path)
    program = {
        "name": names.project,
        "runtime": "nodejs",
        "main": "",
        "description": "",
        "options": {
            "localPolicyPackPaths": None,
            "color": "raw",
            "dryRun": False,
            "parallel": ENGINE_PARALLELISM,
            "showConfig": False,
            "showReplacementSteps": False,
            "showNames": False,
            "summary": False,
            "debug": False,
        },
        "config": {},
        "metadata": {
            "message": "bench",
            "environment": {"exec.kind": "cli", "pulumi.version": CLI_VERSION},
        },
    }
    created = await api.json("POST", f"{names.path}/update", program)
    update_path = f"{names.path}/update/{created['updateID']}"
    start_body: dict[str, Any] = {"tags": {}}
    if mode in JOURNAL_MODES:
        start_body["journalVersion"] = 1
    start = await api.json("POST", update_path, start_body)
    lease = start.get("token")
    if not isinstance(lease, str) or not lease:
        raise BenchError(f"start update returned no lease token: {start!r}")
    journaling = start.get("journalVersion") == 1
    if journaling != (mode in JOURNAL_MODES):
        raise BenchError(f"{mode} mode: start update answered journalVersion={start!r}")
    base = await api.json("GET", f"{names.path}/export")
    if base.get("deployment", {}).get("resources"):
        raise BenchError(f"the new stack {names.stack} already has resources")

    events = EventUploader(api, update_path, lease)
    events.emit("preludeEvent", {"config": {}})
    snapshot: SnapshotText | None = None
    writer: CheckpointWriter | None = None
    entries = 0
    try:
        if mode in JOURNAL_MODES:
            latencies, entries = await _journal_writes(
                api, names, update_path, lease, count, events, rng, mode
            )
        else:
            writer, snapshot = await _delta_writes(
                api, names, update_path, lease, count, events, cutoff
            )
            latencies = writer.latencies
        events.emit(
            "summaryEvent",
            {
                "maybeCorrupt": False,
                "durationSeconds": int(time.perf_counter() - started),
                "resourceChanges": {"create": count + 2},
                "PolicyPacks": {},
                "isPreview": False,
                "result": "succeeded",
            },
        )
    finally:
        await events.close()
    complete_started = time.perf_counter()
    await api.json("POST", f"{update_path}/complete", {"status": "succeeded"}, lease=lease)
    finished = time.perf_counter()

    await _verify(api, names, count, snapshot, mode)
    if events.failures:
        raise BenchError(f"{events.failures} engine-event batches were refused ({names.stack})")
    if writer is not None and writer.fallbacks:
        raise BenchError(
            f"{writer.fallbacks} checkpoint deltas were refused and resent verbatim "
            f"({names.stack}); see the server errors"
        )
    return UpdateResult(
        mode=mode,
        resources=count,
        total_s=finished - started,
        complete_s=finished - complete_started,
        write_latencies_s=latencies,
        verbatim_writes=writer.verbatims if writer else 0,
        delta_writes=writer.deltas if writer else 0,
        journal_entries=entries,
    )


async def _verify(
    api: Api, names: Names, count: int, snapshot: SnapshotText | None, mode: Mode
) -> None:
    """The stack's export must be what the client holds; raise with the first difference."""
    _, exported = await api.call("GET", f"{names.path}/export")
    if snapshot is not None:
        text = snapshot.text()
        if exported == text:
            return
        if orjson.loads(exported) == orjson.loads(text):
            raise BenchError(
                f"delta mode ({names.stack}): export is the same JSON but not the same bytes "
                f"({len(exported)} vs {len(text)} bytes)"
            )
        raise BenchError(
            f"delta mode ({names.stack}): export differs from the client's text "
            f"({len(exported)} vs {len(text)} bytes; sha256 "
            f"{hashlib.sha256(exported).hexdigest()} vs {hashlib.sha256(text).hexdigest()})"
        )
    deployment = orjson.loads(exported).get("deployment") or {}
    got = deployment.get("resources") or []
    expected = _expected_resources(names, count)
    got_urns = [r.get("urn") for r in got]
    expected_urns = [r["urn"] for r in expected]
    if got_urns != expected_urns:
        first = next(
            (i for i, (a, b) in enumerate(zip(got_urns, expected_urns, strict=False)) if a != b),
            min(len(got_urns), len(expected_urns)),
        )
        raise BenchError(
            f"{mode} mode ({names.stack}): export has {len(got_urns)} resources, expected "
            f"{len(expected_urns)}; first difference at index {first}"
        )
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a != b:
            raise BenchError(
                f"{mode} mode ({names.stack}): resource {index} differs: got "
                f"{orjson.dumps(a).decode()[:500]} expected {orjson.dumps(b).decode()[:500]}"
            )
    if deployment.get("secrets_providers") != secrets_provider(api.base_url, names):
        raise BenchError(f"{mode} mode ({names.stack}): secrets_providers differs")
    if deployment.get("pending_operations"):
        raise BenchError(f"{mode} mode ({names.stack}): pending operations left over")
