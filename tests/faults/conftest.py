"""The distributed topology as real processes on PostgreSQL and Redis behind TCP proxies, and
an HTTP client that drives updates the way the Pulumi CLI does (including its retries)."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from cairn.cli import Topology, free_ports, start_topology
from scripts.bench_updates import (
    CLI_HEADERS,
    Names,
    SnapshotText,
    manifest,
    pet_state,
    provider_state,
    render,
    secrets_provider,
    stack_state,
)
from services.common.config import Settings
from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    create_test_database,
    drop_test_database,
    make_settings,
    postgres_available,
    redis_available,
)
from tests.faults.tcp_proxy import TcpProxy

ADMIN_TOKEN = "pul-faults-0123456789abcdef0123456789abcdef"
ORG = "admin"
REQUEST_TIMEOUT_S = 30.0
# The CLI retries 5xx answers and transport errors of checkpoint, event and complete calls:
# four attempts in all, with a short backoff.
CLI_ATTEMPTS = 4
CLI_BACKOFF_S = 0.1
EVENT_BATCH = 50
EVENT_WORKERS = 3
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body.strip() else None

    def is_json_error(self, status: int) -> bool:
        """Pulumi's error body with this status."""
        try:
            payload = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return False
        return (
            self.status == status
            and isinstance(payload, dict)
            and payload.get("code") == status
            and isinstance(payload.get("message"), str)
            and bool(payload["message"])
        )


@dataclass
class Api:
    """HTTP to one gateway with the CLI's headers; counts every attempt's outcome."""

    session: aiohttp.ClientSession
    base_url: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    transport_errors: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)

    async def once(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        lease: str | None = None,
        gzipped: bool = False,
    ) -> Reply:
        headers = dict(CLI_HEADERS)
        headers["Authorization"] = f"update-token {lease}" if lease else f"token {ADMIN_TOKEN}"
        data = body
        if gzipped and body is not None:
            data = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        started = time.perf_counter()
        async with self.session.request(
            method, self.base_url + path, data=data, headers=headers
        ) as response:
            payload = await response.read()
            status = response.status
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        if status >= 500:
            self.failures.append(f"{method} {path} -> {status} {payload[:300]!r}")
        elif status >= 400:
            self.rejections.append(f"{method} {path} -> {status} {payload[:300]!r}")
        return Reply(status, payload)

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        lease: str | None = None,
        gzipped: bool = False,
        retry: bool = False,
    ) -> Reply:
        """One request; with `retry`, 5xx and transport errors are retried as the CLI does."""
        attempts = CLI_ATTEMPTS if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                reply = await self.once(method, path, body, lease=lease, gzipped=gzipped)
            except (aiohttp.ClientError, TimeoutError) as error:
                self.transport_errors += 1
                self.failures.append(f"{method} {path} -> transport error {error!r}")
                if last:
                    raise
            else:
                if reply.status < 500 or last:
                    return reply
            self.retries += 1
            await asyncio.sleep(CLI_BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    async def json(
        self, method: str, path: str, body: Any = None, *, status: int = 200, **kwargs: Any
    ) -> Any:
        raw = None if body is None else orjson.dumps(body)
        reply = await self.call(method, path, raw, **kwargs)
        assert reply.status == status, f"{method} {path}: {reply.status} {reply.body[:500]!r}"
        return reply.json()


@dataclass
class Cluster:
    """A running distributed topology, its proxies, and one API client per gateway."""

    topology: Topology
    postgres: TcpProxy
    redis: TcpProxy
    apis: list[Api]
    log_dir: Path

    @property
    def api(self) -> Api:
        return self.apis[0]

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for child in self.topology.children:
            tail = child.log_tail(lines)
            if tail:
                parts.append(f"--- {child.label} (pid {child.pid}) ---\n{tail}")
        return "\n".join(parts)


class Launch(Protocol):
    def __call__(self, **overrides: Any) -> Awaitable[Cluster]: ...


async def _start_cluster(
    postgres_url: str,
    directory: Path,
    session: aiohttp.ClientSession,
    index: int,
    overrides: dict[str, Any],
) -> Cluster:
    """The topology on `postgres_url`, PostgreSQL and Redis reached through new proxies."""
    pg_url = make_url(postgres_url)
    redis_url = make_url(REDIS_URL.replace("redis://", "redis+x://"))
    postgres = TcpProxy(pg_url.host or "127.0.0.1", pg_url.port or 5432)
    redis = TcpProxy(redis_url.host or "127.0.0.1", redis_url.port or 6379)
    await postgres.start()
    await redis.start()
    try:
        database = pg_url.set(port=postgres.port).render_as_string(hide_password=False)
        redis_path = REDIS_URL.rsplit("/", 1)[-1] if REDIS_URL.count("/") >= 3 else "0"
        gateway_ports = free_ports(2)
        values: dict[str, Any] = {
            "redis_url": f"redis://127.0.0.1:{redis.port}/{redis_path}",
            "admin_token": ADMIN_TOKEN,
            "log_level": "warning",
            "port": gateway_ports[0],
            "public_url": f"http://127.0.0.1:{gateway_ports[0]}",
            "grpc_timeout_seconds": 10.0,
            "database_timeout_seconds": 5.0,
        }
        values.update(overrides)
        settings: Settings = make_settings(directory / "data", database, **values)
        log_dir = directory / f"logs-{index}"
        began = time.perf_counter()
        topology = await start_topology(settings, log_dir=log_dir, gateway_ports=gateway_ports)
    except BaseException:
        await postgres.close()
        await redis.close()
        raise
    print(f"topology up in {time.perf_counter() - began:.1f} s: {topology.urls}")
    return Cluster(
        topology=topology,
        postgres=postgres,
        redis=redis,
        apis=[Api(session, url) for url in topology.urls],
        log_dir=log_dir,
    )


async def _stop_clusters(clusters: list[Cluster]) -> None:
    for cluster in clusters:
        began = time.perf_counter()
        await cluster.topology.stop(STOP_GRACE_S)
        print(f"topology stopped in {time.perf_counter() - began:.1f} s")
        print(cluster.log_tails())
        await cluster.postgres.close()
        await cluster.redis.close()


def _client_session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=100))


