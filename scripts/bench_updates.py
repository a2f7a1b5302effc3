#!/usr/bin/env python3
"""Benchmark of the update protocol, driven over HTTP exactly as the Pulumi CLI drives it.

Starts `cairn up` as a subprocess on a free loopback port (SQLite in a temporary data dir, and,
when 127.0.0.1:5432 and :6379 answer, PostgreSQL in a fresh database plus Redis), then plays
`pulumi up --skip-preview` runs that create N `random:RandomPet` resources, in both persistence
modes of protocol doc §4:

- journal mode (start-update negotiated `journalVersion: 1`): `PATCH U/journalentries` batches
  of up to 100 entries, one batch in flight at a time;
- verbatim+delta mode (no `journalVersion`): one write after every step begin and end
  (≈ 2N+1 writes), `checkpointverbatim` while a text is below the advertised cutoff, else
  `checkpointdelta` with byte-offset edits and the SHA-256 of the new text.

Engine events go up concurrently (batches of 50, three workers) as the CLI does. Every update
is verified at the end: the stack's export must be exactly what the client holds.

Figures: total time and per-write latency of a 1,000-resource `up`; per-write p50 at 100 vs
10,000 resources; the time of `complete` for the 10,000-resource journal update; wall time of
16 stacks x 200 resources driven by 8 concurrent clients; the peak RSS of the cairn process.

Usage: bench_updates.py [--backend sqlite|postgres|all] [--scale F] [--json]
The table goes to stdout; with --json the JSON object goes to stdout and the table to stderr.
Progress lines always go to stderr. Exit status 1 when anything failed (server error, wrong
export, a backend that could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import math
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiohttp
import orjson

ADMIN_TOKEN: Final = "pul-bench-0123456789abcdef0123456789abcdef"
ORG: Final = "admin"
PROJECT: Final = "bench"
HOST: Final = "127.0.0.1"
CLI_VERSION: Final = "v3.259.0"
CLI_HEADERS: Final = {
    "Accept": "application/vnd.pulumi+9",
    "Accept-Encoding": "gzip",
    "Content-Type": "application/json",
    "User-Agent": f"pulumi-cli/1 ({CLI_VERSION}; linux; cmd=up)",
}

REQUEST_TIMEOUT_S: Final = 120.0
HEALTH_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
PHASE_TIMEOUT_S: Final = 3600.0
RSS_POLL_S: Final = 0.05

JOURNAL_BATCH_SIZE: Final = 100  # PULUMI_JOURNALING_BATCH_SIZE
EVENT_BATCH_SIZE: Final = 50
EVENT_WORKERS: Final = 3
ENGINE_PARALLELISM: Final = 16  # steps in flight at once (journal mode interleaving)
GZIP_LEVEL: Final = 6  # Go's gzip.DefaultCompression
DEFAULT_CUTOFF: Final = 1024 * 1024

# Unscaled sizes of the measured runs.
UP_RESOURCES: Final = 1_000
SMALL_RESOURCES: Final = 100
LARGE_RESOURCES: Final = 10_000
SMALL_REPEATS: Final = 5  # the 100-resource runs are repeated to have enough samples
CONCURRENT_STACKS: Final = 16
CONCURRENT_RESOURCES: Final = 200
CONCURRENT_CLIENTS: Final = 8

Mode = Literal["journal", "delta"]
MODES: Final[tuple[Mode, ...]] = ("journal", "delta")
T = TypeVar("T")

_ADJECTIVES: Final = (
    "witty", "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "merry", "nice", "proud", "quick", "silly", "tidy", "vast", "wise", "young", "zany",
)  # fmt: skip
_ANIMALS: Final = (
    "lemur", "otter", "panda", "koala", "llama", "moose", "sloth", "tapir", "zebra", "bison",
    "camel", "dingo", "egret", "finch", "gecko", "heron", "ibex", "jackal", "kiwi", "lynx",
)  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """The benchmark cannot go on (or a verification failed)."""


# -- HTTP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerError:
    method: str
    path: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> HTTP {self.status}: {self.body}"


class HttpError(BenchError):
    def __init__(self, error: ServerError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Api:
    """The CLI's HTTP layer: its headers, gzipped bodies where it gzips them, no retries."""

    session: aiohttp.ClientSession
    base_url: str
    errors: list[ServerError] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        lease: str | None = None,
        gzipped: bool = False,
    ) -> tuple[float, bytes]:
        """(seconds the round trip took, response body); non-2xx is recorded and raised."""
        headers = dict(CLI_HEADERS)
        headers["Authorization"] = f"update-token {lease}" if lease else f"token {ADMIN_TOKEN}"
        data = body
        if gzipped and body is not None:
            data = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            failure = ServerError(method, path, 0, f"transport error: {error!r}")
            self.errors.append(failure)
            raise HttpError(failure) from error
        elapsed = time.perf_counter() - started
        if not 200 <= status < 300:
            text = payload.decode("utf-8", "replace")
            failure = ServerError(method, path, status, text[:2000])
            self.errors.append(failure)
            raise HttpError(failure)
        return elapsed, payload

    async def json(
        self, method: str, path: str, body: Any = None, *, lease: str | None = None
    ) -> Any:
        raw = None if body is None else orjson.dumps(body)
        _, payload = await self.call(method, path, body=raw, lease=lease)
        return orjson.loads(payload) if payload.strip() else None


