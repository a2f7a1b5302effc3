"""The `cairn` command: `up` (the whole system, in one process or as the distributed
topology), `serve <name>` (one process), `migrate`, and `agent` (a self-hosted deployment
agent)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import aiohttp
from aiohttp import web
from pydantic import SecretStr, ValidationError

from cairn.backup import BackupError, backup, restore
from cairn.preflight import (
    Listener,
    StartupProblem,
    check_database_url,
    check_startup,
    settings_problem,
)
from cairn.scheduled import backup_target, list_archives, run_backup_now, scheduled_backups
from services.agent.worker import AgentOptions, run_agent
from services.common.clock import Clock
from services.common.config import DEFAULT_SERVICE_PORTS, SERVICE_NAMES, Settings
from services.common.datadir import prepare_database_files
from services.common.db import create_migration_engine, is_sqlite
from services.common.grpc_server import check_health, open_channel
from services.common.logging import configure_logging, get_logger
from services.common.loop import run_process, settle_heap
from services.common.migrations import upgrade_to_head
from services.common.service import RunningService, StartFunction
from services.common.tls import TlsSettingsError, load_tls
from services.updates.server import move_state_texts

log = get_logger("cairn")

# Dependencies first: stacks calls secrets, updates, agent_pools and identity (members, and
# grants when a stack is deleted); agent_pools calls secrets; copilot reads identity, stacks,
# updates and agent_pools.
START_ORDER: tuple[str, ...] = (
    "secrets",
    "identity",
    "updates",
    "agent_pools",
    "stacks",
    "copilot",
)
assert sorted(START_ORDER) == sorted(SERVICE_NAMES)


def service_start(name: str) -> StartFunction:
    """The `start` function of one service package."""
    module = importlib.import_module(f"services.{name}.server")
    start: StartFunction = module.start
    return start


@dataclass
class System:
    """Every service running in this process, and the settings that point at them."""

    settings: Settings
    services: list[RunningService] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> None:
        for service in reversed(self.services):
            await service.stop(grace)
        self.services.clear()


async def start_services(
    settings: Settings, *, host: str = "127.0.0.1", clock: Clock | None = None
) -> System:
    """Start every service on a free loopback port; the returned settings address them.

    The ports are picked first, so every service knows every address from the start (a
    service checks access tokens through identity and stacks). They share this process's
    metrics, which the gateway serves: no per-service endpoint.
    """
    ports = dict(zip(START_ORDER, free_ports(len(START_ORDER)), strict=True))
    addresses = {f"{name}_address": f"{LOCALHOST}:{port}" for name, port in ports.items()}
    system = System(settings=settings.model_copy(update={"metrics_port": 0, **addresses}))
    try:
        for name in START_ORDER:
            kwargs: dict[str, Any] = {"host": host, "port": ports[name]}
            if clock is not None:
                kwargs["clock"] = clock
            service = await service_start(name)(system.settings, **kwargs)
            system.services.append(service)
    except BaseException:
        await system.stop(grace=0)
        raise
    return system


async def migrate(settings: Settings) -> None:
    """Bring every service's tables to head (compose runs this once before the services)."""
    url = settings.resolved_database_url()
    prepare_database_files(url, settings.data_dir)
    engine = create_migration_engine(url, timeout_seconds=settings.database_timeout_seconds)
    applied: dict[str, list[str]] = {}
    try:
        for name in START_ORDER:
            package = importlib.import_module(f"services.{name}")
            models = importlib.import_module(f"services.{name}.models")
            migrations = Path(package.__file__ or "").parent / "migrations"
            revisions = await upgrade_to_head(engine, name, migrations, models.Base.metadata)
            if revisions:
                applied[name] = revisions
    finally:
        await engine.dispose()
    if applied:
        log.info("migrated", revisions=applied)
    else:
        log.info("database schema is up to date")
    # Stack state versions stored in the database before the blob store go into it.
    moved = await move_state_texts(settings)
    if moved:
        log.info("state_texts_moved_to_blob_store", versions=moved)