def _require_redis() -> None:
    if not redis_available():
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")


@pytest.fixture
async def launch(postgres_url: str, tmp_path: Path) -> AsyncIterator[Launch]:
    """Start the topology on a fresh PostgreSQL database; PostgreSQL and Redis via proxies.
    For tests that kill, stop or restart processes (each gets topologies of its own)."""
    _require_redis()
    started: list[Cluster] = []
    session = _client_session()

    async def start(**overrides: Any) -> Cluster:
        cluster = await _start_cluster(postgres_url, tmp_path, session, len(started), overrides)
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        await _stop_clusters(started)
        await session.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running_topology(
    tmp_path_factory: pytest.TempPathFactory, postgres_schema: str
) -> AsyncIterator[Cluster]:
    """One topology for a module's tests that leave every process running (they may cut
    PostgreSQL or Redis, which `cluster` restores after each test). Starting the topology
    costs more than most of those tests."""
    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    _require_redis()
    url = await create_test_database(postgres_schema)
    session = _client_session()
    started: list[Cluster] = []
    try:
        directory = tmp_path_factory.mktemp("topology")
        started.append(await _start_cluster(url, directory, session, 0, {}))
        yield started[0]
    finally:
        await _stop_clusters(started)
        await session.close()
        await drop_test_database(url)


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(running_topology: Cluster) -> AsyncIterator[Cluster]:
    """The module's running topology with API clients of this test's own (their counts
    start at zero); PostgreSQL and Redis are reachable again afterwards, and every process
    still runs."""
    shared = running_topology
    session = shared.api.session
    mine = dataclasses.replace(shared, apis=[Api(session, api.base_url) for api in shared.apis])
    try:
        yield mine
    finally:
        await shared.postgres.restore()
        await shared.redis.restore()
    assert all(child.is_running() for child in shared.topology.children), shared.log_tails()


# -- driving an update like the CLI ------------------------------------------------------------


async def create_stack(api: Api, names: Names) -> None:
    await api.json("POST", f"/api/stacks/{ORG}/{names.project}", {"stackName": names.stack})


def program(names: Names) -> dict[str, Any]:
    return {
        "name": names.project,
        "runtime": "nodejs",
        "main": "",
        "description": "",
        "options": {"dryRun": False, "parallel": 16, "color": "raw"},
        "config": {},
        "metadata": {
            "message": "faults",
            "environment": {"exec.kind": "cli", "pulumi.version": "v3.259.0"},
        },
    }


async def create_update(api: Api, names: Names) -> str:
    """`POST …/update`; returns the update's path."""
    created = await api.json("POST", f"{names.path}/update", program(names))
    return f"{names.path}/update/{created['updateID']}"


async def start_update(api: Api, update_path: str) -> Reply:
    return await api.call("POST", update_path, orjson.dumps({"tags": {}}))


async def begin(api: Api, names: Names) -> tuple[str, str]:
    """Create and start an update; returns its path and lease token."""
    update_path = await create_update(api, names)
    started = await start_update(api, update_path)
    assert started.status == 200, started
    lease = started.json()["token"]
    assert isinstance(lease, str) and lease
    return update_path, lease


async def cutoff_of(api: Api) -> int:
    capabilities = await api.json("GET", "/api/capabilities")
    for entry in capabilities.get("capabilities", []):
        if entry.get("capability") == "delta-checkpoint-uploads-v2":
            return int(entry["configuration"]["checkpointCutoffSizeBytes"])
    raise AssertionError("delta checkpoints are not advertised")


