"""The internal plane: no service method answers a caller without a credential.

A process that reaches every service port but holds neither the internal key nor an access
token can read, write, decrypt and mint nothing; a team's own tool with an access token is
held to exactly what the REST route twin of each method allows.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos.cairn.v1 import (
    agent_pools_pb2,
    audit_pb2,
    common_pb2,
    console_pb2,
    copilot_pb2,
    hooks_pb2,
    identity_pb2,
    identity_pb2_grpc,
    oidc_pb2,
    schedules_pb2,
    secrets_pb2,
    secrets_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
    updates_pb2,
)
from services.common.auth import Caller
from services.common.call_access import TOKEN_ACCESS
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.grpc_server import open_channel
from services.common.signing import CallSigner, load_internal_key
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, VIEWER, Cairn

ROOT = Path(__file__).resolve().parents[2]
STACK = "/api/stacks/admin/web/dev"
SERVICES = {
    "cairn.v1.IdentityService": ("identity", identity_pb2),
    "cairn.v1.AuditService": ("identity", audit_pb2),
    "cairn.v1.ConsoleSessionService": ("identity", console_pb2),
    "cairn.v1.OidcService": ("identity", oidc_pb2),
    "cairn.v1.StacksService": ("stacks", stacks_pb2),
    "cairn.v1.HookService": ("stacks", hooks_pb2),
    "cairn.v1.SecretsService": ("secrets", secrets_pb2),
    "cairn.v1.UpdatesService": ("updates", updates_pb2),
    "cairn.v1.AgentPoolsService": ("agent_pools", agent_pools_pb2),
    "cairn.v1.DeploymentSchedulesService": ("agent_pools", schedules_pb2),
    "cairn.v1.CopilotService": ("copilot", copilot_pb2),
}


def every_method() -> list[tuple[str, str]]:
    """(service name, full method path) of every RPC in the contracts."""
    found: list[tuple[str, str]] = []
    for full_name, (service, module) in SERVICES.items():
        descriptor = module.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
        found.extend((service, f"/{full_name}/{method.name}") for method in descriptor.methods)
    return found


def test_every_method_in_the_contracts_is_covered() -> None:
    """Sanity: the list is built from the descriptors, and the token table names real ones."""
    methods = {path for _, path in every_method()}
    assert len(methods) > 100
    assert set(TOKEN_ACCESS) <= methods
    pool = descriptor_pool.Default()
    for path in TOKEN_ACCESS:
        service, method = path.strip("/").split("/")
        assert pool.FindServiceByName(service).FindMethodByName(method) is not None


@pytest.fixture
async def plain(cairn: Cairn) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """Unsigned channels to every service: what an attacker on the network has."""
    settings = cairn.system.settings
    channels = {
        name: grpc.aio.insecure_channel(settings.service_address(name))
        for name in ("identity", "stacks", "secrets", "updates", "agent_pools", "copilot")
    }
    try:
        yield channels
    finally:
        for channel in channels.values():
            await channel.close(None)


async def raw_call(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes = b"",
    metadata: tuple[tuple[str, str], ...] = (),
) -> tuple[grpc.StatusCode, str]:
    try:
        await channel.unary_unary(method, None, None)(payload, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def create_stack(cairn: Cairn, path: str = STACK) -> str:
    org, project, stack = path.removeprefix("/api/stacks/").split("/")
    await cairn.json("POST", f"/api/stacks/{org}/{project}", body={"stackName": stack})
    return await stack_id(cairn, org, project, stack)


async def stack_id(cairn: Cairn, org: str, project: str, stack: str) -> str:
    channel = signed(cairn.system.settings, "stacks")
    try:
        reply = await stacks_pb2_grpc.StacksServiceStub(channel).GetStack(
            stacks_pb2.GetStackRequest(
                ref=common_pb2.StackRef(organization=org, project=project, stack=stack)
            )
        )
    finally:
        await channel.close(None)
    return str(reply.id)


def signed(settings: Settings, service: str, signer: CallSigner | None = None) -> grpc.aio.Channel:
    key_signer = signer or CallSigner(load_internal_key(settings))
    return open_channel(
        settings.service_address(service), settings.max_message_bytes, signer=key_signer
    )


async def test_no_method_answers_a_caller_without_a_credential(
    cairn: Cairn, plain: dict[str, grpc.aio.Channel]
) -> None:
    await create_stack(cairn)
    methods = every_method()
    results = await asyncio.gather(
        *(raw_call(plain[service], method) for service, method in methods)
    )
    refused = {
        method: code
        for (_, method), (code, _) in zip(methods, results, strict=True)
        if code is not grpc.StatusCode.UNAUTHENTICATED
    }
    assert refused == {}
    # Naming a user in metadata, as the gateway once did, is ignored without a signature.
    impersonating = (("x-cairn-user-id", "1"), ("x-cairn-user-login", "admin"))
    results = await asyncio.gather(
        *(raw_call(plain[s], m, metadata=impersonating) for s, m in methods)
    )
    assert {code for code, _ in results} == {grpc.StatusCode.UNAUTHENTICATED}
    # Health checks stay open to load balancers and orchestrators.
    for channel in plain.values():
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_nothing_can_be_minted_or_decrypted_without_the_key(
    cairn: Cairn, plain: dict[str, grpc.aio.Channel]
) -> None:
    stack = await create_stack(cairn)
    sealed = await cairn.json(
        "POST", f"{STACK}/encrypt", body={"plaintext": base64.b64encode(b"hunter2").decode()}
    )
    ciphertext = base64.b64decode(sealed["ciphertext"])
    settings = cairn.system.settings
    decrypt = secrets_pb2.DecryptRequest(stack_id=stack, ciphertext=ciphertext)
    mint = identity_pb2.CreateAccessTokenRequest(user_login="admin", name="stolen")
    forged = CallSigner(bytes(32))
    expired = CallSigner(load_internal_key(settings), ManualClock(1_000_000_000.0))
    for signer in (forged, expired):
        secrets_channel = signed(settings, "secrets", signer)
        identity_channel = signed(settings, "identity", signer)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await secrets_pb2_grpc.SecretsServiceStub(secrets_channel).Decrypt(decrypt)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await identity_pb2_grpc.IdentityServiceStub(identity_channel).CreateAccessToken(
                    mint
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        finally:
            await secrets_channel.close(None)
            await identity_channel.close(None)
    # A genuine signature captured from one method does not open another.
    signer = CallSigner(load_internal_key(settings))
    captured = signer.sign("/cairn.v1.SecretsService/Encrypt", Caller(login="admin").metadata())
    code, _ = await raw_call(
        plain["secrets"],
        "/cairn.v1.SecretsService/Decrypt",
        decrypt.SerializeToString(),
        tuple((k, str(v)) for k, v in captured),
    )
    assert code is grpc.StatusCode.UNAUTHENTICATED
    # The same signature on its own method is accepted (the check is not vacuous).
    code, _ = await raw_call(
        plain["secrets"],
        "/cairn.v1.SecretsService/Encrypt",
        secrets_pb2.EncryptRequest(stack_id=stack, plaintext=b"x").SerializeToString(),
        tuple((k, str(v)) for k, v in captured),
    )
    assert code is grpc.StatusCode.OK


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"token {token}"),)


async def rest_status(cairn: Cairn, method: str, path: str, token: str, body: Any = None) -> int:
    response = await cairn.call(method, path, token=token, body=body)
    await response.read()
    return response.status


HTTP_OF = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


async def test_access_tokens_get_exactly_what_the_rest_twin_gives(
    cairn: Cairn, plain: dict[str, grpc.aio.Channel]
) -> None:
    stack = await create_stack(cairn)
    viewer = await cairn.new_user("vera", org_role=("admin", VIEWER))
    member = await cairn.new_user("mike", org_role=("admin", MEMBER))
    outsider = await cairn.new_user("olga")
    ref = common_pb2.StackRef(organization="admin", project="web", stack="dev")
    get_stack = stacks_pb2.GetStackRequest(ref=ref).SerializeToString()
    encrypt = secrets_pb2.EncryptRequest(stack_id=stack, plaintext=b"v").SerializeToString()
    delete = stacks_pb2.DeleteStackRequest(ref=ref).SerializeToString()
    cases = [
        ("stacks", "/cairn.v1.StacksService/GetStack", get_stack, "GET", STACK, None),
        (
            "secrets",
            "/cairn.v1.SecretsService/Encrypt",
            encrypt,
            "POST",
            f"{STACK}/encrypt",
            {"plaintext": base64.b64encode(b"v").decode()},
        ),
        ("stacks", "/cairn.v1.StacksService/DeleteStack", delete, "DELETE", STACK, None),
    ]
    seen = set()
    for token in (outsider, viewer, member):
        for service, method, payload, verb, path, body in cases:
            code, _ = await raw_call(plain[service], method, payload, token_metadata(token))
            expected = await rest_status(cairn, verb, path, token, body)
            assert HTTP_OF[code] == expected, (token, method, code, expected)
            seen.add(code)
    # The table covered refusals of both kinds and successes.
    assert {
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
    } <= seen
    # A wrong token is refused like the REST route refuses it.
    code, _ = await raw_call(
        plain["stacks"],
        "/cairn.v1.StacksService/GetStack",
        get_stack,
        token_metadata("pul-" + "0" * 40),
    )
    assert code is grpc.StatusCode.UNAUTHENTICATED
    # Internal methods are closed to access tokens, even an admin's.
    mint = identity_pb2.CreateAccessTokenRequest(user_login="admin", name="x")
    code, message = await raw_call(
        plain["identity"],
        "/cairn.v1.IdentityService/CreateAccessToken",
        mint.SerializeToString(),
        token_metadata(ADMIN_TOKEN),
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "internal" in message
    # Stack names beside the id must name the same stack.
    other = await create_stack(cairn, "/api/stacks/admin/web/prod")
    code, _ = await raw_call(
        plain["updates"],
        "/cairn.v1.UpdatesService/ImportDeployment",
        updates_pb2.ImportDeploymentRequest(
            stack_id=other, organization="admin", project="web", stack="dev"
        ).SerializeToString(),
        token_metadata(ADMIN_TOKEN),
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_changes_made_with_a_token_are_audited_like_rest(
    cairn: Cairn, plain: dict[str, grpc.aio.Channel]
) -> None:
    stack = await create_stack(cairn)
    member = await cairn.new_user("mike", org_role=("admin", MEMBER))
    stub = secrets_pb2_grpc.SecretsServiceStub(plain["secrets"])
    sealed = await stub.Encrypt(
        secrets_pb2.EncryptRequest(stack_id=stack, plaintext=b"hunter2"),
        metadata=token_metadata(member),
    )
    opened = await stub.Decrypt(
        secrets_pb2.DecryptRequest(stack_id=stack, ciphertext=sealed.ciphertext),
        metadata=token_metadata(member),
    )
    assert opened.plaintext == b"hunter2"
    entries = (await cairn.json("GET", "/api/orgs/admin/auditlogs"))["auditLogEvents"]
    by_grpc = [e for e in entries if e.get("method") == "GRPC"]
    assert sorted(e["event"] for e in by_grpc) == ["secret.decrypt", "secret.encrypt"]
    for entry in by_grpc:
        assert entry["user"]["githubLogin"] == "mike"
        assert entry["target"] == "admin/web/dev"
        assert entry["sourceIP"] == "127.0.0.1"
        assert entry["path"].startswith("/cairn.v1.SecretsService/")
    assert "hunter2" not in repr(entries)


async def test_reflection_answers_authenticated_callers_only(
    cairn: Cairn, plain: dict[str, grpc.aio.Channel]
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(plain["stacks"])

    async def services(metadata: tuple[tuple[str, str], ...]) -> list[str]:
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=metadata,
            timeout=10,
        )
        names: list[str] = []
        async for reply in call:
            names.extend(service.name for service in reply.list_services_response.service)
        return names

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await services(())
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await services(token_metadata("pul-" + "1" * 40))
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "cairn.v1.StacksService" in await services(token_metadata(ADMIN_TOKEN))


def readme_client_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Calling the services over gRPC", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's gRPC section has no Python example"
    return match.group(1)


async def test_the_readme_python_client_example_runs(cairn: Cairn, tmp_path: Path) -> None:
    await create_stack(cairn)
    await cairn.json("PATCH", f"{STACK}/tags", 204, body={"owner": "platform"})
    script = tmp_path / "client.py"
    script.write_text(readme_client_example())
    settings = cairn.system.settings
    env = {
        **os.environ,
        "PULUMI_ACCESS_TOKEN": ADMIN_TOKEN,
        "CAIRN_STACK": "admin/web/dev",
        "CAIRN_STACKS_ADDRESS": settings.stacks_address,
        "CAIRN_UPDATES_ADDRESS": settings.updates_address,
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    assert "owned by admin" in out.decode()
    assert "'owner': 'platform'" in out.decode()