# -- resources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """The URNs of one stack's resources."""

    project: str
    stack: str

    @property
    def path(self) -> str:
        return f"/api/stacks/{ORG}/{self.project}/{self.stack}"

    def urn(self, qualified_type: str, name: str) -> str:
        return f"urn:pulumi:{self.stack}::{self.project}::{qualified_type}::{name}"

    @property
    def stack_urn(self) -> str:
        return self.urn("pulumi:pulumi:Stack", f"{self.project}-{self.stack}")

    @property
    def provider_urn(self) -> str:
        return self.urn("pulumi:providers:random", "default_4_16_0")

    @property
    def provider_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.provider_urn))

    def pet_urn(self, n: int) -> str:
        return self.urn("random:index/randomPet:RandomPet", f"pet-{n}")


def _timestamp(n: int) -> str:
    return f"2026-08-21T10:{(n // 60) % 60:02d}:{n % 60:02d}.{(n * 7919) % 10**9:09d}Z"


def stack_state(names: Names, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "urn": names.stack_urn,
        "custom": False,
        "type": "pulumi:pulumi:Stack",
        "created": _timestamp(0),
        "modified": _timestamp(0),
    }
    if outputs:
        state["outputs"] = outputs
    return state


def provider_state(names: Names) -> dict[str, Any]:
    return {
        "urn": names.provider_urn,
        "custom": True,
        "id": names.provider_id,
        "type": "pulumi:providers:random",
        "inputs": {"__internal": {"pluginDownloadURL": ""}, "version": "4.16.0"},
        "outputs": {"version": "4.16.0"},
        "created": _timestamp(1),
        "modified": _timestamp(1),
    }


def pet_inputs(n: int) -> dict[str, Any]:
    return {
        "length": 2,
        "prefix": f"pet{n}",
        "separator": "-",
    }


def pet_state(names: Names, n: int, *, finished: bool = True) -> dict[str, Any]:
    """A RandomPet after create (finished) or as the engine registers it (begin of create)."""
    inputs = pet_inputs(n)
    pet_id = f"pet{n}-{_ADJECTIVES[n % 20]}-{_ANIMALS[(n // 20) % 20]}"
    state: dict[str, Any] = {
        "urn": names.pet_urn(n),
        "custom": True,
        "type": "random:index/randomPet:RandomPet",
        "inputs": inputs,
        "parent": names.stack_urn,
        "provider": f"{names.provider_urn}::{names.provider_id}",
    }
    if finished:
        state["id"] = pet_id
        state["outputs"] = {**inputs, "id": pet_id}
        state["created"] = _timestamp(n + 2)
        state["modified"] = _timestamp(n + 2)
    if n >= ENGINE_PARALLELISM:
        state["dependencies"] = [names.pet_urn(n - ENGINE_PARALLELISM)]
    return state