PARENT_POLL_SECONDS = 1.0


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _wait_for_signal(parent_pid: int | None = None) -> None:
    """Until SIGINT or SIGTERM, or, with `parent_pid`, until that parent process is gone."""
    with _stop_on_signal() as stop:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                # Orphaned (the topology runner was killed): stop as on SIGTERM.
                log.warning("parent_gone", parent_pid=parent_pid)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_POLL_SECONDS)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    """The port the gateway listens on (the one picked for it when configured as 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port: int = address[1]
            return port
    return configured


async def up(settings: Settings) -> None:
    """Run every service and the gateway in this process until Ctrl-C or SIGTERM."""
    from gateway.app import create_app
    from gateway.serving import SHUTDOWN_TIMEOUT_SECONDS, GatewayRunner

    await migrate(settings)  # one line for the whole schema; the services then find it current
    system = await start_services(settings)
    runner = GatewayRunner(create_app(system.settings), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    # The one process of the embedded system runs the backup schedule.
    backups = scheduled_backups(settings)
    try:
        if backups is not None:
            backups.start()
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        url = f"http://{settings.host}:{_bound_port(runner, settings.port)}"
        print(f"Cairn is running at {url}", flush=True)
        print(f"  web console {url}/", flush=True)
        print(f"  pulumi login {url}", flush=True)
        for name in START_ORDER:
            address = system.settings.service_address(name)
            print(f"  gRPC {name:<12} {address} (access tokens: see the README)", flush=True)
        if settings.admin_token is None:
            print(
                f"  no CAIRN_ADMIN_TOKEN: create the first admin: POST {url}/api/admin/bootstrap",
                flush=True,
            )
        settle_heap()
        await _wait_for_signal()
        print("Stopping Cairn", flush=True)
    finally:
        if backups is not None:
            await backups.stop()
        await runner.cleanup()
        await system.stop()


# -- the distributed topology: every service its own process --------------------------------

GATEWAYS = 2
UPDATES_REPLICAS = 2
READY_TIMEOUT_SECONDS = 60.0
READY_POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 15.0
KILL_WAIT_SECONDS = 5.0
LOCALHOST = "127.0.0.1"


class TopologyError(RuntimeError):
    """The distributed topology could not start."""


@dataclass
class Child:
    """One process of the distributed topology (a service replica or a gateway)."""

    name: str
    index: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    metrics_port: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}-{self.index}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Topology:
    """The running processes and the settings that address them."""

    settings: Settings
    services: list[Child] = field(default_factory=list)
    gateways: list[Child] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        host = LOCALHOST if self.settings.host in ("", "0.0.0.0") else self.settings.host
        return [f"http://{host}:{gateway.port}" for gateway in self.gateways]

    @property
    def children(self) -> list[Child]:
        return [*self.services, *self.gateways]

    def replicas(self, name: str) -> list[Child]:
        return [child for child in self.services if child.name == name]

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Gateways first, so their in-flight requests finish against running services."""
        await stop_children(self.gateways, grace)
        await stop_children(self.services, grace)


async def _wait_exited(children: Sequence[Child], seconds: float) -> None:
    """Reap the children, giving them `seconds` in all."""
    deadline = time.monotonic() + seconds
    for child in children:
        remaining = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(child.process.wait, remaining)


