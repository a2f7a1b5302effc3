"""docker-compose.yml and the Dockerfile agree with the code; the health probe they use works.

Docker's engine is not available everywhere the tests run, so the compose file is checked by
structure; `docker compose config` also runs when the compose plugin is installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from grpc_health.v1 import health_pb2

from services.common import probe
from services.common.config import DEFAULT_SERVICE_PORTS, SERVICE_NAMES, Settings
from services.common.grpc_server import RunningServer, start_server
from services.common.verification import CallAuthenticator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROBE = ["python", "-m", "services.common.probe"]
# Values for the variables the compose file requires, for `docker compose config`.
REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "staging-password",
    "CAIRN_MASTER_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
}


def compose_name(service: str) -> str:
    """Compose service (and DNS) name of a Cairn service: underscores are not valid in hosts."""
    return service.replace("_", "-")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment (merged from x-cairn-env)"
    return {str(key): str(value) for key, value in env.items()}


def cairn_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every compose service that runs the Cairn image (its command is a `cairn` subcommand)."""
    return {
        name: service
        for name, service in services_of(compose).items()
        if service.get("command", [None])[0] in ("serve", "migrate", "up", "agent")
    }


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "use the long form of depends_on, with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


# Peers each service calls over gRPC (see START_ORDER in cairn/cli.py).
PEERS: dict[str, set[str]] = {
    "identity": set(),
    "secrets": set(),
    "updates": set(),
    "agent_pools": {"secrets", "identity"},
    "stacks": {"secrets", "updates", "agent_pools", "identity"},
    "copilot": {"identity", "stacks", "updates"},
}


def test_peer_table_covers_every_service() -> None:
    assert set(PEERS) == set(SERVICE_NAMES)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_service_runs_alone_on_its_default_port(compose: dict[str, Any], name: str) -> None:
    services = services_of(compose)
    assert compose_name(name) in services, f"no compose service for {name}"
    service = services[compose_name(name)]
    port = DEFAULT_SERVICE_PORTS[name]
    assert service["command"] == ["serve", name]
    assert int(environment(service)["CAIRN_GRPC_PORT"]) == port
    assert service["healthcheck"]["test"] == ["CMD", *PROBE, "grpc", f"127.0.0.1:{port}"]
    assert service.get("restart") == "unless-stopped"
    deps = depends_on(service)
    assert deps.get("migrate") == "service_completed_successfully"
    for peer in PEERS[name]:
        assert compose_name(peer) in deps, f"{name} calls {peer} but does not depend on it"


def test_updates_uses_redis_and_runs_two_replicas(compose: dict[str, Any]) -> None:
    updates = services_of(compose)["updates"]
    assert replicas(updates) == 2
    assert depends_on(updates).get("redis") == "service_healthy"
    assert environment(updates)["CAIRN_REDIS_URL"].startswith("redis://redis:")


def test_gateway_runs_two_replicas_behind_one_published_port(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    gateway = services["gateway"]
    assert gateway["command"] == ["serve", "gateway"]
    assert replicas(gateway) == 2
    # Two replicas cannot both publish one host port; the proxy is the entry point.
    assert "ports" not in gateway
    assert gateway["healthcheck"]["test"] == [
        "CMD",
        *PROBE,
        "http",
        "http://127.0.0.1:8080/healthz",
    ]
    assert int(environment(gateway).get("CAIRN_PORT", "8080")) == 8080
    deps = depends_on(gateway)
    for name in SERVICE_NAMES:
        assert deps.get(compose_name(name)) == "service_healthy"

    proxy = services["proxy"]
    assert [port.rsplit(":", 1)[-1] for port in proxy["ports"]] == ["8080"]
    assert depends_on(proxy) == {"gateway": "service_healthy"}
    config_name = proxy["configs"][0]["source"]
    config = compose["configs"][config_name]["content"]
    assert "proxy_pass $$gateway" in config and "http://gateway:8080" in config
    assert "client_max_body_size 0" in config, "the gateway enforces the body limit itself"


@pytest.mark.parametrize("name", ["gateway", *(compose_name(n) for n in SERVICE_NAMES)])
def test_every_address_names_a_compose_service_and_its_port(
    compose: dict[str, Any], name: str
) -> None:
    services = services_of(compose)
    env = environment(services[name])
    for service in SERVICE_NAMES:
        key = f"CAIRN_{service.upper()}_ADDRESS"
        assert env.get(key) == f"{compose_name(service)}:{DEFAULT_SERVICE_PORTS[service]}", key


def test_every_cairn_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"CAIRN_{field.upper()}" for field in Settings.model_fields}
    used = {
        key
        for service in services_of(compose).values()
        for key in environment(service)
        if key.startswith("CAIRN_")
    }
    assert used, "no CAIRN_ variables found"
    unknown = sorted(used - known)
    assert not unknown, f"not Settings fields: {unknown}"


def test_every_cairn_container_shares_the_database_and_logs_json(compose: dict[str, Any]) -> None:
    containers = cairn_services(compose)
    assert {"migrate", "gateway", *(compose_name(n) for n in SERVICE_NAMES)} <= set(containers)
    images = {service["image"] for service in containers.values()}
    assert len(images) == 1, "every Cairn container runs the same image"
    for name, service in containers.items():
        env = environment(service)
        assert env["CAIRN_DATABASE_URL"].startswith("postgresql+asyncpg://cairn:"), name
        assert env["CAIRN_DATABASE_URL"].endswith("@postgres:5432/cairn"), name
        assert env["CAIRN_LOG_FORMAT"] == "json", name
        assert env["CAIRN_PUBLIC_URL"], name