def render(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def manifest(seed: str) -> dict[str, Any]:
    # Go field order: time, magic, version (plugins omitted when empty).
    return {
        "time": "2026-08-21T10:00:00." + hashlib.sha256(seed.encode()).hexdigest()[:9] + "Z",
        "magic": hashlib.sha256(CLI_VERSION.encode()).hexdigest(),
        "version": CLI_VERSION,
    }


def secrets_provider(base_url: str, names: Names) -> dict[str, Any]:
    return {
        "type": "service",
        "state": {"url": base_url, "owner": ORG, "project": names.project, "stack": names.stack},
    }


# -- verbatim + delta snapshot text -----------------------------------------------------------


RESOURCES_OPEN: Final = b',"resources":['
TEXT_CLOSE: Final = b"}}"
RESOURCES_CLOSE: Final = b"]}}"


class SnapshotText:
    """The CLI's compact snapshot text, kept as pieces so an append costs O(resource).

    Layout (protocol doc §4.3): `{"version":3,"deployment":{"manifest":…,"secrets_providers":…,
    "metadata":{}[,"resources":[R1,R2,…]]}}` – `resources` omitted while empty, and pending
    operations never present (≤ 9 in flight).
    """

    def __init__(self, manifest_json: bytes, secrets_json: bytes) -> None:
        self.head = (
            b'{"version":3,"deployment":{"manifest":'
            + manifest_json
            + b',"secrets_providers":'
            + secrets_json
            + b',"metadata":{}'
        )
        self.parts: list[bytes] = []
        self.size = len(self.head) + len(TEXT_CLOSE)
        # SHA-256 of everything before `]}}` (only while there are resources).
        self._prefix = hashlib.sha256()

    def text(self) -> bytes:
        if not self.parts:
            return self.head + TEXT_CLOSE
        return self.head + RESOURCES_OPEN + b",".join(self.parts) + RESOURCES_CLOSE

    def sha256(self) -> str:
        if not self.parts:
            return hashlib.sha256(self.head + TEXT_CLOSE).hexdigest()
        digest = self._prefix.copy()
        digest.update(RESOURCES_CLOSE)
        return digest.hexdigest()

    def append(self, resource: bytes) -> list[dict[str, Any]]:
        """Add a resource at the end; returns the edit against the previous text."""
        if not self.parts:
            offset = len(self.head)
            new_text = RESOURCES_OPEN + resource + b"]"
            self._prefix = hashlib.sha256(self.head + RESOURCES_OPEN + resource)
        else:
            offset = self.size - len(RESOURCES_CLOSE)
            new_text = b"," + resource
            self._prefix.update(new_text)
        self.parts.append(resource)
        self.size += len(new_text)
        return [edit(offset, offset, new_text)]

    def replace(self, index: int, resource: bytes) -> list[dict[str, Any]]:
        """Replace one resource in place (stack outputs); rehashes the text once."""
        start = (
            len(self.head)
            + len(RESOURCES_OPEN)
            + sum(len(part) for part in self.parts[:index])
            + index
        )
        end = start + len(self.parts[index])
        self.size += len(resource) - len(self.parts[index])
        self.parts[index] = resource
        text = self.text()
        self._prefix = hashlib.sha256(text[: -len(RESOURCES_CLOSE)])
        return [edit(start, end, resource)]


def edit(start: int, end: int, new_text: bytes) -> dict[str, Any]:
    """One gotextdiff.TextEdit as the CLI encodes it (byte offsets; line/column unused)."""
    return {
        "Span": {
            "uri": "",
            "start": {"line": 1, "column": 0, "offset": start},
            "end": {"line": 1, "column": 0, "offset": end},
        },
        "NewText": new_text.decode(),
    }


# -- engine events -----------------------------------------------------------------------------


class EventUploader:
    """Engine events: batches of up to 50, uploaded by three concurrent workers (§7)."""

    def __init__(self, api: Api, update_path: str, lease: str) -> None:
        self._api = api
        self._path = f"{update_path}/events/batch"
        self._lease = lease
        self._pending: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        self._sequence = 0
        self.failures = 0
        self._workers = [asyncio.create_task(self._work()) for _ in range(EVENT_WORKERS)]

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self._pending.append(
            {"sequence": self._sequence, "timestamp": int(time.time()), kind: payload}
        )
        self._sequence += 1
        if len(self._pending) >= EVENT_BATCH_SIZE:
            self._queue.put_nowait(self._pending)
            self._pending = []

    def resource_event(self, kind: str, names: Names, state: dict[str, Any]) -> None:
        provider = state.get("provider", "")
        new = {
            "type": state["type"],
            "urn": state["urn"],
            "custom": state["custom"],
            "id": state.get("id", ""),
            "parent": state.get("parent", ""),
            "inputs": state.get("inputs", {}),
            "outputs": state.get("outputs", {}),
            "provider": provider,
        }
        metadata = {
            "op": "create",
            "urn": state["urn"],
            "type": state["type"],
            "old": None,
            "new": new,
            "detailedDiff": None,
            "provider": provider,
        }
        payload: dict[str, Any] = {"metadata": metadata}
        if kind == "resourcePreEvent":
            payload["planning"] = False
        self.emit(kind, payload)

    async def _work(self) -> None:
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            body = orjson.dumps({"events": batch})
            try:
                await self._api.call("POST", self._path, body=body, lease=self._lease, gzipped=True)
            except HttpError:
                # The CLI only logs failed event uploads; the error is recorded by Api.
                self.failures += 1

    async def close(self) -> None:
        if self._pending:
            self._queue.put_nowait(self._pending)
            self._pending = []
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*self._workers), REQUEST_TIMEOUT_S * 4)