async def stop_children(children: Sequence[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each child (by PID), wait up to `grace`, then SIGKILL the stragglers."""
    for child in children:
        if child.is_running():
            child.process.send_signal(signal.SIGTERM)
    await _wait_exited(children, grace)
    stragglers = [child for child in children if child.is_running()]
    for child in stragglers:
        log.warning("child_killed", child=child.label, pid=child.pid, grace_seconds=grace)
        child.process.kill()
    await _wait_exited(stragglers, KILL_WAIT_SECONDS)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held at once while picking, so never the same)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOCALHOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def child_environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment from which a child builds exactly these settings."""
    # Inherited CAIRN_* variables are dropped: the settings (env plus flags) are the truth.
    env = {key: value for key, value in base.items() if not key.startswith("CAIRN_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"CAIRN_{name.upper()}"] = str(value)
    return env


def _spawn(
    name: str,
    index: int,
    port: int,
    env: Mapping[str, str],
    log_dir: Path | None,
    metrics_port: int = 0,
) -> Child:
    port_variable = "CAIRN_PORT" if name == "gateway" else "CAIRN_GRPC_PORT"
    command = [
        sys.executable,
        "-m",
        "cairn",
        "serve",
        name,
        "--parent-pid",
        str(os.getpid()),
    ]
    log_path = None if log_dir is None else log_dir / f"{name}-{index}.log"
    with contextlib.ExitStack() as files:
        output: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = files.enter_context(log_path.open("ab"))
        process = subprocess.Popen(
            command,
            env={**env, port_variable: str(port), "CAIRN_METRICS_PORT": str(metrics_port)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            # Its own process group: a terminal's Ctrl-C reaches only this runner, which
            # stops the children in order (gateways first).
            process_group=0,
        )
    return Child(
        name=name,
        index=index,
        port=port,
        process=process,
        log_path=log_path,
        metrics_port=metrics_port,
    )


def _exited(child: Child) -> TopologyError:
    tail = child.log_tail()
    return TopologyError(
        f"{child.label} (pid {child.pid}) exited with {child.process.returncode}"
        + (f":\n{tail}" if tail else "")
    )


async def _wait_serving(child: Child, settings: Settings, deadline: float) -> None:
    # Health checks need no credential (but do need TLS when the services speak it).
    channel = open_channel(
        child.address, settings.max_message_bytes, signer=None, tls=load_tls(settings)
    )
    try:
        while not await check_health(channel, timeout=1.0):
            if not child.is_running():
                raise _exited(child)
            if time.monotonic() > deadline:
                raise TopologyError(f"{child.label} is not serving on {child.address}")
            await asyncio.sleep(READY_POLL_SECONDS)
    finally:
        await channel.close(None)


async def _wait_healthy(child: Child, url: str, deadline: float) -> None:
    last = "no answer"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            if not child.is_running():
                raise _exited(child)
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}: {(await response.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise TopologyError(f"{child.label} at {url} is not healthy ({last})")
            await asyncio.sleep(READY_POLL_SECONDS)


async def start_topology(
    settings: Settings,
    *,
    base_env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    gateway_ports: Sequence[int] | None = None,
    updates_replicas: int = UPDATES_REPLICAS,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Topology:
    """Migrate once, then run every service (updates as replicas) and two gateways as processes.

    Services listen on free loopback ports; every process gets every address, the updates
    one as a comma-separated list its callers balance over. Gateways listen on `gateway_ports`
    (default `settings.port` and the next one). Returns once every service answers its health
    check and every gateway's /healthz answers 200; on failure stops what it started.
    """
    settings = settings.model_copy(
        update={
            "data_dir": settings.data_dir.resolve(),
            "database_url": settings.resolved_database_url(),
            "grpc_host": LOCALHOST,
        }
    )
    await migrate(settings)
    counts = {name: updates_replicas if name == "updates" else 1 for name in START_ORDER}
    replicas = sum(counts.values())
    # With metrics asked for, each service process serves its own /metrics on a free port
    # (gateways serve theirs on their HTTP port).
    picked = iter(free_ports(replicas * 2 if settings.metrics_port else replicas))
    ports = {name: [next(picked) for _ in range(count)] for name, count in counts.items()}
    metrics_ports = {
        name: [next(picked) if settings.metrics_port else 0 for _ in range(count)]
        for name, count in counts.items()
    }
    settings = settings.model_copy(
        update={
            f"{name}_address": ",".join(f"{LOCALHOST}:{port}" for port in ports[name])
            for name in START_ORDER
        }
    )
    if gateway_ports is None:
        gateway_ports = [settings.port + index for index in range(GATEWAYS)]
    # Building a child's environment is not configuration: only PATH and the like are kept.
    env = child_environment(settings, os.environ if base_env is None else base_env)
    topology = Topology(settings=settings)
    deadline = time.monotonic() + ready_timeout
    try:
        for name in START_ORDER:
            for index, port in enumerate(ports[name]):
                metrics_port = metrics_ports[name][index]
                topology.services.append(
                    _spawn(name, index, port, env, log_dir, metrics_port=metrics_port)
                )
        await asyncio.gather(
            *(_wait_serving(child, settings, deadline) for child in topology.services)
        )
        for index, port in enumerate(gateway_ports):
            topology.gateways.append(_spawn("gateway", index, port, env, log_dir))
        await asyncio.gather(
            *(
                _wait_healthy(child, url, deadline)
                for child, url in zip(topology.gateways, topology.urls, strict=True)
            )
        )
    except BaseException:
        await topology.stop(grace=2.0)
        raise
    return topology


async def _report_exits(topology: Topology) -> None:
    """Say once when a child dies on its own (nothing restarts it)."""
    reported: set[str] = set()
    while True:
        for child in topology.children:
            if child.label not in reported and not child.is_running():
                reported.add(child.label)
                print(
                    f"  {child.label} (pid {child.pid}) exited with {child.process.returncode}",
                    flush=True,
                )
        await asyncio.sleep(PARENT_POLL_SECONDS)


async def up_distributed(settings: Settings) -> None:
    """Run the compose topology as local processes until Ctrl-C or SIGTERM."""
    with _stop_on_signal() as stop:
        starting = asyncio.create_task(start_topology(settings))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            # Interrupted while starting: start_topology stops what it started.
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        stopping.cancel()
        try:
            topology = starting.result()
        except (TopologyError, OSError) as error:
            # OSError: the database (migrations run first) or a port cannot be reached.
            print(f"cairn: the distributed topology did not start: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        stopping = asyncio.create_task(stop.wait())
        reporter = asyncio.create_task(_report_exits(topology))
        try:
            for gateway, url in zip(topology.gateways, topology.urls, strict=True):
                print(f"Cairn gateway at {url}  pid {gateway.pid}", flush=True)
            for child in topology.services:
                metrics = f"  metrics :{child.metrics_port}" if child.metrics_port else ""
                print(f"  {child.label:<14} {child.address}  pid {child.pid}{metrics}", flush=True)
            print(f"  web console {topology.urls[0]}/", flush=True)
            print(f"  pulumi login {topology.urls[0]}", flush=True)
            if not settings.redis_url:
                print("  no CAIRN_REDIS_URL: the database row alone serialises updates", flush=True)
            await stopping
            print("Stopping Cairn", flush=True)
        finally:
            reporter.cancel()
            stopping.cancel()
            await topology.stop()


# The process kind that runs scheduled backups in the distributed topology (docs/operations.md).
BACKUP_OWNER = "updates"


async def serve(name: str, settings: Settings, *, parent_pid: int | None = None) -> None:
    """Run one service (or the gateway) until SIGINT/SIGTERM, then stop with a grace period.

    In-flight requests finish first: the gateway stops listening and waits for its handlers;
    a service reports NOT_SERVING and lets running RPCs (each one database transaction, so a
    checkpoint write is applied whole or not at all) finish.
    """
    if name == "gateway":
        from gateway.app import create_app
        from gateway.serving import SHUTDOWN_TIMEOUT_SECONDS, GatewayRunner

        runner = GatewayRunner(create_app(settings), shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            settle_heap()
            await _wait_for_signal(parent_pid)
        finally:
            await runner.cleanup()
        return
    port = settings.grpc_port or DEFAULT_SERVICE_PORTS[name]
    service = await service_start(name)(settings, host=settings.grpc_host, port=port)
    # The updates processes run the backup schedule (one replica per firing: an advisory lock).
    backups = scheduled_backups(settings) if name == BACKUP_OWNER else None
    try:
        if backups is not None:
            backups.start()
        settle_heap()
        await _wait_for_signal(parent_pid)
    finally:
        if backups is not None:
            await backups.stop()
        await service.stop()


def agent_options(args: argparse.Namespace) -> AgentOptions:
    options = AgentOptions(
        url=args.url,
        pool_token=args.pool_token,
        command=args.job_command,
        poll_seconds=max(0.1, args.poll_seconds),
    )
    if args.work_dir is not None:
        options = dataclasses.replace(options, work_dir=args.work_dir)
    return options


TOPOLOGIES = ("embedded", "distributed")
UP_DESCRIPTION = """\
Run the whole system on this machine.

--topology embedded (the default) runs every service and the gateway in this process, on
SQLite under the data directory unless a database URL is given.

--topology distributed runs the compose topology as local processes: `migrate` once, then
every service as its own process on a free loopback port (updates twice, balanced over by
its callers) and two gateways on --port and --port + 1. It needs PostgreSQL (--database-url
or CAIRN_DATABASE_URL, postgresql+asyncpg://...): SQLite would work across processes but
serialises every write through one file lock, which is not what this topology is for. Redis
(--redis-url or CAIRN_REDIS_URL) is optional. SIGINT/SIGTERM stop the gateways first (their
in-flight requests finish), then the services; a process that does not stop within 15 s is
killed.
"""


def distributed_problem(settings: Settings) -> str | None:
    """Why `up --topology distributed` cannot run with these settings, or None."""
    if not settings.database_url or is_sqlite(settings.database_url):
        return (
            "cairn up --topology distributed needs PostgreSQL: pass --database-url "
            "postgresql+asyncpg://user@host/db (or set CAIRN_DATABASE_URL)"
        )
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cairn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser(
        "up",
        help="run the whole system on this machine",
        description=UP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up_parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        default="embedded",
        help="embedded: one process (default); distributed: one process per service",
    )
    up_parser.add_argument(
        "--port",
        type=int,
        help="gateway port (CAIRN_PORT, default 8080); distributed: the second gateway uses +1",
    )
    up_parser.add_argument("--host", help="gateway address (CAIRN_HOST, default 127.0.0.1)")
    up_parser.add_argument("--data-dir", type=Path, help="embedded data (CAIRN_DATA_DIR)")
    up_parser.add_argument(
        "--database-url", help="SQLAlchemy URL (CAIRN_DATABASE_URL); distributed needs PostgreSQL"
    )
    up_parser.add_argument("--redis-url", help="Redis for update locks (CAIRN_REDIS_URL)")
    serve_parser = commands.add_parser("serve", help="run one service (or the gateway) alone")
    serve_parser.add_argument("name", choices=[*SERVICE_NAMES, "gateway"])
    serve_parser.add_argument(
        "--parent-pid",
        type=int,
        help="also stop when this parent process is gone (set by `up --topology distributed`)",
    )
    commands.add_parser("migrate", help="migrate every service's tables, then exit")
    backup_parser = commands.add_parser(
        "backup", help="write a consistent archive of every table and blob (while Cairn runs)"
    )
    backup_parser.add_argument(
        "--to",
        dest="archive",
        help="a new or empty directory, or s3://bucket/prefix (gs://, az://) holding nothing; "
        "omitted: a new timestamped archive under CAIRN_BACKUP_TO, with its retention",
    )
    backup_parser.add_argument(
        "--list",
        action="store_true",
        help="list the timestamped archives under --to (default CAIRN_BACKUP_TO)",
    )
    restore_parser = commands.add_parser(
        "restore", help="restore an archive into an empty database (SQLite or PostgreSQL)"
    )
    restore_parser.add_argument(
        "--from",
        dest="archive",
        required=True,
        help="the archive: a directory, or s3://bucket/prefix (gs://, az://)",
    )
    restore_parser.add_argument(
        "--verify",
        action="store_true",
        help="read everything back and check every count and hash against the manifest",
    )
    agent_parser = commands.add_parser("agent", help="run a self-hosted deployment agent")
    agent_parser.add_argument("--url", required=True, help="Cairn's URL, e.g. http://cairn:8080")
    agent_parser.add_argument("--pool-token", required=True, help="the agent pool's token")
    agent_parser.add_argument(
        "--command",
        dest="job_command",
        default="",
        help="run this shell command for every job instead of pulumi",
    )
    agent_parser.add_argument("--work-dir", type=Path, help="where jobs get scratch directories")
    agent_parser.add_argument(
        "--poll-seconds", type=float, default=2.0, help="wait between claims when idle"
    )
    return parser.parse_args(argv)


def startup_listeners(args: argparse.Namespace, settings: Settings) -> list[Listener]:
    """The addresses a command will listen on, each with the setting that moves it."""
    if args.command == "up":
        count = GATEWAYS if args.topology == "distributed" else 1
        return [
            Listener(settings.host, settings.port + index, "CAIRN_PORT (--port)")
            for index in range(count)
        ]
    if args.command != "serve":
        return []
    if args.name == "gateway":
        return [Listener(settings.host, settings.port, "CAIRN_PORT")]
    port = settings.grpc_port or DEFAULT_SERVICE_PORTS[args.name]
    listeners = [Listener(settings.grpc_host, port, "CAIRN_GRPC_PORT")]
    if settings.metrics_port:
        listeners.append(Listener(settings.grpc_host, settings.metrics_port, "CAIRN_METRICS_PORT"))
    return listeners


def load_settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command line's overrides on top."""
    overrides: dict[str, Any] = {}
    for name in ("port", "host", "data_dir", "database_url", "redis_url"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


async def archive_command(args: argparse.Namespace, settings: Settings) -> None:
    """`cairn backup` and `cairn restore`: one summary line, or one line saying why not."""
    try:
        if args.command == "backup":
            await _backup_command(args, settings)
            return
        done = await restore(settings, args.archive, verify=args.verify)
    except BackupError as error:
        refuse(str(error))
    checked = ", every count and hash verified" if done.verified else ""
    print(
        f"cairn: restored {done.rows} rows of {done.tables} tables and {done.blobs} blobs "
        f"from {args.archive}{checked}",
        flush=True,
    )


async def _backup_command(args: argparse.Namespace, settings: Settings) -> None:
    if args.archive is None and not settings.backup_to.strip():
        raise BackupError("say where: --to DIR or --to s3://bucket/prefix (or set CAIRN_BACKUP_TO)")
    if args.list:
        target = args.archive or settings.backup_to.strip()
        location = backup_target(settings.model_copy(update={"backup_to": target}))
        entries = [] if location is None else await list_archives(location)
        for entry in entries:
            if entry.is_complete:
                print(
                    f"{entry.name}  complete  {entry.created_at}  {entry.rows} rows  "
                    f"{entry.blobs} blobs",
                    flush=True,
                )
            else:
                print(f"{entry.name}  unfinished  {entry.problem}", flush=True)
        if not entries:
            print(f"cairn: no archives under {target}", flush=True)
        return
    if args.archive is None:
        name = await run_backup_now(settings)
        print(f"cairn: backed up to {name}, checked; archives past CAIRN_BACKUP_KEEP removed")
        return
    made = await backup(settings, args.archive)
    print(
        f"cairn: backed up {made.rows} rows of {made.tables} tables and "
        f"{made.blobs} blobs to {args.archive}",
        flush=True,
    )


def refuse(problem: str) -> NoReturn:
    """A start that cannot happen: one line naming what to change, exit status 2."""
    print(f"cairn: {problem}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as error:
        refuse(str(settings_problem(error)))
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "agent":
        run_process(run_agent(agent_options(args)), settings)
        return
    if args.command in ("backup", "restore"):
        try:
            check_database_url(settings)
        except StartupProblem as startup_problem:
            refuse(str(startup_problem))
        run_process(archive_command(args, settings), settings)
        return
    if args.command in ("up", "serve"):
        try:
            load_tls(settings)
        except TlsSettingsError as error:
            refuse(str(error))
    if args.command == "up" or (args.command == "serve" and args.name == BACKUP_OWNER):
        try:
            backup_target(settings)
        except BackupError as error:
            refuse(str(error))
    distributed = args.command == "up" and args.topology == "distributed"
    needs_master_key = args.command == "up" or (args.command == "serve" and args.name == "secrets")
    try:
        check_database_url(settings)
        if distributed and (problem := distributed_problem(settings)) is not None:
            refuse(problem)
        run_process(
            check_startup(
                settings,
                listeners=startup_listeners(args, settings),
                master_key=needs_master_key,
            ),
            settings,
        )
    except StartupProblem as startup_problem:
        refuse(str(startup_problem))
    if distributed:
        run_process(up_distributed(settings), settings)
    elif args.command == "up":
        run_process(up(settings), settings)
    elif args.command == "serve":
        run_process(serve(args.name, settings, parent_pid=args.parent_pid), settings)
    else:
        run_process(migrate(settings), settings)