@dataclass
class Writer:
    """Verbatim while small, then deltas with the SHA-256 of the result; one write in flight.

    A delta that still fails after the retries is resent verbatim with the same sequence
    number, as the CLI does; `fallbacks` counts those.
    """

    api: Api
    update_path: str
    lease: str
    cutoff: int
    sequence: int = 1
    previous_size: int | None = None
    writes: int = 0
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
            reply = await self.api.call(
                "PATCH",
                f"{self.update_path}/checkpointdelta",
                body,
                lease=self.lease,
                gzipped=True,
                retry=True,
            )
            if reply.status not in (200, 204):
                self.fallbacks += 1
                self.api.failures.append(f"delta {self.sequence} refused: {reply}")
                await self._verbatim(snapshot)
        self.sequence += 1
        self.previous_size = size
        self.writes += 1

    async def _verbatim(self, snapshot: SnapshotText) -> None:
        body = (
            b'{"version":3,"untypedDeployment":'
            + snapshot.text()
            + b',"sequenceNumber":'
            + str(self.sequence).encode()
            + b"}"
        )
        reply = await self.api.call(
            "PATCH",
            f"{self.update_path}/checkpointverbatim",
            body,
            lease=self.lease,
            gzipped=True,
            retry=True,
        )
        assert reply.status in (200, 204), f"verbatim {self.sequence}: {reply}"


class Events:
    """Engine events in batches of 50, uploaded by three workers, retried like the CLI."""

    def __init__(self, api: Api, update_path: str, lease: str) -> None:
        self._api = api
        self._path = f"{update_path}/events/batch"
        self._lease = lease
        self._pending: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        self._sequence = 0
        self.refused: list[Reply] = []
        self._workers = [asyncio.create_task(self._work()) for _ in range(EVENT_WORKERS)]

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self._pending.append(
            {"sequence": self._sequence, "timestamp": 1_763_800_000, kind: payload}
        )
        self._sequence += 1
        if len(self._pending) >= EVENT_BATCH:
            self._queue.put_nowait(self._pending)
            self._pending = []

    async def _work(self) -> None:
        while (batch := await self._queue.get()) is not None:
            reply = await self._api.call(
                "POST",
                self._path,
                orjson.dumps({"events": batch}),
                lease=self._lease,
                gzipped=True,
                retry=True,
            )
            if reply.status not in (200, 204):
                self.refused.append(reply)

    async def close(self) -> None:
        if self._pending:
            self._queue.put_nowait(self._pending)
            self._pending = []
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*self._workers), REQUEST_TIMEOUT_S * 4)


@dataclass
class UpdateRun:
    update_path: str
    snapshot: SnapshotText
    writer: Writer
    events: Events


async def run_delta_update(
    api: Api,
    names: Names,
    count: int,
    cutoff: int,
    *,
    on_write: Callable[[Writer], None] | None = None,
) -> UpdateRun:
    """`pulumi up` creating `count` pets in verbatim+delta mode: a write after every step's
    begin and end, then the stack outputs, events alongside, then `complete`."""
    update_path, lease = await begin(api, names)
    snapshot = SnapshotText(
        orjson.dumps(manifest(update_path)), orjson.dumps(secrets_provider(api.base_url, names))
    )
    writer = Writer(api, update_path, lease, cutoff)
    events = Events(api, update_path, lease)
    events.emit("preludeEvent", {"config": {}})

    async def write(edits: list[dict[str, Any]]) -> None:
        await writer.write(snapshot, edits)
        if on_write is not None:
            on_write(writer)

    async def step(begun: dict[str, Any], state: dict[str, Any]) -> None:
        events.emit("resourcePreEvent", {"metadata": {"op": "create", "urn": begun["urn"]}})
        await write([])
        events.emit("resOutputsEvent", {"metadata": {"op": "create", "urn": state["urn"]}})
        await write(snapshot.append(render(state)))

    try:
        await step(stack_state(names), stack_state(names))
        await step(provider_state(names), provider_state(names))
        for n in range(count):
            await step(pet_state(names, n, finished=False), pet_state(names, n))
        await write(snapshot.replace(0, render(stack_state(names, {"petCount": count}))))
        events.emit(
            "summaryEvent",
            {
                "maybeCorrupt": False,
                "durationSeconds": 1,
                "resourceChanges": {"create": count + 2},
                "PolicyPacks": {},
                "isPreview": False,
            },
        )
    finally:
        await events.close()
    complete = await api.call(
        "POST",
        f"{update_path}/complete",
        orjson.dumps({"status": "succeeded"}),
        lease=lease,
        retry=True,
    )
    assert complete.status in (200, 204), complete
    return UpdateRun(update_path, snapshot, writer, events)


async def write_verbatim(api: Api, path: str, lease: str, text: bytes, sequence: int) -> Reply:
    """One `checkpointverbatim` write of `text`, without client retries."""
    body = (
        b'{"version":3,"untypedDeployment":' + text + b',"sequenceNumber":'
        + str(sequence).encode() + b"}"
    )  # fmt: skip
    return await api.call("PATCH", f"{path}/checkpointverbatim", body, lease=lease)


def checkpoint_text(resources: int) -> bytes:
    """A small checkpoint of `resources` resources."""
    listed = ",".join(
        f'{{"urn":"urn:pulumi:dev::p::t::r{n}","type":"t","custom":false}}'
        for n in range(resources)
    )
    return b'{"version":3,"deployment":{"manifest":{},"resources":[' + listed.encode() + b"]}}"