# -- one `pulumi up` ---------------------------------------------------------------------------


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


def _journal_entries(names: Names, count: int, base_url: str) -> list[dict[str, Any]]:
    """The journal of an `up` creating the stack, the provider and `count` pets (§4.4).

    Steps are interleaved as the engine runs them: up to ENGINE_PARALLELISM begins in flight,
    then their successes. Returns the entries in sequenceID order.
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
    for window in range(0, count, ENGINE_PARALLELISM):
        members = range(window, min(window + ENGINE_PARALLELISM, count))
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
) -> tuple[list[float], int]:
    """Sequential batches; returns the latency of each and the number of entries."""
    entries = _journal_entries(names, count, api.base_url)
    latencies: list[float] = []
    for first in range(0, len(entries), JOURNAL_BATCH_SIZE):
        batch = _shuffled(entries[first : first + JOURNAL_BATCH_SIZE], rng)
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
    if mode == "journal":
        start_body["journalVersion"] = 1
    start = await api.json("POST", update_path, start_body)
    lease = start.get("token")
    if not isinstance(lease, str) or not lease:
        raise BenchError(f"start update returned no lease token: {start!r}")
    journaling = start.get("journalVersion") == 1
    if journaling != (mode == "journal"):
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
        if mode == "journal":
            latencies, entries = await _journal_writes(
                api, names, update_path, lease, count, events, rng
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

    await _verify(api, names, count, snapshot)
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


async def _verify(api: Api, names: Names, count: int, snapshot: SnapshotText | None) -> None:
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
            f"journal mode ({names.stack}): export has {len(got_urns)} resources, expected "
            f"{len(expected_urns)}; first difference at index {first}"
        )
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a != b:
            raise BenchError(
                f"journal mode ({names.stack}): resource {index} differs: got "
                f"{orjson.dumps(a).decode()[:500]} expected {orjson.dumps(b).decode()[:500]}"
            )
    if deployment.get("secrets_providers") != secrets_provider(api.base_url, names):
        raise BenchError(f"journal mode ({names.stack}): secrets_providers differs")
    if deployment.get("pending_operations"):
        raise BenchError(f"journal mode ({names.stack}): pending operations left over")


# -- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cairn_command() -> list[str]:
    beside = Path(sys.executable).parent / "cairn"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cairn")
    if found:
        return [found]
    return [sys.executable, "-m", "cairn"]


def _status_kb(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (bounded walk of /proc/<pid>/task/*/children)."""
    pids = [pid]
    index = 0
    while index < len(pids) and len(pids) < 256:
        current = pids[index]
        index += 1
        tasks = Path(f"/proc/{current}/task")
        try:
            task_dirs = list(tasks.iterdir())
        except OSError:
            continue
        for task in task_dirs:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            pids.extend(int(child) for child in children if int(child) not in pids)
    return pids


