"""The `cairn` command: `up` (the whole system), `serve <name>` (one process), `migrate`,
and `agent` (a self-hosted deployment agent)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from services.agent.worker import AgentOptions, run_agent
from services.common.clock import Clock
from services.common.config import DEFAULT_SERVICE_PORTS, SERVICE_NAMES, Settings
from services.common.db import create_migration_engine
from services.common.logging import configure_logging, get_logger
from services.common.migrations import upgrade_to_head
from services.common.service import RunningService, StartFunction, serve_until_signal

log = get_logger("cairn")

# Dependencies first: stacks calls secrets, updates and agent_pools when a stack is deleted;
# agent_pools calls secrets; copilot reads identity, stacks and updates.
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
    """Start every service on a free loopback port; the returned settings address them."""
    system = System(settings=settings)
    try:
        for name in START_ORDER:
            kwargs: dict[str, Any] = {"host": host, "port": 0}
            if clock is not None:
                kwargs["clock"] = clock
            service = await service_start(name)(system.settings, **kwargs)
            system.services.append(service)
            system.settings = system.settings.model_copy(
                update={f"{name}_address": f"127.0.0.1:{service.port}"}
            )
    except BaseException:
        await system.stop(grace=0)
        raise
    return system


async def migrate(settings: Settings) -> None:
    """Bring every service's tables to head (compose runs this once before the services)."""
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_migration_engine(url, timeout_seconds=settings.database_timeout_seconds)
    try:
        for name in START_ORDER:
            package = importlib.import_module(f"services.{name}")
            models = importlib.import_module(f"services.{name}.models")
            migrations = Path(package.__file__ or "").parent / "migrations"
            await upgrade_to_head(engine, name, migrations, models.Base.metadata)
            log.info("migrated", service=name)
    finally:
        await engine.dispose()


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def up(settings: Settings) -> None:
    """Run every service and the gateway in this process until Ctrl-C or SIGTERM."""
    from gateway.app import create_app

    system = await start_services(settings)
    runner = web.AppRunner(create_app(system.settings), shutdown_timeout=10)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        url = f"http://{settings.host}:{settings.port}"
        print(f"Cairn is running at {url}", flush=True)
        print(f"  pulumi login {url}", flush=True)
        if settings.admin_token is None:
            print(
                f"  no CAIRN_ADMIN_TOKEN: create the first admin: POST {url}/api/admin/bootstrap",
                flush=True,
            )
        await _wait_for_signal()
        print("Stopping Cairn", flush=True)
    finally:
        await runner.cleanup()
        await system.stop()


async def serve(name: str, settings: Settings) -> None:
    if name == "gateway":
        from gateway.app import create_app

        runner = web.AppRunner(create_app(settings), shutdown_timeout=10)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        try:
            await _wait_for_signal()
        finally:
            await runner.cleanup()
        return
    await serve_until_signal(service_start(name), settings, DEFAULT_SERVICE_PORTS[name])


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cairn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="run the whole system on this machine")
    up_parser.add_argument("--port", type=int, help="gateway port (CAIRN_PORT, default 8080)")
    up_parser.add_argument("--host", help="gateway address (CAIRN_HOST, default 127.0.0.1)")
    up_parser.add_argument("--data-dir", type=Path, help="embedded data (CAIRN_DATA_DIR)")
    serve_parser = commands.add_parser("serve", help="run one service (or the gateway) alone")
    serve_parser.add_argument("name", choices=[*SERVICE_NAMES, "gateway"])
    commands.add_parser("migrate", help="migrate every service's tables, then exit")
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


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings()
    overrides: dict[str, Any] = {}
    for name in ("port", "host", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if overrides:
        settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "agent":
        asyncio.run(run_agent(agent_options(args)))
    elif args.command == "up":
        asyncio.run(up(settings))
    elif args.command == "serve":
        asyncio.run(serve(args.name, settings))
    else:
        asyncio.run(migrate(settings))


if __name__ == "__main__":
    main()