def test_secrets_are_required_not_written_down(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    # Only the secrets service holds the master key, and compose refuses to start without it.
    holders = [n for n, s in services.items() if "CAIRN_MASTER_KEY" in environment(s)]
    assert holders == ["secrets"]
    assert environment(services["secrets"])["CAIRN_MASTER_KEY"].startswith("${CAIRN_MASTER_KEY:?")
    password = environment(services["postgres"])["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in environment(services["migrate"])["CAIRN_DATABASE_URL"]
    tokens = [n for n, s in services.items() if "CAIRN_ADMIN_TOKEN" in environment(s)]
    assert tokens == ["identity"]


def test_migrate_runs_once_after_postgres(compose: dict[str, Any]) -> None:
    migrate = services_of(compose)["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert depends_on(migrate) == {"postgres": "service_healthy"}


def test_postgres_and_redis_have_healthchecks_and_volumes(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert redis["image"].startswith("redis:7")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    declared = set(compose.get("volumes") or {})
    mounted = {str(v).split(":", 1)[0] for s in services.values() for v in s.get("volumes", [])}
    assert "postgres-data" in declared
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    named = {m for m in mounted if not m.startswith((".", "/"))}
    assert named <= declared, f"undeclared volumes {sorted(named - declared)}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    pairs = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_runs_cairn_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    final_stage = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    runtime = instructions[final_stage:]
    assert runtime[0][1].startswith("python:3.11-slim")
    values = {k: v for k, v in runtime}
    assert values["ENTRYPOINT"] == '["cairn"]'
    assert values["CMD"] == '["serve", "gateway"]'
    user = [v for k, v in runtime if k == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    env = " ".join(v for k, v in runtime if k == "ENV")
    for setting in ("CAIRN_LOG_FORMAT=json", "CAIRN_HOST=0.0.0.0", "CAIRN_GRPC_HOST=0.0.0.0"):
        assert setting in env


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", ".cairn", ".env", "tests", "**/__pycache__"):
        assert entry in ignored
    for needed in ("pyproject.toml", "README.md", "protos", "services", "gateway"):
        assert needed not in ignored


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def test_docker_compose_accepts_the_file() -> None:
    if not docker_compose_available():
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env={**os.environ, **REQUIRED_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_requires_the_secrets() -> None:
    if not docker_compose_available():
        pytest.skip("the docker compose plugin is not installed")
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "CAIRN_MASTER_KEY" in result.stderr


# The probe the healthchecks run.


@pytest.fixture
async def grpc_server() -> AsyncIterator[RunningServer]:
    server = await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=4 * 1024 * 1024,
        register=lambda s: None,
        service_names=[],
        authenticator=CallAuthenticator(bytes(32), tokens=None),
    )
    try:
        yield server
    finally:
        await server.server.stop(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_grpc_probe_is_healthy_while_serving(grpc_server: RunningServer) -> None:
    result = await asyncio.to_thread(probe.check_grpc, grpc_server.address)
    assert result.is_healthy, result.detail
    assert "SERVING" in result.detail


async def test_grpc_probe_is_unhealthy_when_not_serving(grpc_server: RunningServer) -> None:
    await grpc_server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = await asyncio.to_thread(probe.check_grpc, grpc_server.address)
    assert not result.is_healthy
    assert "NOT_SERVING" in result.detail


async def test_grpc_probe_is_unhealthy_when_nothing_listens() -> None:
    result = await asyncio.to_thread(probe.check_grpc, f"127.0.0.1:{free_port()}", 2.0)
    assert not result.is_healthy
    assert "UNAVAILABLE" in result.detail


async def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.common.probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_probe_command_exit_status(grpc_server: RunningServer) -> None:
    healthy = await run_probe("grpc", grpc_server.address)
    assert healthy.returncode == 0, healthy.stderr
    await grpc_server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    unhealthy = await run_probe("grpc", grpc_server.address)
    assert unhealthy.returncode == 1
    assert "NOT_SERVING" in unhealthy.stderr


@pytest.mark.parametrize("args", [[], ["grpc"], ["tcp", "127.0.0.1:1"], ["http", "a", "b"]])
def test_probe_command_rejects_bad_arguments(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert probe.main(args) == 1
    assert "usage" in capsys.readouterr().err


@pytest.fixture
async def http_server() -> AsyncIterator[TestServer]:
    def answer(status: int) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, text="status")

        return handler

    app = web.Application()
    app.router.add_get("/healthz", answer(200))
    app.router.add_get("/unhealthy", answer(503))
    app.router.add_get("/created", answer(201))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("path", "is_healthy"),
    [("/healthz", True), ("/unhealthy", False), ("/created", False), ("/missing", False)],
)
async def test_http_probe_needs_200(http_server: TestServer, path: str, is_healthy: bool) -> None:
    result = await asyncio.to_thread(probe.check_http, str(http_server.make_url(path)))
    assert result.is_healthy is is_healthy, result.detail


async def test_http_probe_is_unhealthy_when_nothing_listens() -> None:
    result = await asyncio.to_thread(probe.check_http, f"http://127.0.0.1:{free_port()}/healthz")
    assert not result.is_healthy


def test_http_probe_refuses_other_schemes() -> None:
    assert not probe.check_http("file:///etc/passwd").is_healthy


async def test_http_probe_command_exit_status(http_server: TestServer) -> None:
    assert (await run_probe("http", str(http_server.make_url("/healthz")))).returncode == 0
    assert (await run_probe("http", str(http_server.make_url("/unhealthy")))).returncode == 1
