"""Fault tests of the distributed topology (`cairn up --topology distributed`): every service
its own process, two gateways, two updates replicas, real PostgreSQL and Redis behind TCP
proxies that the tests cut and pause."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from subprocess import Popen

import aiohttp
import orjson
import pytest

from cairn.cli import child_environment, distributed_problem, free_ports
from protos.cairn.v1 import (
    agent_pools_pb2,
    console_pb2,
    copilot_pb2,
    hooks_pb2,
    identity_pb2,
    oidc_pb2,
    schedules_pb2,
    secrets_pb2,
    stacks_pb2,
    updates_pb2,
)
from scripts.bench_updates import Names
from services.common.config import Settings
from services.common.grpc_server import (
    RETRYABLE_METHODS,
    channel_options,
    channel_target,
    service_config,
)
from tests.conftest import make_settings
from tests.faults.conftest import (
    ADMIN_TOKEN,
    Api,
    Launch,
    Reply,
    Writer,
    begin,
    checkpoint_text,
    create_stack,
    create_update,
    cutoff_of,
    run_delta_update,
    start_update,
    write_verbatim,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

BOUND_S = 60.0


KILL_RESOURCES = 500


async def _read_until(api: Api, names: Names, done: asyncio.Event, limit: int) -> list[Reply]:
    """GET stack and export, no client retries, until `done` (at most `limit` reads)."""
    replies: list[Reply] = []
    for index in range(limit):
        if done.is_set():
            break
        path = names.path if index % 2 else f"{names.path}/export"
        replies.append(await api.call("GET", path))
        await asyncio.sleep(0.02)
    return replies


async def test_sigkilled_updates_replica_mid_update_loses_nothing(launch: Launch) -> None:
    cluster = await launch()
    writes_api, reads_api = cluster.apis
    names = Names("kill", "dev")
    await create_stack(writes_api, names)
    cutoff = await cutoff_of(writes_api)
    victim = cluster.topology.replicas("updates")[0]
    total_writes = 2 * (KILL_RESOURCES + 2) + 1
    halfway: asyncio.Queue[Writer] = asyncio.Queue()

    def on_write(writer: Writer) -> None:
        if writer.writes == total_writes // 2:
            halfway.put_nowait(writer)

    async def kill_during_burst() -> list[Reply]:
        """SIGKILL the replica while reads and idempotent writes are surely in flight on it."""
        writer = await asyncio.wait_for(halfway.get(), BOUND_S)
        renew = orjson.dumps({"duration": 300})
        burst = [
            *(reads_api.call("GET", f"{names.path}/export") for _ in range(16)),
            *(
                reads_api.call(
                    "POST", f"{writer.update_path}/renew_lease", renew, lease=writer.lease
                )
                for _ in range(8)
            ),
        ]
        tasks = [asyncio.create_task(call) for call in burst]
        await asyncio.sleep(0.005)
        victim.process.send_signal(signal.SIGKILL)
        return await asyncio.gather(*tasks)

    done = asyncio.Event()
    reader = asyncio.create_task(_read_until(reads_api, names, done, limit=5_000))
    chaos = asyncio.create_task(kill_during_burst())
    began = time.perf_counter()
    try:
        run = await asyncio.wait_for(
            run_delta_update(writes_api, names, KILL_RESOURCES, cutoff, on_write=on_write),
            BOUND_S * 2,
        )
    finally:
        done.set()
        reads = await reader
        burst = await chaos
    elapsed = time.perf_counter() - began

    assert victim.process.wait(timeout=5) == -signal.SIGKILL
    exported = await reads_api.call("GET", f"{names.path}/export")
    assert exported.status == 200
    assert exported.body == run.snapshot.text(), "the export differs from the client's text"
    assert run.writer.writes == total_writes
    assert run.writer.fallbacks == 0, writes_api.failures
    assert run.events.refused == []
    history = await reads_api.json("GET", f"{names.path}/updates?pageSize=1&page=1")
    assert history["updates"][0]["info"]["result"] == "succeeded"
    failed = [reply for reply in [*burst, *reads] if reply.status != 200]
    print(
        f"{total_writes} checkpoint writes + events in {elapsed:.1f} s; writer: client retries "
        f"{writes_api.retries}, failed attempts {writes_api.failures}; {len(reads)} reads and "
        f"a burst of {len(burst)} calls across the kill, failed {failed[:3]}"
    )
    # Reads and idempotent writes are retried on the surviving replica inside the gateway,
    # so a client without retries never notices.
    assert failed == []


async def _stacks_with_updates(api: Api, project: str, count: int) -> list[tuple[Names, str]]:
    """`count` new stacks, each with a created (not started) update."""
    made = []
    for index in range(count):
        names = Names(project, f"s{index}")
        await create_stack(api, names)
        made.append((names, await create_update(api, names)))
    return made


async def test_sigkilled_replica_fails_unconfirmed_writes_cleanly(launch: Launch) -> None:
    # Redis paused holds each start inside an updates replica (it takes the Redis lock first),
    # so the SIGKILL surely lands while those non-idempotent writes are in flight.
    cluster = await launch(redis_timeout_seconds=10.0)
    api = cluster.api
    made = await _stacks_with_updates(api, "unconfirmed", 4)
    victim = cluster.topology.replicas("updates")[0]
    cluster.redis.pause()
    starts = [asyncio.create_task(start_update(api, path)) for _, path in made]
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in starts)
    killed_at = time.perf_counter()
    victim.process.send_signal(signal.SIGKILL)
    await asyncio.sleep(1.0)
    failed_fast = [index for index, task in enumerate(starts) if task.done()]
    await cluster.redis.restore()
    replies = await asyncio.wait_for(asyncio.gather(*starts), BOUND_S)
    print(f"starts answered 503 within 1 s of the kill: {failed_fast}; all: {replies}")

    # The gateway cannot know whether those writes were applied, so it does not retry them.
    assert failed_fast, "no start was in flight on the killed replica"
    for index in failed_fast:
        assert replies[index].is_json_error(503), replies[index]
    others = [reply for index, reply in enumerate(replies) if index not in failed_fast]
    assert others and all(reply.status == 200 for reply in others), replies
    assert time.perf_counter() - killed_at < BOUND_S
    # Nothing was half-applied: those stacks are free, and starting again works (the Redis
    # key the dead replica may have left behind does not wedge the stack).
    for index in failed_fast:
        names, path = made[index]
        stack = await api.json("GET", names.path)
        assert not stack.get("activeUpdate"), stack
        again = await start_update(cluster.apis[1], path)
        assert again.status == 200, again


async def test_sigterm_lets_in_flight_requests_finish(launch: Launch) -> None:
    cluster = await launch(redis_timeout_seconds=10.0)
    api, other = cluster.apis
    made = await _stacks_with_updates(api, "drain", 4)
    gateway = cluster.topology.gateways[0]
    replica = cluster.topology.replicas("updates")[0]
    cluster.redis.pause()
    starts = [asyncio.create_task(start_update(api, path)) for _, path in made]
    await asyncio.sleep(0.5)
    gateway.process.send_signal(signal.SIGTERM)
    replica.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    # Both drain: still running, the gateway no longer accepts connections.
    assert gateway.is_running() and replica.is_running()
    refused = await asyncio.gather(api.once("GET", "/healthz"), return_exceptions=True)
    assert isinstance(refused[0], aiohttp.ClientConnectionError), refused
    await cluster.redis.restore()
    replies = await asyncio.wait_for(asyncio.gather(*starts), BOUND_S)
    assert [reply.status for reply in replies] == [200] * len(made), replies
    assert await asyncio.to_thread(gateway.process.wait, 15) == 0
    assert await asyncio.to_thread(replica.process.wait, 15) == 0

    # The updates go on through the other gateway and the other replica.
    for (names, path), reply in zip(made, replies, strict=True):
        lease = reply.json()["token"]
        text = b'{"version":3,"deployment":{"manifest":{},"resources":[]}}'
        body = b'{"version":3,"untypedDeployment":' + text + b',"sequenceNumber":1}'
        saved = await other.call("PATCH", f"{path}/checkpointverbatim", body, lease=lease)
        assert saved.status in (200, 204), saved
        done = await other.call(
            "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
        )
        assert done.status in (200, 204), done
        exported = await other.call("GET", f"{names.path}/export")
        assert exported.body == text
    assert other.failures == []


async def test_sigterm_of_the_topology_finishes_in_flight_writes(launch: Launch) -> None:
    # PostgreSQL paused holds a checkpoint write (and two reads) inside the services, so the
    # whole topology is told to stop while they are surely in flight.
    cluster = await launch()
    api, other = cluster.apis
    names = Names("stop", "dev")
    await create_stack(api, names)
    path, lease = await begin(api, names)
    assert (await write_verbatim(api, path, lease, checkpoint_text(1), 1)).status in (200, 204)
    cluster.postgres.pause()
    in_flight = [
        asyncio.create_task(write_verbatim(api, path, lease, checkpoint_text(2), 2)),
        asyncio.create_task(other.call("GET", f"{names.path}/export")),
        asyncio.create_task(api.call("GET", names.path)),
    ]
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in in_flight)
    stopping = asyncio.create_task(cluster.topology.stop())
    await asyncio.sleep(0.5)
    assert all(gateway.is_running() for gateway in cluster.topology.gateways)
    await cluster.postgres.restore()
    replies = await asyncio.wait_for(asyncio.gather(*in_flight), BOUND_S)
    await asyncio.wait_for(stopping, BOUND_S)
    assert [reply.status for reply in replies] in ([204, 200, 200], [200, 200, 200]), replies
    assert replies[1].body in (checkpoint_text(1), checkpoint_text(2))
    # Every process stopped by itself (none needed SIGKILL).
    assert [child.process.returncode for child in cluster.topology.children] == [0] * 9

    # Started again on the same database: the write is there, whole, and the update goes on.
    again = await launch()
    exported = await again.api.call("GET", f"{names.path}/export")
    assert exported.body == checkpoint_text(2)
    done = await again.api.call(
        "POST", f"{path}/complete", orjson.dumps({"status": "succeeded"}), lease=lease
    )
    assert done.status in (200, 204), done
    assert (await again.apis[1].call("GET", f"{names.path}/export")).body == checkpoint_text(2)


# -- the pieces, without processes -----------------------------------------------------------

READ_PREFIXES = ("Get", "List", "Export", "Check")
# Each service's methods, from the generated descriptors.
PROTO_MODULES = (
    identity_pb2,
    console_pb2,
    oidc_pb2,
    stacks_pb2,
    hooks_pb2,
    updates_pb2,
    secrets_pb2,
    agent_pools_pb2,
    schedules_pb2,
    copilot_pb2,
)


def _methods() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for module in PROTO_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = {method.name for method in service.methods}
    return found


def test_retry_policy_covers_reads_and_idempotent_writes_only() -> None:
    methods = _methods()
    listed = {
        (service, method)
        for service, names in RETRYABLE_METHODS.items()
        for method in names
        if service != "grpc.health.v1.Health"
    }
    # Every listed method exists, so a rename cannot silently drop its retries.
    assert {(s, m) for s, m in listed if m not in methods.get(s, set())} == set()
    # Every read is retried.
    reads = {(s, m) for s, names in methods.items() for m in names if m.startswith(READ_PREFIXES)}
    assert reads - listed == set()
    # Writes that nobody can safely replay are not.
    for method in ("StartUpdate", "CreateUpdate", "CancelUpdate", "ImportDeployment"):
        assert ("cairn.v1.UpdatesService", method) not in listed
    assert ("cairn.v1.StacksService", "CreateStack") not in listed
    assert ("cairn.v1.CopilotService", "Chat") not in listed

    config = service_config(timeout_seconds=10.0)
    retrying, default = config["methodConfig"]
    assert retrying["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert retrying["retryPolicy"]["maxAttempts"] == 3
    assert retrying["timeout"] == default["timeout"] == "10.000s"
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    options = dict(channel_options(1024, 10.0))
    assert json.loads(options["grpc.service_config"]) == config
    assert channel_target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target("updates:50054") == "dns:///updates:50054"


def test_children_rebuild_the_same_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "postgresql+asyncpg://u@127.0.0.1:5432/db",
        redis_url="redis://127.0.0.1:6379/0",
        admin_token="pul-secret",
        updates_address="127.0.0.1:1,127.0.0.1:2",
        port=9000,
    )
    env = child_environment(settings, {"PATH": "/bin", "CAIRN_STALE": "x", "CAIRN_PORT": "1"})
    assert env["PATH"] == "/bin" and "CAIRN_STALE" not in env
    assert env["CAIRN_ADMIN_TOKEN"] == "pul-secret"
    rebuilt = Settings.model_validate(
        {key[len("CAIRN_") :].lower(): value for key, value in env.items() if key != "PATH"}
    )
    assert rebuilt == settings
    assert distributed_problem(settings) is None
    sqlite = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}")
    assert distributed_problem(sqlite) is not None
    assert distributed_problem(sqlite.model_copy(update={"database_url": None})) is not None


def _consecutive_free_ports() -> int:
    for _ in range(50):
        (port,) = free_ports(1)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no two consecutive free ports")


def _run_cairn_up(postgres_url: str, port: int, tmp_path: Path, log_path: Path) -> Popen[bytes]:
    with log_path.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cairn",
                "up",
                "--topology",
                "distributed",
                "--database-url",
                postgres_url,
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")},
                "CAIRN_ADMIN_TOKEN": ADMIN_TOKEN,
                "CAIRN_LOG_LEVEL": "warning",
            },
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _is_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


async def test_cairn_up_distributed_runs_and_stops_on_sigterm(
    postgres_url: str, tmp_path: Path
) -> None:
    """The command itself: both gateways healthy, SIGTERM stops every child, none left."""
    port = _consecutive_free_ports()
    log_path = tmp_path / "up.log"
    runner = await asyncio.to_thread(_run_cairn_up, postgres_url, port, tmp_path, log_path)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + BOUND_S
        printed = ""
        while "pulumi login" not in printed and time.monotonic() < deadline:
            assert runner.poll() is None, printed
            await asyncio.sleep(0.1)
            printed = await asyncio.to_thread(log_path.read_text)
        assert "pulumi login" in printed, printed
        pids = [int(line.rsplit(" pid ", 1)[1].split()[0]) for line in printed.splitlines()
                if " pid " in line]  # fmt: skip
        assert len(pids) == 9, printed  # two gateways, six services, updates twice
        async with aiohttp.ClientSession() as session:
            for gateway_port in (port, port + 1):
                async with session.get(f"http://127.0.0.1:{gateway_port}/healthz") as response:
                    assert response.status == 200
        began = time.perf_counter()
        runner.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(runner.wait, 30) == 0
        print(f"cairn up --topology distributed stopped in {time.perf_counter() - began:.1f} s")
    finally:
        if runner.poll() is None:
            runner.kill()
            await asyncio.to_thread(runner.wait, 10)
    assert "Stopping Cairn" in await asyncio.to_thread(log_path.read_text)
    assert [pid for pid in pids if _is_alive(pid)] == []