class CairnServer:
    """`cairn up` as a subprocess, with an RSS poller; only this process is ever signalled."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.data_dir = data_dir
        self.env = env
        self.log_path = data_dir / "cairn.log"
        self.process: asyncio.subprocess.Process | None = None
        self.peak_kb = 0
        self.window_peak_kb = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        # Nothing CAIRN_* is inherited: the backend is exactly what this benchmark says.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(self.env)
        env.update(
            {
                "CAIRN_ADMIN_TOKEN": ADMIN_TOKEN,
                "CAIRN_LOG_LEVEL": "warning",
                "CAIRN_PUBLIC_URL": self.base_url,
            }
        )
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *cairn_command(),
                "up",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir / "data"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        self._poller = asyncio.create_task(self._poll_rss())
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise BenchError(
                    f"cairn up exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                async with session.get(
                    f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}: {(await response.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as error:
                last = repr(error)
            await asyncio.sleep(0.2)
        raise BenchError(
            f"cairn up not healthy after {HEALTH_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail()}"
        )

    async def _poll_rss(self) -> None:
        assert self.process is not None
        pid = self.process.pid
        while self.process.returncode is None:
            total = sum(_status_kb(p, "VmRSS") for p in _process_tree(pid))
            self.peak_kb = max(self.peak_kb, total)
            self.window_peak_kb = max(self.window_peak_kb, total)
            await asyncio.sleep(RSS_POLL_S)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def reset_window(self) -> None:
        self.window_peak_kb = 0

    def high_water_kb(self) -> int:
        """VmHWM of the cairn process (its lifetime peak RSS)."""
        if self.process is None or self.process.returncode is not None:
            return 0
        return _status_kb(self.process.pid, "VmHWM")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log(
                    f"cairn (pid {process.pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s: SIGKILL"
                )
                process.kill()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


# -- PostgreSQL + Redis ------------------------------------------------------------------------


def _tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0):
            return True
    except OSError:
        return False


def redis_problem() -> str | None:
    """None when Redis on 127.0.0.1:6379 answers PING, else why not."""
    try:
        with socket.create_connection((HOST, 6379), timeout=2.0) as sock:
            sock.settimeout(2.0)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as error:
        return f"Redis at {HOST}:6379 does not answer ({error})"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {HOST}:6379 answered {reply!r} to PING"
    return None


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database (user postgres, else root), dropped afterwards; yields its URL."""
    import asyncpg

    connection: Any = None
    problems: list[str] = []
    for user in ("postgres", "root"):
        for database in ("postgres", "template1"):
            try:
                connection = await asyncpg.connect(
                    host=HOST, port=5432, user=user, database=database, timeout=5
                )
                break
            except Exception as error:
                problems.append(f"{user}@{database}: {error}")
        if connection is not None:
            break
    if connection is None:
        raise BenchError("cannot connect to PostgreSQL: " + "; ".join(problems))
    name = f"cairn_bench_{uuid.uuid4().hex[:12]}"
    try:
        user = await connection.fetchval("SELECT current_user")
        await connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://{user}@{HOST}:5432/{name}"
        finally:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


# -- figures -----------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _latency_figures(results: Iterable[UpdateResult]) -> dict[str, Any]:
    runs = list(results)
    samples = [s for r in runs for s in r.write_latencies_s]
    return {
        "resources": runs[0].resources,
        "runs": len(runs),
        "writes": len(samples),
        "verbatim_writes": sum(r.verbatim_writes for r in runs),
        "delta_writes": sum(r.delta_writes for r in runs),
        "journal_entries": sum(r.journal_entries for r in runs),
        "complete_ms": _ms(max(r.complete_s for r in runs)),
        "p50_ms": _ms(percentile(samples, 0.50)),
        "p99_ms": _ms(percentile(samples, 0.99)),
        "total_s": round(sum(r.total_s for r in runs) / len(runs), 3),
    }


def scaled(count: int, scale: float) -> int:
    return max(1, round(count * scale))


@dataclass
class Sizes:
    up: int
    small: int
    large: int
    concurrent: int

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        return cls(
            up=scaled(UP_RESOURCES, scale),
            small=scaled(SMALL_RESOURCES, scale),
            large=scaled(LARGE_RESOURCES, scale),
            concurrent=scaled(CONCURRENT_RESOURCES, scale),
        )


