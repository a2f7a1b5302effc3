"""Mutual TLS between Cairn's processes (`CAIRN_TLS_*`), with certificates made by trustme.

One CA signs the certificate every process of the system uses (it names 127.0.0.1 and
localhost) and the client certificate of a team's own tool. Under TLS the whole system still
works through the gateway; a service refuses plaintext, a client without a certificate and a
certificate from another CA; a valid client still needs its access token.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cairn.cli import (
    _spawn,
    _wait_serving,
    child_environment,
    free_ports,
    start_services,
    stop_children,
)
from protos.cairn.v1 import common_pb2, stacks_pb2, stacks_pb2_grpc
from services.common import probe
from services.common.clock import SystemClock
from services.common.config import SERVICE_NAMES, Settings
from services.common.grpc_server import RunningServer, check_health, open_channel, start_server
from services.common.tls import TARGET_NAME_OPTION, Tls, TlsSettingsError, load_tls
from services.common.verification import CallAuthenticator
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

ROOT = Path(__file__).resolve().parents[2]
STACK = "/api/stacks/admin/web/dev"
CALL_SECONDS = 10.0
PROCESS_SECONDS = 60.0
TOKEN = (("authorization", f"token {ADMIN_TOKEN}"),)
STACK_REF = common_pb2.StackRef(organization="admin", project="web", stack="dev")


def chain(leaf: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


@dataclass(frozen=True)
class Pki:
    """A CA, the certificate every Cairn process uses, and a team tool's client certificate."""

    directory: Path
    ca: trustme.CA
    service: trustme.LeafCert
    tool: trustme.LeafCert

    @property
    def cert_file(self) -> Path:
        return self.directory / "cairn.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "cairn.key"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def settings(self) -> dict[str, Any]:
        return {
            "tls_cert_file": self.cert_file,
            "tls_key_file": self.key_file,
            "tls_ca_file": self.ca_file,
        }

    def environment(self) -> dict[str, str]:
        return {f"CAIRN_{name.upper()}": str(path) for name, path in self.settings().items()}

    def tls(self, leaf: trustme.LeafCert | None = None, **changes: Any) -> Tls:
        """TLS material trusting this CA, presenting `leaf` (default: the service's)."""
        leaf = leaf or self.service
        material = Tls(
            certificate_chain=chain(leaf),
            private_key=leaf.private_key_pem.bytes(),
            ca_certificates=self.ca.cert_pem.bytes(),
        )
        return dataclasses.replace(material, **changes)

    def client(self, leaf: trustme.LeafCert | None) -> grpc.ChannelCredentials:
        """A client trusting this CA, with `leaf`'s certificate or with none."""
        if leaf is None:
            return grpc.ssl_channel_credentials(root_certificates=self.ca.cert_pem.bytes())
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem.bytes(),
            private_key=leaf.private_key_pem.bytes(),
            certificate_chain=chain(leaf),
        )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = trustme.CA()
    made = Pki(
        directory=directory,
        ca=ca,
        service=ca.issue_cert("127.0.0.1", "localhost"),
        tool=ca.issue_cert("team-tool.example"),
    )
    made.cert_file.write_bytes(chain(made.service))
    made.service.private_key_pem.write_to_path(made.key_file)
    ca.cert_pem.write_to_path(made.ca_file)
    # What a team's own tool is given (the README's example reads these names).
    (directory / "tool.pem").write_bytes(chain(made.tool))
    made.tool.private_key_pem.write_to_path(directory / "tool.key")
    return made


@pytest.fixture
def tls_settings(settings: Settings, pki: Pki) -> Settings:
    return settings.model_copy(update=pki.settings())