class Phase:
    """Bounded phase with a progress line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = 0.0

    def __enter__(self) -> Phase:
        self.started = time.perf_counter()
        log(f"  {self.label} ...")
        return self

    def __exit__(self, *_: object) -> None:
        log(f"  {self.label}: {time.perf_counter() - self.started:.1f} s")


async def bounded(awaitable: Awaitable[T], label: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, PHASE_TIMEOUT_S)
    except TimeoutError:
        raise BenchError(f"{label} did not finish within {PHASE_TIMEOUT_S:.0f} s") from None


async def bench_backend(
    backend: str, env: dict[str, str], sizes: Sizes, session: aiohttp.ClientSession
) -> dict[str, Any]:
    """Every figure for one backend; the server runs for the whole set."""
    rng = random.Random(20260821)
    with tempfile.TemporaryDirectory(prefix=f"cairn-bench-{backend}-") as tmp:
        server = CairnServer(Path(tmp), env)
        api = Api(session, server.base_url)
        try:
            await server.start(session)
            log(f"[{backend}] cairn up at {server.base_url} (pid {server.pid})")
            capabilities = await api.json("GET", "/api/capabilities")
            cutoff = DEFAULT_CUTOFF
            for entry in capabilities.get("capabilities", []):
                if entry.get("capability") == "delta-checkpoint-uploads-v2":
                    cutoff = int(entry["configuration"]["checkpointCutoffSizeBytes"])
            figures: dict[str, Any] = {"status": "ok", "checkpoint_cutoff_bytes": cutoff}

            async def up(stack: str, count: int, mode: Mode) -> UpdateResult:
                names = Names(PROJECT, stack)
                return await bounded(
                    run_update(api, names, count, mode, cutoff, rng), f"{mode} up of {stack}"
                )

            up_figures: dict[str, Any] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {sizes.up}-resource up, {mode}"):
                    up_figures[mode] = _latency_figures([await up(f"u{mode[0]}", sizes.up, mode)])
            figures["up"] = up_figures

            small: dict[str, list[UpdateResult]] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {SMALL_REPEATS} x {sizes.small}-resource up, {mode}"):
                    small[mode] = [
                        await up(f"s{mode[0]}{i}", sizes.small, mode) for i in range(SMALL_REPEATS)
                    ]

            with Phase(
                f"[{backend}] {CONCURRENT_STACKS} stacks x {sizes.concurrent} resources, "
                f"{CONCURRENT_CLIENTS} clients"
            ):
                figures["concurrent"] = await bounded(
                    _concurrent(api, sizes.concurrent, cutoff, rng), "the concurrent run"
                )

            server.reset_window()
            large: dict[str, UpdateResult] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {sizes.large}-resource up, {mode}"):
                    large[mode] = await up(f"l{mode[0]}", sizes.large, mode)
            figures["peak_rss_10k_mb"] = round(server.window_peak_kb / 1024, 1)
            figures["vmhwm_mb"] = round(server.high_water_kb() / 1024, 1)
            figures["complete_10k_journal_s"] = round(large["journal"].complete_s, 3)

            scaling: dict[str, Any] = {}
            for mode in MODES:
                low = _latency_figures(small[mode])
                high = _latency_figures([large[mode]])
                scaling[mode] = {
                    "small_resources": sizes.small,
                    "large_resources": sizes.large,
                    "p50_small_ms": low["p50_ms"],
                    "p50_large_ms": high["p50_ms"],
                    "p99_large_ms": high["p99_ms"],
                    "writes_large": high["writes"],
                    "total_large_s": high["total_s"],
                    "ratio": round(high["p50_ms"] / low["p50_ms"], 3) if low["p50_ms"] else 0.0,
                }
            figures["scaling"] = scaling
        except BenchError as error:
            log(f"[{backend}] FAILED: {error}")
            tail = server.log_tail()
            if tail:
                log(f"[{backend}] last lines of the cairn log:\n{tail}")
            return {
                "status": "failed",
                "reason": str(error),
                "server_errors": [str(e) for e in api.errors],
            }
        finally:
            await server.stop()
        figures["server_errors"] = [str(e) for e in api.errors]
        if api.errors:
            figures["status"] = "failed"
            figures["reason"] = f"{len(api.errors)} server errors"
        return figures


async def _concurrent(api: Api, count: int, cutoff: int, rng: random.Random) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(CONCURRENT_STACKS):
        queue.put_nowait(f"c{index:02d}")
    results: list[UpdateResult] = []

    async def client() -> None:
        while True:
            try:
                stack = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(
                await run_update(api, Names(PROJECT, stack), count, "journal", cutoff, rng)
            )

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS)))
    wall = time.perf_counter() - started
    figures = _latency_figures(results)
    return {
        "stacks": CONCURRENT_STACKS,
        "resources_per_stack": count,
        "clients": CONCURRENT_CLIENTS,
        "wall_s": round(wall, 3),
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
    }


async def bench(backends: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=64)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for backend in backends:
            if backend == "sqlite":
                results[backend] = await bench_backend(backend, {}, sizes, session)
                continue
            problem = None if _tcp_answers(5432) else f"PostgreSQL at {HOST}:5432 does not answer"
            problem = problem or redis_problem()
            if problem is not None:
                results[backend] = {"status": "skipped", "reason": problem}
                log(f"[{backend}] skipped: {problem}")
                continue
            try:
                async with postgres_database() as url:
                    env = {"CAIRN_DATABASE_URL": url, "CAIRN_REDIS_URL": f"redis://{HOST}:6379/0"}
                    results[backend] = await bench_backend(backend, env, sizes, session)
            except BenchError as error:
                results[backend] = {"status": "skipped", "reason": str(error)}
                log(f"[{backend}] skipped: {error}")
    return results


def table(report: dict[str, Any]) -> str:
    lines = [f"Cairn update benchmark (scale {report['scale']})", ""]
    for backend, figures in report["backends"].items():
        title = "PostgreSQL + Redis" if backend == "postgres" else "SQLite"
        if figures["status"] == "skipped":
            lines += [f"{title}: skipped: {figures['reason']}", ""]
            continue
        if "up" not in figures:
            lines += [f"{title}: FAILED: {figures.get('reason', '')}"]
            lines += [f"  server error: {e}" for e in figures.get("server_errors", [])]
            lines.append("")
            continue
        up = figures["up"]
        lines.append(f"{title}  (checkpoint cutoff {figures['checkpoint_cutoff_bytes']} bytes)")
        lines.append(
            f"  {'':34}{'total s':>10}{'writes':>8}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'complete ms':>13}  kind of writes"
        )
        for mode in MODES:
            f = up[mode]
            label = f"{f['resources']}-resource up, {mode}"
            kinds = (
                f"{f['journal_entries']} entries in batches of <= {JOURNAL_BATCH_SIZE}"
                if mode == "journal"
                else f"{f['verbatim_writes']} verbatim + {f['delta_writes']} delta"
            )
            lines.append(
                f"  {label:34}"
                f"{f['total_s']:>10.2f}{f['writes']:>8}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}"
                f"{f['complete_ms']:>13.1f}  {kinds}"
            )
        lines.append("")
        lines.append(
            f"  {'per-write p50 (ms)':34}{'small':>10}{'large':>10}{'ratio':>8}  (target ≤ 1.5)"
        )
        for mode in MODES:
            s = figures["scaling"][mode]
            label = f"{mode}: {s['small_resources']} vs {s['large_resources']}"
            lines.append(
                f"  {label:34}{s['p50_small_ms']:>10.2f}{s['p50_large_ms']:>10.2f}"
                f"{s['ratio']:>8.2f}"
            )
        for mode in MODES:
            s = figures["scaling"][mode]
            lines.append(
                f"  {s['large_resources']}-resource up, {mode}: total {s['total_large_s']:.2f} s, "
                f"{s['writes_large']} writes, p99 {s['p99_large_ms']:.2f} ms"
            )
        c = figures["concurrent"]
        lines += [
            "",
            f"  complete of the {figures['scaling']['journal']['large_resources']}-resource "
            f"journal update: {figures['complete_10k_journal_s']:.3f} s",
            f"  {c['stacks']} stacks x {c['resources_per_stack']} resources, {c['clients']} "
            f"clients (journal): wall {c['wall_s']:.2f} s (target < 10 s), "
            f"p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms",
            f"  peak RSS during the large runs: {figures['peak_rss_10k_mb']:.1f} MB "
            f"(VmHWM {figures['vmhwm_mb']:.1f} MB; target < 500 MB)",
        ]
        if figures.get("server_errors"):
            lines.append(f"  FAILED: {figures.get('reason', '')}")
            lines += [f"  server error: {e}" for e in figures["server_errors"]]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplier for every resource count"
    )
    parser.add_argument("--json", action="store_true", help="also print a JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10:
        parser.error("--scale must be in (0, 10]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    sizes = Sizes.for_scale(args.scale)
    results = asyncio.run(bench(backends, sizes))
    report = {"scale": args.scale, "backends": results}
    rendered = table(report)
    if args.json:
        print(rendered, file=sys.stderr, flush=True)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(rendered, flush=True)
    failed = [name for name, figures in results.items() if figures["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