@pytest.fixture
async def tls_cairn(tls_settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The whole system in this process, every service and channel on mutual TLS."""
    async for running in running_cairn(tls_settings, aiohttp_client):
        yield running


async def status_of(call: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details()


async def get_stack(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = TOKEN
) -> tuple[grpc.StatusCode, Any]:
    stub = stacks_pb2_grpc.StacksServiceStub(channel)
    request = stacks_pb2.GetStackRequest(ref=STACK_REF)
    return await status_of(stub.GetStack(request, metadata=metadata, timeout=CALL_SECONDS))


async def health(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, Any]:
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="")
    return await status_of(stub.Check(request, timeout=CALL_SECONDS))


# -- the whole system ---------------------------------------------------------------------


async def test_the_system_works_over_mutual_tls(tls_cairn: Cairn, pki: Pki) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    stack = await tls_cairn.json("GET", STACK)
    assert stack["stackName"] == "dev"
    # The gateway calls stacks, stacks calls secrets: a secret makes the round trip.
    plaintext = base64.b64encode(b"hunter2").decode()
    sealed = await tls_cairn.json("POST", f"{STACK}/encrypt", body={"plaintext": plaintext})
    opened = await tls_cairn.json(
        "POST", f"{STACK}/decrypt", body={"ciphertext": sealed["ciphertext"]}
    )
    assert opened["plaintext"] == plaintext
    # An access token, minted over a signed TLS channel, is resolved by stacks through
    # identity over TLS too.
    token = await tls_cairn.new_user("alice")
    user = await tls_cairn.json("GET", "/api/user", token=token)
    assert user["githubLogin"] == "alice"
    # Deleting a stack has stacks ask updates and identity over their peer channels.
    await tls_cairn.json("DELETE", STACK, 204)
    await tls_cairn.json("GET", STACK, 404)
    # Every service speaks TLS only, and so does the compose health probe.
    settings = tls_cairn.system.settings
    tls = load_tls(settings)
    assert tls is not None
    for name in SERVICE_NAMES:
        address = settings.service_address(name)
        secure = await asyncio.to_thread(probe.check_grpc, address, CALL_SECONDS, tls)
        assert secure.is_healthy, secure.detail
        plain = await asyncio.to_thread(probe.check_grpc, address, CALL_SECONDS)
        assert not plain.is_healthy, plain.detail


async def test_a_plaintext_channel_to_a_service_fails(tls_cairn: Cairn) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    settings = tls_cairn.system.settings
    for name in SERVICE_NAMES:
        async with grpc.aio.insecure_channel(settings.service_address(name)) as channel:
            code, _ = await health(channel)
            assert code is grpc.StatusCode.UNAVAILABLE, name
    async with grpc.aio.insecure_channel(settings.stacks_address) as channel:
        code, _ = await get_stack(channel)
        assert code is grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_a_certificate_is_refused(tls_cairn: Cairn, pki: Pki) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    address = tls_cairn.system.settings.stacks_address
    async with grpc.aio.secure_channel(address, pki.client(None)) as channel:
        code, _ = await get_stack(channel)
        assert code is grpc.StatusCode.UNAVAILABLE
        code, _ = await health(channel)
        assert code is grpc.StatusCode.UNAVAILABLE
    # The same client with a certificate from the CA gets through (the refusal is the point).
    async with grpc.aio.secure_channel(address, pki.client(pki.tool)) as channel:
        code, _ = await get_stack(channel)
        assert code is grpc.StatusCode.OK


async def test_a_certificate_from_another_ca_is_refused(tls_cairn: Cairn, pki: Pki) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    stranger = trustme.CA().issue_cert("team-tool.example")
    address = tls_cairn.system.settings.stacks_address
    async with grpc.aio.secure_channel(address, pki.client(stranger)) as channel:
        code, _ = await get_stack(channel)
        assert code is grpc.StatusCode.UNAVAILABLE
        code, _ = await health(channel)
        assert code is grpc.StatusCode.UNAVAILABLE


async def test_a_tls_client_with_an_access_token_can_call_a_service(
    tls_cairn: Cairn, pki: Pki
) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    stack = await tls_cairn.json("GET", STACK)
    address = tls_cairn.system.settings.stacks_address
    async with grpc.aio.secure_channel(address, pki.client(pki.tool)) as channel:
        code, reply = await get_stack(channel)
        assert code is grpc.StatusCode.OK, reply
        assert reply.id == stack["id"]
        # A certificate says which machine calls, not who: the token is still required.
        code, _ = await get_stack(channel, metadata=())
        assert code is grpc.StatusCode.UNAUTHENTICATED


def readme_tls_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Calling the services over gRPC", 1)[1].split("\n## ", 1)[0]
    found = [
        block
        for block in re.findall(r"```python\n(.*?)```", section, re.S)
        if "ssl_channel_credentials" in block
    ]
    assert len(found) == 1, "the README's gRPC section has no TLS channel example"
    return str(found[0])


async def test_the_readme_tls_channel_example_works(
    tls_cairn: Cairn, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    await tls_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    namespace: dict[str, Any] = {}
    exec(compile(readme_tls_example(), "README.md", "exec"), namespace)
    monkeypatch.chdir(pki.directory)
    channel = namespace["tls_channel"](tls_cairn.system.settings.stacks_address)
    async with channel:
        code, reply = await get_stack(channel)
    assert code is grpc.StatusCode.OK, reply


# -- servers and channels on their own ------------------------------------------------------


async def tls_server(tls: Tls) -> RunningServer:
    """A bare server answering only health checks, on a free loopback port."""
    return await start_server(
        host="127.0.0.1",
        port=0,
        max_message_bytes=1024 * 1024,
        register=lambda _server: None,
        service_names=[],
        authenticator=CallAuthenticator(bytes(32), None, SystemClock()),
        is_reflection_served=False,
        tls=tls,
    )


@pytest.fixture
async def servers() -> AsyncIterator[list[RunningServer]]:
    started: list[RunningServer] = []
    try:
        yield started
    finally:
        for server in started:
            await server.stop(grace=0)


@pytest.mark.parametrize("is_required", [True, False])
async def test_client_auth_setting_decides_whether_a_certificate_is_needed(
    pki: Pki, servers: list[RunningServer], is_required: bool
) -> None:
    server = await tls_server(pki.tls(is_client_certificate_required=is_required))
    servers.append(server)
    async with grpc.aio.secure_channel(server.address, pki.client(None)) as channel:
        code, _ = await health(channel)
    assert code is (grpc.StatusCode.UNAVAILABLE if is_required else grpc.StatusCode.OK)
    async with grpc.aio.secure_channel(server.address, pki.client(pki.tool)) as channel:
        code, _ = await health(channel)
    assert code is grpc.StatusCode.OK
    # Either way, plaintext is refused.
    async with grpc.aio.insecure_channel(server.address) as channel:
        code, _ = await health(channel)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_a_channel_trusts_only_services_certified_by_the_ca(
    pki: Pki, servers: list[RunningServer]
) -> None:
    lookalike = trustme.CA().issue_cert("127.0.0.1", "localhost")
    impostor = await tls_server(pki.tls(lookalike))
    servers.append(impostor)
    genuine = await tls_server(pki.tls())
    servers.append(genuine)
    for server, is_trusted in ((impostor, False), (genuine, True)):
        channel = open_channel(server.address, 1024 * 1024, signer=None, tls=pki.tls())
        try:
            assert await check_health(channel, timeout=CALL_SECONDS) is is_trusted
        finally:
            await channel.close(None)


async def test_replicas_on_one_host_share_one_channel(
    pki: Pki, servers: list[RunningServer]
) -> None:
    """gRPC checks `ipv4:a,b` targets against the whole list unless told the host."""
    for _ in range(2):
        servers.append(await tls_server(pki.tls()))
    addresses = ",".join(server.address for server in servers)
    channel = open_channel(addresses, 1024 * 1024, signer=None, tls=pki.tls())
    try:
        for _ in range(4):
            assert await check_health(channel, timeout=CALL_SECONDS)
    finally:
        await channel.close(None)
    # Without the name option, the same target fails the hostname check.
    credentials = pki.tls().channel_credentials()
    async with grpc.aio.secure_channel(f"ipv4:{addresses}", credentials) as channel:
        code, _ = await health(channel)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_the_server_name_setting_replaces_the_host_in_the_check(
    pki: Pki, servers: list[RunningServer]
) -> None:
    named = pki.ca.issue_cert("cairn-internal")
    server = await tls_server(pki.tls(named))
    servers.append(server)
    for tls, is_healthy in ((pki.tls(), False), (pki.tls(server_name="cairn-internal"), True)):
        channel = open_channel(server.address, 1024 * 1024, signer=None, tls=tls)
        try:
            assert await check_health(channel, timeout=CALL_SECONDS) is is_healthy
        finally:
            await channel.close(None)


def test_replicas_on_several_hosts_need_a_server_name(pki: Pki) -> None:
    with pytest.raises(TlsSettingsError, match="CAIRN_TLS_SERVER_NAME"):
        pki.tls().channel_options("10.0.0.1:50054,10.0.0.2:50054")
    named = pki.tls(server_name="updates.internal")
    assert named.channel_options("10.0.0.1:50054,10.0.0.2:50054") == [
        (TARGET_NAME_OPTION, "updates.internal")
    ]
    assert pki.tls().channel_options("updates:50054") == []


def test_replicas_needing_a_server_name_fail_start_up(tls_settings: Settings) -> None:
    spread = tls_settings.model_copy(update={"updates_address": "10.0.0.1:1,10.0.0.2:1"})
    with pytest.raises(TlsSettingsError, match="CAIRN_TLS_SERVER_NAME"):
        load_tls(spread)
    named = spread.model_copy(update={"tls_server_name": "updates.internal"})
    assert load_tls(named) is not None


# -- settings -------------------------------------------------------------------------------


def test_without_tls_settings_everything_stays_plaintext(settings: Settings) -> None:
    assert load_tls(settings) is None


def test_the_files_are_read_into_the_material(tls_settings: Settings, pki: Pki) -> None:
    tls = load_tls(tls_settings)
    assert tls is not None
    assert tls.certificate_chain == pki.cert_file.read_bytes()
    assert tls.private_key == pki.key_file.read_bytes()
    assert tls.ca_certificates == pki.ca_file.read_bytes()
    assert tls.is_client_certificate_required  # the default
    assert pki.key_file.read_bytes() not in repr(tls).encode()
    relaxed = load_tls(tls_settings.model_copy(update={"tls_client_auth": "none"}))
    assert relaxed is not None and not relaxed.is_client_certificate_required


@pytest.mark.parametrize(
    ("present", "message"),
    [
        (
            ("tls_cert_file",),
            "TLS needs CAIRN_TLS_CERT_FILE, CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE together: "
            "CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE are not set",
        ),
        (
            ("tls_cert_file", "tls_key_file"),
            "TLS needs CAIRN_TLS_CERT_FILE, CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE together: "
            "CAIRN_TLS_CA_FILE is not set",
        ),
        (
            ("tls_key_file", "tls_ca_file"),
            "TLS needs CAIRN_TLS_CERT_FILE, CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE together: "
            "CAIRN_TLS_CERT_FILE is not set",
        ),
    ],
)
def test_incomplete_tls_settings_are_refused(
    settings: Settings, pki: Pki, present: tuple[str, ...], message: str
) -> None:
    partial = {name: path for name, path in pki.settings().items() if name in present}
    with pytest.raises(TlsSettingsError) as refused:
        load_tls(settings.model_copy(update=partial))
    assert str(refused.value) == message


def test_tls_options_without_the_files_are_refused(settings: Settings) -> None:
    for change in ({"tls_server_name": "cairn-internal"}, {"tls_client_auth": "none"}):
        with pytest.raises(TlsSettingsError, match="only with TLS"):
            load_tls(settings.model_copy(update=change))


def test_unusable_files_are_named(tls_settings: Settings, pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    with pytest.raises(TlsSettingsError, match=r"CAIRN_TLS_CA_FILE: cannot read .*absent\.pem"):
        load_tls(tls_settings.model_copy(update={"tls_ca_file": missing}))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(TlsSettingsError, match=r"CAIRN_TLS_KEY_FILE: .* holds no PEM private key"):
        load_tls(tls_settings.model_copy(update={"tls_key_file": garbage}))


async def test_start_up_fails_on_incomplete_tls_settings(settings: Settings, pki: Pki) -> None:
    partial = settings.model_copy(update={"tls_cert_file": pki.cert_file})
    with pytest.raises(TlsSettingsError, match="CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE"):
        await asyncio.wait_for(start_services(partial), PROCESS_SECONDS)


async def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str, str]:
    """Run a Python module as a process, bounded; returns its status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), PROCESS_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any CAIRN_* variable, on a private data dir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAIRN_")}
    env["CAIRN_DATA_DIR"] = str(tmp_path / "cli-data")
    env["PYTHONPATH"] = str(ROOT)
    return env


async def test_cairn_serve_refuses_incomplete_tls_settings(
    pki: Pki, base_env: dict[str, str]
) -> None:
    env = {**base_env, "CAIRN_TLS_CERT_FILE": str(pki.cert_file)}
    status, _, err = await run(["cairn", "serve", "secrets"], env)
    assert status == 2, err
    assert err.strip() == (
        "cairn: TLS needs CAIRN_TLS_CERT_FILE, CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE "
        "together: CAIRN_TLS_KEY_FILE and CAIRN_TLS_CA_FILE are not set"
    )


async def test_a_spawned_service_is_awaited_and_probed_over_tls(
    tls_settings: Settings, pki: Pki, base_env: dict[str, str], tmp_path: Path
) -> None:
    """What `cairn up --topology distributed` and compose do with one service process."""
    settings = tls_settings.model_copy(
        update={"data_dir": tls_settings.data_dir.resolve(), "grpc_host": "127.0.0.1"}
    )
    (port,) = free_ports(1)
    env = child_environment(settings, base_env)
    child = _spawn("secrets", 0, port, env, tmp_path / "logs")
    try:
        await _wait_serving(child, settings, time.monotonic() + PROCESS_SECONDS)
        address = f"127.0.0.1:{port}"
        status, out, err = await run(["services.common.probe", "grpc", address], env)
        assert status == 0, err
        assert out.strip() == f"grpc {address}: SERVING"
        # The probe without the TLS settings cannot reach it.
        status, _, err = await run(["services.common.probe", "grpc", address], base_env)
        assert status == 1
        assert err.startswith(f"grpc {address}: ")
    finally:
        await stop_children([child], grace=5.0)
